//! Foundation figures, printed in one run:
//! * idle RSS of each service process (`getlood <service>`) after it reports ready (target: under
//!   30 MB each);
//! * gateway throughput of an authenticated `GET /api/v1/me` (JWT verified on every request)
//!   against the unauthenticated `GET /livez`, same server, same client, same run.
//!
//! Needs the release `getlood` binary next to the bench executable: `make bench` builds it first.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
// A bench's output is its figures.
#![allow(clippy::print_stdout)]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_testkit::{Platform, Service};

const SERVICES: [&str; 6] = ["gateway", "pipeline", "desktop-state", "workflow", "agent-registry", "event-dispatcher"];

/// Two distinct ports free right now (fixed ports collided with the local model on 18080/18081,
/// which `make dev` and `make test` leave running). Both listeners are held until both ports
/// are known: a port taken and released at once can come back from the next bind.
fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("service on :{port} not ready")
}

/// Prints the idle RSS of each service; a service that fails is reported and the others are
/// still measured. The error names every service that failed.
async fn idle_rss() -> anyhow::Result<()> {
    println!("idle RSS per service process, `getlood <service>` (ready, 2 s after start, no traffic):");
    let mut failed = Vec::new();
    for name in SERVICES {
        match service_rss(name).await {
            Ok(rss) => println!("  {name:<17} {:>6.1} MB", rss as f64 / 1024.0),
            Err(err) => {
                println!("  {name:<17} FAILED: {err:#}");
                failed.push(name);
            }
        }
    }
    if failed.is_empty() { Ok(()) } else { anyhow::bail!("idle RSS not measured for {}", failed.join(", ")) }
}

/// The RSS in KiB of `getlood <name>`, ready and idle for 2 s.
async fn service_rss(name: &str) -> anyhow::Result<u64> {
    let (http_port, grpc_port) = free_ports()?;
    let prefix = format!("GETLOOD_{}_", name.to_uppercase().replace('-', "_"));
    let mut child: Child = getlood_testkit::service_command(name)?
        .env(format!("{prefix}HTTP_ADDR"), format!("127.0.0.1:{http_port}"))
        .env(format!("{prefix}GRPC_ADDR"), format!("127.0.0.1:{grpc_port}"))
        .env(format!("{prefix}ADMIN_ADDR"), "127.0.0.1:0")
        .env(format!("{prefix}POSTGRES__SCHEMA"), format!("bench_{}", name.replace('-', "_")))
        .env(format!("{prefix}LOG_FORMAT"), "json")
        .env(format!("{prefix}AUTH__HS256_SECRET"), getlood_testkit::TEST_SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let ready = wait_ready(http_port).await;
    if ready.is_ok() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rss = rss_kib(child.id());
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id())?),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    ready?;
    rss
}

async fn throughput(url: &str, token: Option<&str>, secs: u64, concurrency: usize) -> (f64, f64) {
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut latencies: Vec<u128> = Vec::new();
    let results = futures::stream::iter(0..concurrency)
        .map(|_| {
            let http = http.clone();
            async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    let mut req = http.get(url);
                    if let Some(t) = token {
                        req = req.bearer_auth(t);
                    }
                    if let Ok(r) = req.send().await
                        && r.status().is_success()
                        && r.bytes().await.is_ok()
                    {
                        lat.push(start.elapsed().as_micros());
                    }
                }
                lat
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    for r in results {
        latencies.extend(r);
    }
    latencies.sort_unstable();
    let p50 = latencies.get(latencies.len() / 2).copied().unwrap_or(0) as f64 / 1000.0;
    (latencies.len() as f64 / secs as f64, p50)
}

fn main() -> anyhow::Result<()> {
    // reqwest panics on its first client unless a TLS provider is installed.
    getlood_tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        // Each figure is measured whatever happened to the one before; the run fails at the end
        // if any did.
        let rss = idle_rss().await;
        let gateway = gateway_throughput().await;
        if let Err(err) = &gateway {
            println!("gateway throughput FAILED: {err:#}");
        }
        rss.and(gateway)
    })
}

async fn gateway_throughput() -> anyhow::Result<()> {
    let platform = Platform::builder().service(Service::Gateway).start().await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let base = platform.http_url(Service::Gateway);
    let token = platform.token("bench", "bench", &["admin"]);
    // Warm-up, then the two measurements back to back.
    let _ = throughput(&format!("{base}/livez"), None, 1, 16).await;
    let (livez_rps, livez_p50) = throughput(&format!("{base}/livez"), None, 5, 16).await;
    let (me_rps, me_p50) = throughput(&format!("{base}/api/v1/me"), Some(&token), 5, 16).await;
    println!("gateway, 16 concurrent keep-alive clients in this process, 5 s each:");
    println!("  GET /livez (no auth)      {livez_rps:>9.0} req/s  p50 {livez_p50:.2} ms");
    println!("  GET /api/v1/me (JWT)      {me_rps:>9.0} req/s  p50 {me_p50:.2} ms");
    println!("  authenticated / unauthenticated throughput: {:.2}", me_rps / livez_rps.max(1.0));
    platform.stop().await
}
