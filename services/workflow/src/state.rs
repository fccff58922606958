//! A run's durable state inside one Postgres transaction: the run row (locked), its node rows,
//! the graph it is pinned to, and every event the transaction produces.
//!
//! All state changes of a run go through [`RunTx`], under the run's row lock, so concurrent
//! branch completions serialize and the run-local event sequence has no gaps or duplicates.
//! On commit, the run's WatchRun items (`run_events`), its log lines (`run_logs`) and its
//! `run.*`/`node.*` envelopes (`outbox`) are written in the same transaction as the change.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use getlood_events::{Domain, EventEnvelope, Payload, new_envelope};
use getlood_proto::common::v1::{ErrorCode as DetailCode, ErrorDetail};
use getlood_proto::events::v1 as ev;
use getlood_proto::workflow::v1 as pb;
use prost::Message as _;
use serde_json::{Map, Value, json};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::convert::{json_to_struct, ts, ts_opt};
use crate::error::{Error, Result};
use crate::model::{Graph, NodeKind, Scope, render_value, summarize};

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

fn node_is_active(status: &str) -> bool {
    matches!(status, node_status::QUEUED | node_status::RUNNING | node_status::RETRYING | node_status::WAITING)
}

/// A domain event of a change: its type and its payload, given the run sequence it gets.
type EventFn = (&'static str, Box<dyn FnOnce(i64) -> Payload>);

/// Actor of engine-caused events.
pub(crate) const SYSTEM: &str = "system";

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
    fn new(node_id: &str, node_type: &str, ordinal: i32) -> Self {
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

fn mode_proto(mode: &str) -> pb::ExecutionMode {
    if mode == "mindsdb_job" { pb::ExecutionMode::MindsdbJob } else { pb::ExecutionMode::Engine }
}

fn trigger_proto(t: &str) -> pb::RunTrigger {
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

fn error_code_proto(code: &str) -> DetailCode {
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

    fn duration_ms(&self) -> i64 {
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

fn level_name(l: pb::LogLevel) -> &'static str {
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

/// One run's state under its row lock, plus what the transaction has produced so far.
pub(crate) struct RunTx {
    tx: Transaction<'static, Postgres>,
    pub run: RunRow,
    pub nodes: Vec<NodeRow>,
    pub graph: Arc<Graph>,
    /// Nodes whose row changed.
    dirty: HashSet<usize>,
    /// Nodes inserted by this transaction (new runs).
    inserted: bool,
    events: Vec<(i64, Vec<u8>)>,
    logs: Vec<(i64, LogLine)>,
    outbox: Vec<EventEnvelope>,
    /// Nodes that became ready and wait to be run (inline or through the queue).
    ready: VecDeque<usize>,
    /// Ready nodes that need a worker: published to the work queue after commit.
    pub to_publish: Vec<usize>,
    /// Whether the run row reached a final status in this transaction.
    pub finished: bool,
    pub now: DateTime<Utc>,
}

impl std::fmt::Debug for RunTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunTx").field("run", &self.run.id).finish_non_exhaustive()
    }
}

impl RunTx {
    /// A new run's state (nothing is written until [`RunTx::commit`]).
    pub(crate) fn create(tx: Transaction<'static, Postgres>, run: RunRow, graph: Arc<Graph>) -> Self {
        let nodes = graph.nodes.iter().enumerate().map(|(i, n)| NodeRow::new(&n.id, &n.kind_name, i as i32)).collect();
        Self::assemble(tx, run, nodes, graph, true)
    }

    fn assemble(
        tx: Transaction<'static, Postgres>,
        run: RunRow,
        nodes: Vec<NodeRow>,
        graph: Arc<Graph>,
        inserted: bool,
    ) -> Self {
        Self {
            tx,
            run,
            nodes,
            graph,
            dirty: HashSet::new(),
            inserted,
            events: Vec::new(),
            logs: Vec::new(),
            outbox: Vec::new(),
            ready: VecDeque::new(),
            to_publish: Vec::new(),
            finished: false,
            now: Utc::now(),
        }
    }

    /// Locks run `id` and loads its nodes; `None` when there is no such run (or, with a
    /// tenant, when it belongs to another tenant).
    pub(crate) async fn load(
        mut tx: Transaction<'static, Postgres>,
        id: Uuid,
        tenant: Option<&TenantId>,
        graph: impl AsyncFnOnce(&RunRow) -> Result<Arc<Graph>>,
    ) -> Result<Option<Self>> {
        let sql =
            format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = $1 AND ($2::text IS NULL OR tenant_id = $2) FOR UPDATE");
        let run: Option<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(tenant.map(TenantId::as_str))
            .fetch_optional(&mut *tx)
            .await?;
        let Some(run) = run else { return Ok(None) };
        let sql = format!("SELECT {NODE_COLUMNS} FROM node_runs WHERE run_id = $1 ORDER BY ordinal");
        let nodes: Vec<NodeRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(&mut *tx).await?;
        let graph = graph(&run).await?;
        if nodes.len() != graph.nodes.len() {
            return Err(Error::Internal(format!(
                "run {id} has {} node rows for {} nodes",
                nodes.len(),
                graph.nodes.len()
            )));
        }
        Ok(Some(Self::assemble(tx, run, nodes, graph, false)))
    }

    /// Index of node `id`.
    pub(crate) fn idx(&self, node_id: &str) -> Option<usize> {
        self.graph.idx(node_id)
    }

    fn tenant(&self) -> TenantId {
        // Rows are only ever written with a validated tenant id.
        TenantId::parse(&self.run.tenant_id)
            .unwrap_or_else(|_| TenantId::parse("invalid").unwrap_or_else(|_| unreachable!()))
    }

    fn next_seq(&mut self) -> i64 {
        self.run.last_sequence += 1;
        self.run.last_sequence
    }

    fn push_event(&mut self, event: pb::watch_run_response::Event) -> i64 {
        let seq = self.next_seq();
        let body = pb::WatchRunResponse { sequence: seq, event: Some(event) }.encode_to_vec();
        self.events.push((seq, body));
        seq
    }

    fn envelope(&mut self, actor: &str, event_type: &str, payload: Payload) {
        let env = new_envelope(&self.tenant(), actor, &self.run.id.to_string(), event_type, payload);
        self.outbox.push(env);
    }

    /// Records a node change (streamed to watchers) and, when given, its domain event.
    fn node_changed(&mut self, i: usize, event: Option<EventFn>) {
        self.dirty.insert(i);
        let item = pb::watch_run_response::Event::NodeUpdated(self.nodes[i].to_proto(false));
        let seq = self.push_event(item);
        if let Some((ty, payload)) = event {
            let p = payload(seq);
            self.envelope(SYSTEM, ty, p);
        }
    }

    /// Records a run change and its domain event.
    fn run_changed(&mut self, actor: &str, event: Option<EventFn>) {
        let item = pb::watch_run_response::Event::RunUpdated(self.run.to_proto(&[], false));
        let seq = self.push_event(item);
        if let Some((ty, payload)) = event {
            let p = payload(seq);
            self.envelope(actor, ty, p);
        }
    }

    /// Adds a persisted log line (also streamed to watchers).
    pub(crate) fn log(&mut self, line: LogLine) {
        let entry = pb::LogEntry {
            logged_at: Some(ts(self.now)),
            node_id: line.node_id.clone(),
            attempt: line.attempt,
            level: line.level as i32,
            message: line.message.clone(),
            fields: Some(json_to_struct(line.fields.clone())),
        };
        // A log line's sequence is its WatchRun sequence: unique per run and in order.
        let seq = self.push_event(pb::watch_run_response::Event::Log(entry));
        self.logs.push((seq, line));
    }

    fn node_log(&mut self, i: usize, level: pb::LogLevel, message: String, fields: Value) {
        let (node_id, attempt) = (self.nodes[i].node_id.clone(), self.nodes[i].attempt);
        self.log(LogLine { node_id, attempt, level, message, fields });
    }

    /// Starts the run: status running, the start node ready (RUN_STARTED).
    pub(crate) fn start(&mut self) {
        self.run.status = run_status::RUNNING.to_owned();
        self.run.started_at = Some(self.now);
        let run = self.run.clone();
        let actor = if run.triggered_by.is_empty() { SYSTEM.to_owned() } else { run.triggered_by.clone() };
        self.run_changed(
            &actor,
            Some((
                "run.started",
                Box::new(move |seq| {
                    Payload::RunStarted(ev::RunStarted {
                        run_id: run.id.to_string(),
                        workflow_id: run.workflow_id.to_string(),
                        workflow_version: run.workflow_version,
                        mode: mode_proto(&run.mode) as i32,
                        trigger: trigger_proto(&run.trigger) as i32,
                        run_sequence: seq,
                    })
                }),
            )),
        );
        self.log(LogLine {
            node_id: String::new(),
            attempt: 0,
            level: pb::LogLevel::Info,
            message: format!("run started (workflow version {})", self.run.workflow_version),
            fields: json!({"trigger": self.run.trigger, "mode": self.run.mode}),
        });
        if self.run.mode == "engine" {
            let start = self.graph.idx(&self.graph.start().id).unwrap_or(0);
            self.make_ready(start);
        }
    }

    fn make_ready(&mut self, i: usize) {
        self.nodes[i].status = node_status::QUEUED.to_owned();
        self.nodes[i].queued_at = Some(self.now);
        self.nodes[i].reached_seq = Some(self.run.last_sequence);
        self.dirty.insert(i);
        self.ready.push_back(i);
    }

    /// Marks a new attempt of node `i` as running (NODE_STARTED); `lease` is how long the
    /// claim holds without renewal.
    pub(crate) fn start_attempt(&mut self, i: usize, lease: chrono::Duration) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.attempt += 1;
        n.status = node_status::RUNNING.to_owned();
        n.attempt_started_at = Some(now);
        n.started_at.get_or_insert(now);
        n.lease_until = Some(now + lease);
        n.next_retry_at = None;
        let (run_id, wf) = (self.run.id.to_string(), self.run.workflow_id.to_string());
        let (node_id, node_type, attempt) = (n.node_id.clone(), n.node_type.clone(), n.attempt);
        self.node_changed(
            i,
            Some((
                "node.started",
                Box::new(move |seq| {
                    Payload::NodeStarted(ev::NodeStarted {
                        run_id,
                        workflow_id: wf,
                        node_id,
                        node_type,
                        attempt,
                        started_at: Some(ts(now)),
                        run_sequence: seq,
                    })
                }),
            )),
        );
    }

    /// Takes over a node whose worker stopped mid-attempt (its lease expired): the same attempt
    /// runs again, without a second NODE_STARTED.
    pub(crate) fn resume_attempt(&mut self, i: usize, lease: chrono::Duration) {
        self.nodes[i].lease_until = Some(self.now + lease);
        self.dirty.insert(i);
        self.node_log(i, pb::LogLevel::Warn, "resuming node after its worker stopped".to_owned(), json!({}));
    }

    /// The outputs visible to node `i`: the run input and every succeeded node's output.
    pub(crate) fn scope(&self) -> Scope {
        let mut scope = Scope::new();
        scope.insert("input".to_owned(), self.run.input.clone());
        for n in &self.nodes {
            if n.status == node_status::SUCCEEDED
                && let Some(o) = &n.output
            {
                scope.insert(n.node_id.clone(), o.clone());
            }
        }
        scope
    }

    /// Records node `i`'s success (NODE_COMPLETED) and moves the run forward.
    pub(crate) fn succeed(&mut self, i: usize, output: Value) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.status = node_status::SUCCEEDED.to_owned();
        n.finished_at = Some(now);
        n.duration_ms = n.attempt_started_at.map_or(0, |s| (now - s).num_milliseconds().max(0));
        n.output_summary = summarize(&output);
        n.output = Some(output);
        n.lease_until = None;
        n.error.clear();
        let (run_id, wf) = (self.run.id.to_string(), self.run.workflow_id.to_string());
        let (node_id, node_type, attempt, duration_ms, summary) =
            (n.node_id.clone(), n.node_type.clone(), n.attempt, n.duration_ms, n.output_summary.clone());
        self.node_changed(
            i,
            Some((
                "node.completed",
                Box::new(move |seq| {
                    Payload::NodeCompleted(ev::NodeCompleted {
                        run_id,
                        workflow_id: wf,
                        node_id,
                        node_type,
                        attempt,
                        duration_ms,
                        output_summary: summary,
                        run_sequence: seq,
                    })
                }),
            )),
        );
        self.node_log(
            i,
            pb::LogLevel::Info,
            "node completed".to_owned(),
            json!({"duration_ms": self.nodes[i].duration_ms}),
        );
        self.resolve_successors(i);
        self.maybe_finish();
    }

    /// Records a failed attempt of node `i` (NODE_FAILED). With `retry_at` the node waits for
    /// another attempt; without, it has failed for good and so has the run.
    pub(crate) fn fail_attempt(&mut self, i: usize, error: &str, retry_at: Option<DateTime<Utc>>) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.error = error.chars().take(2000).collect();
        n.lease_until = None;
        n.duration_ms = n.attempt_started_at.map_or(0, |s| (now - s).num_milliseconds().max(0));
        match retry_at {
            Some(at) => {
                n.status = node_status::RETRYING.to_owned();
                n.next_retry_at = Some(at);
            }
            None => {
                n.status = node_status::FAILED.to_owned();
                n.finished_at = Some(now);
            }
        }
        let (run_id, wf) = (self.run.id.to_string(), self.run.workflow_id.to_string());
        let (node_id, node_type, attempt, duration_ms, err) =
            (n.node_id.clone(), n.node_type.clone(), n.attempt, n.duration_ms, n.error.clone());
        self.node_changed(
            i,
            Some((
                "node.failed",
                Box::new(move |seq| {
                    Payload::NodeFailed(ev::NodeFailed {
                        run_id,
                        workflow_id: wf,
                        node_id,
                        node_type,
                        attempt,
                        error: err,
                        will_retry: retry_at.is_some(),
                        next_retry_at: retry_at.map(ts),
                        duration_ms,
                        run_sequence: seq,
                    })
                }),
            )),
        );
        let level = if retry_at.is_some() { pb::LogLevel::Warn } else { pb::LogLevel::Error };
        let msg = if retry_at.is_some() { "node attempt failed, retrying" } else { "node failed" };
        self.node_log(i, level, msg.to_owned(), json!({"error": self.nodes[i].error}));
        if retry_at.is_none() {
            let node_id = self.nodes[i].node_id.clone();
            self.fail_run("upstream_failure", &format!("node '{node_id}' failed: {}", self.nodes[i].error), &node_id);
        }
    }

    /// Puts a human_approval node in waiting state (RUN_WAITING_APPROVAL).
    pub(crate) fn wait_for_approval(&mut self, i: usize, message: &str) {
        self.nodes[i].status = node_status::WAITING.to_owned();
        self.nodes[i].lease_until = None;
        self.node_changed(i, None);
        self.run.status = run_status::WAITING.to_owned();
        let (run_id, wf, node_id, message) = (
            self.run.id.to_string(),
            self.run.workflow_id.to_string(),
            self.nodes[i].node_id.clone(),
            message.to_owned(),
        );
        self.run_changed(
            SYSTEM,
            Some((
                "run.waiting_approval",
                Box::new(move |seq| {
                    Payload::RunWaitingApproval(ev::RunWaitingApproval {
                        run_id,
                        workflow_id: wf,
                        node_id,
                        message,
                        run_sequence: seq,
                    })
                }),
            )),
        );
    }

    /// Records an approval decision on waiting node `i`. A rejection without a `rejected` edge
    /// fails the node and the run.
    pub(crate) fn decide(&mut self, i: usize, approved: bool, user: &str, comment: &str) {
        self.nodes[i].decided_by = user.to_owned();
        self.nodes[i].decision_comment = comment.to_owned();
        if !self.nodes.iter().enumerate().any(|(j, n)| j != i && n.status == node_status::WAITING) {
            self.run.status = run_status::RUNNING.to_owned();
            self.run_changed(user, None);
        }
        let has_rejected_edge =
            self.graph.out_edges[i].iter().any(|&e| self.graph.doc.edges[e].source_handle == "rejected");
        if !approved && !has_rejected_edge {
            self.fail_attempt(i, "rejected by approver", None);
            return;
        }
        let branch = if approved { "approved" } else { "rejected" };
        self.succeed(i, json!({"approved": approved, "branch": branch, "decided_by": user, "comment": comment}));
    }

    /// Whether edge `e` is resolved (`Some`) and, if so, taken.
    fn edge_state(&self, e: usize) -> Option<bool> {
        let s = self.graph.source(e);
        let row = &self.nodes[s];
        match row.status.as_str() {
            node_status::SUCCEEDED => Some(match self.graph.nodes[s].kind.branches() {
                Some(_) => {
                    row.output.as_ref().and_then(|o| o.get("branch")).and_then(Value::as_str)
                        == Some(self.graph.doc.edges[e].source_handle.as_str())
                }
                None => true,
            }),
            node_status::SKIPPED | node_status::FAILED | node_status::CANCELLED => Some(false),
            _ => None,
        }
    }

    /// Makes ready (or skips) every successor of `i` whose incoming edges are all resolved.
    fn resolve_successors(&mut self, i: usize) {
        let mut stack: Vec<usize> = self.graph.out_edges[i].iter().map(|&e| self.graph.target(e)).collect();
        while let Some(t) = stack.pop() {
            if self.nodes[t].status != node_status::PENDING {
                continue;
            }
            let states: Vec<Option<bool>> = self.graph.in_edges[t].iter().map(|&e| self.edge_state(e)).collect();
            if states.iter().any(Option::is_none) {
                continue;
            }
            if states.contains(&Some(true)) {
                self.make_ready(t);
            } else {
                // Only untaken branches lead here: skip it and look further down.
                self.nodes[t].status = node_status::SKIPPED.to_owned();
                self.nodes[t].reached_seq = Some(self.run.last_sequence);
                self.node_changed(t, None);
                stack.extend(self.graph.out_edges[t].iter().map(|&e| self.graph.target(e)));
            }
        }
    }

    /// Ends the run when nothing is left to do.
    fn maybe_finish(&mut self) {
        if run_is_final(&self.run.status) || self.nodes.iter().any(|n| node_is_active(&n.status)) {
            return;
        }
        // The last end node to finish gives the result.
        let end = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, n)| {
                n.status == node_status::SUCCEEDED && matches!(self.graph.nodes[*j].kind, NodeKind::End { .. })
            })
            .max_by_key(|(_, n)| n.finished_at);
        match end {
            Some((_, n)) => {
                let result = n.output.clone().unwrap_or(Value::Object(Map::new()));
                self.complete_run(result);
            }
            None => self.fail_run("failed_precondition", "no end node was reached", ""),
        }
    }

    fn complete_run(&mut self, result: Value) {
        self.run.status = run_status::SUCCEEDED.to_owned();
        self.run.finished_at = Some(self.now);
        self.run.result = Some(result.clone());
        self.finished = true;
        let (run_id, wf, duration_ms) =
            (self.run.id.to_string(), self.run.workflow_id.to_string(), self.run.duration_ms());
        self.log(LogLine {
            node_id: String::new(),
            attempt: 0,
            level: pb::LogLevel::Info,
            message: "run completed".to_owned(),
            fields: json!({"duration_ms": duration_ms}),
        });
        self.run_changed(
            SYSTEM,
            Some((
                "run.completed",
                Box::new(move |seq| {
                    Payload::RunCompleted(ev::RunCompleted {
                        run_id,
                        workflow_id: wf,
                        duration_ms,
                        result: Some(json_to_struct(result)),
                        run_sequence: seq,
                    })
                }),
            )),
        );
    }

    /// Stops every node still active (they will not run, or their result will be ignored).
    fn cancel_active(&mut self) {
        for j in 0..self.nodes.len() {
            let status = self.nodes[j].status.clone();
            if node_is_active(&status) || status == node_status::PENDING {
                self.nodes[j].status = node_status::CANCELLED.to_owned();
                self.nodes[j].lease_until = None;
                if status != node_status::PENDING {
                    self.nodes[j].finished_at = Some(self.now);
                    self.node_changed(j, None);
                } else {
                    self.dirty.insert(j);
                }
            }
        }
    }

    /// Fails the run (RUN_FAILED); `code` is the stored error code name.
    pub(crate) fn fail_run(&mut self, code: &str, message: &str, failed_node: &str) {
        if run_is_final(&self.run.status) {
            return;
        }
        self.cancel_active();
        self.run.status = run_status::FAILED.to_owned();
        self.run.finished_at = Some(self.now);
        self.run.error_code = code.to_owned();
        self.run.error_message = message.chars().take(2000).collect();
        self.run.failed_node_id = failed_node.to_owned();
        self.finished = true;
        self.log(LogLine {
            node_id: failed_node.to_owned(),
            attempt: 0,
            level: pb::LogLevel::Error,
            message: "run failed".to_owned(),
            fields: json!({"error": self.run.error_message}),
        });
        let (run_id, wf, duration_ms) =
            (self.run.id.to_string(), self.run.workflow_id.to_string(), self.run.duration_ms());
        let detail = ErrorDetail {
            code: error_code_proto(code) as i32,
            message: self.run.error_message.clone(),
            ..Default::default()
        };
        let failed_node = failed_node.to_owned();
        self.run_changed(
            SYSTEM,
            Some((
                "run.failed",
                Box::new(move |seq| {
                    Payload::RunFailed(ev::RunFailed {
                        run_id,
                        workflow_id: wf,
                        error: Some(detail),
                        failed_node_id: failed_node,
                        duration_ms,
                        run_sequence: seq,
                    })
                }),
            )),
        );
    }

    /// Cancels the run (RUN_CANCELLED).
    pub(crate) fn cancel(&mut self, user: &str, reason: &str) {
        self.cancel_active();
        self.run.status = run_status::CANCELLED.to_owned();
        self.run.finished_at = Some(self.now);
        self.run.cancel_reason = reason.to_owned();
        self.finished = true;
        self.log(LogLine {
            node_id: String::new(),
            attempt: 0,
            level: pb::LogLevel::Warn,
            message: "run cancelled".to_owned(),
            fields: json!({"reason": reason, "cancelled_by": user}),
        });
        let (run_id, wf) = (self.run.id.to_string(), self.run.workflow_id.to_string());
        let (reason, by) = (reason.to_owned(), user.to_owned());
        self.run_changed(
            user,
            Some((
                "run.cancelled",
                Box::new(move |seq| {
                    Payload::RunCancelled(ev::RunCancelled {
                        run_id,
                        workflow_id: wf,
                        reason,
                        cancelled_by: by,
                        run_sequence: seq,
                    })
                }),
            )),
        );
    }

    /// Completes a MindsDB-job run from its history row: every node shares the job's outcome.
    pub(crate) fn finish_job(&mut self, error: Option<&str>, result: Value) {
        for j in 0..self.nodes.len() {
            self.nodes[j].status =
                if error.is_some() { node_status::CANCELLED } else { node_status::SUCCEEDED }.to_owned();
            self.nodes[j].finished_at = Some(self.now);
            self.nodes[j].started_at.get_or_insert(self.run.started_at.unwrap_or(self.now));
            self.node_changed(j, None);
        }
        match error {
            Some(e) => self.fail_run("upstream_failure", &format!("mindsdb job failed: {e}"), ""),
            None => self.complete_run(result),
        }
    }

    /// Puts queued node `i` back among the ready nodes (its work message arrived).
    pub(crate) fn requeue(&mut self, i: usize) {
        self.ready.push_back(i);
    }

    /// Runs the ready nodes that need no worker (start, end, transform, condition, and
    /// human_approval's pause) right here; the others are left for the work queue.
    pub(crate) fn drain_ready(&mut self, lease: chrono::Duration) {
        while let Some(i) = self.ready.pop_front() {
            if run_is_final(&self.run.status) || self.nodes[i].status != node_status::QUEUED {
                continue;
            }
            let kind = self.graph.nodes[i].kind.clone();
            if kind.is_instant() {
                self.start_attempt(i, lease);
                match self.eval_instant(i, &kind) {
                    Ok(out) => self.succeed(i, out),
                    Err(e) => self.fail_attempt(i, &e, None),
                }
            } else if let NodeKind::HumanApproval { message } = &kind {
                self.start_attempt(i, lease);
                let message = crate::model::render_text(message, &self.scope()).unwrap_or_else(|_| message.clone());
                self.wait_for_approval(i, &message);
            } else {
                self.to_publish.push(i);
            }
        }
    }

    fn eval_instant(&self, i: usize, kind: &NodeKind) -> Result<Value, String> {
        let scope = self.scope();
        match kind {
            NodeKind::Start => Ok(self.run.input.clone()),
            NodeKind::Transform { mapping } => render_value(&Value::Object(mapping.clone()), &scope),
            NodeKind::Condition { expr } => {
                let b = expr.eval(&scope)?;
                Ok(json!({"result": b, "branch": if b { "true" } else { "false" }}))
            }
            NodeKind::End { output: Some(tpl) } => render_value(tpl, &scope),
            NodeKind::End { output: None } => {
                // Without a template the end node passes on what reached it.
                let preds: Vec<usize> = self.graph.in_edges[i]
                    .iter()
                    .map(|&e| self.graph.source(e))
                    .filter(|&s| self.nodes[s].status == node_status::SUCCEEDED)
                    .collect();
                Ok(match preds.as_slice() {
                    [one] => self.nodes[*one].output.clone().unwrap_or(Value::Null),
                    many => Value::Object(
                        many.iter()
                            .map(|&s| {
                                (self.nodes[s].node_id.clone(), self.nodes[s].output.clone().unwrap_or(Value::Null))
                            })
                            .collect(),
                    ),
                })
            }
            _ => Err("not an instant node".to_owned()),
        }
    }

    /// Renews nothing, changes nothing: a read-only look ends here.
    pub(crate) async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// Writes every change and event in one statement, then commits. `channel` is the Postgres
    /// NOTIFY channel WatchRun streams (and cancellation on other replicas) listen on; it is
    /// notified only while some WatchRun stream follows the run (see [`WRITE_TAIL`]).
    pub(crate) async fn commit(mut self, channel: &str) -> Result<Committed> {
        let id = self.run.id;
        if self.inserted {
            self.dirty = (0..self.nodes.len()).collect();
        }
        let r = &self.run;
        let query = if self.inserted {
            sqlx::query(sqlx::AssertSqlSafe(INSERT_SQL.as_str()))
                .bind(r.id)
                .bind(&r.tenant_id)
                .bind(r.workflow_id)
                .bind(r.workflow_version)
                .bind(&r.status)
                .bind(&r.mode)
                .bind(&r.trigger)
                .bind(&r.triggered_by)
                .bind(&r.input)
                .bind(&r.result)
                .bind(&r.error_code)
                .bind(&r.error_message)
                .bind(&r.failed_node_id)
                .bind(&r.job_name)
                .bind(&r.cancel_reason)
                .bind(&r.request_id)
                .bind(r.deadline)
                .bind(r.created_at)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.last_sequence)
        } else {
            sqlx::query(sqlx::AssertSqlSafe(UPDATE_SQL.as_str()))
                .bind(id)
                .bind(&r.status)
                .bind(&r.result)
                .bind(&r.error_code)
                .bind(&r.error_message)
                .bind(&r.failed_node_id)
                .bind(&r.cancel_reason)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.last_sequence)
                .bind(&r.job_name)
        };

        let mut rows: Vec<&NodeRow> = self.dirty.iter().map(|&i| &self.nodes[i]).collect();
        rows.sort_by_key(|n| n.ordinal);
        macro_rules! col {
            ($f:ident) => {
                rows.iter().map(|n| n.$f.clone()).collect::<Vec<_>>()
            };
        }
        let query = query
            .bind(col!(node_id))
            .bind(col!(node_type))
            .bind(col!(ordinal))
            .bind(col!(status))
            .bind(col!(attempt))
            .bind(col!(reached_seq))
            .bind(col!(queued_at))
            .bind(col!(started_at))
            .bind(col!(attempt_started_at))
            .bind(col!(finished_at))
            .bind(col!(duration_ms))
            .bind(col!(lease_until))
            .bind(col!(next_retry_at))
            .bind(col!(output))
            .bind(col!(output_summary))
            .bind(col!(error))
            .bind(col!(decided_by))
            .bind(col!(decision_comment));

        let (seqs, bodies): (Vec<i64>, Vec<Vec<u8>>) = std::mem::take(&mut self.events).into_iter().unzip();
        let query = query.bind(seqs).bind(bodies);

        let logs = std::mem::take(&mut self.logs);
        let query = query
            .bind(self.now)
            .bind(logs.iter().map(|(s, _)| *s).collect::<Vec<i64>>())
            .bind(logs.iter().map(|(_, l)| l.node_id.clone()).collect::<Vec<String>>())
            .bind(logs.iter().map(|(_, l)| l.attempt).collect::<Vec<i32>>())
            .bind(logs.iter().map(|(_, l)| level_name(l.level).to_owned()).collect::<Vec<String>>())
            .bind(logs.iter().map(|(_, l)| l.message.clone()).collect::<Vec<String>>())
            .bind(logs.iter().map(|(_, l)| l.fields.clone()).collect::<Vec<Value>>());

        // The outbox table of libs/events. Its ids are v7 made in order, so the relay, which
        // sends by id, keeps the events of this transaction (and of this run) in order.
        let published_events = self.outbox.len();
        let ids: Vec<Uuid> =
            self.outbox.iter().map(|e| Uuid::parse_str(&e.id).unwrap_or_else(|_| Uuid::now_v7())).collect();
        let envelopes: Vec<Vec<u8>> = self.outbox.iter().map(prost::Message::encode_to_vec).collect();
        let query = query.bind(Domain::Workflow.token()).bind(ids).bind(envelopes).bind(channel);

        query.execute(&mut *self.tx).await?;
        self.tx.commit().await?;
        let to_publish = self.to_publish.iter().map(|&i| self.nodes[i].node_id.clone()).collect();
        Ok(Committed { run_id: id, to_publish, events: published_events })
    }
}

/// The write of a new run: the run row is `$1`..`$21`.
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    let values = (1..=21).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    write_sql(&format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES ({values})"), 21)
});

/// The write of a loaded run: the run row's mutable columns are `$1`..`$11`.
static UPDATE_SQL: LazyLock<String> = LazyLock::new(|| {
    write_sql(
        "UPDATE runs SET status = $2, result = $3, error_code = $4, error_message = $5, failed_node_id = $6, \
         cancel_reason = $7, started_at = $8, finished_at = $9, last_sequence = $10, job_name = $11 WHERE id = $1",
        11,
    )
});

/// Column types of the node rows' arrays, in [`NODE_COLUMNS`] order.
const NODE_ARRAY_TYPES: [&str; 18] = [
    "text[]",
    "text[]",
    "int[]",
    "text[]",
    "int[]",
    "bigint[]",
    "timestamptz[]",
    "timestamptz[]",
    "timestamptz[]",
    "timestamptz[]",
    "bigint[]",
    "timestamptz[]",
    "timestamptz[]",
    "jsonb[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
];

/// One statement for the whole commit, instead of one per table (and one for the NOTIFY): the
/// run row (`run`, whose parameters are `$1`..`$params`, `$1` being the run id), then the
/// changed node rows, the WatchRun items, the log lines, the outbox rows (each as arrays, empty
/// when there are none) and the NOTIFY channel. See [`WRITE_TAIL`] for when it notifies.
fn write_sql(run: &str, params: usize) -> String {
    let mut n = params;
    let mut p = |ty: &str| {
        n += 1;
        format!("${n}::{ty}")
    };
    let nodes = NODE_ARRAY_TYPES.map(&mut p).join(", ");
    let events = [p("bigint[]"), p("bytea[]")].join(", ");
    let logged_at = p("timestamptz");
    let logs = ["bigint[]", "text[]", "int[]", "text[]", "text[]", "jsonb[]"].map(&mut p).join(", ");
    let domain = p("text");
    let outbox = [p("uuid[]"), p("bytea[]")].join(", ");
    let channel = p("text");
    format!(
        "WITH run AS ({run}), \
         nodes AS (INSERT INTO node_runs (run_id, {NODE_COLUMNS}) SELECT $1, * FROM UNNEST({nodes}) \
           ON CONFLICT (run_id, node_id) DO UPDATE SET status = EXCLUDED.status, attempt = EXCLUDED.attempt, \
           reached_seq = EXCLUDED.reached_seq, queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at, \
           attempt_started_at = EXCLUDED.attempt_started_at, finished_at = EXCLUDED.finished_at, \
           duration_ms = EXCLUDED.duration_ms, lease_until = EXCLUDED.lease_until, \
           next_retry_at = EXCLUDED.next_retry_at, output = EXCLUDED.output, \
           output_summary = EXCLUDED.output_summary, error = EXCLUDED.error, decided_by = EXCLUDED.decided_by, \
           decision_comment = EXCLUDED.decision_comment), \
         events AS (INSERT INTO run_events (run_id, sequence, body) SELECT $1, * FROM UNNEST({events})), \
         logs AS (INSERT INTO run_logs (run_id, sequence, logged_at, node_id, attempt, level, message, fields) \
           SELECT $1, s, {logged_at}, n, a, l, m, f FROM UNNEST({logs}) AS u(s, n, a, l, m, f)), \
         outbox AS (INSERT INTO outbox (id, domain, envelope) SELECT i, {domain}, b FROM UNNEST({outbox}) AS u(i, b)) \
         {WRITE_TAIL}",
        WRITE_TAIL = WRITE_TAIL.replace("$channel", &channel),
    )
}

/// The NOTIFY of a commit, sent only while a WatchRun stream (of any replica) follows the run:
/// NOTIFY takes a database-wide lock from before the commit until after its WAL flush, which
/// serializes every notifying commit, so a notify per state change capped the engine. A
/// stream marks the run (`watched_until`, see `Store::watch`) before it reads the run's items,
/// and that update waits for the run's row lock, so each commit either sees the mark (and
/// notifies) or committed before the stream's first read. A new run has no watcher yet (the
/// statement's snapshot does not see the row it inserts).
const WRITE_TAIL: &str = "SELECT pg_notify($channel, $1::text) FROM runs WHERE id = $1 AND watched_until > now()";

/// What a committed transaction leaves to do.
#[derive(Debug)]
pub(crate) struct Committed {
    pub run_id: Uuid,
    /// Nodes to hand to the work queue.
    pub to_publish: Vec<String>,
    /// Outbox rows written (the relay's backlog).
    pub events: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholders of a commit's statement, in order of first use.
    fn placeholders(sql: &str) -> Vec<usize> {
        let mut seen = Vec::new();
        for part in sql.split('$').skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<usize>()
                && !seen.contains(&n)
            {
                seen.push(n);
            }
        }
        seen
    }

    #[test]
    fn commit_statements_number_their_parameters_as_commit_binds_them() {
        // Run row, 18 node arrays, 2 event arrays, logged_at and 6 log arrays, domain and 2
        // outbox arrays, the channel.
        let tail = 18 + 2 + 7 + 3 + 1;
        for (sql, run) in [(INSERT_SQL.as_str(), 21), (UPDATE_SQL.as_str(), 11)] {
            let mut used = placeholders(sql);
            used.sort_unstable();
            assert_eq!(used, (1..=run + tail).collect::<Vec<_>>(), "{sql}");
        }
        assert!(INSERT_SQL.ends_with(WRITE_TAIL.replace("$channel", "$52::text").as_str()));
    }
}
