//! Built-in accounts (issue 16) on the real gateway, agent registry, event dispatcher, Postgres,
//! Redis, NATS and MindsDB: sign-up creates a tenant, its MindsDB project and its admin; the
//! gateway's ES256 tokens verify at the other services through its JWKS, also after a key
//! rotation; sign-in answers one 401 for an unknown email and a wrong password; bounds, rate
//! limits, tenant isolation and the audit log; the OIDC mode's config; and the web app's
//! static files with their security and cache headers, which never shadow an API path.

use std::time::{Duration, Instant};

use base64::Engine as _;
use getlood_auth::TenantId;
use getlood_mindsdb::{MindsdbClient, MindsdbConfig, ProjectAdapter, TenantContext};
use getlood_testkit::{Platform, Service};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::call_json;
use crate::desktop_ws::unique_tenant;

/// The key-encryption secret of the tests' gateways.
const KEK: &str = "accounts-test-key-encryption-secret-0123456789";
/// A password that passes the bounds.
const PASSWORD: &str = "correct horse battery staple";

/// `(status, body)` of a request without a token.
async fn public(http: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
    let mut req = http.request(method.parse()?, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// The JSON header of a JWT.
fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

fn email(tag: &str) -> String {
    format!("{}@example.com", unique_tenant(tag))
}

fn gateway_settings(extra: Value) -> Value {
    let mut settings = json!({
        "accounts": {"key_encryption_key": KEK, "key_refresh_interval": "1s"},
    });
    if let (Some(obj), Some(extra)) = (settings.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    settings
}

#[tokio::test]
async fn sign_up_sign_in_and_tokens_that_verify_at_every_service() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .gateway_jwks(Duration::from_secs(10))
        // Sign-ins of one email: the rotation below polls with them.
        .app_settings(
            Service::Gateway,
            gateway_settings(json!({"accounts": {
                "key_encryption_key": KEK, "key_refresh_interval": "1s", "rate_limit_per_email_per_minute": 30,
            }})),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    let base = platform.http_url(Service::Gateway);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;

    // The browser asks which sign-in to do.
    let (status, config) = public(&http, "GET", &format!("{base}/api/v1/auth/config"), None).await?;
    assert_eq!((status, config.clone()), (200, json!({"mode": "builtin", "signup": true})));

    // Sign-up: 201, an ES256 token of the new tenant's admin.
    let tenant_a = unique_tenant("acct_a");
    let alice = email("alice");
    let (status, signed_up) = public(
        &http,
        "POST",
        &format!("{base}/api/v1/auth/signup"),
        Some(json!({"email": alice.to_uppercase(), "password": PASSWORD, "tenant": tenant_a})),
    )
    .await?;
    assert_eq!(status, 201, "{signed_up}");
    assert_eq!(signed_up["token_type"], "Bearer");
    assert_eq!(signed_up["expires_in"], 8 * 3600);
    assert_eq!(signed_up["user"]["email"], alice, "emails are lower-cased");
    assert_eq!(signed_up["user"]["tenant"], tenant_a.as_str());
    assert_eq!(signed_up["user"]["roles"], json!(["admin"]), "the first user is the admin");
    let token_a = signed_up["access_token"].as_str().unwrap_or_default().to_owned();
    let header = jwt_header(&token_a);
    assert_eq!(header["alg"], "ES256");
    let first_kid = header["kid"].as_str().unwrap_or_default().to_owned();

    // The tenant's MindsDB project exists.
    let mindsdb =
        MindsdbClient::new(&MindsdbConfig { url: getlood_testkit::mindsdb_url(), ..MindsdbConfig::default() })?;
    let ctx = TenantContext::new(TenantId::parse(&tenant_a).map_err(anyhow::Error::msg)?, "check");
    assert!(ProjectAdapter::new(mindsdb.clone()).exists(&ctx).await?, "t_{tenant_a} not created");

    // The token works at the gateway and, through its JWKS, at the agent registry.
    let (status, me) = call_json(&http, "GET", &format!("{base}/api/v1/me"), &token_a, None).await?;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["tenant"].as_str(), me["user"].as_str()),
        (Some(tenant_a.as_str()), signed_up["user"]["id"].as_str())
    );
    let skill = json!({"name": "reporting", "description": "Reports"});
    let (status, body) = call_json(&http, "POST", &format!("{base}/api/v1/skills"), &token_a, Some(skill)).await?;
    assert_eq!(status, 201, "the registry accepts the gateway's token: {body}");

    // The JWKS lists the key, public half only.
    let (status, jwks) = public(&http, "GET", &format!("{base}/.well-known/jwks.json"), None).await?;
    assert_eq!(status, 200);
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    let key = keys.iter().find(|k| k["kid"] == first_kid.as_str()).cloned().unwrap_or(Value::Null);
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("EC"), Some("P-256"), Some("ES256"))
    );
    assert!(keys.iter().all(|k| k.get("d").is_none()), "a private key is published: {jwks}");

    // The private keys are encrypted at rest.
    let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    let schema = platform.schema("gateway");
    let rows: Vec<(bool, Option<Vec<u8>>)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT encrypted, nonce FROM \"{schema}\".signing_keys")))
            .fetch_all(&pool)
            .await?;
    assert!(!rows.is_empty() && rows.iter().all(|(enc, nonce)| *enc && nonce.as_ref().is_some_and(|n| n.len() == 12)));

    // Another sign-up to the same tenant is refused; so is a second account for the email.
    let (status, body) = public(
        &http,
        "POST",
        &format!("{base}/api/v1/auth/signup"),
        Some(json!({"email": email("bob"), "password": PASSWORD, "tenant": tenant_a})),
    )
    .await?;
    assert_eq!((status, body["code"].as_str()), (409, Some("already_exists")), "{body}");
    let (status, body) = public(
        &http,
        "POST",
        &format!("{base}/api/v1/auth/signup"),
        Some(json!({"email": alice, "password": PASSWORD, "tenant": unique_tenant("acct_dup")})),
    )
    .await?;
    assert_eq!((status, body["code"].as_str()), (409, Some("already_exists")), "{body}");

    // Sign-in: the password works; a wrong one and an unknown email get the very same 401.
    let login = |email: String, password: &str| {
        let body = json!({"email": email, "password": password});
        let http = http.clone();
        let url = format!("{base}/api/v1/auth/login");
        async move { public(&http, "POST", &url, Some(body)).await }
    };
    let (status, logged_in) = login(alice.clone(), PASSWORD).await?;
    assert_eq!(status, 200, "{logged_in}");
    assert_eq!(logged_in["user"], signed_up["user"]);
    let (wrong_status, wrong) = login(alice.clone(), "not the password at all").await?;
    let (unknown_status, unknown) = login(email("nobody"), PASSWORD).await?;
    assert_eq!((wrong_status, unknown_status), (401, 401));
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, json!({"code": "unauthenticated", "message": "invalid email or password"}));

    // Bounds: huge or malformed fields are 400s naming the field, before any hashing.
    let signup_url = format!("{base}/api/v1/auth/signup");
    let cases = [
        (json!({"email": email("big"), "password": "p".repeat(2000), "tenant": unique_tenant("acct_b")}), "password"),
        (
            json!({"email": format!("{}@example.com", "e".repeat(5000)), "password": PASSWORD, "tenant": unique_tenant("acct_b")}),
            "email",
        ),
        (json!({"email": "not-an-email", "password": PASSWORD, "tenant": unique_tenant("acct_b")}), "email"),
        (json!({"email": email("short"), "password": "short", "tenant": unique_tenant("acct_b")}), "password"),
        (json!({"email": email("tenant"), "password": PASSWORD, "tenant": "Not-A-Tenant"}), "tenant"),
        (
            json!({"email": email("extra"), "password": PASSWORD, "tenant": unique_tenant("acct_b"), "roles": ["admin"]}),
            "roles",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = public(&http, "POST", &signup_url, Some(body)).await?;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains(field), "{field}: {answer}");
    }
    let (status, _) = login(alice.clone(), &"p".repeat(5000)).await?;
    assert_eq!(status, 400);

    // The admin adds a viewer (password generated and shown once), who signs in with it.
    let users_url = format!("{base}/api/v1/auth/users");
    let carol = email("carol");
    let (status, added) =
        call_json(&http, "POST", &users_url, &token_a, Some(json!({"email": carol, "roles": ["viewer"]}))).await?;
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        (added["user"]["tenant"].as_str(), added["user"]["roles"].clone()),
        (Some(tenant_a.as_str()), json!(["viewer"]))
    );
    let generated = added["password"].as_str().unwrap_or_default().to_owned();
    let (status, carol_session) = login(carol.clone(), &generated).await?;
    assert_eq!(status, 200, "{carol_session}");
    let token_carol = carol_session["access_token"].as_str().unwrap_or_default().to_owned();
    let (status, body) =
        call_json(&http, "POST", &users_url, &token_carol, Some(json!({"email": email("eve"), "roles": ["admin"]})))
            .await?;
    assert_eq!((status, body["message"].as_str()), (403, Some("users.write needs role admin")));
    let (status, _) = call_json(&http, "GET", &format!("{base}/api/v1/skills/reporting"), &token_carol, None).await?;
    assert_eq!(status, 200, "a viewer reads the tenant's skills");
    let (status, body) = call_json(
        &http,
        "POST",
        &users_url,
        &token_a,
        Some(json!({"email": carol, "password": PASSWORD, "roles": ["member"]})),
    )
    .await?;
    assert_eq!((status, body["code"].as_str()), (409, Some("already_exists")));
    let (status, _) =
        call_json(&http, "POST", &users_url, &token_a, Some(json!({"email": email("x"), "roles": ["root"]}))).await?;
    assert_eq!(status, 400);
    let (status, _) =
        public(&http, "POST", &users_url, Some(json!({"email": email("y"), "roles": ["viewer"]}))).await?;
    assert_eq!(status, 401, "adding users needs a token");

    // Tenant B: its own admin; neither tenant reads the other's skills.
    let tenant_b = unique_tenant("acct_b");
    let (status, signed_up_b) = public(
        &http,
        "POST",
        &signup_url,
        Some(json!({"email": email("dave"), "password": PASSWORD, "tenant": tenant_b})),
    )
    .await?;
    assert_eq!(status, 201, "{signed_up_b}");
    let token_b = signed_up_b["access_token"].as_str().unwrap_or_default().to_owned();
    let skill_b = json!({"name": "b-only", "description": "B"});
    let (status, _) = call_json(&http, "POST", &format!("{base}/api/v1/skills"), &token_b, Some(skill_b)).await?;
    assert_eq!(status, 201);
    let (status, _) = call_json(&http, "GET", &format!("{base}/api/v1/skills/b-only"), &token_a, None).await?;
    assert_eq!(status, 404, "tenant A reads B's skill");
    let (status, _) = call_json(&http, "GET", &format!("{base}/api/v1/skills/reporting"), &token_b, None).await?;
    assert_eq!(status, 404, "tenant B reads A's skill");
    let (_, list_a) = call_json(&http, "GET", &format!("{base}/api/v1/skills"), &token_a, None).await?;
    let names: Vec<&str> =
        list_a["skills"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["reporting"]);

    // Every sign-up and sign-in is in the tenant's audit log, refusals with their reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    let events = loop {
        let (status, body) =
            call_json(&http, "GET", &format!("{base}/api/v1/audit?page_size=500"), &token_a, None).await?;
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().cloned().unwrap_or_default();
        let logins = events.iter().filter(|e| e["action"] == "auth.login").count();
        if (events.iter().any(|e| e["action"] == "auth.signup") && logins >= 3) || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let of = |action: &str, outcome: &str| {
        events.iter().filter(|e| e["action"] == action && e["outcome"] == outcome).count()
    };
    assert_eq!(of("auth.signup", "allowed"), 1, "{events:?}");
    assert!(of("auth.login", "allowed") >= 2, "alice and carol: {events:?}");
    let wrong_password = events.iter().find(|e| e["action"] == "auth.login" && e["outcome"] == "denied");
    assert!(wrong_password.is_some_and(|e| e["reason"] == "wrong password"), "{events:?}");
    assert!(of("auth.users.create", "allowed") >= 1, "{events:?}");

    // Rotation: a new key is published at once and signs after its activation delay; the old
    // key's tokens keep verifying everywhere, and the new key's verify at the registry at once.
    let gateway_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect({
            let schema = schema.clone();
            move |conn, _| {
                let schema = schema.clone();
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(format!("SET search_path TO \"{schema}\""))).execute(conn).await?;
                    Ok(())
                })
            }
        })
        .connect(&getlood_testkit::postgres_url())
        .await?;
    let kek = SecretString::from(KEK);
    let new_kid = getlood_gateway::rotate_signing_key(&gateway_pool, Some(&kek), Duration::from_secs(12)).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, jwks) = public(&http, "GET", &format!("{base}/.well-known/jwks.json"), None).await?;
        let kids: Vec<&str> = jwks["keys"].as_array().into_iter().flatten().filter_map(|k| k["kid"].as_str()).collect();
        if kids.contains(&new_kid.as_str()) && kids.contains(&first_kid.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the new key is not published: {jwks}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    let rotated = loop {
        let (status, session) = login(alice.clone(), PASSWORD).await?;
        assert_eq!(status, 200, "{session}");
        let token = session["access_token"].as_str().unwrap_or_default().to_owned();
        if jwt_header(&token)["kid"] == new_kid.as_str() {
            break token;
        }
        assert!(Instant::now() < deadline, "the gateway never signed with the new key");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    for (name, token) in [("old key", &token_a), ("new key", &rotated)] {
        let (status, body) = call_json(&http, "GET", &format!("{base}/api/v1/skills"), token, None).await?;
        assert_eq!(status, 200, "{name} at the registry: {body}");
        let (status, _) = call_json(&http, "GET", &format!("{base}/api/v1/me"), token, None).await?;
        assert_eq!(status, 200, "{name} at the gateway");
    }

    gateway_pool.close().await;
    pool.close().await;
    for tenant in [&tenant_a, &tenant_b] {
        let ctx = TenantContext::new(TenantId::parse(tenant).map_err(anyhow::Error::msg)?, "cleanup");
        let _ = ProjectAdapter::new(mindsdb.clone()).drop(&ctx).await;
    }
    platform.stop().await
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_address_and_per_email() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::Gateway)
        .app_settings(
            Service::Gateway,
            gateway_settings(json!({"accounts": {
                "key_encryption_key": KEK,
                "rate_limit_per_email_per_minute": 3,
                "rate_limit_per_ip_per_minute": 5,
            }})),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    let url = format!("{}/api/v1/auth/login", platform.http_url(Service::Gateway));
    let http = reqwest::Client::new();
    let attempt = |email: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let resp = http.post(&url).json(&json!({"email": email, "password": PASSWORD})).send().await?;
            let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            anyhow::Ok((status, retry_after, body))
        }
    };
    // Per email: three attempts, then 429 with Retry-After.
    let victim = email("victim");
    for _ in 0..3 {
        assert_eq!(attempt(victim.clone()).await?.0, 401);
    }
    let (status, retry_after, body) = attempt(victim.clone()).await?;
    assert_eq!((status, body["code"].as_str()), (429, Some("resource_exhausted")), "{body}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    // Per address: a refused attempt counted nothing, so two more emails pass (5 in all from
    // this address) and the next is refused.
    assert_eq!(attempt(email("other1")).await?.0, 401);
    assert_eq!(attempt(email("other2")).await?.0, 401);
    let (status, _, body) = attempt(email("other3")).await?;
    assert_eq!(status, 429, "the address is over its limit: {body}");
    platform.stop().await
}

#[tokio::test]
async fn an_oidc_deployment_sends_the_browser_to_its_provider() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::Gateway)
        .app_settings(
            Service::Gateway,
            json!({"oidc": {
                "client_id": "getlood-web",
                "authorization_endpoint": "https://login.example.com/authorize",
                "token_endpoint": "https://login.example.com/oauth/token",
            }}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    let base = platform.http_url(Service::Gateway);
    let http = reqwest::Client::new();
    let (status, config) = public(&http, "GET", &format!("{base}/api/v1/auth/config"), None).await?;
    assert_eq!(status, 200);
    assert_eq!(
        config,
        json!({"mode": "oidc", "signup": false, "oidc": {
            "issuer": "getlood", "client_id": "getlood-web",
            "authorization_endpoint": "https://login.example.com/authorize",
            "token_endpoint": "https://login.example.com/oauth/token",
            "scopes": ["openid", "profile", "email"],
        }})
    );
    for (method, path) in
        [("POST", "/api/v1/auth/signup"), ("POST", "/api/v1/auth/login"), ("GET", "/.well-known/jwks.json")]
    {
        let body = (method == "POST").then(|| json!({"email": "a@example.com", "password": PASSWORD, "tenant": "x"}));
        let (status, answer) = public(&http, method, &format!("{base}{path}"), body).await?;
        assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")), "{path}: {answer}");
    }
    platform.stop().await
}

#[tokio::test]
async fn the_web_app_is_served_with_its_headers_and_never_hides_an_api_path() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("getlood-web-{}", unique_tenant("web")));
    std::fs::create_dir_all(dir.join("assets"))?;
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>GETLOOD</title><script type=module src=/assets/app-3f9a1c.js></script>",
    )?;
    std::fs::write(dir.join("assets/app-3f9a1c.js"), "console.log('desktop')")?;
    std::fs::write(dir.join("favicon.svg"), "<svg/>")?;
    let platform = Platform::builder()
        .service(Service::Gateway)
        .app_settings(Service::Gateway, json!({"web_dir": dir}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    let base = platform.http_url(Service::Gateway);
    let http = reqwest::Client::new();

    let index = http.get(format!("{base}/")).send().await?;
    assert_eq!(index.status(), 200);
    let h = index.headers().clone();
    assert!(h["content-type"].to_str()?.starts_with("text/html"));
    assert_eq!(h["cache-control"], "no-cache");
    let csp = h["content-security-policy"].to_str()?.to_owned();
    assert!(csp.starts_with("default-src 'self'; script-src 'self';"), "{csp}");
    let host = base.trim_start_matches("http://");
    assert!(csp.contains(&format!("connect-src 'self' ws://{host} wss://{host};")), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-eval"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert!(index.text().await?.contains("<title>GETLOOD</title>"));

    let asset = http.get(format!("{base}/assets/app-3f9a1c.js")).send().await?;
    assert_eq!(asset.status(), 200);
    assert_eq!(asset.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert!(asset.headers()["content-type"].to_str()?.contains("javascript"));
    let icon = http.get(format!("{base}/favicon.svg")).send().await?;
    assert_eq!((icon.status().as_u16(), icon.headers()["cache-control"].to_str()?), (200, "no-cache"));

    // The app's own routes get index.html; a missing hashed asset does not.
    for route in ["/desktop", "/workflows/42/edit"] {
        let resp = http.get(format!("{base}{route}")).send().await?;
        assert_eq!(resp.status(), 200, "{route}");
        assert_eq!(resp.headers()["cache-control"], "no-cache");
        assert!(resp.text().await?.contains("<title>GETLOOD</title>"), "{route}");
    }
    let missing = http.get(format!("{base}/assets/app-000000.js")).send().await?;
    assert_eq!(missing.status(), 404);
    assert_ne!(missing.headers()["cache-control"], "public, max-age=31536000, immutable");

    // API paths keep their JSON answers.
    for path in ["/api/v1/nope", "/v1/nope", "/ws/nope", "/a2a/", "/.well-known/nope"] {
        let (status, body) = public(&http, "GET", &format!("{base}{path}"), None).await?;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{path}: {body}");
    }
    let (status, body) = public(&http, "POST", &format!("{base}/desktop"), Some(json!({}))).await?;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = public(&http, "GET", &format!("{base}/api/v1/me"), None).await?;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let (status, body) = public(&http, "GET", &format!("{base}/graphql"), None).await?;
    assert_eq!(status, 401, "{body}");
    let (status, body) = public(&http, "GET", &format!("{base}/openapi.json"), None).await?;
    assert_eq!((status, body["openapi"].as_str()), (200, Some("3.1.0")));
    let (status, body) = public(&http, "GET", &format!("{base}/api/v1/auth/config"), None).await?;
    assert_eq!((status, body["mode"].as_str()), (200, Some("builtin")));

    platform.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
