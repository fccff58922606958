//! The A2A tasks in the gateway's own Postgres schema (`migrations/0001_a2a_tasks.sql`). Every
//! query is scoped by tenant, user and agent: a task of anyone else is simply not there.
//! State changes are conditional on the task not being terminal, so a cancel and the end of a
//! turn racing on two replicas leave exactly one outcome.

use chrono::{DateTime, SecondsFormat, Utc};
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

/// The task store.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: PgPool,
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
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Stores a new task.
    pub(crate) async fn insert(&self, scope: &Scope, row: &TaskRow) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO a2a_tasks (tenant_id, id, user_id, agent_name, context_id, conversation_id, turn_id, state, \
             status_message, history, artifacts, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
        )
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
        .execute(&self.pool)
        .await?;
        Ok(())
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
        let done = sqlx::query(
            "UPDATE a2a_tasks SET state = $5, status_message = $6, history = COALESCE($7, history), updated_at = now() \
             WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 AND id = $4 \
             AND state NOT IN ('TASK_STATE_COMPLETED', 'TASK_STATE_FAILED', 'TASK_STATE_CANCELED', 'TASK_STATE_REJECTED') \
             AND ($8::text IS NULL OR state = $8)",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(id)
        .bind(to)
        .bind(message)
        .bind(history)
        .bind(only_from)
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
             turn_id = CASE WHEN $10 = '' THEN turn_id ELSE $10 END, updated_at = now() \
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

    /// Fails the caller's running tasks of the agent that were last updated before `before`:
    /// no turn lasts that long, so the replica that ran them stopped. Returns how many.
    pub(crate) async fn fail_orphans(
        &self,
        scope: &Scope,
        before: DateTime<Utc>,
        message: &Value,
    ) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE a2a_tasks SET state = $4, status_message = $5, updated_at = now() \
             WHERE tenant_id = $1 AND user_id = $2 AND agent_name = $3 \
             AND state IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING') AND updated_at < $6",
        )
        .bind(&scope.tenant)
        .bind(&scope.user)
        .bind(&scope.agent)
        .bind(state::FAILED)
        .bind(message)
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
