//! The run state machine: node attempts, successes, failures and approvals, and how they move
//! the run forward (successors made ready or skipped, the run completed, failed or cancelled).

use chrono::{DateTime, Utc};
use getlood_events::Payload;
use getlood_proto::common::v1::ErrorDetail;
use getlood_proto::events::v1 as ev;
use getlood_proto::workflow::v1 as pb;
use serde_json::{Map, Value, json};

use super::rows::{
    LogLine, error_code_proto, mode_proto, node_is_active, node_status, run_is_final, run_status, trigger_proto,
};
use super::{RunTx, SYSTEM};
use crate::convert::{json_to_struct, ts};
use crate::model::{NodeKind, Scope, render_value, summarize};

impl RunTx {
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

    /// Records node `i`'s progress as the remote reported it: a log line (persisted, streamed to
    /// watchers) and a `node.progress` event carrying the log line's sequence.
    pub(crate) fn progress(&mut self, i: usize, update: &crate::remote::ProgressUpdate) {
        let text = if update.message.is_empty() {
            format!("remote state {}", update.state)
        } else {
            format!("remote state {}: {}", update.state, update.message)
        };
        self.node_log(
            i,
            pb::LogLevel::Info,
            text,
            json!({"state": update.state, "message": update.message, "remote_id": update.remote_id}),
        );
        let n = &self.nodes[i];
        let payload = Payload::NodeProgress(ev::NodeProgress {
            run_id: self.run.id.to_string(),
            workflow_id: self.run.workflow_id.to_string(),
            node_id: n.node_id.clone(),
            node_type: n.node_type.clone(),
            attempt: n.attempt,
            state: update.state.clone(),
            message: update.message.clone(),
            remote_id: update.remote_id.clone(),
            run_sequence: self.run.last_sequence,
        });
        self.envelope(SYSTEM, "node.progress", payload);
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
}
