//! Desktop sync under load, printed in one run (about a minute):
//! * 1,000 WebSocket clients on one desktop;
//! * 2,000 window moves a second sent through the gateway's REST API (two windows being
//!   dragged, 1,000 moves a second each; desktop-state coalesces them, latest wins);
//! * the p50/p99/max from a move to its delivery at every client (target: p99 under 50 ms). A
//!   move counts as delivered at a client when the first `window.moved` event whose geometry
//!   includes it (or a later move of the same window) arrives there;
//! * gateway RSS with the 1,000 sockets open (target: under 150 MB).
//!
//! The gateway runs as its own process (`getlood gateway`) when `getlood` is built next to the
//! bench (`cargo build --release --bin getlood`), so its RSS is exact;
//! otherwise in-process, and the figure is the RSS growth of the whole bench process (clients
//! included). desktop-state and event-dispatcher run in-process. Knobs: `BENCH_WS_CLIENTS`,
//! `BENCH_WS_MOVES_PER_SEC`, `BENCH_WS_SECONDS`, `BENCH_WS_INFLIGHT` (moves in flight per window).

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_testkit::{Platform, Service, TEST_SECRET};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const WINDOWS: usize = 2;
/// Latency histogram: 1 ms buckets, the last one catches everything slower.
const BUCKETS: usize = 2001;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// The gateway under test: a child process, or a task in this process.
enum Gateway {
    Process(Child),
    InProcess(tokio_util::sync::CancellationToken),
}

impl Gateway {
    fn pid(&self) -> u32 {
        match self {
            Self::Process(child) => child.id(),
            Self::InProcess(_) => std::process::id(),
        }
    }

    fn stop(self) {
        match self {
            Self::Process(mut child) => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
                }
                let _ = child.wait();
            }
            Self::InProcess(token) => token.cancel(),
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn start_gateway(platform: &Platform) -> anyhow::Result<(Gateway, SocketAddr)> {
    let desktop = format!("http://{}", platform.get(Service::DesktopState).grpc_addr);
    let dispatcher = format!("http://{}", platform.get(Service::EventDispatcher).grpc_addr);
    if getlood_testkit::getlood_binary().is_some() {
        let (http, grpc) = (free_port()?, free_port()?);
        let child = getlood_testkit::service_command("gateway")?
            .env("GETLOOD_GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GETLOOD_GATEWAY_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
            .env("GETLOOD_GATEWAY_AUTH__HS256_SECRET", TEST_SECRET)
            .env("GETLOOD_GATEWAY_SERVICES__DESKTOP_STATE", &desktop)
            .env("GETLOOD_GATEWAY_SERVICES__EVENT_DISPATCHER", &dispatcher)
            .env("GETLOOD_GATEWAY_REDIS__URL", getlood_testkit::redis_url())
            .env("GETLOOD_GATEWAY_NATS__URL", getlood_testkit::nats_url())
            .env("GETLOOD_GATEWAY_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], http));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("http://{addr}/livez")).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "gateway binary did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Ok((Gateway::Process(child), addr));
    }
    let mut config = getlood_gateway::default_config();
    config.redis.url = getlood_testkit::redis_url();
    config.nats.url = getlood_testkit::nats_url();
    config.auth.hs256_secret = Some(secrecy::SecretString::from(TEST_SECRET));
    config.services.desktop_state = desktop;
    config.services.event_dispatcher = dispatcher;
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = getlood_server::Listeners::bind(loopback, loopback, loopback).await?;
    let addr = listeners.http_addr();
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(getlood_server::run_service(
        getlood_gateway::SPEC,
        config,
        None,
        listeners,
        token.clone(),
        getlood_gateway::run,
    ));
    Ok((Gateway::InProcess(token), addr))
}

/// When each move was sent and acknowledged, by window and move number (nanoseconds since
/// `epoch` + 1; 0: not yet).
struct Sent {
    epoch: Instant,
    times: Vec<Vec<AtomicU64>>,
    acks: Vec<Vec<AtomicU64>>,
}

impl Sent {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn stamp(&self, window: usize, n: usize) {
        self.times[window][n].store(self.now() + 1, Ordering::Relaxed);
    }

    fn ack(&self, window: usize, n: usize) {
        self.acks[window][n].store(self.now() + 1, Ordering::Relaxed);
    }
}

/// The `x` of the `"geometry":{...}` object of a frame, without parsing the whole JSON.
fn moved_x(frame: &str) -> Option<i64> {
    let geometry = frame.find("\"geometry\":{")?;
    let object = &frame[geometry..];
    let object = &object[..object.find('}')?];
    let start = object.find("\"x\":")? + "\"x\":".len();
    let digits: String = object[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '-').collect();
    digits.parse().ok()
}

fn percentile(hist: &[u64], p: f64) -> usize {
    let total: u64 = hist.iter().sum();
    let target = ((total as f64) * p).ceil() as u64;
    let mut seen = 0;
    for (ms, count) in hist.iter().enumerate() {
        seen += count;
        if seen >= target.max(1) {
            return ms;
        }
    }
    BUCKETS - 1
}

#[allow(clippy::print_stdout)]
async fn run() -> anyhow::Result<()> {
    let clients = usize::try_from(env_or("BENCH_WS_CLIENTS", 1000))?;
    let rate = env_or("BENCH_WS_MOVES_PER_SEC", 2000);
    let seconds = env_or("BENCH_WS_SECONDS", 15);
    // Moves in flight per dragged window; 64 sustains 2,000 moves/s on the 2-core CI machine.
    let inflight = usize::try_from(env_or("BENCH_WS_INFLIGHT", 64))?;

    let platform = Platform::builder()
        .service(Service::DesktopState)
        .service(Service::EventDispatcher)
        // Drag coalescing at 20 ms: a move waits at most that long to be written and published.
        .app_settings(Service::DesktopState, json!({"coalesce_interval": "20ms"}))
        .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let (gateway, addr) = start_gateway(&platform).await?;
    let mode = if matches!(gateway, Gateway::Process(_)) {
        "gateway process"
    } else {
        "whole bench process (in-process gateway, clients included)"
    };
    let base = format!("http://{addr}");
    let tenant = format!("bench_{}", std::process::id());
    let token = platform.token(&tenant, "alice", &["member"]);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    let desktop: Value = http
        .post(format!("{base}/api/v1/desktops"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let desktop = desktop["id"].as_str().unwrap_or_default().to_owned();
    let mut windows = Vec::new();
    for i in 0..WINDOWS {
        let w: Value = http
            .post(format!("{base}/api/v1/desktops/{desktop}/windows"))
            .bearer_auth(&token)
            .json(&json!({"app_id": format!("drag{i}"), "x": 0, "y": 0, "width": 400, "height": 300}))
            .send()
            .await?
            .json()
            .await?;
        windows.push(w["window"]["id"].as_str().unwrap_or_default().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(gateway.pid())?;

    // Connect the clients, 50 at a time.
    let per_window = usize::try_from(rate * seconds / WINDOWS as u64 + 10)?;
    let sent = Arc::new(Sent {
        epoch: Instant::now(),
        times: (0..WINDOWS).map(|_| (0..per_window).map(|_| AtomicU64::new(0)).collect()).collect(),
        acks: (0..WINDOWS).map(|_| (0..per_window).map(|_| AtomicU64::new(0)).collect()).collect(),
    });
    let frames = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let sockets = futures::stream::iter(0..clients)
        .map(|_| {
            let url = format!("ws://{addr}/ws/desktop/{desktop}");
            let token = token.clone();
            async move {
                let mut req = url.into_client_request()?;
                req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
                // tungstenite zero-fills its whole read buffer (128 KiB by default) on every
                // read: a thousand such clients spent a sixth of the machine in memset, CPU the
                // gateway under test then lacked. Frames here are a few hundred bytes.
                let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
                let (mut ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), false).await?;
                // The state frame first.
                while let Some(msg) = ws.next().await {
                    if matches!(msg?, Message::Text(_)) {
                        break;
                    }
                }
                anyhow::Ok(ws)
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut readers = Vec::new();
    for ws in sockets {
        let mut ws = ws?;
        connected.fetch_add(1, Ordering::Relaxed);
        let (sent, frames, stop, windows) = (sent.clone(), frames.clone(), stop.clone(), windows.clone());
        readers.push(tokio::spawn(async move {
            let mut hist = vec![0u64; BUCKETS];
            let mut from_ack = vec![0u64; BUCKETS];
            let mut delivered = [0i64; WINDOWS];
            loop {
                let msg = tokio::select! {
                    () = stop.cancelled() => break,
                    msg = ws.next() => msg,
                };
                let Some(Ok(Message::Text(text))) = msg else {
                    if msg.is_none() {
                        break;
                    }
                    continue;
                };
                frames.fetch_add(1, Ordering::Relaxed);
                let text = text.as_str();
                let Some(window) = windows.iter().position(|w| text.contains(w.as_str())) else { continue };
                let Some(x) = moved_x(text) else { continue };
                let now = u64::try_from(sent.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                // Every move of this window up to x is now visible here.
                for n in (delivered[window] + 1)..=x {
                    let Some(t) = usize::try_from(n).ok().and_then(|n| sent.times[window].get(n)) else { break };
                    let at = t.load(Ordering::Relaxed);
                    if at > 0 {
                        let ms = usize::try_from(now.saturating_sub(at - 1) / 1_000_000).unwrap_or(BUCKETS - 1);
                        hist[ms.min(BUCKETS - 1)] += 1;
                        // Not acknowledged yet counts as 0: the event beat the HTTP response.
                        let acked = usize::try_from(n).ok().map_or(0, |n| sent.acks[window][n].load(Ordering::Relaxed));
                        let ms = if acked == 0 { 0 } else { now.saturating_sub(acked - 1) / 1_000_000 };
                        from_ack[usize::try_from(ms).unwrap_or(BUCKETS - 1).min(BUCKETS - 1)] += 1;
                    }
                }
                delivered[window] = delivered[window].max(x);
            }
            (hist, from_ack)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_sockets = rss_kib(gateway.pid())?;

    // Drive the moves: each window's moves are numbered 1, 2, ... and sent with bounded
    // concurrency at rate / WINDOWS a second.
    let moves = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let drive_until = Instant::now() + Duration::from_secs(seconds);
    let mut drivers = Vec::new();
    for (k, window) in windows.iter().enumerate() {
        let (http, base, token, window, sent, moves, errors) =
            (http.clone(), base.clone(), token.clone(), window.clone(), sent.clone(), moves.clone(), errors.clone());
        drivers.push(tokio::spawn(async move {
            let period = Duration::from_nanos(1_000_000_000 * WINDOWS as u64 / rate.max(1));
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let limit = Arc::new(tokio::sync::Semaphore::new(inflight));
            let mut n = 0usize;
            while Instant::now() < drive_until && n + 1 < sent.times[k].len() {
                ticker.tick().await;
                n += 1;
                let Ok(permit) = limit.clone().acquire_owned().await else { break };
                let (http, url, token, sent, moves, errors) = (
                    http.clone(),
                    format!("{base}/api/v1/windows/{window}"),
                    token.clone(),
                    sent.clone(),
                    moves.clone(),
                    errors.clone(),
                );
                tokio::spawn(async move {
                    sent.stamp(k, n);
                    let ok = http.patch(url).bearer_auth(token).json(&json!({"x": n, "y": 10})).send().await;
                    match ok {
                        Ok(r) if r.status().is_success() => {
                            sent.ack(k, n);
                            moves.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => errors.fetch_add(1, Ordering::Relaxed),
                    };
                    drop(permit);
                });
            }
        }));
    }
    let drive_started = Instant::now();
    for d in drivers {
        d.await?;
    }
    let drive_secs = drive_started.elapsed().as_secs_f64();
    let rss_load = rss_kib(gateway.pid())?;
    // Let the last flush reach everyone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut hist = vec![0u64; BUCKETS];
    let mut from_ack = vec![0u64; BUCKETS];
    for r in readers {
        let (h, a) = r.await?;
        for (total, h) in hist.iter_mut().zip(h) {
            *total += h;
        }
        for (total, a) in from_ack.iter_mut().zip(a) {
            *total += a;
        }
    }
    let sent_moves = moves.load(Ordering::Relaxed);
    let samples: u64 = hist.iter().sum();
    let expected = sent_moves * connected.load(Ordering::Relaxed) as u64;

    println!(
        "websocket desktop sync ({} clients on one desktop, {WINDOWS} windows dragged):",
        connected.load(Ordering::Relaxed)
    );
    println!("  connect            {clients} sockets in {connect_secs:.1} s");
    println!(
        "  moves              {sent_moves} acknowledged in {drive_secs:.1} s = {:.0}/s (target {rate}/s), {} failed",
        sent_moves as f64 / drive_secs,
        errors.load(Ordering::Relaxed)
    );
    println!("  frames delivered   {}", frames.load(Ordering::Relaxed));
    println!(
        "  move -> delivery   p50 {} ms, p99 {} ms, max {}{} ms over {samples} (move, client) pairs ({:.1}% of sent x clients)",
        percentile(&hist, 0.50),
        percentile(&hist, 0.99),
        if hist[BUCKETS - 1] > 0 { ">" } else { "" },
        hist.iter().rposition(|c| *c > 0).unwrap_or(0),
        if expected == 0 { 0.0 } else { samples as f64 * 100.0 / expected as f64 },
    );
    println!(
        "  ack -> delivery    p50 {} ms, p99 {} ms (from the move's HTTP response, without the drivers' queue)",
        percentile(&from_ack, 0.50),
        percentile(&from_ack, 0.99),
    );
    println!(
        "  RSS ({mode})  {:.1} MB idle, {:.1} MB with the sockets open, {:.1} MB under load",
        rss_before as f64 / 1024.0,
        rss_sockets as f64 / 1024.0,
        rss_load as f64 / 1024.0,
    );
    gateway.stop();
    platform.stop().await
}

fn main() -> anyhow::Result<()> {
    // reqwest panics on its first client unless a TLS provider is installed.
    getlood_tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}
