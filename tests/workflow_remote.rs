//! Workflow nodes that call outside the engine (issue 15), driven through the gateway's REST
//! routes only: `a2a_agent` calling a GETLOOD agent through the platform's own A2A endpoint
//! (`/a2a/{agent}` on the gateway, the agent a real MindsDB agent whose model is the OpenAI
//! double), and `mcp_tool` calling a small MCP server this test starts (the official rmcp SDK's
//! server, behind a bearer check). Also: the egress policy at save time, a missing tool and a
//! tool error failing their node with the remote's words, credentials never read back nor
//! echoed into a run, remote cancellation, and another tenant seeing and running nothing.

use std::time::{Duration, Instant};

use axum::response::IntoResponse as _;
use getlood_testkit::{OpenAiDouble, Platform, Service};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;
use crate::events::read_sse;

const QUESTION: &str = "Which protocol lets agents of different vendors cooperate?";
const ANSWER: &str = "The agent to agent protocol, A2A.";
/// Questions containing this are held by the double, so the remote task is still running.
const SLOW: &str = "SLOW-REMOTE-QUESTION";
/// The MCP server's bearer token; its `whoami` tool echoes it back.
const MCP_TOKEN: &str = "mcp-secret-token-42";
/// The workflow service's key-encryption key: nodes' credentials are sealed at rest with it.
const KEK: &str = "workflow-test-key-encryption-key-0123456789";

/// The workflow settings of these tests: remote nodes may call loopback (the gateway, the MCP
/// server here), and their credentials are sealed at rest.
fn workflow_settings() -> Value {
    json!({"egress": {"allow": ["127.0.0.0/8", "::1", "localhost"]}, "key_encryption_key": KEK})
}

/// Every stored version of `workflow`'s graph, as the text Postgres holds.
async fn stored_graphs(platform: &Platform, workflow: &str) -> anyhow::Result<Vec<String>> {
    let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    let schema = platform.schema("workflow");
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT graph::text FROM \"{schema}\".workflow_versions WHERE workflow_id = $1::uuid ORDER BY version"
    )))
    .bind(workflow)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(rows.into_iter().map(|(g,)| g).collect())
}

struct World {
    platform: Platform,
    _llm: OpenAiDouble,
    http: reqwest::Client,
    base: String,
    /// Writes and runs workflows.
    builder: String,
    /// The token the a2a_agent node sends: a member of the tenant (reads agents, chats).
    alice: String,
    /// A builder and operator of another tenant.
    mallory: String,
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let llm = OpenAiDouble::start().await?;
        llm.reply_when(QUESTION, ANSWER);
        llm.reply_when(SLOW, "late");
        llm.delay_when(SLOW, Duration::from_secs(20));
        let platform = Platform::builder()
            .service(Service::AgentRegistry)
            .service(Service::Pipeline)
            .service(Service::Workflow)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(
                Service::Pipeline,
                json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-test-intent"}}),
            )
            .app_settings(Service::Workflow, workflow_settings())
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let tenant = unique_tenant("wfr");
        let other = unique_tenant("wfx");
        let admin = platform.token(&tenant, "root", &["admin"]);
        let base = platform.http_url(Service::Gateway);
        let http = reqwest::Client::new();
        // The same agent as tests/a2a.rs: its model is the double.
        crate::a2a::create_helper(&http, &base, &admin, &llm).await?;
        Ok(Self {
            builder: platform.token(&tenant, "bob", &["builder", "operator"]),
            alice: platform.token(&tenant, "alice", &["member"]),
            mallory: platform.token(&other, "mallory", &["builder", "operator"]),
            platform,
            _llm: llm,
            http,
            base,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/workflows{path}", self.base)
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        crate::call_json(&self.http, method, &self.url(path), token, body).await
    }

    async fn create(&self, name: &str, graph: Value) -> anyhow::Result<Value> {
        let (status, body) = self.call("POST", "", &self.builder, Some(json!({"name": name, "graph": graph}))).await?;
        anyhow::ensure!(status == 201, "create: {status} {body}");
        Ok(body)
    }

    async fn execute(&self, workflow: &str, input: Value) -> anyhow::Result<String> {
        let (status, body) =
            self.call("POST", &format!("/{workflow}/execute"), &self.builder, Some(json!({"input": input}))).await?;
        anyhow::ensure!(status == 202, "execute: {status} {body}");
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Polls the run until `done` holds.
    async fn wait_run(&self, run: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.call("GET", &format!("/runs/{run}"), &self.builder, None).await?;
            anyhow::ensure!(status == 200, "get run: {status} {body}");
            if done(&body) {
                return Ok(body);
            }
            anyhow::ensure!(Instant::now() < deadline, "run never reached the state: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn finished(&self, run: &str) -> anyhow::Result<Value> {
        self.wait_run(run, |r| ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or(""))).await
    }
}

fn node<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["node_runs"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == id)).unwrap_or(&Value::Null)
}

/// start -> `middle` -> end, the end's result being `result`.
fn chain(middle: Value, result: Value) -> Value {
    let id = middle["id"].clone();
    json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
            middle,
            {"id": "end", "type": "end", "data": {"output": result}, "position": {"x": 400, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": id},
            {"id": "e2", "source": id, "target": "end"},
        ],
    })
}

fn a2a_node(card_url: &str, message: &str, token: &str) -> Value {
    json!({"id": "call", "type": "a2a_agent", "position": {"x": 200, "y": 0},
           "data": {"card_url": card_url, "message": message, "auth": {"bearer": token}, "timeout_ms": 90_000}})
}

/// `a2a_agent` -> the platform's own A2A server: the answer as the node's output, each status
/// update as a `node.progress` event and a log line, the token neither read back nor echoed,
/// a save that keeps "[redacted]" keeping it, and a cancelled run cancelling the remote task.
#[tokio::test]
async fn workflow_a2a_agent_node_calls_a_getlood_agent_over_a2a() -> anyhow::Result<()> {
    let w = World::start().await?;
    let agent_url = format!("{}/a2a/helper", w.base);
    let graph = chain(
        a2a_node(&agent_url, "Please answer: {{input.question}}", &w.alice),
        json!({"answer": "{{call.answer}}"}),
    );
    let wf = w.create("ask-remote", graph).await?;
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    // Reads never show the token.
    assert_eq!(wf["graph"]["nodes"][1]["data"]["auth"]["bearer"], "[redacted]", "{wf}");
    let (_, read) = w.call("GET", &format!("/{wf_id}"), &w.builder, None).await?;
    assert!(!read.to_string().contains(&w.alice), "the token was read back: {read}");
    // Nor does Postgres hold it: sealed at rest, opened only to run the node.
    let stored = stored_graphs(&w.platform, &wf_id).await?;
    assert!(stored.len() == 1 && stored[0].contains("\"sealed\"") && !stored[0].contains(&w.alice), "{stored:?}");

    let run_id = w.execute(&wf_id, json!({"question": QUESTION})).await?;
    let run = w.finished(&run_id).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    let call = node(&run, "call");
    assert_eq!(call["output"]["answer"], ANSWER, "{run}");
    assert_eq!(call["output"]["state"], "TASK_STATE_COMPLETED");
    assert_eq!(call["output"]["agent"], "helper");
    assert!(!call["output"]["task_id"].as_str().unwrap_or_default().is_empty(), "{call}");
    assert_eq!(run["result"]["answer"], ANSWER, "{run}");
    assert!(!run.to_string().contains(&w.alice), "the token is in the run: {run}");
    // The status updates, as log lines of the node...
    let states: Vec<&str> = run["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["node_id"] == "call")
        .filter_map(|l| l["fields"]["state"].as_str())
        .collect();
    assert!(states.contains(&"TASK_STATE_WORKING") && states.contains(&"TASK_STATE_COMPLETED"), "{states:?}");
    // ...and as node.progress events on the run's stream, between the node's start and end.
    let resp = w.http.get(w.url(&format!("/runs/{run_id}/events"))).bearer_auth(&w.builder).send().await?;
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp, 64, Duration::from_secs(10)).await;
    let kinds: Vec<String> = events
        .iter()
        .filter(|(_, _, e)| e["data"]["node_id"] == "call")
        .map(|(_, kind, e)| format!("{kind}:{}", e["data"]["state"].as_str().unwrap_or("")))
        .collect();
    let working = kinds.iter().position(|k| k == "node.progress:TASK_STATE_WORKING");
    let completed = kinds.iter().position(|k| k == "node.progress:TASK_STATE_COMPLETED");
    assert_eq!(kinds.first().map(String::as_str), Some("node.started:"), "{kinds:?}");
    assert_eq!(kinds.last().map(String::as_str), Some("node.completed:"), "{kinds:?}");
    assert!(working.is_some() && working < completed, "{kinds:?}");
    let progress = events.iter().find(|(_, kind, _)| kind == "node.progress").map(|(_, _, e)| e).unwrap();
    assert_eq!(progress["data"]["remote_id"], call["output"]["task_id"], "{progress}");

    // Saved back as read ("[redacted]"): the stored token is kept (the next version runs); at
    // another URL it is not.
    let mut as_read = read["graph"].clone();
    as_read["nodes"][1]["data"]["message"] = json!("Once more: {{input.question}}");
    let (status, v2) = w.call("PUT", &format!("/{wf_id}"), &w.builder, Some(json!({"graph": as_read.clone()}))).await?;
    assert_eq!(status, 200, "{v2}");
    let stored = stored_graphs(&w.platform, &wf_id).await?;
    assert!(stored.len() == 2 && stored.iter().all(|g| !g.contains(&w.alice)), "{stored:?}");
    let run2 = w.finished(&w.execute(&wf_id, json!({"question": QUESTION})).await?).await?;
    assert_eq!(node(&run2, "call")["output"]["answer"], ANSWER, "{run2}");
    as_read["nodes"][1]["data"]["card_url"] = json!("https://agents.example.com/a2a/helper");
    let (status, err) = w.call("PUT", &format!("/{wf_id}"), &w.builder, Some(json!({"graph": as_read}))).await?;
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("'card_url' changed: give the credential again"), "{err}");

    // A cancelled run cancels its remote task (best effort, right away).
    let slow = w.create("ask-slow", chain(a2a_node(&agent_url, SLOW, &w.alice), json!({}))).await?;
    let run_id = w.execute(slow["id"].as_str().unwrap(), json!({})).await?;
    let running = w
        .wait_run(&run_id, |r| {
            r["logs"].as_array().is_some_and(|l| l.iter().any(|l| l["fields"]["state"] == "TASK_STATE_WORKING"))
        })
        .await?;
    let remote_task = running["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|l| l["fields"]["remote_id"].as_str().filter(|s| !s.is_empty()))
        .unwrap()
        .to_owned();
    let (status, body) =
        w.call("POST", &format!("/runs/{run_id}/cancel"), &w.builder, Some(json!({"reason": "enough"}))).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.finished(&run_id).await?["status"], "cancelled");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": remote_task}});
        let (status, task) = crate::call_json(&w.http, "POST", &agent_url, &w.alice, Some(rpc)).await?;
        assert_eq!(status, 200, "{task}");
        if task["result"]["status"]["state"] == "TASK_STATE_CANCELED" {
            break;
        }
        assert!(Instant::now() < deadline, "the remote task was not canceled: {task}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A card the node cannot read (no such agent): the node fails saying so, without retries
    // eating the run (404 is permanent).
    let missing =
        w.create("ask-nobody", chain(a2a_node(&format!("{}/a2a/nobody", w.base), "hi", &w.alice), json!({}))).await?;
    let run = w.finished(&w.execute(missing["id"].as_str().unwrap(), json!({})).await?).await?;
    assert_eq!(run["status"], "failed", "{run}");
    let error = node(&run, "call")["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with("agent card: nothing at http://127.0.0.1:") && error.ends_with("(HTTP 404)"), "{error}");
    assert_eq!(node(&run, "call")["attempt"], 1, "{run}");

    // Another tenant neither sees nor runs the workflow.
    let (status, _) = w.call("GET", &format!("/{wf_id}"), &w.mallory, None).await?;
    assert_eq!(status, 404);
    let (status, _) = w.call("POST", &format!("/{wf_id}/execute"), &w.mallory, Some(json!({"input": {}}))).await?;
    assert_eq!(status, 404);
    let (status, _) = w.call("GET", &format!("/runs/{}", run2["id"].as_str().unwrap()), &w.mallory, None).await?;
    assert_eq!(status, 404);
    w.platform.stop().await
}

/// The tools of the test's MCP server.
#[derive(Clone)]
struct TestTools;

fn tool(name: &'static str, description: &'static str) -> Tool {
    let schema: JsonObject = serde_json::from_value(json!({"type": "object"})).unwrap();
    Tool::new(name, description, std::sync::Arc::new(schema))
}

impl ServerHandler for TestTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(vec![
            tool("add", "a + b"),
            tool("fail", "always fails"),
            tool("whoami", "echoes the caller's authorization"),
        ]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "add" => {
                let n = |k: &str| args.get(k).and_then(Value::as_f64).unwrap_or_default();
                let sum = n("a") + n("b");
                let mut r = CallToolResult::success(vec![ContentBlock::text(format!("the sum is {sum}"))]);
                r.structured_content = Some(json!({"sum": sum}));
                r
            }
            "fail" => CallToolResult::error(vec![ContentBlock::text("the disk is full")]),
            "whoami" => {
                let auth = ctx
                    .extensions
                    .get::<http::request::Parts>()
                    .and_then(|p| p.headers.get("authorization"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("nothing")
                    .to_owned();
                CallToolResult::success(vec![ContentBlock::text(format!("you sent {auth}"))])
            }
            other => return Err(ErrorData::invalid_params(format!("unknown tool {other}"), None)),
        };
        Ok(result.into())
    }
}

/// Starts the MCP server on loopback; only requests with [`MCP_TOKEN`] get through.
async fn mcp_server() -> anyhow::Result<String> {
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    let service: StreamableHttpService<TestTools, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(TestTools), Default::default(), config);
    let app = axum::Router::new().nest_service("/mcp", service).layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let ok = req.headers().get("authorization").and_then(|v| v.to_str().ok())
                == Some(&format!("Bearer {MCP_TOKEN}"));
            if ok { next.run(req).await } else { axum::http::StatusCode::UNAUTHORIZED.into_response() }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/mcp"))
}

fn mcp_node(id: &str, url: &str, tool: &str, arguments: Value) -> Value {
    json!({"id": id, "type": "mcp_tool", "position": {"x": 200, "y": 0},
           "data": {"server_url": url, "tool": tool, "arguments": arguments, "auth": {"bearer": MCP_TOKEN},
                    "retry": {"max_attempts": 1}}})
}

/// `mcp_tool` -> a small MCP server of the test: the tool's text and structured result as the
/// output, an echoed token redacted, a missing tool and a tool error failing the node with
/// clear messages, a refused URL a precise 400, and another tenant kept out.
#[tokio::test]
async fn workflow_mcp_tool_node_calls_a_remote_tool() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::Workflow)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .app_settings(Service::Workflow, workflow_settings())
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let llm = OpenAiDouble::start().await?;
    let tenant = unique_tenant("wfm");
    let w = World {
        builder: platform.token(&tenant, "bob", &["builder", "operator"]),
        alice: String::new(),
        mallory: platform.token(&unique_tenant("wfy"), "mallory", &["builder", "operator"]),
        base: platform.http_url(Service::Gateway),
        http: reqwest::Client::new(),
        platform,
        _llm: llm,
    };
    let url = mcp_server().await?;

    // start -> add -> who -> end: arguments from the input and the previous output.
    let graph = json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}},
            mcp_node("add", &url, "add", json!({"a": "{{input.a}}", "b": 2})),
            mcp_node("who", &url, "whoami", json!({"about": "{{add.text}}"})),
            {"id": "end", "type": "end", "data": {"output": {"sum": "{{add.structured.sum}}", "who": "{{who.text}}"}}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "add"},
            {"id": "e2", "source": "add", "target": "who"},
            {"id": "e3", "source": "who", "target": "end"},
        ],
    });
    let wf = w.create("tools", graph).await?;
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    assert!(!wf.to_string().contains(MCP_TOKEN), "{wf}");
    // Postgres holds the token sealed; the server still gets it (it refuses any other).
    let stored = stored_graphs(&w.platform, &wf_id).await?;
    assert!(stored.len() == 1 && stored[0].contains("\"sealed\"") && !stored[0].contains(MCP_TOKEN), "{stored:?}");
    let run = w.finished(&w.execute(&wf_id, json!({"a": 40})).await?).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    let add = node(&run, "add");
    assert_eq!(add["output"]["text"], "the sum is 42", "{run}");
    assert_eq!(add["output"]["structured"]["sum"].as_f64(), Some(42.0), "{run}");
    assert_eq!(add["output"]["tool"], "add");
    assert_eq!(run["result"]["sum"].as_f64(), Some(42.0), "{run}");
    // The server echoed the token: the run shows it redacted.
    assert_eq!(run["result"]["who"], "you sent Bearer [redacted]", "{run}");
    assert!(!run.to_string().contains(MCP_TOKEN), "{run}");

    // A tool the server does not have, and a tool that reports an error.
    for (tool, expected) in [
        ("nope", format!("the MCP server at {url} has no tool 'nope' (it offers: add, fail, whoami)")),
        ("fail", "tool 'fail' failed: the disk is full".to_owned()),
    ] {
        let wf = w.create(&format!("tool-{tool}"), chain(mcp_node("t", &url, tool, json!({})), json!({}))).await?;
        let run = w.finished(&w.execute(wf["id"].as_str().unwrap(), json!({})).await?).await?;
        assert_eq!(run["status"], "failed", "{run}");
        assert_eq!(node(&run, "t")["error"], expected.as_str(), "{run}");
        assert!(run["error"]["message"].as_str().unwrap_or_default().contains(&expected), "{run}");
    }

    // Without the server's token: the session is refused, the node says with whom.
    let mut bare = mcp_node("t", &url, "add", json!({}));
    bare["data"].as_object_mut().unwrap().remove("auth");
    let wf = w.create("tool-noauth", chain(bare, json!({}))).await?;
    let run = w.finished(&w.execute(wf["id"].as_str().unwrap(), json!({})).await?).await?;
    let error = node(&run, "t")["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.starts_with(&format!("cannot open an MCP session with {url}")), "{error}");

    // The metadata address, in any spelling: refused when saved, naming the field.
    for bad in ["http://169.254.169.254/mcp", "http://2852039166/mcp", "http://[::ffff:169.254.169.254]/mcp"] {
        let graph = chain(mcp_node("t", bad, "add", json!({})), json!({}));
        let (status, err) = w.call("POST", "", &w.builder, Some(json!({"name": "metadata", "graph": graph}))).await?;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["code"], "invalid_argument");
        let message = err["message"].as_str().unwrap();
        assert!(
            message.contains("[t] graph.nodes[1].data.server_url: 'server_url' 169.254.169.254 is a link-local address; allow it with app.egress.allow"),
            "{bad}: {message}"
        );
        let (status, checked) = w
            .call(
                "POST",
                "/validate",
                &w.builder,
                Some(json!({"graph": chain(mcp_node("t", bad, "add", json!({})), json!({}))})),
            )
            .await?;
        assert_eq!((status, checked["valid"].as_bool()), (200, Some(false)), "{checked}");
    }
    // Data of the wrong shape: every problem named.
    let graph = chain(
        json!({"id": "t", "type": "mcp_tool", "data": {"tool": "a b", "arguments": [1], "auth": {"basic": "x"}}}),
        json!({}),
    );
    let (status, err) = w.call("POST", "", &w.builder, Some(json!({"name": "shapes", "graph": graph}))).await?;
    assert_eq!(status, 400, "{err}");
    let message = err["message"].as_str().unwrap();
    for field in ["data.server_url", "data.tool", "data.arguments", "data.auth.basic", "data.auth.bearer"] {
        assert!(message.contains(&format!("[t] graph.nodes[1].{field}:")), "{field} missing from: {message}");
    }
    // A new workflow cannot carry "[redacted]" for a credential.
    let mut placeholder = mcp_node("t", &url, "add", json!({}));
    placeholder["data"]["auth"]["bearer"] = json!("[redacted]");
    let (status, err) =
        w.call("POST", "", &w.builder, Some(json!({"name": "ph", "graph": chain(placeholder, json!({}))}))).await?;
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap().contains("no stored value to keep"), "{err}");

    // Another tenant neither sees nor runs it.
    let (status, _) = w.call("GET", &format!("/{wf_id}"), &w.mallory, None).await?;
    assert_eq!(status, 404);
    let (status, _) =
        w.call("POST", &format!("/{wf_id}/execute"), &w.mallory, Some(json!({"input": {"a": 1}}))).await?;
    assert_eq!(status, 404);
    let (status, _) = w.call("GET", &format!("/runs/{}", run["id"].as_str().unwrap()), &w.mallory, None).await?;
    assert_eq!(status, 404);
    w.platform.stop().await
}
