//! The stored rows of a run and its nodes, their statuses, and their protobuf forms.

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use getlood_proto::common::v1::{ErrorCode as DetailCode, ErrorDetail};
use getlood_proto::workflow::v1 as pb;
use serde_json::Value;
use uuid::Uuid;

use crate::convert::{json_to_struct, ts, ts_opt};
use crate::error::{Error, Result};

/// Run statuses as stored.
pub(crate) mod run_status {
    pub const RUNNING: &str = "running";
    pub const WAITING: &str = "waiting_approval";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
}

/// Node statuses as stored.
pub(crate) mod node_status {
    pub const PENDING: &str = "pending";
    pub const QUEUED: &str = "queued";
    pub const RUNNING: &str = "running";
    pub const RETRYING: &str = "retrying";
    pub const WAITING: &str = "waiting_approval";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const SKIPPED: &str = "skipped";
    pub const CANCELLED: &str = "cancelled";
}

/// Whether a run status is final.
pub(crate) fn run_is_final(status: &str) -> bool {
    matches!(status, run_status::SUCCEEDED | run_status::FAILED | run_status::CANCELLED)
}

/// Whether a node status means the node still has work in flight.
pub(super) fn node_is_active(status: &str) -> bool {
    matches!(status, node_status::QUEUED | node_status::RUNNING | node_status::RETRYING | node_status::WAITING)
}
/// A run row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct RunRow {
    pub id: Uuid,
    pub tenant_id: String,
    pub workflow_id: Uuid,
    pub workflow_version: i64,
    pub status: String,
    pub mode: String,
    pub trigger: String,
    pub triggered_by: String,
    pub input: Value,
    pub result: Option<Value>,
    pub error_code: String,
    pub error_message: String,
    pub failed_node_id: String,
    pub job_name: String,
    pub cancel_reason: String,
    pub request_id: String,
    pub deadline: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_sequence: i64,
}

/// Columns of [`RunRow`], in its field order.
pub(crate) const RUN_COLUMNS: &str = "id, tenant_id, workflow_id, workflow_version, status, mode, trigger, triggered_by, \
     input, result, error_code, error_message, failed_node_id, job_name, cancel_reason, request_id, deadline, \
     created_at, started_at, finished_at, last_sequence";

/// A node row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct NodeRow {
    pub node_id: String,
    pub node_type: String,
    pub ordinal: i32,
    pub status: String,
    pub attempt: i32,
    pub reached_seq: Option<i64>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub attempt_started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: i64,
    pub lease_until: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub output: Option<Value>,
    pub output_summary: String,
    pub error: String,
    pub decided_by: String,
    pub decision_comment: String,
}

/// Columns of [`NodeRow`], in its field order.
pub(crate) const NODE_COLUMNS: &str = "node_id, node_type, ordinal, status, attempt, reached_seq, queued_at, \
     started_at, attempt_started_at, finished_at, duration_ms, lease_until, next_retry_at, output, output_summary, \
     error, decided_by, decision_comment";

impl NodeRow {
    pub(super) fn new(node_id: &str, node_type: &str, ordinal: i32) -> Self {
        Self {
            node_id: node_id.to_owned(),
            node_type: node_type.to_owned(),
            ordinal,
            status: node_status::PENDING.to_owned(),
            attempt: 0,
            reached_seq: None,
            queued_at: None,
            started_at: None,
            attempt_started_at: None,
            finished_at: None,
            duration_ms: 0,
            lease_until: None,
            next_retry_at: None,
            output: None,
            output_summary: String::new(),
            error: String::new(),
            decided_by: String::new(),
            decision_comment: String::new(),
        }
    }

    /// The timeline entry; `with_output` adds the full output (GetRun only).
    pub(crate) fn to_proto(&self, with_output: bool) -> pb::NodeRun {
        use pb::NodeRunStatus as S;
        let status = match self.status.as_str() {
            node_status::RUNNING => S::Running,
            node_status::RETRYING => S::Retrying,
            node_status::WAITING => S::WaitingApproval,
            node_status::SUCCEEDED => S::Succeeded,
            node_status::FAILED => S::Failed,
            node_status::SKIPPED => S::Skipped,
            node_status::CANCELLED => S::Cancelled,
            _ => S::Pending,
        };
        pb::NodeRun {
            node_id: self.node_id.clone(),
            node_type: self.node_type.clone(),
            status: status as i32,
            attempt: self.attempt,
            started_at: ts_opt(self.started_at),
            finished_at: ts_opt(self.finished_at),
            duration_ms: self.duration_ms,
            output_summary: self.output_summary.clone(),
            output: if with_output { self.output.clone().map(json_to_struct) } else { None },
            error: self.error.clone(),
            next_retry_at: if self.status == node_status::RETRYING { ts_opt(self.next_retry_at) } else { None },
            decided_by: self.decided_by.clone(),
            decision_comment: self.decision_comment.clone(),
        }
    }
}

pub(super) fn mode_proto(mode: &str) -> pb::ExecutionMode {
    if mode == "mindsdb_job" { pb::ExecutionMode::MindsdbJob } else { pb::ExecutionMode::Engine }
}

pub(super) fn trigger_proto(t: &str) -> pb::RunTrigger {
    match t {
        "schedule" => pb::RunTrigger::Schedule,
        "pipeline" => pb::RunTrigger::Pipeline,
        _ => pb::RunTrigger::Manual,
    }
}

/// Run status as protobuf.
pub(crate) fn run_status_proto(s: &str) -> pb::RunStatus {
    match s {
        run_status::RUNNING => pb::RunStatus::Running,
        run_status::WAITING => pb::RunStatus::WaitingApproval,
        run_status::SUCCEEDED => pb::RunStatus::Succeeded,
        run_status::FAILED => pb::RunStatus::Failed,
        run_status::CANCELLED => pb::RunStatus::Cancelled,
        _ => pb::RunStatus::Pending,
    }
}

/// Stored name of a protobuf run status (for filters).
pub(crate) fn run_status_name(s: pb::RunStatus) -> &'static str {
    match s {
        pb::RunStatus::Running => run_status::RUNNING,
        pb::RunStatus::WaitingApproval => run_status::WAITING,
        pb::RunStatus::Succeeded => run_status::SUCCEEDED,
        pb::RunStatus::Failed => run_status::FAILED,
        pb::RunStatus::Cancelled => run_status::CANCELLED,
        _ => "pending",
    }
}

/// Protobuf error code of a stored error code name.
pub(super) fn error_code_proto(code: &str) -> DetailCode {
    match code {
        "deadline_exceeded" => DetailCode::DeadlineExceeded,
        "upstream_failure" => DetailCode::UpstreamFailure,
        "invalid_argument" => DetailCode::InvalidArgument,
        "failed_precondition" => DetailCode::FailedPrecondition,
        "unavailable" => DetailCode::Unavailable,
        "not_found" => DetailCode::NotFound,
        _ => DetailCode::Internal,
    }
}

impl RunRow {
    /// The run as protobuf; `nodes` fills the timeline.
    pub(crate) fn to_proto(&self, nodes: &[NodeRow], with_output: bool) -> pb::Run {
        let mut timeline: Vec<&NodeRow> = nodes.iter().collect();
        timeline.sort_by_key(|n| (n.reached_seq.unwrap_or(i64::MAX), n.ordinal));
        let error = (self.status == run_status::FAILED).then(|| ErrorDetail {
            code: error_code_proto(&self.error_code) as i32,
            message: self.error_message.clone(),
            ..Default::default()
        });
        pb::Run {
            id: self.id.to_string(),
            workflow_id: self.workflow_id.to_string(),
            workflow_version: self.workflow_version,
            status: run_status_proto(&self.status) as i32,
            mode: mode_proto(&self.mode) as i32,
            trigger: trigger_proto(&self.trigger) as i32,
            triggered_by: self.triggered_by.clone(),
            input: Some(json_to_struct(self.input.clone())),
            result: self.result.clone().map(json_to_struct),
            error,
            node_runs: timeline.into_iter().map(|n| n.to_proto(with_output)).collect(),
            job_name: self.job_name.clone(),
            cancel_reason: self.cancel_reason.clone(),
            created_at: Some(ts(self.created_at)),
            started_at: ts_opt(self.started_at),
            finished_at: ts_opt(self.finished_at),
            duration_ms: self.duration_ms(),
            last_sequence: self.last_sequence,
        }
    }

    pub(super) fn duration_ms(&self) -> i64 {
        match (self.started_at, self.finished_at) {
            (Some(s), Some(f)) => (f - s).num_milliseconds(),
            _ => 0,
        }
    }

    pub(crate) fn tenant(&self) -> Result<TenantId> {
        TenantId::parse(&self.tenant_id).map_err(|_| Error::Internal("stored tenant id is invalid".to_owned()))
    }
}

/// A log line to persist.
#[derive(Debug, Clone)]
pub(crate) struct LogLine {
    pub node_id: String,
    pub attempt: i32,
    pub level: pb::LogLevel,
    pub message: String,
    pub fields: Value,
}

pub(super) fn level_name(l: pb::LogLevel) -> &'static str {
    match l {
        pb::LogLevel::Debug => "debug",
        pb::LogLevel::Warn => "warn",
        pb::LogLevel::Error => "error",
        _ => "info",
    }
}

/// Protobuf level of a stored level name.
pub(crate) fn level_proto(l: &str) -> pb::LogLevel {
    match l {
        "debug" => pb::LogLevel::Debug,
        "warn" => pb::LogLevel::Warn,
        "error" => pb::LogLevel::Error,
        _ => pb::LogLevel::Info,
    }
}
