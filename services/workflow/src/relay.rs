//! A pipelined relay of this service's outbox (the table of `getlood_events::Outbox`).
//!
//! A run produces about a dozen events, so the shared relay's one-publish-one-ack loop
//! (about a millisecond per event here) fell seconds behind under load. This relay sends a
//! whole batch on the connection, then awaits the acks: JetStream keeps one connection's
//! publishes in order, and rows are deleted only after every ack of the batch came back, so a
//! crash re-publishes (de-duplicated by `Nats-Msg-Id`) rather than loses. Meant to move into
//! `libs/events` as `Outbox::relay_batch`'s behaviour; the table and headers are the same.

use std::time::Duration;

use async_nats::jetstream;
use std::sync::Arc;

use getlood_events::{CONTENT_TYPE, Domain, EventBus, EventEnvelope, HEADER_ENTITY_ID, HEADER_SCHEMA, HEADER_TYPE};
use prost::Message as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Rows per batch: large enough to amortize the round trip, small enough to keep one
/// transaction short.
const BATCH: i64 = 500;

/// Relays committed outbox rows to JetStream until `shutdown`.
pub(crate) fn spawn(
    pool: PgPool,
    nats: async_nats::Client,
    bus: EventBus,
    wake: Arc<tokio::sync::Notify>,
    poll: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let js = jetstream::new(nats);
    tracker.spawn(async move {
        loop {
            match relay_batch(&pool, &js, &bus).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "outbox relay failed, retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        // Events committed during the drain still leave.
        if let Err(err) = relay_batch(&pool, &js, &bus).await {
            tracing::warn!(error = %err, "outbox relay failed during shutdown");
        }
    });
}

async fn relay_batch(pool: &PgPool, js: &jetstream::Context, bus: &EventBus) -> Result<usize> {
    let mut tx = pool.begin().await?;
    // By id alone: ids are UUIDv7 made under the run's row lock, so a run's events sort in
    // commit order (created_at is the transaction's start, which a lock waiter has earlier).
    // SKIP LOCKED: replicas relay concurrently without publishing a row twice at once.
    let rows: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT id, envelope FROM outbox WHERE domain = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED")
            .bind(Domain::Workflow.token())
            .bind(BATCH)
            .fetch_all(&mut *tx)
            .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut acks = Vec::with_capacity(rows.len());
    let mut ids = Vec::with_capacity(rows.len());
    for (id, bytes) in &rows {
        ids.push(*id);
        let Ok(envelope) = EventEnvelope::decode(bytes.as_slice()) else {
            tracing::error!(%id, "undecodable outbox row dropped");
            continue;
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.as_str());
        headers.insert(HEADER_TYPE, envelope.r#type.as_str());
        headers.insert(HEADER_SCHEMA, envelope.schema_version.to_string().as_str());
        headers.insert(HEADER_ENTITY_ID, envelope.entity_id.as_str());
        headers.insert("Content-Type", CONTENT_TYPE);
        // The operation's trace context, as captured when the event was made.
        if !envelope.traceparent.is_empty() {
            headers.insert("traceparent", envelope.traceparent.as_str());
        }
        let subject = bus.subject(&envelope.tenant_id, Domain::Workflow, &envelope.r#type);
        let ack = js.publish_with_headers(subject, headers, bytes.clone().into()).await.map_err(q)?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(q)?;
    }
    sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(ids.len())
}

fn q(e: impl std::fmt::Display) -> Error {
    Error::Queue(e.to_string())
}
