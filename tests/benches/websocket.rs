//! Desktop sync under load, printed in one run (a few minutes), three scenarios:
//! * `one-desktop`: 1,000 WebSocket clients on one desktop, one gateway;
//! * `fan-out`: 10,000 clients spread over 100 desktops (100 each) on one gateway (issue 17:
//!   RSS target under 300 MB);
//! * `two-replicas`: 1,000 clients of one desktop, half on each of two gateway replicas (same
//!   desktop-state, event-dispatcher and Redis), the moves sent alternately through both.
//!
//! In each: 2,000 window moves a second in all, sent through the gateways' REST API (two
//! windows per desktop being dragged; desktop-state coalesces them, latest wins); the
//! p50/p99/max from a move to its delivery at every client of its desktop (target: p99 under
//! 50 ms). A move counts as delivered at a client when the first `window.moved` event whose
//! geometry includes it (or a later move of the same window) arrives there; and each gateway's
//! RSS with the sockets open (target: under 150 MB for 1,000 sockets, 300 MB for 10,000).
//!
//! The gateways run as their own processes (`getlood gateway`) when `getlood` is built next to
//! the bench (`cargo build --release --bin getlood`), so their RSS is exact;
//! otherwise in-process, and the figure is the RSS growth of the whole bench process (clients
//! included). desktop-state and event-dispatcher run in-process. Knobs: `BENCH_WS_CLIENTS`,
//! `BENCH_WS_FANOUT_CLIENTS`, `BENCH_WS_FANOUT_DESKTOPS`, `BENCH_WS_MOVES_PER_SEC`,
//! `BENCH_WS_SECONDS`, `BENCH_WS_INFLIGHT` (moves in flight per window of one desktop; the
//! same total in every scenario), `BENCH_WS_SCENARIOS`
//! (comma-separated names; all by default).

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

/// A rate limit no bench reaches (the bench's one user sends every move).
const UNLIMITED: u32 = 100_000_000;
/// Windows dragged per desktop.
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

/// Starts a gateway in front of `platform`'s desktop-state and event-dispatcher that accepts
/// `sockets` WebSockets from the bench's one user.
async fn start_gateway(platform: &Platform, sockets: usize) -> anyhow::Result<(Gateway, SocketAddr)> {
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
            // The admin port defaults to a fixed one (9080): two replicas would clash on it.
            .env("GETLOOD_GATEWAY_ADMIN_ADDR", "127.0.0.1:0")
            // Every client is the same user: the per-user cap would refuse the 17th socket.
            .env("GETLOOD_GATEWAY_APP__WS_MAX_SOCKETS_PER_USER", sockets.to_string())
            // And one user sends all the moves: the fair-share write budget (300 a minute)
            // would refuse nearly all of them.
            .env("GETLOOD_GATEWAY_APP__RATE_LIMITS__WRITE__PER_USER_PER_MINUTE", UNLIMITED.to_string())
            .env("GETLOOD_GATEWAY_APP__RATE_LIMITS__WRITE__PER_TENANT_PER_MINUTE", UNLIMITED.to_string())
            .env("GETLOOD_GATEWAY_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let gateway = Gateway::Process(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], http));
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("http://{addr}/livez")).send().await.is_err() {
            if Instant::now() >= deadline {
                // Not left running after the bench gives up on it.
                gateway.stop();
                anyhow::bail!("gateway binary did not start");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Ok((gateway, addr));
    }
    let mut config = getlood_gateway::default_config();
    config.redis.url = getlood_testkit::redis_url();
    config.nats.url = getlood_testkit::nats_url();
    config.auth.hs256_secret = Some(secrecy::SecretString::from(TEST_SECRET));
    config.services.desktop_state = desktop;
    config.services.event_dispatcher = dispatcher;
    config.app.ws_max_sockets_per_user = sockets;
    config.app.rate_limits.insert(
        getlood_gateway::RouteClass::Write,
        getlood_gateway::ClassLimit { per_user_per_minute: UNLIMITED, per_tenant_per_minute: UNLIMITED },
    );
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

/// One measured configuration.
struct Scenario {
    name: &'static str,
    desktops: usize,
    clients: usize,
    /// Gateway processes (replicas); client i connects to gateway i % gateways, move n is sent
    /// through gateway n % gateways.
    gateways: usize,
    /// RSS target per gateway, MB.
    rss_target_mb: u64,
}

/// Figures common to every scenario.
struct Load {
    rate: u64,
    seconds: u64,
    inflight: usize,
}

/// A window being dragged: its desktop (index) and id.
struct Dragged {
    desktop: usize,
    id: String,
}

/// The soft and hard open-file limits of this process, from /proc.
fn open_files_limit() -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line.split_whitespace().skip(3);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

#[allow(clippy::print_stdout)]
async fn run() -> anyhow::Result<()> {
    let load = Load {
        rate: env_or("BENCH_WS_MOVES_PER_SEC", 2000),
        seconds: env_or("BENCH_WS_SECONDS", 15),
        // Moves in flight per dragged window; 64 sustains 2,000 moves/s on the 2-core CI machine.
        inflight: usize::try_from(env_or("BENCH_WS_INFLIGHT", 64))?,
    };
    let clients = usize::try_from(env_or("BENCH_WS_CLIENTS", 1000))?;
    let scenarios = [
        Scenario { name: "one-desktop", desktops: 1, clients, gateways: 1, rss_target_mb: 150 },
        Scenario {
            name: "fan-out",
            desktops: usize::try_from(env_or("BENCH_WS_FANOUT_DESKTOPS", 100))?,
            clients: usize::try_from(env_or("BENCH_WS_FANOUT_CLIENTS", 10_000))?,
            gateways: 1,
            rss_target_mb: 300,
        },
        Scenario { name: "two-replicas", desktops: 1, clients, gateways: 2, rss_target_mb: 150 },
    ];
    let only = std::env::var("BENCH_WS_SCENARIOS").unwrap_or_default();
    let platform = Platform::builder()
        .service(Service::DesktopState)
        .service(Service::EventDispatcher)
        // Drag coalescing at 20 ms: a move waits at most that long to be written and published.
        .app_settings(Service::DesktopState, json!({"coalesce_interval": "20ms"}))
        .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let mut failed = Vec::new();
    for scenario in &scenarios {
        if !only.is_empty() && !only.split(',').any(|n| n.trim() == scenario.name) {
            continue;
        }
        // A failing scenario is reported and the next one still runs.
        if let Err(e) = run_scenario(&platform, scenario, &load).await {
            println!("websocket {}: failed: {e:#}", scenario.name);
            failed.push(scenario.name);
        }
    }
    platform.stop().await?;
    anyhow::ensure!(failed.is_empty(), "scenarios failed: {failed:?}");
    Ok(())
}

#[allow(clippy::print_stdout)]
async fn run_scenario(platform: &Platform, sc: &Scenario, load: &Load) -> anyhow::Result<()> {
    let Load { rate, seconds, inflight } = *load;
    // Each socket is a descriptor here and, in-process, another in the gateway.
    if let Some((soft, hard)) = open_files_limit() {
        let needed = u64::try_from(sc.clients)? + 1000;
        anyhow::ensure!(
            soft >= needed,
            "{} sockets need about {needed} open files, the limit is {soft} (hard {hard}): raise `ulimit -n`",
            sc.clients
        );
    }
    let mut gateways = Vec::new();
    for _ in 0..sc.gateways {
        gateways.push(start_gateway(platform, sc.clients).await?);
    }
    let result = drive_scenario(platform, sc, rate, seconds, inflight, &gateways).await;
    for (gateway, _) in gateways {
        gateway.stop();
    }
    result
}

#[allow(clippy::print_stdout, clippy::too_many_lines)]
async fn drive_scenario(
    platform: &Platform,
    sc: &Scenario,
    rate: u64,
    seconds: u64,
    inflight: usize,
    gateways: &[(Gateway, SocketAddr)],
) -> anyhow::Result<()> {
    let mode = if matches!(gateways[0].0, Gateway::Process(_)) {
        "gateway process"
    } else {
        "whole bench process (in-process gateway, clients included)"
    };
    let bases: Arc<Vec<String>> = Arc::new(gateways.iter().map(|(_, addr)| format!("http://{addr}")).collect());
    let base = &bases[0];
    let tenant = format!("bench_{}_{}", std::process::id(), sc.name.replace('-', "_"));
    let token = platform.token(&tenant, "alice", &["member"]);
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;

    let mut desktops = Vec::new();
    let mut dragged = Vec::new();
    for d in 0..sc.desktops {
        let r = http
            .post(format!("{base}/api/v1/desktops"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("bench{d}")}))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "desktop {d}: {}", r.text().await?);
        let desktop: Value = r.json().await?;
        desktops.push(desktop["id"].as_str().unwrap_or_default().to_owned());
        for i in 0..WINDOWS {
            let w: Value = http
                .post(format!("{base}/api/v1/desktops/{}/windows", desktops[d]))
                .bearer_auth(&token)
                .json(&json!({"app_id": format!("drag{i}"), "x": 0, "y": 0, "width": 400, "height": 300}))
                .send()
                .await?
                .json()
                .await?;
            let id = w["window"]["id"].as_str().unwrap_or_default().to_owned();
            anyhow::ensure!(!id.is_empty(), "window not created: {w}");
            dragged.push(Dragged { desktop: d, id });
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = gateways.iter().map(|(g, _)| rss_kib(g.pid())).collect::<anyhow::Result<Vec<_>>>()?;

    // Connect the clients, 50 at a time: client i watches desktop i % desktops through
    // gateway i % gateways.
    let per_window = usize::try_from(rate * seconds / dragged.len() as u64 + 10)?;
    let sent = Arc::new(Sent {
        epoch: Instant::now(),
        times: dragged.iter().map(|_| (0..per_window).map(|_| AtomicU64::new(0)).collect()).collect(),
        acks: dragged.iter().map(|_| (0..per_window).map(|_| AtomicU64::new(0)).collect()).collect(),
    });
    let frames = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let sockets = futures::stream::iter(0..sc.clients)
        .map(|i| {
            let desktop = i % sc.desktops;
            let url = format!("ws://{}/ws/desktop/{}", gateways[i % gateways.len()].1, desktops[desktop]);
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
                anyhow::Ok((desktop, ws))
            }
        })
        .buffer_unordered(50)
        .collect::<Vec<_>>()
        .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut readers = Vec::new();
    for socket in sockets {
        let (desktop, mut ws) = socket?;
        connected.fetch_add(1, Ordering::Relaxed);
        // The desktop's dragged windows, by their index in `sent`.
        let windows: Vec<(usize, String)> =
            dragged.iter().enumerate().filter(|(_, w)| w.desktop == desktop).map(|(k, w)| (k, w.id.clone())).collect();
        let (sent, frames, stop) = (sent.clone(), frames.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut hist = vec![0u64; BUCKETS];
            let mut from_ack = vec![0u64; BUCKETS];
            let mut delivered = vec![0i64; windows.len()];
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
                let Some(local) = windows.iter().position(|(_, w)| text.contains(w.as_str())) else { continue };
                let window = windows[local].0;
                let Some(x) = moved_x(text) else { continue };
                let now = u64::try_from(sent.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                // Every move of this window up to x is now visible here.
                for n in (delivered[local] + 1)..=x {
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
                delivered[local] = delivered[local].max(x);
            }
            (hist, from_ack)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_sockets = gateways.iter().map(|(g, _)| rss_kib(g.pid())).collect::<anyhow::Result<Vec<_>>>()?;

    // Drive the moves: each window's moves are numbered 1, 2, ... and sent with bounded
    // concurrency at rate / windows a second; move n goes through gateway n % gateways.
    let moves = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    // The first failed move, printed so a failure says why.
    let first_failure = Arc::new(std::sync::Mutex::new(None::<String>));
    let drive_until = Instant::now() + Duration::from_secs(seconds);
    let mut drivers = Vec::new();
    let windows_total = dragged.len() as u64;
    // Moves in flight in all, as many as one desktop's windows get: per window, 200 windows
    // would open up to 12,800 connections at once when the gateway falls behind, and with
    // 10,000 sockets open the bench ran out of descriptors.
    let limit = Arc::new(tokio::sync::Semaphore::new(inflight * WINDOWS));
    for (k, window) in dragged.iter().enumerate() {
        let (http, bases, token, window, sent, moves, errors) = (
            http.clone(),
            bases.clone(),
            token.clone(),
            window.id.clone(),
            sent.clone(),
            moves.clone(),
            errors.clone(),
        );
        let (first_failure, limit) = (first_failure.clone(), limit.clone());
        drivers.push(tokio::spawn(async move {
            let period = Duration::from_nanos(1_000_000_000 * windows_total / rate.max(1));
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut n = 0usize;
            while Instant::now() < drive_until && n + 1 < sent.times[k].len() {
                ticker.tick().await;
                n += 1;
                let Ok(permit) = limit.clone().acquire_owned().await else { break };
                let (http, url, token, sent, moves, errors, first_failure) = (
                    http.clone(),
                    format!("{}/api/v1/windows/{window}", bases[n % bases.len()]),
                    token.clone(),
                    sent.clone(),
                    moves.clone(),
                    errors.clone(),
                    first_failure.clone(),
                );
                tokio::spawn(async move {
                    sent.stamp(k, n);
                    let ok = http.patch(url).bearer_auth(token).json(&json!({"x": n, "y": 10})).send().await;
                    let failure = match ok {
                        Ok(r) if r.status().is_success() => {
                            sent.ack(k, n);
                            moves.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                        Ok(r) => Some(format!("{} {}", r.status(), r.text().await.unwrap_or_default())),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(failure) = failure {
                        errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut first) = first_failure.lock() {
                            first.get_or_insert(failure);
                        }
                    }
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
    let rss_load = gateways.iter().map(|(g, _)| rss_kib(g.pid())).collect::<anyhow::Result<Vec<_>>>()?;
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
    // Each move is expected at the clients of its own desktop.
    let expected = sent_moves * (connected.load(Ordering::Relaxed) / sc.desktops) as u64;

    println!(
        "websocket {}: {} clients over {} desktop(s) on {} gateway(s), {WINDOWS} windows dragged per desktop:",
        sc.name,
        connected.load(Ordering::Relaxed),
        sc.desktops,
        sc.gateways,
    );
    println!("  connect            {} sockets in {connect_secs:.1} s", sc.clients);
    println!(
        "  moves              {sent_moves} acknowledged in {drive_secs:.1} s = {:.0}/s (target {rate}/s), {} failed",
        sent_moves as f64 / drive_secs,
        errors.load(Ordering::Relaxed)
    );
    if let Some(failure) = first_failure.lock().ok().and_then(|f| f.clone()) {
        println!("  first failed move  {failure}");
    }
    println!("  frames delivered   {}", frames.load(Ordering::Relaxed));
    println!(
        "  move -> delivery   p50 {} ms, p99 {} ms (target < 50), max {}{} ms over {samples} (move, client) pairs ({:.1}% of sent x clients of its desktop)",
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
    for (g, ((before, sockets), under_load)) in rss_before.iter().zip(&rss_sockets).zip(&rss_load).enumerate() {
        println!(
            "  RSS gateway {g} ({mode})  {:.1} MB idle, {:.1} MB with the sockets open, {:.1} MB under load (target < {} MB)",
            *before as f64 / 1024.0,
            *sockets as f64 / 1024.0,
            *under_load as f64 / 1024.0,
            sc.rss_target_mb,
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // reqwest panics on its first client unless a TLS provider is installed.
    getlood_tls::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}
