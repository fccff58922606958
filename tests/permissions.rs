//! The role model at the gateway and behind it (issue 13): a role-by-route matrix generated from
//! the gateway's own route table (`getlood_gateway::route_permissions`), the desktop socket's
//! commands for a read-only viewer, direct gRPC calls held to the services' tables, and the
//! approval rule (`runs.approve`, and never the run's own starter by default).

use std::time::{Duration, Instant};

use futures::SinkExt as _;
use getlood_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use getlood_proto::workflow::v1::{CreateWorkflowRequest, ListWorkflowsRequest};
use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::desktop_ws::{Realtime, recv, unique_tenant};

/// Role sets every route is tried with: each role of the model, the `user` alias, an unknown
/// role and none at all.
const ROLE_SETS: &[&[&str]] =
    &[&["admin"], &["builder"], &["operator"], &["member"], &["user"], &["viewer"], &["superuser"], &[]];

/// A concrete path for a route pattern: every `{param}` becomes an id that exists nowhere.
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|seg| match seg {
            "{action}" => "focus".to_owned(),
            s if s.starts_with('{') => "00000000-0000-7000-8000-000000000000".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_answers_403_exactly_when_the_table_says_so() -> anyhow::Result<()> {
    // Every service runs, so a request the gateway lets through meets the service's own gRPC
    // table too: a service refusing what the gateway allows fails the matrix as well.
    let platform = Platform::builder()
        .all()
        .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    let base = platform.http_url(Service::Gateway);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
    let tenant = unique_tenant("perm");
    let routes = getlood_gateway::route_permissions();
    assert!(routes.len() > 40, "the route table lost routes: {}", routes.len());

    let mut failures = Vec::new();
    for roles in ROLE_SETS {
        let token = platform.token(&tenant, "alice", roles);
        for route in routes {
            let url = format!("{base}{}", concrete(route.path));
            let resp = http.request(route.method.parse()?, &url).bearer_auth(&token).send().await?;
            let status = resp.status().as_u16();
            let allowed = getlood_auth::allows(roles, route.permission);
            if allowed {
                if status == 403 || status == 401 {
                    let body = resp.text().await.unwrap_or_default();
                    failures.push(format!("{roles:?} {} {}: {status} but allowed: {body}", route.method, route.path));
                }
                continue;
            }
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let message = body["message"].as_str().unwrap_or_default();
            if status != 403
                || body["code"] != "permission_denied"
                || !message.starts_with(&format!("{} needs role ", route.permission))
            {
                failures.push(format!("{roles:?} {} {}: {status} {body} but denied", route.method, route.path));
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));

    // The gateway's gRPC API follows the same table.
    let mut grpc = getlood_proto::gateway::v1::gateway_service_client::GatewayServiceClient::new(
        platform.grpc_channel(Service::Gateway),
    );
    for (roles, ok) in [(&["viewer"][..], false), (&["member"][..], true)] {
        let mut req = tonic::Request::new(getlood_proto::gateway::v1::ChatCompletionRequest::default());
        req.metadata_mut()
            .insert("authorization", format!("Bearer {}", platform.token(&tenant, "alice", roles)).parse()?);
        let code = match grpc.chat_completion(req).await {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        assert_eq!(code == tonic::Code::PermissionDenied, !ok, "{roles:?}: {code:?}");
    }
    let mut req = tonic::Request::new(getlood_proto::gateway::v1::WhoAmIRequest {});
    req.metadata_mut()
        .insert("authorization", format!("Bearer {}", platform.token(&tenant, "v", &["viewer"])).parse()?);
    assert_eq!(grpc.who_am_i(req).await?.into_inner().roles, ["viewer"]);
    platform.stop().await
}

#[tokio::test]
async fn a_viewer_watches_a_desktop_but_its_commands_are_refused() -> anyhow::Result<()> {
    let rt = Realtime::start(json!({})).await?;
    let tenant = unique_tenant("permws");
    let member = rt.platform.token(&tenant, "alice", &["member"]);
    let viewer = rt.platform.token(&tenant, "alice", &["viewer"]);
    let desktop = rt.create_desktop(&member, "main").await?;
    rt.open_window(&member, &desktop, "notes").await?;

    let mut ws = rt.connect(&viewer, &desktop, None).await?;
    let state = recv(&mut ws, Duration::from_secs(10)).await.expect("state frame");
    assert_eq!(state["type"], "state", "{state}");
    ws.send(Message::text(json!({"type": "open", "id": 7, "app_id": "calc", "title": "calc"}).to_string())).await?;
    let answer = recv(&mut ws, Duration::from_secs(10)).await.expect("answer frame");
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["code"], "permission_denied");
    assert_eq!(answer["message"], "desktops.write needs role admin, builder, operator or member");

    // The member's commands on the same socket route go through.
    let mut ws = rt.connect(&member, &desktop, None).await?;
    recv(&mut ws, Duration::from_secs(10)).await.expect("state frame");
    ws.send(Message::text(json!({"type": "open", "id": 8, "app_id": "calc", "title": "calc"}).to_string())).await?;
    let answer = loop {
        let frame = recv(&mut ws, Duration::from_secs(10)).await.expect("answer frame");
        if frame["type"] != "event" {
            break frame;
        }
    };
    assert_eq!(answer["type"], "result", "{answer}");
    rt.stop().await
}

/// start -> gate (human_approval) -approved-> end; needs neither MindsDB nor a model.
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

#[tokio::test]
async fn approvals_need_runs_approve_and_someone_other_than_the_starter() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::Workflow)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/workflows", platform.http_url(Service::Gateway));
    let tenant = unique_tenant("approve");
    let builder = platform.token(&tenant, "bianca", &["builder"]);
    let starter = platform.token(&tenant, "alice", &["operator"]);
    let approver = platform.token(&tenant, "bob", &["operator"]);
    let member = platform.token(&tenant, "carol", &["member"]);
    let call = |method: &'static str, path: String, token: String, body: Option<Value>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { crate::call_json(&http, method, &url, &token, body).await }
    };

    // A member may not create a workflow; a builder may; only an operator may start it.
    let create = json!({"name": "gated", "graph": approval_graph()});
    let (status, body) = call("POST", String::new(), member.clone(), Some(create.clone())).await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("permission_denied")), "{body}");
    let (status, wf) = call("POST", String::new(), builder.clone(), Some(create)).await?;
    assert_eq!(status, 201, "{wf}");
    let wf_id = wf["id"].as_str().unwrap().to_owned();
    let (status, _) = call("POST", format!("/{wf_id}/execute"), builder.clone(), Some(json!({"input": {}}))).await?;
    assert_eq!(status, 403, "a builder started a run");
    let (status, run) = call("POST", format!("/{wf_id}/execute"), starter.clone(), Some(json!({"input": {}}))).await?;
    assert_eq!(status, 202, "{run}");
    let run_id = run["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, run) = call("GET", format!("/runs/{run_id}"), member.clone(), None).await?;
        assert_eq!(status, 200, "a member reads runs: {run}");
        if run["status"] == "waiting_approval" {
            break;
        }
        assert!(Instant::now() < deadline, "the run never waited: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let decision = json!({"node_id": "gate", "approved": true, "comment": "fine"});
    // A member lacks runs.approve: refused at the gateway.
    let (status, body) = call("POST", format!("/runs/{run_id}/approve"), member, Some(decision.clone())).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["message"], "runs.approve needs role admin or operator");
    // The starter holds runs.approve but may not approve their own run (app.approval_self_allowed).
    let (status, body) =
        call("POST", format!("/runs/{run_id}/approve"), starter.clone(), Some(decision.clone())).await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("permission_denied")), "{body}");
    assert!(body["message"].as_str().unwrap_or_default().contains("started the run"), "{body}");
    // Another operator may.
    let (status, body) = call("POST", format!("/runs/{run_id}/approve"), approver, Some(decision)).await?;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, run) = call("GET", format!("/runs/{run_id}"), starter.clone(), None).await?;
        if run["status"] == "succeeded" {
            let gate = run["node_runs"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == "gate")).cloned();
            assert_eq!(gate.map(|g| g["decided_by"].clone()), Some(json!("bob")), "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "the run never finished: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Straight to the workflow service's gRPC port, the same table holds.
    let mut grpc = WorkflowServiceClient::new(platform.grpc_channel(Service::Workflow));
    fn with<T>(token: &str, msg: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    }
    let viewer = platform.token(&tenant, "vera", &["viewer"]);
    let err = grpc
        .create_workflow(with(&viewer, CreateWorkflowRequest { name: "direct".into(), ..Default::default() }))
        .await
        .expect_err("a viewer created a workflow over gRPC");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert_eq!(err.message(), "workflows.write needs role admin or builder");
    let listed = grpc.list_workflows(with(&viewer, ListWorkflowsRequest::default())).await?.into_inner();
    assert_eq!(listed.workflows.len(), 1);
    platform.stop().await
}
