//! GraphQL at the gateway (`/graphql`, issue 14): queries, mutations, a run's node timeline and
//! a run list's, a `runEvents` subscription over `graphql-transport-ws`, the limits, and the
//! permission and tenant rules, on workflow, desktop-state, event-dispatcher and gateway
//! in-process against the real Postgres and NATS JetStream.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::desktop_ws::unique_tenant;

struct Gql {
    platform: Platform,
    http: reqwest::Client,
    url: String,
}

impl Gql {
    async fn start() -> anyhow::Result<Self> {
        let platform = Platform::builder()
            .service(Service::Workflow)
            .service(Service::DesktopState)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
            .app_settings(Service::Gateway, json!({"graphql_max_depth": 8, "graphql_max_complexity": 400}))
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let url = format!("http://{}/graphql", platform.get(Service::Gateway).http_addr);
        Ok(Self { platform, http: reqwest::Client::new(), url })
    }

    /// `(status, body)` of a POSTed operation.
    async fn post(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<(u16, Value)> {
        crate::call_json(&self.http, "POST", &self.url, token, Some(json!({"query": query, "variables": variables})))
            .await
    }

    /// The `data` of an operation that must succeed.
    async fn ok(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<Value> {
        let (status, body) = self.post(token, query, variables).await?;
        anyhow::ensure!(status == 200 && body["errors"].is_null(), "{query}: {status} {body}");
        Ok(body["data"].clone())
    }

    /// The `extensions.code` of an operation's first error (HTTP 200 or the given status).
    async fn error_code(&self, token: &str, query: &str, variables: Value) -> anyhow::Result<(u16, String)> {
        let (status, body) = self.post(token, query, variables).await?;
        let code = body["errors"][0]["extensions"]["code"].as_str().unwrap_or_default().to_owned();
        anyhow::ensure!(!code.is_empty(), "{query}: no error code in {status} {body}");
        Ok((status, code))
    }
}

/// start -> double (transform) -> end.
fn linear_graph() -> Value {
    json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
            {"id": "double", "type": "transform", "data": {"mapping": {"n": "{{input.n}}"}}, "position": {"x": 200, "y": 0}},
            {"id": "end", "type": "end", "data": {}, "position": {"x": 400, "y": 0}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "double"},
            {"id": "e2", "source": "double", "target": "end"},
        ],
    })
}

const EXECUTE: &str = "mutation($id: String!) { executeWorkflow(id: $id, input: {n: 2}) { id status } }";

async fn finished_run(gql: &Gql, token: &str, run: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let data = gql
            .ok(token, "query($id: String!) { run(id: $id) { id status nodes { nodeId status } } }", json!({"id": run}))
            .await?;
        if data["run"]["status"] == "succeeded" {
            return Ok(data["run"].clone());
        }
        anyhow::ensure!(Instant::now() < deadline, "the run never finished: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn graphql_reads_writes_runs_with_nodes_limits_and_denials() -> anyhow::Result<()> {
    let gql = Gql::start().await?;
    let (tenant, other) = (unique_tenant("gql"), unique_tenant("gqlother"));
    let builder = gql.platform.token(&tenant, "alice", &["builder", "operator"]);
    let viewer = gql.platform.token(&tenant, "vera", &["viewer"]);
    let stranger = gql.platform.token(&other, "mallory", &["admin"]);

    let me = gql.ok(&viewer, "{ me { tenant user roles } }", json!({})).await?;
    assert_eq!(me["me"]["roles"], json!(["viewer"]));

    // Desktops and windows: a mutation, then the desktop with its windows in one query.
    let created = gql.ok(&builder, "mutation { createDesktop(name: \"main\") { id name version } }", json!({})).await?;
    let desktop = created["createDesktop"]["id"].as_str().unwrap().to_owned();
    let opened = gql
        .ok(
            &builder,
            "mutation($d: String!) { openWindow(desktopId: $d, input: {appId: \"notes\", title: \"Notes\", props: {a: 1}}) }",
            json!({"d": desktop}),
        )
        .await?;
    assert_eq!(opened["openWindow"]["window"]["app_id"], "notes", "{opened}");
    let listed = gql.ok(&builder, "{ desktops { items { id windows { appId props state } } } }", json!({})).await?;
    let item = &listed["desktops"]["items"][0];
    assert_eq!((item["id"].as_str(), item["windows"][0]["appId"].as_str()), (Some(desktop.as_str()), Some("notes")));
    assert_eq!(item["windows"][0]["props"], json!({"a": 1}));
    assert_eq!(item["windows"][0]["state"], "normal");

    // Workflows and runs: two runs, then the run list with every run's node timeline.
    let wf = gql
        .ok(
            &builder,
            "mutation($g: JSON!) { createWorkflow(name: \"doubler\", graph: $g) { id version graph } }",
            json!({"g": linear_graph()}),
        )
        .await?;
    let wf_id = wf["createWorkflow"]["id"].as_str().unwrap().to_owned();
    assert_eq!(wf["createWorkflow"]["graph"]["nodes"][1]["id"], "double");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = gql.ok(&builder, EXECUTE, json!({"id": wf_id})).await?;
        runs.push(run["executeWorkflow"]["id"].as_str().unwrap().to_owned());
    }
    for run in &runs {
        let done = finished_run(&gql, &builder, run).await?;
        let nodes: Vec<_> = done["nodes"].as_array().unwrap().iter().map(|n| n["nodeId"].clone()).collect();
        assert_eq!(nodes, [json!("start"), json!("double"), json!("end")], "{done}");
    }
    let list = gql
        .ok(
            &viewer,
            "query($w: String!) { workflow(id: $w) { name runs(pageSize: 10) { items { id status nodes { nodeId status output } } } } }",
            json!({"w": wf_id}),
        )
        .await?;
    let items = list["workflow"]["runs"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        assert_eq!(item["nodes"].as_array().map(Vec::len), Some(3), "{item}");
        assert_eq!(item["nodes"][1]["output"]["n"], 2, "{item}");
    }

    // Roles: a viewer reads but cannot write; the refusal is a GraphQL error, not a 5xx.
    let (status, code) = gql.error_code(&viewer, EXECUTE, json!({"id": wf_id})).await?;
    assert_eq!((status, code.as_str()), (200, "permission_denied"));
    let (_, code) = gql.error_code(&viewer, "mutation { createDesktop(name: \"x\") { id } }", json!({})).await?;
    assert_eq!(code, "permission_denied");

    // Tenants: another tenant's run and workflow are not found, even for its admin.
    let (_, code) =
        gql.error_code(&stranger, "query($id: String!) { run(id: $id) { id } }", json!({"id": runs[0]})).await?;
    assert_eq!(code, "not_found");
    let (_, code) = gql.error_code(&stranger, EXECUTE, json!({"id": wf_id})).await?;
    assert_eq!(code, "not_found");

    // Bad input: malformed, unknown field, too deep, too complex, a mutation over GET, not JSON.
    let (status, code) = gql.error_code(&viewer, "{ me { user ", json!({})).await?;
    assert_eq!((status, code.as_str()), (200, "invalid_argument"));
    let (_, code) = gql.error_code(&viewer, "{ me { password } }", json!({})).await?;
    assert_eq!(code, "invalid_argument");
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }";
    let (_, body) = gql.post(&viewer, deep, json!({})).await?;
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("graphql_max_depth"), "{body}");
    let complex = "{ runs(pageSize: 100) { items { id nodes { nodeId } logs { message } } } }";
    let (_, body) = gql.post(&viewer, complex, json!({})).await?;
    assert!(body["errors"][0]["message"].as_str().unwrap_or_default().contains("graphql_max_complexity"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_argument");
    let (_, code) = gql.error_code(&viewer, "{ runs(pageSize: 1000) { items { id } } }", json!({})).await?;
    assert_eq!(code, "invalid_argument");
    let get = gql
        .http
        .get(format!("{}?query=mutation%7BcreateDesktop(name%3A%22x%22)%7Bid%7D%7D", gql.url))
        .bearer_auth(&builder)
        .send()
        .await?;
    let body: Value = get.json().await?;
    assert_eq!(body["errors"][0]["message"], "mutations must be sent with POST", "{body}");
    let resp = gql.http.post(&gql.url).bearer_auth(&viewer).body("{ me { user } }").send().await?;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await?;
    assert_eq!(body["errors"][0]["extensions"]["code"], "invalid_argument", "{body}");
    let batch = json!([{"query": "{ me { user } }"}, {"query": "{ me { tenant } }"}]);
    let (status, body) = crate::call_json(&gql.http, "POST", &gql.url, &viewer, Some(batch)).await?;
    assert_eq!((status, body[1]["data"]["me"]["tenant"].as_str()), (200, Some(tenant.as_str())), "{body}");
    // Without a token the endpoint is a plain 401, as every route.
    let resp = gql.http.post(&gql.url).json(&json!({"query": "{ me { user } }"})).send().await?;
    assert_eq!(resp.status(), 401);
    gql.platform.stop().await
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(gql: &Gql, token: &str) -> anyhow::Result<Socket> {
    let mut req = gql.url.replace("http://", "ws://").into_client_request()?;
    // A browser's way: the protocol and the token as subprotocol entries.
    req.headers_mut().insert("sec-websocket-protocol", format!("graphql-transport-ws, bearer.{token}").parse()?);
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await?;
    assert_eq!(resp.headers()["sec-websocket-protocol"], "graphql-transport-ws");
    ws.send(Message::text(json!({"type": "connection_init", "payload": {}}).to_string())).await?;
    let ack = next(&mut ws).await.expect("connection_ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    Ok(ws)
}

/// The next JSON text message within 10 s (pings skipped); None on timeout or close.
async fn next(ws: &mut Socket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()??.ok()? {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

#[tokio::test]
async fn graphql_subscription_streams_a_runs_events_and_resumes_and_refuses_other_tenants() -> anyhow::Result<()> {
    let gql = Gql::start().await?;
    let (tenant, other) = (unique_tenant("gqlsub"), unique_tenant("gqlsubother"));
    let token = gql.platform.token(&tenant, "alice", &["builder", "operator"]);
    let stranger = gql.platform.token(&other, "mallory", &["admin"]);
    let wf = gql
        .ok(
            &token,
            "mutation($g: JSON!) { createWorkflow(name: \"w\", graph: $g) { id } }",
            json!({"g": linear_graph()}),
        )
        .await?;
    let run = gql.ok(&token, EXECUTE, json!({"id": wf["createWorkflow"]["id"]})).await?;
    let run_id = run["executeWorkflow"]["id"].as_str().unwrap().to_owned();
    finished_run(&gql, &token, &run_id).await?;

    // From the run's first event; the run has finished, so its history is all there.
    let subscribe = |id: &str, after: Option<&str>| {
        json!({"id": id, "type": "subscribe", "payload": {
            "query": "subscription($r: String!, $a: String) { runEvents(runId: $r, after: $a) { cursor type event } }",
            "variables": {"r": run_id, "a": after},
        }})
        .to_string()
    };
    let mut ws = connect(&gql, &token).await?;
    ws.send(Message::text(subscribe("1", None))).await?;
    let mut seen = Vec::new();
    while let Some(msg) = next(&mut ws).await {
        assert_eq!((msg["type"].as_str(), msg["id"].as_str()), (Some("next"), Some("1")), "{msg}");
        let event = &msg["payload"]["data"]["runEvents"];
        seen.push((event["cursor"].as_str().unwrap().to_owned(), event["type"].as_str().unwrap().to_owned()));
        if event["type"] == "run.completed" {
            break;
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run.started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run.completed"), "{kinds:?}");
    ws.send(Message::text(json!({"id": "1", "type": "complete"}).to_string())).await?;

    // Resumed after the first event: the rest, none twice.
    ws.send(Message::text(subscribe("2", Some(&seen[0].0)))).await?;
    // (The server confirms the first subscription's end with its own `complete`.)
    let msg = loop {
        let msg = next(&mut ws).await.expect("a resumed event");
        if msg["id"] == "2" {
            break msg;
        }
        assert_eq!((msg["id"].as_str(), msg["type"].as_str()), (Some("1"), Some("complete")), "{msg}");
    };
    assert_eq!(msg["payload"]["data"]["runEvents"]["cursor"].as_str(), Some(seen[1].0.as_str()), "{msg}");
    ws.send(Message::text(json!({"id": "2", "type": "complete"}).to_string())).await?;

    // Another tenant's run: an execution error (in a `next`, as graphql-transport-ws carries
    // them) and the operation's end, no stream.
    let mut theirs = connect(&gql, &stranger).await?;
    theirs.send(Message::text(subscribe("3", None))).await?;
    let msg = next(&mut theirs).await.expect("an error");
    assert_eq!(msg["payload"]["errors"][0]["extensions"]["code"], "not_found", "{msg}");
    assert_eq!(msg["payload"]["data"], Value::Null, "{msg}");
    let end = next(&mut theirs).await.expect("the operation's end");
    assert_eq!((end["id"].as_str(), end["type"].as_str()), (Some("3"), Some("complete")), "{end}");
    gql.platform.stop().await
}
