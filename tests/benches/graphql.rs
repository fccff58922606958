//! Issue 14's GraphQL figure, measured in one run against the same data: 50 finished runs of one
//! workflow (start -> transform -> end), each listed with its node timeline,
//! * over REST, as a REST client must: `GET /api/v1/workflows/{id}/runs?page_size=50` (the list
//!   carries no node outputs), then `GET /api/v1/workflows/runs/{run_id}?include_logs=false` for
//!   each run, both one at a time and 8 in flight (what GraphQL's run loader does upstream);
//! * over GraphQL, as one query: `workflow(id) { runs(pageSize: 50) { items { id status nodes
//!   { nodeId status output } } } }`.
//!
//! p50/p99 of each, and GraphQL's ratio to REST (target: within 1.5x of REST).
//! Workflow, event-dispatcher and gateway run in this process against the machine's Postgres
//! and NATS: `cargo bench -p getlood-tests --bench graphql` (or `make bench`).

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
// A bench's output is its figures.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};

/// Runs listed, each with its nodes.
const RUNS: usize = 50;
/// Timed repetitions of each side, after [`WARMUP`] untimed ones.
const REPS: usize = 100;
const WARMUP: usize = 10;
/// REST's concurrent side: as many run reads in flight as GraphQL's run loader makes.
const IN_FLIGHT: usize = 8;
const QUERY: &str = "query($w: String!) { workflow(id: $w) { runs(pageSize: 50) { items { id status nodes { nodeId status output } } } } }";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn json_of(req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    anyhow::ensure!(status.is_success(), "{status}: {body}");
    Ok(body)
}

/// The runs with their nodes over REST (`in_flight` run reads at a time): `(run id, node count)`.
async fn rest(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    wf: &str,
    in_flight: usize,
) -> anyhow::Result<Vec<(String, usize)>> {
    let list =
        json_of(http.get(format!("{base}/api/v1/workflows/{wf}/runs?page_size={RUNS}")).bearer_auth(token)).await?;
    let ids: Vec<String> =
        list["runs"].as_array().into_iter().flatten().filter_map(|r| r["id"].as_str().map(str::to_owned)).collect();
    let runs: Vec<anyhow::Result<(String, usize)>> = futures::stream::iter(ids)
        .map(|id| async move {
            let url = format!("{base}/api/v1/workflows/runs/{id}?include_logs=false");
            let run = json_of(http.get(url).bearer_auth(token)).await?;
            let nodes = run["node_runs"].as_array().map_or(0, Vec::len);
            Ok((id, nodes))
        })
        .buffered(in_flight)
        .collect()
        .await;
    runs.into_iter().collect()
}

/// The same over GraphQL, one query.
async fn graphql(http: &reqwest::Client, base: &str, token: &str, wf: &str) -> anyhow::Result<Vec<(String, usize)>> {
    let body = json!({"query": QUERY, "variables": {"w": wf}});
    let data = json_of(http.post(format!("{base}/graphql")).bearer_auth(token).json(&body)).await?;
    anyhow::ensure!(data["errors"].is_null(), "{data}");
    Ok(data["data"]["workflow"]["runs"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| (r["id"].as_str().unwrap_or_default().to_owned(), r["nodes"].as_array().map_or(0, Vec::len)))
        .collect())
}

/// Sorted milliseconds of `REPS` timed calls of `once`, after `WARMUP` untimed ones; every
/// answer must be `expected`.
async fn time<F, Fut>(expected: &[(String, usize)], once: F) -> anyhow::Result<Vec<f64>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<(String, usize)>>>,
{
    let mut samples = Vec::with_capacity(REPS);
    for i in 0..WARMUP + REPS {
        let started = Instant::now();
        let got = once().await?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        anyhow::ensure!(got == expected, "a different answer: {got:?}");
        if i >= WARMUP {
            samples.push(took);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let limits = json!({"per_user_per_minute": 100_000, "per_tenant_per_minute": 100_000});
        let platform = Platform::builder()
            .service(Service::Workflow)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
            .app_settings(Service::Gateway, json!({"rate_limits": {"workflow_execute": limits}}))
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(60)).await?;
        let base = platform.http_url(Service::Gateway);
        let suffix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_micros() & 0xff_ffff_ffff;
        let token = platform.token(&format!("gqlbench{suffix:x}"), "bench", &["admin"]);
        let http = reqwest::Client::new();

        let graph = json!({
            "nodes": [
                {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
                {"id": "double", "type": "transform", "data": {"mapping": {"n": "{{input.n}}"}}, "position": {"x": 200, "y": 0}},
                {"id": "end", "type": "end", "data": {}, "position": {"x": 400, "y": 0}},
            ],
            "edges": [
                {"id": "e1", "source": "start", "target": "double"},
                {"id": "e2", "source": "double", "target": "end"},
            ],
        });
        let wf = json_of(
            http.post(format!("{base}/api/v1/workflows"))
                .bearer_auth(&token)
                .json(&json!({"name": "bench", "graph": graph})),
        )
        .await?;
        let wf = wf["id"].as_str().unwrap_or_default().to_owned();
        for n in 0..RUNS {
            json_of(
                http.post(format!("{base}/api/v1/workflows/{wf}/execute"))
                    .bearer_auth(&token)
                    .json(&json!({"input": {"n": n}})),
            )
            .await?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let url = format!("{base}/api/v1/workflows/{wf}/runs?page_size={RUNS}&status=succeeded");
            let done = json_of(http.get(url).bearer_auth(&token)).await?;
            if done["runs"].as_array().map_or(0, Vec::len) == RUNS {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "the runs did not finish: {done}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Both sides must give the same runs with the same nodes.
        let expected = rest(&http, &base, &token, &wf, 1).await?;
        anyhow::ensure!(expected.len() == RUNS && expected.iter().all(|(_, n)| *n == 3), "{expected:?}");
        anyhow::ensure!(graphql(&http, &base, &token, &wf).await? == expected, "GraphQL's runs differ from REST's");

        let sequential = time(&expected, || rest(&http, &base, &token, &wf, 1)).await?;
        let concurrent = time(&expected, || rest(&http, &base, &token, &wf, IN_FLIGHT)).await?;
        let gql = time(&expected, || graphql(&http, &base, &token, &wf)).await?;

        let line = |name: &str, s: &[f64]| {
            println!("  {name}: p50 {:.2} ms, p99 {:.2} ms", percentile(s, 0.5), percentile(s, 0.99));
        };
        println!(
            "GraphQL vs REST, {RUNS} finished runs of a 3-node workflow with their node timelines ({REPS} timed repetitions each, workflow + gateway in-process):"
        );
        line(&format!("REST, list + {RUNS} run reads one at a time"), &sequential);
        line(&format!("REST, list + {RUNS} run reads {IN_FLIGHT} in flight"), &concurrent);
        line("GraphQL, one query", &gql);
        let ratio = |a: &[f64], b: &[f64], p: f64| percentile(a, p) / percentile(b, p);
        println!(
            "  GraphQL / REST ({IN_FLIGHT} in flight): p50 {:.2}x, p99 {:.2}x; GraphQL / REST (one at a time): p50 {:.2}x, p99 {:.2}x (target: within 1.5x of REST)",
            ratio(&gql, &concurrent, 0.5),
            ratio(&gql, &concurrent, 0.99),
            ratio(&gql, &sequential, 0.5),
            ratio(&gql, &sequential, 0.99),
        );
        platform.stop().await
    })
}
