//! `getlood.workflow.v1.WorkflowService`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::Stream;
use getlood_auth::{Principal, TenantId};
use getlood_common::paging::page_size;
use getlood_mindsdb::{Ident, JobSpec, ProjectAdapter, Schedule, ScheduleUnit, TenantContext};
use getlood_proto::common::v1::PageResponse;
use getlood_proto::workflow::v1 as pb;
use getlood_proto::workflow::v1::workflow_service_server::WorkflowService;
use prost::Message as _;
use serde_json::Value;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::agents::AgentDirectory;
use crate::convert::{from_ts, opt_struct_to_json};
use crate::engine::{Engine, NewRun, RunTxView};
use crate::error::Error;
use crate::jobmode::{compile, job_prefix};
use crate::model::{Graph, GraphDoc, Limits, validate};
use crate::state::{run_is_final, run_status_name};
use crate::store::{ScheduleRow, Store, WorkflowRow, unit_name};

/// The service behind the gRPC API.
pub(crate) struct Service {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub projects: ProjectAdapter,
    /// What agent nodes' names stand for: checked when a graph is validated or saved, pinned
    /// for MindsDB jobs, recorded for runs when they are started.
    pub agents: AgentDirectory,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRunResponse, Status>> + Send>>;

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    getlood_server::principal(req).cloned()
}

/// A page token of the list `kind` ([`getlood_common::paging`]).
fn encode_token(kind: &str, position: &str) -> String {
    getlood_common::paging::encode_page_token(kind, position)
}

/// The position of a page token of the list `kind`, empty for the first page.
fn decode_token(kind: &str, token: &str) -> Result<String, Error> {
    Ok(getlood_common::paging::decode_page_token(kind, token)?.unwrap_or_default())
}

/// A malformed id cannot name an object of this tenant: NOT_FOUND, like any unknown id.
fn parse_id(what: &str, id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::not_found(what, id))
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "must be 1-128 characters without control characters"));
    }
    Ok(())
}

fn graph_of(graph: Option<&pb::Graph>, limits: &Limits) -> Result<Graph, Error> {
    let graph = graph.ok_or_else(|| Error::invalid("graph", "is required"))?;
    Graph::build(GraphDoc::from_proto(graph), limits).map_err(|v| Error::violations("invalid workflow graph", v))
}

/// Every problem of `graph` as [`graph_of`] finds them, with the tenant's agents checked too
/// (`p`'s token asks the registry for what this service has not heard of).
async fn checked_graph(
    graph: Option<&pb::Graph>,
    limits: &Limits,
    agents: &AgentDirectory,
    p: &Principal,
) -> Result<Graph, Error> {
    let built = graph_of(graph, limits);
    let doc = match &built {
        Ok(g) => g.doc.clone(),
        Err(Error::InvalidArgument { .. }) => graph.map(GraphDoc::from_proto).unwrap_or_default(),
        Err(_) => return built,
    };
    let unknown = agents.problems(p, &doc).await?;
    match built {
        Ok(g) if unknown.is_empty() => Ok(g),
        Ok(_) => Err(Error::violations("invalid workflow graph", unknown)),
        Err(Error::InvalidArgument { mut violations, .. }) => {
            violations.extend(unknown);
            Err(Error::violations("invalid workflow graph", violations))
        }
        Err(e) => Err(e),
    }
}

fn ctx(tenant: &TenantId, user: &str) -> TenantContext {
    TenantContext::new(tenant.clone(), user)
}

/// Checks `input` against the start node's `input_schema` (`required` and property `type`s).
fn check_input(graph: &Graph, input: &Value) -> Result<(), Error> {
    let start = graph.start();
    let node = graph.doc.nodes.iter().find(|n| n.id == start.id);
    let Some(schema) = node.and_then(|n| n.data.get("input_schema")) else { return Ok(()) };
    let mut problems = Vec::new();
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if input.get(r).is_none() {
                problems.push(getlood_proto::common::v1::FieldViolation {
                    field: format!("input.{r}"),
                    subject: start.id.clone(),
                    description: "is required by the start node's input_schema".to_owned(),
                });
            }
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let (Some(v), Some(ty)) = (input.get(k), p.get("type").and_then(Value::as_str)) else { continue };
            let ok = match ty {
                "string" => v.is_string(),
                "number" => v.is_number(),
                "integer" => v.as_f64().is_some_and(|f| f.fract() == 0.0),
                "boolean" => v.is_boolean(),
                "object" => v.is_object(),
                "array" => v.is_array(),
                _ => true,
            };
            if !ok {
                problems.push(getlood_proto::common::v1::FieldViolation {
                    field: format!("input.{k}"),
                    subject: start.id.clone(),
                    description: format!("must be of type {ty}"),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::violations("input does not match the start node's input_schema", problems))
    }
}

fn run_response(view: &RunTxView) -> pb::Run {
    view.run.to_proto(&view.nodes, false)
}

impl Service {
    async fn workflow(&self, tenant: &TenantId, id: &str, version: i64) -> Result<WorkflowRow, Error> {
        let uuid = parse_id("workflow", id)?;
        self.store.get(tenant, uuid, version).await?.ok_or_else(|| {
            if version == 0 {
                Error::not_found("workflow", id)
            } else {
                Error::not_found("workflow version", &format!("{id}@{version}"))
            }
        })
    }

    async fn with_schedule(
        &self,
        tenant: &TenantId,
        row: &WorkflowRow,
        with_graph: bool,
    ) -> Result<pb::Workflow, Error> {
        let schedule = self.store.schedule(tenant, row.id).await?.map(|s| s.to_proto());
        row.to_proto(with_graph, schedule)
    }

    async fn run_view(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<(crate::state::RunRow, Vec<crate::state::NodeRow>), Error> {
        let uuid = parse_id("run", id)?;
        self.store.run(tenant, uuid).await?.ok_or_else(|| Error::not_found("run", id))
    }

    async fn execute(&self, p: &Principal, req: pb::ExecuteWorkflowRequest) -> Result<pb::Run, Error> {
        let wf = self.workflow(&p.tenant, &req.workflow_id, req.version).await?;
        if !req.request_id.is_empty()
            && let Some(existing) = self.store.run_by_request(&p.tenant, wf.id, &req.request_id).await?
        {
            let (run, nodes) = self.run_view(&p.tenant, &existing.to_string()).await?;
            return Ok(run.to_proto(&nodes, false));
        }
        let graph = self.engine.graph(p.tenant.as_str(), wf.id, wf.version).await?;
        let input = opt_struct_to_json(req.input.as_ref());
        check_input(&graph, &input)?;
        let timeout = match req.timeout {
            Some(d) if d.seconds < 0 || (d.seconds == 0 && d.nanos <= 0) => {
                return Err(Error::invalid("timeout", "must be positive"));
            }
            Some(d) => {
                let timeout = Duration::new(d.seconds as u64, d.nanos.max(0) as u32);
                // A run's deadline is stored as a time: an unbounded timeout overflowed it (a
                // panic), and a run that never expires holds its resources forever.
                if timeout > crate::MAX_RUN_TIMEOUT {
                    return Err(Error::invalid(
                        "timeout",
                        format!("must be at most {}s (7 days)", crate::MAX_RUN_TIMEOUT.as_secs()),
                    ));
                }
                timeout
            }
            None => self.engine.settings.run_timeout,
        };
        let mode = pb::ExecutionMode::try_from(req.mode).unwrap_or_default();
        // With the caller's token at hand, the agents the run will ask are looked up now, so
        // its nodes find them in the directory when they run (which they do without a token).
        let agents = self.agents.pin(p, &graph.nodes).await;
        if let Err(e) = &agents
            && mode != pb::ExecutionMode::MindsdbJob
        {
            // The run starts anyway: its agent node fails with the directory's answer.
            tracing::info!(error = %e, "agents of the run not looked up");
        }
        let job_name = if mode == pb::ExecutionMode::MindsdbJob {
            let c = ctx(&p.tenant, &p.user);
            let body = compile(&graph, &c.project(), &input, &self.engine.sql_policy, &agents?)
                .map_err(Error::FailedPrecondition)?;
            self.projects.ensure(&c).await?;
            let prefix = Ident::new(&job_prefix(&wf.id)).map_err(Error::Mindsdb)?;
            self.engine.jobs.run_once(&c, &prefix, body).await?.as_str().to_owned()
        } else {
            String::new()
        };
        let tx = self.engine.pool.begin().await?;
        let run = self
            .engine
            .create_run(
                tx,
                NewRun {
                    tenant: p.tenant.clone(),
                    workflow_id: wf.id,
                    version: wf.version,
                    graph: graph.clone(),
                    input,
                    mode: if job_name.is_empty() { "engine" } else { "mindsdb_job" },
                    trigger: "manual",
                    triggered_by: p.user.clone(),
                    timeout,
                    request_id: req.request_id.clone(),
                    job_name,
                },
            )
            .await;
        let run = match run {
            Ok(r) => r,
            // A concurrent retry with the same request id won the insert: answer with its run.
            Err(Error::Database(sqlx::Error::Database(db)))
                if db.is_unique_violation() && !req.request_id.is_empty() =>
            {
                let id = self
                    .store
                    .run_by_request(&p.tenant, wf.id, &req.request_id)
                    .await?
                    .ok_or_else(|| Error::Internal("run vanished after a request id conflict".to_owned()))?;
                let (run, nodes) = self.run_view(&p.tenant, &id.to_string()).await?;
                return Ok(run.to_proto(&nodes, false));
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(tenant = %p.tenant, run_id = %run.run.id, workflow_id = %wf.id, version = wf.version, mode = %run.run.mode, "run created");
        Ok(run_response(&run))
    }

    async fn schedule(&self, p: &Principal, req: pb::ScheduleWorkflowRequest) -> Result<pb::Schedule, Error> {
        let s = req.schedule.ok_or_else(|| Error::invalid("schedule", "is required"))?;
        let mut problems = Vec::new();
        let mut bad = |field: &str, d: &str| {
            problems.push(getlood_proto::common::v1::FieldViolation {
                field: field.to_owned(),
                subject: String::new(),
                description: d.to_owned(),
            })
        };
        if s.every_count < 1 {
            bad("schedule.every_count", "must be at least 1");
        }
        let unit = unit_name(pb::ScheduleUnit::try_from(s.unit).unwrap_or_default());
        if unit.is_none() {
            bad("schedule.unit", "is required");
        }
        let start = s.start_at.as_ref().and_then(from_ts);
        let end = s.end_at.as_ref().and_then(from_ts);
        if let (Some(a), Some(b)) = (start, end)
            && b <= a
        {
            bad("schedule.end_at", "must be after start_at");
        }
        if !problems.is_empty() {
            return Err(Error::violations("invalid schedule", problems));
        }
        let unit = unit.unwrap_or("hour");
        let wf = self.workflow(&p.tenant, &req.workflow_id, s.version).await?;
        let mode = pb::ExecutionMode::try_from(s.mode).unwrap_or_default();
        let input = opt_struct_to_json(s.input.as_ref());
        let graph = self.engine.graph(p.tenant.as_str(), wf.id, wf.version).await?;
        check_input(&graph, &input)?;
        let c = ctx(&p.tenant, &p.user);
        // Replacing a schedule replaces its MindsDB job too.
        if let Some(old) = self.store.schedule(&p.tenant, wf.id).await? {
            self.drop_job(&c, &old).await;
        }
        let mut row = ScheduleRow {
            workflow_id: wf.id,
            every_count: s.every_count,
            unit: unit.to_owned(),
            start_at: start,
            end_at: end,
            mode: if mode == pb::ExecutionMode::MindsdbJob { "mindsdb_job" } else { "engine" }.to_owned(),
            version: s.version,
            input: input.clone(),
            job_name: String::new(),
            next_run_at: None,
        };
        // Engine-mode schedules run without a token: the agents are looked up now (as at
        // execute), and a job's SQL must name their MindsDB agents.
        let agents = self.agents.pin(p, &graph.nodes).await;
        if mode == pb::ExecutionMode::MindsdbJob {
            let body = compile(&graph, &c.project(), &input, &self.engine.sql_policy, &agents?)
                .map_err(Error::FailedPrecondition)?;
            self.projects.ensure(&c).await?;
            let name = Ident::new(&job_prefix(&wf.id)).map_err(Error::Mindsdb)?;
            let unit = match unit {
                "minute" => ScheduleUnit::Minute,
                "hour" => ScheduleUnit::Hour,
                "day" => ScheduleUnit::Day,
                "week" => ScheduleUnit::Week,
                _ => ScheduleUnit::Month,
            };
            let info = self
                .engine
                .jobs
                .create(
                    &c,
                    &JobSpec {
                        name: name.clone(),
                        body,
                        schedule: Some(Schedule { every: s.every_count as u32, unit }),
                        start: start.map(|t| t.naive_utc()),
                        end: end.map(|t| t.naive_utc()),
                    },
                )
                .await?;
            row.job_name = name.as_str().to_owned();
            row.next_run_at = info
                .next_run_at
                .as_deref()
                .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
                .map(|t| t.and_utc());
        } else {
            row.next_run_at = Some(start.unwrap_or_else(Utc::now));
        }
        Ok(self.store.put_schedule(&p.tenant, &row, &p.user).await?.to_proto())
    }

    async fn drop_job(&self, c: &TenantContext, schedule: &ScheduleRow) {
        if schedule.mode != "mindsdb_job" || schedule.job_name.is_empty() {
            return;
        }
        let Ok(name) = Ident::new(&schedule.job_name) else { return };
        match self.engine.jobs.delete(c, &name).await {
            Ok(()) => {}
            Err(e) if e.code() == getlood_common::ErrorCode::NotFound => {}
            Err(e) => tracing::warn!(job = %schedule.job_name, error = %e, "cannot drop mindsdb job"),
        }
    }

    async fn job_history(
        &self,
        p: &Principal,
        req: pb::GetJobHistoryRequest,
    ) -> Result<pb::GetJobHistoryResponse, Error> {
        let wf = self.workflow(&p.tenant, &req.workflow_id, 0).await?;
        let show_queries = getlood_auth::allows(&p.roles, getlood_auth::Permission::UsersRead);
        let names = self.store.job_names(&p.tenant, wf.id).await?;
        if names.is_empty() {
            return Err(Error::FailedPrecondition("the workflow has no mindsdb job".to_owned()));
        }
        let page = req.page.unwrap_or_default();
        let limit = usize::try_from(page_size(page.page_size)?).unwrap_or(0);
        let offset: usize = match decode_token("job_history", &page.page_token)? {
            t if t.is_empty() => 0,
            t => t.parse().map_err(|_| Error::invalid("page.page_token", "is not a token this API returned"))?,
        };
        let c = ctx(&p.tenant, &p.user);
        let prefix = job_prefix(&wf.id);
        let mut rows: Vec<_> =
            self.engine.jobs.history(&c, None).await?.into_iter().filter(|h| h.name.starts_with(&prefix)).collect();
        rows.reverse();
        let total = rows.len();
        let parse = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
                .map(|t| crate::convert::ts(t.and_utc()))
        };
        let entries = rows
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|h| pb::JobHistoryEntry {
                run_id: names
                    .iter()
                    .find(|(n, _)| *n == h.name)
                    .and_then(|(_, r)| *r)
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                job_name: h.name.clone(),
                run_start: parse(&h.run_start),
                run_end: parse(&h.run_end),
                // MindsDB's error text and the job's SQL are internals: a caller sees the kind of
                // failure; the query only with users.read (admins), for debugging schedules.
                error: h.error.as_deref().filter(|e| !e.is_empty()).map(public_job_error).unwrap_or_default(),
                query: if show_queries { h.query.clone().unwrap_or_default() } else { String::new() },
            })
            .collect::<Vec<_>>();
        let next = if offset + entries.len() < total {
            encode_token("job_history", &(offset + entries.len()).to_string())
        } else {
            String::new()
        };
        Ok(pb::GetJobHistoryResponse {
            entries,
            page: Some(PageResponse { next_page_token: next, total_size: total as i64 }),
        })
    }
}

#[tonic::async_trait]
impl WorkflowService for Service {
    async fn validate_workflow(
        &self,
        req: Request<pb::ValidateWorkflowRequest>,
    ) -> Result<Response<pb::ValidateWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let graph = req.into_inner().graph.unwrap_or_default();
        let doc = GraphDoc::from_proto(&graph);
        let mut problems = validate(&doc, &self.engine.limits);
        problems.extend(self.agents.problems(&p, &doc).await?);
        Ok(Response::new(pb::ValidateWorkflowResponse { valid: problems.is_empty(), problems }))
    }

    async fn create_workflow(
        &self,
        req: Request<pb::CreateWorkflowRequest>,
    ) -> Result<Response<pb::CreateWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        check_name(&req.name)?;
        let graph = checked_graph(req.graph.as_ref(), &self.engine.limits, &self.agents, &p).await?;
        // A new workflow has no stored credentials a "[redacted]" could stand for.
        let mut doc = graph.doc;
        let problems = doc.restore_credentials(None);
        if !problems.is_empty() {
            return Err(Error::violations("invalid workflow graph", problems).into());
        }
        let row =
            self.store.create(&p.tenant, &req.name, &req.description, &doc, &req.version_comment, &p.user).await?;
        tracing::info!(tenant = %p.tenant, workflow_id = %row.id, "workflow created");
        Ok(Response::new(pb::CreateWorkflowResponse { workflow: Some(row.to_proto(true, None)?) }))
    }

    async fn update_workflow(
        &self,
        req: Request<pb::UpdateWorkflowRequest>,
    ) -> Result<Response<pb::UpdateWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        if let Some(name) = &req.name {
            check_name(name)?;
        }
        let id = parse_id("workflow", &req.workflow_id)?;
        let graph = checked_graph(req.graph.as_ref(), &self.engine.limits, &self.agents, &p).await?;
        let row = self
            .store
            .update(
                &p.tenant,
                id,
                req.expected_version,
                req.name.as_deref(),
                req.description.as_deref(),
                &graph.doc,
                &req.version_comment,
                &p.user,
            )
            .await?;
        Ok(Response::new(pb::UpdateWorkflowResponse {
            workflow: Some(self.with_schedule(&p.tenant, &row, true).await?),
        }))
    }

    async fn get_workflow(
        &self,
        req: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let row = self.workflow(&p.tenant, &req.workflow_id, req.version).await?;
        Ok(Response::new(pb::GetWorkflowResponse { workflow: Some(self.with_schedule(&p.tenant, &row, true).await?) }))
    }

    async fn list_workflows(
        &self,
        req: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size)?;
        let after = decode_token("workflows", &page.page_token)?;
        let mut rows = self.store.list(&p.tenant, &after, limit + 1).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|r| encode_token("workflows", &r.name)).unwrap_or_default()
        } else {
            String::new()
        };
        let mut workflows = Vec::with_capacity(rows.len());
        for r in &rows {
            workflows.push(self.with_schedule(&p.tenant, r, !req.omit_graph).await?);
        }
        Ok(Response::new(pb::ListWorkflowsResponse {
            workflows,
            page: Some(PageResponse { next_page_token: next, total_size: -1 }),
        }))
    }

    async fn delete_workflow(
        &self,
        req: Request<pb::DeleteWorkflowRequest>,
    ) -> Result<Response<pb::DeleteWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let id = parse_id("workflow", &req.workflow_id)?;
        if let Some(schedule) = self.store.delete(&p.tenant, id, req.expected_version).await? {
            self.drop_job(&ctx(&p.tenant, &p.user), &schedule).await;
        }
        tracing::info!(tenant = %p.tenant, workflow_id = %id, "workflow deleted");
        Ok(Response::new(pb::DeleteWorkflowResponse { workflow_id: id.to_string() }))
    }

    async fn list_workflow_versions(
        &self,
        req: Request<pb::ListWorkflowVersionsRequest>,
    ) -> Result<Response<pb::ListWorkflowVersionsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let wf = self.workflow(&p.tenant, &req.workflow_id, 0).await?;
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size)?;
        let before: i64 = match decode_token("versions", &page.page_token)? {
            t if t.is_empty() => 0,
            t => t.parse().map_err(|_| Error::invalid("page.page_token", "is not a token this API returned"))?,
        };
        let mut rows = self.store.versions(&p.tenant, wf.id, before, limit + 1).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = if more {
            rows.last().map(|r| encode_token("versions", &r.version.to_string())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListWorkflowVersionsResponse {
            versions: rows
                .iter()
                .map(|r| pb::WorkflowVersion {
                    workflow_id: r.id.to_string(),
                    version: r.version,
                    author: r.author.clone(),
                    comment: r.comment.clone(),
                    node_count: r.node_count,
                    created_at: Some(crate::convert::ts(r.updated_at)),
                })
                .collect(),
            page: Some(PageResponse { next_page_token: next, total_size: wf.version }),
        }))
    }

    async fn execute_workflow(
        &self,
        req: Request<pb::ExecuteWorkflowRequest>,
    ) -> Result<Response<pb::ExecuteWorkflowResponse>, Status> {
        let p = principal(&req)?;
        // Back-pressure: while the relay is behind, new runs wait here rather than their events
        // waiting in the outbox (see `backlog`).
        self.engine.backlog.wait_below_limit().await;
        let run = self.execute(&p, req.into_inner()).await?;
        Ok(Response::new(pb::ExecuteWorkflowResponse { run: Some(run) }))
    }

    async fn cancel_run(&self, req: Request<pb::CancelRunRequest>) -> Result<Response<pb::CancelRunResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let id = parse_id("run", &req.run_id)?;
        let view = self.engine.cancel(&p.tenant, id, &p.user, &req.reason).await?;
        tracing::info!(tenant = %p.tenant, run_id = %id, "run cancelled");
        Ok(Response::new(pb::CancelRunResponse { run: Some(run_response(&view)) }))
    }

    async fn approve_node(
        &self,
        req: Request<pb::ApproveNodeRequest>,
    ) -> Result<Response<pb::ApproveNodeResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let id = parse_id("run", &req.run_id)?;
        let view = self.engine.approve(&p.tenant, id, &req.node_id, req.approved, &p.user, &req.comment).await?;
        Ok(Response::new(pb::ApproveNodeResponse { run: Some(run_response(&view)) }))
    }

    async fn get_run(&self, req: Request<pb::GetRunRequest>) -> Result<Response<pb::GetRunResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let (run, nodes) = self.run_view(&p.tenant, &req.run_id).await?;
        let logs = if req.include_logs { self.store.logs(run.id).await? } else { Vec::new() };
        Ok(Response::new(pb::GetRunResponse { run: Some(run.to_proto(&nodes, true)), logs }))
    }

    async fn list_runs(&self, req: Request<pb::ListRunsRequest>) -> Result<Response<pb::ListRunsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let workflow = if req.workflow_id.is_empty() {
            None
        } else {
            // Runs of a deleted workflow stay listable, so only the id's form is checked here.
            let id = parse_id("workflow", &req.workflow_id)?;
            let exists: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM workflows WHERE tenant_id = $1 AND id = $2")
                .bind(p.tenant.as_str())
                .bind(id)
                .fetch_optional(&self.store.pool)
                .await
                .map_err(Error::from)?;
            exists.ok_or_else(|| Error::not_found("workflow", &req.workflow_id))?;
            Some(id)
        };
        let statuses: Vec<String> = req
            .statuses
            .iter()
            .filter_map(|s| pb::RunStatus::try_from(*s).ok())
            .map(|s| run_status_name(s).to_owned())
            .collect();
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size)?;
        let cursor = match decode_token("runs", &page.page_token)? {
            t if t.is_empty() => None,
            t => {
                let bad = || Status::from(Error::invalid("page.page_token", "is not a token this API returned"));
                let (micros, id) = t.split_once(' ').ok_or_else(bad)?;
                let at = DateTime::<Utc>::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
                Some((at, Uuid::parse_str(id).map_err(|_| bad())?))
            }
        };
        let mut rows = self.store.runs(&p.tenant, workflow, &statuses, cursor, limit + 1).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next = match (more, rows.last()) {
            (true, Some(r)) => encode_token("runs", &format!("{} {}", r.created_at.timestamp_micros(), r.id)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListRunsResponse {
            runs: rows.iter().map(|r| r.to_proto(&[], false)).collect(),
            page: Some(PageResponse { next_page_token: next, total_size: -1 }),
        }))
    }

    type WatchRunStream = WatchStream;

    async fn watch_run(&self, req: Request<pb::WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let (run, nodes) = self.run_view(&p.tenant, &req.run_id).await?;
        if req.from_sequence < 0 || req.from_sequence > run.last_sequence + 1 {
            return Err(Error::OutOfRange(format!(
                "from_sequence {} is beyond the run's last event {}",
                req.from_sequence, run.last_sequence
            ))
            .into());
        }
        // Before the stream's first read: from here on, commits of this run on any replica
        // notify (see `Store::watch`).
        self.store.watch(&p.tenant, run.id).await?;
        let mut changes = self.engine.changes.subscribe();
        let store = self.store.clone();
        let run_id = run.id;
        let tenant = p.tenant.clone();
        let stream = async_stream::stream! {
            let mut next = req.from_sequence;
            if next == 0 {
                next = run.last_sequence + 1;
                yield Ok(pb::WatchRunResponse { sequence: 0, event: Some(pb::watch_run_response::Event::Snapshot(run.to_proto(&nodes, false))) });
            }
            let mut heartbeat = tokio::time::interval(Duration::from_secs(15));
            heartbeat.tick().await;
            loop {
                let batch = match store.events(run_id, next, 500).await {
                    Ok(b) => b,
                    Err(e) => { yield Err(Status::from(e)); break; }
                };
                let got = batch.len();
                for (seq, body) in batch {
                    match pb::WatchRunResponse::decode(body.as_slice()) {
                        Ok(item) => yield Ok(item),
                        Err(e) => { yield Err(Status::internal(format!("corrupt run event {seq}: {e}"))); return; }
                    }
                    next = seq + 1;
                }
                if got == 500 {
                    continue;
                }
                // Final runs end the stream once every event was sent.
                match store.run(&tenant, run_id).await {
                    Ok(Some((r, _))) if run_is_final(&r.status) && r.last_sequence < next => break,
                    Ok(_) => {}
                    Err(e) => { yield Err(Status::from(e)); break; }
                }
                // Wait for a change of this run (other runs' changes are skipped here, not
                // re-read), a safety-net timeout for notifications lost while the listener
                // reconnects, or the heartbeat.
                let wait = tokio::time::sleep(Duration::from_secs(1));
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        changed = changes.recv() => match changed {
                            Ok(id) if id != run_id => continue,
                            // The service is stopping: poll at the safety-net pace.
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => { (&mut wait).await; break }
                            // Ours, or lagged (re-read from the database: nothing is lost).
                            _ => break,
                        },
                        () = &mut wait => break,
                        _ = heartbeat.tick() => {
                            if let Err(e) = store.watch(&tenant, run_id).await {
                                // The 1 s safety net still finds the run's changes meanwhile.
                                tracing::debug!(%run_id, error = %e, "watch mark not renewed");
                            }
                            yield Ok(pb::WatchRunResponse { sequence: 0, event: Some(pb::watch_run_response::Event::Heartbeat(prost_types::Timestamp::from(std::time::SystemTime::now()))) });
                        }
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn schedule_workflow(
        &self,
        req: Request<pb::ScheduleWorkflowRequest>,
    ) -> Result<Response<pb::ScheduleWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let schedule = self.schedule(&p, req.into_inner()).await?;
        Ok(Response::new(pb::ScheduleWorkflowResponse { schedule: Some(schedule) }))
    }

    async fn unschedule_workflow(
        &self,
        req: Request<pb::UnscheduleWorkflowRequest>,
    ) -> Result<Response<pb::UnscheduleWorkflowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let wf = self.workflow(&p.tenant, &req.workflow_id, 0).await?;
        let removed =
            self.store.delete_schedule(&p.tenant, wf.id).await?.ok_or_else(|| {
                Status::from(Error::NotFound(format!("workflow '{}' has no schedule", req.workflow_id)))
            })?;
        self.drop_job(&ctx(&p.tenant, &p.user), &removed).await;
        Ok(Response::new(pb::UnscheduleWorkflowResponse { workflow_id: wf.id.to_string() }))
    }

    async fn get_job_history(
        &self,
        req: Request<pb::GetJobHistoryRequest>,
    ) -> Result<Response<pb::GetJobHistoryResponse>, Status> {
        let p = principal(&req)?;
        Ok(Response::new(self.job_history(&p, req.into_inner()).await?))
    }
}

/// What a caller sees of a MindsDB job run's error: the public message of its kind (see
/// `MindsdbError::public_message`); the text itself stays in MindsDB's `log.jobs_history`.
fn public_job_error(text: &str) -> String {
    getlood_mindsdb::MindsdbError::from_message(text).public_message()
}

#[cfg(test)]
mod tests {
    #[test]
    fn job_errors_are_shown_by_kind() {
        assert_eq!(
            super::public_job_error("Failed Query: INSERT INTO email.send VALUES ('secret')\nTraceback ..."),
            "internal error"
        );
        assert_eq!(
            super::public_job_error("Table 'send' not found in database: email"),
            "Table 'send' not found in database: email"
        );
    }
}
