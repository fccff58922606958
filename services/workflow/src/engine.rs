//! The engine: creates runs, executes nodes handed out by the work queue, and keeps runs moving
//! after crashes.
//!
//! Durability rules:
//! * Every state change happens in a Postgres transaction under the run's row lock
//!   ([`RunTx`]), together with its events (outbox) and WatchRun items.
//! * Nodes that do I/O are claimed (RUNNING, attempt n, a lease) and committed before they
//!   execute, and their completion is accepted only if the node is still RUNNING at attempt n:
//!   a completed node never runs again, and a duplicate delivery is a no-op.
//! * Work messages are acknowledged only when the node needs nothing more from them; a worker
//!   that dies leaves its message unacknowledged, JetStream redelivers it after the lease, and
//!   the next worker resumes the attempt.
//! * A sweeper re-publishes nodes whose message was lost between commit and publish, and fails
//!   runs past their deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::StreamExt as _;
use getlood_auth::TenantId;
use getlood_common::sealing::SealingKey;
use getlood_mindsdb::{Ident, JobAdapter, TenantContext};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::WorkflowSettings;
use crate::backlog::RelayBacklog;
use crate::error::{Error, Result};
use crate::model::{Graph, GraphDoc, Limits, NodeKind};
use crate::nodes::{NodeError, NodeRunner};
use crate::queue::{WorkItem, WorkQueue};
use crate::remote::{Progress, ProgressUpdate};
use crate::sqlnode::SqlPolicy;
use crate::state::{Committed, RunRow, RunTx, node_status, run_is_final, run_status};

/// What to do with a work message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Done with it.
    Ack,
    /// Deliver it again after this delay.
    Nak(Duration),
}

/// Parameters of a new run.
#[derive(Debug, Clone)]
pub(crate) struct NewRun {
    pub tenant: TenantId,
    pub workflow_id: Uuid,
    pub version: i64,
    pub graph: Arc<Graph>,
    pub input: Value,
    pub mode: &'static str,
    pub trigger: &'static str,
    pub triggered_by: String,
    pub timeout: Duration,
    pub request_id: String,
    pub job_name: String,
}

/// The engine shared by the gRPC service, the workers, the sweeper and the scheduler.
pub(crate) struct Engine {
    pub pool: PgPool,
    pub queue: WorkQueue,
    /// Wakes the outbox relay after a commit that wrote events.
    pub backlog: Arc<RelayBacklog>,
    pub runner: NodeRunner,
    pub jobs: JobAdapter,
    pub settings: WorkflowSettings,
    /// What graphs are validated against when saved (`app.max_graph_*`, `app.sql`).
    pub limits: Limits,
    /// What `sql` nodes may read (`app.sql.allow`), also applied when they run.
    pub sql_policy: SqlPolicy,
    /// Postgres NOTIFY channel of this deployment: every committed run change, and `c:<run>`
    /// for cancellations.
    pub channel: String,
    /// Committed run changes, for WatchRun streams of this replica.
    pub changes: broadcast::Sender<Uuid>,
    graphs: Mutex<HashMap<(Uuid, i64), Arc<Graph>>>,
    /// Opens remote nodes' credentials sealed in stored graphs (`app.key_encryption_key`).
    key: Option<SealingKey>,
    running: Mutex<HashMap<Uuid, Vec<(u64, CancellationToken)>>>,
    next_token: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("channel", &self.channel).finish_non_exhaustive()
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Engine {
    pub(crate) fn new(
        pool: PgPool,
        queue: WorkQueue,
        backlog: Arc<RelayBacklog>,
        runner: NodeRunner,
        jobs: JobAdapter,
        settings: WorkflowSettings,
        schema: &str,
    ) -> Self {
        let sql_policy = runner.sql_policy().clone();
        let key = settings.key_encryption_key.as_ref().map(SealingKey::new);
        let limits = Limits {
            max_nodes: Some(settings.max_graph_nodes),
            max_edges: Some(settings.max_graph_edges),
            sql: Some(sql_policy.clone()),
            egress: Some(runner.egress().clone()),
        };
        Self {
            pool,
            queue,
            backlog,
            runner,
            jobs,
            settings,
            limits,
            sql_policy,
            channel: format!("wf_{schema}"),
            changes: broadcast::channel(4096).0,
            graphs: Mutex::new(HashMap::new()),
            key,
            running: Mutex::new(HashMap::new()),
            next_token: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lease(&self) -> chrono::Duration {
        chrono_dur(self.settings.node_lease)
    }

    /// The graph of a workflow version; versions are immutable, so it is cached forever
    /// (bounded: the cache is dropped when it grows past 10 000 entries).
    pub(crate) async fn graph(&self, tenant: &str, workflow_id: Uuid, version: i64) -> Result<Arc<Graph>> {
        if let Some(g) =
            self.graphs.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&(workflow_id, version))
        {
            return Ok(g.clone());
        }
        let row: Option<(Value,)> = sqlx::query_as(
            "SELECT graph FROM workflow_versions WHERE tenant_id = $1 AND workflow_id = $2 AND version = $3",
        )
        .bind(tenant)
        .bind(workflow_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        let (graph,) = row.ok_or_else(|| Error::not_found("workflow version", &format!("{workflow_id}@{version}")))?;
        let mut doc: GraphDoc =
            serde_json::from_value(graph).map_err(|e| Error::Internal(format!("stored graph: {e}")))?;
        doc.open_credentials(self.key.as_ref(), tenant, &workflow_id.to_string()).map_err(Error::Internal)?;
        // Stored graphs were checked when saved: no size limit or SQL policy that changed since
        // may stop their runs from loading (the node runner applies the SQL policy instead).
        let graph = Arc::new(
            Graph::build(doc, &Limits::default())
                .map_err(|_| Error::Internal("stored graph does not validate".to_owned()))?,
        );
        let mut cache = self.graphs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert((workflow_id, version), graph.clone());
        Ok(graph)
    }

    /// Locks and loads run `id` (of `tenant`, when given).
    pub(crate) async fn load(&self, id: Uuid, tenant: Option<&TenantId>) -> Result<Option<RunTx>> {
        let tx = self.pool.begin().await?;
        RunTx::load(tx, id, tenant, async |run: &RunRow| {
            self.graph(&run.tenant_id, run.workflow_id, run.workflow_version).await
        })
        .await
    }

    /// Commits `rtx`, then hands its ready nodes to the work queue and wakes the outbox relay.
    pub(crate) async fn commit(&self, rtx: RunTx) -> Result<Committed> {
        let done = rtx.commit(&self.channel).await?;
        self.backlog.committed(done.events);
        let _ = self.changes.send(done.run_id);
        for node_id in &done.to_publish {
            let item = WorkItem { run_id: done.run_id, node_id: node_id.clone() };
            // A failed publish is not lost: the sweeper re-publishes queued nodes.
            if let Err(e) = self.queue.publish(&item).await {
                tracing::warn!(run_id = %done.run_id, node_id, error = %e, "work publish failed, the sweeper will retry");
            }
        }
        Ok(done)
    }

    /// Creates a run and returns it as it started. In engine mode, the nodes that need no worker
    /// (start, transforms, conditions, end, an approval's pause) run right here, in the
    /// transaction that creates the run: a workflow of such nodes finishes in that one commit,
    /// without a trip through the work queue. Crash safety is the commit's: the run and
    /// everything it did exist together or not at all. The other ready nodes go to the work
    /// queue after commit.
    pub(crate) async fn create_run(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Postgres>,
        new: NewRun,
    ) -> Result<RunTxView> {
        let now = Utc::now();
        let run = RunRow {
            id: Uuid::now_v7(),
            tenant_id: new.tenant.to_string(),
            workflow_id: new.workflow_id,
            workflow_version: new.version,
            status: "pending".to_owned(),
            mode: new.mode.to_owned(),
            trigger: new.trigger.to_owned(),
            triggered_by: new.triggered_by,
            input: new.input,
            result: None,
            error_code: String::new(),
            error_message: String::new(),
            failed_node_id: String::new(),
            job_name: new.job_name,
            cancel_reason: String::new(),
            request_id: new.request_id,
            deadline: now + chrono_dur(new.timeout),
            created_at: now,
            started_at: None,
            finished_at: None,
            last_sequence: 0,
        };
        let mut rtx = RunTx::create(tx, run, new.graph);
        rtx.start();
        // The answer is the run as it started, as ExecuteWorkflow promises (PENDING or RUNNING,
        // "returns it at once"): what follows in this commit is told by WatchRun from the
        // answer's last_sequence + 1, by GetRun and by the events.
        let view = RunTxView::of(&rtx);
        rtx.drain_ready(self.lease());
        self.commit(rtx).await?;
        Ok(view)
    }

    /// Registers a node execution for local cancellation.
    fn track(&self, run_id: Uuid) -> (u64, CancellationToken) {
        let token = CancellationToken::new();
        let id = self.next_token.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(run_id)
            .or_default()
            .push((id, token.clone()));
        (id, token)
    }

    fn untrack(&self, run_id: Uuid, token: u64) {
        let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = running.get_mut(&run_id) {
            list.retain(|(id, _)| *id != token);
            if list.is_empty() {
                running.remove(&run_id);
            }
        }
    }

    /// Interrupts this replica's executions of `run_id`.
    pub(crate) fn cancel_local(&self, run_id: Uuid) {
        if let Some(list) = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&run_id) {
            list.iter().for_each(|(_, t)| t.cancel());
        }
    }

    /// Handles one work message; `msg` receives progress acks while a node executes.
    pub(crate) async fn process(&self, item: &WorkItem, msg: Option<&jetstream::Message>) -> Result<Disposition> {
        let Some(mut rtx) = self.load(item.run_id, None).await? else { return Ok(Disposition::Ack) };
        if run_is_final(&rtx.run.status) || rtx.run.mode != "engine" {
            rtx.rollback().await?;
            return Ok(Disposition::Ack);
        }
        let now = rtx.now;
        if now > rtx.run.deadline {
            rtx.fail_run("deadline_exceeded", "the run exceeded its timeout", "");
            self.commit(rtx).await?;
            self.cancel_local(item.run_id);
            return Ok(Disposition::Ack);
        }
        let Some(i) = rtx.idx(&item.node_id) else {
            rtx.rollback().await?;
            return Ok(Disposition::Ack);
        };
        let node = rtx.nodes[i].clone();
        let resume = match node.status.as_str() {
            node_status::QUEUED => false,
            node_status::RETRYING => match node.next_retry_at {
                Some(at) if at > now => {
                    rtx.rollback().await?;
                    return Ok(Disposition::Nak((at - now).to_std().unwrap_or_default()));
                }
                _ => false,
            },
            node_status::RUNNING => match node.lease_until {
                // Another worker holds it: look again when its lease would have run out.
                Some(until) if until > now => {
                    rtx.rollback().await?;
                    let wait = (until - now).to_std().unwrap_or_default() + Duration::from_millis(100);
                    return Ok(Disposition::Nak(wait));
                }
                _ => true,
            },
            // Finished, skipped, cancelled, waiting for a human or not ready: nothing to do.
            _ => {
                rtx.rollback().await?;
                return Ok(Disposition::Ack);
            }
        };
        let spec = rtx.graph.nodes[i].clone();
        if spec.kind.is_instant() || matches!(spec.kind, NodeKind::HumanApproval { .. }) {
            rtx.requeue(i);
            rtx.drain_ready(self.lease());
            self.commit(rtx).await?;
            return Ok(Disposition::Ack);
        }

        // A delay node holds no worker slot while it waits (issue 13, "Bounds"): its attempt's
        // lease is its wake-up time, persisted with the node, and the work message comes back
        // then. A lost message is re-published by the sweeper once that lease has run out, a
        // cancelled or timed-out run acks it, and a restart loses nothing. The node's
        // `timeout_ms` does not apply: it does no work to time out.
        if let NodeKind::Delay { duration } = spec.kind {
            if !resume {
                rtx.start_attempt(i, chrono_dur(duration));
            }
            let wake = rtx.nodes[i].attempt_started_at.unwrap_or(now) + chrono_dur(duration);
            if wake > now {
                if resume {
                    // Delivered before its time (a node claimed by an older replica that slept
                    // in a worker): park it until the wake-up time.
                    rtx.resume_attempt(i, wake - now);
                }
                self.commit(rtx).await?;
                let remaining = (wake - now).to_std().unwrap_or_default();
                // A short wait comes back as this same message. A long one gives the message
                // up, which would otherwise hold one of the consumer's ack-pending slots for the
                // whole wait, and the sweeper publishes the node again when it is due.
                return Ok(if remaining <= self.settings.delay_park_after {
                    Disposition::Nak(remaining)
                } else {
                    Disposition::Ack
                });
            }
            rtx.succeed(i, json!({"waited_ms": duration.as_millis() as u64}));
            rtx.drain_ready(self.lease());
            self.commit(rtx).await?;
            return Ok(Disposition::Ack);
        }

        // Claim, commit, then execute outside the transaction.
        if resume {
            rtx.resume_attempt(i, self.lease());
        } else {
            rtx.start_attempt(i, self.lease());
        }
        let attempt = rtx.nodes[i].attempt;
        let scope = rtx.scope();
        let tenant = rtx.run.tenant()?;
        let deadline = rtx.run.deadline;
        self.commit(rtx).await?;

        let ctx = TenantContext::new(tenant, crate::state::SYSTEM);
        let budget = (deadline - Utc::now()).to_std().unwrap_or_default().min(spec.timeout);
        let (token_id, token) = self.track(item.run_id);
        let progress = RunProgress { engine: self, item, attempt };
        let outcome = tokio::select! {
            r = tokio::time::timeout(budget, self.runner.run(&ctx, &spec, &scope, &progress)) => match r {
                Ok(r) => Some(r),
                Err(_) => {
                    let message = format!("node timed out after {} ms", budget.as_millis());
                    Some(Err(if spec.kind.retries_timeouts() {
                        NodeError::Transient(message)
                    } else {
                        NodeError::Permanent(message)
                    }))
                }
            },
            () = token.cancelled() => None,
            () = self.keep_claim(item, attempt, msg) => None,
        };
        self.untrack(item.run_id, token_id);
        let Some(outcome) = outcome else {
            // Cancelled, or the claim was lost: whoever changed the node owns it now.
            return Ok(Disposition::Ack);
        };
        self.complete(item, attempt, outcome).await
    }

    /// Records a running node's progress (a remote's status update) in its run: a log line and
    /// a `node.progress` event, committed together, if attempt `attempt` still holds the node.
    async fn record_progress(&self, item: &WorkItem, attempt: i32, update: ProgressUpdate) -> Result<()> {
        let Some(mut rtx) = self.load(item.run_id, None).await? else { return Ok(()) };
        let holds = rtx.idx(&item.node_id).filter(|&i| {
            !run_is_final(&rtx.run.status)
                && rtx.nodes[i].status == node_status::RUNNING
                && rtx.nodes[i].attempt == attempt
        });
        let Some(i) = holds else {
            rtx.rollback().await?;
            return Ok(());
        };
        rtx.progress(i, &update);
        self.commit(rtx).await?;
        Ok(())
    }

    /// Renews the node's lease and the message's ack deadline until the claim is lost (the node
    /// was cancelled, failed by a deadline, or taken over); returns only then.
    async fn keep_claim(&self, item: &WorkItem, attempt: i32, msg: Option<&jetstream::Message>) {
        let every = self.settings.node_lease / 3;
        loop {
            tokio::time::sleep(every).await;
            if let Some(msg) = msg
                && let Err(e) = msg.ack_with(AckKind::Progress).await
            {
                tracing::debug!(error = %e, "progress ack failed");
            }
            let renewed = sqlx::query(
                "UPDATE node_runs n SET lease_until = now() + $4 FROM runs r \
                 WHERE n.run_id = $1 AND n.node_id = $2 AND n.attempt = $3 AND n.status = 'running' \
                 AND r.id = n.run_id AND r.status IN ('running', 'waiting_approval') AND r.deadline > now()",
            )
            .bind(item.run_id)
            .bind(&item.node_id)
            .bind(attempt)
            .bind(self.settings.node_lease)
            .execute(&self.pool)
            .await;
            match renewed {
                Ok(r) if r.rows_affected() == 0 => return,
                Ok(_) => {}
                // Postgres hiccup: keep executing; the completion check decides later.
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
        }
    }

    /// Records the outcome of attempt `attempt`, unless the node moved on meanwhile.
    async fn complete(&self, item: &WorkItem, attempt: i32, outcome: Result<Value, NodeError>) -> Result<Disposition> {
        let Some(mut rtx) = self.load(item.run_id, None).await? else { return Ok(Disposition::Ack) };
        let Some(i) = rtx.idx(&item.node_id) else {
            rtx.rollback().await?;
            return Ok(Disposition::Ack);
        };
        // The idempotency check: only the attempt that holds the node may complete it.
        if run_is_final(&rtx.run.status)
            || rtx.nodes[i].status != node_status::RUNNING
            || rtx.nodes[i].attempt != attempt
        {
            rtx.rollback().await?;
            return Ok(Disposition::Ack);
        }
        let spec = rtx.graph.nodes[i].clone();
        // The node's budget ends at the run's deadline: past it, the run timed out, whatever
        // the node reports.
        if rtx.now >= rtx.run.deadline {
            rtx.fail_run("deadline_exceeded", "the run exceeded its timeout", &item.node_id);
            self.commit(rtx).await?;
            return Ok(Disposition::Ack);
        }
        let disposition = match outcome {
            Ok(output) => {
                rtx.succeed(i, output);
                rtx.drain_ready(self.lease());
                Disposition::Ack
            }
            Err(NodeError::Transient(e)) if (attempt as u32) < spec.retry.max_attempts => {
                let backoff = spec.retry.backoff(attempt as u32);
                let at = rtx.now + chrono_dur(backoff);
                if at < rtx.run.deadline {
                    rtx.fail_attempt(i, &e, Some(at));
                    Disposition::Nak(backoff)
                } else {
                    rtx.fail_attempt(i, &e, None);
                    Disposition::Ack
                }
            }
            Err(e) => {
                rtx.fail_attempt(i, e.message(), None);
                Disposition::Ack
            }
        };
        self.commit(rtx).await?;
        Ok(disposition)
    }

    /// Consumes the work queue until `shutdown`, at most `worker_concurrency` nodes at a time.
    pub(crate) fn spawn_workers(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = self.clone();
        let inner = tracker.clone();
        tracker.spawn(async move {
            let permits = Arc::new(Semaphore::new(this.settings.worker_concurrency));
            let mut backoff = Duration::from_millis(200);
            'outer: loop {
                let consumer = tokio::select! {
                    c = this.queue.ensure() => c,
                    () = shutdown.cancelled() => break,
                };
                let mut messages = match consumer {
                    Ok(c) => match c.messages().await {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "work queue consumer failed, retrying");
                            tokio::time::sleep(backoff).await;
                            continue;
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "work queue not ready, retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => continue,
                            () = shutdown.cancelled() => break,
                        }
                    }
                };
                backoff = Duration::from_millis(200);
                loop {
                    let permit = tokio::select! {
                        p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break 'outer },
                        () = shutdown.cancelled() => break 'outer,
                    };
                    let next = tokio::select! {
                        n = messages.next() => n,
                        () = shutdown.cancelled() => break 'outer,
                    };
                    let msg = match next {
                        Some(Ok(m)) => m,
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "work queue read failed");
                            continue;
                        }
                        None => break,
                    };
                    let engine = this.clone();
                    inner.spawn(async move {
                        engine.handle_message(msg).await;
                        drop(permit);
                    });
                }
            }
            tracing::info!("workflow workers stopped");
        });
    }

    async fn handle_message(&self, msg: jetstream::Message) {
        let Some(item) = WorkItem::decode(&msg.payload) else {
            tracing::warn!(subject = %msg.subject, "dropping malformed work message");
            let _ = msg.ack().await;
            return;
        };
        let disposition = match self.process(&item, Some(&msg)).await {
            Ok(d) => d,
            Err(e) => {
                // Postgres or a bug: try again shortly; the state checks make that safe.
                tracing::warn!(run_id = %item.run_id, node_id = %item.node_id, error = %e, "work item failed, redelivering");
                Disposition::Nak(Duration::from_millis(500))
            }
        };
        let acked = match disposition {
            Disposition::Ack => msg.ack().await,
            Disposition::Nak(d) => msg.ack_with(AckKind::Nak(Some(d.max(Duration::from_millis(1))))).await,
        };
        if let Err(e) = acked {
            tracing::debug!(error = %e, "work message ack failed; it will be redelivered");
        }
    }

    /// Listens for this deployment's NOTIFY channel: wakes WatchRun streams and interrupts
    /// nodes of runs cancelled on another replica.
    pub(crate) fn spawn_listener(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = self.clone();
        tracker.spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&this.pool).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "run listener cannot connect, retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            () = shutdown.cancelled() => return,
                        }
                    }
                };
                if let Err(e) = listener.listen(&this.channel).await {
                    tracing::warn!(error = %e, "run listener cannot listen, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                loop {
                    let n = tokio::select! {
                        n = listener.recv() => n,
                        () = shutdown.cancelled() => return,
                    };
                    match n {
                        Ok(n) => {
                            let payload = n.payload();
                            if let Some(id) = payload.strip_prefix("c:").and_then(|s| Uuid::parse_str(s).ok()) {
                                this.cancel_local(id);
                            } else if let Ok(id) = Uuid::parse_str(payload) {
                                let _ = this.changes.send(id);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "run listener failed, reconnecting");
                            break;
                        }
                    }
                }
            }
        });
    }

    /// Every `sweep_interval`: re-publishes nodes whose work message may be lost, fails runs
    /// past their deadline, and follows MindsDB-job runs in `log.jobs_history`.
    pub(crate) fn spawn_sweeper(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = self.clone();
        tracker.spawn(async move {
            loop {
                if let Err(e) = this.sweep().await {
                    tracing::warn!(error = %e, "sweep failed");
                }
                if let Err(e) = this.follow_jobs().await {
                    tracing::warn!(error = %e, "job follow-up failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(this.settings.sweep_interval) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }

    pub(crate) async fn sweep(&self) -> Result<()> {
        let late: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE status IN ('running', 'waiting_approval') AND deadline < now() LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id,) in late {
            if let Some(mut rtx) = self.load(id, None).await? {
                if !run_is_final(&rtx.run.status) && rtx.now > rtx.run.deadline {
                    rtx.fail_run("deadline_exceeded", "the run exceeded its timeout", "");
                    self.commit(rtx).await?;
                    self.cancel_local(id);
                    let _ = sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(&self.channel)
                        .bind(format!("c:{id}"))
                        .execute(&self.pool)
                        .await;
                } else {
                    rtx.rollback().await?;
                }
            }
        }
        // Grace of two leases: a publish that is merely slow is not repeated needlessly (and a
        // repeat within JetStream's duplicate window is dropped anyway).
        let grace = self.settings.node_lease * 2;
        let lost: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT n.run_id, n.node_id FROM node_runs n JOIN runs r ON r.id = n.run_id \
             WHERE r.status = 'running' AND r.mode = 'engine' AND ( \
               (n.status = 'queued' AND n.queued_at < now() - $1) OR \
               (n.status = 'retrying' AND n.next_retry_at < now() - $1) OR \
               (n.status = 'running' AND n.lease_until < now() - $1)) \
             LIMIT 500",
        )
        .bind(grace)
        .fetch_all(&self.pool)
        .await?;
        for (run_id, node_id) in lost {
            tracing::info!(%run_id, node_id, "re-publishing work that may have been lost");
            self.queue.publish(&WorkItem { run_id, node_id }).await?;
        }
        // Parked delay nodes whose wake-up time (their lease) has come.
        let due: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT n.run_id, n.node_id FROM node_runs n JOIN runs r ON r.id = n.run_id \
             WHERE r.status = 'running' AND r.mode = 'engine' AND n.node_type = 'delay' \
               AND n.status = 'running' AND n.lease_until <= now() \
             LIMIT 500",
        )
        .fetch_all(&self.pool)
        .await?;
        for (run_id, node_id) in due {
            self.queue.publish_wake(&WorkItem { run_id, node_id }).await?;
        }
        Ok(())
    }

    /// Completes MindsDB-job runs whose job has a finished row in `log.jobs_history`.
    async fn follow_jobs(&self) -> Result<()> {
        let runs: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT id, tenant_id, job_name FROM runs WHERE mode = 'mindsdb_job' AND status = 'running' LIMIT 50",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, tenant, job_name) in runs {
            let (Ok(tenant), Ok(name)) = (TenantId::parse(&tenant), Ident::new(&job_name)) else { continue };
            let ctx = TenantContext::new(tenant.clone(), crate::state::SYSTEM);
            let history = match self.jobs.history(&ctx, Some(&name)).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(run_id = %id, error = %e, "cannot read job history");
                    continue;
                }
            };
            let Some(done) = history.iter().rev().find(|h| h.run_end.is_some()) else { continue };
            let Some(mut rtx) = self.load(id, Some(&tenant)).await? else { continue };
            if run_is_final(&rtx.run.status) {
                rtx.rollback().await?;
                continue;
            }
            let result = json!({
                "job_name": done.name,
                "run_start": done.run_start,
                "run_end": done.run_end,
                "query": done.query,
            });
            rtx.finish_job(done.error.as_deref().filter(|e| !e.is_empty()), result);
            self.commit(rtx).await?;
        }
        Ok(())
    }

    /// Cancels a run of `tenant`.
    pub(crate) async fn cancel(&self, tenant: &TenantId, run_id: Uuid, user: &str, reason: &str) -> Result<RunTxView> {
        let mut rtx =
            self.load(run_id, Some(tenant)).await?.ok_or_else(|| Error::not_found("run", &run_id.to_string()))?;
        if run_is_final(&rtx.run.status) {
            let status = rtx.run.status.clone();
            rtx.rollback().await?;
            return Err(Error::FailedPrecondition(format!("run already finished ({status})")));
        }
        rtx.cancel(user, reason);
        let view = RunTxView::of(&rtx);
        self.commit(rtx).await?;
        self.cancel_local(run_id);
        // Replicas executing one of its nodes interrupt it too.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(format!("c:{run_id}"))
            .execute(&self.pool)
            .await?;
        Ok(view)
    }

    /// Records an approval decision. The run's starter may not decide it unless
    /// `approval_self_allowed` is set (the `runs.approve` permission is checked at the API).
    pub(crate) async fn approve(
        &self,
        tenant: &TenantId,
        run_id: Uuid,
        node_id: &str,
        approved: bool,
        user: &str,
        comment: &str,
    ) -> Result<RunTxView> {
        let mut rtx =
            self.load(run_id, Some(tenant)).await?.ok_or_else(|| Error::not_found("run", &run_id.to_string()))?;
        let Some(i) = rtx.idx(node_id) else {
            rtx.rollback().await?;
            return Err(Error::not_found("node", node_id));
        };
        if rtx.run.status != run_status::WAITING || rtx.nodes[i].status != node_status::WAITING {
            let (rs, ns) = (rtx.run.status.clone(), rtx.nodes[i].status.clone());
            rtx.rollback().await?;
            return Err(Error::FailedPrecondition(format!(
                "node '{node_id}' is not waiting for approval (run is {rs}, node is {ns})"
            )));
        }
        if !self.settings.approval_self_allowed && !rtx.run.triggered_by.is_empty() && rtx.run.triggered_by == user {
            rtx.rollback().await?;
            return Err(Error::Api(getlood_common::ApiError::new(
                getlood_common::ErrorCode::PermissionDenied,
                "the user who started the run cannot approve it (app.approval_self_allowed is off)",
            )));
        }
        rtx.decide(i, approved, user, comment);
        rtx.drain_ready(self.lease());
        let view = RunTxView::of(&rtx);
        self.commit(rtx).await?;
        Ok(view)
    }
}

/// Where a node executing on this replica reports its progress: its run, for its attempt.
struct RunProgress<'a> {
    engine: &'a Engine,
    item: &'a WorkItem,
    attempt: i32,
}

impl Progress for RunProgress<'_> {
    async fn report(&self, update: ProgressUpdate) {
        // A progress that cannot be recorded is not the node's failure: its outcome is.
        if let Err(e) = self.engine.record_progress(self.item, self.attempt, update).await {
            tracing::warn!(run_id = %self.item.run_id, node_id = %self.item.node_id, error = %e, "node progress not recorded");
        }
    }
}

/// A run and its nodes as a transaction left them (for RPC answers).
#[derive(Debug, Clone)]
pub(crate) struct RunTxView {
    pub run: RunRow,
    pub nodes: Vec<crate::state::NodeRow>,
}

impl RunTxView {
    pub(crate) fn of(rtx: &RunTx) -> Self {
        Self { run: rtx.run.clone(), nodes: rtx.nodes.clone() }
    }
}
