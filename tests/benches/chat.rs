//! Issue 4's figures, measured in one run against real MindsDB with the OpenAI double as LLM:
//! * a cached agent read through the gateway (`GET /api/v1/agents/{id}`: gateway → registry,
//!   served from the registry's cache) against the same read straight from MindsDB's REST API
//!   (`GET /api/projects/{p}/agents/{name}`), throughput with 16 concurrent clients;
//! * chat latency through the gateway (`POST /v1/chat/completions`, all five pipeline stages,
//!   turn persisted) against MindsDB's own agent stream (`POST .../completions/stream`, read to
//!   the end), p50 and p99 of sequential requests.
//!
//! Issue 17's peers side by side, the same methodology for each path: the OpenAI double alone
//! (the baseline), LiteLLM's proxy in front of that double, and the gateway's chat. Each one's
//! added latency over the baseline at p50 and p99 (the same client, `CHAT_SAMPLES` sequential
//! requests each, interleaved), and its throughput at saturation (wrk, `SATURATION_CONNECTIONS`
//! connections, `SATURATION_SECS` each). LiteLLM comes from `scripts/install-litellm.sh .tools`
//! (`make bench` runs it); without it that part says why and the rest is still printed.
//!
//! Run: `make bench` (or `cargo bench -p getlood-tests --bench chat`); MindsDB must be up
//! (`scripts/mindsdb.sh start`).

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
// A bench's output is its figures.
#![allow(clippy::print_stdout)]

#[path = "support/breakdown.rs"]
mod breakdown;

use std::os::unix::process::CommandExt as _;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

const PROMPT: &str = "Crée-moi un dashboard analytics";
/// Key of the per-request time outside stage 4 in the stage table.
const OUTSIDE: &str = "~outside the agent call";
/// Chat requests measured on each side.
const CHAT_SAMPLES: usize = 40;
/// Connections (wrk) or clients (in-process fallback) of the saturation runs.
const SATURATION_CONNECTIONS: usize = 32;
/// Length of each saturation run.
const SATURATION_SECS: u64 = 10;
/// The model name LiteLLM's configuration maps to the double.
const LITELLM_MODEL: &str = "gpt-test";
/// What each compared chat path does, printed with its figures.
const PATHS: &str = "  what each path does:
    double   the OpenAI double alone (in the bench process): the baseline, one HTTP hop
    LiteLLM  litellm proxy (1 uvicorn worker, no database, no master key, no callbacks) -> double:
             a thin proxy, one upstream call per request
    GETLOOD  gateway /v1/chat/completions (auth, rate limits) -> pipeline: intent (keyword
             rules, the LLM only when they are unsure), agent selection, routing, agent registry
             (QueryAgent) -> MindsDB agent (pydantic-ai) -> double, turn persisted in Postgres";

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
/// seconds) on `url` with `headers` (a GET, or a POST of `body` as JSON), when wrk is
/// installed: a C load generator in its own process measures the server rather than an
/// in-process Rust client sharing its two cores. None without wrk; an error when any response
/// was not a 2xx or any request failed (timeouts included: 30 s each).
fn wrk_rps(
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
    secs: u64,
    connections: usize,
) -> anyhow::Result<Option<f64>> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args(["-t1", &format!("-c{connections}"), &format!("-d{secs}s"), "--timeout", "30s"]);
    for (name, value) in headers {
        cmd.args(["-H", &format!("{name}: {value}")]);
    }
    // wrk sends a body only from a Lua script.
    let script = match body {
        Some(body) => {
            let path = std::env::temp_dir().join(format!("getlood-bench-wrk-{}.lua", std::process::id()));
            std::fs::write(&path, format!("wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\n"))?;
            cmd.args(["-H", "Content-Type: application/json", "-s"]).arg(&path);
            Some(path)
        }
        None => None,
    };
    let out = cmd.arg(url).output();
    if let Some(path) = script {
        let _ = std::fs::remove_file(path);
    }
    let out = match out {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "wrk failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(!text.contains("Non-2xx"), "wrk saw failed responses from {url}: {text}");
    anyhow::ensure!(!text.contains("Socket errors"), "wrk saw failed requests on {url}: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output: {text}"))?;
    Ok(Some(rps))
}

/// LiteLLM's proxy, a child process in its own process group; stopped when dropped.
struct LiteLlm {
    child: std::process::Child,
    url: String,
    dir: std::path::PathBuf,
}

impl Drop for LiteLlm {
    fn drop(&mut self) {
        // The whole group: the proxy may run its server in a child process.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts `litellm` (`BENCH_LITELLM`, else `.tools/bin/litellm` of the workspace) on a free
/// port with one model, [`LITELLM_MODEL`], routed to the OpenAI-compatible `upstream`, and
/// waits until it answers a chat.
async fn start_litellm(http: &reqwest::Client, upstream: &str) -> anyhow::Result<LiteLlm> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(std::path::Path::new("."));
    let bin =
        std::env::var_os("BENCH_LITELLM").map_or_else(|| root.join(".tools/bin/litellm"), std::path::PathBuf::from);
    anyhow::ensure!(bin.exists(), "not installed ({} missing): run scripts/install-litellm.sh .tools", bin.display());
    let dir = std::env::temp_dir().join(format!("getlood-bench-litellm-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "model_list:\n  - model_name: {LITELLM_MODEL}\n    litellm_params:\n      model: openai/{LITELLM_MODEL}\n      api_base: {upstream}\n      api_key: sk-bench\n"
        ),
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::fs::File::create(dir.join("litellm.log"))?;
    let child = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&config)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--num_workers", "1"])
        // The model price list is fetched from GitHub at import otherwise; this machine may not
        // reach it, and the bench must not depend on it.
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()?;
    let mut proxy = LiteLlm { child, url: format!("http://127.0.0.1:{port}"), dir };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = proxy.child.try_wait()? {
            let log = std::fs::read_to_string(proxy.dir.join("litellm.log")).unwrap_or_default();
            let tail: String =
                log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            anyhow::bail!("litellm exited ({status}) before it was ready:\n{tail}");
        }
        let ready = http.get(format!("{}/health/liveliness", proxy.url)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "litellm not ready after 180 s (log: {})", proxy.dir.display());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Ready means answering a chat through the double, not only its health route.
    let r = http.post(format!("{}/v1/chat/completions", proxy.url)).json(&openai_chat(LITELLM_MODEL)).send().await?;
    anyhow::ensure!(r.status().is_success(), "litellm chat: {} {}", r.status(), r.text().await?);
    Ok(proxy)
}

/// The chat request every compared path gets (the gateway's with model `getlood`).
fn openai_chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": PROMPT}]})
}

/// One non-streamed chat to an OpenAI-compatible `url`, checked to carry the scripted answer.
async fn openai_once(req: reqwest::RequestBuilder) -> anyhow::Result<()> {
    let r = req.send().await?;
    anyhow::ensure!(r.status().is_success(), "chat: {}", r.status());
    let body: Value = r.json().await?;
    let content = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    anyhow::ensure!(content.contains("Voici votre dashboard"), "{body}");
    Ok(())
}

/// Requests per second of POSTs of `body` to `url` at saturation: wrk with
/// `SATURATION_CONNECTIONS` connections when installed, else as many in-process clients.
async fn saturation(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: &Value,
) -> anyhow::Result<(f64, &'static str)> {
    let headers: Vec<(&str, &str)> = bearer.map(|b| ("Authorization", b)).into_iter().collect();
    if let Some(rps) = wrk_rps(url, &headers, Some(body), SATURATION_SECS, SATURATION_CONNECTIONS)? {
        return Ok((rps, "wrk"));
    }
    let (http, url, bearer, body) = (http.clone(), url.to_owned(), bearer.map(str::to_owned), body.clone());
    let make_req = move || {
        let req = http.post(&url).json(&body);
        match &bearer {
            Some(b) => req.header("authorization", b),
            None => req,
        }
    };
    Ok((throughput(SATURATION_SECS, SATURATION_CONNECTIONS, make_req).await, "in-process reqwest"))
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
    // TEST_LOG=1 (and TEST_LOG_SPANS=1 for span timings) shows the in-process services' logs.
    getlood_testkit::init_test_logging();
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
            // No chat cap either: the saturation run holds SATURATION_CONNECTIONS turns in flight.
            json!({"chat_rate_limit_per_minute": 1_000_000, "tenant_rate_limit_per_minute": 0,
                   "tenant_max_concurrent_chats": 0}),
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
    let gw_wrk = wrk_rps(&format!("{base}/api/v1/agents/{id}"), &[("Authorization", &bearer)], None, 5, 16)?;
    let md_wrk = wrk_rps(
        &format!("{mindsdb}/api/projects/{project}/agents/{mindsdb_name}"),
        &[("company-id", &tenant), ("user-id", "getlood")],
        None,
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
    // The peers: the double alone (baseline) and LiteLLM in front of it, measured in the same
    // interleaved loop with the same client. A LiteLLM that cannot start or fails is reported,
    // never a reason to drop the other figures.
    let mut litellm = start_litellm(&http, &llm.base_url()).await.map_err(|e| format!("{e:#}"));
    let double_url = format!("{}/chat/completions", llm.base_url());
    let double_once = || openai_once(http.post(&double_url).json(&openai_chat(LITELLM_MODEL)));
    let litellm_url = litellm.as_ref().map(|l| format!("{}/v1/chat/completions", l.url)).unwrap_or_default();
    let litellm_once = || openai_once(http.post(&litellm_url).json(&openai_chat(LITELLM_MODEL)));
    latencies(3, gw_once).await?;
    latencies(3, md_once).await?;
    latencies(3, double_once).await?;
    if litellm.is_ok()
        && let Err(e) = latencies(3, litellm_once).await
    {
        litellm = Err(format!("warm-up chat failed: {e:#}"));
    }
    // Counted, not assumed: what one GETLOOD chat asks of the double.
    llm.clear_calls();
    gw_once().await?;
    let gw_double_calls = llm.calls_to("/v1/chat/completions").len();
    stages.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clear();
    // Where the gateway's chats spend their time, from the services' own histograms (gRPC
    // methods, MindsDB calls, HTTP routes): the other paths do not touch the platform.
    let admin = platform.admin_url(Service::Gateway);
    let before = breakdown::histograms(&http, &admin).await?;
    let (mut gw_chat, mut md_chat, mut double_chat, mut lite_chat) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CHAT_SAMPLES {
        gw_chat.extend(latencies(1, gw_once).await?);
        md_chat.extend(latencies(1, md_once).await?);
        double_chat.extend(latencies(1, double_once).await?);
        if litellm.is_ok() {
            match latencies(1, litellm_once).await {
                Ok(v) => lite_chat.extend(v),
                Err(e) => litellm = Err(format!("chat failed during the latency run: {e:#}")),
            }
        }
    }
    let after = breakdown::histograms(&http, &admin).await?;
    for v in [&mut gw_chat, &mut md_chat, &mut double_chat, &mut lite_chat] {
        v.sort_by(f64::total_cmp);
    }

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
    let p50s: Vec<String> = stages
        .into_iter()
        .map(|(stage, mut v)| {
            v.sort_by(f64::total_cmp);
            format!("{stage} {:.0}", percentile(&v, 0.5))
        })
        .collect();
    println!("  per-request p50s (ms): {}", p50s.join(", "));
    breakdown::print_breakdown(&format!("{CHAT_SAMPLES} gateway chats"), &before, &after);

    // --- peers side by side ---
    println!(
        "peers in front of the same OpenAI double: latency over {CHAT_SAMPLES} sequential requests each, interleaved, one reqwest client; throughput at saturation, {SATURATION_CONNECTIONS} connections, {SATURATION_SECS} s each:"
    );
    println!("{PATHS}");
    let (d50, d99) = (percentile(&double_chat, 0.5), percentile(&double_chat, 0.99));
    println!("  double (baseline)   p50 {d50:>7.1} ms  p99 {d99:>7.1} ms");
    match &litellm {
        Ok(_) => {
            let (l50, l99) = (percentile(&lite_chat, 0.5), percentile(&lite_chat, 0.99));
            println!(
                "  LiteLLM -> double   p50 {l50:>7.1} ms  p99 {l99:>7.1} ms  added: p50 {:>7.1} ms  p99 {:>7.1} ms",
                l50 - d50,
                l99 - d99
            );
        }
        Err(e) => println!("  LiteLLM -> double   not measured: {e}"),
    }
    println!(
        "  GETLOOD -> double   p50 {g50:>7.1} ms  p99 {g99:>7.1} ms  added: p50 {:>7.1} ms  p99 {:>7.1} ms",
        g50 - d50,
        g99 - d99
    );
    println!("  one GETLOOD chat made {gw_double_calls} call(s) to the double (LiteLLM: 1, the baseline: 1)");
    println!("  throughput at saturation:");
    llm.clear_calls();
    let lines: [(&str, anyhow::Result<(f64, &str)>); 3] = [
        ("double (baseline)", saturation(&http, &double_url, None, &openai_chat(LITELLM_MODEL)).await),
        (
            "LiteLLM -> double",
            match &litellm {
                Ok(_) => saturation(&http, &litellm_url, None, &openai_chat(LITELLM_MODEL)).await,
                Err(e) => Err(anyhow::anyhow!("not measured: {e}")),
            },
        ),
        ("GETLOOD -> double", {
            llm.clear_calls();
            saturation(&http, &format!("{base}/v1/chat/completions"), Some(&bearer), &openai_chat("getlood")).await
        }),
    ];
    for (label, result) in lines {
        match result {
            Ok((rps, client)) => println!("  {label:<18}  {rps:>9.0} req/s at saturation ({client})"),
            Err(e) => println!("  {label:<18}  saturation failed: {e:#}"),
        }
    }
    drop(litellm);
    platform.stop().await
}
