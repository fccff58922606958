//! REST and SSE for workflows (`/api/v1/workflows`): thin JSON mappings onto the workflow
//! service's gRPC API, called with the caller's own token, so another tenant's workflow or run
//! is a 404 like a missing one.
//!
//! Graphs are what the React Flow editor saves: `{"nodes":[{"id","type","data","position"}],
//! "edges":[{"id","source","target","sourceHandle","targetHandle"}],"viewport"}`. Edge handles
//! are accepted in camelCase (React Flow) or snake_case and returned in camelCase, so the editor
//! loads a stored graph as is; `viewport` and any `editor_state` are kept for the editor only.
//! Enums (run status, mode, schedule unit) are the proto names without prefix, lowercase.
//! Every write of a workflow creates a version, which is also its `ETag`; `PUT` and `DELETE`
//! honour `If-Match`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use getlood_common::ApiError;
use getlood_proto::common::v1::{ErrorDetail, FieldViolation, PageRequest};
use getlood_proto::workflow::v1::{
    ApproveNodeRequest, CancelRunRequest, CreateWorkflowRequest, DeleteWorkflowRequest, Edge, ExecuteWorkflowRequest,
    ExecutionMode, GetJobHistoryRequest, GetRunRequest, GetWorkflowRequest, Graph, JobHistoryEntry, ListRunsRequest,
    ListRunsResponse, ListWorkflowVersionsRequest, ListWorkflowsRequest, LogEntry, LogLevel, Node, NodeRun,
    NodeRunStatus, Position, Run, RunStatus, RunTrigger, Schedule, ScheduleUnit, ScheduleWorkflowRequest,
    UnscheduleWorkflowRequest, UpdateWorkflowRequest, ValidateWorkflowRequest, Workflow, WorkflowVersion,
};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::{ApiJson, OptionalJson};
use crate::proto_json::{
    enum_name, json_object_to_struct, opt_struct_to_json, parse_enum, parse_timestamp, proto_struct_to_json,
    timestamp_json,
};
use crate::rest::{Deleted, IdempotencyKey, IfMatch, PageQuery, VersionQuery, comma_list, list_json, with_etag};
use crate::sse::{self, LastEventId, Start};

const SERVICE: &str = "workflow";

/// The event-dispatcher topic of every run and node event (`run.*`, `node.*`).
const RUN_EVENTS_TOPIC: &str = "workflow";

// ---- JSON out -------------------------------------------------------------------------------

pub(crate) fn run_status_name(status: i32) -> String {
    enum_name(RunStatus::try_from(status).unwrap_or(RunStatus::Unspecified).as_str_name(), "RUN_STATUS_")
}

pub(crate) fn mode_name(mode: i32) -> String {
    enum_name(ExecutionMode::try_from(mode).unwrap_or(ExecutionMode::Unspecified).as_str_name(), "EXECUTION_MODE_")
}

/// A graph in React Flow's shape.
pub(crate) fn graph_json(g: &Graph) -> Value {
    let nodes: Vec<Value> = g
        .nodes
        .iter()
        .map(|n| {
            let position = n.position.unwrap_or_default();
            json!({
                "id": n.id,
                "type": n.r#type,
                "data": opt_struct_to_json(n.data.as_ref()),
                "position": {"x": position.x, "y": position.y},
            })
        })
        .collect();
    let handle = |h: &str| if h.is_empty() { Value::Null } else { json!(h) };
    let edges: Vec<Value> = g
        .edges
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "source": e.source,
                "target": e.target,
                "sourceHandle": handle(&e.source_handle),
                "targetHandle": handle(&e.target_handle),
            })
        })
        .collect();
    let editor_state = opt_struct_to_json(g.editor_state.as_ref());
    let viewport = editor_state.get("viewport").cloned().unwrap_or(Value::Null);
    json!({"nodes": nodes, "edges": edges, "viewport": viewport, "editor_state": editor_state})
}

pub(crate) fn schedule_json(s: &Schedule) -> Value {
    json!({
        "every_count": s.every_count,
        "unit": enum_name(ScheduleUnit::try_from(s.unit).unwrap_or(ScheduleUnit::Unspecified).as_str_name(), "SCHEDULE_UNIT_"),
        "start_at": timestamp_json(s.start_at.as_ref()),
        "end_at": timestamp_json(s.end_at.as_ref()),
        "mode": mode_name(s.mode),
        "version": s.version,
        "input": opt_struct_to_json(s.input.as_ref()),
        "job_name": s.job_name,
        "next_run_at": timestamp_json(s.next_run_at.as_ref()),
    })
}

/// A workflow version as REST returns it; `graph` is absent from lists asked to omit it.
fn workflow_json(w: &Workflow) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "description": w.description,
        "version": w.version,
        "graph": w.graph.as_ref().map(graph_json),
        "owner": w.owner,
        "version_author": w.version_author,
        "version_comment": w.version_comment,
        "schedule": w.schedule.as_ref().map(schedule_json),
        "created_at": timestamp_json(w.created_at.as_ref()),
        "updated_at": timestamp_json(w.updated_at.as_ref()),
    })
}

fn version_json(v: &WorkflowVersion) -> Value {
    json!({
        "workflow_id": v.workflow_id,
        "version": v.version,
        "author": v.author,
        "comment": v.comment,
        "node_count": v.node_count,
        "created_at": timestamp_json(v.created_at.as_ref()),
    })
}

pub(crate) fn violation_json(v: &FieldViolation) -> Value {
    json!({"field": v.field, "subject": v.subject, "description": v.description})
}

pub(crate) fn error_detail_json(e: &ErrorDetail) -> Value {
    let code = getlood_proto::common::v1::ErrorCode::try_from(e.code)
        .unwrap_or(getlood_proto::common::v1::ErrorCode::Unspecified);
    json!({
        "code": enum_name(code.as_str_name(), "ERROR_CODE_"),
        "message": e.message,
        "field_violations": e.field_violations.iter().map(violation_json).collect::<Vec<_>>(),
    })
}

/// One entry of a run's node timeline.
fn node_run_json(n: &NodeRun) -> Value {
    json!({
        "node_id": n.node_id,
        "node_type": n.node_type,
        "status": enum_name(
            NodeRunStatus::try_from(n.status).unwrap_or(NodeRunStatus::Unspecified).as_str_name(),
            "NODE_RUN_STATUS_",
        ),
        "attempt": n.attempt,
        "started_at": timestamp_json(n.started_at.as_ref()),
        "finished_at": timestamp_json(n.finished_at.as_ref()),
        "duration_ms": n.duration_ms,
        "output_summary": n.output_summary,
        "output": n.output.as_ref().map(proto_struct_to_json),
        "error": n.error,
        "next_retry_at": timestamp_json(n.next_retry_at.as_ref()),
        "decided_by": n.decided_by,
        "decision_comment": n.decision_comment,
    })
}

/// A run with its node timeline.
fn run_json(r: &Run) -> Value {
    json!({
        "id": r.id,
        "workflow_id": r.workflow_id,
        "workflow_version": r.workflow_version,
        "status": run_status_name(r.status),
        "mode": mode_name(r.mode),
        "trigger": enum_name(RunTrigger::try_from(r.trigger).unwrap_or(RunTrigger::Unspecified).as_str_name(), "RUN_TRIGGER_"),
        "triggered_by": r.triggered_by,
        "input": opt_struct_to_json(r.input.as_ref()),
        "result": r.result.as_ref().map(proto_struct_to_json),
        "error": r.error.as_ref().map(error_detail_json),
        "node_runs": r.node_runs.iter().map(node_run_json).collect::<Vec<_>>(),
        "job_name": r.job_name,
        "cancel_reason": r.cancel_reason,
        "created_at": timestamp_json(r.created_at.as_ref()),
        "started_at": timestamp_json(r.started_at.as_ref()),
        "finished_at": timestamp_json(r.finished_at.as_ref()),
        "duration_ms": r.duration_ms,
        "last_sequence": r.last_sequence,
    })
}

fn log_json(l: &LogEntry) -> Value {
    json!({
        "logged_at": timestamp_json(l.logged_at.as_ref()),
        "node_id": l.node_id,
        "attempt": l.attempt,
        "level": enum_name(LogLevel::try_from(l.level).unwrap_or(LogLevel::Unspecified).as_str_name(), "LOG_LEVEL_"),
        "message": l.message,
        "fields": opt_struct_to_json(l.fields.as_ref()),
    })
}

fn job_entry_json(e: &JobHistoryEntry) -> Value {
    json!({
        "job_name": e.job_name,
        "run_start": timestamp_json(e.run_start.as_ref()),
        "run_end": timestamp_json(e.run_end.as_ref()),
        "error": e.error,
        "query": e.query,
        "run_id": e.run_id,
    })
}

// ---- JSON in --------------------------------------------------------------------------------

/// A graph as the React Flow editor saves it; React Flow's other node and edge fields
/// (`width`, `selected`, `animated`, ...) are ignored.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GraphBody {
    #[serde(default)]
    nodes: Vec<NodeBody>,
    #[serde(default)]
    edges: Vec<EdgeBody>,
    /// React Flow's `toObject()` viewport, kept in `editor_state.viewport`.
    viewport: Option<Value>,
    /// Any other editor-only state, stored as given.
    editor_state: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct NodeBody {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
    data: Option<Value>,
    position: Option<PositionBody>,
}

#[derive(Debug, Deserialize)]
struct PositionBody {
    #[serde(default)]
    x: f64,
    #[serde(default)]
    y: f64,
}

#[derive(Debug, Deserialize)]
struct EdgeBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    target: String,
    /// React Flow writes `null` for the default handle.
    #[serde(default, alias = "sourceHandle")]
    source_handle: Option<String>,
    #[serde(default, alias = "targetHandle")]
    target_handle: Option<String>,
}

impl GraphBody {
    /// The proto graph. Only JSON shape errors are refused here; the workflow service checks
    /// the graph itself and lists every problem.
    fn into_proto(self) -> Result<Graph, ApiError> {
        let nodes = self
            .nodes
            .into_iter()
            .map(|n| {
                let field = format!("node '{}': data", n.id.chars().take(64).collect::<String>());
                Ok(Node {
                    data: json_object_to_struct(n.data.as_ref(), &field)?,
                    position: n.position.map(|p| Position { x: p.x, y: p.y }),
                    id: n.id,
                    r#type: n.kind,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        let edges = self
            .edges
            .into_iter()
            .map(|e| Edge {
                id: e.id,
                source: e.source,
                target: e.target,
                source_handle: e.source_handle.unwrap_or_default(),
                target_handle: e.target_handle.unwrap_or_default(),
            })
            .collect();
        let mut editor_state = match self.editor_state {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(o)) => o,
            Some(_) => return Err(ApiError::invalid_argument("editor_state must be a JSON object")),
        };
        if let Some(viewport) = self.viewport.filter(|v| !v.is_null()) {
            editor_state.insert("viewport".to_owned(), viewport);
        }
        let editor_state =
            json_object_to_struct(Some(&Value::Object(editor_state)), "editor_state")?.filter(|s| !s.fields.is_empty());
        Ok(Graph { nodes, edges, editor_state })
    }
}

/// The graph of a body, required.
pub(crate) fn required_graph(graph: Option<GraphBody>) -> Result<Graph, ApiError> {
    graph.ok_or_else(|| ApiError::invalid_argument("graph is required"))?.into_proto()
}

/// `POST /api/v1/workflows` body.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateBody {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub graph: Option<GraphBody>,
    #[serde(default)]
    pub version_comment: String,
}

/// `PUT /api/v1/workflows/{id}` body: a new version; absent name and description stay.
#[derive(Debug, Deserialize)]
pub(crate) struct UpdateBody {
    pub name: Option<String>,
    pub description: Option<String>,
    pub graph: Option<GraphBody>,
    #[serde(default)]
    pub version_comment: String,
    /// Optimistic concurrency, when not given as `If-Match`.
    pub expected_version: Option<i64>,
}

/// `POST /api/v1/workflows/validate` body.
#[derive(Debug, Deserialize)]
pub(crate) struct ValidateBody {
    graph: Option<GraphBody>,
}

/// `POST /api/v1/workflows/{id}/execute` body; may be empty.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ExecuteBody {
    pub input: Option<Value>,
    #[serde(default)]
    pub version: i64,
    pub mode: Option<String>,
    /// Run timeout; absent uses the service default.
    pub timeout_ms: Option<u64>,
    /// Idempotency key, when not given as the `Idempotency-Key` header.
    #[serde(default)]
    pub request_id: String,
}

/// `POST /api/v1/workflows/runs/{run_id}/cancel` body; may be empty.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CancelBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/workflows/runs/{run_id}/approve` body. `approved` is required: a forgotten
/// decision must not read as a rejection.
#[derive(Debug, Deserialize)]
pub(crate) struct ApproveBody {
    node_id: String,
    approved: bool,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/workflows/{id}/schedule` body.
#[derive(Debug, Deserialize)]
pub(crate) struct ScheduleBody {
    #[serde(default)]
    every_count: i32,
    #[serde(default)]
    unit: String,
    start_at: Option<String>,
    end_at: Option<String>,
    mode: Option<String>,
    #[serde(default)]
    version: i64,
    input: Option<Value>,
}

pub(crate) fn parse_mode(raw: Option<&str>) -> Result<i32, ApiError> {
    match raw {
        None | Some("") => Ok(ExecutionMode::Unspecified as i32),
        Some(raw) => parse_enum(raw, "EXECUTION_MODE_", ExecutionMode::from_str_name, "mode", "engine, mindsdb_job")
            .map(|m| m as i32),
    }
}

/// Query of `GET /api/v1/workflows`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListOptions {
    #[serde(default)]
    omit_graph: bool,
}

/// Query of `GET /api/v1/workflows/{id}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GetOptions {
    #[serde(default)]
    version: i64,
}

/// Query of the run lists: `status` is comma-separated (`running,waiting_approval`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RunFilter {
    status: Option<String>,
}

/// Query of `GET /api/v1/workflows/runs/{run_id}`.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub(crate) struct RunOptions {
    include_logs: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { include_logs: true }
    }
}

/// Query of the run events route.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    after: Option<String>,
}

// ---- Handlers -------------------------------------------------------------------------------

/// A workflow version as a response with its `ETag`.
fn workflow_response(status: StatusCode, workflow: Option<Workflow>) -> Response {
    let workflow = workflow.unwrap_or_default();
    with_etag(status, workflow.version, workflow_json(&workflow))
}

/// A run as a response body.
fn run_body(run: Option<Run>) -> Json<Value> {
    Json(run_json(&run.unwrap_or_default()))
}

/// `POST /api/v1/workflows/validate` answer.
#[derive(Debug, Serialize)]
pub(crate) struct Validation {
    problems: Vec<Value>,
    valid: bool,
}

/// `DELETE /api/v1/workflows/{id}/schedule` answer.
#[derive(Debug, Serialize)]
pub(crate) struct Unscheduled {
    id: String,
    unscheduled: bool,
}

/// `GET /api/v1/workflows`: the tenant's workflows (latest versions) by name; `omit_graph=true`
/// for a lighter listing.
pub(crate) async fn list_workflows(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
    Query(options): Query<ListOptions>,
) -> Result<Json<Value>, ApiError> {
    let req = ListWorkflowsRequest { page: page.page(), omit_graph: options.omit_graph };
    let resp = unary(SERVICE, state.upstreams.workflow().list_workflows(caller.request(req))).await?;
    Ok(list_json("workflows", resp.workflows.iter().map(workflow_json).collect(), resp.page))
}

/// `POST /api/v1/workflows`: 201 with version 1 and its `ETag`; an invalid graph is a 400
/// whose message lists every problem with its node or edge id.
pub(crate) async fn create_workflow(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let workflow = create(&state, &caller, body, key.or_empty()).await?;
    Ok(workflow_response(StatusCode::CREATED, Some(workflow)))
}

/// Creates a workflow from `body` (REST and GraphQL); `request_id` is the idempotency key.
pub(crate) async fn create(
    state: &AppState,
    caller: &Caller,
    body: CreateBody,
    request_id: String,
) -> Result<Workflow, ApiError> {
    let req = CreateWorkflowRequest {
        name: body.name,
        description: body.description,
        graph: Some(required_graph(body.graph)?),
        version_comment: body.version_comment,
        request_id,
    };
    let resp = unary(SERVICE, state.upstreams.workflow().create_workflow(caller.request(req))).await?;
    Ok(resp.workflow.unwrap_or_default())
}

/// `GET /api/v1/workflows/{id}`: the latest version, or `?version=n`.
pub(crate) async fn get_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(options): Query<GetOptions>,
) -> Result<Response, ApiError> {
    let req = GetWorkflowRequest { workflow_id: id, version: options.version };
    let resp = unary(SERVICE, state.upstreams.workflow().get_workflow(caller.request(req))).await?;
    Ok(workflow_response(StatusCode::OK, resp.workflow))
}

/// `PUT /api/v1/workflows/{id}`: saves a new version; a stale `If-Match` (or
/// `expected_version`) is 409.
pub(crate) async fn update_workflow(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateBody>,
) -> Result<Response, ApiError> {
    let expected_version = if_match.or(body.expected_version)?;
    let workflow = update(&state, &caller, id, body, expected_version).await?;
    Ok(workflow_response(StatusCode::OK, Some(workflow)))
}

/// Saves a new version of workflow `id` from `body` (REST and GraphQL).
pub(crate) async fn update(
    state: &AppState,
    caller: &Caller,
    id: String,
    body: UpdateBody,
    expected_version: i64,
) -> Result<Workflow, ApiError> {
    let req = UpdateWorkflowRequest {
        workflow_id: id,
        expected_version,
        name: body.name,
        description: body.description,
        graph: Some(required_graph(body.graph)?),
        version_comment: body.version_comment,
    };
    let resp = unary(SERVICE, state.upstreams.workflow().update_workflow(caller.request(req))).await?;
    Ok(resp.workflow.unwrap_or_default())
}

/// `DELETE /api/v1/workflows/{id}`, with `If-Match` or `?expected_version=`. Started runs finish
/// and stay readable; new executions are 404.
pub(crate) async fn delete_workflow(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let req = DeleteWorkflowRequest { workflow_id: id, expected_version: if_match.or(query.expected_version)? };
    let resp = unary(SERVICE, state.upstreams.workflow().delete_workflow(caller.request(req))).await?;
    Ok(Json(Deleted::id(resp.workflow_id)))
}

/// `GET /api/v1/workflows/{id}/versions`: newest first.
pub(crate) async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let req = ListWorkflowVersionsRequest { workflow_id: id, page: page.page() };
    let resp = unary(SERVICE, state.upstreams.workflow().list_workflow_versions(caller.request(req))).await?;
    Ok(list_json("versions", resp.versions.iter().map(version_json).collect(), resp.page))
}

/// `POST /api/v1/workflows/validate` (`{"graph": ...}`): 200 with `valid` and every problem,
/// for the editor; an invalid graph is not an error here.
pub(crate) async fn validate_workflow(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ValidateBody>,
) -> Result<Json<Validation>, ApiError> {
    let req = ValidateWorkflowRequest { graph: Some(required_graph(body.graph)?) };
    let resp = unary(SERVICE, state.upstreams.workflow().validate_workflow(caller.request(req))).await?;
    Ok(Json(Validation { problems: resp.problems.iter().map(violation_json).collect(), valid: resp.valid }))
}

/// `POST /api/v1/workflows/{id}/execute`: 202 with the run (pending or running); follow it
/// with `GET /api/v1/workflows/runs/{run_id}` or its events. The body (`input`, `version`,
/// `mode`, `timeout_ms`, `request_id`) may be empty.
pub(crate) async fn execute_workflow(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<ExecuteBody>,
) -> Result<Response, ApiError> {
    let run = execute(&state, &caller, id, body, key.or_empty()).await?;
    Ok((StatusCode::ACCEPTED, run_body(Some(run))).into_response())
}

/// Starts a run of workflow `id` (REST and GraphQL); `key` is the idempotency key used when the
/// body names none.
pub(crate) async fn execute(
    state: &AppState,
    caller: &Caller,
    id: String,
    body: ExecuteBody,
    key: String,
) -> Result<Run, ApiError> {
    let request_key = if body.request_id.is_empty() { key } else { body.request_id };
    let timeout = match body.timeout_ms {
        None => None,
        Some(ms) => Some(
            prost_types::Duration::try_from(std::time::Duration::from_millis(ms))
                .map_err(|_| ApiError::invalid_argument("timeout_ms is out of range"))?,
        ),
    };
    let req = ExecuteWorkflowRequest {
        workflow_id: id,
        version: body.version,
        mode: parse_mode(body.mode.as_deref())?,
        input: json_object_to_struct(body.input.as_ref(), "input")?,
        timeout,
        request_id: request_key,
    };
    let resp = unary(SERVICE, state.upstreams.workflow().execute_workflow(caller.request(req))).await?;
    Ok(resp.run.unwrap_or_default())
}

/// The runs of `workflow_id` (every run of the tenant when empty), filtered by `filter`.
async fn list_runs_of(
    state: &AppState,
    caller: &Caller,
    workflow_id: String,
    page: PageQuery,
    filter: RunFilter,
) -> Result<Json<Value>, ApiError> {
    let statuses = comma_list(filter.status.as_deref());
    let resp = runs_page(state, caller, workflow_id, &statuses, page.page()).await?;
    Ok(list_json("runs", resp.runs.iter().map(run_json).collect(), resp.page))
}

/// A page of the runs of `workflow_id` (every run of the tenant when empty) in `statuses`
/// (REST spelling; none means any), without their node timelines (REST and GraphQL).
pub(crate) async fn runs_page(
    state: &AppState,
    caller: &Caller,
    workflow_id: String,
    statuses: &[String],
    page: Option<PageRequest>,
) -> Result<ListRunsResponse, ApiError> {
    let statuses = statuses
        .iter()
        .map(|s| {
            parse_enum(
                s,
                "RUN_STATUS_",
                RunStatus::from_str_name,
                "status",
                "pending, running, waiting_approval, succeeded, failed, cancelled",
            )
            .map(|s| s as i32)
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let req = ListRunsRequest { workflow_id, statuses, page };
    unary(SERVICE, state.upstreams.workflow().list_runs(caller.request(req))).await
}

/// `GET /api/v1/workflows/{id}/runs`: the workflow's runs, newest first, without node outputs;
/// `?status=running,waiting_approval` filters.
pub(crate) async fn list_workflow_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
    Query(filter): Query<RunFilter>,
) -> Result<Json<Value>, ApiError> {
    list_runs_of(&state, &caller, id, page, filter).await
}

/// `GET /api/v1/workflows/runs`: every run of the tenant, newest first, filtered like
/// [`list_workflow_runs`].
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(page): Query<PageQuery>,
    Query(filter): Query<RunFilter>,
) -> Result<Json<Value>, ApiError> {
    list_runs_of(&state, &caller, String::new(), page, filter).await
}

/// The run `run_id` and, with `include_logs`, its persisted logs.
pub(crate) async fn fetch_run(
    state: &AppState,
    caller: &Caller,
    run_id: String,
    include_logs: bool,
) -> Result<(Run, Vec<LogEntry>), ApiError> {
    let req = GetRunRequest { run_id, include_logs };
    let resp = unary(SERVICE, state.upstreams.workflow().get_run(caller.request(req))).await?;
    Ok((resp.run.unwrap_or_default(), resp.logs))
}

/// `GET /api/v1/workflows/runs/{run_id}`: the run with its node timeline (outputs included) and
/// its persisted `logs` (`?include_logs=false` leaves them out).
pub(crate) async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    Query(options): Query<RunOptions>,
) -> Result<Json<Value>, ApiError> {
    let (run, logs) = fetch_run(&state, &caller, run_id, options.include_logs).await?;
    let mut body = run_json(&run);
    if let Some(obj) = body.as_object_mut() {
        obj.insert("logs".to_owned(), Value::Array(logs.iter().map(log_json).collect()));
    }
    Ok(Json(body))
}

/// `POST /api/v1/workflows/runs/{run_id}/cancel` (optional `{"reason"}`): the cancelled run; a
/// finished run is `failed_precondition`.
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<Json<Value>, ApiError> {
    let req = CancelRunRequest { run_id, reason: body.reason };
    let resp = unary(SERVICE, state.upstreams.workflow().cancel_run(caller.request(req))).await?;
    Ok(run_body(resp.run))
}

/// `POST /api/v1/workflows/runs/{run_id}/approve` (`{"node_id","approved","comment"}`): the
/// decision on a waiting human_approval node; a run or node not waiting is `failed_precondition`.
pub(crate) async fn approve_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<Value>, ApiError> {
    let req = ApproveNodeRequest { run_id, node_id: body.node_id, approved: body.approved, comment: body.comment };
    let resp = unary(SERVICE, state.upstreams.workflow().approve_node(caller.request(req))).await?;
    Ok(run_body(resp.run))
}

/// `GET /api/v1/workflows/runs/{run_id}/events`: the run's `run.*` and `node.*` events as SSE,
/// or over a WebSocket when the request is an upgrade (see [`crate::sse`] and `crate::ws` for
/// the framings). Without a cursor the stream starts with the run's
/// first retained event; `Last-Event-ID` (or `?after=`, an event `id`) resumes after it. The
/// run is read first with the caller's token, so another tenant's run is a 404 and no stream
/// opens.
pub(crate) async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    last_event_id: LastEventId,
    Path(run_id): Path<String>,
    Query(query): Query<EventsQuery>,
    upgrade: sse::Upgrade,
) -> Result<Response, ApiError> {
    let (run, _) = fetch_run(&state, &caller, run_id, false).await?;
    // The service's spelling of the id is the one its events carry as entity id.
    let topics = vec![RUN_EVENTS_TOPIC.to_owned()];
    let cursor = last_event_id.or(query.after);
    sse::stream(&state, &caller, upgrade, topics, run.id, cursor, Start::All).await
}

/// `POST /api/v1/workflows/{id}/schedule` (`{"every_count","unit","start_at","end_at","mode",
/// "version","input"}`): sets (or replaces) the schedule; the stored schedule.
pub(crate) async fn schedule_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<Json<Value>, ApiError> {
    let unit = parse_enum(
        &body.unit,
        "SCHEDULE_UNIT_",
        ScheduleUnit::from_str_name,
        "unit",
        "minute, hour, day, week, month",
    )?;
    let schedule = Schedule {
        every_count: body.every_count,
        unit: unit as i32,
        start_at: parse_timestamp(body.start_at.as_deref(), "start_at")?,
        end_at: parse_timestamp(body.end_at.as_deref(), "end_at")?,
        mode: parse_mode(body.mode.as_deref())?,
        version: body.version,
        input: json_object_to_struct(body.input.as_ref(), "input")?,
        ..Schedule::default()
    };
    let req = ScheduleWorkflowRequest { workflow_id: id, schedule: Some(schedule) };
    let resp = unary(SERVICE, state.upstreams.workflow().schedule_workflow(caller.request(req))).await?;
    Ok(Json(schedule_json(&resp.schedule.unwrap_or_default())))
}

/// `DELETE /api/v1/workflows/{id}/schedule`: removes the schedule (and its MindsDB job).
pub(crate) async fn unschedule_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Unscheduled>, ApiError> {
    let req = UnscheduleWorkflowRequest { workflow_id: id };
    let resp = unary(SERVICE, state.upstreams.workflow().unschedule_workflow(caller.request(req))).await?;
    Ok(Json(Unscheduled { id: resp.workflow_id, unscheduled: true }))
}

/// `GET /api/v1/workflows/{id}/jobs/history`: a MindsDB-job-mode workflow's `log.jobs_history`,
/// newest first.
pub(crate) async fn job_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let req = GetJobHistoryRequest { workflow_id: id, page: page.page() };
    let resp = unary(SERVICE, state.upstreams.workflow().get_job_history(caller.request(req))).await?;
    Ok(list_json("entries", resp.entries.iter().map(job_entry_json).collect(), resp.page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn react_flow_graph_round_trips_with_either_handle_spelling() {
        let body: GraphBody = serde_json::from_value(json!({
            "nodes": [
                {"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 10}, "selected": true},
                {"id": "check", "type": "condition", "data": {"expression": "true"}, "position": {"x": 5, "y": 5}},
                {"id": "end", "type": "end", "position": {"x": 1, "y": 2}},
            ],
            "edges": [
                {"id": "e1", "source": "start", "target": "check", "sourceHandle": null, "targetHandle": null},
                {"id": "e2", "source": "check", "target": "end", "sourceHandle": "true"},
                {"id": "e3", "source": "check", "target": "end", "source_handle": "false", "target_handle": "in"},
            ],
            "viewport": {"x": 0, "y": 0, "zoom": 1.5},
        }))
        .unwrap();
        let graph = body.into_proto().unwrap();
        assert_eq!(graph.edges[0].source_handle, "");
        assert_eq!(graph.edges[1].source_handle, "true");
        assert_eq!(graph.edges[2].source_handle, "false");
        assert_eq!(graph.edges[2].target_handle, "in");
        let out = graph_json(&graph);
        assert_eq!(out["edges"][1]["sourceHandle"], "true");
        assert_eq!(out["edges"][0]["sourceHandle"], Value::Null);
        assert_eq!(out["nodes"][1]["data"]["expression"], "true");
        assert_eq!(out["nodes"][2]["data"], json!({}));
        assert_eq!(out["viewport"]["zoom"], 1.5);
    }

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced.
    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        let validation = Validation { problems: vec![json!({"field": "f"})], valid: false };
        let old = json!({"valid": false, "problems": [{"field": "f"}]});
        assert_eq!(serde_json::to_string(&validation).unwrap(), old.to_string());
        let unscheduled = Unscheduled { id: "wf".to_owned(), unscheduled: true };
        let old = json!({"id": "wf", "unscheduled": true});
        assert_eq!(serde_json::to_string(&unscheduled).unwrap(), old.to_string());
    }

    #[test]
    fn non_object_node_data_names_the_node() {
        let body: GraphBody =
            serde_json::from_value(json!({"nodes": [{"id": "n7", "type": "transform", "data": [1]}]})).unwrap();
        let err = body.into_proto().unwrap_err();
        assert!(err.message.contains("n7"), "{}", err.message);
    }

    #[test]
    fn enums_parse_case_insensitively_and_name_the_choices() {
        assert_eq!(parse_mode(Some("mindsdb_job")).unwrap(), ExecutionMode::MindsdbJob as i32);
        assert_eq!(parse_mode(Some("ENGINE")).unwrap(), ExecutionMode::Engine as i32);
        assert_eq!(parse_mode(None).unwrap(), ExecutionMode::Unspecified as i32);
        let err = parse_mode(Some("warp")).unwrap_err();
        assert!(err.message.contains("engine, mindsdb_job"), "{}", err.message);
        assert_eq!(run_status_name(RunStatus::WaitingApproval as i32), "waiting_approval");
    }
}
