//! Fair share at the gateway (issue 13): per-user and per-tenant limits on writes and expensive
//! routes with the real Redis, failing closed when Redis is down unless told otherwise, a cap on
//! a tenant's chat turns in flight, a cap on a user's WebSockets, and streams that end when the
//! token that opened them expires.

use std::time::Duration;

use futures::StreamExt as _;
use getlood_proto::common::v1::{ChatMessage, Role};
use getlood_proto::gateway::v1::ChatCompletionRequest;
use getlood_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use getlood_testkit::{Platform, Service, TEST_SECRET};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::gateway_chat::{Doubles, TestGateway, chat_body, token, unique_prefix};

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn validate(http: &reqwest::Client, gw: &TestGateway, tok: &str) -> anyhow::Result<reqwest::Response> {
    let url = format!("{}/api/v1/workflows/validate", gw.http);
    Ok(http.post(url).bearer_auth(tok).json(&json!({"nodes": [], "edges": []})).send().await?)
}

#[tokio::test]
async fn workflow_validate_is_limited_per_user_and_per_tenant() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("fairshare"), &doubles, |c| {
        c.app.rate_limits.insert(
            getlood_gateway::RouteClass::WorkflowValidate,
            getlood_gateway::ClassLimit { per_user_per_minute: 2, per_tenant_per_minute: 3 },
        );
    })
    .await?;
    let http = reqwest::Client::new();
    let (alice, bob, carol) = (token("acme", "alice"), token("acme", "bob"), token("acme", "carol"));

    // Alice's two, then her own limit.
    for _ in 0..2 {
        assert_ne!(validate(&http, &gw, &alice).await?.status(), 429);
    }
    let refused = validate(&http, &gw, &alice).await?;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-limit").as_deref(), Some("2"));
    let retry: u64 = header(&refused, "retry-after").unwrap_or_default().parse()?;
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    // Bob takes the tenant's third; Carol, who has sent nothing, meets the tenant's limit.
    assert_ne!(validate(&http, &gw, &bob).await?.status(), 429);
    let refused = validate(&http, &gw, &carol).await?;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-ratelimit-limit").as_deref(), Some("3"));
    assert!(header(&refused, "retry-after").is_some());
    // Another tenant has its own budget, and chat is another class.
    assert_ne!(validate(&http, &gw, &token("globex", "alice")).await?.status(), 429);
    let chat = http.post(gw.chat_url()).bearer_auth(&alice).json(&chat_body("getlood", "hello", false)).send().await?;
    assert_eq!(chat.status(), 200);
    gw.stop().await
}

#[tokio::test]
async fn writes_fail_closed_when_redis_is_down_unless_configured_open() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    // Nothing listens on port 1: every rate-limit decision fails.
    let dead_redis = |c: &mut getlood_gateway::Config| {
        c.redis.url = "redis://127.0.0.1:1".to_owned();
        c.app.rate_limit_store_timeout = Duration::from_millis(200);
    };
    let http = reqwest::Client::new();
    let alice = token("acme", "alice");

    let closed = TestGateway::start(&unique_prefix("failclosed"), &doubles, dead_redis).await?;
    let resp = validate(&http, &closed, &alice).await?;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    let body: serde_json::Value = resp.json().await?;
    assert!(body["message"].as_str().unwrap_or_default().contains("rate limiting"), "{body}");
    // Chat keeps its own policy: fail open by default.
    let chat =
        http.post(closed.chat_url()).bearer_auth(&alice).json(&chat_body("getlood", "hello", false)).send().await?;
    assert_eq!(chat.status(), 200);
    closed.stop().await?;

    let open = TestGateway::start(&unique_prefix("failopen"), &doubles, |c| {
        dead_redis(c);
        c.app.rate_limit_fail_open = true;
    })
    .await?;
    let resp = validate(&http, &open, &alice).await?;
    let status = resp.status();
    let body = resp.text().await?;
    assert!(!body.contains("rate limiting"), "{status} {body}");
    open.stop().await
}

#[tokio::test]
async fn a_tenant_has_at_most_its_quota_of_chat_turns_in_flight() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("inflight"), &doubles, |c| {
        c.app.tenant_max_concurrent_chats = 1;
    })
    .await?;
    let http = reqwest::Client::new();
    let (alice, bob) = (token("acme", "alice"), token("acme", "bob"));

    // Alice's turn hangs (the double never finishes it): the tenant's one slot is taken.
    let hanging = http.post(gw.chat_url()).bearer_auth(&alice).json(&chat_body("getlood", "hang", true)).send().await?;
    assert_eq!(hanging.status(), 200);
    let refused = http.post(gw.chat_url()).bearer_auth(&bob).json(&chat_body("getlood", "hello", false)).send().await?;
    assert_eq!(refused.status(), 429);
    assert!(header(&refused, "retry-after").is_some());
    let body: serde_json::Value = refused.json().await?;
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Another tenant is not affected.
    let other = token("globex", "carol");
    let resp = http.post(gw.chat_url()).bearer_auth(&other).json(&chat_body("getlood", "hello", false)).send().await?;
    assert_eq!(resp.status(), 200);

    // The gateway's gRPC chat counts against the same cap: refused while the slot is taken.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gw.grpc))?.connect_lazy();
    let mut client = GatewayServiceClient::new(channel);
    let mut req = tonic::Request::new(ChatCompletionRequest {
        model: "getlood".to_owned(),
        messages: vec![ChatMessage { role: Role::User as i32, content: "hello".to_owned(), name: String::new() }],
        ..ChatCompletionRequest::default()
    });
    req.metadata_mut().insert("authorization", format!("Bearer {bob}").parse()?);
    let status = client.chat_completion(req).await.expect_err("a turn over the tenant's cap");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("chat turns in flight"), "{status:?}");

    // Alice goes away: the slot is free again.
    drop(hanging);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let resp =
            http.post(gw.chat_url()).bearer_auth(&bob).json(&chat_body("getlood", "hello", false)).send().await?;
        if resp.status() == 200 {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await
}

async fn events_platform(max_sockets: usize) -> anyhow::Result<Platform> {
    let platform = Platform::builder()
        .service(Service::Gateway)
        .service(Service::EventDispatcher)
        .app_settings(Service::Gateway, json!({"ws_max_sockets_per_user": max_sockets}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    Ok(platform)
}

fn tenant(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{tag}{}{}", std::process::id(), nanos % 1_000_000_000)
}

#[tokio::test]
async fn a_user_holds_at_most_its_quota_of_websockets() -> anyhow::Result<()> {
    let platform = events_platform(2).await?;
    let tok = platform.token(&tenant("sockets"), "alice", &["member"]);
    let url = format!("ws://{}/api/v1/events?topics=workflow", platform.get(Service::Gateway).http_addr);
    let request = || -> anyhow::Result<_> {
        let mut req = url.as_str().into_client_request()?;
        req.headers_mut().insert("authorization", format!("Bearer {tok}").parse()?);
        Ok(req)
    };
    let (first, _) = tokio_tungstenite::connect_async(request()?).await?;
    let (_second, _) = tokio_tungstenite::connect_async(request()?).await?;
    match tokio_tungstenite::connect_async(request()?).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => anyhow::bail!("expected 429, got {:?}", other.map(|(_, r)| r.status())),
    }
    // Closing one gives its slot back.
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio_tungstenite::connect_async(request()?).await.is_err() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the socket slot was never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    platform.stop().await
}

#[tokio::test]
async fn streams_end_when_their_token_expires() -> anyhow::Result<()> {
    let platform = events_platform(16).await?;
    let tenant = tenant("expiry");
    // Three seconds to live; the verifier's leeway would accept it for another minute.
    let short = getlood_auth::dev_token(TEST_SECRET, "getlood", "getlood", &tenant, "alice", &["member"], 3)?;
    let base = platform.http_url(Service::Gateway);

    // SSE: a last `expired` event, then the end of the stream.
    let http = reqwest::Client::new();
    let resp = http.get(format!("{base}/api/v1/events?topics=workflow")).bearer_auth(&short).send().await?;
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        let mut body = String::new();
        let mut chunks = resp.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            body.push_str(&String::from_utf8_lossy(&chunk?));
        }
        Ok::<_, reqwest::Error>(body)
    })
    .await
    .map_err(|_| anyhow::anyhow!("the SSE stream outlived its token"))??;
    assert!(body.contains("event: expired"), "{body}");
    assert!(body.contains("token expired"), "{body}");

    // WebSocket: close 1008 "token expired".
    let short = getlood_auth::dev_token(TEST_SECRET, "getlood", "getlood", &tenant, "alice", &["member"], 3)?;
    let mut req = format!("ws://{}/api/v1/events?topics=workflow", platform.get(Service::Gateway).http_addr)
        .into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {short}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
    let close = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(msg) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Close(frame) = msg? {
                return Ok::<_, anyhow::Error>(frame);
            }
        }
        Ok(None)
    })
    .await
    .map_err(|_| anyhow::anyhow!("the WebSocket outlived its token"))??;
    let frame = close.ok_or_else(|| anyhow::anyhow!("closed without a close frame"))?;
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "token expired");
    platform.stop().await
}

#[tokio::test]
async fn a_chat_answer_ends_when_its_token_expires() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("chatexp"), &doubles, |_| {}).await?;
    // Three seconds to live, on a turn the double never finishes (it would last until the
    // chat's idle timeout, 60 s): the answer ends at the token's expiry instead.
    let short = getlood_auth::dev_token(TEST_SECRET, "getlood", "getlood", "acme", "alice", &["member"], 3)?;
    let http = reqwest::Client::new();
    let resp = http.post(gw.chat_url()).bearer_auth(&short).json(&chat_body("getlood", "hang", true)).send().await?;
    assert_eq!(resp.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(15), resp.text())
        .await
        .map_err(|_| anyhow::anyhow!("the chat stream outlived its token"))??;
    assert!(body.contains("the token expired before the answer was complete"), "{body}");
    gw.stop().await
}
