//! Issue 4's figures, measured in one run against real MindsDB with the OpenAI double as LLM:
//! * a cached agent read through the gateway (`GET /api/v1/agents/{id}`: gateway → registry,
//!   served from the registry's cache) against the same read straight from MindsDB's REST API
//!   (`GET /api/projects/{p}/agents/{name}`), throughput with 16 concurrent clients;
//! * chat latency through the gateway (`POST /v1/chat/completions`, all five pipeline stages,
//!   turn persisted) against MindsDB's own agent stream (`POST .../completions/stream`, read to
//!   the end), p50 and p99 of sequential requests.
//!
//! Run: `make bench` (or `cargo bench -p getlood-tests --bench chat`); MindsDB must be up
//! (`scripts/mindsdb.sh start`).

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
// A bench's output is its figures.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

const PROMPT: &str = "Crée-moi un dashboard analytics";
/// Key of the per-request time outside stage 4 in the stage table.
const OUTSIDE: &str = "~outside the agent call";
/// Chat requests measured on each side.
const CHAT_SAMPLES: usize = 40;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Requests per second of `make_req` run by `concurrency` clients for `secs`.
async fn throughput<F>(secs: u64, concurrency: usize, make_req: F) -> f64
where
    F: Fn() -> reqwest::RequestBuilder + Clone + Send + 'static,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let counts = futures::stream::iter(0..concurrency)
        .map(|_| {
            let make_req = make_req.clone();
            async move {
                let mut ok = 0u64;
                while Instant::now() < deadline {
                    if let Ok(r) = make_req().send().await
                        && r.status().is_success()
                        && r.bytes().await.is_ok()
                    {
                        ok += 1;
                    }
                }
                ok
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    counts.iter().sum::<u64>() as f64 / secs as f64
}

/// Requests per second of `wrk` (one thread, `connections` keep-alive connections, `secs`
/// seconds) GETting `url` with `headers`, when wrk is installed: a C load generator in its own
/// process measures the server rather than an in-process Rust client sharing its two cores.
/// None without wrk; an error when any response was not a 2xx.
fn wrk_rps(url: &str, headers: &[(&str, &str)], secs: u64, connections: usize) -> anyhow::Result<Option<f64>> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s")]);
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    let out = match cmd.arg(url).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw failed responses from {url}: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output: {text}"))?;
    Ok(Some(rps))
}

async fn latencies<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        f().await?;
        out.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    // reqwest panics on its first client unless a TLS provider is installed.
    getlood_tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    llm.reply_when(PROMPT, "Voici votre dashboard analytics.");
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::Pipeline)
        .service(Service::Gateway)
        .app_settings(
            Service::Gateway,
            json!({"chat_rate_limit_per_minute": 1_000_000, "tenant_rate_limit_per_minute": 0}),
        )
        .app_settings(Service::Pipeline, json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-bench"}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let tenant = format!("bench_{}", std::process::id());
    let token = platform.token(&tenant, "bench", &["admin"]);
    let base = platform.http_url(Service::Gateway);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).bearer_auth(&token).json(&body).send();
    let r = post("/api/v1/skills", json!({"name": "ui-generation", "description": "builds UIs"})).await?;
    anyhow::ensure!(r.status().is_success(), "skill: {}", r.text().await?);
    let r = post(
        "/api/v1/agents",
        json!({"name": "dashboard-builder", "skills": ["ui-generation"],
               "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-bench"}}),
    )
    .await?;
    let agent: Value = r.json().await?;
    let id = agent["id"].as_str().or_else(|| agent["agent"]["id"].as_str()).unwrap_or_default().to_owned();
    anyhow::ensure!(!id.is_empty(), "agent not created: {agent}");
    let mindsdb_name = format!("agent_{}", id.replace('-', ""));
    let mindsdb = getlood_testkit::mindsdb_url();
    let project = format!("t_{tenant}");

    // --- cached agent read ---
    let gw_read = {
        let (http, url, token) = (http.clone(), format!("{base}/api/v1/agents/{id}"), token.clone());
        move || http.get(&url).bearer_auth(&token)
    };
    let md_read = {
        let (http, url, tenant) =
            (http.clone(), format!("{mindsdb}/api/projects/{project}/agents/{mindsdb_name}"), tenant.clone());
        move || http.get(&url).header("company-id", &tenant).header("user-id", "getlood")
    };
    anyhow::ensure!(gw_read().send().await?.status().is_success(), "gateway read failed");
    anyhow::ensure!(md_read().send().await?.status().is_success(), "mindsdb read failed");
    let _ = throughput(1, 16, gw_read.clone()).await; // warm-up: fills the cache
    let bearer = format!("Bearer {token}");
    let gw_wrk = wrk_rps(&format!("{base}/api/v1/agents/{id}"), &[("Authorization", &bearer)], 5, 16)?;
    let md_wrk = wrk_rps(
        &format!("{mindsdb}/api/projects/{project}/agents/{mindsdb_name}"),
        &[("company-id", &tenant), ("user-id", "getlood")],
        5,
        16,
    )?;
    let (gw_rps, md_rps, client) = match (gw_wrk, md_wrk) {
        (Some(g), Some(m)) => (g, m, "wrk, 16 connections"),
        _ => (
            throughput(5, 16, gw_read).await,
            throughput(5, 16, md_read).await,
            "in-process reqwest, 16 clients (install wrk for an external load generator)",
        ),
    };

    // --- chat latency ---
    // Both warmed up first (connections, caches, MindsDB's agent object), then measured
    // interleaved so a noisy neighbour slows both sides alike.
    let stages = std::sync::Mutex::new(std::collections::BTreeMap::<String, Vec<f64>>::new());
    let gw_once = || {
        let req = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&token)
            .json(&json!({"model": "getlood", "messages": [{"role": "user", "content": PROMPT}]}));
        let stages = &stages;
        async move {
            let started = Instant::now();
            let r = req.send().await?;
            anyhow::ensure!(r.status().is_success(), "chat: {}", r.status());
            let body: Value = r.json().await?;
            anyhow::ensure!(body["getlood"]["intent"] == "GENERATE_UI", "{body}");
            let total = started.elapsed().as_secs_f64() * 1000.0;
            let mut stages = stages.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut execution = 0.0;
            for t in body["getlood"]["stage_timings"].as_array().into_iter().flatten() {
                let name = t["stage"].as_str().unwrap_or("?").to_lowercase();
                let ms = t["duration_ms"].as_f64().unwrap_or(0.0);
                if name == "execution" {
                    execution = ms;
                }
                stages.entry(name).or_default().push(ms);
            }
            // Per request, so MindsDB's own variance cancels out: everything the client waited
            // for except the agent call (QueryAgent through the registry to MindsDB).
            stages.entry(OUTSIDE.to_owned()).or_default().push(total - execution);
            Ok(())
        }
    };
    let md_once = || {
        let req = http
            .post(format!("{mindsdb}/api/projects/{project}/agents/{mindsdb_name}/completions/stream"))
            .header("company-id", &tenant)
            .header("user-id", "getlood")
            .json(&json!({"messages": [{"role": "user", "content": PROMPT}]}));
        async move {
            let r = req.send().await?;
            anyhow::ensure!(r.status().is_success(), "mindsdb stream: {}", r.status());
            let body = r.text().await?;
            anyhow::ensure!(body.contains("Voici votre dashboard"), "{body}");
            Ok(())
        }
    };
    latencies(3, gw_once).await?;
    latencies(3, md_once).await?;
    stages.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clear();
    let (mut gw_chat, mut md_chat) = (Vec::new(), Vec::new());
    for _ in 0..CHAT_SAMPLES {
        gw_chat.extend(latencies(1, gw_once).await?);
        md_chat.extend(latencies(1, md_once).await?);
    }
    gw_chat.sort_by(f64::total_cmp);
    md_chat.sort_by(f64::total_cmp);

    println!("cached agent read, 5 s each, {client}:");
    println!("  gateway GET /api/v1/agents/{{id}}         {gw_rps:>9.0} req/s");
    println!("  MindsDB GET /api/projects/../agents/..   {md_rps:>9.0} req/s");
    println!("  gateway / MindsDB throughput: {:.1}x (target >= 100x)", gw_rps / md_rps.max(1e-9));
    let (g50, g99, m50, m99) =
        (percentile(&gw_chat, 0.5), percentile(&gw_chat, 0.99), percentile(&md_chat, 0.5), percentile(&md_chat, 0.99));
    println!("chat latency, {CHAT_SAMPLES} sequential requests each, interleaved (double LLM behind MindsDB):");
    println!("  gateway /v1/chat/completions (5 stages)  p50 {g50:>7.1} ms  p99 {g99:>7.1} ms");
    println!("  MindsDB agent stream                     p50 {m50:>7.1} ms  p99 {m99:>7.1} ms");
    println!("  gateway overhead at p50: {:.1} ms (target <= 5 ms)", g50 - m50);
    let stages = stages.into_inner().map_err(|_| anyhow::anyhow!("poisoned"))?;
    let breakdown: Vec<String> = stages
        .into_iter()
        .map(|(stage, mut v)| {
            v.sort_by(f64::total_cmp);
            format!("{stage} {:.0}", percentile(&v, 0.5))
        })
        .collect();
    println!("  per-request p50s (ms): {}", breakdown.join(", "));
    platform.stop().await
}
