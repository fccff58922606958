//! The audit log (issue 13) through the real gateway, event dispatcher and JetStream: a
//! mutation and a refused request land in the tenant's log (`GET /api/v1/audit`, admins only)
//! and in no other tenant's; a request with a bad token is recorded under the reserved
//! `_unauthenticated` subject, which no tenant's list shows; filters and paging.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use futures::StreamExt as _;
use getlood_events::{Domain, EventBus, EventEnvelope, Payload};
use prost::Message as _;
use serde_json::{Value, json};

use crate::desktop_ws::{Realtime, unique_tenant};

/// `GET /api/v1/audit?<query>` as `token`: the status and body.
async fn list(rt: &Realtime, token: &str, query: &str) -> anyhow::Result<(u16, Value)> {
    let resp = rt.http.get(format!("{}/api/v1/audit?{query}", rt.base)).bearer_auth(token).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

/// The events of one unfiltered page as `token`, polled until `done` holds (the gateway
/// publishes after answering) or 15 s pass.
async fn wait_events(rt: &Realtime, token: &str, done: impl Fn(&[Value]) -> bool) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = list(rt, token, "page_size=500").await?;
        anyhow::ensure!(status == 200, "audit list: {status} {body}");
        let events = body["events"].as_array().cloned().unwrap_or_default();
        if done(&events) || Instant::now() > deadline {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A request with its own `x-request-id`, so its audit event can be found.
async fn send(
    rt: &Realtime,
    method: reqwest::Method,
    path: &str,
    token: &str,
    request_id: &str,
    body: Option<Value>,
) -> anyhow::Result<u16> {
    let mut req =
        rt.http.request(method, format!("{}{path}", rt.base)).bearer_auth(token).header("x-request-id", request_id);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    anyhow::ensure!(resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()) == Some(request_id));
    Ok(resp.status().as_u16())
}

fn by_request<'a>(events: &'a [Value], request_id: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["request_id"] == request_id)
}

async fn bus() -> anyhow::Result<EventBus> {
    let bus = EventBus::new(async_nats::connect(getlood_testkit::nats_url()).await?, "getlood");
    bus.ensure_streams().await?;
    Ok(bus)
}

/// The audit events of unauthenticated requests stored after the stream sequence `after`, read
/// straight from JetStream (no API serves them).
async fn unauthenticated_events(bus: &EventBus, after: u64) -> anyhow::Result<Vec<EventEnvelope>> {
    let stream = bus.jetstream().get_stream("GETLOOD_AUDIT").await?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: "getlood._unauthenticated.audit.>".to_owned(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: after + 1 },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(2), messages.next()).await {
        out.push(EventEnvelope::decode(msg?.payload.clone())?);
    }
    Ok(out)
}

#[tokio::test]
async fn mutations_and_refusals_are_audited_per_tenant_for_admins_only() -> anyhow::Result<()> {
    let rt = Realtime::start(json!({})).await?;
    let bus = bus().await?;
    let started = bus.last_sequence(Domain::Audit).await?;
    let (tenant_a, tenant_b) = (unique_tenant("audit_a"), unique_tenant("audit_b"));
    let alice = rt.platform.token(&tenant_a, "alice", &["member"]);
    let victor = rt.platform.token(&tenant_a, "victor", &["viewer"]);
    let admin_a = rt.platform.token(&tenant_a, "root", &["admin"]);
    let admin_b = rt.platform.token(&tenant_b, "root", &["admin"]);
    let tag = unique_tenant("req");
    let (create_id, denied_id, member_id, bad_id) =
        (format!("{tag}-create"), format!("{tag}-denied"), format!("{tag}-member"), format!("{tag}-bad"));

    // A mutation, a role refusal, a member asking for the log, a bad token.
    let desktop = Some(json!({"name": "audited"}));
    assert_eq!(send(&rt, reqwest::Method::POST, "/api/v1/desktops", &alice, &create_id, desktop.clone()).await?, 201);
    assert_eq!(send(&rt, reqwest::Method::POST, "/api/v1/desktops", &victor, &denied_id, desktop.clone()).await?, 403);
    assert_eq!(send(&rt, reqwest::Method::GET, "/api/v1/audit", &alice, &member_id, None).await?, 403);
    let bad = format!("{alice}x");
    assert_eq!(send(&rt, reqwest::Method::POST, "/api/v1/desktops", &bad, &bad_id, desktop).await?, 401);

    let events = wait_events(&rt, &admin_a, |e| {
        [&create_id, &denied_id, &member_id].iter().all(|id| by_request(e, id).is_some())
    })
    .await?;
    let created = by_request(&events, &create_id).ok_or_else(|| anyhow::anyhow!("no create event: {events:?}"))?;
    assert_eq!(created["tenant"], tenant_a.as_str());
    assert_eq!(created["user"], "alice");
    assert_eq!(created["action"], "desktops.create");
    assert_eq!(created["route"], "POST /api/v1/desktops");
    assert_eq!(created["outcome"], "allowed");
    assert_eq!(created["status"], 201);
    assert!(created["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{created}");
    let denied = by_request(&events, &denied_id).ok_or_else(|| anyhow::anyhow!("no 403 event: {events:?}"))?;
    assert_eq!(
        (denied["user"].as_str(), denied["outcome"].as_str(), denied["status"].as_i64()),
        (Some("victor"), Some("denied"), Some(403))
    );
    assert_eq!(denied["reason"], "needs desktops.write");
    let member = by_request(&events, &member_id).ok_or_else(|| anyhow::anyhow!("no audit.read 403: {events:?}"))?;
    assert_eq!((member["action"].as_str(), member["status"].as_i64()), (Some("audit.read"), Some(403)));
    assert!(by_request(&events, &bad_id).is_none(), "an unverified request is in a tenant's log");
    assert_eq!(events.len(), 3, "{events:?}");

    // Tenant B sees none of it; the 401 is stored only under the reserved subject.
    let (status, body) = list(&rt, &admin_b, "").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"], json!([]), "tenant B sees tenant A's log");
    let unauthenticated = unauthenticated_events(&bus, started).await?;
    let refused = unauthenticated
        .iter()
        .find(|e| e.request_id == bad_id)
        .ok_or_else(|| anyhow::anyhow!("the 401 is not under _unauthenticated ({} events)", unauthenticated.len()))?;
    assert_eq!((refused.tenant_id.as_str(), refused.actor.as_str()), ("", ""));
    let Some(Payload::Audit(audit)) = refused.payload.as_ref() else { anyhow::bail!("not an audit payload") };
    assert_eq!((audit.http_status, audit.action.as_str()), (401, "desktops.create"));
    assert!(!audit.reason.is_empty());

    // Filters.
    let count = |body: &Value| body["events"].as_array().map_or(0, Vec::len);
    let (_, body) = list(&rt, &admin_a, "action=desktops.create").await?;
    assert_eq!(count(&body), 2, "{body}");
    let (_, body) = list(&rt, &admin_a, "outcome=denied").await?;
    assert_eq!(count(&body), 2, "{body}");
    let (_, body) = list(&rt, &admin_a, "user=alice&outcome=allowed").await?;
    assert_eq!(count(&body), 1, "{body}");
    let (_, body) = list(&rt, &admin_a, "since=2999-01-01T00:00:00Z").await?;
    assert_eq!(count(&body), 0, "{body}");
    let (_, body) = list(&rt, &admin_a, "until=2020-01-01T00:00:00Z").await?;
    assert_eq!(count(&body), 0, "{body}");
    let (status, body) = list(&rt, &admin_a, "outcome=maybe").await?;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_argument")), "{body}");

    // Paging: one event a page, in order, the same three as the whole list.
    let mut paged = Vec::new();
    let mut token = String::new();
    for _ in 0..10 {
        let (status, body) = list(&rt, &admin_a, &format!("page_size=1&page_token={token}")).await?;
        assert_eq!(status, 200, "{body}");
        assert!(count(&body) <= 1, "{body}");
        paged.extend(body["events"].as_array().cloned().unwrap_or_default());
        token = body["next_page_token"].as_str().unwrap_or_default().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert!(token.is_empty(), "paging did not end");
    let ids = |e: &[Value]| e.iter().map(|v| v["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&paged), ids(&events));
    let (status, _) = list(&rt, &admin_a, "page_token=garbage").await?;
    assert_eq!(status, 400);
    Ok(())
}

/// The gateway's gRPC port is audited like REST: a write and a role refusal are in the tenant's
/// log with the gRPC method as action and the request id the client sent; a read is not.
#[tokio::test]
async fn grpc_writes_and_refusals_at_the_edge_are_audited() -> anyhow::Result<()> {
    use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
    use getlood_proto::desktop_state::v1::{CreateDesktopRequest, ListDesktopsRequest};

    let rt = Realtime::start(json!({})).await?;
    let tenant = unique_tenant("audit_grpc");
    let (alice, victor) =
        (rt.platform.token(&tenant, "alice", &["member"]), rt.platform.token(&tenant, "victor", &["viewer"]));
    let admin = rt.platform.token(&tenant, "root", &["admin"]);
    let tag = unique_tenant("grpc");
    let mut client = DesktopStateServiceClient::new(rt.platform.grpc_channel(getlood_testkit::Service::Gateway));
    let request = |token: &str, id: &str, msg| {
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("metadata"));
        req.metadata_mut().insert("x-request-id", id.parse().expect("metadata"));
        req
    };
    let create = || CreateDesktopRequest { name: "audited".into(), ..Default::default() };
    let (created_id, denied_id, read_id) = (format!("{tag}-c"), format!("{tag}-d"), format!("{tag}-r"));
    client.create_desktop(request(&alice, &created_id, create())).await?;
    let err = client.create_desktop(request(&victor, &denied_id, create())).await.expect_err("a viewer writes");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut read = tonic::Request::new(ListDesktopsRequest::default());
    read.metadata_mut().insert("authorization", format!("Bearer {alice}").parse()?);
    read.metadata_mut().insert("x-request-id", read_id.parse()?);
    client.list_desktops(read).await?;

    let events =
        wait_events(&rt, &admin, |e| by_request(e, &created_id).is_some() && by_request(e, &denied_id).is_some())
            .await?;
    let created = by_request(&events, &created_id).ok_or_else(|| anyhow::anyhow!("no grpc create: {events:?}"))?;
    assert_eq!(created["action"], "grpc.DesktopStateService.CreateDesktop");
    assert_eq!(created["route"], "POST /getlood.desktop_state.v1.DesktopStateService/CreateDesktop");
    assert_eq!((created["user"].as_str(), created["outcome"].as_str()), (Some("alice"), Some("allowed")));
    assert_eq!(created["status"], 200);
    let denied = by_request(&events, &denied_id).ok_or_else(|| anyhow::anyhow!("no grpc refusal: {events:?}"))?;
    assert_eq!((denied["user"].as_str(), denied["outcome"].as_str()), (Some("victor"), Some("denied")));
    assert_eq!(denied["status"], 403);
    assert!(denied["reason"].as_str().is_some_and(|r| r.contains("desktops.write")), "{denied}");
    assert!(by_request(&events, &read_id).is_none(), "a read is in the log");
    Ok(())
}
