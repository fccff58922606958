//! The gateway's OpenAPI document against the running platform (issue 14): served without a
//! token at `/openapi.json`, accepted by `openapi-spec-validator`, and every operation fuzzed
//! by Schemathesis with a token: no 5xx, every status documented, every body conforming to its
//! schema. The tools come from `.tools` (`scripts/install-deploy-tools.sh`, pinned); without
//! them the fuzzing is skipped with a note, unless `GETLOOD_TEST_REQUIRE_TOOLS=1` (set by
//! `make test` and CI) makes that a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use getlood_testkit::{Platform, Service, TEST_SECRET};
use serde_json::json;

use crate::desktop_ws::unique_tenant;

/// Test cases per operation and phase: bounded so the run takes a few minutes on 2 cores.
const MAX_EXAMPLES: &str = "30";
/// The whole Schemathesis run's budget.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
/// The event stream's own run: its token lives this long, and a stream ends when its token
/// expires (`event: expired`), so every request of that run is answered in bounded time.
const STREAM_TOKEN_TTL_SECS: u64 = 4;
/// The route whose 200 is an endless stream.
const EVENTS: &str = "/api/v1/events";

pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let path = root.join(".tools/bin").join(name);
    path.exists().then_some(path)
}

/// The tools, or None when they are missing and the run may skip.
fn tools() -> Option<(PathBuf, PathBuf)> {
    match (tool("openapi-spec-validator"), tool("schemathesis")) {
        (Some(validator), Some(schemathesis)) => Some((validator, schemathesis)),
        _ => {
            assert!(
                std::env::var_os("GETLOOD_TEST_REQUIRE_TOOLS").is_none(),
                "openapi-spec-validator and schemathesis are missing: run scripts/install-deploy-tools.sh .tools"
            );
            eprintln!(
                "note: .tools has no openapi-spec-validator/schemathesis (scripts/install-deploy-tools.sh): skipped"
            );
            None
        }
    }
}

/// Runs Schemathesis over `schema` against `base`, with `token`, on the operations `filter`
/// selects; its output, and whether it passed.
async fn schemathesis(
    binary: &Path,
    schema: &Path,
    base: &str,
    token: &str,
    filter: &[&str],
    report: &Path,
) -> anyhow::Result<(bool, String)> {
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("run")
        .arg(schema)
        .args(["--url", base])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "14"])
        // One worker: with two, Hypothesis' lambda-source introspection raced on CPython 3.11's
        // `ast` ("AST constructor recursion depth mismatch"), a tool error, not the API's.
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--max-failures", "50"])
        .arg("--no-shrink")
        .args(["--report", "ndjson"])
        .arg("--report-ndjson-path")
        .arg(report)
        .args(filter)
        // Its cache (`.schemathesis/`) goes to the run's own directory, not the checkout.
        .current_dir(report.parent().unwrap_or(Path::new(".")))
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output()).await??;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

/// The summary of a Schemathesis run (operations, phases, test cases, failures).
pub(crate) fn summary(output: &str) -> &str {
    output.find("= SUMMARY =").map_or(output, |at| &output[at..])
}

#[tokio::test]
async fn the_document_is_public_valid_and_every_operation_conforms() -> anyhow::Result<()> {
    let limits = |n: u32| json!({"per_user_per_minute": n, "per_tenant_per_minute": n});
    let platform = Platform::builder()
        .all()
        // The fuzzer makes a few thousand writes from one user in minutes: budgets far above it,
        // so every answer is the handler's, not the limiter's (429s are documented either way).
        .app_settings(
            Service::Gateway,
            json!({
                "chat_rate_limit_per_minute": 100_000,
                "rate_limits": {
                    "workflow_execute": limits(100_000), "workflow_validate": limits(100_000),
                    "agent_write": limits(100_000), "search": limits(100_000),
                    "ws_command": limits(100_000), "write": limits(100_000),
                },
            }),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    let base = platform.http_url(Service::Gateway);

    // Public: no token, and the bytes `getlood openapi` exports.
    let resp = reqwest::get(format!("{base}/openapi.json")).await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served = resp.text().await?;
    assert_eq!(served, getlood_gateway::openapi_json());

    let Some((validator, schemathesis_bin)) = tools() else {
        return platform.stop().await;
    };
    let tenant = unique_tenant("oapi");
    let dir = std::env::temp_dir().join(format!("getlood-{tenant}"));
    std::fs::create_dir_all(&dir)?;
    let schema = dir.join("openapi.json");
    std::fs::write(&schema, &served)?;
    let out = tokio::process::Command::new(&validator).arg(&schema).output().await?;
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // An admin of a fresh tenant: every operation is allowed, so the fuzzer reaches the handlers.
    let token = platform.token(&tenant, "fuzzer", &["admin"]);
    let started = Instant::now();
    let exclude = ["--exclude-path", EVENTS];
    let (ok, output) =
        schemathesis(&schemathesis_bin, &schema, &base, &token, &exclude, &dir.join("main.ndjson")).await?;
    eprintln!("schemathesis (every operation but {EVENTS}) in {:?}:\n{}", started.elapsed(), summary(&output));
    assert!(ok, "schemathesis found problems:\n{output}");

    // The endless stream with a token that expires within seconds: each stream ends with its
    // `expired` event, the requests after that are 401s.
    let short = getlood_auth::dev_token(
        TEST_SECRET,
        "getlood",
        "getlood",
        &tenant,
        "fuzzer",
        &["admin"],
        STREAM_TOKEN_TTL_SECS,
    )?;
    let started = Instant::now();
    let include = ["--include-path", EVENTS];
    let (ok, output) =
        schemathesis(&schemathesis_bin, &schema, &base, &short, &include, &dir.join("events.ndjson")).await?;
    eprintln!("schemathesis ({EVENTS}) in {:?}:\n{}", started.elapsed(), summary(&output));
    assert!(ok, "schemathesis found problems on {EVENTS}:\n{output}");

    let _ = std::fs::remove_dir_all(&dir);
    platform.stop().await
}
