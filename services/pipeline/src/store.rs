//! Postgres persistence of turns. Every statement filters on `tenant_id`.

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use getlood_proto::pipeline::v1::{Intent, IntentSource, Mode, Turn, TurnOutcome};
use prost::Message as _;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::convert::{actions_json, hints_json, messages_json, timings_json};
use crate::error::{Error, Result};

/// Stage-1 and stage-2 details stored beside the turn but not part of the `Turn` message.
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnNotes {
    /// Why stage 1 fell back, or which rule decided.
    pub intent_note: String,
    /// The routing rule that matched.
    pub route_rule: String,
}

/// A position in a conversation, for paging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

fn time(ts: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    ts.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))).unwrap_or_else(Utc::now)
}

fn enum_name(name: Option<&'static str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_ascii_lowercase()).unwrap_or_default()
}

fn decode(bytes: &[u8]) -> Result<Turn> {
    Turn::decode(bytes).map_err(|e| Error::Postgres(sqlx::Error::Decode(Box::new(e))))
}

/// The turns table.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pool: PgPool,
    /// `app.durable_turn_commit`.
    durable: bool,
}

impl Store {
    pub(crate) fn new(pool: PgPool, durable: bool) -> Self {
        Self { pool, durable }
    }

    /// A transaction for writing a turn; see `app.durable_turn_commit` for its durability.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(getlood_events::begin(&self.pool, self.durable).await?)
    }

    /// Inserts `turn` inside `tx`. A unique violation means a concurrent request with the same
    /// `client_request_id` won: the caller replays that one.
    pub(crate) async fn insert(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        turn: &Turn,
        notes: &TurnNotes,
    ) -> std::result::Result<(), sqlx::Error> {
        let id = Uuid::parse_str(&turn.id).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let conversation = Uuid::parse_str(&turn.conversation_id).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let agent = turn.agent.as_ref();
        let metadata = serde_json::to_value(&turn.metadata).unwrap_or_default();
        sqlx::query(
            "INSERT INTO turns (tenant_id, id, conversation_id, user_id, client_request_id, desktop_id, messages, answer, \
             outcome, intent, confidence, intent_source, intent_note, mode, route_rule, agent_id, agent_name, agent_version, \
             ui_actions, user_intent_hints, stage_timings, metadata, duration_ms, turn_pb, created_at, completed_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26)",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(conversation)
        .bind(&turn.user_id)
        .bind(&turn.client_request_id)
        .bind(&turn.desktop_id)
        .bind(messages_json(&turn.messages))
        .bind(&turn.answer)
        .bind(enum_name(TurnOutcome::try_from(turn.outcome).ok().map(|o| o.as_str_name()), "TURN_OUTCOME_"))
        .bind(enum_name(Intent::try_from(turn.intent).ok().map(|o| o.as_str_name()), "INTENT_"))
        .bind(turn.confidence)
        .bind(enum_name(IntentSource::try_from(turn.intent_source).ok().map(|o| o.as_str_name()), "INTENT_SOURCE_"))
        .bind(&notes.intent_note)
        .bind(enum_name(Mode::try_from(turn.mode).ok().map(|o| o.as_str_name()), "MODE_"))
        .bind(&notes.route_rule)
        .bind(agent.map(|a| a.id.clone()))
        .bind(agent.map(|a| a.name.clone()))
        .bind(agent.map(|a| a.version))
        .bind(actions_json(&turn.ui_actions))
        .bind(hints_json(&turn.user_intent_hints))
        .bind(timings_json(&turn.stage_timings))
        .bind(metadata)
        .bind(turn.duration_ms)
        .bind(turn.encode_to_vec())
        .bind(time(turn.created_at.as_ref()))
        .bind(time(turn.completed_at.as_ref()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// One turn and its owner.
    pub(crate) async fn get(&self, tenant: &TenantId, id: Uuid) -> Result<Option<(String, Turn)>> {
        let row: Option<(String, Vec<u8>)> =
            sqlx::query_as("SELECT user_id, turn_pb FROM turns WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(user, bytes)| Ok((user, decode(&bytes)?))).transpose()
    }

    /// The turn a previous request with this idempotency key produced.
    pub(crate) async fn by_client_request(&self, tenant: &TenantId, user: &str, key: &str) -> Result<Option<Turn>> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as(
            "SELECT turn_pb FROM turns WHERE tenant_id = $1 AND user_id = $2 AND client_request_id = $3 AND client_request_id <> ''",
        )
        .bind(tenant.as_str())
        .bind(user)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    /// The users who have turns in a conversation of the tenant (empty: a new conversation).
    pub(crate) async fn conversation_users(&self, tenant: &TenantId, conversation: Uuid) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT user_id FROM turns WHERE tenant_id = $1 AND conversation_id = $2 ORDER BY user_id LIMIT 10",
        )
        .bind(tenant.as_str())
        .bind(conversation)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(u,)| u).collect())
    }

    /// A page of a conversation's turns after `after`, oldest first; only `user`'s when given.
    pub(crate) async fn list(
        &self,
        tenant: &TenantId,
        conversation: Uuid,
        user: Option<&str>,
        after: Option<Cursor>,
        limit: i64,
    ) -> Result<Vec<(Cursor, Turn)>> {
        let (after_at, after_id) = match after {
            Some(c) => (Some(c.created_at), c.id),
            None => (None, Uuid::nil()),
        };
        let rows: Vec<(DateTime<Utc>, Uuid, Vec<u8>)> = sqlx::query_as(
            "SELECT created_at, id, turn_pb FROM turns WHERE tenant_id = $1 AND conversation_id = $2 \
             AND ($3::text IS NULL OR user_id = $3) \
             AND ($4::timestamptz IS NULL OR (created_at, id) > ($4, $5)) \
             ORDER BY created_at, id LIMIT $6",
        )
        .bind(tenant.as_str())
        .bind(conversation)
        .bind(user)
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|(created_at, id, bytes)| Ok((Cursor { created_at, id }, decode(&bytes)?))).collect()
    }
}
