//! The event dispatcher: `Subscribe` (tenant from the token, topic and entity filters, resume,
//! live), SSE `/api/v1/events` resume through the gateway, and knowledge-base memory
//! (`turn.completed` ingestion, `Search`) against the real MindsDB with the OpenAI double's
//! deterministic embeddings.

use std::time::Duration;

use futures::StreamExt as _;
use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, Payload, new_envelope};
use getlood_mindsdb::{
    Document, EmbeddingSettings, Ident, KnowledgeBaseAdapter, KnowledgeBaseSpec, MindsdbClient, MindsdbConfig,
    ProjectAdapter, TenantContext,
};
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_client::EventDispatcherServiceClient;
use getlood_proto::event_dispatcher::v1::{
    DeliverPolicy, Delivery, SearchRequest, SubscribeRequest, SubscribeResponse, subscribe_response,
};
use getlood_proto::events::v1::{NodeCompleted, TurnCompleted};
use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

use crate::desktop_ws::{Realtime, unique_tenant};

type Dispatcher = EventDispatcherServiceClient<Channel>;

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn bus() -> anyhow::Result<EventBus> {
    let bus = EventBus::new(async_nats::connect(getlood_testkit::nats_url()).await?, "getlood");
    bus.ensure_streams().await?;
    Ok(bus)
}

async fn publish_node(bus: &EventBus, tenant: &str, run: &str, node: &str) -> anyhow::Result<u64> {
    let tenant = TenantId::parse(tenant).map_err(anyhow::Error::msg)?;
    let payload = Payload::NodeCompleted(NodeCompleted {
        run_id: run.into(),
        node_id: node.into(),
        duration_ms: 12,
        ..Default::default()
    });
    Ok(bus.publish(Domain::Workflow, &new_envelope(&tenant, "system", run, "node.completed", payload)).await?)
}

/// Items received within `window` (heartbeats included).
async fn drain(stream: &mut Streaming<SubscribeResponse>, window: Duration) -> Vec<subscribe_response::Item> {
    let mut items = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Ok(Some(resp))) = tokio::time::timeout_at(deadline, stream.message()).await {
        if let Some(item) = resp.item {
            items.push(item);
        }
    }
    items
}

fn deliveries(items: &[subscribe_response::Item]) -> Vec<&Delivery> {
    items.iter().filter_map(|i| if let subscribe_response::Item::Event(d) = i { Some(d) } else { None }).collect()
}

fn nodes(items: &[subscribe_response::Item]) -> Vec<String> {
    deliveries(items)
        .iter()
        .filter_map(|d| match d.envelope.as_ref()?.payload.as_ref()? {
            Payload::NodeCompleted(n) => Some(n.node_id.clone()),
            _ => None,
        })
        .collect()
}

async fn subscribe(
    client: &mut Dispatcher,
    token: &str,
    req: SubscribeRequest,
) -> Result<Streaming<SubscribeResponse>, tonic::Status> {
    Ok(client.subscribe(authed(token, req)).await?.into_inner())
}

#[tokio::test]
async fn events_subscribe_filters_by_tenant_topic_and_entity_and_resumes() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::EventDispatcher)
        .app_settings(Service::EventDispatcher, json!({"memory": {"enabled": false}}))
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let mut client = EventDispatcherServiceClient::new(platform.grpc_channel(Service::EventDispatcher));
    let (acme, globex) = (unique_tenant("acme"), unique_tenant("globex"));
    let token = platform.token(&acme, "alice", &["member"]);
    let bus = bus().await?;

    publish_node(&bus, &acme, "r1", "start").await?;
    publish_node(&bus, &acme, "r2", "other-run").await?;
    // Same run id in another tenant: never delivered to acme.
    publish_node(&bus, &globex, "r1", "foreign").await?;
    let second_seq = publish_node(&bus, &acme, "r1", "analyze").await?;

    let all = |cursor: &str, start_sequence: u64| SubscribeRequest {
        topics: vec!["workflow.node.*".into()],
        entity_id: "r1".into(),
        deliver_policy: if cursor.is_empty() && start_sequence == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::Resume
        } as i32,
        resume_cursor: cursor.to_owned(),
        start_sequence,
        heartbeat_interval_ms: 200,
        ..Default::default()
    };
    let mut stream = subscribe(&mut client, &token, all("", 0)).await?;
    let first = stream.message().await?.and_then(|r| r.item);
    assert!(matches!(first, Some(subscribe_response::Item::Heartbeat(_))), "the first item says where it starts");
    let items = drain(&mut stream, Duration::from_millis(800)).await;
    assert_eq!(nodes(&items), ["start", "analyze"], "only acme's r1 nodes, in order");
    let delivered = deliveries(&items);
    assert!(delivered.iter().all(|d| d.envelope.as_ref().unwrap().tenant_id == acme));
    assert!(delivered.iter().all(|d| d.stream == "GETLOOD_WORKFLOW"));
    assert_eq!(delivered[1].sequence, second_seq);
    assert!(items.iter().any(|i| matches!(i, subscribe_response::Item::Heartbeat(_))), "heartbeats while idle");
    let first_cursor = delivered[0].cursor.clone();

    // Live after catch-up.
    publish_node(&bus, &acme, "r1", "report").await?;
    let live = drain(&mut stream, Duration::from_millis(800)).await;
    assert_eq!(nodes(&live), ["report"]);
    drop(stream);

    // Resume from a cursor: what came after it, once.
    let mut resumed = subscribe(&mut client, &token, all(&first_cursor, 0)).await?;
    assert_eq!(nodes(&drain(&mut resumed, Duration::from_millis(800)).await), ["analyze", "report"]);
    // Or from a sequence (single-stream topics).
    let mut by_seq = subscribe(&mut client, &token, all("", second_seq)).await?;
    assert_eq!(nodes(&drain(&mut by_seq, Duration::from_millis(800)).await), ["analyze", "report"]);

    // Refusals.
    let member = token.clone();
    let cases: Vec<(SubscribeRequest, Code)> = vec![
        (SubscribeRequest::default(), Code::InvalidArgument),
        (SubscribeRequest { topics: vec!["bogus".into()], ..Default::default() }, Code::InvalidArgument),
        (SubscribeRequest { topics: vec!["audit".into()], ..Default::default() }, Code::PermissionDenied),
        (SubscribeRequest { topics: vec!["window".into()], ..Default::default() }, Code::PermissionDenied),
        (
            SubscribeRequest {
                topics: vec!["workflow".into()],
                deliver_policy: DeliverPolicy::Resume as i32,
                resume_cursor: "not-a-cursor".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            SubscribeRequest {
                topics: vec!["workflow".into(), "agent".into()],
                deliver_policy: DeliverPolicy::Resume as i32,
                start_sequence: 3,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ];
    for (req, code) in cases {
        let err =
            subscribe(&mut client, &member, req.clone()).await.err().unwrap_or_else(|| panic!("{req:?} accepted"));
        assert_eq!(err.code(), code, "{req:?}: {err}");
    }
    let unauthenticated =
        client.subscribe(SubscribeRequest { topics: vec!["workflow".into()], ..Default::default() }).await;
    assert_eq!(unauthenticated.err().map(|e| e.code()), Some(Code::Unauthenticated));
    platform.stop().await
}

/// One SSE event: `(id, event, data)`.
pub(crate) type SseEvent = (String, String, Value);

/// Reads SSE events until `count` arrived or `timeout` passed.
pub(crate) async fn read_sse(resp: reqwest::Response, count: usize, timeout: Duration) -> Vec<SseEvent> {
    let mut body = resp.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while events.len() < count {
        let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, body.next()).await else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (String::new(), String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !data.is_empty() {
                events.push((id, event, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    events
}

#[tokio::test]
async fn events_sse_resumes_with_last_event_id() -> anyhow::Result<()> {
    let rt = Realtime::start(json!({"sse_heartbeat_interval": "200ms"})).await?;
    let tenant = unique_tenant("sse");
    let token = rt.token(&tenant, "alice");
    let desktop = rt.create_desktop(&token, "main").await?;
    let url = format!("{}/api/v1/events?topics=window&entity_id={desktop}", rt.base);

    let resp = rt.http.get(&url).bearer_auth(&token).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let first = rt.open_window(&token, &desktop, "first").await?;
    let got = read_sse(resp, 1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let (last_id, kind, data) = &got[0];
    assert_eq!(kind, "window.opened");
    assert_eq!(data["data"]["window"]["id"], first["window"]["id"]);

    // Missed while disconnected.
    let second = rt.open_window(&token, &desktop, "second").await?;
    let third = rt.open_window(&token, &desktop, "third").await?;
    let resp = rt.http.get(&url).bearer_auth(&token).header("last-event-id", last_id.as_str()).send().await?;
    assert_eq!(resp.status(), 200);
    let got = read_sse(resp, 3, Duration::from_secs(3)).await;
    let ids: Vec<&Value> = got.iter().map(|(_, _, d)| &d["data"]["window"]["id"]).collect();
    assert_eq!(ids, [&second["window"]["id"], &third["window"]["id"]], "each missed event once, then nothing");
    assert!(got.iter().all(|(id, _, _)| id.starts_with("window:")));

    // Bad requests are plain HTTP errors.
    let resp = rt.http.get(format!("{}/api/v1/events", rt.base)).bearer_auth(&token).send().await?;
    assert_eq!(resp.status(), 400);
    let resp = rt.http.get(&url).bearer_auth(&token).header("last-event-id", "garbage").send().await?;
    assert_eq!(resp.status(), 400);
    let other = rt.token(&unique_tenant("other"), "mallory");
    let resp = rt.http.get(&url).bearer_auth(&other).send().await?;
    assert_eq!(resp.status(), 404, "another tenant's desktop");
    rt.stop().await
}

fn mindsdb() -> anyhow::Result<MindsdbClient> {
    let config = MindsdbConfig { url: getlood_testkit::mindsdb_url(), ..MindsdbConfig::default() };
    Ok(MindsdbClient::new(&config)?)
}

#[tokio::test]
async fn events_memory_ingests_turns_and_search_is_tenant_and_user_scoped() -> anyhow::Result<()> {
    let double = OpenAiDouble::start().await?;
    let (acme, globex) = (unique_tenant("mem"), unique_tenant("memx"));
    let platform = Platform::builder()
        .service(Service::EventDispatcher)
        .app_settings(
            Service::EventDispatcher,
            json!({"memory": {
                "embedding": {"provider": "openai", "model_name": "double-embed", "base_url": double.base_url(), "api_key": "sk-test"},
                // A private consumer that only sees this test's tenant.
                "consumer_name": format!("memtest_{acme}"),
                "filter_subject": format!("getlood.{acme}.turn.turn.completed"),
                "backoff": ["200ms"],
            }}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let mut client = EventDispatcherServiceClient::new(platform.grpc_channel(Service::EventDispatcher));
    let alice = platform.token(&acme, "alice", &["member"]);
    let bob = platform.token(&acme, "bob", &["member"]);
    let admin = platform.token(&acme, "root", &["admin"]);
    let mallory = platform.token(&globex, "mallory", &["admin"]);

    // The consumer binds in the background; give it a moment before the turn is published.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bus = bus().await?;
    let tenant = TenantId::parse(&acme).map_err(anyhow::Error::msg)?;
    let turn = TurnCompleted {
        turn_id: "0190aaaa-1111-7000-8000-000000000001".into(),
        conversation_id: "conv-1".into(),
        user_id: "alice".into(),
        user_message: "what is the capital of france".into(),
        answer: "paris is the capital of france".into(),
        ..Default::default()
    };
    let envelope = new_envelope(&tenant, "alice", "conv-1", "turn.completed", Payload::TurnCompleted(turn));
    bus.publish(Domain::Turn, &envelope).await?;

    let search = |query: &str| SearchRequest { query: query.into(), top_k: 3, ..Default::default() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let hits = loop {
        let hits = client.search(authed(&alice, search("capital of france"))).await?.into_inner().hits;
        if !hits.is_empty() {
            break hits;
        }
        assert!(tokio::time::Instant::now() < deadline, "the turn never became searchable");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(hits[0].id, "turn-0190aaaa-1111-7000-8000-000000000001");
    assert!(hits[0].content.contains("paris is the capital of france"), "{:?}", hits[0]);
    assert_eq!(hits[0].metadata["user_id"], "alice");
    assert_eq!(hits[0].metadata["conversation_id"], "conv-1");
    assert_eq!(hits[0].source_event_id, envelope.id);
    assert!(hits[0].score > 0.0 && hits[0].score <= 1.0);

    // Conversation memory is personal: another member sees none of it, an admin does.
    let bobs = client.search(authed(&bob, search("capital of france"))).await?.into_inner().hits;
    assert!(bobs.is_empty(), "{bobs:?}");
    let err =
        client.search(authed(&bob, SearchRequest { user_id: "alice".into(), ..search("capital") })).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let admins = client.search(authed(&admin, search("capital of france"))).await?.into_inner().hits;
    assert_eq!(admins.len(), 1);

    // Another tenant with its own memory never sees acme's.
    let mctx = TenantContext::new(TenantId::parse(&globex).map_err(anyhow::Error::msg)?, "mallory");
    let kbs = KnowledgeBaseAdapter::new(mindsdb()?);
    ProjectAdapter::new(mindsdb()?).ensure(&mctx).await?;
    let kb = Ident::new("getlood_memory")?;
    let spec = KnowledgeBaseSpec {
        name: kb.clone(),
        embedding: EmbeddingSettings {
            provider: "openai".into(),
            model_name: "double-embed".into(),
            api_key: Some(secrecy::SecretString::from("sk-test")),
            base_url: Some(double.base_url()),
        },
        metadata_columns: vec![Ident::new("user_id")?],
        chunk_size: None,
    };
    kbs.create(&mctx, &spec).await?;
    let doc = Document {
        id: "own-1".into(),
        content: "the capital of france is a secret of globex".into(),
        metadata: serde_json::Map::from_iter([("user_id".to_owned(), json!("mallory"))]),
    };
    kbs.insert(&mctx, &kb, &[doc]).await?;
    let theirs = client.search(authed(&mallory, search("capital of france"))).await?.into_inner().hits;
    assert_eq!(theirs.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["own-1"], "only globex's own memory");

    // Validation.
    for bad in
        [search(""), SearchRequest { top_k: 101, ..search("x") }, SearchRequest { min_score: 2.0, ..search("x") }]
    {
        let err = client.search(authed(&alice, bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    // Clean up what this test created in MindsDB and NATS.
    let actx = TenantContext::new(tenant, "alice");
    for ctx in [&actx, &mctx] {
        let _ = kbs.delete(ctx, &kb).await;
        let _ = ProjectAdapter::new(mindsdb()?).drop(ctx).await;
    }
    platform.stop().await?;
    let stream = bus.jetstream().get_stream(bus.stream_name(Domain::Turn)).await?;
    let _ = stream.delete_consumer(&format!("memtest_{acme}")).await;
    Ok(())
}
