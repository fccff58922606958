//! Running tasks: each turn runs in its own tokio task (so a client that drops its stream can
//! resubscribe, and a blocking `SendMessage` that times out leaves the task running), writes
//! its state changes to the store, publishes each as a GETLOOD event
//! (`a2a_task.status_changed`) and as the task's push notifications, and fans its stream events
//! out to this replica's subscribers. A subscriber on another replica, or after this one
//! restarted, follows the store instead.
//!
//! While its turn runs the task's lease is renewed here; a replica that stops gracefully fails
//! its running tasks at once, and the tasks of one that died are failed by any replica's
//! sweeper when their lease expires ([`Tasks::reap`]): no task stays "working" forever.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt as _;
use getlood_auth::Principal;
use getlood_common::egress::EgressPolicy;
use getlood_events::EventBus;
use getlood_proto::common::v1::{ChatMessage, Role};
use getlood_proto::events::v1::A2aTaskStatusChanged;
use getlood_proto::events::v1::event_envelope::Payload;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::protocol::{self, state};
use super::push::Pusher;
use super::store::{Scope, Store, TaskRow, timestamp};
use crate::AppState;
use crate::chat::{self, ChatEvent};
use crate::openai::{ChatInput, ModelChoice};
use crate::rate_limit::ChatPermit;

/// Stream events a slow local subscriber may fall behind by before it is sent a fresh snapshot.
const FANOUT_BUFFER: usize = 256;
/// Orphaned tasks failed by one sweep query (the sweep repeats while it finds that many).
const REAP_BATCH: i64 = 100;
/// What a task whose replica stopped says: its turn cannot finish.
pub(crate) const STOPPED_TEXT: &str =
    "unavailable: the server answering this task stopped before the answer was complete; send the message again";

/// The lease and orphan settings of the tasks (`app.a2a_task_lease`, `app.chat_total_timeout`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Leases {
    /// How long a running task's lease lasts from its last renewal.
    pub lease: Duration,
    /// Age past which a running task without a lease (a row of an older gateway) is orphaned:
    /// longer than any turn lasts.
    pub orphan_age: Duration,
}

/// The A2A tasks of this replica: the store, the turns running here, the event bus.
#[derive(Clone)]
pub(crate) struct Tasks(Arc<Inner>);

struct Inner {
    store: Option<Store>,
    bus: Option<EventBus>,
    pusher: Option<Pusher>,
    /// The policy every push-notification URL passes (`app.egress`).
    egress: EgressPolicy,
    leases: Leases,
    /// The runtime's tracker: shutdown waits for the turns running here to end (their own
    /// deadlines and the shutdown token bound them).
    tracker: tokio_util::task::TaskTracker,
    running: Mutex<HashMap<Uuid, Arc<Running>>>,
}

/// A turn running on this replica.
pub(crate) struct Running {
    cancel: CancellationToken,
    live: Mutex<Live>,
}

/// What a subscriber joining now needs: the task so far and the events from here on.
struct Live {
    task: Value,
    answer: String,
    tx: broadcast::Sender<Value>,
}

/// One joined subscription: the task as it is now, then its events until the terminal one.
pub(crate) struct Joined {
    pub task: Value,
    pub events: broadcast::Receiver<Value>,
}

/// What a new turn needs.
pub(crate) struct Turn {
    pub scope: Scope,
    pub principal: Principal,
    pub request_id: Option<String>,
    pub row: TaskRow,
    pub question: String,
    pub permit: ChatPermit,
}

impl Tasks {
    pub(crate) fn new(
        store: Option<Store>,
        bus: Option<EventBus>,
        pusher: Option<Pusher>,
        egress: EgressPolicy,
        leases: Leases,
        tracker: tokio_util::task::TaskTracker,
    ) -> Self {
        Self(Arc::new(Inner { store, bus, pusher, egress, leases, tracker, running: Mutex::new(HashMap::new()) }))
    }

    /// The egress policy push-notification URLs pass.
    pub(crate) fn egress(&self) -> &EgressPolicy {
        &self.0.egress
    }

    /// The store, or the refusal of a gateway started without Postgres.
    pub(crate) fn store(&self) -> Result<&Store, protocol::RpcError> {
        self.0.store.as_ref().ok_or_else(|| {
            protocol::RpcError::new(protocol::UNSUPPORTED_OPERATION, "this gateway has no task store configured")
        })
    }

    fn running(&self, id: Uuid) -> Option<Arc<Running>> {
        self.0.running.lock().ok().and_then(|r| r.get(&id).cloned())
    }

    /// Joins the task's live stream if it runs on this replica.
    pub(crate) fn join(&self, id: Uuid) -> Option<Joined> {
        let running = self.running(id)?;
        let live = running.live.lock().ok()?;
        let mut task = live.task.clone();
        if !live.answer.is_empty()
            && let Some(obj) = task.as_object_mut()
        {
            let artifact = protocol::answer_artifact(&id.to_string(), &live.answer, None);
            obj.insert("artifacts".to_owned(), json!([artifact]));
        }
        Some(Joined { task, events: live.tx.subscribe() })
    }

    /// Stops the task's turn if it runs on this replica (the caller already stored the cancel).
    pub(crate) fn cancel_local(&self, id: Uuid) {
        if let Some(running) = self.running(id) {
            running.cancel.cancel();
        }
    }

    /// Announces the task's status change, `row` as it is now: a GETLOOD event, and the task's
    /// push notifications (queued, never awaited). A failure is logged, never the task's (the
    /// store holds the truth).
    pub(crate) async fn publish(&self, scope: &Scope, row: &TaskRow, reason: &str) {
        if let Some(pusher) = &self.0.pusher {
            pusher.notify(scope, row);
        }
        let Some(bus) = &self.0.bus else { return };
        let Ok(tenant) = getlood_auth::TenantId::parse(&scope.tenant) else { return };
        let payload = Payload::A2aTaskStatusChanged(A2aTaskStatusChanged {
            task_id: row.id.to_string(),
            context_id: row.context_id.clone(),
            agent_name: scope.agent.clone(),
            user_id: scope.user.clone(),
            state: row.state.clone(),
            turn_id: row.turn_id.clone(),
            reason: reason.chars().take(512).collect(),
        });
        let envelope =
            getlood_events::new_envelope(&tenant, &scope.user, &row.id.to_string(), "a2a_task.status_changed", payload);
        if let Err(err) = bus.publish(getlood_events::Domain::Turn, &envelope).await {
            tracing::warn!(error = %err, task = %row.id, "a2a task event not published");
        }
    }

    /// Starts the turn of `turn.row` (stored, submitted) in the background; the returned
    /// receiver sees its events from the first (`working`) on.
    pub(crate) fn start(&self, state: AppState, turn: Turn) -> broadcast::Receiver<Value> {
        let (tx, rx) = broadcast::channel(FANOUT_BUFFER);
        let running = Arc::new(Running {
            cancel: state.realtime.shutdown.child_token(),
            live: Mutex::new(Live { task: turn.row.to_json(None, true), answer: String::new(), tx }),
        });
        if let Ok(mut map) = self.0.running.lock() {
            map.insert(turn.row.id, running.clone());
        }
        let tasks = self.clone();
        self.0.tracker.spawn(async move {
            let id = turn.row.id;
            tasks.run(&state, turn, &running).await;
            if let Ok(mut map) = tasks.0.running.lock() {
                map.remove(&id);
            }
        });
        rx
    }

    async fn run(&self, state: &AppState, turn: Turn, running: &Running) {
        let Turn { scope, principal, request_id, mut row, question, permit } = turn;
        let _permit = permit;
        let Ok(store) = self.store() else { return };
        let task_id = row.id.to_string();
        let context_id = row.context_id.clone();
        let emit = |event: Value, f: &dyn Fn(&mut Live)| {
            if let Ok(mut live) = running.live.lock() {
                f(&mut live);
                let _ = live.tx.send(event);
            }
        };
        // Submitted -> working.
        match store.transition(&scope, row.id, None, state::WORKING, None, None).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::error!(error = %err, task = %task_id, "a2a task not started: store failed");
                return;
            }
        }
        row.state = state::WORKING.to_owned();
        row.updated_at = Utc::now();
        self.publish(&scope, &row, "").await;
        let working = protocol::status_json(state::WORKING, None, &timestamp(Utc::now()));
        emit(protocol::status_update(&task_id, &context_id, working.clone()), &|live| {
            if let Some(obj) = live.task.as_object_mut() {
                obj.insert("status".to_owned(), working.clone());
            }
        });

        let input = ChatInput {
            model_label: scope.agent.clone(),
            model: ModelChoice::Agent(scope.agent.clone()),
            messages: vec![ChatMessage { role: Role::User as i32, content: question, name: String::new() }],
            stream: true,
            include_usage: false,
            conversation_id: row.conversation_id.clone(),
            desktop_id: String::new(),
            client_request_id: String::new(),
        };
        let turn = async {
            let mut events = chat::start(state, &principal, request_id.as_deref(), &input).await?;
            let mut answer = String::new();
            loop {
                let event = tokio::select! {
                    event = events.next() => event,
                    // Dropping the stream ends the pipeline call.
                    () = running.cancel.cancelled() => return Ok(None),
                };
                match event {
                    Some(ChatEvent::Delta(text)) => {
                        let append = !answer.is_empty();
                        answer.push_str(&text);
                        emit(protocol::artifact_update(&task_id, &context_id, &text, append, false), &|live| {
                            live.answer.push_str(&text);
                        });
                    }
                    Some(ChatEvent::Heartbeat) => {}
                    Some(ChatEvent::Done(finished)) => return Ok(Some((answer, finished))),
                    Some(ChatEvent::Failed(err)) => return Err(err),
                    None => {
                        return Err(getlood_common::ApiError::unavailable(
                            "the chat pipeline ended the stream without a result",
                        ));
                    }
                }
            }
        };
        let outcome = tokio::select! {
            outcome = turn => outcome,
            // The task stopped running elsewhere (canceled on another replica): the turn ends.
            () = self.hold_lease(&scope, row.id) => Ok(None),
        };

        let mut history: Vec<Value> = row.history.as_array().cloned().unwrap_or_default();
        let (to, message, artifacts, conversation, turn_id, reason) = match outcome {
            Ok(Some((answer, finished))) => {
                let extras = crate::proto_json::to_json(&crate::openai::extras_json(
                    &finished.turn,
                    finished.clarification.as_ref(),
                ));
                let reply = protocol::agent_message(&context_id, &task_id, &answer);
                history.push(reply.clone());
                // A clarifying question waits for the user's answer in the same task.
                let (to, message) = if finished.clarification.is_some() {
                    (state::INPUT_REQUIRED, Some(reply))
                } else {
                    (state::COMPLETED, None)
                };
                let artifact = protocol::answer_artifact(&task_id, &answer, Some(extras));
                (
                    to,
                    message,
                    json!([artifact]),
                    finished.turn.conversation_id.clone(),
                    finished.turn.id.clone(),
                    String::new(),
                )
            }
            // This replica is stopping: the turn cannot finish here, and the task must not wait
            // for its lease to expire to say so.
            Ok(None) if state.realtime.shutdown.is_cancelled() => (
                state::FAILED,
                Some(protocol::agent_message(&context_id, &task_id, STOPPED_TEXT)),
                json!([]),
                String::new(),
                String::new(),
                "the gateway replica running the turn stopped".to_owned(),
            ),
            Ok(None) => {
                // Canceled: the canceller stored the state; tell the local subscribers.
                self.announce_stored(&scope, row.id, running).await;
                return;
            }
            Err(err) => {
                tracing::info!(task = %task_id, code = err.code.as_str(), "a2a task failed");
                let text = format!("{}: {}", err.code.as_str(), err.message);
                (
                    state::FAILED,
                    Some(protocol::agent_message(&context_id, &task_id, &text)),
                    json!([]),
                    String::new(),
                    String::new(),
                    text,
                )
            }
        };
        let history = Value::Array(history);
        match store.finish(&scope, row.id, to, message.as_ref(), &history, &artifacts, &conversation, &turn_id).await {
            Ok(true) => {
                row.state = to.to_owned();
                row.status_message = message.clone();
                row.history = history;
                row.artifacts = artifacts;
                if !conversation.is_empty() {
                    row.conversation_id = conversation;
                }
                if !turn_id.is_empty() {
                    row.turn_id = turn_id;
                }
                row.updated_at = Utc::now();
                self.publish(&scope, &row, &reason).await;
                if to != state::FAILED {
                    emit(protocol::artifact_update(&task_id, &context_id, "", true, true), &|_| {});
                }
                let status = protocol::status_json(to, message.as_ref(), &timestamp(Utc::now()));
                emit(protocol::status_update(&task_id, &context_id, status), &|_| {});
            }
            // Canceled (here or on another replica) while the answer came.
            Ok(false) => self.announce_stored(&scope, row.id, running).await,
            Err(err) => {
                tracing::error!(error = %err, task = %task_id, "a2a task end not stored");
                let status = protocol::status_json(state::FAILED, None, &timestamp(Utc::now()));
                emit(protocol::status_update(&task_id, &context_id, status), &|_| {});
            }
        }
    }

    /// Renews the task's lease while its turn runs here; returns when the task no longer runs
    /// (canceled or failed elsewhere). A renewal the store refuses is retried: the lease lasts
    /// three renewal intervals.
    async fn hold_lease(&self, scope: &Scope, id: Uuid) {
        let Ok(store) = self.store() else { return std::future::pending().await };
        let every = (self.0.leases.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(every).await;
            match store.renew(scope, id).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => tracing::warn!(error = %err, task = %id, "a2a task lease not renewed"),
            }
        }
    }

    /// Fails the running tasks whose replica stopped (their lease expired; see
    /// [`Store::fail_orphans`]) and announces each: `scope`'s tasks only (before a read of
    /// that caller answers), or every tenant's (the sweeper). Returns how many.
    pub(crate) async fn reap(&self, scope: Option<&Scope>) -> Result<usize, sqlx::Error> {
        let Ok(store) = self.store() else { return Ok(0) };
        let age = chrono::Duration::from_std(self.0.leases.orphan_age).unwrap_or(chrono::Duration::MAX);
        let before = Utc::now().checked_sub_signed(age).unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let message = json!({
            "messageId": Uuid::new_v4().to_string(),
            "role": "ROLE_AGENT",
            "parts": [{"text": STOPPED_TEXT}],
        });
        let mut failed = 0;
        loop {
            let rows = store.fail_orphans(scope, before, &message, REAP_BATCH).await?;
            let n = rows.len();
            for orphan in rows {
                let scope = orphan.scope();
                tracing::warn!(tenant = %scope.tenant, agent = %scope.agent, task = %orphan.row.id, "a2a task of a stopped replica failed");
                self.publish(&scope, &orphan.row, "the gateway replica running the turn stopped").await;
            }
            failed += n;
            if i64::try_from(n).unwrap_or(i64::MAX) < REAP_BATCH {
                return Ok(failed);
            }
        }
    }

    /// Runs the sweeper on this replica until `shutdown`: every half lease it fails the tasks
    /// of replicas that died. Every replica sweeps; each orphan is failed by exactly one.
    pub(crate) fn spawn_sweeper(&self, shutdown: tokio_util::sync::CancellationToken) {
        if self.0.store.is_none() {
            return;
        }
        let tasks = self.clone();
        let every = (self.0.leases.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        self.0.tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = shutdown.cancelled() => return,
                }
                if let Err(err) = tasks.reap(None).await {
                    tracing::warn!(error = %err, "a2a orphan sweep failed");
                }
            }
        });
    }

    /// Sends the local subscribers the task's stored (terminal) status.
    async fn announce_stored(&self, scope: &Scope, id: Uuid, running: &Running) {
        let Ok(store) = self.store() else { return };
        if let Ok(Some(row)) = store.get(scope, id).await
            && let Ok(live) = running.live.lock()
        {
            let status = protocol::status_json(&row.state, row.status_message.as_ref(), &timestamp(row.updated_at));
            let _ = live.tx.send(protocol::status_update(&id.to_string(), &row.context_id, status));
        }
    }
}

/// Whether a stream event ends the task's stream (a status update to a state where the task
/// waits or is over).
pub(crate) fn is_final(event: &Value) -> bool {
    event.pointer("/statusUpdate/status/state").and_then(Value::as_str).is_some_and(|s| !state::is_running(s))
}
