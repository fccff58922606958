//! Transactional outbox: an event is written in the same Postgres transaction as the change it
//! describes, then relayed to JetStream. A crash between commit and publish loses nothing, and
//! a relay retry is de-duplicated by `Nats-Msg-Id`.
//!
//! Each service that uses it creates the tables in its own schema (its `migrations/`):
//! ```sql
//! CREATE TABLE outbox (
//!     id         uuid PRIMARY KEY,
//!     domain     text NOT NULL,
//!     envelope   bytea NOT NULL,
//!     created_at timestamptz NOT NULL DEFAULT now()
//! );
//! CREATE TABLE outbox_dead_letter (
//!     id               uuid PRIMARY KEY,
//!     domain           text NOT NULL,
//!     envelope         bytea NOT NULL,
//!     reason           text NOT NULL,
//!     error            text NOT NULL,
//!     dead_lettered_at timestamptz NOT NULL DEFAULT now()
//! );
//! ```
//!
//! A row that can never be published (larger than the NATS server's `max_payload`, not a valid
//! envelope, an unknown domain) is moved to `outbox_dead_letter` with the error, counted in
//! [`METRIC_DEAD_LETTERED`] and logged once, and the relay goes on: one poisoned row must not
//! stop every tenant's events (issue 13). Producers are bounded first: [`Outbox::enqueue`]
//! refuses an envelope over [`DEFAULT_MAX_ENVELOPE_BYTES`], so the producing transaction fails
//! instead. Large results belong in the producing service's own rows (a run's result in the
//! workflow tables, a desktop in desktop-state's), and events carry their id.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::{Domain, EventBus, EventEnvelope};

/// The largest encoded envelope [`Outbox::enqueue`] accepts by default: half of NATS's default
/// `max_payload` (1 MiB), leaving room for headers and for a server configured lower.
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 512 * 1024;

/// Counter of outbox rows moved to `outbox_dead_letter`, labelled `service` and `reason`
/// ([`DeadLetterReason::as_str`]).
pub const METRIC_DEAD_LETTERED: &str = "getlood_outbox_dead_lettered_total";

/// Why the outbox refused an event.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The encoded envelope is over the outbox's limit.
    #[error(
        "event {event_type} is {size} bytes, over the outbox limit of {max} bytes: keep large data in the \
         service's own rows and put its id in the event"
    )]
    EnvelopeTooLarge {
        /// The envelope's `type`.
        event_type: String,
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Why an outbox row was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Larger than the NATS server's `max_payload`.
    TooLarge,
    /// Its domain is not one of [`Domain::ALL`].
    UnknownDomain,
    /// Its bytes are not an [`EventEnvelope`].
    Undecodable,
}

impl DeadLetterReason {
    /// The metric label and `reason` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::UnknownDomain => "unknown_domain",
            Self::Undecodable => "undecodable",
        }
    }

    /// The reason of a permanent publish error, `None` for one worth retrying.
    pub fn of(err: &crate::EventError) -> Option<Self> {
        match err {
            crate::EventError::TooLarge(_) => Some(Self::TooLarge),
            crate::EventError::Decode(_) => Some(Self::Undecodable),
            crate::EventError::Expired { .. } | crate::EventError::JetStream(_) => None,
        }
    }
}

/// An outbox row that can never be published, on its way to `outbox_dead_letter`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The outbox row's id (the envelope's id when it has one).
    pub id: Uuid,
    /// The row's domain token.
    pub domain: String,
    /// Why it cannot be published.
    pub reason: DeadLetterReason,
    /// The error, as text, for the operator.
    pub error: String,
}

impl DeadLetter {
    /// Inserts the row into `outbox_dead_letter` on `conn` (inside the transaction that removes
    /// it from `outbox`, so it is in exactly one of them). A second insert of the same id, from
    /// a relay that retried after a failed commit, is a no-op.
    pub async fn record(&self, conn: &mut PgConnection, envelope: &[u8]) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO outbox_dead_letter (id, domain, envelope, reason, error) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(self.id)
        .bind(&self.domain)
        .bind(envelope)
        .bind(self.reason.as_str())
        .bind(&self.error)
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Counts and logs the row once its move has committed.
    pub fn report(&self, service: &str) {
        metrics::counter!(METRIC_DEAD_LETTERED, "service" => service.to_owned(), "reason" => self.reason.as_str())
            .increment(1);
        tracing::error!(
            service,
            id = %self.id,
            domain = %self.domain,
            reason = self.reason.as_str(),
            error = %self.error,
            "outbox row dead-lettered, it will not be published"
        );
    }
}

/// Writes events into the outbox and wakes the relay.
#[derive(Clone, Debug)]
pub struct Outbox {
    pool: PgPool,
    wake: Arc<Notify>,
    service: &'static str,
    max_envelope_bytes: usize,
}

impl Outbox {
    /// An outbox over the service's pool (its `search_path` selects the service schema).
    pub fn new(pool: PgPool) -> Self {
        Self { pool, wake: Arc::new(Notify::new()), service: "unknown", max_envelope_bytes: DEFAULT_MAX_ENVELOPE_BYTES }
    }

    /// Names the service in metrics and logs (`service` label of [`METRIC_DEAD_LETTERED`]).
    #[must_use]
    pub fn for_service(mut self, service: &'static str) -> Self {
        self.service = service;
        self
    }

    /// Replaces [`DEFAULT_MAX_ENVELOPE_BYTES`].
    #[must_use]
    pub fn with_max_envelope_bytes(mut self, max: usize) -> Self {
        self.max_envelope_bytes = max;
        self
    }

    /// Encodes `envelope`, refusing one over the limit.
    fn encode_bounded(&self, envelope: &EventEnvelope) -> Result<Vec<u8>, OutboxError> {
        let size = envelope.encoded_len();
        if size > self.max_envelope_bytes {
            return Err(OutboxError::EnvelopeTooLarge {
                event_type: envelope.r#type.clone(),
                size,
                max: self.max_envelope_bytes,
            });
        }
        Ok(envelope.encode_to_vec())
    }

    /// Adds `envelope` to the outbox inside `tx`; it is published once `tx` commits. An
    /// envelope over the limit is refused with `sqlx::Error::Encode` wrapping
    /// [`OutboxError::EnvelopeTooLarge`], which fails the producing transaction: better than a
    /// row the relay can never deliver.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        domain: Domain,
        envelope: &EventEnvelope,
    ) -> Result<(), sqlx::Error> {
        let bytes = self.encode_bounded(envelope).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let id = Uuid::parse_str(&envelope.id).unwrap_or_else(|_| Uuid::now_v7());
        sqlx::query("INSERT INTO outbox (id, domain, envelope) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(domain.token())
            .bind(bytes)
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

    /// Publishes up to 100 rows; returns how many left the outbox (published or dead-lettered).
    /// A transient failure (JetStream down) rolls the batch back to be relayed again; a row
    /// that can never be published is dead-lettered and the batch goes on.
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
        let mut dead = Vec::new();
        for (id, token, bytes) in &rows {
            let dead_letter = |reason, error: String| DeadLetter { id: *id, domain: token.clone(), reason, error };
            let failure = match Domain::ALL.into_iter().find(|d| d.token() == token) {
                None => Some(dead_letter(DeadLetterReason::UnknownDomain, format!("unknown domain {token:?}"))),
                Some(domain) => match EventEnvelope::decode(bytes.as_slice()) {
                    Err(err) => Some(dead_letter(DeadLetterReason::Undecodable, err.to_string())),
                    Ok(envelope) => match bus.publish(domain, &envelope).await {
                        Ok(_) => None,
                        Err(err) => match DeadLetterReason::of(&err) {
                            Some(reason) => Some(dead_letter(reason, err.to_string())),
                            // Worth retrying: the whole batch comes back (published rows are
                            // de-duplicated by `Nats-Msg-Id`).
                            None => return Err(err),
                        },
                    },
                },
            };
            if let Some(letter) = failure {
                letter.record(&mut tx, bytes).await.map_err(db)?;
                dead.push(letter);
            }
            sent.push(*id);
        }
        if !sent.is_empty() {
            sqlx::query("DELETE FROM outbox WHERE id = ANY($1)").bind(&sent).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        for letter in &dead {
            letter.report(self.service);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Payload, new_envelope};
    use getlood_common::TenantId;
    use getlood_proto::events::v1::AgentCreated;

    fn envelope_of(name_len: usize) -> EventEnvelope {
        let tenant = TenantId::parse("acme").unwrap_or_else(|e| panic!("{e}"));
        let payload = Payload::AgentCreated(AgentCreated {
            agent_id: "a1".to_owned(),
            name: "x".repeat(name_len),
            ..Default::default()
        });
        new_envelope(&tenant, "alice", "a1", "agent.created", payload)
    }

    // A runtime only because a lazy pool needs one; nothing connects.
    #[tokio::test]
    async fn enqueue_refuses_an_envelope_over_the_limit() {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap_or_else(|e| panic!("{e}"));
        let outbox = Outbox::new(pool).with_max_envelope_bytes(1024);
        assert!(outbox.encode_bounded(&envelope_of(100)).is_ok());
        let err = outbox.encode_bounded(&envelope_of(2000)).err().unwrap_or_else(|| panic!("accepted"));
        let OutboxError::EnvelopeTooLarge { event_type, size, max } = &err;
        assert_eq!((event_type.as_str(), *max), ("agent.created", 1024));
        assert!(*size > 2000);
        assert!(err.to_string().contains("over the outbox limit"), "{err}");
    }
}
