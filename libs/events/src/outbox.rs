//! Transactional outbox: an event is written in the same Postgres transaction as the change it
//! describes, then relayed to JetStream. A crash between commit and publish loses nothing, and
//! a relay retry is de-duplicated by `Nats-Msg-Id`.
//!
//! Each service that uses it creates the table in its own schema:
//! ```sql
//! CREATE TABLE outbox (
//!     id         uuid PRIMARY KEY,
//!     domain     text NOT NULL,
//!     envelope   bytea NOT NULL,
//!     created_at timestamptz NOT NULL DEFAULT now()
//! );
//! ```

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::{Domain, EventBus, EventEnvelope};

/// Writes events into the outbox and wakes the relay.
#[derive(Clone, Debug)]
pub struct Outbox {
    pool: PgPool,
    wake: Arc<Notify>,
}

impl Outbox {
    /// An outbox over the service's pool (its `search_path` selects the service schema).
    pub fn new(pool: PgPool) -> Self {
        Self { pool, wake: Arc::new(Notify::new()) }
    }

    /// Adds `envelope` to the outbox inside `tx`; it is published once `tx` commits.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        domain: Domain,
        envelope: &EventEnvelope,
    ) -> Result<(), sqlx::Error> {
        let id = Uuid::parse_str(&envelope.id).unwrap_or_else(|_| Uuid::now_v7());
        sqlx::query("INSERT INTO outbox (id, domain, envelope) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(domain.token())
            .bind(envelope.encode_to_vec())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Tells the relay that committed events are waiting (call after `tx.commit()`).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Publishes outbox rows in insertion order until `shutdown`, polling every `interval`
    /// as a safety net for notifications lost in a crash.
    pub fn spawn_relay(&self, bus: EventBus, interval: Duration, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = self.clone();
        tracker.spawn(async move {
            loop {
                match this.relay_batch(&bus).await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "outbox relay failed, retrying"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = this.wake.notified() => {}
                    () = tokio::time::sleep(interval) => {}
                }
            }
            // Last attempt so events committed during the drain still leave.
            if let Err(err) = this.relay_batch(&bus).await {
                tracing::warn!(error = %err, "outbox relay failed during shutdown");
            }
        });
    }

    /// Publishes up to 100 rows; returns how many went out.
    pub async fn relay_batch(&self, bus: &EventBus) -> Result<usize, crate::EventError> {
        let db = |e: sqlx::Error| crate::EventError::JetStream(format!("outbox: {e}"));
        // The DELETE below need not wait for the WAL flush: if a database crash undoes it, the
        // rows are published again and JetStream drops the copies by `Nats-Msg-Id`.
        let mut tx = begin(&self.pool, false).await.map_err(db)?;
        // SKIP LOCKED: several replicas relay concurrently without publishing a row twice at once.
        let rows: Vec<(Uuid, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, domain, envelope FROM outbox ORDER BY created_at, id LIMIT 100 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let mut sent = Vec::with_capacity(rows.len());
        for (id, domain, bytes) in &rows {
            let Some(domain) = Domain::ALL.into_iter().find(|d| d.token() == domain) else {
                tracing::error!(%id, domain, "outbox row with unknown domain dropped");
                sent.push(*id);
                continue;
            };
            let envelope = EventEnvelope::decode(bytes.as_slice())?;
            bus.publish(domain, &envelope).await?;
            sent.push(*id);
        }
        if !sent.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&sent).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(sent.len())
    }
}

/// Begins a transaction on `pool`. With `durable` false its commit does not wait for the WAL
/// flush (`synchronous_commit` off for this transaction only, set in the same round trip as
/// `BEGIN`): atomicity and isolation are unchanged, but a database crash can undo the last few
/// hundred milliseconds of such commits, each whole (rows and outbox events together).
pub async fn begin(pool: &PgPool, durable: bool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    if durable { pool.begin().await } else { pool.begin_with("BEGIN; SET LOCAL synchronous_commit TO OFF").await }
}
