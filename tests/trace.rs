//! One chat turn is one trace: the real `getlood gateway`, `getlood pipeline` and
//! `getlood agent-registry` processes export spans over OTLP to a local receiver, and the spans
//! of the gateway request, both services' gRPC handlers and the MindsDB HTTP call share one
//! trace id (W3C `traceparent` over HTTP, gRPC metadata and MindsDB's HTTP API).
//! The binaries come from `cargo build --bins` (`make test` builds them first).

use std::net::TcpListener;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use getlood_testkit::{OpenAiDouble, OtlpReceiver, ReceivedSpan, TEST_SECRET};
use serde_json::json;

struct Bin {
    name: &'static str,
    child: Child,
    http: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

fn spawn(name: &'static str, env: &[(String, String)]) -> anyhow::Result<Bin> {
    let mut cmd = getlood_testkit::service_command(name)?;
    let prefix = format!("GETLOOD_{}_", name.to_uppercase().replace('-', "_"));
    let http = free_port();
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env(format!("{prefix}HTTP_ADDR"), format!("127.0.0.1:{http}"))
        // Port 0: parallel tests never share the default admin port.
        .env(format!("{prefix}ADMIN_ADDR"), "127.0.0.1:0")
        .env(format!("{prefix}LOG_FORMAT"), "json")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        let key = if k.starts_with("OTEL_") { k.clone() } else { format!("{prefix}{k}") };
        cmd.env(key, v);
    }
    Ok(Bin { name, child: cmd.spawn()?, http })
}

async fn wait_ready(bin: &Bin) -> anyhow::Result<()> {
    // The services run in child processes: nothing in this one has installed reqwest's TLS
    // provider before this first client (reqwest panics without one).
    getlood_tls::install_crypto_provider();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{}/readyz", bin.http)).send().await
            && r.status() == 200
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{} not ready", bin.name)
}

fn sigterm(bin: &mut Bin) {
    if let Ok(pid) = i32::try_from(bin.child.id()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    let _ = bin.child.wait();
}

/// The spans of the trace the gateway's HTTP span for `path` belongs to.
fn gateway_trace<'a>(spans: &'a [ReceivedSpan], path: &str) -> Vec<&'a ReceivedSpan> {
    let root = spans
        .iter()
        .find(|s| s.service == "gateway" && s.name == "gateway.http" && s.attribute("path") == Some(path))
        .unwrap_or_else(|| panic!("no gateway span for {path} among {} spans", spans.len()));
    spans.iter().filter(|s| s.trace_id == root.trace_id).collect()
}

/// Drops the Postgres schemas `<schema>_<run>` the test's processes created.
async fn drop_schemas(schemas: &[&str], run: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    for schema in schemas {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}_{run}\" CASCADE")))
            .execute(&pool)
            .await?;
    }
    Ok(())
}

// Multi-threaded: the receiver must keep serving while the test blocks on child processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_pipeline_registry_and_mindsdb() -> anyhow::Result<()> {
    let otlp = OtlpReceiver::start().await?;
    let llm = OpenAiDouble::start().await?;
    let run = format!("trace{}", std::process::id());
    let (registry_grpc, pipeline_grpc, gateway_grpc) = (free_port(), free_port(), free_port());
    let common = |schema: &str| {
        vec![
            ("POSTGRES__URL".to_owned(), getlood_testkit::postgres_url()),
            ("POSTGRES__SCHEMA".to_owned(), format!("{schema}_{run}")),
            ("REDIS__URL".to_owned(), getlood_testkit::redis_url()),
            ("REDIS__KEY_PREFIX".to_owned(), format!("getlood_{run}")),
            ("NATS__URL".to_owned(), getlood_testkit::nats_url()),
            ("AUTH__HS256_SECRET".to_owned(), TEST_SECRET.to_owned()),
            ("SERVICES__AGENT_REGISTRY".to_owned(), format!("http://127.0.0.1:{registry_grpc}")),
            ("SERVICES__PIPELINE".to_owned(), format!("http://127.0.0.1:{pipeline_grpc}")),
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), otlp.endpoint()),
        ]
    };
    let with = |mut env: Vec<(String, String)>, extra: &[(&str, String)]| {
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let mut bins = vec![
        spawn(
            "agent-registry",
            &with(
                common("agent_registry"),
                &[
                    ("GRPC_ADDR", format!("127.0.0.1:{registry_grpc}")),
                    ("MINDSDB__URL", getlood_testkit::mindsdb_url()),
                    // The OpenAI double listens on loopback, which the egress policy refuses
                    // unless allowed (as `getlood dev` and the test kit do).
                    ("APP__EGRESS__ALLOW", r#"["127.0.0.0/8"]"#.to_owned()),
                ],
            ),
        )?,
        spawn(
            "pipeline",
            &with(
                common("pipeline"),
                &[
                    ("GRPC_ADDR", format!("127.0.0.1:{pipeline_grpc}")),
                    ("MINDSDB__URL", getlood_testkit::mindsdb_url()),
                    ("APP__INTENT_MODEL__BASE_URL", llm.base_url()),
                    ("APP__INTENT_MODEL__API_KEY", "sk-trace".to_owned()),
                ],
            ),
        )?,
        spawn("gateway", &with(common("gateway"), &[("GRPC_ADDR", format!("127.0.0.1:{gateway_grpc}"))]))?,
    ];
    let outcome = async {
        for bin in &bins {
            wait_ready(bin).await?;
        }
        let gateway = format!("http://127.0.0.1:{}", bins[2].http);
        let token = getlood_auth::dev_token(TEST_SECRET, "getlood", "getlood", &run, "alice", &["admin"], 600)?;
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| http.post(format!("{gateway}{path}")).bearer_auth(&token).json(&body).send();
        anyhow::ensure!(post("/api/v1/skills", json!({"name": "ui-generation"})).await?.status().is_success());
        let r = post(
            "/api/v1/agents",
            json!({"name": "dashboard-builder", "skills": ["ui-generation"],
                   "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk"}}),
        )
        .await?;
        anyhow::ensure!(r.status().is_success(), "agent: {}", r.text().await?);
        let r = post("/v1/chat/completions", json!({"model": "getlood", "messages": [{"role": "user", "content": "Crée-moi un dashboard analytics"}]}))
            .await?;
        anyhow::ensure!(r.status().is_success(), "chat: {}", r.text().await?);
        anyhow::Ok(())
    }
    .await;
    // SIGTERM flushes each binary's spans before it exits.
    for bin in &mut bins {
        sigterm(bin);
    }
    outcome?;

    let spans = otlp.spans();
    let trace = gateway_trace(&spans, "/v1/chat/completions");
    let services: std::collections::BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for service in ["gateway", "pipeline", "agent-registry"] {
        assert!(services.contains(service), "{service} missing from the chat trace: {services:?}");
    }
    assert!(
        trace.iter().any(|s| s.name == "mindsdb.request"),
        "no MindsDB call in the chat trace: {:?}",
        trace.iter().map(|s| (&s.service, &s.name)).collect::<Vec<_>>()
    );

    drop_schemas(&["agent_registry", "pipeline", "gateway"], &run).await
}

// One desktop subscription is one trace: the gateway's request, the dispatcher's Subscribe,
// and the dispatcher's check with desktop-state that the caller may see the desktop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_holds_a_desktop_subscription_and_the_dispatchers_desktop_check() -> anyhow::Result<()> {
    let otlp = OtlpReceiver::start().await?;
    let run = format!("tracews{}", std::process::id());
    let (desktop_grpc, dispatcher_grpc) = (free_port(), free_port());
    let common = vec![
        ("POSTGRES__URL".to_owned(), getlood_testkit::postgres_url()),
        ("POSTGRES__SCHEMA".to_owned(), format!("desktop_state_{run}")),
        ("REDIS__URL".to_owned(), getlood_testkit::redis_url()),
        ("REDIS__KEY_PREFIX".to_owned(), format!("getlood_{run}")),
        ("NATS__URL".to_owned(), getlood_testkit::nats_url()),
        ("AUTH__HS256_SECRET".to_owned(), TEST_SECRET.to_owned()),
        ("SERVICES__DESKTOP_STATE".to_owned(), format!("http://127.0.0.1:{desktop_grpc}")),
        ("SERVICES__EVENT_DISPATCHER".to_owned(), format!("http://127.0.0.1:{dispatcher_grpc}")),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), otlp.endpoint()),
    ];
    let with = |extra: &[(&str, String)]| {
        let mut env = common.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let mut bins = vec![
        spawn(
            "desktop-state",
            &with(&[
                ("GRPC_ADDR", format!("127.0.0.1:{desktop_grpc}")),
                ("MINDSDB__URL", getlood_testkit::mindsdb_url()),
                // The agent tables' MindsDB registration is not what this test follows.
                ("APP__AGENT_TABLES__ENABLED", "false".to_owned()),
            ]),
        )?,
        spawn(
            "event-dispatcher",
            &with(&[
                ("GRPC_ADDR", format!("127.0.0.1:{dispatcher_grpc}")),
                ("MINDSDB__URL", getlood_testkit::mindsdb_url()),
                ("APP__MEMORY__ENABLED", "false".to_owned()),
            ]),
        )?,
        spawn(
            "gateway",
            &with(&[
                ("GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
                // Its own schema (A2A tasks): two services' migrations never share one.
                ("POSTGRES__SCHEMA", format!("gateway_{run}")),
            ]),
        )?,
    ];
    let outcome = async {
        for bin in &bins {
            wait_ready(bin).await?;
        }
        let gateway = format!("http://127.0.0.1:{}", bins[2].http);
        let token = getlood_auth::dev_token(TEST_SECRET, "getlood", "getlood", &run, "alice", &["member"], 600)?;
        let http = reqwest::Client::new();
        let desktop: serde_json::Value = http
            .post(format!("{gateway}/api/v1/desktops"))
            .bearer_auth(&token)
            .json(&json!({"name": "traced"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = desktop["id"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!id.is_empty(), "no desktop id in {desktop}");
        // The subscription answers its headers once the dispatcher has checked the desktop;
        // the stream itself stays open, so it is dropped after the first bytes.
        let mut resp = http
            .get(format!("{gateway}/api/v1/events?topics=window&entity_id={id}"))
            .bearer_auth(&token)
            .send()
            .await?;
        anyhow::ensure!(resp.status() == 200, "subscription: {}", resp.status());
        let _ = tokio::time::timeout(Duration::from_secs(2), resp.chunk()).await;
        drop(resp);
        anyhow::Ok(())
    }
    .await;
    for bin in &mut bins {
        sigterm(bin);
    }
    outcome?;

    let spans = otlp.spans();
    let trace = gateway_trace(&spans, "/api/v1/events");
    let services: std::collections::BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    for service in ["gateway", "event-dispatcher", "desktop-state"] {
        assert!(
            services.contains(service),
            "{service} missing from the subscription trace: {:?}",
            trace.iter().map(|s| (&s.service, &s.name)).collect::<Vec<_>>()
        );
    }

    drop_schemas(&["desktop_state", "gateway"], &run).await
}
