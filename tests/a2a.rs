//! The gateway's A2A server (`/a2a/{agent}`, issue 15) on the real platform: agent-registry,
//! pipeline and gateway in-process, real MindsDB agents whose model is the OpenAI double, tasks
//! in the gateway's Postgres schema. Raw JSON-RPC for the protocol's edges (errors, tenants,
//! roles, bounds, cancel, a second replica reading the stored tasks, the GETLOOD events), and
//! the official `a2a-sdk` PyPI client (tests/a2a_client.py) for the whole flow.

use std::time::{Duration, Instant};

use getlood_events::{Domain, EventBus};
use getlood_proto::events::v1::event_envelope::Payload;
use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;

const QUESTION: &str = "What does the agent to agent protocol do?";
const ANSWER: &str = "It lets agents of different vendors work on tasks together.";
/// Questions containing this are held by the double, so their turn is still running.
const SLOW: &str = "SLOW-QUESTION";
const SLOW_ANSWER: &str = "That took a while to think about.";

struct World {
    platform: Platform,
    _llm: OpenAiDouble,
    http: reqwest::Client,
    base: String,
    tenant: String,
    /// A member of the first tenant (may chat).
    alice: String,
    /// A member of another tenant that also has an agent named `helper`.
    mallory: String,
}

/// Creates the agent `helper` in `token`'s tenant, its model the double `llm` (also used by
/// tests/workflow_remote.rs, whose a2a_agent node calls it).
pub(crate) async fn create_helper(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    llm: &OpenAiDouble,
) -> anyhow::Result<()> {
    let (status, body) = crate::call_json(
        http,
        "POST",
        &format!("{base}/api/v1/agents"),
        token,
        Some(json!({
            "name": "helper",
            "description": "answers questions about protocols",
            "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-agent"},
            "prompt_template": "You are a helpful agent."
        })),
    )
    .await?;
    anyhow::ensure!(status == 201, "agent: {status} {body}");
    Ok(())
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let llm = OpenAiDouble::start().await?;
        llm.reply_when(QUESTION, ANSWER);
        llm.reply_when(SLOW, SLOW_ANSWER);
        llm.delay_when(SLOW, Duration::from_secs(4));
        let platform = Platform::builder()
            .service(Service::AgentRegistry)
            .service(Service::Pipeline)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
            .app_settings(
                Service::Pipeline,
                json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-test-intent"}}),
            )
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let tenant = unique_tenant("a2a");
        let other = unique_tenant("a2b");
        let admin = platform.token(&tenant, "root", &["admin"]);
        let other_admin = platform.token(&other, "root", &["admin"]);
        let alice = platform.token(&tenant, "alice", &["member"]);
        let mallory = platform.token(&other, "mallory", &["member"]);
        let base = platform.http_url(Service::Gateway);
        let http = reqwest::Client::new();
        create_helper(&http, &base, &admin, &llm).await?;
        create_helper(&http, &base, &other_admin, &llm).await?;
        Ok(Self { platform, _llm: llm, http, base, tenant, alice, mallory })
    }

    fn url(&self) -> String {
        format!("{}/a2a/helper", self.base)
    }

    /// POSTs `body` (raw text) with `token`: the status and the JSON answer (or, for SSE, the
    /// array of the `data:` events).
    async fn raw(&self, url: &str, token: &str, body: &str) -> anyhow::Result<(u16, Value)> {
        let resp = tokio::time::timeout(
            Duration::from_secs(90),
            self.http
                .post(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.to_owned())
                .send(),
        )
        .await??;
        let status = resp.status().as_u16();
        let sse = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let text = tokio::time::timeout(Duration::from_secs(90), resp.text()).await??;
        let value = if sse {
            Value::Array(
                text.lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .filter_map(|d| serde_json::from_str(d.trim()).ok())
                    .collect(),
            )
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    async fn call(&self, token: &str, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params});
        let (status, value) = self.raw(&self.url(), token, &body.to_string()).await?;
        anyhow::ensure!(status == 200, "{method}: {status} {value}");
        Ok(value)
    }

    /// The error code of a JSON-RPC answer (asserting it is an error).
    async fn error_code(&self, token: &str, method: &str, params: Value) -> anyhow::Result<i64> {
        let answer = self.call(token, method, params).await?;
        let code = answer["error"]["code"].as_i64();
        anyhow::ensure!(code.is_some(), "{method}: expected an error, got {answer}");
        assert_eq!(answer["id"], "r1", "{answer}");
        Ok(code.unwrap_or_default())
    }
}

fn message(text: &str) -> Value {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!("msg-{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    json!({"messageId": id, "role": "ROLE_USER", "parts": [{"text": text}]})
}

/// The card, the blocking and streaming messages, reads, cancel, every refusal with its spec
/// code, roles, another tenant, the stored tasks read by a second gateway replica, and the
/// status events on the bus.
#[tokio::test]
async fn a2a_server_on_the_platform() -> anyhow::Result<()> {
    let world = World::start().await?;
    let w = &world;

    // The card: under the agent's base path, skills, streaming on, push off, bearer scheme.
    let card_url = format!("{}/.well-known/agent-card.json", w.url());
    let (status, card) = crate::call_json(&w.http, "GET", &card_url, &w.alice, None).await?;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["name"], "helper");
    assert_eq!(card["supportedInterfaces"][0]["url"], w.url(), "{card}");
    assert_eq!(card["supportedInterfaces"][0]["protocolBinding"], "JSONRPC");
    assert_eq!(card["supportedInterfaces"][0]["protocolVersion"], "1.0");
    assert_eq!(card["capabilities"]["streaming"], true);
    assert_eq!(card["capabilities"]["pushNotifications"], false);
    assert_eq!(card["securitySchemes"]["bearer"]["httpAuthSecurityScheme"]["scheme"], "Bearer");
    assert!(!card["skills"].as_array().unwrap().is_empty(), "{card}");
    // An agent that does not exist, or exists only in another tenant: 404.
    let (status, _) =
        crate::call_json(&w.http, "GET", &format!("{}/a2a/nobody/.well-known/agent-card.json", w.base), &w.alice, None)
            .await?;
    assert_eq!(status, 404);
    let (status, body) = w
        .raw(
            &format!("{}/a2a/nobody", w.base),
            &w.alice,
            r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"x"}}"#,
        )
        .await?;
    assert_eq!(status, 404, "{body}");
    // Without a token: 401; a viewer reads the card but may not send messages.
    let resp = w.http.get(&card_url).send().await?;
    assert_eq!(resp.status().as_u16(), 401);
    let viewer = w.platform.token(&w.tenant, "vera", &["viewer"]);
    assert_eq!(crate::call_json(&w.http, "GET", &card_url, &viewer, None).await?.0, 200);
    let (status, _) =
        w.raw(&w.url(), &viewer, &json!({"jsonrpc": "2.0", "id": 1, "method": "ListTasks"}).to_string()).await?;
    assert_eq!(status, 403);

    // SendMessage (blocking): a completed task with the answer as its artifact.
    let sent = w.call(&w.alice, "SendMessage", json!({"message": message(QUESTION)})).await?;
    let task = &sent["result"]["task"];
    assert_eq!(task["status"]["state"], "TASK_STATE_COMPLETED", "{sent}");
    assert_eq!(task["artifacts"][0]["parts"][0]["text"], ANSWER, "{sent}");
    assert_eq!(task["history"].as_array().map(Vec::len), Some(2), "{sent}");
    assert_eq!(task["history"][1]["role"], "ROLE_AGENT");
    let task_id = task["id"].as_str().unwrap().to_owned();
    let context_id = task["contextId"].as_str().unwrap().to_owned();

    // GetTask, with a history bound; ListTasks filtered by context.
    let got = w.call(&w.alice, "GetTask", json!({"id": task_id, "historyLength": 1})).await?;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED", "{got}");
    assert_eq!(got["result"]["history"].as_array().map(Vec::len), Some(1));
    let listed = w.call(&w.alice, "ListTasks", json!({"contextId": context_id, "pageSize": 10})).await?;
    assert_eq!(listed["result"]["tasks"][0]["id"], task_id.as_str(), "{listed}");
    assert_eq!(listed["result"]["totalSize"], 1);

    // SendStreamingMessage in the same context: task, working, artifact chunks, completed.
    let mut msg = message(QUESTION);
    msg["contextId"] = json!(context_id);
    let body = json!({"jsonrpc": "2.0", "id": 5, "method": "SendStreamingMessage", "params": {"message": msg}});
    let (status, events) = w.raw(&w.url(), &w.alice, &body.to_string()).await?;
    assert_eq!(status, 200);
    let events = events.as_array().cloned().unwrap_or_default();
    assert!(events.iter().all(|e| e["id"] == 5), "{events:?}");
    assert_eq!(events[0]["result"]["task"]["status"]["state"], "TASK_STATE_SUBMITTED", "{events:?}");
    assert_eq!(events[1]["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_WORKING", "{events:?}");
    let text: String =
        events.iter().filter_map(|e| e["result"]["artifactUpdate"]["artifact"]["parts"][0]["text"].as_str()).collect();
    assert_eq!(text, ANSWER, "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED", "{events:?}");
    assert_eq!(last["result"]["statusUpdate"]["contextId"], context_id.as_str());
    let stream_task = events[0]["result"]["task"]["id"].as_str().unwrap().to_owned();

    // CancelTask of a running turn; a finished task cannot be canceled.
    let started = w
        .call(&w.alice, "SendMessage", json!({"message": message(SLOW), "configuration": {"returnImmediately": true}}))
        .await?;
    let slow_id = started["result"]["task"]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let canceled = w.call(&w.alice, "CancelTask", json!({"id": slow_id})).await?;
    assert_eq!(canceled["result"]["status"]["state"], "TASK_STATE_CANCELED", "{canceled}");
    assert_eq!(w.error_code(&w.alice, "CancelTask", json!({"id": slow_id})).await?, -32002);
    assert_eq!(w.error_code(&w.alice, "CancelTask", json!({"id": task_id})).await?, -32002);
    assert_eq!(w.error_code(&w.alice, "SubscribeToTask", json!({"id": task_id})).await?, -32004);

    // Refusals with the spec's codes, the request id echoed, nothing changed.
    for (body, code) in [
        ("{oops", -32700),
        ("[]", -32600),
        (r#"{"jsonrpc":"2.0","id":1}"#, -32600),
        (r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#, -32600),
    ] {
        let (status, answer) = w.raw(&w.url(), &w.alice, body).await?;
        assert_eq!((status, answer["error"]["code"].as_i64()), (200, Some(code)), "{body}: {answer}");
    }
    assert_eq!(w.error_code(&w.alice, "NoSuchMethod", json!({})).await?, -32601);
    assert_eq!(w.error_code(&w.alice, "message/send", json!({"message": message("x")})).await?, -32009);
    assert_eq!(w.error_code(&w.alice, "GetTask", json!({})).await?, -32602);
    assert_eq!(w.error_code(&w.alice, "GetTask", json!({"id": task_id, "bogus": 1})).await?, -32602);
    assert_eq!(w.error_code(&w.alice, "GetTask", json!({"id": "00000000-0000-4000-8000-000000000000"})).await?, -32001);
    assert_eq!(w.error_code(&w.alice, "GetTask", json!({"id": "not-a-uuid"})).await?, -32001);
    assert_eq!(w.error_code(&w.alice, "SendMessage", json!({"message": {"role": "ROLE_USER"}})).await?, -32602);
    let too_many = json!({"messageId": "m", "role": "ROLE_USER", "parts": vec![json!({"text": "x"}); 17]});
    assert_eq!(w.error_code(&w.alice, "SendMessage", json!({"message": too_many})).await?, -32602);
    let too_big = json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x".repeat(33 * 1024)}]});
    assert_eq!(w.error_code(&w.alice, "SendMessage", json!({"message": too_big})).await?, -32602);
    let file = json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"url": "https://example.com/a.png"}]});
    assert_eq!(w.error_code(&w.alice, "SendMessage", json!({"message": file})).await?, -32005);
    let push = json!({"message": message("x"), "configuration": {"taskPushNotificationConfig": {"url": "https://example.com/hook"}}});
    assert_eq!(w.error_code(&w.alice, "SendMessage", push).await?, -32003);
    assert_eq!(w.error_code(&w.alice, "CreateTaskPushNotificationConfig", json!({"taskId": task_id})).await?, -32003);
    assert_eq!(w.error_code(&w.alice, "ListTasks", json!({"pageSize": 101})).await?, -32602);
    assert_eq!(w.error_code(&w.alice, "ListTasks", json!({"pageToken": "garbage"})).await?, -32602);
    assert_eq!(w.error_code(&w.alice, "GetTask", json!({"id": task_id, "tenant": "someone_else"})).await?, -32602);
    // A continuation of a finished task is refused.
    let mut again = message("more");
    again["taskId"] = json!(task_id);
    assert_eq!(w.error_code(&w.alice, "SendMessage", json!({"message": again})).await?, -32004);

    // Another tenant (with its own `helper`): not found for every task of the first, an empty
    // list; another user of the same tenant likewise.
    let bob = w.platform.token(&w.tenant, "bob", &["member"]);
    for token in [&w.mallory, &bob] {
        for id in [&task_id, &stream_task, &slow_id] {
            for method in ["GetTask", "CancelTask", "SubscribeToTask"] {
                assert_eq!(w.error_code(token, method, json!({"id": id})).await?, -32001, "{method}");
            }
            let mut follow = message("hello");
            follow["taskId"] = json!(id);
            assert_eq!(w.error_code(token, "SendMessage", json!({"message": follow})).await?, -32001);
        }
        let listed = w.call(token, "ListTasks", json!({})).await?;
        assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
        assert_eq!(listed["result"]["totalSize"], 0);
    }

    // The tasks are in Postgres: a second replica of the gateway reads them.
    let mut builder = Platform::builder().replica_of(&w.platform).service(Service::Gateway);
    for upstream in [Service::AgentRegistry, Service::Pipeline, Service::EventDispatcher] {
        builder = builder.service_url(upstream, format!("http://{}", w.platform.get(upstream).grpc_addr));
    }
    let replica = builder.start().await?;
    replica.wait_ready(Duration::from_secs(30)).await?;
    let other_url = format!("{}/a2a/helper", replica.http_url(Service::Gateway));
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}});
    let (status, got) = w.raw(&other_url, &w.alice, &body.to_string()).await?;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["result"]["artifacts"][0]["parts"][0]["text"], ANSWER, "{got}");
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": slow_id}});
    let (_, got) = w.raw(&other_url, &w.alice, &body.to_string()).await?;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_CANCELED", "{got}");
    // A turn running on the first replica, followed from the second through the store.
    let started = w
        .call(&w.alice, "SendMessage", json!({"message": message(SLOW), "configuration": {"returnImmediately": true}}))
        .await?;
    let running = started["result"]["task"]["id"].as_str().unwrap().to_owned();
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "SubscribeToTask", "params": {"id": running}});
    let (status, events) = w.raw(&other_url, &w.alice, &body.to_string()).await?;
    assert_eq!(status, 200);
    let events = events.as_array().cloned().unwrap_or_default();
    assert_eq!(events[0]["result"]["task"]["id"], running.as_str(), "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last["result"]["statusUpdate"]["status"]["state"], "TASK_STATE_COMPLETED", "{events:?}");
    assert!(
        events.iter().any(|e| e["result"]["artifactUpdate"]["artifact"]["parts"][0]["text"] == SLOW_ANSWER),
        "{events:?}"
    );
    replica.stop().await?;

    // Every status change of a task is a GETLOOD event on the turn domain.
    let bus = EventBus::new(async_nats::connect(getlood_testkit::nats_url()).await?, "getlood");
    let tenant = getlood_auth::TenantId::parse(&w.tenant).map_err(|t| anyhow::anyhow!("bad tenant {t}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let states = loop {
        let read = bus.read(&tenant, Domain::Turn, 0, 500, Duration::from_millis(300)).await.unwrap_or_default();
        let states: Vec<String> = read
            .into_iter()
            .filter_map(|e| match e.envelope.payload {
                Some(Payload::A2aTaskStatusChanged(s)) if s.task_id == task_id => Some(s.state),
                _ => None,
            })
            .collect();
        if states.len() >= 3 || Instant::now() > deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(states, ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]);
    world.platform.stop().await
}

/// The official `a2a-sdk` client (PyPI, pinned in scripts/install-deploy-tools.sh): resolves the
/// card, sends a message and a streaming message, gets, lists and cancels tasks, resubscribes
/// after dropping a stream; another tenant's token gets not-found for each of those tasks.
#[tokio::test]
async fn a2a_official_python_client() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let python = root.join(".tools/venv/bin/python");
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import a2a.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        assert!(
            std::env::var_os("GETLOOD_TEST_REQUIRE_TOOLS").is_none(),
            "the a2a-sdk client is missing: run scripts/install-deploy-tools.sh .tools"
        );
        eprintln!("note: .tools/venv has no a2a-sdk package (scripts/install-deploy-tools.sh): skipped");
        return Ok(());
    }
    let world = World::start().await?;
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&python)
            .arg(root.join("tests/a2a_client.py"))
            .args(["--base", &world.url(), "--token", &world.alice, "--other-token", &world.mallory])
            .args(["--question", QUESTION, "--expect", ANSWER, "--slow", SLOW, "--slow-expect", SLOW_ANSWER])
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "a2a client check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("a2a client check: ok"), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    world.platform.stop().await
}
