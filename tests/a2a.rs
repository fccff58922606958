//! The gateway's A2A server (`/a2a/{agent}`, issue 15) on the real platform: agent-registry,
//! pipeline and gateway in-process, real MindsDB agents whose model is the OpenAI double, tasks
//! in the gateway's Postgres schema. Raw JSON-RPC for the protocol's edges (errors, tenants,
//! roles, bounds, cancel, a second replica reading the stored tasks, the GETLOOD events), push
//! notifications to a webhook the test runs, tasks outliving a gateway stopped or killed
//! mid-turn, and the official `a2a-sdk` PyPI client (tests/a2a_client.py) for the whole flow.

use std::sync::{Arc, Mutex};
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
/// What a task whose gateway replica stopped says.
const STOPPED: &str = "the server answering this task stopped before the answer was complete";
/// The lease of running tasks in these tests: a killed replica's task fails within it and
/// half of it more.
const LEASE: Duration = Duration::from_secs(3);

/// The gateway's key-encryption key in these tests: push configs' secrets are sealed with it.
const KEK: &str = "a2a-test-key-encryption-key-0123456789abcdef";

/// The gateway settings of these tests: webhooks on loopback (the test's receiver), quick
/// push retries, a short task lease, and push credentials sealed at rest.
fn gateway_settings() -> Value {
    json!({
        "accounts": {"key_encryption_key": KEK},
        "egress": {"allow": ["127.0.0.0/8"]},
        "a2a_task_lease": "3s",
        "a2a_push_timeout": "2s",
        "a2a_push_attempts": 2,
    })
}

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
            .app_settings(Service::Gateway, gateway_settings())
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
        self.call_at(&self.url(), token, method, params).await
    }

    /// `method` on the A2A endpoint `url` (another replica's).
    async fn call_at(&self, url: &str, token: &str, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = json!({"jsonrpc": "2.0", "id": "r1", "method": method, "params": params});
        let (status, value) = self.raw(url, token, &body.to_string()).await?;
        anyhow::ensure!(status == 200, "{method}: {status} {value}");
        Ok(value)
    }

    /// The result of a JSON-RPC call (asserting it succeeded).
    async fn result(&self, token: &str, method: &str, params: Value) -> anyhow::Result<Value> {
        let answer = self.call(token, method, params).await?;
        anyhow::ensure!(answer.get("error").is_none(), "{method}: {answer}");
        Ok(answer["result"].clone())
    }

    /// A second gateway replica on the same Postgres schema and upstreams.
    async fn replica(&self) -> anyhow::Result<Platform> {
        let mut builder = Platform::builder()
            .replica_of(&self.platform)
            .service(Service::Gateway)
            .app_settings(Service::Gateway, gateway_settings());
        for upstream in [Service::AgentRegistry, Service::Pipeline, Service::EventDispatcher] {
            builder = builder.service_url(upstream, format!("http://{}", self.platform.get(upstream).grpc_addr));
        }
        let replica = builder.start().await?;
        replica.wait_ready(Duration::from_secs(30)).await?;
        Ok(replica)
    }

    /// Starts a slow task (its turn held by the double) and waits until it is working.
    async fn working_task(&self, url: &str) -> anyhow::Result<String> {
        let params = json!({"message": message(SLOW), "configuration": {"returnImmediately": true}});
        let started = self.call_at(url, &self.alice, "SendMessage", params).await?;
        let id = started["result"]["task"]["id"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!id.is_empty(), "{started}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.call_at(url, &self.alice, "GetTask", json!({"id": id})).await?;
            if got["result"]["status"]["state"] == "TASK_STATE_WORKING" {
                return Ok(id);
            }
            anyhow::ensure!(Instant::now() < deadline, "the task never worked: {got}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
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
    assert_eq!(card["capabilities"]["pushNotifications"], true);
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
    // A webhook the egress policy refuses, inline or for a task: nothing is stored.
    let push = json!({"message": message("x"), "configuration": {"taskPushNotificationConfig": {"url": "http://169.254.169.254/hook"}}});
    assert_eq!(w.error_code(&w.alice, "SendMessage", push).await?, -32602);
    let refused = json!({"taskId": task_id, "url": "http://169.254.169.254/hook"});
    assert_eq!(w.error_code(&w.alice, "CreateTaskPushNotificationConfig", refused).await?, -32602);
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
            let create = json!({"taskId": id, "url": "https://hooks.example.com/a2a"});
            assert_eq!(w.error_code(token, "CreateTaskPushNotificationConfig", create).await?, -32001);
            for method in ["GetTaskPushNotificationConfig", "DeleteTaskPushNotificationConfig"] {
                assert_eq!(w.error_code(token, method, json!({"taskId": id, "id": "any"})).await?, -32001, "{method}");
            }
            let list = json!({"taskId": id});
            assert_eq!(w.error_code(token, "ListTaskPushNotificationConfigs", list).await?, -32001);
            let mut follow = message("hello");
            follow["taskId"] = json!(id);
            assert_eq!(w.error_code(token, "SendMessage", json!({"message": follow})).await?, -32001);
        }
        let listed = w.call(token, "ListTasks", json!({})).await?;
        assert_eq!(listed["result"]["tasks"], json!([]), "{listed}");
        assert_eq!(listed["result"]["totalSize"], 0);
    }

    // The tasks are in Postgres: a second replica of the gateway reads them.
    let replica = w.replica().await?;
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
/// after dropping a stream, sets, reads, lists and deletes push-notification configs (the
/// webhook here receives the task's notifications with the SDK-set token); another tenant's
/// token gets not-found for each of those tasks and configs.
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
    let hook = Webhook::start().await?;
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(&python)
            .arg(root.join("tests/a2a_client.py"))
            .args(["--base", &world.url(), "--token", &world.alice, "--other-token", &world.mallory])
            .args(["--question", QUESTION, "--expect", ANSWER, "--slow", SLOW, "--slow-expect", SLOW_ANSWER])
            .args(["--push-url", &hook.url("/sdk")])
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "a2a client check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("a2a client check: ok"), "{stdout}\n{stderr}");
    eprintln!("{stdout}");
    // The webhook the SDK set got the task's end, with the SDK's token and credentials; the
    // config the SDK deleted and the other tenant's attempt got nothing.
    let task = stdout.lines().find_map(|l| l.strip_prefix("push task: ")).expect("the client named its task").trim();
    let got = hook.wait_for("/sdk", task, "TASK_STATE_COMPLETED", Duration::from_secs(30)).await?;
    assert!(
        got.iter()
            .all(|p| p.token.as_deref() == Some("sdk-token") && p.authorization.as_deref() == Some("Bearer sdk-cred")),
        "{got:?}"
    );
    assert!(hook.got("/sdk/intruder", task).is_empty());
    world.platform.stop().await
}

/// One POST the webhook received.
#[derive(Debug, Clone)]
struct Pushed {
    path: String,
    token: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Value,
}

impl Pushed {
    fn task_id(&self) -> &str {
        self.body["task"]["id"].as_str().unwrap_or_default()
    }

    fn state(&self) -> &str {
        self.body["task"]["status"]["state"].as_str().unwrap_or_default()
    }
}

/// A webhook on loopback that records every POST: paths under `/fail` answer 500, others 200.
struct Webhook {
    base: String,
    received: Arc<Mutex<Vec<Pushed>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Webhook {
    async fn start() -> anyhow::Result<Self> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/{*path}",
                axum::routing::post(
                    |axum::extract::State(r): axum::extract::State<Arc<Mutex<Vec<Pushed>>>>,
                     uri: axum::http::Uri,
                     headers: axum::http::HeaderMap,
                     body: axum::body::Bytes| async move {
                        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                        let pushed = Pushed {
                            path: uri.path().to_owned(),
                            token: header("x-a2a-notification-token"),
                            authorization: header("authorization"),
                            content_type: header("content-type"),
                            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        };
                        let fail = pushed.path.starts_with("/fail");
                        r.lock().unwrap().push(pushed);
                        if fail { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
                    },
                ),
            )
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base, received, server })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What `path` received about `task`, in order.
    fn got(&self, path: &str, task: &str) -> Vec<Pushed> {
        self.received.lock().unwrap().iter().filter(|p| p.path == path && p.task_id() == task).cloned().collect()
    }

    /// Waits until `path` received a notification of `task` in `state`; everything it received
    /// about the task until then.
    async fn wait_for(&self, path: &str, task: &str, state: &str, within: Duration) -> anyhow::Result<Vec<Pushed>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got(path, task);
            if got.iter().any(|p| p.state() == state) {
                return Ok(got);
            }
            anyhow::ensure!(Instant::now() < deadline, "{path} never got {state} for {task}: {got:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The value of the counter `name` with `label` on the gateway's `/metrics` (0 when absent).
async fn counter(world: &World, name: &str, label: &str) -> anyhow::Result<f64> {
    let text =
        world.http.get(format!("{}/metrics", world.platform.admin_url(Service::Gateway))).send().await?.text().await?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Push-notification configs (create, replace, get, list, delete, bounds, refusals, another
/// tenant and user) and their delivery to a webhook: the task at each status change with the
/// config's token and authentication, a failing webhook retried and counted, a config given
/// with the message itself.
#[tokio::test]
async fn a2a_push_notifications_reach_the_webhook() -> anyhow::Result<()> {
    let world = World::start().await?;
    let w = &world;
    let hook = Webhook::start().await?;

    // A running task gets a webhook with a token and bearer authentication, and a failing one.
    let task = w.working_task(&w.url()).await?;
    let created = w
        .result(
            &w.alice,
            "CreateTaskPushNotificationConfig",
            json!({"taskId": task, "id": "hook-1", "url": hook.url("/ok"), "token": "tok-1",
                   "authentication": {"scheme": "Bearer", "credentials": "cred-1"}}),
        )
        .await?;
    // The credentials are write-only.
    assert_eq!(
        created,
        json!({"id": "hook-1", "taskId": task, "url": hook.url("/ok"), "token": "tok-1", "authentication": {"scheme": "Bearer"}})
    );
    // Sealed at rest: the stored row holds neither the token nor the credentials.
    let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    let schema = w.platform.schema("gateway");
    let (raw, sealed): (String, bool) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c::text, c.sealed FROM \"{schema}\".a2a_push_configs c WHERE c.task_id = $1::uuid AND c.id = 'hook-1'"
    )))
    .bind(&task)
    .fetch_one(&pool)
    .await?;
    assert!(sealed && !raw.contains("tok-1") && !raw.contains("cred-1") && raw.contains("Bearer"), "{raw}");
    let failing = json!({"taskId": task, "id": "broken", "url": hook.url("/fail/first")});
    w.result(&w.alice, "CreateTaskPushNotificationConfig", failing).await?;
    // The same id replaces its config.
    let replaced = json!({"taskId": task, "id": "broken", "url": hook.url("/fail/again")});
    assert_eq!(w.result(&w.alice, "CreateTaskPushNotificationConfig", replaced).await?["url"], hook.url("/fail/again"));
    let got = w.result(&w.alice, "GetTaskPushNotificationConfig", json!({"taskId": task, "id": "hook-1"})).await?;
    assert_eq!(got, created);
    let listed = w.result(&w.alice, "ListTaskPushNotificationConfigs", json!({"taskId": task})).await?;
    let ids: Vec<&str> = listed["configs"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!((ids, &listed["nextPageToken"]), (vec!["hook-1", "broken"], &json!("")), "{listed}");
    // A config without an id gets one.
    let unnamed = w
        .result(&w.alice, "CreateTaskPushNotificationConfig", json!({"taskId": task, "url": hook.url("/unnamed")}))
        .await?;
    let unnamed_id = unnamed["id"].as_str().unwrap().to_owned();
    assert_eq!(unnamed_id.len(), 36, "{unnamed}");

    // At most 8 configs per task.
    for i in 0..5 {
        let extra = json!({"taskId": task, "id": format!("extra-{i}"), "url": hook.url("/extra")});
        w.result(&w.alice, "CreateTaskPushNotificationConfig", extra).await?;
    }
    let ninth = json!({"taskId": task, "id": "ninth", "url": hook.url("/extra")});
    let answer = w.call(&w.alice, "CreateTaskPushNotificationConfig", ninth).await?;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("holds 8 push notification configs"), "{answer}");
    for id in (0..5).map(|i| format!("extra-{i}")).chain([unnamed_id]) {
        w.result(&w.alice, "DeleteTaskPushNotificationConfig", json!({"taskId": task, "id": id})).await?;
    }

    // Refusals with the spec's codes.
    for (params, code) in [
        (json!({"taskId": task}), -32602),
        (json!({"taskId": task, "url": "http://10.1.2.3/hook"}), -32602),
        (json!({"taskId": task, "url": "http://metadata.google.internal/"}), -32602),
        (json!({"taskId": task, "url": "file:///etc/passwd"}), -32602),
        (json!({"taskId": task, "url": hook.url("/ok"), "token": "two\nlines"}), -32602),
        (json!({"taskId": task, "url": hook.url("/ok"), "authentication": {"credentials": "x"}}), -32602),
        (json!({"taskId": task, "url": hook.url("/ok"), "extra": 1}), -32602),
        (json!({"url": hook.url("/ok")}), -32602),
        (json!({"taskId": "not-a-task", "url": hook.url("/ok")}), -32001),
        (json!({"taskId": "00000000-0000-4000-8000-000000000000", "url": hook.url("/ok")}), -32001),
    ] {
        assert_eq!(w.error_code(&w.alice, "CreateTaskPushNotificationConfig", params.clone()).await?, code, "{params}");
    }
    assert_eq!(
        w.error_code(&w.alice, "GetTaskPushNotificationConfig", json!({"taskId": task, "id": "nope"})).await?,
        -32001
    );
    assert_eq!(w.error_code(&w.alice, "GetTaskPushNotificationConfig", json!({"taskId": task})).await?, -32602);
    let paged = json!({"taskId": task, "pageToken": "x"});
    assert_eq!(w.error_code(&w.alice, "ListTaskPushNotificationConfigs", paged).await?, -32602);

    // Another tenant and another user: not found, nothing changed.
    let bob = w.platform.token(&w.tenant, "bob", &["member"]);
    for token in [&w.mallory, &bob] {
        let create = json!({"taskId": task, "url": hook.url("/intruder")});
        assert_eq!(w.error_code(token, "CreateTaskPushNotificationConfig", create).await?, -32001);
        let one = json!({"taskId": task, "id": "hook-1"});
        assert_eq!(w.error_code(token, "GetTaskPushNotificationConfig", one.clone()).await?, -32001);
        assert_eq!(w.error_code(token, "DeleteTaskPushNotificationConfig", one).await?, -32001);
        let list = json!({"taskId": task});
        assert_eq!(w.error_code(token, "ListTaskPushNotificationConfigs", list).await?, -32001);
    }
    let listed = w.result(&w.alice, "ListTaskPushNotificationConfigs", json!({"taskId": task})).await?;
    assert_eq!(listed["configs"].as_array().map(Vec::len), Some(2), "{listed}");
    // A viewer may not reach the methods at all.
    let viewer = w.platform.token(&w.tenant, "vera", &["viewer"]);
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "ListTaskPushNotificationConfigs", "params": {"taskId": task}});
    assert_eq!(w.raw(&w.url(), &viewer, &body.to_string()).await?.0, 403);

    // The end of the turn reaches the webhook: the task with its answer, the token and the
    // authentication.
    let got = hook.wait_for("/ok", &task, "TASK_STATE_COMPLETED", Duration::from_secs(30)).await?;
    let done = got.iter().find(|p| p.state() == "TASK_STATE_COMPLETED").unwrap();
    assert_eq!(done.token.as_deref(), Some("tok-1"));
    assert_eq!(done.authorization.as_deref(), Some("Bearer cred-1"));
    assert_eq!(done.content_type.as_deref(), Some("application/a2a+json"));
    assert_eq!(done.body["task"]["artifacts"][0]["parts"][0]["text"], SLOW_ANSWER, "{:?}", done.body);
    assert_eq!(done.body["task"]["history"], json!([]), "{:?}", done.body);
    assert!(hook.got("/intruder", &task).is_empty() && hook.got("/fail/first", &task).is_empty());
    // The failing webhook: tried twice (app.a2a_push_attempts), then counted and given up.
    hook.wait_for("/fail/again", &task, "TASK_STATE_COMPLETED", Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while counter(w, getlood_gateway::METRIC_A2A_PUSH_FAILED, "reason=\"status\"").await? < 1.0 {
        anyhow::ensure!(Instant::now() < deadline, "the failed delivery was not counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(hook.got("/fail/again", &task).len(), 2, "one notification, two attempts");
    assert!(counter(w, getlood_gateway::METRIC_A2A_PUSH_DELIVERED, "").await? >= 1.0);

    // Delete is idempotent; a deleted config is gone.
    for _ in 0..2 {
        w.result(&w.alice, "DeleteTaskPushNotificationConfig", json!({"taskId": task, "id": "broken"})).await?;
    }
    let gone = json!({"taskId": task, "id": "broken"});
    assert_eq!(w.error_code(&w.alice, "GetTaskPushNotificationConfig", gone).await?, -32001);

    // A config given with the message: every status change of the new task, in order.
    let sent = w
        .result(
            &w.alice,
            "SendMessage",
            json!({"message": message(QUESTION), "configuration": {"taskPushNotificationConfig": {"url": hook.url("/inline"), "token": "tok-2"}}}),
        )
        .await?;
    let inline_task = sent["task"]["id"].as_str().unwrap().to_owned();
    let got = hook.wait_for("/inline", &inline_task, "TASK_STATE_COMPLETED", Duration::from_secs(30)).await?;
    let states: Vec<&str> = got.iter().map(Pushed::state).collect();
    assert_eq!(states, ["TASK_STATE_SUBMITTED", "TASK_STATE_WORKING", "TASK_STATE_COMPLETED"], "{got:?}");
    assert!(got.iter().all(|p| p.token.as_deref() == Some("tok-2") && p.authorization.is_none()), "{got:?}");
    // A message's config naming another task is refused.
    let mut follow = message("x");
    follow["taskId"] = json!(inline_task);
    let wrong = json!({"message": follow, "configuration": {"taskPushNotificationConfig": {"taskId": task, "url": hook.url("/ok")}}});
    assert_eq!(w.error_code(&w.alice, "SendMessage", wrong).await?, -32602);

    // The audit log records the config changes.
    let admin = w.platform.token(&w.tenant, "root", &["admin"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) =
            crate::call_json(&w.http, "GET", &format!("{}/api/v1/audit?page_size=500", w.base), &admin, None).await?;
        assert_eq!(status, 200, "{body}");
        let events = body["events"].as_array().cloned().unwrap_or_default();
        let seen = |action: &str| {
            events.iter().any(|e| e["user"] == "alice" && e["action"] == action && e["outcome"] == "allowed")
        };
        if seen("a2a.create_push_config") && seen("a2a.delete_push_config") {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "push config changes not audited: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.platform.stop().await
}

/// A gateway binary (`getlood gateway`) on the platform's upstreams and the gateway schema, so
/// the test can SIGKILL it mid-turn.
struct GatewayProcess {
    child: tokio::process::Child,
    url: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl GatewayProcess {
    async fn start(platform: &Platform) -> anyhow::Result<Self> {
        let (http, grpc) = (free_port(), free_port());
        let upstream = |s: Service| format!("http://{}", platform.get(s).grpc_addr);
        let child = tokio::process::Command::from(getlood_testkit::service_command("gateway")?)
            .env("GETLOOD_GATEWAY_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GETLOOD_GATEWAY_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
            .env("GETLOOD_GATEWAY_ADMIN_ADDR", "127.0.0.1:0")
            .env("GETLOOD_GATEWAY_POSTGRES__URL", getlood_testkit::postgres_url())
            .env("GETLOOD_GATEWAY_POSTGRES__SCHEMA", platform.schema("gateway"))
            .env("GETLOOD_GATEWAY_POSTGRES__MAX_CONNECTIONS", "4")
            .env("GETLOOD_GATEWAY_REDIS__URL", getlood_testkit::redis_url())
            .env("GETLOOD_GATEWAY_REDIS__KEY_PREFIX", format!("getlood_a2a_kill_{http}"))
            .env("GETLOOD_GATEWAY_NATS__URL", getlood_testkit::nats_url())
            .env("GETLOOD_GATEWAY_AUTH__HS256_SECRET", getlood_testkit::TEST_SECRET)
            .env("GETLOOD_GATEWAY_SERVICES__AGENT_REGISTRY", upstream(Service::AgentRegistry))
            .env("GETLOOD_GATEWAY_SERVICES__PIPELINE", upstream(Service::Pipeline))
            .env("GETLOOD_GATEWAY_SERVICES__EVENT_DISPATCHER", upstream(Service::EventDispatcher))
            .env("GETLOOD_GATEWAY_APP__A2A_TASK_LEASE", "3s")
            .env("GETLOOD_GATEWAY_APP__ACCOUNTS__KEY_ENCRYPTION_KEY", KEK)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let process = Self { child, url: format!("http://127.0.0.1:{http}") };
        let deadline = Instant::now() + Duration::from_secs(30);
        let http_client = reqwest::Client::new();
        loop {
            if let Ok(r) = http_client.get(format!("{}/readyz", process.url)).send().await
                && r.status() == 200
            {
                return Ok(process);
            }
            anyhow::ensure!(Instant::now() < deadline, "the gateway binary did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn sigkill(&mut self) -> anyhow::Result<()> {
        let pid = self.child.id().ok_or_else(|| anyhow::anyhow!("the gateway binary is not running"))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), nix::sys::signal::Signal::SIGKILL)?;
        Ok(())
    }
}

/// Tasks outlive the replica that served them: after a gateway stops (SIGTERM) another replica
/// on the same Postgres answers GetTask and ListTasks with each task's final state, the turn
/// that was running failed at once (and its webhook told); a gateway killed mid-turn (SIGKILL,
/// no shutdown at all) leaves its task working only until the task's lease expires, then
/// another replica's sweeper fails it, and its webhook hears so, without any client read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2a_tasks_survive_the_serving_replica() -> anyhow::Result<()> {
    let mut world = World::start().await?;
    let hook = Webhook::start().await?;

    // A finished task and a running one on the first replica.
    let sent = world.result(&world.alice, "SendMessage", json!({"message": message(QUESTION)})).await?;
    let finished = sent["task"]["id"].as_str().unwrap().to_owned();
    assert_eq!(sent["task"]["status"]["state"], "TASK_STATE_COMPLETED", "{sent}");
    let running = world.working_task(&world.url()).await?;
    let webhook = json!({"taskId": running, "url": hook.url("/stopped"), "token": "tok-stop"});
    world.result(&world.alice, "CreateTaskPushNotificationConfig", webhook).await?;

    // The first replica stops as on SIGTERM, mid-turn.
    world.platform.stop_service(Service::Gateway).await?;
    // Another replica on the same Postgres has both tasks: the finished one whole, the running
    // one failed, not working forever.
    let replica = world.replica().await?;
    let other = format!("{}/a2a/helper", replica.http_url(Service::Gateway));
    let got = world.call_at(&other, &world.alice, "GetTask", json!({"id": finished})).await?;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_COMPLETED", "{got}");
    assert_eq!(got["result"]["artifacts"][0]["parts"][0]["text"], ANSWER, "{got}");
    let got = world.call_at(&other, &world.alice, "GetTask", json!({"id": running})).await?;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_FAILED", "{got}");
    let why = got["result"]["status"]["message"]["parts"][0]["text"].as_str().unwrap_or_default();
    assert!(why.contains(STOPPED), "{got}");
    let listed = world.call_at(&other, &world.alice, "ListTasks", json!({})).await?;
    let states: Vec<(String, String)> = listed["result"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_owned(), t["status"]["state"].as_str().unwrap().to_owned()))
        .collect();
    assert!(states.contains(&(finished.clone(), "TASK_STATE_COMPLETED".to_owned())), "{listed}");
    assert!(states.contains(&(running.clone(), "TASK_STATE_FAILED".to_owned())), "{listed}");
    // The stopping replica told the task's webhook.
    let told = hook.wait_for("/stopped", &running, "TASK_STATE_FAILED", Duration::from_secs(10)).await?;
    assert_eq!(told.last().unwrap().token.as_deref(), Some("tok-stop"));

    // A gateway killed mid-turn (the real binary, SIGKILL): no shutdown code runs at all.
    let mut killed = GatewayProcess::start(&world.platform).await?;
    let doomed = world.working_task(&format!("{}/a2a/helper", killed.url)).await?;
    let webhook = json!({"taskId": doomed, "url": hook.url("/killed"), "token": "tok-kill"});
    let created = world.call_at(&other, &world.alice, "CreateTaskPushNotificationConfig", webhook).await?;
    assert!(created.get("error").is_none(), "{created}");
    killed.sigkill()?;
    killed.child.wait().await?;
    let killed_at = Instant::now();
    // Within its lease the task still counts as working (its replica may only be slow)...
    let got = world.call_at(&other, &world.alice, "GetTask", json!({"id": doomed})).await?;
    if killed_at.elapsed() < LEASE / 2 {
        assert_eq!(got["result"]["status"]["state"], "TASK_STATE_WORKING", "{got}");
    }
    // ... then the surviving replica's sweeper fails it and tells the webhook, with no read.
    let told = hook.wait_for("/killed", &doomed, "TASK_STATE_FAILED", LEASE * 4).await?;
    assert_eq!(told.last().unwrap().token.as_deref(), Some("tok-kill"));
    let took = killed_at.elapsed();
    assert!(took <= LEASE * 2, "failed {took:?} after the kill");
    let got = world.call_at(&other, &world.alice, "GetTask", json!({"id": doomed})).await?;
    assert_eq!(got["result"]["status"]["state"], "TASK_STATE_FAILED", "{got}");
    eprintln!("a task of a killed replica failed {took:?} after the kill (lease {LEASE:?})");

    replica.stop().await?;
    world.platform.stop().await
}
