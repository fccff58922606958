//! Balanced gRPC between services (issue 17): a Kubernetes ClusterIP Service balances
//! connections, and a tonic channel keeps one, so a `dns://` upstream balances each call over
//! every address its name resolves to. Here three agent-registry replicas sit behind one name
//! (the test resolver stands in for a headless Service's DNS), each behind a proxy that counts
//! the registry calls it forwards: what each replica received, independent of the gateway's
//! own per-endpoint metric, which must agree with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context as _, ensure};
use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use getlood_server::balance::{StaticResolver, override_resolver};
use getlood_testkit::{Platform, Service};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::codegen::Service as _;
use tonic::transport::Channel;

/// The name the gateway's registry upstream resolves; only the test resolver knows it.
const HOST: &str = "agent-registry.balance.test";
/// Calls in flight at once, as a busy gateway has.
const CONCURRENCY: usize = 6;
/// The path prefix of the registry's own methods (health watches are not calls).
const REGISTRY: &str = "/getlood.agent_registry.v1.AgentRegistryService/";

/// Forwards every gRPC request to one replica, counting the registry calls.
#[derive(Clone)]
struct Proxy {
    channel: Channel,
    calls: Arc<AtomicUsize>,
}

struct CountingProxy {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl CountingProxy {
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let calls = Arc::new(AtomicUsize::new(0));
        let proxy =
            Proxy { channel: Channel::from_shared(format!("http://{target}"))?.connect_lazy(), calls: calls.clone() };
        let routes = tonic::service::Routes::from(axum::Router::new().fallback(forward).with_state(proxy));
        let stop = CancellationToken::new();
        let server = tonic::transport::Server::builder().add_routes(routes).serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            stop.clone().cancelled_owned(),
        );
        tokio::spawn(server);
        Ok(Self { addr, calls, stop })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    if request.uri().path().starts_with(REGISTRY) {
        proxy.calls.fetch_add(1, Ordering::SeqCst);
    }
    let mut channel = proxy.channel.clone();
    if futures::future::poll_fn(|cx| channel.poll_ready(cx)).await.is_err() {
        return axum::http::StatusCode::BAD_GATEWAY.into_response();
    }
    match channel.call(request.map(tonic::body::Body::new)).await {
        Ok(response) => response.map(axum::body::Body::new),
        // The replica is gone: the gateway sees what a refused connection would give it.
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// `GET /api/v1/skills` through the gateway: one ListSkills call to the registry.
struct Client {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Client {
    /// Makes `n` calls, `CONCURRENCY` at a time; every one must succeed.
    async fn calls(&self, n: usize) -> anyhow::Result<()> {
        let statuses: Vec<_> = futures::stream::iter(0..n)
            .map(|_| async { self.http.get(&self.url).bearer_auth(&self.token).send().await.map(|r| r.status()) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for status in statuses {
            let status = status?;
            ensure!(status == 200, "a call failed with {status}");
        }
        Ok(())
    }
}

fn within_20_percent(counts: &[usize], total: usize) -> anyhow::Result<()> {
    let even = total as f64 / counts.len() as f64;
    for count in counts {
        ensure!(
            (*count as f64 - even).abs() <= even * 0.2,
            "calls per replica {counts:?}: each should be within 20% of {even}"
        );
    }
    Ok(())
}

/// The value of `name` in a Prometheus text page, on the line that has every one of `labels`.
fn metric(page: &str, name: &str, labels: &[&str]) -> Option<f64> {
    page.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .find(|line| labels.iter().all(|l| line.contains(l)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

async fn gateway_metrics(http: &reqwest::Client, gateway: &Platform) -> anyhow::Result<String> {
    Ok(http.get(format!("{}/metrics", gateway.admin_url(Service::Gateway))).send().await?.text().await?)
}

/// Waits until the gateway's registry upstream has `resolved` addresses and `ready` of them
/// serving.
async fn wait_endpoints(http: &reqwest::Client, gateway: &Platform, resolved: f64, ready: f64) -> anyhow::Result<()> {
    let upstream = r#"upstream="agent-registry""#;
    for _ in 0..200 {
        let page = gateway_metrics(http, gateway).await?;
        let now = |state: &str| metric(&page, "getlood_upstream_endpoints", &[upstream, state]);
        if now(r#"state="resolved""#) == Some(resolved) && now(r#"state="ready""#) == Some(ready) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the gateway's registry upstream never had {resolved} endpoints resolved and {ready} ready")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_gateways_calls_spread_over_every_replica_and_skip_the_gone_ones() -> anyhow::Result<()> {
    // Three replicas of one registry Deployment: one Postgres schema, one Redis prefix.
    // Readiness probed every second (timeout 1 s) as in production (2 s), not every 100 ms: a
    // 100 ms probe timeout missed under this load took replicas out for a probe period, which
    // the balancer rightly follows, at the cost of the even split this test measures.
    let registry = || Platform::builder().service(Service::AgentRegistry).readiness_interval(Duration::from_secs(1));
    let first = registry().start().await?;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(registry().replica_of(&first).start().await?);
    }
    replicas.insert(0, first);
    let mut proxies = Vec::new();
    for replica in &replicas {
        replica.wait_ready(Duration::from_secs(30)).await?;
        proxies.push(CountingProxy::start(replica.get(Service::AgentRegistry).grpc_addr).await?);
    }
    let resolver = StaticResolver::new(proxies.iter().map(|p| p.addr).collect());
    override_resolver(HOST, resolver.clone());

    let gateway = Platform::builder()
        .service(Service::Gateway)
        .service_url(Service::AgentRegistry, format!("dns://{HOST}:9094?refresh=200ms"))
        // 1000 calls a minute of one tenant is the default limit; this test makes more.
        .app_settings(Service::Gateway, json!({"tenant_rate_limit_per_minute": 100_000}))
        .start()
        .await?;
    gateway.wait_ready(Duration::from_secs(30)).await?;
    let http = reqwest::Client::new();
    wait_endpoints(&http, &gateway, 3.0, 3.0).await?;
    let client = Client {
        http: http.clone(),
        url: format!("{}/api/v1/skills", gateway.http_url(Service::Gateway)),
        token: gateway.token("acme", "ada", &["viewer"]),
    };

    // 600 calls over three replicas: each gets 200 give or take 20%.
    client.calls(600).await?;
    let counts: Vec<usize> = proxies.iter().map(CountingProxy::calls).collect();
    eprintln!("600 calls over three replicas: {counts:?}");
    assert_eq!(counts.iter().sum::<usize>(), 600, "{counts:?}");
    within_20_percent(&counts, 600)?;
    // The gateway's own per-endpoint metric says the same.
    let page = gateway_metrics(&http, &gateway).await?;
    for (proxy, count) in proxies.iter().zip(&counts) {
        let endpoint = format!("endpoint=\"{}\"", proxy.addr);
        let metric = metric(&page, "getlood_upstream_calls_total", &[r#"upstream="agent-registry""#, &endpoint]);
        assert_eq!(metric, Some(*count as f64), "{endpoint}");
    }

    // The third replica leaves the name (scaled in, or its pod is no longer ready): no new
    // calls reach it, the other two share them.
    resolver.set(vec![proxies[0].addr, proxies[1].addr]);
    wait_endpoints(&http, &gateway, 2.0, 2.0).await?;
    let before: Vec<usize> = proxies.iter().map(CountingProxy::calls).collect();
    client.calls(300).await?;
    let after: Vec<usize> = proxies.iter().map(CountingProxy::calls).collect();
    assert_eq!(after[2], before[2], "the replica that left the name got calls: {before:?} -> {after:?}");
    within_20_percent(&[after[0] - before[0], after[1] - before[1]], 300)?;

    // The second replica stops (SIGTERM) while calls keep coming: it reports NOT_SERVING as it
    // drains, so at most the calls already on their way to it fail, and the rest go on.
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (http, url, token) = (client.http.clone(), client.url.clone(), client.token.clone());
        let (ok, failed, running) = (ok.clone(), failed.clone(), running.clone());
        workers.push(tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                match http.get(&url).bearer_auth(&token).send().await {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
            }
        }));
    }
    while ok.load(Ordering::SeqCst) < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = replicas.remove(1);
    second.stop().await.context("stopping the second replica")?;
    let stopped_at = ok.load(Ordering::SeqCst);
    while ok.load(Ordering::SeqCst) < stopped_at + 200 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.store(false, Ordering::SeqCst);
    for worker in workers {
        worker.await?;
    }
    let failed = failed.load(Ordering::SeqCst);
    eprintln!("while a replica stopped: {} calls answered, {failed} failed", ok.load(Ordering::SeqCst));
    assert!(failed <= CONCURRENCY, "{failed} calls failed while a replica stopped (at most the in-flight ones may)");
    // After the stop every call goes to the one replica left.
    wait_endpoints(&http, &gateway, 2.0, 1.0).await?;
    let before: Vec<usize> = proxies.iter().map(CountingProxy::calls).collect();
    client.calls(100).await?;
    let after: Vec<usize> = proxies.iter().map(CountingProxy::calls).collect();
    assert_eq!((after[0] - before[0], after[1], after[2]), (100, before[1], before[2]), "{before:?} -> {after:?}");

    gateway.stop().await?;
    for proxy in &proxies {
        proxy.stop.cancel();
    }
    // The first replica owns the schemas: it stops last.
    while let Some(replica) = replicas.pop() {
        replica.stop().await?;
    }
    Ok(())
}
