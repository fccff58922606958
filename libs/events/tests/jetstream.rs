//! Publishing and reading envelopes on the real NATS JetStream server.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]

use std::time::Duration;

use getlood_common::TenantId;
use getlood_events::{Domain, EventBus, Payload, new_envelope};
use getlood_proto::events::v1::AgentCreated;

fn nats_url() -> String {
    std::env::var("GETLOOD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

#[tokio::test]
async fn publish_read_dedupe_and_tenant_filter() {
    let (client, bus, prefix) = private_bus().await.unwrap();
    bus.ensure_streams().await.unwrap(); // idempotent

    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let payload = |name: &str| Payload::AgentCreated(AgentCreated { agent_id: name.to_owned(), ..Default::default() });
    let first = new_envelope(&acme, "alice", "a1", "agent.created", payload("a1"));
    let seq1 = bus.publish(Domain::Agent, &first).await.unwrap();
    // A retried publish of the same envelope (same Nats-Msg-Id) is stored once.
    let seq_retry = bus.publish(Domain::Agent, &first).await.unwrap();
    assert_eq!(seq1, seq_retry);
    let seq2 =
        bus.publish(Domain::Agent, &new_envelope(&acme, "alice", "a2", "agent.created", payload("a2"))).await.unwrap();
    bus.publish(Domain::Agent, &new_envelope(&globex, "bob", "g1", "agent.created", payload("g1"))).await.unwrap();

    let events = bus.read(&acme, Domain::Agent, 0, 10, Duration::from_millis(500)).await.unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.envelope.entity_id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2"], "acme sees only its own events, once each");
    assert_eq!(events[0].envelope, first, "the envelope round-trips unchanged");
    assert_eq!(events[0].subject, format!("{prefix}.acme.agent.agent.created"));

    // Resume after the first sequence: only what came later.
    let resumed = bus.read(&acme, Domain::Agent, seq1, 10, Duration::from_millis(500)).await.unwrap();
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].sequence, seq2);

    delete_streams(&client, &bus).await.unwrap();
}

fn client_js(client: &async_nats::Client) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(client.clone())
}

/// A bus on the real NATS under a private prefix (its own streams, nothing shared with other
/// runs), its streams created; with its client and prefix.
async fn private_bus() -> Result<(async_nats::Client, EventBus, String), Box<dyn std::error::Error>> {
    let client = async_nats::connect(nats_url()).await?;
    let prefix = format!("gltest{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let bus = EventBus::new(client.clone(), &prefix);
    bus.ensure_streams().await?;
    Ok((client, bus, prefix))
}

/// Deletes the streams of a bus made by [`private_bus`].
async fn delete_streams(client: &async_nats::Client, bus: &EventBus) -> Result<(), Box<dyn std::error::Error>> {
    for domain in Domain::ALL {
        client_js(client).delete_stream(bus.stream_name(domain)).await?;
    }
    Ok(())
}

#[tokio::test]
async fn follow_catches_up_then_goes_live_for_one_tenant() {
    use futures::StreamExt as _;
    use getlood_events::StartAt;

    let (client, bus, _) = private_bus().await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let globex = TenantId::parse("globex").unwrap();
    let payload = |name: &str| Payload::AgentCreated(AgentCreated { agent_id: name.to_owned(), ..Default::default() });
    let s1 = bus.publish(Domain::Agent, &new_envelope(&acme, "a", "e1", "agent.created", payload("a1"))).await.unwrap();
    bus.publish(Domain::Agent, &new_envelope(&globex, "g", "e9", "agent.created", payload("g1"))).await.unwrap();
    let s2 = bus.publish(Domain::Agent, &new_envelope(&acme, "a", "e2", "agent.created", payload("a2"))).await.unwrap();

    // From the start: acme's two stored events, the last one with nothing pending.
    let mut all = bus.follow(&acme, Domain::Agent, StartAt::After(0)).await.unwrap();
    assert_eq!((all.start_after, all.pending), (0, 2));
    let first = all.events.next().await.unwrap().unwrap();
    assert_eq!((first.sequence, first.entity_id.as_deref(), first.pending), (s1, Some("e1"), 1));
    let second = all.events.next().await.unwrap().unwrap();
    assert_eq!((second.sequence, second.pending), (s2, 0));
    assert_eq!(second.decode().unwrap().tenant_id, "acme");

    // Live: starts after the newest event of any tenant, delivers only what comes next.
    let mut live = bus.follow(&acme, Domain::Agent, StartAt::New).await.unwrap();
    assert_eq!((live.start_after, live.pending, live.stream_last), (s2, 0, s2));
    let s3 = bus.publish(Domain::Agent, &new_envelope(&acme, "a", "e3", "agent.created", payload("a3"))).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), live.events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.sequence, s3);
    let also = tokio::time::timeout(Duration::from_secs(5), all.events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(also.sequence, s3, "a caught-up follower continues live");

    delete_streams(&client, &bus).await.unwrap();
}

#[tokio::test]
async fn an_event_without_tenant_goes_to_the_reserved_subject_no_tenant_reads() {
    let (client, bus, prefix) = private_bus().await.unwrap();
    assert!(TenantId::parse(getlood_events::UNAUTHENTICATED_TENANT).is_err(), "no tenant can take the token");
    let acme = TenantId::parse("acme").unwrap();
    let mut anonymous = new_envelope(&acme, "", "", "audit.recorded", Payload::Audit(Default::default()));
    anonymous.tenant_id.clear();
    bus.publish(Domain::Audit, &anonymous).await.unwrap();
    let events = bus.read(&acme, Domain::Audit, 0, 10, Duration::from_millis(300)).await.unwrap();
    assert!(events.is_empty(), "{events:?}");
    let stream = client_js(&client).get_stream(bus.stream_name(Domain::Audit)).await.unwrap();
    let stored =
        stream.get_last_raw_message_by_subject(&format!("{prefix}._unauthenticated.audit.audit.recorded")).await;
    assert!(stored.is_ok(), "{stored:?}");
    delete_streams(&client, &bus).await.unwrap();
}

/// A follower whose consumer is lost before it delivered anything (a NATS cluster restarting
/// under a freshly resumed subscription: the ephemeral consumer gone, heartbeats missed) never
/// delivers an event at or before its start. async-nats' ordered consumer recreates itself from
/// the last sequence it delivered, and from the stream's first event when it delivered none:
/// before the fix this follower delivered sequence 1 (`left: (1, 3)`), and every stored event
/// of the tenant came again. Now its stream ends with an error and following again from the
/// same position delivers the next event.
#[tokio::test]
async fn follow_recreated_before_its_first_event_does_not_replay_the_stream() {
    use futures::StreamExt as _;
    use getlood_events::StartAt;

    let (client, bus, _) = private_bus().await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let payload = |name: &str| Payload::AgentCreated(AgentCreated { agent_id: name.to_owned(), ..Default::default() });
    for name in ["a1", "a2", "a3"] {
        bus.publish(Domain::Agent, &new_envelope(&acme, "a", name, "agent.created", payload(name))).await.unwrap();
    }
    let mut live = bus.follow(&acme, Domain::Agent, StartAt::New).await.unwrap();
    let start = live.start_after;

    // The server loses the follower's consumer before it delivered anything.
    let js = client_js(&client);
    let stream = js.get_stream(bus.stream_name(Domain::Agent)).await.unwrap();
    let names: Vec<String> = stream.consumer_names().map(|n| n.unwrap()).collect().await;
    assert_eq!(names.len(), 1, "{names:?}");
    stream.delete_consumer(&names[0]).await.unwrap();

    let s4 = bus.publish(Domain::Agent, &new_envelope(&acme, "a", "a4", "agent.created", payload("a4"))).await.unwrap();
    // The consumer recreates itself after two missed idle heartbeats (15 s each).
    let next = tokio::time::timeout(Duration::from_secs(120), live.events.next()).await.unwrap().unwrap();
    match next {
        Ok(event) => assert_eq!((event.sequence, start), (s4, s4 - 1), "the first event after the start"),
        Err(err) => assert!(err.to_string().contains("restarted at sequence 1,"), "{err}"),
    }
    assert!(live.events.next().await.is_none(), "the error ends the follower");
    let mut again = bus.follow(&acme, Domain::Agent, StartAt::After(start)).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), again.events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.sequence, s4);

    delete_streams(&client, &bus).await.unwrap();
}
