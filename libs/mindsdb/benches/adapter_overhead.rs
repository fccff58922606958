//! Client overhead against raw HTTP, in the same run: `SELECT 1` through `MindsdbClient`
//! (headers, concurrency permit, retry wrapper, metrics, answer parsing) against the same
//! request sent with a bare reqwest client, interleaved so both see the same server load.
//! Also prints two adapter operations for scale.
//!
//! Needs a running MindsDB (`scripts/mindsdb.sh start`); `GETLOOD_TEST_MINDSDB_URL` overrides
//! the URL, `BENCH_ITERS` the sample count (default 300).

#![allow(clippy::print_stdout, clippy::unwrap_used)] // a benchmark reports on stdout

use std::time::{Duration, Instant};

use getlood_common::TenantId;
use getlood_mindsdb::{MindsdbClient, MindsdbConfig, ProjectAdapter, SqlBuilder, TENANT_USER_ID, TenantContext};
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{name:<34} n={:<5} p50={:>8.2} ms  p99={:>8.2} ms",
        samples.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    (p50, p99)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::var("GETLOOD_TEST_MINDSDB_URL").unwrap_or_else(|_| "http://127.0.0.1:47334".to_owned());
    let iters: usize = std::env::var("BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let client = MindsdbClient::new(&MindsdbConfig { url: url.clone(), ..MindsdbConfig::default() }).unwrap();
    let ctx = TenantContext::new(TenantId::parse("bench").unwrap(), "bench");
    let projects = ProjectAdapter::new(client.clone());
    projects.ensure(&ctx).await.unwrap();

    let raw = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
    let body = json!({"query": "SELECT 1", "params": {}, "context": {"db": ctx.project().as_str()}});
    let select1 = SqlBuilder::new().kw("SELECT 1").build();

    let raw_once = || async {
        let t = Instant::now();
        let resp = raw
            .post(format!("{url}/api/sql/query"))
            .header("company-id", "bench")
            .header("user-id", TENANT_USER_ID)
            .json(&body)
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "table");
        t.elapsed()
    };
    let client_once = || async {
        let t = Instant::now();
        client.query_idempotent(&ctx, "bench.select1", &select1).await.unwrap();
        t.elapsed()
    };

    for _ in 0..30 {
        raw_once().await;
        client_once().await;
    }
    let (mut raw_s, mut client_s, mut list_s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iters {
        // Alternate which goes first so neither always hits a warmer server.
        if i % 2 == 0 {
            raw_s.push(raw_once().await);
            client_s.push(client_once().await);
        } else {
            client_s.push(client_once().await);
            raw_s.push(raw_once().await);
        }
        if i % 3 == 0 {
            let t = Instant::now();
            projects.list(&ctx).await.unwrap();
            list_s.push(t.elapsed());
        }
    }
    println!("MindsDB {url}, {iters} interleaved samples each (sequential, keep-alive)");
    let (raw50, raw99) = summary("raw HTTP SELECT 1", raw_s);
    let (c50, c99) = summary("MindsdbClient SELECT 1", client_s);
    summary("ProjectAdapter::list (info schema)", list_s);
    let pct = |a: Duration, b: Duration| (a.as_secs_f64() / b.as_secs_f64() - 1.0) * 100.0;
    println!("client overhead: p50 {:+.1} %  p99 {:+.1} %  (target <= 5 % at p50)", pct(c50, raw50), pct(c99, raw99));
}
