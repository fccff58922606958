//! Postgres persistence of workflows, versions, schedules and run reads. Every statement
//! filters on `tenant_id` (run children are read only after their run passed that filter).

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use getlood_common::sealing::SealingKey;
use getlood_proto::workflow::v1 as pb;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::convert::{json_to_struct, ts, ts_opt};
use crate::error::{Error, Result};
use crate::model::GraphDoc;
use crate::state::{NODE_COLUMNS, NodeRow, RUN_COLUMNS, RunRow, level_proto};

/// Maps a unique violation on the workflow name to ALREADY_EXISTS.
fn name_taken(name: &str) -> impl FnOnce(sqlx::Error) -> Error + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::AlreadyExists(format!("workflow '{}' already exists", name.chars().take(64).collect::<String>()))
        }
        _ => Error::Database(e),
    }
}

/// One workflow version as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct WorkflowRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub version: i64,
    pub graph: Value,
    pub owner: String,
    pub author: String,
    pub comment: String,
    pub node_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const WF_SELECT: &str = "SELECT w.id, v.name, v.description, v.version, v.graph, w.owner, v.author, v.comment, \
     v.node_count, w.created_at, v.created_at AS updated_at FROM workflows w JOIN workflow_versions v \
     ON v.tenant_id = w.tenant_id AND v.workflow_id = w.id";

impl WorkflowRow {
    pub(crate) fn graph_doc(&self) -> Result<GraphDoc> {
        serde_json::from_value(self.graph.clone()).map_err(|e| Error::Internal(format!("stored graph: {e}")))
    }

    pub(crate) fn to_proto(&self, with_graph: bool, schedule: Option<pb::Schedule>) -> Result<pb::Workflow> {
        Ok(pb::Workflow {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            version: self.version,
            // Reads never show a remote node's credentials.
            graph: if with_graph { Some(self.graph_doc()?.redacted().to_proto()) } else { None },
            owner: self.owner.clone(),
            version_author: self.author.clone(),
            version_comment: self.comment.clone(),
            schedule,
            created_at: Some(ts(self.created_at)),
            updated_at: Some(ts(self.updated_at)),
        })
    }
}

/// A stored schedule.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ScheduleRow {
    pub workflow_id: Uuid,
    pub every_count: i32,
    pub unit: String,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub mode: String,
    pub version: i64,
    pub input: Value,
    pub job_name: String,
    pub next_run_at: Option<DateTime<Utc>>,
}

pub(crate) const SCHEDULE_COLUMNS: &str =
    "workflow_id, every_count, unit, start_at, end_at, mode, version, input, job_name, next_run_at";

/// Stored name of a schedule unit.
pub(crate) fn unit_name(u: pb::ScheduleUnit) -> Option<&'static str> {
    Some(match u {
        pb::ScheduleUnit::Minute => "minute",
        pb::ScheduleUnit::Hour => "hour",
        pb::ScheduleUnit::Day => "day",
        pb::ScheduleUnit::Week => "week",
        pb::ScheduleUnit::Month => "month",
        pb::ScheduleUnit::Unspecified => return None,
    })
}

fn unit_proto(u: &str) -> pb::ScheduleUnit {
    match u {
        "minute" => pb::ScheduleUnit::Minute,
        "hour" => pb::ScheduleUnit::Hour,
        "day" => pb::ScheduleUnit::Day,
        "week" => pb::ScheduleUnit::Week,
        "month" => pb::ScheduleUnit::Month,
        _ => pb::ScheduleUnit::Unspecified,
    }
}

impl ScheduleRow {
    pub(crate) fn to_proto(&self) -> pb::Schedule {
        pb::Schedule {
            every_count: self.every_count,
            unit: unit_proto(&self.unit) as i32,
            start_at: ts_opt(self.start_at),
            end_at: ts_opt(self.end_at),
            mode: if self.mode == "mindsdb_job" {
                pb::ExecutionMode::MindsdbJob as i32
            } else {
                pb::ExecutionMode::Engine as i32
            },
            version: self.version,
            input: Some(json_to_struct(self.input.clone())),
            job_name: self.job_name.clone(),
            next_run_at: ts_opt(self.next_run_at),
        }
    }

    /// The firing after `from`.
    pub(crate) fn advance(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        let n = self.every_count.max(1);
        match self.unit.as_str() {
            "month" => from.checked_add_months(chrono::Months::new(n as u32)).unwrap_or(from),
            unit => {
                let secs = match unit {
                    "minute" => 60,
                    "hour" => 3600,
                    "day" => 86_400,
                    _ => 7 * 86_400,
                };
                from + chrono::Duration::seconds(secs * i64::from(n))
            }
        }
    }
}

/// The workflow tables.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    pub pool: PgPool,
    /// Seals remote nodes' credentials in stored graphs (`app.key_encryption_key`).
    pub key: Option<SealingKey>,
}

impl Store {
    /// `graph` as stored: its remote nodes' credentials sealed when the service has a key.
    fn sealed(&self, tenant: &TenantId, id: Uuid, graph: &GraphDoc) -> Result<GraphDoc> {
        let mut graph = graph.clone();
        if let Some(key) = &self.key {
            graph
                .seal_credentials(key, tenant.as_str(), &id.to_string())
                .map_err(|e| Error::Internal(format!("sealing credentials: {e}")))?;
        }
        Ok(graph)
    }

    pub(crate) async fn create(
        &self,
        tenant: &TenantId,
        name: &str,
        description: &str,
        graph: &GraphDoc,
        comment: &str,
        owner: &str,
    ) -> Result<WorkflowRow> {
        let mut tx = self.pool.begin().await?;
        let id = Uuid::now_v7();
        sqlx::query("INSERT INTO workflows (tenant_id, id, name, owner) VALUES ($1, $2, $3, $4)")
            .bind(tenant.as_str())
            .bind(id)
            .bind(name)
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(name_taken(name))?;
        let graph = self.sealed(tenant, id, graph)?;
        insert_version(&mut tx, tenant, id, 1, name, description, &graph, owner, comment).await?;
        tx.commit().await?;
        self.get(tenant, id, 0).await?.ok_or_else(|| Error::Internal("created workflow vanished".to_owned()))
    }

    /// Adds version `latest + 1`. Credentials the graph leaves as "[redacted]" (as reads show
    /// them) keep their values in the latest version, read under the same lock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update(
        &self,
        tenant: &TenantId,
        id: Uuid,
        expected: i64,
        name: Option<&str>,
        description: Option<&str>,
        graph: &GraphDoc,
        comment: &str,
        author: &str,
    ) -> Result<WorkflowRow> {
        let mut tx = self.pool.begin().await?;
        let current = lock(&mut tx, tenant, id).await?.ok_or_else(|| Error::not_found("workflow", &id.to_string()))?;
        if expected != 0 && expected != current.version {
            return Err(Error::Aborted {
                message: format!(
                    "workflow changed: its version is {}, the request expected {expected}; re-read and retry",
                    current.version
                ),
                current_version: current.version,
            });
        }
        let mut graph = graph.clone();
        let mut previous = current.graph_doc()?;
        previous.open_credentials(self.key.as_ref(), tenant.as_str(), &id.to_string()).map_err(Error::Internal)?;
        let problems = graph.restore_credentials(Some(&previous));
        if !problems.is_empty() {
            return Err(Error::violations("invalid workflow graph", problems));
        }
        let graph = &self.sealed(tenant, id, &graph)?;
        let name = name.unwrap_or(&current.name);
        let description = description.unwrap_or(&current.description);
        let version = current.version + 1;
        sqlx::query("UPDATE workflows SET name = $3, latest_version = $4 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(name_taken(name))?;
        insert_version(&mut tx, tenant, id, version, name, description, graph, author, comment).await?;
        tx.commit().await?;
        self.get(tenant, id, version).await?.ok_or_else(|| Error::Internal("updated workflow vanished".to_owned()))
    }

    /// A version (0: the latest) of a workflow that is not deleted.
    pub(crate) async fn get(&self, tenant: &TenantId, id: Uuid, version: i64) -> Result<Option<WorkflowRow>> {
        let sql = format!(
            "{WF_SELECT} AND v.version = CASE WHEN $3 = 0 THEN w.latest_version ELSE $3 END \
             WHERE w.tenant_id = $1 AND w.id = $2 AND w.deleted_at IS NULL"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub(crate) async fn list(&self, tenant: &TenantId, after: &str, limit: i64) -> Result<Vec<WorkflowRow>> {
        let sql = format!(
            "{WF_SELECT} AND v.version = w.latest_version WHERE w.tenant_id = $1 AND w.deleted_at IS NULL \
             AND w.name > $2 ORDER BY w.name LIMIT $3"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Versions below `before` (0: all), newest first.
    pub(crate) async fn versions(
        &self,
        tenant: &TenantId,
        id: Uuid,
        before: i64,
        limit: i64,
    ) -> Result<Vec<WorkflowRow>> {
        let sql = format!(
            "{WF_SELECT} WHERE w.tenant_id = $1 AND w.id = $2 AND w.deleted_at IS NULL \
             AND ($3 = 0 OR v.version < $3) ORDER BY v.version DESC LIMIT $4"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id)
            .bind(before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Soft-deletes a workflow and removes its schedule (returned, to drop its MindsDB job).
    pub(crate) async fn delete(&self, tenant: &TenantId, id: Uuid, expected: i64) -> Result<Option<ScheduleRow>> {
        let mut tx = self.pool.begin().await?;
        let current = lock(&mut tx, tenant, id).await?.ok_or_else(|| Error::not_found("workflow", &id.to_string()))?;
        if expected != 0 && expected != current.version {
            return Err(Error::Aborted {
                message: format!(
                    "workflow changed: its version is {}, the request expected {expected}",
                    current.version
                ),
                current_version: current.version,
            });
        }
        sqlx::query("UPDATE workflows SET deleted_at = now() WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let sql =
            format!("DELETE FROM schedules WHERE tenant_id = $1 AND workflow_id = $2 RETURNING {SCHEDULE_COLUMNS}");
        let schedule: Option<ScheduleRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id).fetch_optional(&mut *tx).await?;
        tx.commit().await?;
        Ok(schedule)
    }

    pub(crate) async fn schedule(&self, tenant: &TenantId, id: Uuid) -> Result<Option<ScheduleRow>> {
        let sql = format!("SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE tenant_id = $1 AND workflow_id = $2");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id).fetch_optional(&self.pool).await?)
    }

    pub(crate) async fn put_schedule(&self, tenant: &TenantId, row: &ScheduleRow, user: &str) -> Result<ScheduleRow> {
        let sql = format!(
            "INSERT INTO schedules (tenant_id, {SCHEDULE_COLUMNS}, created_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) \
             ON CONFLICT (tenant_id, workflow_id) DO UPDATE SET every_count = EXCLUDED.every_count, unit = EXCLUDED.unit, \
             start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at, mode = EXCLUDED.mode, version = EXCLUDED.version, \
             input = EXCLUDED.input, job_name = EXCLUDED.job_name, next_run_at = EXCLUDED.next_run_at, \
             created_by = EXCLUDED.created_by RETURNING {SCHEDULE_COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(row.workflow_id)
            .bind(row.every_count)
            .bind(&row.unit)
            .bind(row.start_at)
            .bind(row.end_at)
            .bind(&row.mode)
            .bind(row.version)
            .bind(&row.input)
            .bind(&row.job_name)
            .bind(row.next_run_at)
            .bind(user)
            .fetch_one(&self.pool)
            .await?)
    }

    pub(crate) async fn delete_schedule(&self, tenant: &TenantId, id: Uuid) -> Result<Option<ScheduleRow>> {
        let sql =
            format!("DELETE FROM schedules WHERE tenant_id = $1 AND workflow_id = $2 RETURNING {SCHEDULE_COLUMNS}");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id).fetch_optional(&self.pool).await?)
    }

    /// A run of `tenant` with its nodes.
    pub(crate) async fn run(&self, tenant: &TenantId, id: Uuid) -> Result<Option<(RunRow, Vec<NodeRow>)>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND tenant_id = $2");
        let run: Option<RunRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).bind(tenant.as_str()).fetch_optional(&self.pool).await?;
        let Some(run) = run else { return Ok(None) };
        let sql = format!("SELECT {NODE_COLUMNS} FROM node_runs WHERE run_id = $1 ORDER BY ordinal");
        let nodes = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(&self.pool).await?;
        Ok(Some((run, nodes)))
    }

    /// A run by the idempotency key of its ExecuteWorkflow call.
    pub(crate) async fn run_by_request(
        &self,
        tenant: &TenantId,
        workflow: Uuid,
        request_id: &str,
    ) -> Result<Option<Uuid>> {
        let row: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND request_id = $3")
                .bind(tenant.as_str())
                .bind(workflow)
                .bind(request_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    /// A page of runs, newest first, strictly older than the cursor `(created_at, id)`.
    pub(crate) async fn runs(
        &self,
        tenant: &TenantId,
        workflow: Option<Uuid>,
        statuses: &[String],
        cursor: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE tenant_id = $1 AND ($2::uuid IS NULL OR workflow_id = $2) \
             AND (cardinality($3::text[]) = 0 OR status = ANY($3)) \
             AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5)) ORDER BY created_at DESC, id DESC LIMIT $6"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(workflow)
            .bind(statuses)
            .bind(cursor.map(|c| c.0))
            .bind(cursor.map(|c| c.1).unwrap_or_default())
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

    /// A run's persisted log lines, in order.
    pub(crate) async fn logs(&self, run: Uuid) -> Result<Vec<pb::LogEntry>> {
        let rows: Vec<(DateTime<Utc>, String, i32, String, String, Value)> = sqlx::query_as(
            "SELECT logged_at, node_id, attempt, level, message, fields FROM run_logs WHERE run_id = $1 ORDER BY sequence",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(at, node_id, attempt, level, message, fields)| pb::LogEntry {
                logged_at: Some(ts(at)),
                node_id,
                attempt,
                level: level_proto(&level) as i32,
                message,
                fields: Some(json_to_struct(fields)),
            })
            .collect())
    }

    /// Marks run `id` of `tenant` as followed by a WatchRun stream for the next minute, so its
    /// commits notify the other replicas (see `WRITE_TAIL` in state.rs); a stream calls this
    /// before it reads the run's items and again with every heartbeat (15 s). A mark with more
    /// than half a minute left is kept as is, so streams of one run rarely take its row lock.
    pub(crate) async fn watch(&self, tenant: &TenantId, id: Uuid) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET watched_until = now() + interval '60 seconds' \
             WHERE id = $1 AND tenant_id = $2 AND status NOT IN ('succeeded', 'failed', 'cancelled') \
             AND (watched_until IS NULL OR watched_until < now() + interval '30 seconds')",
        )
        .bind(id)
        .bind(tenant.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Encoded WatchRun items of a run from `from` on.
    pub(crate) async fn events(&self, run: Uuid, from: i64, limit: i64) -> Result<Vec<(i64, Vec<u8>)>> {
        Ok(sqlx::query_as(
            "SELECT sequence, body FROM run_events WHERE run_id = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3",
        )
        .bind(run)
        .bind(from)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether the workflow has (had) a MindsDB job: a job-mode schedule or job-mode runs.
    pub(crate) async fn job_names(&self, tenant: &TenantId, id: Uuid) -> Result<Vec<(String, Option<Uuid>)>> {
        let rows: Vec<(String, Option<Uuid>)> = sqlx::query_as(
            "SELECT job_name, id FROM runs WHERE tenant_id = $1 AND workflow_id = $2 AND mode = 'mindsdb_job' AND job_name <> '' \
             UNION ALL SELECT job_name, NULL FROM schedules WHERE tenant_id = $1 AND workflow_id = $2 AND mode = 'mindsdb_job'",
        )
        .bind(tenant.as_str())
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

async fn lock(tx: &mut Transaction<'static, Postgres>, tenant: &TenantId, id: Uuid) -> Result<Option<WorkflowRow>> {
    let sql = format!(
        "{WF_SELECT} AND v.version = w.latest_version WHERE w.tenant_id = $1 AND w.id = $2 AND w.deleted_at IS NULL \
         FOR UPDATE OF w"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id).fetch_optional(&mut **tx).await?)
}

#[allow(clippy::too_many_arguments)]
async fn insert_version(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    id: Uuid,
    version: i64,
    name: &str,
    description: &str,
    graph: &GraphDoc,
    author: &str,
    comment: &str,
) -> Result<()> {
    let json = serde_json::to_value(graph).map_err(|e| Error::Internal(format!("graph json: {e}")))?;
    sqlx::query(
        "INSERT INTO workflow_versions (tenant_id, workflow_id, version, name, description, graph, author, comment, node_count) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .bind(name)
    .bind(description)
    .bind(json)
    .bind(author)
    .bind(comment)
    .bind(graph.nodes.len() as i32)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
