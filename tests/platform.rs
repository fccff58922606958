//! Boot, health and readiness of the six services.

use std::time::Duration;

use getlood_testkit::ServingStatus;
use getlood_testkit::{Platform, Service, TcpProxy};

#[tokio::test]
async fn every_service_boots_on_port_zero_and_reports_healthy() -> anyhow::Result<()> {
    let platform = Platform::builder().all().start().await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let http = reqwest::Client::new();
    for service in Service::ALL {
        assert_eq!(platform.health(service).await?, ServingStatus::Serving, "{}", service.name());
        let live = http.get(format!("{}/livez", platform.http_url(service))).send().await?;
        assert_eq!(live.status(), 200, "{} livez", service.name());
        // The public port answers readiness as a status only, and has no metrics.
        let ready = http.get(format!("{}/readyz", platform.http_url(service))).send().await?;
        assert_eq!(ready.status(), 200, "{} readyz", service.name());
        let body: serde_json::Value = ready.json().await?;
        assert_eq!(body, serde_json::json!({"status": "ready"}), "{} public readyz", service.name());
        let public_metrics = http.get(format!("{}/metrics", platform.http_url(service))).send().await?;
        assert_eq!(public_metrics.status(), 404, "{} serves /metrics on its public port", service.name());
        // The admin port has the details and the metrics.
        let ready = http.get(format!("{}/readyz", platform.admin_url(service))).send().await?;
        assert_eq!(ready.status(), 200, "{} admin readyz", service.name());
        let body: serde_json::Value = ready.json().await?;
        assert_eq!(body["ready"], true);
        assert_eq!(body["checks"]["nats"], "ok", "{} probes nats", service.name());
        let live = http.get(format!("{}/livez", platform.admin_url(service))).send().await?;
        assert_eq!(live.status(), 200, "{} admin livez", service.name());
        let metrics = http.get(format!("{}/metrics", platform.admin_url(service))).send().await?.text().await?;
        assert!(metrics.contains("getlood_http_requests_total"), "{} exports http metrics", service.name());
    }
    // Postgres-owning services probe Postgres; the gateway and agent-registry probe Redis.
    let ready: serde_json::Value =
        http.get(format!("{}/readyz", platform.admin_url(Service::DesktopState))).send().await?.json().await?;
    assert_eq!(ready["checks"]["postgres"], "ok");
    let ready: serde_json::Value =
        http.get(format!("{}/readyz", platform.admin_url(Service::Gateway))).send().await?.json().await?;
    assert_eq!(ready["checks"]["redis"], "ok");
    platform.stop().await
}

#[tokio::test]
async fn readiness_turns_false_when_nats_is_unreachable_and_recovers() -> anyhow::Result<()> {
    let nats: std::net::SocketAddr = getlood_testkit::nats_url().trim_start_matches("nats://").parse()?;
    let proxy = TcpProxy::start(nats).await?;
    let platform = Platform::builder()
        .service(Service::Gateway)
        .service(Service::EventDispatcher)
        .nats_url(format!("nats://{}", proxy.addr()))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", platform.admin_url(Service::EventDispatcher));
    let public_readyz = format!("{}/readyz", platform.http_url(Service::EventDispatcher));

    proxy.cut();
    let body = poll_until(&http, &readyz, 503, Duration::from_secs(15)).await?;
    assert_eq!(body["ready"], false);
    assert_ne!(body["checks"]["nats"], "ok");
    // The public port says only that it is not ready: no dependency, address or driver error.
    let body = poll_until(&http, &public_readyz, 503, Duration::from_secs(5)).await?;
    assert_eq!(body, serde_json::json!({"status": "not_ready"}));
    // gRPC health agrees with /readyz.
    assert_eq!(platform.health(Service::EventDispatcher).await?, ServingStatus::NotServing);
    // The gateway serves without NATS (degraded: no live feeds): it reports the failed check
    // on its admin port but stays ready, so a NATS outage does not take the edge down. Its
    // checker runs on its own clock, so the failed check may show a moment after the
    // dispatcher's; it stays ready on every answer meanwhile.
    let gateway_readyz = format!("{}/readyz", platform.admin_url(Service::Gateway));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let gateway = http.get(&gateway_readyz).send().await?;
        assert_eq!(gateway.status(), 200);
        let gateway: serde_json::Value = gateway.json().await?;
        assert_eq!(gateway["ready"], true, "{gateway}");
        if gateway["checks"]["nats"] != "ok" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the gateway never reported NATS down: {gateway}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(platform.health(Service::Gateway).await?, ServingStatus::Serving);

    proxy.restore();
    let body = poll_until(&http, &readyz, 200, Duration::from_secs(20)).await?;
    assert_eq!(body["checks"]["nats"], "ok");
    platform.stop().await
}

/// The agent-registry serves without Redis (its shared cache: an error is a miss read from
/// Postgres) and the gateway too (each route's limit fails open or closed by its policy), so a
/// Redis outage leaves both ready and agent reads answered; before, both went NOT_SERVING and
/// every call through the balanced upstream failed with "no endpoint is serving".
#[tokio::test]
async fn a_redis_outage_leaves_the_registry_and_gateway_serving_agent_reads() -> anyhow::Result<()> {
    let redis: std::net::SocketAddr =
        getlood_testkit::redis_url().trim_start_matches("redis://").trim_end_matches('/').parse()?;
    let proxy = TcpProxy::start(redis).await?;
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::Gateway)
        .redis_url(format!("redis://{}", proxy.addr()))
        .readiness_interval(Duration::from_millis(200))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let http = reqwest::Client::new();
    let token = platform.token(&format!("redis_out_{}", std::process::id()), "alice", &["admin"]);
    let agents = format!("{}/api/v1/agents", platform.http_url(Service::Gateway));
    assert_eq!(http.get(&agents).bearer_auth(&token).send().await?.status(), 200);

    proxy.cut();
    let readyz = format!("{}/readyz", platform.admin_url(Service::AgentRegistry));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let body: serde_json::Value = http.get(&readyz).send().await?.json().await?;
        if body["checks"]["redis"] != "ok" {
            break body;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the registry never saw redis fail: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(platform.health(Service::AgentRegistry).await?, ServingStatus::Serving);
    assert_eq!(platform.health(Service::Gateway).await?, ServingStatus::Serving);
    let listed = http.get(&agents).bearer_auth(&token).send().await?;
    assert_eq!(listed.status(), 200, "{}", listed.text().await?);

    proxy.restore();
    platform.stop().await
}

async fn poll_until(
    http: &reqwest::Client,
    url: &str,
    status: u16,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let resp = http.get(url).send().await?;
        if resp.status() == status {
            return Ok(resp.json().await?);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
