//! Tenant isolation, MindsDB outages and recovery, timeouts, retries, login and the
//! concurrency limit. Outages use a cuttable TCP proxy in front of the real MindsDB; retry,
//! login and limit behaviour use tiny local HTTP servers whose answers are scripted.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns fail loudly by design

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{OpenAiDouble, TcpProxy, provisioned};
use getlood_common::ErrorCode;
use getlood_mindsdb::*;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

#[tokio::test]
async fn tenant_a_cannot_see_or_touch_tenant_b() {
    let double = OpenAiDouble::start().await.unwrap();
    let (c, a) = provisioned("isoa").await;
    let (_, b) = provisioned("isob").await;
    let agents = AgentAdapter::new(c.clone());
    let kbs = KnowledgeBaseAdapter::new(c.clone());
    let models = ModelAdapter::new(c.clone());
    let jobs = JobAdapter::new(c.clone());
    let dbs = DatabaseAdapter::new(c.clone());
    let projects = ProjectAdapter::new(c.clone());

    let model = LlmSettings {
        provider: "openai".into(),
        model_name: "gpt-4o".into(),
        api_key: Some(SecretString::from("sk-a")),
        base_url: Some(double.base_url()),
    };
    let spec = AgentSpec {
        name: id("secret_agent"),
        model,
        tables: vec![],
        knowledge_bases: vec![],
        prompt_template: Some("A only".into()),
        mode: AgentMode::Text,
        timeout_secs: None,
    };
    agents.create(&a, &spec).await.unwrap();
    let emb = EmbeddingSettings {
        provider: "openai".into(),
        model_name: "double-embed".into(),
        api_key: Some(SecretString::from("sk-e")),
        base_url: Some(double.base_url()),
    };
    kbs.create(
        &a,
        &KnowledgeBaseSpec { name: id("secret_kb"), embedding: emb, metadata_columns: vec![], chunk_size: None },
    )
    .await
    .unwrap();
    kbs.insert(
        &a,
        &id("secret_kb"),
        &[Document { id: "d".into(), content: "tenant a secret".into(), metadata: Map::new() }],
    )
    .await
    .unwrap();
    models
        .create_engine(
            &a,
            &EngineSpec {
                name: id("a_llm"),
                handler: id("openai"),
                api_key: Some(SecretString::from("sk-a")),
                api_base: Some(double.base_url()),
            },
        )
        .await
        .unwrap();
    models
        .create(
            &a,
            &ModelSpec {
                name: id("secret_model"),
                engine: id("a_llm"),
                target: id("answer"),
                model_name: "gpt-4".into(),
                prompt_template: "{{q}}".into(),
                max_tokens: None,
            },
        )
        .await
        .unwrap();
    let start = chrono::Utc::now().naive_utc() + chrono::Duration::days(1);
    jobs.create(
        &a,
        &JobSpec {
            name: id("secret_job"),
            body: vec![SqlBuilder::new().kw("SELECT 1").build()],
            schedule: Some(Schedule { every: 1, unit: ScheduleUnit::Day }),
            start: Some(start),
            end: None,
        },
    )
    .await
    .unwrap();

    // B sees nothing of A.
    assert!(agents.list(&b).await.unwrap().is_empty());
    assert!(kbs.list(&b).await.unwrap().is_empty());
    assert!(models.list(&b).await.unwrap().is_empty());
    assert!(models.list_engines(&b).await.unwrap().is_empty());
    assert!(jobs.list(&b).await.unwrap().is_empty());
    assert!(jobs.history(&b, None).await.unwrap().is_empty());
    assert!(dbs.list(&b).await.unwrap().iter().all(|d| !d.name.contains("secret")));
    assert_eq!(projects.list(&b).await.unwrap(), vec![b.project().to_string()]);

    // B cannot read, query or delete A's objects by name: they do not exist for B.
    let nf = |r: Result<(), MindsdbError>| assert_eq!(r.unwrap_err().code(), ErrorCode::NotFound);
    nf(agents.get(&b, &id("secret_agent")).await.map(|_| ()));
    nf(agents.delete(&b, &id("secret_agent")).await);
    nf(agents.query(&b, &id("secret_agent"), &[AgentMessage::user("leak?")]).await.map(|_| ()));
    nf(kbs.search(&b, &id("secret_kb"), "secret", 5).await.map(|_| ()));
    nf(kbs.delete(&b, &id("secret_kb")).await);
    nf(models.get(&b, &id("secret_model")).await.map(|_| ()));
    nf(models.predict(&b, &id("secret_model"), Map::new()).await.map(|_| ()));
    nf(models.delete(&b, &id("secret_model")).await);
    nf(jobs.get(&b, &id("secret_job")).await.map(|_| ()));
    nf(jobs.delete(&b, &id("secret_job")).await);
    // Even B's project name of A (t_<a>) is unknown inside B's company.
    let b_as_a = TenantContext::new(b.tenant.clone(), "intruder");
    nf(projects
        .drop(&TenantContext { tenant: b_as_a.tenant, user: "x".into() })
        .await
        .and(Err(MindsdbError::NotFound("ok".into()))));

    // A's objects are intact.
    assert_eq!(agents.get(&a, &id("secret_agent")).await.unwrap().prompt_template.as_deref(), Some("A only"));
    assert_eq!(kbs.search(&a, &id("secret_kb"), "tenant a secret", 1).await.unwrap()[0].id, "d");
    assert_eq!(models.get(&a, &id("secret_model")).await.unwrap().status.as_deref(), Some("complete"));
    assert_eq!(jobs.list(&a).await.unwrap().len(), 1);

    jobs.delete(&a, &id("secret_job")).await.unwrap();
    models.delete(&a, &id("secret_model")).await.unwrap();
    models.drop_engine(&a, &id("a_llm")).await.unwrap();
    kbs.delete(&a, &id("secret_kb")).await.unwrap();
    agents.delete(&a, &id("secret_agent")).await.unwrap();
    projects.drop(&a).await.unwrap();
    projects.drop(&b).await.unwrap();
}

fn target_addr() -> SocketAddr {
    let url = reqwest::Url::parse(&common::mindsdb_url()).unwrap();
    let host = url.host_str().unwrap().replace("localhost", "127.0.0.1");
    format!("{host}:{}", url.port().unwrap_or(80)).parse().unwrap()
}

#[tokio::test]
async fn mindsdb_down_is_unavailable_within_the_timeout_and_recovers() {
    let proxy = TcpProxy::start(target_addr()).await.unwrap();
    let cfg = MindsdbConfig {
        url: format!("http://{}", proxy.addr()),
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        retries: 2,
        retry_backoff: Duration::from_millis(50),
        ..MindsdbConfig::default()
    };
    let c = MindsdbClient::new(&cfg).unwrap();
    let ctx = common::tenant("down");
    let projects = ProjectAdapter::new(c.clone());
    projects.ensure(&ctx).await.unwrap();

    proxy.cut();
    for _ in 0..3 {
        let started = Instant::now();
        let err = projects.list(&ctx).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
        assert!(started.elapsed() < cfg.request_timeout, "took {:?}", started.elapsed());
        // Non-idempotent operations fail the same way, without a retry storm.
        let err = AgentAdapter::new(c.clone()).delete(&ctx, &id("x")).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    }
    let api: getlood_common::ApiError = projects.list(&ctx).await.unwrap_err().into();
    assert_eq!(api.code.http_status(), StatusCode::SERVICE_UNAVAILABLE);

    // Back up: the same client recovers, no restart.
    proxy.restore();
    assert_eq!(projects.list(&ctx).await.unwrap(), vec![ctx.project().to_string()]);
    projects.drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn closed_port_is_unavailable_fast() {
    // Bind then drop a listener: the port is (almost surely) closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let cfg = MindsdbConfig {
        url: format!("http://{addr}"),
        retries: 1,
        retry_backoff: Duration::from_millis(10),
        ..MindsdbConfig::default()
    };
    let c = MindsdbClient::new(&cfg).unwrap();
    let started = Instant::now();
    let err = ProjectAdapter::new(c.clone()).ensure(&common::tenant("closed")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(c.ping().await.unwrap_err().code(), ErrorCode::Unavailable);
}

#[tokio::test]
async fn hung_server_is_deadline_exceeded_not_a_hang() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let cfg = MindsdbConfig {
        url: format!("http://{addr}"),
        request_timeout: Duration::from_millis(500),
        ..MindsdbConfig::default()
    };
    let c = MindsdbClient::new(&cfg).unwrap();
    let started = Instant::now();
    let err = ProjectAdapter::new(c).list(&common::tenant("hung")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::DeadlineExceeded, "{err}");
    // Timeouts are not retried: one deadline, not three.
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
}

/// A scripted stand-in for `/api/sql/query`.
async fn scripted_server(handler: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, handler).await.unwrap() });
    format!("http://{addr}")
}

fn table_answer() -> Json<Value> {
    Json(json!({"type": "table", "column_names": ["NAME"], "data": [["t_x"]], "context": {}}))
}

#[tokio::test]
async fn transient_503_is_retried_for_reads_only() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/api/sql/query",
        post(move || {
            let h = h.clone();
            async move {
                // Fails twice, then answers.
                if h.fetch_add(1, Ordering::SeqCst) % 3 < 2 {
                    Err(StatusCode::SERVICE_UNAVAILABLE)
                } else {
                    Ok(table_answer())
                }
            }
        }),
    );
    let url = scripted_server(app).await;
    let cfg = MindsdbConfig { url, retries: 2, retry_backoff: Duration::from_millis(10), ..MindsdbConfig::default() };
    let c = MindsdbClient::new(&cfg).unwrap();
    let ctx = common::tenant("retry");
    assert_eq!(ProjectAdapter::new(c.clone()).list(&ctx).await.unwrap(), vec!["t_x".to_owned()]);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // A non-idempotent statement that may have reached MindsDB is not repeated.
    hits.store(0, Ordering::SeqCst);
    let err = ModelAdapter::new(c).delete(&ctx, &id("m")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unavailable);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn login_token_is_used_and_renewed() {
    let logins = Arc::new(AtomicUsize::new(0));
    let l = logins.clone();
    let app = axum::Router::new()
        .route(
            "/api/login",
            post(move |Json(body): Json<Value>| {
                let l = l.clone();
                async move {
                    if body["username"] != "admin" || body["password"] != "s3cret" {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    let n = l.fetch_add(1, Ordering::SeqCst);
                    Ok(Json(json!({"token": format!("pat_{n}")})))
                }
            }),
        )
        .route(
            "/api/sql/query",
            post(|headers: HeaderMap| async move {
                // Only the second token is valid: the first one "expired".
                if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer pat_1") {
                    Ok(table_answer())
                } else {
                    Err(StatusCode::UNAUTHORIZED)
                }
            }),
        );
    let url = scripted_server(app).await;
    let cfg = MindsdbConfig {
        url,
        username: Some("admin".into()),
        password: Some(SecretString::from("s3cret")),
        ..MindsdbConfig::default()
    };
    cfg.validate_at("mindsdb").unwrap();
    let c = MindsdbClient::new(&cfg).unwrap();
    assert_eq!(ProjectAdapter::new(c.clone()).list(&common::tenant("login")).await.unwrap().len(), 1);
    assert_eq!(logins.load(Ordering::SeqCst), 2);

    let bad = MindsdbConfig { password: Some(SecretString::from("wrong")), ..cfg };
    let err = ProjectAdapter::new(MindsdbClient::new(&bad).unwrap()).list(&common::tenant("login")).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Internal, "{err}");
}

#[tokio::test]
async fn concurrency_is_limited_per_client_and_headers_come_from_the_context() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (f, p, s) = (in_flight.clone(), peak.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/api/sql/query",
        post(move |headers: HeaderMap| {
            let (f, p, s) = (f.clone(), p.clone(), s.clone());
            async move {
                let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                s.lock().unwrap().push((
                    headers.get("company-id").unwrap().to_str().unwrap().to_owned(),
                    headers.get("user-id").unwrap().to_str().unwrap().to_owned(),
                ));
                tokio::time::sleep(Duration::from_millis(50)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                table_answer()
            }
        }),
    );
    let url = scripted_server(app).await;
    let cfg = MindsdbConfig { url, max_concurrency: 2, ..MindsdbConfig::default() };
    let c = MindsdbClient::new(&cfg).unwrap();
    let ctx = common::tenant("limit");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (c, ctx) = (c.clone(), ctx.clone());
            tokio::spawn(async move { ProjectAdapter::new(c).list(&ctx).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    assert!(
        seen.iter().all(|(company, user)| company == ctx.tenant.as_str() && user == getlood_mindsdb::TENANT_USER_ID)
    );
}
