//! The gateway's MCP server (`/mcp`, issue 15) on the real platform: agent-registry, pipeline,
//! workflow, event-dispatcher and gateway in-process, real MindsDB agents whose model is the
//! OpenAI double, a real MindsDB knowledge base embedded by the double.
//! Raw JSON-RPC over streamable HTTP for the protocol's edges (sessions, errors, tenants,
//! roles), and the official `mcp` PyPI client (tests/mcp_client.py) for the whole flow.

use std::time::{Duration, Instant};

use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;

const QUESTION: &str = "What does the model context protocol do?";
const ANSWER: &str = "It lets agents and tools talk through one protocol.";
const ACCEPT: &str = "application/json, text/event-stream";
/// The tenant's knowledge base, and a search that finds its `cat` document first.
const KB: &str = "docs";
const KB_QUERY: &str = "cat sleeps on the sofa";

struct World {
    platform: Platform,
    _llm: OpenAiDouble,
    http: reqwest::Client,
    base: String,
    url: String,
    admin: String,
    workflow: String,
}

impl World {
    async fn start() -> anyhow::Result<(Self, String)> {
        let llm = OpenAiDouble::start().await?;
        llm.reply_when(QUESTION, ANSWER);
        let platform = Platform::builder()
            .service(Service::AgentRegistry)
            .service(Service::Pipeline)
            .service(Service::Workflow)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            // Knowledge bases embedded by the double (deterministic vectors), as in
            // tests/knowledge_bases.rs.
            .app_settings(
                Service::EventDispatcher,
                json!({"memory": {
                    "enabled": false,
                    "embedding": {"provider": "openai", "model_name": "double-embed", "base_url": llm.base_url(), "api_key": "sk-test"},
                }}),
            )
            .app_settings(
                Service::Pipeline,
                json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-test-intent"}}),
            )
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let tenant = unique_tenant("mcp");
        let admin = platform.token(&tenant, "alice", &["admin"]);
        let base = platform.http_url(Service::Gateway);
        let http = reqwest::Client::new();
        let (status, agent) = crate::call_json(
            &http,
            "POST",
            &format!("{base}/api/v1/agents"),
            &admin,
            Some(json!({
                "name": "helper",
                "description": "answers questions",
                "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-agent"},
                "prompt_template": "You are a helpful agent."
            })),
        )
        .await?;
        anyhow::ensure!(status == 201, "agent: {status} {agent}");
        let (status, wf) = crate::call_json(
            &http,
            "POST",
            &format!("{base}/api/v1/workflows"),
            &admin,
            Some(json!({"name": "doubler", "description": "doubles n", "graph": {
                "nodes": [
                    {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
                    {"id": "double", "type": "transform", "data": {"mapping": {"n": "{{input.n}}"}}, "position": {"x": 200, "y": 0}},
                    {"id": "end", "type": "end", "data": {}, "position": {"x": 400, "y": 0}},
                ],
                "edges": [
                    {"id": "e1", "source": "start", "target": "double"},
                    {"id": "e2", "source": "double", "target": "end"},
                ],
            }})),
        )
        .await?;
        anyhow::ensure!(status == 201, "workflow: {status} {wf}");
        let workflow = wf["id"].as_str().unwrap().to_owned();
        let kbs = format!("{base}/api/v1/knowledge-bases");
        let (status, kb) =
            crate::call_json(&http, "POST", &kbs, &admin, Some(json!({"name": KB, "metadata_columns": ["topic"]})))
                .await?;
        anyhow::ensure!(status == 201, "knowledge base: {status} {kb}");
        let (status, inserted) = crate::call_json(
            &http,
            "POST",
            &format!("{kbs}/{KB}/documents"),
            &admin,
            Some(json!({"documents": [
                {"id": "cat", "content": "my cat sleeps all day on the sofa", "metadata": {"topic": "pets"}},
                {"id": "bank", "content": "the central bank raised interest rates", "metadata": {"topic": "finance"}},
            ]})),
        )
        .await?;
        anyhow::ensure!(status == 200, "documents: {status} {inserted}");
        let url = format!("{base}/mcp");
        Ok((Self { platform, _llm: llm, http, base, url, admin, workflow }, tenant))
    }

    /// POSTs `body` (raw text) with `token` and `session`: the status, the session header and
    /// every JSON-RPC message of the answer (a JSON body or the `data:` events of an SSE one).
    async fn raw(&self, token: Option<&str>, session: Option<&str>, body: &str) -> anyhow::Result<Reply> {
        let mut req = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2025-06-18")
            .body(body.to_owned());
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(session) = session {
            req = req.header("mcp-session-id", session);
        }
        let resp = tokio::time::timeout(Duration::from_secs(90), req.send()).await??;
        let status = resp.status().as_u16();
        let session = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = tokio::time::timeout(Duration::from_secs(90), resp.text()).await??;
        let messages = if sse {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .filter_map(|d| serde_json::from_str(d).ok())
                .collect()
        } else {
            serde_json::from_str::<Value>(&text).map(|v| vec![v]).unwrap_or_default()
        };
        Ok(Reply { status, session, messages, text })
    }

    /// A session of `token`'s user: `initialize` then `notifications/initialized`.
    async fn session(&self, token: &str) -> anyhow::Result<String> {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "getlood-test", "version": "1"}
        }});
        let reply = self.raw(Some(token), None, &init.to_string()).await?;
        anyhow::ensure!(reply.status == 200, "initialize: {} {}", reply.status, reply.text);
        let session = reply.session.clone().ok_or_else(|| anyhow::anyhow!("no mcp-session-id: {}", reply.text))?;
        assert_eq!(reply.result()["serverInfo"]["name"], "getlood-gateway", "{}", reply.text);
        let done = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let reply = self.raw(Some(token), Some(&session), &done.to_string()).await?;
        anyhow::ensure!(reply.status == 202, "initialized: {} {}", reply.status, reply.text);
        Ok(session)
    }

    /// The final message of request `method` in `session`.
    async fn call(&self, token: &str, session: &str, method: &str, params: Value) -> anyhow::Result<Reply> {
        let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        self.raw(Some(token), Some(session), &body.to_string()).await
    }

    /// The structured result of tool `name` (asserting it succeeded).
    async fn tool_ok(&self, token: &str, session: &str, name: &str, args: Value) -> anyhow::Result<Value> {
        let reply = self.call(token, session, "tools/call", json!({"name": name, "arguments": args})).await?;
        let result = reply.result();
        anyhow::ensure!(result["isError"] == false, "{name}: {}", reply.text);
        Ok(result["structuredContent"].clone())
    }

    /// The platform error code of a failed tool call (asserting it failed as a tool result).
    async fn tool_error(&self, token: &str, session: &str, name: &str, args: Value) -> anyhow::Result<String> {
        let reply = self.call(token, session, "tools/call", json!({"name": name, "arguments": args})).await?;
        let result = reply.result();
        anyhow::ensure!(reply.status == 200 && result["isError"] == true, "{name} did not fail: {}", reply.text);
        Ok(result["structuredContent"]["error"]["code"].as_str().unwrap_or_default().to_owned())
    }
}

struct Reply {
    status: u16,
    session: Option<String>,
    messages: Vec<Value>,
    text: String,
}

impl Reply {
    /// The last message (the response; notifications come before it).
    fn last(&self) -> Value {
        self.messages.last().cloned().unwrap_or(Value::Null)
    }

    fn result(&self) -> Value {
        self.last()["result"].clone()
    }

    fn error_code(&self) -> i64 {
        self.last()["error"]["code"].as_i64().unwrap_or_default()
    }
}

#[tokio::test]
async fn mcp_tools_resources_progress_sessions_errors_roles_and_tenants() -> anyhow::Result<()> {
    let (world, tenant) = World::start().await?;
    let viewer = world.platform.token(&tenant, "vera", &["viewer"]);
    let stranger = world.platform.token(&unique_tenant("mcpother"), "mallory", &["admin"]);

    // No token: the gateway's 401, before any MCP.
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let reply = world.raw(None, None, &init.to_string()).await?;
    assert_eq!(reply.status, 401, "{}", reply.text);

    let session = world.session(&world.admin).await?;
    // Tools: the agent's ask tool and the fixed ones; resources: the workflow.
    let tools = world.call(&world.admin, &session, "tools/list", json!({})).await?;
    let listed = tools.result();
    let names: Vec<&str> = listed["tools"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    for name in ["ask_helper", "start_workflow", "read_run", "search_knowledge_base"] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    let resources = world.call(&world.admin, &session, "resources/list", json!({})).await?;
    let uri = format!("getlood://workflows/{}", world.workflow);
    let kb_uri = format!("getlood://knowledge-bases/{KB}");
    for wanted in [&uri, &kb_uri] {
        assert!(
            resources.result()["resources"].as_array().unwrap().iter().any(|r| r["uri"] == wanted.as_str()),
            "{wanted}: {}",
            resources.text
        );
    }
    let templates = world.call(&world.admin, &session, "resources/templates/list", json!({})).await?;
    let templates_result = templates.result();
    let patterns: Vec<&str> = templates_result["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["uriTemplate"].as_str())
        .collect();
    assert_eq!(patterns, ["getlood://workflows/{id}", "getlood://knowledge-bases/{name}"], "{}", templates.text);
    // A knowledge base's metadata, as REST's GET /api/v1/knowledge-bases/{name}.
    let read = world.call(&world.admin, &session, "resources/read", json!({"uri": kb_uri})).await?;
    let contents = &read.result()["contents"][0];
    assert_eq!(contents["mimeType"], "application/json", "{}", read.text);
    let kb: Value = serde_json::from_str(contents["text"].as_str().unwrap())?;
    assert_eq!(kb, json!({"name": KB, "embedding_model": "double-embed", "metadata_columns": ["topic"]}));
    // Search it, as GET /api/v1/knowledge-bases/docs/search does.
    let found = world
        .tool_ok(
            &world.admin,
            &session,
            "search_knowledge_base",
            json!({"knowledge_base": KB, "query": KB_QUERY, "top_k": 2}),
        )
        .await?;
    assert_eq!(found["knowledge_base"], KB, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{found}");
    assert_eq!(
        (&hits[0]["document_id"], &hits[0]["content"], &hits[0]["metadata"]),
        (&json!("cat"), &json!("my cat sleeps all day on the sofa"), &json!({"topic": "pets"})),
        "{found}"
    );
    for (args, code) in [
        (json!({"knowledge_base": KB}), "invalid_argument"),
        (json!({"knowledge_base": KB, "query": "x", "top_k": 0}), "invalid_argument"),
        (json!({"knowledge_base": KB, "query": "x", "top_k": 51}), "invalid_argument"),
        (json!({"knowledge_base": KB, "query": "x", "colour": "red"}), "invalid_argument"),
        (json!({"knowledge_base": KB, "query": "x".repeat(4001)}), "invalid_argument"),
        (json!({"knowledge_base": "nope", "query": "x"}), "not_found"),
        // The platform's memory knowledge base is never reachable, as over REST.
        (json!({"knowledge_base": "getlood_memory", "query": "x"}), "invalid_argument"),
    ] {
        assert_eq!(
            world.tool_error(&world.admin, &session, "search_knowledge_base", args.clone()).await?,
            code,
            "{args}"
        );
    }
    let missing =
        world.call(&world.admin, &session, "resources/read", json!({"uri": "getlood://knowledge-bases/nope"})).await?;
    assert_eq!(missing.error_code(), -32002, "{}", missing.text);
    let read = world.call(&world.admin, &session, "resources/read", json!({"uri": uri})).await?;
    let contents = &read.result()["contents"][0];
    assert_eq!(contents["mimeType"], "application/json", "{}", read.text);
    let workflow: Value = serde_json::from_str(contents["text"].as_str().unwrap())?;
    assert_eq!(
        (workflow["id"].as_str(), workflow["graph"]["nodes"][1]["id"].as_str()),
        (Some(world.workflow.as_str()), Some("double"))
    );

    // Start a workflow, read the run until it finished.
    let run = world
        .tool_ok(&world.admin, &session, "start_workflow", json!({"workflow_id": world.workflow, "input": {"n": 2}}))
        .await?;
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(run["workflow_id"], world.workflow.as_str());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = world.tool_ok(&world.admin, &session, "read_run", json!({"run_id": run_id})).await?;
        if run["status"] == "succeeded" {
            assert_eq!(run["node_runs"].as_array().map(Vec::len), Some(3), "{run}");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the run never finished: {run}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Ask the agent with a progress token: progress notifications, then the answer.
    let ask = json!({"name": "ask_helper", "arguments": {"question": QUESTION}, "_meta": {"progressToken": "p-1"}});
    let reply = world.call(&world.admin, &session, "tools/call", ask).await?;
    let progress: Vec<&Value> = reply.messages.iter().filter(|m| m["method"] == "notifications/progress").collect();
    assert!(!progress.is_empty(), "no progress notification: {}", reply.text);
    assert!(progress.iter().all(|p| p["params"]["progressToken"] == "p-1"), "{}", reply.text);
    let result = reply.result();
    assert_eq!(result["isError"], false, "{}", reply.text);
    assert!(result["structuredContent"]["answer"].as_str().unwrap_or_default().contains(ANSWER), "{}", reply.text);
    assert!(result["content"][0]["text"].as_str().unwrap_or_default().contains(ANSWER), "{}", reply.text);

    // Bad input: JSON-RPC's codes, never a 5xx.
    for (body, code) in [
        ("{not json", -32700),
        ("[]", -32600),
        (r#"{"jsonrpc":"1.0","id":3,"method":"tools/list"}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":3}"#, -32600),
        (r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":[1]}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method","params":{}}"#, -32601),
        (r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"rm_rf","arguments":{}}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":5}}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":["x"]}}"#, -32602),
    ] {
        let reply = world.raw(Some(&world.admin), Some(&session), body).await?;
        assert!(reply.status < 500, "{body}: {} {}", reply.status, reply.text);
        assert_eq!(reply.error_code(), code, "{body}: {} {}", reply.status, reply.text);
    }
    // The SDK's transport refusals come back as JSON-RPC errors too.
    let resp = world
        .http
        .post(&world.url)
        .bearer_auth(&world.admin)
        .header("content-type", "application/json")
        .body(init.to_string())
        .send()
        .await?;
    assert_eq!(resp.status(), 406);
    let body: Value = resp.json().await?;
    assert_eq!(body["error"]["code"], -32600, "{body}");
    let resp =
        world.http.get(&world.url).bearer_auth(&world.admin).header("accept", "text/event-stream").send().await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await?["error"]["data"]["code"], "invalid_argument");
    let bad = world.tool_error(&world.admin, &session, "ask_helper", json!({"question": "x".repeat(40_000)})).await?;
    assert_eq!(bad, "invalid_argument");
    let bad = world.tool_error(&world.admin, &session, "read_run", json!({"run_id": run_id, "extra": 1})).await?;
    assert_eq!(bad, "invalid_argument");

    // A viewer may list and read, but not ask or start: tool errors naming the permission.
    let viewing = world.session(&viewer).await?;
    assert_eq!(
        world.tool_error(&viewer, &viewing, "ask_helper", json!({"question": QUESTION})).await?,
        "permission_denied"
    );
    assert_eq!(
        world.tool_error(&viewer, &viewing, "start_workflow", json!({"workflow_id": world.workflow})).await?,
        "permission_denied"
    );
    world.tool_ok(&viewer, &viewing, "read_run", json!({"run_id": run_id})).await?;
    // Searching a knowledge base is a read: a viewer may.
    let found = world
        .tool_ok(&viewer, &viewing, "search_knowledge_base", json!({"knowledge_base": KB, "query": KB_QUERY}))
        .await?;
    assert_eq!(found["hits"][0]["document_id"], "cat", "{found}");

    // Another tenant: every tool and resource of the first tenant is not found.
    let foreign = world.session(&stranger).await?;
    let their_tools = world.call(&stranger, &foreign, "tools/list", json!({})).await?;
    assert!(!their_tools.text.contains("ask_helper"), "{}", their_tools.text);
    for (tool, args) in [
        ("ask_helper", json!({"question": QUESTION})),
        ("start_workflow", json!({"workflow_id": world.workflow})),
        ("read_run", json!({"run_id": run_id})),
        ("search_knowledge_base", json!({"knowledge_base": KB, "query": KB_QUERY})),
    ] {
        assert_eq!(world.tool_error(&stranger, &foreign, tool, args).await?, "not_found", "{tool}");
    }
    for resource in [&uri, &kb_uri] {
        let read = world.call(&stranger, &foreign, "resources/read", json!({"uri": resource})).await?;
        assert_eq!(read.error_code(), -32002, "{}", read.text);
    }
    let listed = world.call(&stranger, &foreign, "resources/list", json!({})).await?;
    assert!(!listed.text.contains(&world.workflow) && !listed.text.contains(&kb_uri), "{}", listed.text);
    // ... nor may it use the first tenant's session, nor may the viewer use the admin's.
    for token in [&stranger, &viewer] {
        let reply = world.call(token, &session, "tools/list", json!({})).await?;
        assert_eq!(reply.status, 404, "{}", reply.text);
    }

    // Sessions: ended by DELETE, bounded per user.
    let resp = world.http.delete(&world.url).bearer_auth(&stranger).header("mcp-session-id", &session).send().await?;
    assert_eq!(resp.status(), 404, "another user's DELETE");
    let resp = world.http.delete(&world.url).bearer_auth(&viewer).header("mcp-session-id", &viewing).send().await?;
    assert!(resp.status().is_success(), "DELETE: {}", resp.status());
    assert_eq!(world.call(&viewer, &viewing, "tools/list", json!({})).await?.status, 404);
    let busy = world.platform.token(&tenant, "busy", &["member"]);
    for _ in 0..16 {
        world.session(&busy).await?;
    }
    let reply = world.raw(Some(&busy), None, &init.to_string()).await?;
    assert_eq!((reply.status, reply.error_code()), (429, -32000), "{}", reply.text);
    // The admin's session still works after all that.
    assert_eq!(world.call(&world.admin, &session, "tools/list", json!({})).await?.status, 200);

    // The audit log names what the tool calls did, and the viewer's refusals.
    let wanted = [
        ("alice", "mcp.ask_agent", "allowed"),
        ("alice", "mcp.start_workflow", "allowed"),
        ("vera", "mcp.ask_agent", "denied"),
        ("vera", "mcp.start_workflow", "denied"),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = crate::call_json(
            &world.http,
            "GET",
            &format!("{}/api/v1/audit?page_size=500", world.base),
            &world.admin,
            None,
        )
        .await?;
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().cloned().unwrap_or_default();
        let missing: Vec<_> = wanted
            .iter()
            .filter(|(user, action, outcome)| {
                !events.iter().any(|e| e["user"] == *user && e["action"] == *action && e["outcome"] == *outcome)
            })
            .collect();
        if missing.is_empty() {
            // Reads (listings, read_run) are not mutations: not recorded.
            assert!(!events.iter().any(|e| e["action"] == "mcp.read_run"), "{body}");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "audit events missing: {missing:?} in {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.platform.stop().await
}

/// The official `mcp` client (PyPI, pinned in scripts/install-deploy-tools.sh) against the
/// gateway: tools and resources listed (the workflow and the knowledge base read), the ask tool
/// called with progress notifications, the knowledge base searched, in the client's default
/// (2026-07-28, stateless) and legacy (session) modes, and refused without a token.
#[tokio::test]
async fn mcp_official_python_client() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let python = root.join(".tools/venv/bin/python");
    let has_mcp =
        std::process::Command::new(&python).args(["-c", "import mcp"]).output().is_ok_and(|o| o.status.success());
    if !has_mcp {
        assert!(
            std::env::var_os("GETLOOD_TEST_REQUIRE_TOOLS").is_none(),
            "the mcp client is missing: run scripts/install-deploy-tools.sh .tools"
        );
        eprintln!("note: .tools/venv has no mcp package (scripts/install-deploy-tools.sh): skipped");
        return Ok(());
    }
    let (world, _) = World::start().await?;
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::process::Command::new(&python)
            .arg(root.join("tests/mcp_client.py"))
            .args(["--url", &world.url, "--token", &world.admin, "--agent", "helper"])
            .args(["--question", QUESTION, "--expect", ANSWER, "--workflow", &world.workflow])
            .args(["--knowledge-base", KB, "--kb-query", KB_QUERY, "--kb-expect", "cat"])
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mcp client check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("mcp client check: ok"), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    world.platform.stop().await
}
