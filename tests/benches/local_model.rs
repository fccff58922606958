//! The README's first conversation on the default local model, in one run:
//! * through the gateway (`POST /v1/chat/completions`, stream): skill, `dashboard-builder` agent
//!   on the local model, "Crée-moi un dashboard analytics" — all five pipeline stages, MindsDB's
//!   agent (a planning call and an answering call to the model, whole answer in one event);
//! * the same prompt straight to the model server (`POST :18080/v1/chat/completions`, stream).
//!
//! Time to first token is the time to the first answer text; tokens/s is the answer's tokens
//! (counted by the model server's own `/tokenize`) over the whole request. Straight to the model
//! the decode rate (tokens after the first over the time after it) is printed too.
//!
//! Run: `make bench` (or `cargo bench -p getlood-tests --bench local_model`) with MindsDB and the
//! local model up (`scripts/mindsdb.sh start`, `scripts/llm.sh start`).

// Test harnesses spawn their servers and clients directly: they end with the bench.
#![allow(clippy::disallowed_methods)]
// A bench's output is its figures.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};

const PROMPT: &str = "Crée-moi un dashboard analytics";
const MODEL_URL: &str = "http://127.0.0.1:18080/v1";
/// Conversations measured on each side, interleaved.
const SAMPLES: usize = 3;

/// One streamed answer: time to its first text, total time, and the text.
struct Sample {
    first: Duration,
    total: Duration,
    text: String,
}

/// Streams `req` (an OpenAI chat completion) to the end.
async fn stream(req: reqwest::RequestBuilder) -> anyhow::Result<Sample> {
    let started = Instant::now();
    let resp = req.send().await?;
    anyhow::ensure!(resp.status().is_success(), "{}: {}", resp.status(), resp.text().await?);
    let mut body = resp.bytes_stream();
    let (mut first, mut text, mut buf) = (None, String::new(), String::new());
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            let Some(data) = line.trim().strip_prefix("data: ") else { continue };
            if data == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(data)?;
            anyhow::ensure!(v.get("error").is_none(), "error in the stream: {v}");
            if let Some(delta) = v["choices"][0]["delta"]["content"].as_str().filter(|d| !d.is_empty()) {
                first.get_or_insert_with(|| started.elapsed());
                text.push_str(delta);
            }
        }
    }
    let total = started.elapsed();
    Ok(Sample { first: first.unwrap_or(total), total, text })
}

async fn tokens(http: &reqwest::Client, text: &str) -> anyhow::Result<usize> {
    let v: Value =
        http.post("http://127.0.0.1:18080/tokenize").json(&json!({"content": text})).send().await?.json().await?;
    Ok(v["tokens"].as_array().map_or(0, Vec::len))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    getlood_tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build()?;
    if http.get(format!("{MODEL_URL}/models")).send().await.is_err() {
        println!("local model: not running at {MODEL_URL} (scripts/llm.sh start); no figures");
        return Ok(());
    }
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::Pipeline)
        .service(Service::Gateway)
        .app_settings(Service::Pipeline, json!({"memory": {"enabled": false}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let token = platform.token(&format!("bench_llm_{}", std::process::id()), "bench", &["admin"]);
    let base = platform.http_url(Service::Gateway);
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).bearer_auth(&token).json(&body);
    let r = post("/api/v1/skills", json!({"name": "ui-generation", "description": "builds UIs"})).send().await?;
    anyhow::ensure!(r.status().is_success(), "skill: {}", r.text().await?);
    let r = post(
        "/api/v1/agents",
        json!({"name": "dashboard-builder", "skills": ["ui-generation"],
               "model": {"provider": "openai", "model_name": "gpt-4", "base_url": MODEL_URL, "api_key": "sk-local"}}),
    )
    .send()
    .await?;
    anyhow::ensure!(r.status().is_success(), "agent: {}", r.text().await?);

    let chat = json!({"model": "getlood", "stream": true, "messages": [{"role": "user", "content": PROMPT}]});
    let direct =
        json!({"model": "smollm2-135m-instruct", "stream": true, "messages": [{"role": "user", "content": PROMPT}]});
    let (mut gw, mut md) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        gw.push(stream(post("/v1/chat/completions", chat.clone())).await?);
        md.push(stream(http.post(format!("{MODEL_URL}/chat/completions")).json(&direct)).await?);
    }
    let mut rows = Vec::new();
    for (name, samples) in [("gateway (5 stages, MindsDB agent)", &gw), ("model server, same prompt", &md)] {
        let (mut ttft, mut rate, mut decode) = (Vec::new(), Vec::new(), Vec::new());
        for s in samples {
            let n = tokens(&http, &s.text).await? as f64;
            ttft.push(s.first.as_secs_f64() * 1000.0);
            rate.push(n / s.total.as_secs_f64());
            let after_first = (s.total - s.first).as_secs_f64();
            if n > 1.0 && after_first > 0.01 {
                decode.push((n - 1.0) / after_first);
            }
        }
        rows.push((name, median(ttft), median(rate), if decode.is_empty() { None } else { Some(median(decode)) }));
    }
    println!("README conversation on the local model, {SAMPLES} runs each, interleaved (medians):");
    for (name, ttft, rate, decode) in &rows {
        let decode = decode.map_or_else(|| "whole answer in one event".to_owned(), |d| format!("decode {d:.0} tok/s"));
        println!("  {name:<36} first token {ttft:>8.0} ms   {rate:>6.1} tok/s overall   ({decode})");
    }
    println!("  time to first token, gateway / model: {:.1}x", rows[0].1 / rows[1].1.max(1e-9));
    platform.stop().await
}
