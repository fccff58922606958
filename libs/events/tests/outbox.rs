//! The outbox relay against the real Postgres and NATS JetStream (issue 13): rows that can never
//! be published are dead-lettered and the rows after them are still delivered.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use getlood_common::TenantId;
use getlood_events::{Domain, EventBus, Outbox, OutboxError, Payload, new_envelope};
use getlood_proto::events::v1::AgentCreated;
use prost::Message as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

/// A pool on a fresh schema holding the outbox tables exactly as the services' migrations make
/// them (agent-registry's copies; every service has the same two files).
async fn schema_pool() -> (sqlx::PgPool, String) {
    let url = env_or("GETLOOD_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test");
    let schema = format!("gltest_outbox_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.unwrap();
    let options: PgConnectOptions = url.parse().unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.options([("search_path", schema.as_str())]))
        .await
        .unwrap();
    for sql in [
        include_str!("../../../services/agent-registry/migrations/0002_outbox.sql"),
        include_str!("../../../services/agent-registry/migrations/0003_outbox_dead_letter.sql"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
    }
    (pool, schema)
}

async fn insert_row(pool: &sqlx::PgPool, id: uuid::Uuid, domain: &str, bytes: Vec<u8>) {
    sqlx::query("INSERT INTO outbox (id, domain, envelope) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(domain)
        .bind(bytes)
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn poison_and_oversized_rows_are_dead_lettered_and_later_rows_delivered() {
    let client = async_nats::connect(env_or("GETLOOD_TEST_NATS_URL", "nats://127.0.0.1:4222")).await.unwrap();
    let prefix = format!("gltest{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let bus = EventBus::new(client.clone(), &prefix);
    bus.ensure_streams().await.unwrap();
    let (pool, schema) = schema_pool().await;
    let tenant = TenantId::parse("acme").unwrap();
    let agent =
        |name: String| Payload::AgentCreated(AgentCreated { agent_id: "a".to_owned(), name, ..Default::default() });

    // Over the server's max_payload (1 MiB by default), as a huge run.completed would be; it
    // reaches the table directly, as rows written before the producer bound did.
    let big = new_envelope(&tenant, "alice", "big", "agent.created", agent("x".repeat(client.max_payload() + 1)));
    insert_row(&pool, big.id.parse().unwrap(), "agent", big.encode_to_vec()).await;
    let garbage = uuid::Uuid::now_v7();
    insert_row(&pool, garbage, "agent", vec![0xff, 0xff, 0xff, 0x01]).await;
    let good = new_envelope(&tenant, "alice", "good", "agent.created", agent("ok".to_owned()));
    insert_row(&pool, good.id.parse().unwrap(), "agent", good.encode_to_vec()).await;

    let outbox = Outbox::new(pool.clone()).for_service("test");
    let moved = outbox.relay_batch(&bus).await.unwrap();
    assert_eq!(moved, 3, "every row leaves the outbox: one published, two dead-lettered");

    let events = bus.read(&tenant, Domain::Agent, 0, 10, Duration::from_millis(500)).await.unwrap();
    let ids: Vec<_> = events.iter().map(|e| e.envelope.entity_id.as_str()).collect();
    assert_eq!(ids, ["good"], "the row after the poisoned ones is delivered");

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&pool).await.unwrap();
    assert_eq!(left, 0);
    let dead: Vec<(uuid::Uuid, String, String)> =
        sqlx::query_as("SELECT id, reason, error FROM outbox_dead_letter ORDER BY reason")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!((dead[0].0, dead[0].1.as_str()), (big.id.parse().unwrap(), "too_large"));
    assert!(dead[0].2.contains("max payload"), "{}", dead[0].2);
    assert_eq!((dead[1].0, dead[1].1.as_str()), (garbage, "undecodable"));

    // The producer bound: an envelope over the limit fails the producing transaction.
    let mut tx = pool.begin().await.unwrap();
    let err = outbox.enqueue(&mut tx, Domain::Agent, &big).await.unwrap_err();
    let sqlx::Error::Encode(inner) = &err else { panic!("unexpected error {err:?}") };
    assert!(matches!(inner.downcast_ref::<OutboxError>(), Some(OutboxError::EnvelopeTooLarge { .. })), "{inner}");
    drop(tx);

    let js = async_nats::jetstream::new(client);
    for domain in Domain::ALL {
        js.delete_stream(bus.stream_name(domain)).await.unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.unwrap();
}
