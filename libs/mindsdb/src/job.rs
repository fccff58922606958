//! Job adapter: MindsDB JOBs (scheduled SQL) in the tenant's project. Owned by the workflow
//! service for scheduled workflows.
//!
//! MindsDB stores a job's body as SQL text and runs it later, without the request's `params`,
//! so bound values are written as checked literals ([`crate::sql::Sql::to_inline`]) and values
//! containing `{{`/`}}` are refused (MindsDB substitutes `{{START_DATETIME}}`-style templates
//! in bodies). There is no "run now" in 26.1: [`JobAdapter::run_once`] creates a job without a
//! schedule, which MindsDB runs at its next check (`jobs.check_interval`, default 30 s, plus
//! 1-10 s) and then deletes.

use chrono::NaiveDateTime;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{MindsdbClient, RestPath, Retry, TenantContext};
use crate::error::{MindsdbError, Result};
use crate::sql::{Ident, Sql, SqlBuilder};

/// Unit of a job's repeat interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleUnit {
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Days.
    Day,
    /// Weeks.
    Week,
    /// Months.
    Month,
}

impl ScheduleUnit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// `EVERY <n> <unit>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How many units between runs (at least 1).
    pub every: u32,
    /// The unit.
    pub unit: ScheduleUnit,
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Job name in the tenant's project.
    pub name: Ident,
    /// Statements run in order at each run (built with [`SqlBuilder`]).
    pub body: Vec<Sql>,
    /// Repeat interval; `None` runs once.
    pub schedule: Option<Schedule>,
    /// First run (MindsDB's local time); `None` is now.
    pub start: Option<NaiveDateTime>,
    /// No runs after this (ignored by MindsDB without a schedule).
    pub end: Option<NaiveDateTime>,
}

/// A job as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// Name.
    pub name: String,
    /// Body as stored.
    pub query: String,
    /// `every 1 hour`, or `None` for a one-off job.
    pub schedule: Option<String>,
    /// First run.
    pub start_at: Option<String>,
    /// Last allowed run.
    pub end_at: Option<String>,
    /// Next planned run.
    pub next_run_at: Option<String>,
}

/// One run from `log.jobs_history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    /// Job name.
    pub name: String,
    /// Start time.
    pub run_start: Option<String>,
    /// End time; `None` while running.
    pub run_end: Option<String>,
    /// Error text of a failed run.
    pub error: Option<String>,
    /// The body as run (templates filled).
    pub query: Option<String>,
}

/// Creates, lists, deletes and runs the tenant's jobs and reads their history.
#[derive(Debug, Clone)]
pub struct JobAdapter {
    client: MindsdbClient,
}

const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

impl JobAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    fn base(ctx: &TenantContext) -> RestPath {
        RestPath::new("/api/projects").id(&ctx.project()).fixed("/jobs")
    }

    /// Renders the body: every statement inlined and checked, joined with `;`.
    fn render_body(body: &[Sql]) -> Result<String> {
        if body.is_empty() {
            return Err(MindsdbError::InvalidArgument("a job needs at least one statement".to_owned()));
        }
        let mut parts = Vec::with_capacity(body.len());
        for sql in body {
            for v in sql.params().values() {
                if let Value::String(s) = v
                    && (s.contains("{{") || s.contains("}}"))
                {
                    return Err(MindsdbError::InvalidArgument(
                        "job values must not contain '{{' or '}}' (mindsdb template markers)".to_owned(),
                    ));
                }
            }
            parts.push(sql.to_inline()?);
        }
        Ok(parts.join("; "))
    }

    /// Creates a job.
    pub async fn create(&self, ctx: &TenantContext, spec: &JobSpec) -> Result<JobInfo> {
        let query = Self::render_body(&spec.body)?;
        let schedule = match spec.schedule {
            Some(s) if s.every == 0 => {
                return Err(MindsdbError::InvalidArgument("schedule interval must be at least 1".to_owned()));
            }
            Some(s) => Some(format!("every {} {}", s.every, s.unit.as_str())),
            None => None,
        };
        if let (Some(start), Some(end)) = (spec.start, spec.end)
            && end < start
        {
            return Err(MindsdbError::InvalidArgument("job end is before its start".to_owned()));
        }
        // The REST route takes the schedule as JSON fields, so only the body is SQL text.
        // `start_at`/`end_at` must be present even when null: 26.1 answers 500 `KeyError 'start_at'`.
        let body = json!({"job": {
            "name": spec.name.as_str(),
            "query": query,
            "start_at": spec.start.map(|d| d.format(DATE_FORMAT).to_string()),
            "end_at": spec.end.map(|d| d.format(DATE_FORMAT).to_string()),
            "schedule_str": schedule,
        }});
        let v = self
            .client
            .rest(ctx, "job.create", Method::POST, &Self::base(ctx), Some(&body), Retry::OnlyIfUnsent)
            .await?;
        Ok(info_from_json(&v))
    }

    /// Runs `body` once, as soon as MindsDB's scheduler next checks (seconds with a short
    /// `jobs.check_interval`); returns the generated job name, which appears in
    /// [`JobAdapter::history`].
    pub async fn run_once(&self, ctx: &TenantContext, prefix: &Ident, body: Vec<Sql>) -> Result<Ident> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        // Keep the prefix short enough that prefix + `_once_` + 12 hex stays a valid name.
        let prefix: String = prefix.as_str().chars().take(40).collect();
        let name = Ident::new(&format!("{prefix}_once_{}", &suffix[..12]))?;
        let spec = JobSpec { name: name.clone(), body, schedule: None, start: None, end: None };
        self.create(ctx, &spec).await?;
        Ok(name)
    }

    /// The tenant's jobs.
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<JobInfo>> {
        let v = self.client.rest(ctx, "job.list", Method::GET, &Self::base(ctx), None, Retry::Idempotent).await?;
        Ok(v.as_array().map(|a| a.iter().map(info_from_json).collect()).unwrap_or_default())
    }

    /// One job; `NotFound` if absent.
    pub async fn get(&self, ctx: &TenantContext, name: &Ident) -> Result<JobInfo> {
        let v =
            self.client.rest(ctx, "job.get", Method::GET, &Self::base(ctx).id(name), None, Retry::Idempotent).await?;
        Ok(info_from_json(&v))
    }

    /// Runs of `name` (or of every job when `None`), oldest first, from `log.jobs_history`.
    pub async fn history(&self, ctx: &TenantContext, name: Option<&Ident>) -> Result<Vec<JobRun>> {
        let mut b = SqlBuilder::new()
            .kw("SELECT name, run_start, run_end, error, query FROM")
            .qualified(&log_db(), &history_table())
            .kw("WHERE project =")
            .value(ctx.project().as_str());
        if let Some(n) = name {
            b = b.kw("AND name =").value(n.as_str());
        }
        let sql = b.kw("ORDER BY run_start").build();
        let t = self.client.query_idempotent(ctx, "job.history", &sql).await?.into_table();
        Ok(t.rows
            .iter()
            .map(|r| JobRun {
                name: t.text(r, "name").unwrap_or_default(),
                run_start: t.text(r, "run_start"),
                run_end: t.text(r, "run_end"),
                error: t.text(r, "error"),
                query: t.text(r, "query"),
            })
            .collect())
    }

    /// Deletes a job; `NotFound` if absent.
    pub async fn delete(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP JOB").qualified(&ctx.project(), name).build();
        self.client.query(ctx, "job.delete", &sql).await?;
        Ok(())
    }
}

fn log_db() -> Ident {
    Ident::new("log").unwrap_or_else(|_| unreachable!("constant identifier"))
}

fn history_table() -> Ident {
    Ident::new("jobs_history").unwrap_or_else(|_| unreachable!("constant identifier"))
}

fn info_from_json(v: &Value) -> JobInfo {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    JobInfo {
        name: s("name").unwrap_or_default(),
        query: s("query").unwrap_or_default(),
        schedule: s("schedule_str"),
        start_at: s("start_at"),
        end_at: s("end_at"),
        next_run_at: s("next_run_at"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_inlined_and_template_markers_refused() {
        let t = Ident::new("t").unwrap();
        let ok = SqlBuilder::new().kw("SELECT * FROM").ident(&t).kw("WHERE a =").value("it's; ok").build();
        assert_eq!(JobAdapter::render_body(&[ok]).unwrap(), "SELECT * FROM `t` WHERE a = 'it''s; ok'");
        let bad = SqlBuilder::new().kw("SELECT").value("{{START_DATETIME}}").build();
        assert!(matches!(JobAdapter::render_body(&[bad]), Err(MindsdbError::InvalidArgument(_))));
        assert!(JobAdapter::render_body(&[]).is_err());
    }
}
