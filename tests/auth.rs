//! The gateway's authentication: every refusal is a 401 with a JSON body naming the failed check,
//! and the tenant comes from the verified token only.

use base64::Engine as _;
use getlood_proto::gateway::v1::WhoAmIRequest;
use getlood_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use getlood_testkit::{Platform, Service, TEST_SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "alice", "tenant": "acme", "roles": ["member"],
        "exp": now() + 600, "aud": "getlood", "iss": "getlood",
    })
}

fn sign(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .unwrap_or_default()
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut c = claims();
    c[key] = value;
    c
}

#[tokio::test]
async fn gateway_rejection_matrix() -> anyhow::Result<()> {
    let platform = Platform::builder().service(Service::Gateway).start().await?;
    let me = format!("{}/api/v1/me", platform.http_url(Service::Gateway));
    let http = reqwest::Client::new();

    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!("{}.{}.", b64(serde_json::json!({"alg": "none", "typ": "JWT"})), b64(claims()));
    let mut no_tenant = claims();
    no_tenant.as_object_mut().map(|m| m.remove("tenant"));

    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no header", None, "missing bearer token"),
        ("expired", Some(sign(&with("exp", (now() - 3600).into()), TEST_SECRET)), "token has expired"),
        ("alg none", Some(alg_none), "token algorithm 'none' is not allowed"),
        ("wrong signature", Some(sign(&claims(), "not-the-platform-secret-0123456789")), "token signature is invalid"),
        ("wrong audience", Some(sign(&with("aud", "other".into()), TEST_SECRET)), "token audience is invalid"),
        ("wrong issuer", Some(sign(&with("iss", "evil".into()), TEST_SECRET)), "token issuer is invalid"),
        ("missing tenant", Some(sign(&no_tenant, TEST_SECRET)), "token is missing the 'tenant' claim"),
        ("garbage", Some("not.a.jwt".to_owned()), "token is malformed"),
    ];
    for (name, token, want) in cases {
        let mut req = http.get(&me);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await?;
        assert_eq!(resp.status(), 401, "{name}");
        assert!(resp.headers().contains_key("www-authenticate"), "{name}");
        assert!(resp.headers().contains_key("x-request-id"), "{name}");
        let body: serde_json::Value = resp.json().await?;
        assert_eq!(body["code"], "unauthenticated", "{name}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(want), "{name}: {message}");
    }

    // The same refusals over the public gRPC API.
    let mut grpc = GatewayServiceClient::new(platform.grpc_channel(Service::Gateway));
    let mut req = tonic::Request::new(WhoAmIRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", sign(&with("exp", (now() - 3600).into()), TEST_SECRET)).parse()?);
    let status = grpc.who_am_i(req).await.expect_err("expired token accepted");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    assert_eq!(status.message(), "token has expired");
    platform.stop().await
}

#[tokio::test]
async fn tenant_comes_from_the_verified_token_only() -> anyhow::Result<()> {
    let platform = Platform::builder().service(Service::Gateway).start().await?;
    let http = reqwest::Client::new();
    let token = platform.token("acme", "alice", &["admin"]);
    // A client-chosen tenant header or query string changes nothing.
    let resp = http
        .get(format!("{}/api/v1/me?tenant=globex", platform.http_url(Service::Gateway)))
        .bearer_auth(&token)
        .header("x-tenant-id", "globex")
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await?;
    assert_eq!(body["tenant"], "acme");
    assert_eq!(body["user"], "alice");
    assert_eq!(body["roles"], serde_json::json!(["admin"]));

    let mut grpc = GatewayServiceClient::new(platform.grpc_channel(Service::Gateway));
    let mut req = tonic::Request::new(WhoAmIRequest {});
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse()?);
    req.metadata_mut().insert("x-tenant-id", "globex".parse()?);
    let who = grpc.who_am_i(req).await?.into_inner();
    assert_eq!(who.tenant_id, "acme");
    assert_eq!(who.project, "t_acme");

    // Unknown routes are JSON 404s; health stays open without a token.
    let resp = http.get(format!("{}/api/v1/nope", platform.http_url(Service::Gateway))).send().await?;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<serde_json::Value>().await?["code"], "not_found");
    let resp = http.get(format!("{}/livez", platform.http_url(Service::Gateway))).send().await?;
    assert_eq!(resp.status(), 200);
    platform.stop().await
}
