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
use axum::extract::{Path, State};
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
use serde_json::{Map, Value};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::proto_json::{
    enum_name, json_object_to_struct, opt_struct_to_json, parse_enum, parse_timestamp, proto_struct_to_json, timestamp,
    to_json,
};
use crate::rest::{Deleted, IdempotencyKey, IfMatch, PageQuery, VersionQuery, comma_list, page_fields, with_etag};
use crate::sse::{self, LastEventId, Start};
use utoipa::{IntoParams, ToSchema};

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

/// A node position on the editor's canvas.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NodePosition)]
pub(crate) struct PositionJson {
    x: f64,
    y: f64,
}

/// A node of a graph, in React Flow's shape.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowNode)]
pub(crate) struct NodeJson {
    /// The node's settings; their fields depend on `type`.
    #[schema(value_type = Object)]
    data: Value,
    id: String,
    position: PositionJson,
    /// `start`, `end`, `agent`, `sql`, `kb_search`, `condition`, `transform`, `integration_insert`,
    /// `human_approval`, `delay`, `a2a_agent`, `mcp_tool`
    #[serde(rename = "type")]
    kind: String,
}

/// An edge of a graph, in React Flow's shape (handles in camelCase, `null` for the default).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowEdge)]
pub(crate) struct EdgeJson {
    id: String,
    source: String,
    #[serde(rename = "sourceHandle")]
    source_handle: Option<String>,
    target: String,
    #[serde(rename = "targetHandle")]
    target_handle: Option<String>,
}

/// A graph in React Flow's shape.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowGraph)]
pub(crate) struct GraphJson {
    edges: Vec<EdgeJson>,
    /// Editor-only state, stored as given (the viewport among it).
    #[schema(value_type = Object)]
    editor_state: Value,
    nodes: Vec<NodeJson>,
    /// React Flow's viewport, `null` when none was saved.
    viewport: Value,
}

/// A graph in React Flow's shape.
fn graph_body(g: &Graph) -> GraphJson {
    let nodes = g
        .nodes
        .iter()
        .map(|n| {
            let position = n.position.unwrap_or_default();
            NodeJson {
                data: opt_struct_to_json(n.data.as_ref()),
                id: n.id.clone(),
                position: PositionJson { x: position.x, y: position.y },
                kind: n.r#type.clone(),
            }
        })
        .collect();
    let handle = |h: &str| (!h.is_empty()).then(|| h.to_owned());
    let edges = g
        .edges
        .iter()
        .map(|e| EdgeJson {
            id: e.id.clone(),
            source: e.source.clone(),
            source_handle: handle(&e.source_handle),
            target: e.target.clone(),
            target_handle: handle(&e.target_handle),
        })
        .collect();
    let editor_state = opt_struct_to_json(g.editor_state.as_ref());
    let viewport = editor_state.get("viewport").cloned().unwrap_or(Value::Null);
    GraphJson { edges, editor_state, nodes, viewport }
}

/// A graph in React Flow's shape, as JSON.
pub(crate) fn graph_json(g: &Graph) -> Value {
    to_json(&graph_body(g))
}

/// A workflow's schedule.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Schedule)]
pub(crate) struct ScheduleJson {
    /// RFC 3339 time after which no run starts, if any.
    #[schema(format = DateTime)]
    end_at: Option<String>,
    /// Every `every_count` `unit`s.
    every_count: i32,
    /// The input of each scheduled run.
    #[schema(value_type = Object)]
    input: Value,
    /// The MindsDB job of a `mindsdb_job` schedule.
    job_name: String,
    /// `engine` or `mindsdb_job`.
    mode: String,
    /// RFC 3339 time of the next run, if known.
    #[schema(format = DateTime)]
    next_run_at: Option<String>,
    /// RFC 3339 time of the first run, if set.
    #[schema(format = DateTime)]
    start_at: Option<String>,
    /// `minute`, `hour`, `day`, `week` or `month`.
    unit: String,
    /// The workflow version the schedule runs; 0 is the latest.
    version: i64,
}

fn schedule_body(s: &Schedule) -> ScheduleJson {
    ScheduleJson {
        end_at: timestamp(s.end_at.as_ref()),
        every_count: s.every_count,
        input: opt_struct_to_json(s.input.as_ref()),
        job_name: s.job_name.clone(),
        mode: mode_name(s.mode),
        next_run_at: timestamp(s.next_run_at.as_ref()),
        start_at: timestamp(s.start_at.as_ref()),
        unit: enum_name(
            ScheduleUnit::try_from(s.unit).unwrap_or(ScheduleUnit::Unspecified).as_str_name(),
            "SCHEDULE_UNIT_",
        ),
        version: s.version,
    }
}

/// A workflow's schedule, as JSON.
pub(crate) fn schedule_json(s: &Schedule) -> Value {
    to_json(&schedule_body(s))
}

/// A workflow version as REST returns it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Workflow)]
pub(crate) struct WorkflowJson {
    /// RFC 3339 creation time of the workflow.
    #[schema(format = DateTime)]
    created_at: Option<String>,
    description: String,
    /// `null` in lists asked to omit it.
    graph: Option<GraphJson>,
    id: String,
    name: String,
    owner: String,
    schedule: Option<ScheduleJson>,
    /// RFC 3339 time of this version.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// Also the `ETag`.
    version: i64,
    version_author: String,
    version_comment: String,
}

/// A workflow version as REST returns it; `graph` is absent from lists asked to omit it.
pub(crate) fn workflow_json(w: &Workflow) -> WorkflowJson {
    WorkflowJson {
        created_at: timestamp(w.created_at.as_ref()),
        description: w.description.clone(),
        graph: w.graph.as_ref().map(graph_body),
        id: w.id.clone(),
        name: w.name.clone(),
        owner: w.owner.clone(),
        schedule: w.schedule.as_ref().map(schedule_body),
        updated_at: timestamp(w.updated_at.as_ref()),
        version: w.version,
        version_author: w.version_author.clone(),
        version_comment: w.version_comment.clone(),
    }
}

/// One version of a workflow's history.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WorkflowVersion)]
pub(crate) struct VersionJson {
    author: String,
    comment: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    node_count: i32,
    version: i64,
    workflow_id: String,
}

fn version_body(v: &WorkflowVersion) -> VersionJson {
    VersionJson {
        author: v.author.clone(),
        comment: v.comment.clone(),
        created_at: timestamp(v.created_at.as_ref()),
        node_count: v.node_count,
        version: v.version,
        workflow_id: v.workflow_id.clone(),
    }
}

/// One problem of a graph.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Violation {
    /// What is wrong.
    description: String,
    /// The field, e.g. `nodes[2].data.sql`.
    field: String,
    /// The node or edge id it is about.
    subject: String,
}

fn violation_body(v: &FieldViolation) -> Violation {
    Violation { description: v.description.clone(), field: v.field.clone(), subject: v.subject.clone() }
}

/// One problem of a graph, as JSON.
pub(crate) fn violation_json(v: &FieldViolation) -> Value {
    to_json(&violation_body(v))
}

/// Why a run failed.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RunError)]
pub(crate) struct ErrorDetailJson {
    /// e.g. `invalid_argument`, `upstream_failure`, `deadline_exceeded`.
    code: String,
    field_violations: Vec<Violation>,
    message: String,
}

fn error_detail_body(e: &ErrorDetail) -> ErrorDetailJson {
    let code = getlood_proto::common::v1::ErrorCode::try_from(e.code)
        .unwrap_or(getlood_proto::common::v1::ErrorCode::Unspecified);
    ErrorDetailJson {
        code: enum_name(code.as_str_name(), "ERROR_CODE_"),
        field_violations: e.field_violations.iter().map(violation_body).collect(),
        message: e.message.clone(),
    }
}

/// Why a run failed, as JSON.
pub(crate) fn error_detail_json(e: &ErrorDetail) -> Value {
    to_json(&error_detail_body(e))
}

/// One entry of a run's node timeline.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NodeRun)]
pub(crate) struct NodeRunJson {
    attempt: i32,
    /// Who decided a human approval.
    decided_by: String,
    decision_comment: String,
    duration_ms: i64,
    error: String,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    /// When a failed attempt is retried, if it is.
    #[schema(format = DateTime)]
    next_retry_at: Option<String>,
    node_id: String,
    node_type: String,
    /// The node's output (left out of run lists).
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    output_summary: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`, `waiting_approval`, ...
    status: String,
}

fn node_run_body(n: &NodeRun) -> NodeRunJson {
    NodeRunJson {
        attempt: n.attempt,
        decided_by: n.decided_by.clone(),
        decision_comment: n.decision_comment.clone(),
        duration_ms: n.duration_ms,
        error: n.error.clone(),
        finished_at: timestamp(n.finished_at.as_ref()),
        next_retry_at: timestamp(n.next_retry_at.as_ref()),
        node_id: n.node_id.clone(),
        node_type: n.node_type.clone(),
        output: n.output.as_ref().map(proto_struct_to_json),
        output_summary: n.output_summary.clone(),
        started_at: timestamp(n.started_at.as_ref()),
        status: enum_name(
            NodeRunStatus::try_from(n.status).unwrap_or(NodeRunStatus::Unspecified).as_str_name(),
            "NODE_RUN_STATUS_",
        ),
    }
}

/// A run with its node timeline.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Run)]
pub(crate) struct RunJson {
    cancel_reason: String,
    #[schema(format = DateTime)]
    created_at: Option<String>,
    duration_ms: i64,
    error: Option<ErrorDetailJson>,
    #[schema(format = DateTime)]
    finished_at: Option<String>,
    id: String,
    #[schema(value_type = Object)]
    input: Value,
    /// The MindsDB job of a `mindsdb_job` run.
    job_name: String,
    /// Sequence of the run's last event.
    last_sequence: i64,
    /// The run's persisted logs: only on `GET /api/v1/workflows/runs/{run_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    logs: Option<Vec<LogJson>>,
    /// `engine` or `mindsdb_job`.
    mode: String,
    node_runs: Vec<NodeRunJson>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    /// `pending`, `running`, `waiting_approval`, `succeeded`, `failed` or `cancelled`.
    status: String,
    /// `manual`, `schedule`, ...
    trigger: String,
    triggered_by: String,
    workflow_id: String,
    workflow_version: i64,
}

/// A run with its node timeline, and `logs` when given.
pub(crate) fn typed_run(r: &Run, logs: Option<&[LogEntry]>) -> RunJson {
    RunJson {
        cancel_reason: r.cancel_reason.clone(),
        created_at: timestamp(r.created_at.as_ref()),
        duration_ms: r.duration_ms,
        error: r.error.as_ref().map(error_detail_body),
        finished_at: timestamp(r.finished_at.as_ref()),
        id: r.id.clone(),
        input: opt_struct_to_json(r.input.as_ref()),
        job_name: r.job_name.clone(),
        last_sequence: r.last_sequence,
        logs: logs.map(|logs| logs.iter().map(log_body).collect()),
        mode: mode_name(r.mode),
        node_runs: r.node_runs.iter().map(node_run_body).collect(),
        result: r.result.as_ref().map(proto_struct_to_json),
        started_at: timestamp(r.started_at.as_ref()),
        status: run_status_name(r.status),
        trigger: enum_name(
            RunTrigger::try_from(r.trigger).unwrap_or(RunTrigger::Unspecified).as_str_name(),
            "RUN_TRIGGER_",
        ),
        triggered_by: r.triggered_by.clone(),
        workflow_id: r.workflow_id.clone(),
        workflow_version: r.workflow_version,
    }
}

/// A run with its node timeline.
pub(crate) fn run_json(r: &Run) -> RunJson {
    typed_run(r, None)
}

/// One persisted log line of a run.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = RunLog)]
pub(crate) struct LogJson {
    attempt: i32,
    #[schema(value_type = Object)]
    fields: Value,
    /// `debug`, `info`, `warn` or `error`.
    level: String,
    #[schema(format = DateTime)]
    logged_at: Option<String>,
    message: String,
    node_id: String,
}

fn log_body(l: &LogEntry) -> LogJson {
    LogJson {
        attempt: l.attempt,
        fields: opt_struct_to_json(l.fields.as_ref()),
        level: enum_name(LogLevel::try_from(l.level).unwrap_or(LogLevel::Unspecified).as_str_name(), "LOG_LEVEL_"),
        logged_at: timestamp(l.logged_at.as_ref()),
        message: l.message.clone(),
        node_id: l.node_id.clone(),
    }
}

/// One run of a MindsDB job (`log.jobs_history`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = JobHistoryEntry)]
pub(crate) struct JobEntryJson {
    error: String,
    job_name: String,
    /// The job's SQL; only for callers with `users.read` (admins).
    query: String,
    #[schema(format = DateTime)]
    run_end: Option<String>,
    /// The GETLOOD run the job's execution recorded, if any.
    run_id: String,
    #[schema(format = DateTime)]
    run_start: Option<String>,
}

fn job_entry_json(e: &JobHistoryEntry) -> JobEntryJson {
    JobEntryJson {
        error: e.error.clone(),
        job_name: e.job_name.clone(),
        query: e.query.clone(),
        run_end: timestamp(e.run_end.as_ref()),
        run_id: e.run_id.clone(),
        run_start: timestamp(e.run_start.as_ref()),
    }
}

/// `GET /api/v1/workflows` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WorkflowList {
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
    /// Latest versions, by name.
    workflows: Vec<WorkflowJson>,
}

/// `GET /api/v1/workflows/{id}/versions` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionList {
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
    /// Newest first.
    versions: Vec<VersionJson>,
}

/// `GET /api/v1/workflows/runs` and `GET /api/v1/workflows/{id}/runs` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RunList {
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// Newest first, without node outputs.
    runs: Vec<RunJson>,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
}

/// `GET /api/v1/workflows/{id}/jobs/history` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct JobHistory {
    /// Newest first.
    entries: Vec<JobEntryJson>,
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
}

// ---- JSON in --------------------------------------------------------------------------------

/// A graph as the React Flow editor saves it; React Flow's other node and edge fields
/// (`width`, `selected`, `animated`, ...) are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = WorkflowGraphInput)]
pub(crate) struct GraphBody {
    #[serde(default)]
    nodes: Vec<NodeBody>,
    #[serde(default)]
    edges: Vec<EdgeBody>,
    /// React Flow's `toObject()` viewport, kept in `editor_state.viewport`.
    viewport: Option<Value>,
    /// Any other editor-only state, stored as given: a JSON object.
    #[schema(value_type = Option<Object>)]
    editor_state: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = WorkflowNodeInput)]
struct NodeBody {
    #[serde(default)]
    id: String,
    #[serde(default, rename = "type")]
    kind: String,
    /// The node's settings, a JSON object; its fields depend on `type`.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
    position: Option<PositionBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = NodePositionInput)]
struct PositionBody {
    #[serde(default)]
    x: f64,
    #[serde(default)]
    y: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = WorkflowEdgeInput)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateWorkflowInput)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdateWorkflowInput)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ValidateWorkflowInput)]
pub(crate) struct ValidateBody {
    graph: Option<GraphBody>,
}

/// `POST /api/v1/workflows/{id}/execute` body; may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = ExecuteWorkflowInput)]
pub(crate) struct ExecuteBody {
    /// The run's input, a JSON object.
    #[schema(value_type = Option<Object>)]
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
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = CancelRunInput)]
pub(crate) struct CancelBody {
    #[serde(default)]
    reason: String,
}

/// `POST /api/v1/workflows/runs/{run_id}/approve` body. `approved` is required: a forgotten
/// decision must not read as a rejection.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ApproveNodeInput)]
pub(crate) struct ApproveBody {
    node_id: String,
    approved: bool,
    #[serde(default)]
    comment: String,
}

/// `POST /api/v1/workflows/{id}/schedule` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ScheduleInput)]
pub(crate) struct ScheduleBody {
    /// Every `every_count` `unit`s (at least 1).
    #[serde(default)]
    every_count: i32,
    /// `minute`, `hour`, `day`, `week` or `month`.
    #[serde(default)]
    unit: String,
    /// RFC 3339 time of the first run.
    #[schema(format = DateTime)]
    start_at: Option<String>,
    /// RFC 3339 time after which no run starts.
    #[schema(format = DateTime)]
    end_at: Option<String>,
    /// `engine` (default) or `mindsdb_job`.
    mode: Option<String>,
    /// The workflow version to run; 0 is the latest.
    #[serde(default)]
    version: i64,
    /// The input of each run, a JSON object.
    #[schema(value_type = Option<Object>)]
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
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListOptions {
    /// Leave each workflow's graph out (`graph` is `null`), for a lighter listing.
    #[serde(default)]
    omit_graph: bool,
}

/// Query of `GET /api/v1/workflows/{id}`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetOptions {
    /// This version instead of the latest; 0 or absent is the latest.
    #[serde(default)]
    version: i64,
}

/// Query of the run lists: `status` is comma-separated (`running,waiting_approval`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunFilter {
    /// Only runs in these statuses, comma-separated: `pending`, `running`, `waiting_approval`,
    /// `succeeded`, `failed`, `cancelled`.
    status: Option<String>,
}

/// Query of `GET /api/v1/workflows/runs/{run_id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(default)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunOptions {
    /// Include the run's persisted logs (default true).
    include_logs: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { include_logs: true }
    }
}

/// Query of the run events route.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Resume after this event `id` (the `Last-Event-ID` header wins over it).
    after: Option<String>,
}

// ---- Handlers -------------------------------------------------------------------------------

/// A workflow version as a response with its `ETag`.
fn workflow_response(status: StatusCode, workflow: Option<Workflow>) -> Response {
    let workflow = workflow.unwrap_or_default();
    with_etag(status, workflow.version, workflow_json(&workflow))
}

/// A run as a response body.
fn run_body(run: Option<Run>) -> Json<RunJson> {
    Json(run_json(&run.unwrap_or_default()))
}

/// `POST /api/v1/workflows/validate` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Validation {
    /// Every problem, with its node or edge id.
    problems: Vec<Violation>,
    valid: bool,
}

/// `DELETE /api/v1/workflows/{id}/schedule` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Unscheduled {
    /// The workflow's id.
    id: String,
    /// Always true.
    unscheduled: bool,
}

/// `GET /api/v1/workflows`: the tenant's workflows (latest versions) by name; `omit_graph=true`
/// for a lighter listing.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "workflows", params(PageQuery, ListOptions),
    responses((status = 200, description = "A page of the tenant's workflows (latest versions) by name", body = WorkflowList)))]
pub(crate) async fn list_workflows(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(options): ApiQuery<ListOptions>,
) -> Result<Json<WorkflowList>, ApiError> {
    let req = ListWorkflowsRequest { page: page.page(), omit_graph: options.omit_graph };
    let resp = unary(SERVICE, state.upstreams.workflow().list_workflows(caller.request(req))).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(WorkflowList {
        next_page_token,
        total_size,
        workflows: resp.workflows.iter().map(workflow_json).collect(),
    }))
}

/// `POST /api/v1/workflows`: 201 with version 1 and its `ETag`; an invalid graph is a 400
/// whose message lists every problem with its node or edge id.
#[utoipa::path(post, path = "/api/v1/workflows", tag = "workflows", params(IdempotencyKey), request_body = CreateBody,
    responses((status = 201, description = "Version 1 of the new workflow", body = WorkflowJson, headers(("ETag" = String, description = "The version")))))]
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
#[utoipa::path(get, path = "/api/v1/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "The workflow's id"), GetOptions),
    responses((status = 200, description = "The workflow version", body = WorkflowJson, headers(("ETag" = String, description = "The version")))))]
pub(crate) async fn get_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(options): ApiQuery<GetOptions>,
) -> Result<Response, ApiError> {
    let req = GetWorkflowRequest { workflow_id: id, version: options.version };
    let resp = unary(SERVICE, state.upstreams.workflow().get_workflow(caller.request(req))).await?;
    Ok(workflow_response(StatusCode::OK, resp.workflow))
}

/// `PUT /api/v1/workflows/{id}`: saves a new version; a stale `If-Match` (or
/// `expected_version`) is 409.
#[utoipa::path(put, path = "/api/v1/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "The workflow's id"), IfMatch), request_body = UpdateBody,
    responses((status = 200, description = "The new version", body = WorkflowJson, headers(("ETag" = String, description = "The new version")))))]
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
#[utoipa::path(delete, path = "/api/v1/workflows/{id}", tag = "workflows", params(("id" = String, Path, description = "The workflow's id"), IfMatch, VersionQuery),
    responses((status = 200, description = "The workflow is deleted; started runs finish", body = Deleted)))]
pub(crate) async fn delete_workflow(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let req = DeleteWorkflowRequest { workflow_id: id, expected_version: if_match.or(query.expected_version)? };
    let resp = unary(SERVICE, state.upstreams.workflow().delete_workflow(caller.request(req))).await?;
    Ok(Json(Deleted::id(resp.workflow_id)))
}

/// `GET /api/v1/workflows/{id}/versions`: newest first.
#[utoipa::path(get, path = "/api/v1/workflows/{id}/versions", tag = "workflows", params(("id" = String, Path, description = "The workflow's id"), PageQuery),
    responses((status = 200, description = "A page of the workflow's versions, newest first", body = VersionList)))]
pub(crate) async fn list_versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<VersionList>, ApiError> {
    let req = ListWorkflowVersionsRequest { workflow_id: id, page: page.page() };
    let resp = unary(SERVICE, state.upstreams.workflow().list_workflow_versions(caller.request(req))).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(VersionList { next_page_token, total_size, versions: resp.versions.iter().map(version_body).collect() }))
}

/// `POST /api/v1/workflows/validate` (`{"graph": ...}`): 200 with `valid` and every problem,
/// for the editor; an invalid graph is not an error here.
#[utoipa::path(post, path = "/api/v1/workflows/validate", tag = "workflows", request_body = ValidateBody,
    responses((status = 200, description = "Whether the graph is valid, and every problem (an invalid graph is not an error here)", body = Validation)))]
pub(crate) async fn validate_workflow(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<ValidateBody>,
) -> Result<Json<Validation>, ApiError> {
    let req = ValidateWorkflowRequest { graph: Some(required_graph(body.graph)?) };
    let resp = unary(SERVICE, state.upstreams.workflow().validate_workflow(caller.request(req))).await?;
    Ok(Json(Validation { problems: resp.problems.iter().map(violation_body).collect(), valid: resp.valid }))
}

/// `POST /api/v1/workflows/{id}/execute`: 202 with the run (pending or running); follow it
/// with `GET /api/v1/workflows/runs/{run_id}` or its events. The body (`input`, `version`,
/// `mode`, `timeout_ms`, `request_id`) may be empty.
#[utoipa::path(post, path = "/api/v1/workflows/{id}/execute", tag = "runs", params(("id" = String, Path, description = "The workflow's id"), IdempotencyKey),
    request_body(content = Option<ExecuteBody>, description = "Optional; an empty body runs the latest version with no input"),
    responses((status = 202, description = "The started run (pending or running)", body = RunJson)))]
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
) -> Result<Json<RunList>, ApiError> {
    let statuses = comma_list(filter.status.as_deref());
    let resp = runs_page(state, caller, workflow_id, &statuses, page.page()).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(RunList { next_page_token, runs: resp.runs.iter().map(run_json).collect(), total_size }))
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
#[utoipa::path(get, path = "/api/v1/workflows/{id}/runs", tag = "runs", params(("id" = String, Path, description = "The workflow's id"), PageQuery, RunFilter),
    responses((status = 200, description = "A page of the workflow's runs, newest first, without node outputs", body = RunList)))]
pub(crate) async fn list_workflow_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<RunFilter>,
) -> Result<Json<RunList>, ApiError> {
    list_runs_of(&state, &caller, id, page, filter).await
}

/// `GET /api/v1/workflows/runs`: every run of the tenant, newest first, filtered like
/// [`list_workflow_runs`].
#[utoipa::path(get, path = "/api/v1/workflows/runs", tag = "runs", params(PageQuery, RunFilter),
    responses((status = 200, description = "A page of the tenant's runs, newest first, without node outputs", body = RunList)))]
pub(crate) async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<PageQuery>,
    ApiQuery(filter): ApiQuery<RunFilter>,
) -> Result<Json<RunList>, ApiError> {
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
#[utoipa::path(get, path = "/api/v1/workflows/runs/{run_id}", tag = "runs", params(("run_id" = String, Path, description = "The run's id"), RunOptions),
    responses((status = 200, description = "The run with its node timeline and `logs`", body = RunJson)))]
pub(crate) async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    ApiQuery(options): ApiQuery<RunOptions>,
) -> Result<Json<RunJson>, ApiError> {
    let (run, logs) = fetch_run(&state, &caller, run_id, options.include_logs).await?;
    Ok(Json(typed_run(&run, Some(&logs))))
}

/// `POST /api/v1/workflows/runs/{run_id}/cancel` (optional `{"reason"}`): the cancelled run; a
/// finished run is `failed_precondition`.
#[utoipa::path(post, path = "/api/v1/workflows/runs/{run_id}/cancel", tag = "runs", params(("run_id" = String, Path, description = "The run's id")),
    request_body(content = Option<CancelBody>, description = "Optional"),
    responses((status = 200, description = "The cancelled run; a finished run is 409 failed_precondition", body = RunJson)))]
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    OptionalJson(body): OptionalJson<CancelBody>,
) -> Result<Json<RunJson>, ApiError> {
    let req = CancelRunRequest { run_id, reason: body.reason };
    let resp = unary(SERVICE, state.upstreams.workflow().cancel_run(caller.request(req))).await?;
    Ok(run_body(resp.run))
}

/// `POST /api/v1/workflows/runs/{run_id}/approve` (`{"node_id","approved","comment"}`): the
/// decision on a waiting human_approval node; a run or node not waiting is `failed_precondition`.
#[utoipa::path(post, path = "/api/v1/workflows/runs/{run_id}/approve", tag = "runs", params(("run_id" = String, Path, description = "The run's id")), request_body = ApproveBody,
    description = "Needs `runs.approve`, and not the run's starter unless self-approval is allowed.",
    responses((status = 200, description = "The run after the decision; a run or node not waiting is 409 failed_precondition", body = RunJson)))]
pub(crate) async fn approve_node(
    State(state): State<AppState>,
    caller: Caller,
    Path(run_id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<RunJson>, ApiError> {
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
#[utoipa::path(get, path = "/api/v1/workflows/runs/{run_id}/events", tag = "runs", params(("run_id" = String, Path, description = "The run's id"), EventsQuery, LastEventId),
    description = "The run's `run.*` and `node.*` events as Server-Sent Events (`id: <cursor>`, `event: <type>`, `data: <Event JSON>`; `event: resync`, `error` or `expired` end the stream), or over a WebSocket when the request is an upgrade (then 101). Starts with the run's first retained event unless a cursor is given.",
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 101, description = "Switched to a WebSocket carrying the same events as JSON frames")))]
pub(crate) async fn run_events(
    State(state): State<AppState>,
    caller: Caller,
    last_event_id: LastEventId,
    Path(run_id): Path<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
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
#[utoipa::path(post, path = "/api/v1/workflows/{id}/schedule", tag = "workflows", params(("id" = String, Path, description = "The workflow's id")), request_body = ScheduleBody,
    responses((status = 200, description = "The stored schedule (set or replaced)", body = ScheduleJson)))]
pub(crate) async fn schedule_workflow(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<Json<ScheduleJson>, ApiError> {
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
    Ok(Json(schedule_body(&resp.schedule.unwrap_or_default())))
}

/// `DELETE /api/v1/workflows/{id}/schedule`: removes the schedule (and its MindsDB job).
#[utoipa::path(delete, path = "/api/v1/workflows/{id}/schedule", tag = "workflows", params(("id" = String, Path, description = "The workflow's id")),
    responses((status = 200, description = "The schedule (and its MindsDB job) is removed", body = Unscheduled)))]
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
#[utoipa::path(get, path = "/api/v1/workflows/{id}/jobs/history", tag = "workflows", params(("id" = String, Path, description = "The workflow's id"), PageQuery),
    responses((status = 200, description = "A page of the MindsDB job's history, newest first", body = JobHistory)))]
pub(crate) async fn job_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<JobHistory>, ApiError> {
    let req = GetJobHistoryRequest { workflow_id: id, page: page.page() };
    let resp = unary(SERVICE, state.upstreams.workflow().get_job_history(caller.request(req))).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(JobHistory { entries: resp.entries.iter().map(job_entry_json).collect(), next_page_token, total_size }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rest::assert_sorted_keys;

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
        let violation = FieldViolation { field: "f".into(), subject: "n1".into(), description: "bad".into() };
        let validation = Validation { problems: vec![violation_body(&violation)], valid: false };
        let old = json!({"valid": false, "problems": [{"field": "f", "subject": "n1", "description": "bad"}]});
        assert_eq!(serde_json::to_string(&validation).unwrap(), old.to_string());
        let ts = Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 0 });
        let graph = Graph {
            nodes: vec![Node { id: "n".into(), r#type: "start".into(), data: None, position: None }],
            edges: vec![Edge { id: "e".into(), source: "n".into(), target: "m".into(), ..Edge::default() }],
            editor_state: None,
        };
        let workflow = Workflow {
            id: "wf".into(),
            graph: Some(graph),
            schedule: Some(Schedule { every_count: 1, start_at: ts, ..Schedule::default() }),
            created_at: ts,
            ..Workflow::default()
        };
        assert_sorted_keys(&workflow_json(&workflow));
        let run = Run {
            id: "r".into(),
            error: Some(ErrorDetail { field_violations: vec![violation], ..ErrorDetail::default() }),
            node_runs: vec![NodeRun { node_id: "n".into(), started_at: ts, ..NodeRun::default() }],
            created_at: ts,
            ..Run::default()
        };
        let log = LogEntry { logged_at: ts, message: "m".into(), ..LogEntry::default() };
        assert_sorted_keys(&typed_run(&run, Some(std::slice::from_ref(&log))));
        assert_eq!(serde_json::to_value(run_json(&run)).unwrap().get("logs"), None);
        assert_sorted_keys(&RunList {
            next_page_token: String::new(),
            runs: vec![run_json(&run)],
            total_size: Some(1),
        });
        let version = WorkflowVersion { workflow_id: "wf".into(), created_at: ts, ..WorkflowVersion::default() };
        assert_sorted_keys(&VersionList {
            next_page_token: String::new(),
            total_size: None,
            versions: vec![version_body(&version)],
        });
        assert_sorted_keys(&WorkflowList { next_page_token: String::new(), total_size: None, workflows: vec![] });
        let entry = JobHistoryEntry { job_name: "j".into(), run_start: ts, ..JobHistoryEntry::default() };
        assert_sorted_keys(&JobHistory {
            entries: vec![job_entry_json(&entry)],
            next_page_token: String::new(),
            total_size: None,
        });
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
