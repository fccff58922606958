//! The engine-mode scheduler. Every replica runs the loop; a schedule fires exactly once per
//! due time because the firing replica takes the schedule row with `FOR UPDATE SKIP LOCKED`,
//! creates the run and moves `next_run_at` forward in the same transaction: another replica
//! either skips the locked row or, after the commit, no longer sees it as due.

use std::sync::Arc;

use chrono::Utc;
use getlood_auth::TenantId;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::engine::{Engine, NewRun};
use crate::error::Result;
use crate::store::{SCHEDULE_COLUMNS, ScheduleRow};

/// Starts the scheduler loop.
pub(crate) fn spawn(engine: Arc<Engine>, tracker: &TaskTracker, shutdown: CancellationToken) {
    tracker.spawn(async move {
        loop {
            loop {
                match fire_one(&engine).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "scheduler tick failed");
                        break;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(engine.settings.scheduler_interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// Fires one due schedule; `false` when none is due.
async fn fire_one(engine: &Engine) -> Result<bool> {
    let mut tx = engine.pool.begin().await?;
    let sql = format!(
        "SELECT tenant_id, {SCHEDULE_COLUMNS} FROM schedules WHERE mode = 'engine' AND next_run_at <= now() \
         ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED"
    );
    let row: Option<(String, ScheduleRow)> = sqlx::query_as::<_, ScheduleWithTenant>(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| (r.tenant_id, r.schedule));
    let Some((tenant, schedule)) = row else { return Ok(false) };
    let now = Utc::now();
    // Missed firings (the service was down) collapse into one: jump to the next future time.
    let mut next = schedule.next_run_at.unwrap_or(now);
    while next <= now {
        next = schedule.advance(next);
    }
    let next = schedule.end_at.filter(|end| next > *end).map_or(Some(next), |_| None);
    sqlx::query("UPDATE schedules SET next_run_at = $3 WHERE tenant_id = $1 AND workflow_id = $2")
        .bind(&tenant)
        .bind(schedule.workflow_id)
        .bind(next)
        .execute(&mut *tx)
        .await?;
    let Ok(tenant) = TenantId::parse(&tenant) else {
        tx.commit().await?;
        return Ok(true);
    };
    let version: Option<(i64,)> = sqlx::query_as(
        "SELECT CASE WHEN $3 = 0 THEN latest_version ELSE $3 END FROM workflows \
         WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
    )
    .bind(tenant.as_str())
    .bind(schedule.workflow_id)
    .bind(schedule.version)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((version,)) = version else {
        tx.commit().await?;
        return Ok(true);
    };
    let graph = engine.graph(tenant.as_str(), schedule.workflow_id, version).await?;
    let run = engine
        .create_run(
            tx,
            NewRun {
                tenant,
                workflow_id: schedule.workflow_id,
                version,
                graph,
                input: schedule.input.clone(),
                mode: "engine",
                trigger: "schedule",
                triggered_by: String::new(),
                timeout: engine.settings.run_timeout,
                request_id: String::new(),
                job_name: String::new(),
            },
        )
        .await?;
    tracing::info!(run_id = %run.run.id, workflow_id = %schedule.workflow_id, "scheduled run started");
    Ok(true)
}

#[derive(sqlx::FromRow)]
struct ScheduleWithTenant {
    tenant_id: String,
    #[sqlx(flatten)]
    schedule: ScheduleRow,
}
