//! A pipelined relay of this service's outbox (the table of `getlood_events::Outbox`).
//!
//! A run produces about a dozen events, so the shared relay's one-publish-one-ack loop
//! (about a millisecond per event here) fell seconds behind under load, and waiting for a
//! batch's acks before reading the next one still put a whole round of JetStream acks plus a
//! commit in front of every new event. This relay takes a batch by deleting its rows in an open
//! transaction, sends the whole batch on the connection, and goes on to the next batch at once;
//! a separate task per batch awaits the acks and only then commits the delete (at most
//! [`IN_FLIGHT`] batches are open). A batch whose acks fail rolls back: its rows come back and
//! are sent again, de-duplicated by `Nats-Msg-Id`, so a crash or a failure re-publishes rather
//! than loses. Meant to move into `libs/events` as `Outbox::relay_batch`'s behaviour; the table
//! and headers are the same.
//!
//! Ordering: JetStream keeps one connection's publishes in order and batches are sent in id
//! order (a run's ids are made in commit order under its row lock), so a run's events arrive in
//! order, except after a failed batch, whose rows are re-sent after later ones (consumers have
//! `run_sequence` for that).

use std::sync::Arc;
use std::time::Duration;

use getlood_events::{DeadLetter, DeadLetterReason, Domain, EventBus, EventEnvelope};
use prost::Message as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::backlog::RelayBacklog;
use crate::error::{Error, Result};

/// Rows per batch: large enough to amortize the round trips, small enough to keep one
/// transaction short.
const BATCH: i64 = 500;

/// Batches whose acks may be outstanding at once; each holds one of the relay's connections.
const IN_FLIGHT: usize = 3;

/// A batch sent to JetStream whose rows are deleted in `tx`, not committed yet.
struct Sent {
    tx: Transaction<'static, Postgres>,
    acks: Vec<async_nats::jetstream::context::PublishAckFuture>,
    /// Rows moved to `outbox_dead_letter` in `tx` (they can never be published).
    dead: Vec<DeadLetter>,
}

impl Sent {
    /// Commits the delete once JetStream has acknowledged every message; else rolls it back
    /// (dropping `tx` does), so the rows are relayed again.
    async fn settle(self) -> Result<usize> {
        let n = self.acks.len();
        for ack in self.acks {
            ack.await.map_err(q)?;
        }
        self.tx.commit().await?;
        for letter in &self.dead {
            letter.report("workflow");
        }
        Ok(n + self.dead.len())
    }
}

/// Relays committed outbox rows to JetStream until `shutdown`. The relay has connections of
/// its own (`pool`'s options, [`IN_FLIGHT`] + 1 of them): through the shared pool, every batch
/// waited behind the queue of RPCs for a connection, which under load was most of an event's
/// latency.
pub(crate) fn spawn(
    pool: &PgPool,
    bus: EventBus,
    backlog: Arc<RelayBacklog>,
    poll: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let pool = PgPoolOptions::new()
        .max_connections(IN_FLIGHT as u32 + 1)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let settlers = tracker.clone();
    tracker.spawn(async move {
        let permits = Arc::new(Semaphore::new(IN_FLIGHT));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else { break };
            match send_batch(&pool, &bus).await {
                Ok(Some(sent)) => {
                    let backlog = backlog.clone();
                    settlers.spawn(async move {
                        match sent.settle().await {
                            Ok(n) => backlog.published(n),
                            Err(err) => {
                                tracing::warn!(error = %err, "outbox batch not acknowledged, it will be relayed again");
                            }
                        }
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "outbox relay failed, retrying"),
            }
            drop(permit);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = backlog.wake.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
        // Events committed during the drain still leave, after the batches in flight settle
        // (so their rows are not skipped as locked).
        let _settled = permits.acquire_many(IN_FLIGHT as u32).await;
        loop {
            match send_batch(&pool, &bus).await {
                Ok(Some(sent)) => {
                    if let Err(err) = sent.settle().await {
                        tracing::warn!(error = %err, "outbox relay failed during shutdown");
                        break;
                    }
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox relay failed during shutdown");
                    break;
                }
            }
        }
    });
}

/// Takes the oldest unsent rows and sends them; `None` when there are none.
async fn send_batch(pool: &PgPool, bus: &EventBus) -> Result<Option<Sent>> {
    // A lost commit of the delete only means a re-publish that `Nats-Msg-Id` de-duplicates, so
    // this transaction does not wait for its WAL flush.
    let mut tx = getlood_events::begin(pool, false).await?;
    // By id: ids are UUIDv7 made under the run's row lock, so a run's events sort in commit
    // order (created_at is the transaction's start, which a lock waiter has earlier).
    // SKIP LOCKED: batches in flight, and other replicas, hold their rows until they settle.
    let mut rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "DELETE FROM outbox WHERE id IN \
         (SELECT id FROM outbox WHERE domain = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id, envelope",
    )
    .bind(Domain::Workflow.token())
    .bind(BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(None);
    }
    // RETURNING does not keep the subquery's order.
    rows.sort_unstable_by_key(|(id, _)| *id);
    let mut acks = Vec::with_capacity(rows.len());
    let mut dead = Vec::new();
    for (id, bytes) in rows {
        let letter =
            |reason, error: String| DeadLetter { id, domain: Domain::Workflow.token().to_owned(), reason, error };
        // A row that can never be published (issue 13) is moved to the dead-letter table in
        // this transaction; retrying the batch would block every later event forever.
        let failure = match EventEnvelope::decode(bytes.as_slice()) {
            Err(err) => letter(DeadLetterReason::Undecodable, err.to_string()),
            Ok(envelope) => match bus.send(Domain::Workflow, &envelope, bytes.clone().into()).await {
                Ok(ack) => {
                    acks.push(ack);
                    continue;
                }
                Err(err) => match DeadLetterReason::of(&err) {
                    Some(reason) => letter(reason, err.to_string()),
                    None => return Err(q(err)),
                },
            },
        };
        failure.record(&mut tx, &bytes).await?;
        dead.push(failure);
    }
    Ok(Some(Sent { tx, acks, dead }))
}

fn q(e: impl std::fmt::Display) -> Error {
    Error::Queue(e.to_string())
}
