//! Workflows through the gateway's REST and SSE routes only: workflow, event-dispatcher and
//! gateway in-process against the real Postgres and NATS JetStream. The graphs use transform,
//! condition and human_approval nodes, which need neither MindsDB nor a model.

use std::time::{Duration, Instant};

use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;
use crate::events::{SseEvent, read_sse};

struct Api {
    platform: Platform,
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn start() -> anyhow::Result<Self> {
        let platform = Platform::builder()
            .service(Service::Workflow)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(Service::Gateway, json!({"sse_heartbeat_interval": "200ms"}))
            // The runs' starter approves them here; the default refusal is tests/permissions.rs'.
            .app_settings(Service::Workflow, json!({"approval_self_allowed": true}))
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let base = format!("http://{}", platform.get(Service::Gateway).http_addr);
        Ok(Self { platform, http: reqwest::Client::new(), base })
    }

    fn token(&self, tenant: &str) -> String {
        // Writes workflows (builder), runs and approves them (operator).
        self.platform.token(tenant, "alice", &["builder", "operator"])
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/workflows{path}", self.base)
    }

    /// `(status, body)` of a request with `token`.
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        crate::call_json(&self.http, method, &self.url(path), token, body).await
    }

    async fn create(&self, token: &str, name: &str, graph: Value) -> anyhow::Result<Value> {
        let (status, body) = self.call("POST", "", token, Some(json!({"name": name, "graph": graph}))).await?;
        anyhow::ensure!(status == 201, "create: {status} {body}");
        Ok(body)
    }

    async fn execute(&self, token: &str, workflow: &str, input: Value) -> anyhow::Result<Value> {
        let (status, body) =
            self.call("POST", &format!("/{workflow}/execute"), token, Some(json!({"input": input}))).await?;
        anyhow::ensure!(status == 202, "execute: {status} {body}");
        Ok(body)
    }

    /// Polls `GET /runs/{id}` until `done` holds for the run.
    async fn wait_run(&self, token: &str, run: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.call("GET", &format!("/runs/{run}"), token, None).await?;
            anyhow::ensure!(status == 200, "get run: {status} {body}");
            if done(&body) {
                return Ok(body);
            }
            anyhow::ensure!(Instant::now() < deadline, "run never reached the state: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens the run's SSE stream with an optional `Last-Event-ID`.
    async fn run_events(&self, token: &str, run: &str, query: &str, last_id: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(&format!("/runs/{run}/events{query}"))).bearer_auth(token);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.unwrap()
    }
}

/// start -> double (transform) -> end, as React Flow saves it (camelCase handles, positions,
/// the viewport and fields the engine ignores).
fn linear_graph(factor: i64) -> Value {
    json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}, "width": 150, "selected": false},
            {"id": "double", "type": "transform", "data": {"mapping": {"v": factor, "n": "{{input.n}}"}},
             "position": {"x": 200, "y": 0}},
            {"id": "end", "type": "end", "data": {}, "position": {"x": 400, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "double", "sourceHandle": null, "targetHandle": null},
            {"id": "e2", "source": "double", "target": "end", "sourceHandle": null, "targetHandle": null},
        ],
        "viewport": {"x": 10, "y": 20, "zoom": 1.25},
    })
}

/// start -> gate (human_approval) -approved-> end.
fn approval_graph() -> Value {
    json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
            {"id": "gate", "type": "human_approval", "data": {"message": "go?"}, "position": {"x": 200, "y": 0}},
            {"id": "end", "type": "end", "data": {}, "position": {"x": 400, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "gate"},
            {"id": "e2", "source": "gate", "target": "end", "sourceHandle": "approved"},
        ],
    })
}

fn is_final(run: &Value) -> bool {
    ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap_or_default())
}

fn kinds(events: &[SseEvent]) -> Vec<String> {
    events.iter().map(|(_, kind, data)| format!("{kind}:{}", data["data"]["node_id"].as_str().unwrap_or(""))).collect()
}

#[tokio::test]
async fn gateway_workflows_crud_versions_and_invalid_graphs() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let token = api.token(&unique_tenant("wfapi"));

    // Create from React Flow JSON: version 1, its ETag, the graph as the editor saved it.
    let created = api.create(&token, "doubler", linear_graph(2)).await?;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], 1);
    assert_eq!(created["graph"]["nodes"][1]["data"]["mapping"]["n"], "{{input.n}}");
    assert_eq!(created["graph"]["edges"][0]["sourceHandle"], Value::Null);
    assert_eq!(created["graph"]["viewport"]["zoom"], 1.25);
    assert_eq!(created["graph"]["nodes"][1]["position"]["x"].as_f64(), Some(200.0));

    let resp = api.http.get(api.url(&format!("/{id}"))).bearer_auth(&token).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let got: Value = resp.json().await?;
    assert_eq!(got["graph"], created["graph"]);
    assert_eq!(got["name"], "doubler");

    // Update with If-Match: a new version; the stale ETag is then a conflict.
    let update = json!({"graph": linear_graph(3), "version_comment": "triple"});
    let put_if_v1 = || {
        api.http.put(api.url(&format!("/{id}"))).bearer_auth(&token).header("if-match", "\"1\"").json(&update).send()
    };
    let resp = put_if_v1().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], "\"2\"");
    let v2: Value = resp.json().await?;
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["version_comment"], "triple");
    assert_eq!(v2["name"], "doubler", "an absent name is kept");
    let resp = put_if_v1().await?;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.json::<Value>().await?["code"], "aborted");

    let (status, versions) = api.call("GET", &format!("/{id}/versions"), &token, None).await?;
    assert_eq!(status, 200, "{versions}");
    let numbers: Vec<i64> =
        versions["versions"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(versions["versions"][0]["comment"], "triple");
    assert_eq!(versions["versions"][0]["node_count"], 3);
    let (_, old) = api.call("GET", &format!("/{id}?version=1"), &token, None).await?;
    assert_eq!(old["graph"]["nodes"][1]["data"]["mapping"]["v"].as_f64(), Some(2.0));

    let (status, list) = api.call("GET", "?omit_graph=true", &token, None).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["workflows"].as_array().unwrap().len(), 1);
    assert_eq!(list["workflows"][0]["id"], id.as_str());
    assert_eq!(list["workflows"][0]["graph"], Value::Null);

    // An invalid graph: validate lists every problem; create is a 400 naming every bad node.
    let bad = json!({
        "nodes": [
            {"id": "s1", "type": "start", "data": {}},
            {"id": "s2", "type": "start", "data": {}},
            {"id": "warp", "type": "teleport", "data": {}},
            {"id": "orphan", "type": "transform", "data": {"mapping": {"v": 1}}},
        ],
        "edges": [{"id": "e1", "source": "s1", "target": "ghost"}],
    });
    let (status, checked) = api.call("POST", "/validate", &token, Some(json!({"graph": bad}))).await?;
    assert_eq!(status, 200, "{checked}");
    assert_eq!(checked["valid"], false);
    let subjects: Vec<&str> =
        checked["problems"].as_array().unwrap().iter().map(|p| p["subject"].as_str().unwrap()).collect();
    for subject in ["s2", "warp", "orphan", "e1"] {
        assert!(subjects.contains(&subject), "no problem about {subject}: {checked}");
    }
    let (status, err) = api.call("POST", "", &token, Some(json!({"name": "broken", "graph": bad}))).await?;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["code"], "invalid_argument");
    let message = err["message"].as_str().unwrap();
    for subject in ["s2", "warp", "orphan", "e1"] {
        assert!(message.contains(&format!("[{subject}]")), "{subject} missing from: {message}");
    }
    let (status, err) =
        api.call("POST", "", &token, Some(json!({"name": "x", "graph": {"nodes": [{"id": "n", "data": 3}]}}))).await?;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    let (status, _) = api.call("POST", "/validate", &token, Some(json!({}))).await?;
    assert_eq!(status, 400, "a missing graph");

    // Deleted: gone, and executing it is a 404.
    let (status, deleted) = api.call("DELETE", &format!("/{id}?expected_version=2"), &token, None).await?;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deleted"], true);
    let (status, _) = api.call("GET", &format!("/{id}"), &token, None).await?;
    assert_eq!(status, 404);
    let (status, err) = api.call("POST", &format!("/{id}/execute"), &token, None).await?;
    assert_eq!((status, err["code"].as_str()), (404, Some("not_found")), "{err}");
    api.platform.stop().await
}

#[tokio::test]
async fn gateway_workflows_execute_timeline_logs_and_resumable_sse() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let token = api.token(&unique_tenant("wfrun"));
    let wf = api.create(&token, "doubler", linear_graph(2)).await?;
    let wf_id = wf["id"].as_str().unwrap();

    let run = api.execute(&token, wf_id, json!({"n": 21})).await?;
    let run_id = run["id"].as_str().unwrap().to_owned();
    assert!(["pending", "running"].contains(&run["status"].as_str().unwrap()), "{run}");
    assert_eq!((run["workflow_id"].as_str(), run["workflow_version"].as_i64()), (Some(wf_id), Some(1)));

    let done = api.wait_run(&token, &run_id, is_final).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["n"].as_f64(), Some(21.0), "{done}");
    assert_eq!(done["result"]["v"].as_f64(), Some(2.0), "{done}");
    let timeline: Vec<(&str, &str)> = done["node_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["node_id"].as_str().unwrap(), n["status"].as_str().unwrap()))
        .collect();
    assert_eq!(timeline, [("start", "succeeded"), ("double", "succeeded"), ("end", "succeeded")]);
    assert!(done["node_runs"][1]["started_at"].is_string(), "{done}");
    assert!(!done["logs"].as_array().unwrap().is_empty(), "persisted logs: {done}");
    let (_, no_logs) = api.call("GET", &format!("/runs/{run_id}?include_logs=false"), &token, None).await?;
    assert_eq!(no_logs["logs"], json!([]));

    let (status, runs) = api.call("GET", &format!("/{wf_id}/runs?status=succeeded"), &token, None).await?;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"][0]["id"], run_id.as_str());
    let (status, runs) = api.call("GET", "/runs?status=running", &token, None).await?;
    assert_eq!((status, runs["runs"].as_array().map(Vec::len)), (200, Some(0)), "{runs}");
    let (status, err) = api.call("GET", "/runs?status=sleeping", &token, None).await?;
    assert_eq!(status, 400, "{err}");

    // Without a cursor the stream replays the run from its start, in order.
    let resp = api.run_events(&token, &run_id, "", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = read_sse(resp, 8, Duration::from_secs(15)).await;
    let expected = [
        "run.started:",
        "node.started:start",
        "node.completed:start",
        "node.started:double",
        "node.completed:double",
        "node.started:end",
        "node.completed:end",
        "run.completed:",
    ];
    assert_eq!(kinds(&events), expected);
    assert!(events.iter().all(|(id, _, data)| id.starts_with("workflow:") && data["entity_id"] == run_id.as_str()));
    let run_sequences: Vec<i64> = events.iter().map(|(_, _, d)| d["data"]["run_sequence"].as_i64().unwrap()).collect();
    assert!(run_sequences.windows(2).all(|w| w[0] < w[1]), "{run_sequences:?}");

    // Resume after the third event, with Last-Event-ID and with ?after=: the rest, once.
    let (third, _, _) = &events[2];
    let resp = api.run_events(&token, &run_id, "", Some(third)).await;
    let rest = read_sse(resp, 6, Duration::from_secs(3)).await;
    assert_eq!(kinds(&rest), expected[3..]);
    let resp = api.run_events(&token, &run_id, &format!("?after={third}"), None).await;
    assert_eq!(kinds(&read_sse(resp, 5, Duration::from_secs(10)).await), expected[3..]);
    let resp = api.run_events(&token, &run_id, "?after=garbage", None).await;
    assert_eq!(resp.status(), 400);

    // Approving a run that is not waiting is a failed precondition.
    let (status, err) = api
        .call("POST", &format!("/runs/{run_id}/approve"), &token, Some(json!({"node_id": "double", "approved": true})))
        .await?;
    assert_eq!(err["code"], "failed_precondition", "{err}");
    // The platform's one mapping of FAILED_PRECONDITION (libs/common).
    assert_eq!(status, 409);
    let (status, err) =
        api.call("POST", &format!("/runs/{run_id}/approve"), &token, Some(json!({"node_id": "x"}))).await?;
    assert_eq!(status, 400, "a decision is required: {err}");
    api.platform.stop().await
}

#[tokio::test]
async fn gateway_workflows_approval_cancel_and_other_tenants() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let (acme, globex) = (unique_tenant("wfa"), unique_tenant("wfb"));
    let (a, b) = (api.token(&acme), api.token(&globex));
    let wf = api.create(&a, "gated", approval_graph()).await?;
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    let waiting = |r: &Value| r["status"] == "waiting_approval";

    // Tenant B listens to every workflow event of its own tenant while A works.
    let b_feed = api.http.get(format!("{}/api/v1/events?topics=workflow", api.base)).bearer_auth(&b).send().await?;
    assert_eq!(b_feed.status(), 200);

    let approved = api.execute(&a, &wf_id, json!({})).await?;
    let approved_id = approved["id"].as_str().unwrap().to_owned();
    let run = api.wait_run(&a, &approved_id, waiting).await?;
    let gate = run["node_runs"].as_array().unwrap().iter().find(|n| n["node_id"] == "gate").unwrap();
    assert_eq!(gate["status"], "waiting_approval");

    // Tenant B: every route on A's workflow and run is a 404, and no stream opens.
    for (method, path, body) in [
        ("GET", format!("/{wf_id}"), None),
        ("PUT", format!("/{wf_id}"), Some(json!({"graph": approval_graph()}))),
        ("GET", format!("/{wf_id}/versions"), None),
        ("GET", format!("/{wf_id}/runs"), None),
        ("POST", format!("/{wf_id}/execute"), None),
        ("DELETE", format!("/{wf_id}"), None),
        ("GET", format!("/runs/{approved_id}"), None),
        ("POST", format!("/runs/{approved_id}/cancel"), None),
        ("POST", format!("/runs/{approved_id}/approve"), Some(json!({"node_id": "gate", "approved": true}))),
    ] {
        let (status, err) = api.call(method, &path, &b, body).await?;
        assert_eq!((status, err["code"].as_str()), (404, Some("not_found")), "{method} {path}: {err}");
    }
    let resp = api.run_events(&b, &approved_id, "", None).await;
    assert_eq!(resp.status(), 404, "another tenant's run events");
    let (_, listed) = api.call("GET", "", &b, None).await?;
    assert_eq!(listed["workflows"], json!([]));
    let (_, listed) = api.call("GET", "/runs", &b, None).await?;
    assert_eq!(listed["runs"], json!([]));

    // A approves: the run continues to the end, and records who decided.
    let (status, body) = api
        .call(
            "POST",
            &format!("/runs/{approved_id}/approve"),
            &a,
            Some(json!({"node_id": "gate", "approved": true, "comment": "fine"})),
        )
        .await?;
    assert_eq!(status, 200, "{body}");
    let done = api.wait_run(&a, &approved_id, is_final).await?;
    assert_eq!(done["status"], "succeeded", "{done}");
    let gate = done["node_runs"].as_array().unwrap().iter().find(|n| n["node_id"] == "gate").unwrap();
    assert_eq!((gate["decided_by"].as_str(), gate["decision_comment"].as_str()), (Some("alice"), Some("fine")));
    let events = read_sse(api.run_events(&a, &approved_id, "", None).await, 9, Duration::from_secs(15)).await;
    assert_eq!(
        kinds(&events),
        [
            "run.started:",
            "node.started:start",
            "node.completed:start",
            "node.started:gate",
            "run.waiting_approval:gate",
            "node.completed:gate",
            "node.started:end",
            "node.completed:end",
            "run.completed:",
        ]
    );

    // Cancel a waiting run; cancelling or approving it afterwards is a failed precondition.
    let cancelled = api.execute(&a, &wf_id, json!({})).await?;
    let cancelled_id = cancelled["id"].as_str().unwrap().to_owned();
    api.wait_run(&a, &cancelled_id, waiting).await?;
    let (status, body) =
        api.call("POST", &format!("/runs/{cancelled_id}/cancel"), &a, Some(json!({"reason": "not today"}))).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["status"].as_str(), body["cancel_reason"].as_str()), (Some("cancelled"), Some("not today")));
    let (_, err) = api.call("POST", &format!("/runs/{cancelled_id}/cancel"), &a, None).await?;
    assert_eq!(err["code"], "failed_precondition", "{err}");
    let (_, err) = api
        .call("POST", &format!("/runs/{cancelled_id}/approve"), &a, Some(json!({"node_id": "gate", "approved": true})))
        .await?;
    assert_eq!(err["code"], "failed_precondition", "{err}");

    // None of A's events reached tenant B's own feed.
    let leaked = read_sse(b_feed, 1, Duration::from_secs(2)).await;
    assert!(leaked.is_empty(), "tenant B received {leaked:?}");
    api.platform.stop().await
}

#[tokio::test]
async fn gateway_workflow_run_events_over_a_websocket() -> anyhow::Result<()> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let api = Api::start().await?;
    let token = api.token(&unique_tenant("wfws"));
    let other = api.token(&unique_tenant("wfwsother"));
    let wf = api.create(&token, "doubler", linear_graph(2)).await?;
    let run = api.execute(&token, wf["id"].as_str().unwrap(), json!({"n": 1})).await?;
    let run_id = run["id"].as_str().unwrap().to_owned();
    api.wait_run(&token, &run_id, is_final).await?;
    let url = format!("ws://{}/api/v1/workflows/runs/{run_id}/events", api.platform.get(Service::Gateway).http_addr);

    // A browser's way: the token as a subprotocol next to getlood.v1.
    let browser = |token: &str, query: &str| -> anyhow::Result<_> {
        let mut req = format!("{url}{query}").into_client_request()?;
        req.headers_mut().insert("sec-websocket-protocol", format!("getlood.v1, bearer.{token}").parse()?);
        Ok(req)
    };
    let (mut ws, resp) = tokio_tungstenite::connect_async(browser(&token, "")?).await?;
    assert_eq!(resp.headers()["sec-websocket-protocol"], "getlood.v1");
    let mut frames = Vec::new();
    while frames.len() < 8 {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await?;
        if let Some(Ok(Message::Text(t))) = msg {
            frames.push(serde_json::from_str::<Value>(t.as_str())?);
        }
    }
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "event", "{f}");
            format!(
                "{}:{}",
                f["event"]["type"].as_str().unwrap_or(""),
                f["event"]["data"]["node_id"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("run.started:"));
    assert_eq!(kinds.last().map(String::as_str), Some("run.completed:"));
    assert_eq!(kinds.len(), 8, "{kinds:?}");
    // The socket takes no commands: an error frame, and it stays open.
    ws.send(Message::Text("{\"type\":\"open\"}".into())).await?;
    let reply = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await? {
            Some(Ok(Message::Text(t))) => break serde_json::from_str::<Value>(t.as_str())?,
            Some(Ok(_)) => {}
            other => anyhow::bail!("socket ended: {other:?}"),
        }
    };
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("invalid_argument")));
    ws.close(None).await?;

    // Resume after the sixth event: exactly the last two.
    let sixth = frames[5]["cursor"].as_str().unwrap().to_owned();
    let (mut ws, _) = tokio_tungstenite::connect_async(browser(&token, &format!("?after={sixth}"))?).await?;
    let mut rest = Vec::new();
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
        if let Message::Text(t) = msg {
            rest.push(serde_json::from_str::<Value>(t.as_str())?["cursor"].as_str().unwrap_or("").to_owned());
        }
    }
    let expected: Vec<String> = frames[6..].iter().map(|f| f["cursor"].as_str().unwrap().to_owned()).collect();
    assert_eq!(rest, expected);

    // Another tenant: 404 before any socket opens; no token: 401.
    for (req, status) in [(browser(&other, "")?, 404), (url.as_str().into_client_request()?, 401)] {
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), status),
            other => anyhow::bail!("expected {status}, got {:?}", other.map(|(_, r)| r.status())),
        }
    }
    api.platform.stop().await
}

#[tokio::test]
async fn gateway_workflow_execute_refuses_unbounded_timeouts_and_starts_nothing() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let token = api.token(&unique_tenant("wftimeout"));
    let id = api.create(&token, "doubler", linear_graph(2)).await?["id"].as_str().unwrap_or_default().to_owned();
    // u64::MAX ms once panicked the engine (deadline overflow) and answered 504 after 10 s.
    for timeout_ms in [json!(18_446_744_073_709_551_615_u64), json!(604_800_001_u64)] {
        let (status, body) = api
            .call("POST", &format!("/{id}/execute"), &token, Some(json!({"input": {"n": 1}, "timeout_ms": timeout_ms})))
            .await?;
        assert_eq!(status, 400, "timeout_ms {timeout_ms}: {body}");
        assert_eq!(body["code"], "invalid_argument", "{body}");
        assert!(body["message"].as_str().unwrap_or("").contains("timeout"), "{body}");
    }
    let (status, runs) = api.call("GET", &format!("/{id}/runs"), &token, None).await?;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["runs"], json!([]), "a refused execute started a run");
    // Seven days exactly is accepted.
    let run = api.execute(&token, &id, json!({"n": 1})).await?;
    assert!(run["id"].is_string(), "{run}");
    let (status, body) = api
        .call(
            "POST",
            &format!("/{id}/execute"),
            &token,
            Some(json!({"input": {"n": 1}, "timeout_ms": 604_800_000_u64})),
        )
        .await?;
    assert_eq!(status, 202, "{body}");
    Ok(())
}
