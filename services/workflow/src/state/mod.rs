//! A run's durable state inside one Postgres transaction: the run row (locked), its node rows,
//! the graph it is pinned to, and every event the transaction produces.
//!
//! All state changes of a run go through [`RunTx`], under the run's row lock, so concurrent
//! branch completions serialize and the run-local event sequence has no gaps or duplicates.
//! On commit, the run's WatchRun items (`run_events`), its log lines (`run_logs`) and its
//! `run.*`/`node.*` envelopes (`outbox`) are written in the same transaction as the change.
mod commit;
mod machine;
mod rows;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use getlood_events::{EventEnvelope, Payload, new_envelope};
use getlood_proto::workflow::v1 as pb;
use prost::Message as _;
use serde_json::Value;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

pub(crate) use commit::Committed;
pub(crate) use rows::{
    LogLine, NODE_COLUMNS, NodeRow, RUN_COLUMNS, RunRow, level_proto, node_status, run_is_final, run_status,
    run_status_name,
};

use crate::convert::{json_to_struct, ts};
use crate::error::{Error, Result};
use crate::model::Graph;

/// A domain event of a change: its type and its payload, given the run sequence it gets.
type EventFn = (&'static str, Box<dyn FnOnce(i64) -> Payload>);

/// Actor of engine-caused events.
pub(crate) const SYSTEM: &str = "system";
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
}
