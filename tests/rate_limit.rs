//! The gateway's chat rate limits: kept in Redis so replicas share them, reported in headers,
//! and a documented behaviour when Redis is down (fail open by default, closed on request).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway_chat::{Doubles, TestGateway, chat_body, token, unique_prefix};

async fn chat(http: &reqwest::Client, gw: &TestGateway, tok: &str) -> anyhow::Result<reqwest::Response> {
    Ok(http.post(gw.chat_url()).bearer_auth(tok).json(&chat_body("getlood", "hello", false)).send().await?)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

#[tokio::test]
async fn two_replicas_share_one_limit() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    // Same Redis key prefix: two replicas of one deployment.
    let prefix = unique_prefix("replicas");
    let configure = |c: &mut getlood_gateway::Config| {
        c.app.chat_rate_limit_per_minute = 5;
        c.app.tenant_rate_limit_per_minute = 0;
    };
    let a = TestGateway::start(&prefix, &doubles, configure).await?;
    let b = TestGateway::start(&prefix, &doubles, configure).await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let mut statuses = Vec::new();
    let mut remaining = Vec::new();
    for gw in [&a, &a, &a, &b, &b, &b] {
        let resp = chat(&http, gw, &tok).await?;
        statuses.push(resp.status().as_u16());
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("5"));
        assert!(header(&resp, "x-ratelimit-reset").is_some());
        remaining.push(header(&resp, "x-ratelimit-remaining").unwrap_or_default());
        if resp.status() == 429 {
            let retry: u64 = header(&resp, "retry-after").unwrap_or_default().parse()?;
            assert!((1..=60).contains(&retry), "retry-after {retry}");
            let body: Value = resp.json().await?;
            assert_eq!(body["code"], "resource_exhausted");
            assert_eq!(body["error"]["type"], "rate_limit_error");
            assert!(body["message"].as_str().unwrap_or_default().contains("5 chat requests per minute"));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429], "one shared budget of 5");
    assert_eq!(remaining, ["4", "3", "2", "1", "0", "0"]);
    // Another user of the same tenant has their own budget.
    assert_eq!(chat(&http, &b, &token("acme", "bob")).await?.status(), 200);
    a.stop().await?;
    b.stop().await
}

#[tokio::test]
async fn tenant_limit_is_shared_by_its_users() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("tenant"), &doubles, |c| {
        c.app.tenant_rate_limit_overrides.insert("acme".to_owned(), 3);
    })
    .await?;
    let http = reqwest::Client::new();
    let (alice, bob) = (token("acme", "alice"), token("acme", "bob"));
    let mut statuses = Vec::new();
    for tok in [&alice, &bob, &alice, &bob] {
        let resp = chat(&http, &gw, tok).await?;
        // The tenant limit binds, so the headers report it.
        assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("3"));
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // Other tenants keep the default limits.
    let resp = chat(&http, &gw, &token("globex", "carol")).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("100"));
    gw.stop().await
}

#[tokio::test]
async fn streaming_responses_carry_rate_limit_headers() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("sse_headers"), &doubles, |c| {
        c.app.chat_rate_limit_per_minute = 1;
    })
    .await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let send = || http.post(gw.chat_url()).bearer_auth(&tok).json(&chat_body("getlood", "hello", true)).send();
    let resp = send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
    let _ = resp.text().await?;
    let resp = send().await?;
    assert_eq!(resp.status(), 429);
    assert!(header(&resp, "retry-after").is_some());
    assert!(header(&resp, "content-type").unwrap_or_default().starts_with("application/json"));
    gw.stop().await
}

/// Fail open (the default): a Redis outage must not become a chat outage; the limit protects
/// capacity, not security, so requests are served (without budget headers) and the failure is
/// logged and counted.
#[tokio::test]
async fn redis_down_fails_open_by_default() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("redis_open"), &doubles, |c| {
        // Nothing listens on port 1.
        c.redis.url = "redis://127.0.0.1:1".to_owned();
    })
    .await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    for _ in 0..3 {
        let started = Instant::now();
        let resp = chat(&http, &gw, &tok).await?;
        assert_eq!(resp.status(), 200);
        assert!(header(&resp, "x-ratelimit-limit").is_none(), "no budget is known");
        assert!(started.elapsed() < Duration::from_secs(3), "the store timeout bounds the wait");
    }
    gw.stop().await
}

#[tokio::test]
async fn redis_down_fails_closed_when_configured() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("redis_closed"), &doubles, |c| {
        c.redis.url = "redis://127.0.0.1:1".to_owned();
        c.app.rate_limit_on_store_error = getlood_gateway::StoreErrorPolicy::Deny;
    })
    .await?;
    let http = reqwest::Client::new();
    let resp = chat(&http, &gw, &token("acme", "alice")).await?;
    assert_eq!(resp.status(), 503);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    let body: Value = resp.json().await?;
    assert_eq!(body["code"], "unavailable");
    // Only the limited routes depend on the store.
    let me = http.get(format!("{}/api/v1/me", gw.http)).bearer_auth(token("acme", "alice")).send().await?;
    assert_eq!(me.status(), 200);
    gw.stop().await
}
