//! The A2A tasks and their push-notification configs in the gateway's own Postgres schema
//! (`migrations/0001_a2a_tasks.sql`, `0004_a2a_push_configs_and_leases.sql`). Every query a
//! client's request makes is scoped by tenant, user and agent: a task of anyone else, and its
//! configs, are simply not there. State changes are conditional on the task not being terminal,
//! so a cancel and the end of a turn racing on two replicas leave exactly one outcome.
//!
//! A push config's token and credentials are sealed at rest when the gateway has a
//! key-encryption key ([`getlood_common::sealing`], `app.accounts.key_encryption_key`, as the
//! signing keys): a row read from Postgres holds no secret, and only this store opens them.
//!
//! A running task carries a lease (`lease_until`, in the database's clock) that the replica
//! running its turn renews; a task whose lease expired lost its replica and is failed by
//! whichever replica sees it first ([`Store::fail_orphans`]).

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use getlood_common::sealing::SealingKey;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::protocol::state;

/// The scope of every query: the caller's tenant and user, and the agent of the route.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    pub tenant: String,
    pub user: String,
    pub agent: String,
}

/// One stored task.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct TaskRow {
    pub id: Uuid,
    pub context_id: String,
    pub conversation_id: String,
    pub turn_id: String,
    pub state: String,
    pub status_message: Option<Value>,
    pub history: Value,
    pub artifacts: Value,
    pub metadata: Value,
    pub updated_at: DateTime<Utc>,
}

impl TaskRow {
    /// The task as A2A's `Task`, with at most `history` messages of its history.
    pub(crate) fn to_json(&self, history: Option<i64>, artifacts: bool) -> Value {
        let all = self.history.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut task = serde_json::json!({
            "id": self.id.to_string(),
            "contextId": self.context_id,
            "status": super::protocol::status_json(&self.state, self.status_message.as_ref(), &timestamp(self.updated_at)),
            "history": super::protocol::trim_history(all, history),
        });
        if let Some(obj) = task.as_object_mut() {
            if artifacts {
                obj.insert("artifacts".to_owned(), self.artifacts.clone());
            }
            if self.metadata.as_object().is_some_and(|m| !m.is_empty()) {
                obj.insert("metadata".to_owned(), self.metadata.clone());
            }
        }
        task
    }
}

/// RFC 3339 with milliseconds, as protobuf JSON writes a `Timestamp`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

const COLUMNS: &str =
    "id, context_id, conversation_id, turn_id, state, status_message, history, artifacts, metadata, updated_at";

/// A2A states in which a task's turn is running (and its lease held), as SQL.
const RUNNING_SQL: &str = "('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING')";

/// The task store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: PgPool,
    /// How long a running task's lease lasts from its last renewal, in milliseconds.
    lease_ms: i64,
    /// Seals push configs' secrets; none: they are stored plain (the start warns).
    key: Option<SealingKey>,
}

/// A task with the scope it belongs to, as the sweeper finds it across tenants.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ScopedRow {
    pub tenant_id: String,
    pub user_id: String,
    pub agent_name: String,
    #[sqlx(flatten)]
    pub row: TaskRow,
}

impl ScopedRow {
    pub(crate) fn scope(&self) -> Scope {
        Scope { tenant: self.tenant_id.clone(), user: self.user_id.clone(), agent: self.agent_name.clone() }
    }
}

/// One stored push-notification config of a task.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct PushConfigRow {
    pub id: String,
    pub url: String,
    pub token: String,
    pub auth_scheme: String,
    pub auth_credentials: String,
}

/// What storing a push-notification config did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PutConfig {
    /// Stored (created, or replaced the config with the same id).
    Stored,
    /// The task is not the caller's (or does not exist).
    NoTask,
    /// The task holds as many configs as it may.
    Full,
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListFilter {
    pub context_id: Option<String>,
    pub state: Option<String>,
    pub updated_after: Option<DateTime<Utc>>,
    /// Continue after this (updated_at, id), from the previous page's token.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub page_size: i64,
}

impl Store {
    /// The store on `pool`; running tasks are leased for `lease` at a time; push configs'
    /// secrets are sealed with `key` when there is one.
    pub(crate) fn new(pool: PgPool, lease: Duration, key: Option<SealingKey>) -> Self {
        Self { pool, lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX), key }
    }

    /// Stores a new task (leased when it is running).
    pub(crate) async fn insert(&self, scope: &Scope, row: &TaskRow) -> Result<(), sqlx::Error> {
        let sql = format!(
            "INSERT INTO a2a_tasks (tenant_id, id, user_id, agent_name, context_id, conversation_id, turn_id, state, \
             status_message, history, artifacts, metadata, created_at, updated_at, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, \
             CASE WHEN $8 IN {RUNNING_SQL} THEN now() + $14::bigint * interval '1 millisecond' END)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&scope.tenant)
            .bind(row.id)
            .bind(&scope.user)
            .bind(&scope.agent)
            .bind(&row.context_id)
            .bind(&row.conversation_id)
            .bind(&row.turn_id)
            .bind(&row.state)
            .bind(&row.status_message)
            .bind(&row.history)
            .bind(&row.artifacts)
            .bind(&row.metadata)
            .bind(row.updated_at)
            .bind(self.lease_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether the caller has the task `id` of the scope's agent.
    pub(crate) async fn exists(&self, scope: &Scope, id: Uuid) -> Result<bool, sqlx::Error> {
        let found: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM a2a_tasks WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    /// The caller's task `id` of the scope's agent.
    pub(crate) async fn get(&self, scope: &Scope, id: Uuid) -> Result<Option<TaskRow>, sqlx::Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM a2a_tasks WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&scope.tenant)
            .bind(&scope.user)
            .bind(&scope.agent)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
    }

    /// A page of the caller's tasks of the agent, most recently updated first, and the number
    /// of tasks the filter matches.
    pub(crate) async fn list(&self, scope: &Scope, filter: &ListFilter) -> Result<(Vec<TaskRow>, i64), sqlx::Error> {
        let conditions = "tenant_id = $1 AND user_id = $2 AND agent_name = $3 \
             AND ($4::text IS NULL OR context_id = $4) AND ($5::text IS NULL OR state = $5) \
             AND ($6::timestamptz IS NULL OR updated_at > $6)";
        let sql = format!(
            "SELECT {COLUMNS} FROM a2a_tasks WHERE {conditions} \
             AND ($7::timestamptz IS NULL OR (updated_at, id) < ($7, $8)) \
             ORDER BY updated_at DESC, id DESC LIMIT $9"
        );
        let (after_at, after_id) = filter.after.map_or((None, None), |(at, id)| (Some(at), Some(id)));
        let rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&scope.tenant)
            .bind(&scope.user)
            .bind(&scope.agent)
            .bind(&filter.context_id)
            .bind(&filter.state)
            .bind(filter.updated_after)
            .bind(after_at)
            .bind(after_id)
            .bind(filter.page_size)
            .fetch_all(&self.pool)
            .await?;
        let count_sql = format!("SELECT count(*) FROM a2a_tasks WHERE {conditions}");
        let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(count_sql))
            .bind(&scope.tenant)
            .bind(&scope.user)
            .bind(&scope.agent)
            .bind(&filter.context_id)
            .bind(&filter.state)
            .bind(filter.updated_after)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows, total))
    }

    /// The pipeline conversation of the caller's latest task in `context_id`, if one answered.
    pub(crate) async fn conversation_of(&self, scope: &Scope, context_id: &str) -> Result<Option<String>, sqlx::Error> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT conversation_id FROM a2a_tasks WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 \
             AND context_id = $4 AND conversation_id <> '' ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(context_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(c,)| c))
    }

    /// Moves a task that is not terminal (and, with `only_from`, is in that state) to `to`,
    /// with `message` as its status message; `history` replaces the history when given.
    /// Returns whether the task moved.
    pub(crate) async fn transition(
        &self,
        scope: &Scope,
        id: Uuid,
        only_from: Option<&str>,
        to: &str,
        message: Option<&Value>,
        history: Option<&Value>,
    ) -> Result<bool, sqlx::Error> {
        // A task moving to a running state is leased anew; one that stops running drops it.
        let sql = format!(
            "UPDATE a2a_tasks SET state = $5, status_message = $6, history = COALESCE($7, history), updated_at = now(), \
             lease_until = CASE WHEN $5 IN {RUNNING_SQL} THEN now() + $9::bigint * interval '1 millisecond' END \
             WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4 \
             AND state NOT IN ('TASK_STATE_COMPLETED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELED', 'TASK_STATE_REJECTED') \
             AND ($8::text IS NULL OR state = $8)"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&scope.tenant)
            .bind(&scope.user)
            .bind(&scope.agent)
            .bind(id)
            .bind(to)
            .bind(message)
            .bind(history)
            .bind(only_from)
            .bind(self.lease_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a running task's turn: state, status message, history, artifacts and the turn it
    /// came from; only while the task still runs (a cancel that came first wins).
    #[allow(clippy::too_many_arguments, reason = "one row's columns")]
    pub(crate) async fn finish(
        &self,
        scope: &Scope,
        id: Uuid,
        to: &str,
        message: Option<&Value>,
        history: &Value,
        artifacts: &Value,
        conversation_id: &str,
        turn_id: &str,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE a2a_tasks SET state = $5, status_message = $6, history = $7, artifacts = $8, \
             conversation_id = CASE WHEN $9 = '' THEN conversation_id ELSE $9 END, \
             turn_id = CASE WHEN $10 = '' THEN turn_id ELSE $10 END, updated_at = now(), lease_until = NULL \
             WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4 \
             AND state IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING')",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(id)
        .bind(to)
        .bind(message)
        .bind(history)
        .bind(artifacts)
        .bind(conversation_id)
        .bind(turn_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends the lease of the running task `id` (its turn is still running here); false when
    /// the task no longer runs (canceled, or failed by another replica that saw the lease
    /// expire).
    pub(crate) async fn renew(&self, scope: &Scope, id: Uuid) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "UPDATE a2a_tasks SET lease_until = now() + $5::bigint * interval '1 millisecond' \
             WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4 AND state IN {RUNNING_SQL}"
        );
        let done = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&scope.tenant)
            .bind(&scope.user)
            .bind(&scope.agent)
            .bind(id)
            .bind(self.lease_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Fails running tasks whose replica stopped, at most `limit` of them: their lease expired,
    /// or (rows of gateways older than leases) they were last updated before `before`, longer
    /// ago than any turn lasts. `scope` limits them to one caller's tasks of one agent (a read
    /// of that caller); `None` takes any tenant's (the sweeper). Rows another replica is failing
    /// at the same moment are skipped, so each orphan is failed, and announced, once. Returns
    /// the failed tasks.
    pub(crate) async fn fail_orphans(
        &self,
        scope: Option<&Scope>,
        before: DateTime<Utc>,
        message: &Value,
        limit: i64,
    ) -> Result<Vec<ScopedRow>, sqlx::Error> {
        let sql = format!(
            "UPDATE a2a_tasks t SET state = $1, status_message = $2, updated_at = now(), lease_until = NULL \
             FROM (SELECT tenant_id, id FROM a2a_tasks WHERE state IN {RUNNING_SQL} \
                   AND (lease_until < now() OR (lease_until IS NULL AND updated_at < $3)) \
                   AND ($4::text IS NULL OR tenant_id = $4) AND ($5::text IS NULL OR user_id = $5) \
                   AND ($6::text IS NULL OR agent_name = $6) \
                   LIMIT $7 FOR UPDATE SKIP LOCKED) o \
             WHERE t.tenant_id = o.tenant_id AND t.id = o.id \
             RETURNING t.tenant_id, t.user_id, t.agent_name, t.id, t.context_id, t.conversation_id, t.turn_id, \
             t.state, t.status_message, t.history, t.artifacts, t.metadata, t.updated_at"
        );
        sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(state::FAILED)
            .bind(message)
            .bind(before)
            .bind(scope.map(|s| s.tenant.as_str()))
            .bind(scope.map(|s| s.user.as_str()))
            .bind(scope.map(|s| s.agent.as_str()))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
    }

    /// Stores `config` for the caller's task `task` (replacing the task's config with the same
    /// id), unless the task already holds `max` other configs. The task's row is locked while
    /// the configs are counted, so two concurrent creates cannot both pass the bound.
    pub(crate) async fn put_push_config(
        &self,
        scope: &Scope,
        task: Uuid,
        config: &PushConfigRow,
        max: i64,
    ) -> Result<PutConfig, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(i32,)> = sqlx::query_as(
            "SELECT 1 FROM a2a_tasks WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4 FOR UPDATE",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(task)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(PutConfig::NoTask);
        }
        let (others,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM a2a_push_configs WHERE tenant_id = $1 AND task_id = $2 AND id <> $3")
                .bind(&scope.tenant)
                .bind(task)
                .bind(&config.id)
                .fetch_one(&mut *tx)
                .await?;
        if others >= max {
            return Ok(PutConfig::Full);
        }
        let seal = |field: &str, value: &str| -> Result<String, sqlx::Error> {
            match &self.key {
                Some(key) if !value.is_empty() => key
                    .seal_text(value, push_aad(&scope.tenant, task, &config.id, field).as_bytes())
                    .map_err(|e| sqlx::Error::Encode(Box::new(e))),
                _ => Ok(value.to_owned()),
            }
        };
        sqlx::query(
            "INSERT INTO a2a_push_configs (tenant_id, task_id, id, url, token, auth_scheme, auth_credentials, sealed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, task_id, id) DO UPDATE SET url = EXCLUDED.url, token = EXCLUDED.token, \
             auth_scheme = EXCLUDED.auth_scheme, auth_credentials = EXCLUDED.auth_credentials, sealed = EXCLUDED.sealed",
        )
        .bind(&scope.tenant)
        .bind(task)
        .bind(&config.id)
        .bind(&config.url)
        .bind(seal("token", &config.token)?)
        .bind(&config.auth_scheme)
        .bind(seal("auth_credentials", &config.auth_credentials)?)
        .bind(self.key.is_some())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PutConfig::Stored)
    }

    /// The push-notification configs of the caller's task `task`, oldest first (none when the
    /// task is not the caller's).
    /// A sealed config that does not open (no key, or another key) is an error: its webhook
    /// would otherwise get a wrong credential.
    pub(crate) async fn push_configs(&self, scope: &Scope, task: Uuid) -> Result<Vec<PushConfigRow>, sqlx::Error> {
        let rows: Vec<(String, String, String, String, String, bool)> = sqlx::query_as(
            "SELECT c.id, c.url, c.token, c.auth_scheme, c.auth_credentials, c.sealed FROM a2a_push_configs c \
             JOIN a2a_tasks t ON t.tenant_id = c.tenant_id AND t.id = c.task_id \
             WHERE t.tenant_id = $1 AND t.user_id = $2 AND t.agent_name = $3 AND t.id = $4 \
             ORDER BY c.created_at, c.id",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(task)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, url, token, auth_scheme, auth_credentials, sealed)| {
                let open = |field: &str, value: String| -> Result<String, sqlx::Error> {
                    if !sealed || value.is_empty() {
                        return Ok(value);
                    }
                    let key = self.key.as_ref().ok_or_else(|| {
                        sqlx::Error::Decode(
                            "a push config is sealed but app.accounts.key_encryption_key is not set".into(),
                        )
                    })?;
                    key.open_text(&value, push_aad(&scope.tenant, task, &id, field).as_bytes())
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
                };
                let token = open("token", token)?;
                let auth_credentials = open("auth_credentials", auth_credentials)?;
                Ok(PushConfigRow { id, url, token, auth_scheme, auth_credentials })
            })
            .collect()
    }

    /// Deletes the config `id` of the caller's task `task`; whether one was deleted.
    pub(crate) async fn delete_push_config(&self, scope: &Scope, task: Uuid, id: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "DELETE FROM a2a_push_configs c USING a2a_tasks t \
             WHERE t.tenant_id = c.tenant_id AND t.id = c.task_id \
             AND t.tenant_id = $1 AND t.user_id = $2 AND t.agent_name = $3 AND t.id = $4 AND c.id = $5",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(task)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// What a sealed secret of a push config is bound to: its tenant, task, config and field, so it
/// opens nowhere else.
fn push_aad(tenant: &str, task: Uuid, id: &str, field: &str) -> String {
    // A JSON array: no id (the client's, any text) can make two configs' bindings equal.
    serde_json::json!(["a2a-push", tenant, task.to_string(), id, field]).to_string()
}
