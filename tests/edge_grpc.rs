//! gRPC at the edge (issue 14): the internal services' protos re-served on the gateway's gRPC
//! port, authenticated and held to the gateway's per-service tables (a role-by-method matrix
//! generated from `getlood_gateway::grpc_permissions`), tenant scoped, with WatchRun and
//! Subscribe streamed through; reflection and health naming exactly the served services;
//! gRPC-Web over HTTP/1.1 and CORS on the HTTP port; and the `/ws/events` socket.

use std::str::FromStr as _;
use std::time::Duration;

use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::agent_registry::v1::{
    CreateSkillRequest, GetAgentRequest, GetSkillRequest, ListAgentsRequest, ListSkillsRequest, QueryAgentRequest,
    Skill, get_agent_request,
};
use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
use getlood_proto::desktop_state::v1::{
    CreateDesktopRequest, GetDesktopRequest, ListDesktopsRequest, OpenWindowRequest,
};
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_client::EventDispatcherServiceClient;
use getlood_proto::event_dispatcher::v1::{SubscribeRequest, subscribe_response};
use getlood_proto::gateway::v1::WhoAmIResponse;
use getlood_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use getlood_proto::workflow::v1::{
    ApproveNodeRequest, CreateWorkflowRequest, Edge, ExecuteWorkflowRequest, GetRunRequest, Graph,
    ListWorkflowsRequest, Node, RunStatus, WatchRunRequest, watch_run_response,
};
use getlood_testkit::{Platform, Service};
use prost::Message as _;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tonic::Code;
use tonic::transport::Channel;

use crate::desktop_ws::{Realtime, recv, unique_tenant};

/// The services the edge serves, as reflection must list them.
const SERVED: &[&str] = &[
    "getlood.gateway.v1.GatewayService",
    "getlood.agent_registry.v1.AgentRegistryService",
    "getlood.desktop_state.v1.DesktopStateService",
    "getlood.workflow.v1.WorkflowService",
    "getlood.event_dispatcher.v1.EventDispatcherService",
];

fn authed<T>(token: &str, msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn code<T>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// Every service the edge forwards to, and the gateway (memory ingestion off: no MindsDB).
async fn edge_platform() -> anyhow::Result<Platform> {
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::DesktopState)
        .service(Service::Workflow)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(60)).await?;
    Ok(platform)
}

fn text(value: &str) -> prost_types::Value {
    prost_types::Value { kind: Some(prost_types::value::Kind::StringValue(value.to_owned())) }
}

/// start -> gate (human_approval) -approved-> end.
fn approval_graph() -> Graph {
    let node = |id: &str, kind: &str, data: Vec<(&str, prost_types::Value)>| Node {
        id: id.to_owned(),
        r#type: kind.to_owned(),
        data: Some(prost_types::Struct { fields: data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect() }),
        position: None,
    };
    let edge = |id: &str, source: &str, target: &str, handle: &str| Edge {
        id: id.to_owned(),
        source: source.to_owned(),
        target: target.to_owned(),
        source_handle: handle.to_owned(),
        target_handle: String::new(),
    };
    Graph {
        nodes: vec![
            node("start", "start", vec![]),
            node("gate", "human_approval", vec![("message", text("go?"))]),
            node("end", "end", vec![]),
        ],
        edges: vec![edge("e1", "start", "gate", ""), edge("e2", "gate", "end", "approved")],
        editor_state: None,
    }
}

#[tokio::test]
async fn every_public_service_is_served_at_the_edge_authenticated_and_tenant_scoped() -> anyhow::Result<()> {
    let mut platform = edge_platform().await?;
    let edge = platform.grpc_channel(Service::Gateway);
    let (a, b) = (unique_tenant("edgea"), unique_tenant("edgeb"));
    let member = platform.token(&a, "alice", &["member"]);
    let viewer = platform.token(&a, "vera", &["viewer"]);
    let builder = platform.token(&a, "bianca", &["builder"]);
    let operator = platform.token(&a, "otto", &["operator"]);
    let approver = platform.token(&a, "olga", &["operator"]);
    let other = platform.token(&b, "mallory", &["admin"]);
    let mut desktops = DesktopStateServiceClient::new(edge.clone());
    let mut registry = AgentRegistryServiceClient::new(edge.clone());
    let mut workflows = WorkflowServiceClient::new(edge.clone());
    let mut events = EventDispatcherServiceClient::new(edge.clone());

    // No token: refused at the edge for every service.
    assert_eq!(code(desktops.list_desktops(ListDesktopsRequest::default()).await), Code::Unauthenticated);
    assert_eq!(code(registry.list_skills(ListSkillsRequest::default()).await), Code::Unauthenticated);
    assert_eq!(code(workflows.list_workflows(ListWorkflowsRequest::default()).await), Code::Unauthenticated);
    let subscribe = SubscribeRequest { topics: vec!["workflow".into()], ..SubscribeRequest::default() };
    assert_eq!(code(events.subscribe(subscribe.clone()).await), Code::Unauthenticated);
    let err = desktops.list_desktops(authed("not.a.token", ListDesktopsRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    // Desktops: a member writes, a viewer reads but may not write, tenant B sees nothing.
    let desktop = desktops
        .create_desktop(authed(&member, CreateDesktopRequest { name: "main".into(), ..Default::default() }))
        .await?
        .into_inner()
        .desktop
        .unwrap();
    let err = desktops
        .create_desktop(authed(&viewer, CreateDesktopRequest { name: "nope".into(), ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(err.message(), "desktops.write needs role admin, builder, operator or member");
    let get = |id: &str| GetDesktopRequest { desktop_id: id.to_owned() };
    assert_eq!(
        desktops.get_desktop(authed(&member, get(&desktop.id))).await?.into_inner().desktop.unwrap().id,
        desktop.id
    );
    let err = desktops.get_desktop(authed(&other, get(&desktop.id))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "tenant B reads tenant A's desktop: {err:?}");
    assert!(
        desktops.list_desktops(authed(&other, ListDesktopsRequest::default())).await?.into_inner().desktops.is_empty()
    );

    // Errors keep the service's code and message: the same bad request, direct and at the edge.
    let bad = || CreateDesktopRequest { name: String::new(), ..Default::default() };
    let direct = DesktopStateServiceClient::new(platform.grpc_channel(Service::DesktopState))
        .create_desktop(authed(&member, bad()))
        .await
        .unwrap_err();
    let at_edge = desktops.create_desktop(authed(&member, bad())).await.unwrap_err();
    assert_eq!((at_edge.code(), at_edge.message()), (direct.code(), direct.message()));
    assert_eq!(at_edge.code(), Code::InvalidArgument);

    // Subscribe through the edge: a window opened after it starts is delivered; tenant B may
    // not subscribe to A's desktop.
    let window_topics = SubscribeRequest {
        topics: vec!["window".into()],
        entity_id: desktop.id.clone(),
        heartbeat_interval_ms: 500,
        ..SubscribeRequest::default()
    };
    let mut stream = events.subscribe(authed(&member, window_topics.clone())).await?.into_inner();
    let err = match events.subscribe(authed(&other, window_topics)).await {
        Ok(resp) => resp.into_inner().message().await.unwrap_err(),
        Err(status) => status,
    };
    assert_eq!(err.code(), Code::NotFound, "tenant B subscribed to A's desktop: {err:?}");
    desktops
        .open_window(authed(
            &member,
            OpenWindowRequest {
                desktop_id: desktop.id.clone(),
                app_id: "notes".into(),
                title: "notes".into(),
                ..Default::default()
            },
        ))
        .await?;
    let delivered = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(item) = stream.message().await? {
            if let Some(subscribe_response::Item::Event(d)) = item.item {
                return anyhow::Ok(d);
            }
        }
        anyhow::bail!("the subscription ended without an event")
    })
    .await??;
    let envelope = delivered.envelope.unwrap();
    assert_eq!(envelope.r#type, "window.opened");
    assert_eq!(envelope.tenant_id, a);
    drop(stream);

    // Skills and agents: a builder writes, tenant B cannot read; QueryAgent is not public.
    let skill = Skill { name: "edge-skill".into(), description: "edge".into(), ..Default::default() };
    registry.create_skill(authed(&builder, CreateSkillRequest { skill: Some(skill.clone()) })).await?;
    let err = registry.create_skill(authed(&member, CreateSkillRequest { skill: Some(skill) })).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let skill_name = GetSkillRequest { name: "edge-skill".into() };
    assert_eq!(
        registry.get_skill(authed(&viewer, skill_name.clone())).await?.into_inner().skill.unwrap().name,
        "edge-skill"
    );
    assert_eq!(code(registry.get_skill(authed(&other, skill_name)).await), Code::NotFound);
    assert!(registry.list_agents(authed(&viewer, ListAgentsRequest::default())).await?.into_inner().agents.is_empty());
    let by_name = GetAgentRequest { selector: Some(get_agent_request::Selector::Name("nobody".into())) };
    assert_eq!(code(registry.get_agent(authed(&viewer, by_name)).await), Code::NotFound);
    let err = registry.query_agent(authed(&member, QueryAgentRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("ChatCompletion"), "{err:?}");

    // Workflows: create (builder), execute (operator), WatchRun streams until approval, another
    // operator approves, the stream delivers the end; tenant B cannot read or watch the run.
    let wf = workflows
        .create_workflow(authed(
            &builder,
            CreateWorkflowRequest { name: "gated".into(), graph: Some(approval_graph()), ..Default::default() },
        ))
        .await?
        .into_inner()
        .workflow
        .unwrap();
    let execute = || ExecuteWorkflowRequest { workflow_id: wf.id.clone(), ..Default::default() };
    let err = workflows.execute_workflow(authed(&viewer, execute())).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "a viewer started a run: {err:?}");
    let run = workflows.execute_workflow(authed(&operator, execute())).await?.into_inner().run.unwrap();
    let watch = WatchRunRequest { run_id: run.id.clone(), from_sequence: 0 };
    let mut watched = workflows.watch_run(authed(&viewer, watch.clone())).await?.into_inner();
    let first = watched.message().await?.expect("a snapshot");
    assert!(matches!(first.event, Some(watch_run_response::Event::Snapshot(_))), "{first:?}");
    let err = match workflows.watch_run(authed(&other, watch)).await {
        Ok(resp) => resp.into_inner().message().await.unwrap_err(),
        Err(status) => status,
    };
    assert_eq!(err.code(), Code::NotFound, "tenant B watched A's run: {err:?}");
    let get_run = || GetRunRequest { run_id: run.id.clone(), ..Default::default() };
    assert_eq!(code(workflows.get_run(authed(&other, get_run())).await), Code::NotFound);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = workflows.get_run(authed(&viewer, get_run())).await?.into_inner().run.unwrap().status();
        if status == RunStatus::WaitingApproval {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the run never waited: {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let approve =
        ApproveNodeRequest { run_id: run.id.clone(), node_id: "gate".into(), approved: true, comment: "ok".into() };
    assert_eq!(code(workflows.approve_node(authed(&member, approve.clone())).await), Code::PermissionDenied);
    workflows.approve_node(authed(&approver, approve)).await?;
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(item) = watched.message().await? {
            if let Some(watch_run_response::Event::RunUpdated(r)) = item.event
                && r.status() == RunStatus::Succeeded
            {
                return anyhow::Ok(());
            }
        }
        anyhow::bail!("the watch ended before the run succeeded")
    })
    .await??;

    // Reflection describes exactly the served services (plus health and itself).
    let mut listed = reflected_services(edge.clone()).await?;
    listed.sort();
    let mut expected: Vec<String> = SERVED.iter().map(|s| (*s).to_owned()).collect();
    expected.extend(["grpc.health.v1.Health".to_owned(), "grpc.reflection.v1.ServerReflection".to_owned()]);
    expected.sort();
    assert_eq!(listed, expected);
    // Health reports each of them.
    let mut health = tonic_health::pb::health_client::HealthClient::new(edge.clone());
    for service in SERVED {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: (*service).to_owned() })
            .await?
            .into_inner()
            .status();
        assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving, "{service}");
    }

    // A service that is down: UNAVAILABLE with the gateway's message, no host or port.
    platform.stop_service(Service::Workflow).await?;
    let err = workflows.list_workflows(authed(&viewer, ListWorkflowsRequest::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(err.message(), "the workflow service is unavailable, retry shortly");
    platform.stop().await
}

/// The service names the gateway's reflection lists.
async fn reflected_services(channel: Channel) -> anyhow::Result<Vec<String>> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut client = ServerReflectionClient::new(channel);
    let mut answers = client.server_reflection_info(futures::stream::iter([request])).await?.into_inner();
    let answer = answers.message().await?.ok_or_else(|| anyhow::anyhow!("no reflection answer"))?;
    match answer.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => Ok(list.service.into_iter().map(|s| s.name).collect()),
        other => anyhow::bail!("unexpected reflection answer: {other:?}"),
    }
}

/// Role sets each method is tried with: each role, the `user` alias, an unknown role and none.
const ROLE_SETS: &[&[&str]] =
    &[&["admin"], &["builder"], &["operator"], &["member"], &["user"], &["viewer"], &["superuser"], &[]];

/// Calls `/{service}/{method}` with an empty message (every proto3 request's default) and
/// returns the status code: the call's own, or the first item's for a stream.
async fn raw_call(channel: Channel, token: &str, service: &str, method: &str) -> anyhow::Result<Code> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await?;
    let path = tonic::codegen::http::uri::PathAndQuery::from_str(&format!("/{service}/{method}"))?;
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = grpc.server_streaming(authed(token, ()), path, codec).await;
    Ok(match result {
        Ok(resp) => {
            let mut stream = resp.into_inner();
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(Err(status)) => status.code(),
                _ => Code::Ok,
            }
        }
        Err(status) => status.code(),
    })
}

#[tokio::test]
async fn every_edge_method_answers_permission_denied_exactly_when_its_table_says_so() -> anyhow::Result<()> {
    let platform = edge_platform().await?;
    let edge = platform.grpc_channel(Service::Gateway);
    let tenant = unique_tenant("edgeperm");
    let tables = getlood_gateway::grpc_permissions();
    assert_eq!(tables.iter().map(|(s, _)| *s).collect::<Vec<_>>(), SERVED);
    let mut failures = Vec::new();
    let mut calls = 0;
    for (i, roles) in ROLE_SETS.iter().enumerate() {
        // One user per role set, so the write budgets of one never starve another.
        let token = platform.token(&tenant, &format!("user{i}"), roles);
        for (service, methods) in tables {
            for (method, permission) in *methods {
                let code = raw_call(edge.clone(), &token, service, method).await?;
                calls += 1;
                let allowed = getlood_auth::allows(roles, *permission);
                let denied = code == Code::PermissionDenied;
                // An empty message is bad input or unknown, never a server failure.
                let failed = matches!(code, Code::Internal | Code::Unknown | Code::Unauthenticated);
                // ChatCompletion with no messages, the pipeline absent: also fine as UNAVAILABLE.
                if allowed == denied || failed {
                    failures.push(format!("{roles:?} {service}/{method} ({permission}): {code:?}"));
                }
            }
        }
    }
    assert!(calls > 400, "the tables lost methods: {calls} calls");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    platform.stop().await
}

/// A gRPC-Web frame of `message` (flag 0, big-endian length).
fn grpc_web_frame(message: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// The data frames and the trailer text of a gRPC-Web response body.
fn grpc_web_frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut data, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = body[5..5 + len].to_vec();
        if body[0] & 0x80 == 0 {
            data.push(payload);
        } else {
            trailers = String::from_utf8_lossy(&payload).into_owned();
        }
        body = &body[5 + len..];
    }
    (data, trailers)
}

#[tokio::test]
async fn browsers_get_grpc_web_cors_and_the_events_socket() -> anyhow::Result<()> {
    const ORIGIN: &str = "http://localhost:5173";
    let rt = Realtime::start(json!({"cors_allowed_origins": [ORIGIN]})).await?;
    let http = reqwest::Client::builder().http1_only().timeout(Duration::from_secs(20)).build()?;
    let tenant = unique_tenant("web");
    let token = rt.token(&tenant, "alice");

    // Preflight from an allowed origin: answered before authentication.
    let preflight = |url: String, origin: &'static str, headers: &'static str| {
        http.request(reqwest::Method::OPTIONS, url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", headers)
            .send()
    };
    let resp = preflight(format!("{}/api/v1/agents", rt.base), ORIGIN, "authorization,content-type").await?;
    assert!(matches!(resp.status().as_u16(), 200 | 204), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let allowed_headers = h["access-control-allow-headers"].to_str()?.to_owned();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"), "{allowed_headers}");
    assert!(h["access-control-allow-methods"].to_str()?.contains("DELETE"));
    // From a disallowed origin: no allow-origin, so the browser refuses.
    let resp = preflight(format!("{}/api/v1/agents", rt.base), "https://evil.example", "authorization").await?;
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());
    // gRPC-Web's preflight too.
    let url = format!("{}/getlood.gateway.v1.GatewayService/WhoAmI", rt.base);
    let web_headers = "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout";
    let resp = preflight(url.clone(), ORIGIN, web_headers).await?;
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
    let resp = preflight(url, "https://evil.example", web_headers).await?;
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());
    // GraphQL's too: allowed from the origin, refused from another.
    let resp = preflight(format!("{}/graphql", rt.base), ORIGIN, "authorization,content-type").await?;
    assert!(matches!(resp.status().as_u16(), 200 | 204), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
    let resp = preflight(format!("{}/graphql", rt.base), "https://evil.example", "authorization,content-type").await?;
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());

    // A real request from the allowed origin exposes the headers a script needs.
    let resp = http.get(format!("{}/api/v1/me", rt.base)).bearer_auth(&token).header("origin", ORIGIN).send().await?;
    assert_eq!(resp.status(), 200);
    let exposed = resp.headers()["access-control-expose-headers"].to_str()?.to_owned();
    for name in ["etag", "retry-after", "x-request-id", "x-ratelimit-limit", "x-ratelimit-remaining", "grpc-status"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }

    // gRPC-Web over HTTP/1.1: the gateway's own WhoAmI and a forwarded DesktopState call.
    let web = |path: &str, token: Option<&str>, message: Vec<u8>| {
        let mut req = http
            .post(format!("{}/{path}", rt.base))
            .header("content-type", "application/grpc-web+proto")
            .header("x-grpc-web", "1")
            .header("origin", ORIGIN)
            .body(grpc_web_frame(&message));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    let resp = web("getlood.gateway.v1.GatewayService/WhoAmI", Some(&token), Vec::new()).await?;
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], ORIGIN);
    let (data, trailers) = grpc_web_frames(&resp.bytes().await?);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let me = WhoAmIResponse::decode(data[0].as_slice())?;
    assert_eq!((me.tenant_id.as_str(), me.user_id.as_str()), (tenant.as_str(), "alice"));
    let create = CreateDesktopRequest { name: "web".into(), ..Default::default() }.encode_to_vec();
    let resp = web("getlood.desktop_state.v1.DesktopStateService/CreateDesktop", Some(&token), create).await?;
    let (data, trailers) = grpc_web_frames(&resp.bytes().await?);
    assert!(trailers.contains("grpc-status:0"), "{trailers}");
    let created = getlood_proto::desktop_state::v1::CreateDesktopResponse::decode(data[0].as_slice())?;
    let desktop_id = created.desktop.unwrap().id;
    // No token: UNAUTHENTICATED (16), in the headers of a trailers-only answer.
    let resp = web("getlood.gateway.v1.GatewayService/WhoAmI", None, Vec::new()).await?;
    assert_eq!(resp.headers()["grpc-status"], "16");

    // `/ws/events`: a plain path for the events socket; a plain GET is told to upgrade.
    let url = format!("{}/ws/events?topics=window&entity_id={desktop_id}", rt.ws_base);
    let mut req = url.as_str().into_client_request()?;
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await?;
    rt.open_window(&token, &desktop_id, "calc").await?;
    let frame = recv(&mut socket, Duration::from_secs(15)).await.expect("an event frame");
    assert_eq!(frame["type"], "event", "{frame}");
    assert_eq!(frame["event"]["type"], "window.opened", "{frame}");
    let resp = http
        .get(format!("{}/ws/events?topics=window&entity_id={desktop_id}", rt.base))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await?;
    assert!(body["message"].as_str().unwrap_or_default().contains("/api/v1/events"), "{body}");
    let resp = http.get(format!("{}/ws/events?topics=window", rt.base)).send().await?;
    assert_eq!(resp.status(), 401);
    drop(socket);
    rt.stop().await
}

/// With no origin configured (the default) there is no CORS: a preflight carries no
/// allow-origin, whatever the origin.
#[tokio::test]
async fn without_configured_origins_there_is_no_cors() -> anyhow::Result<()> {
    let rt = Realtime::start(json!({})).await?;
    let resp = rt
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/api/v1/agents", rt.base))
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "GET")
        .send()
        .await?;
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());
    rt.stop().await
}
