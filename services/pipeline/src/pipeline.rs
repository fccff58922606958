//! One chat turn through the five stages, streamed as `ExecuteResponse` items.
//!
//! The run happens in a task of the service's tracker and writes into a bounded channel the
//! response stream reads from, so a slow client slows the run down instead of growing a buffer,
//! a client that leaves stops it at the next item, and a shutdown drains it. Every upstream
//! call has a deadline and every failure ends the stream with one `error` item.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use getlood_auth::Principal;
use getlood_events::{Domain, Outbox, Payload, new_envelope};
use getlood_proto::agent_registry::v1::{Agent, query_agent_response};
use getlood_proto::common::v1::{ChatMessage, Usage};
use getlood_proto::events::v1::TurnCompleted;
use getlood_proto::pipeline::v1::{
    AgentProgress, AgentRef, AgentSelected, AnswerChunk, Clarification, ExecuteResponse, Heartbeat, IntentDetected,
    IntentSource, RouteSelected, SelectionReason, Stage, StageCompleted, StageStarted, StageStatus, StageTiming, Turn,
    TurnOutcome, execute_response::Event,
};
use getlood_server::Caller;
use tokio::sync::mpsc;
use tonic::Status;
use uuid::Uuid;

use crate::enhance::{ui_actions, user_intent_hints};
use crate::error::Error;
use crate::intent::{RuleClassifier, RuleOutcome, parse_llm_answer};
use crate::intent_model::IntentModel;
use crate::memory::{MemoryClient, with_recall};
use crate::registry::RegistryClient;
use crate::routing::{Route, Router};
use crate::settings::PipelineSettings;
use crate::store::{Store, TurnNotes};
use crate::text::normalize;
use crate::types::Intent;
use getlood_common::ServiceError as _;

/// Everything the stages share.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub settings: Arc<PipelineSettings>,
    pub rules: RuleClassifier,
    pub router: Router,
    pub intent_model: Option<IntentModel>,
    pub registry: RegistryClient,
    /// Recall of the caller's earlier turns; `None` when `app.memory.enabled` is off.
    pub memory: Option<MemoryClient>,
    pub store: Store,
    pub outbox: Outbox,
}

/// A validated request, with the override agent already resolved (its NOT_FOUND comes before
/// the stream).
#[derive(Debug)]
pub(crate) struct TurnInput {
    pub caller: Caller,
    pub conversation_id: Uuid,
    pub messages: Vec<ChatMessage>,
    pub override_agent: Option<Agent>,
    pub desktop_id: String,
    pub client_request_id: String,
    pub metadata: HashMap<String, String>,
}

/// One item of the response stream.
pub(crate) type Item = Result<ExecuteResponse, Status>;

/// The client went away: nothing more to send.
#[derive(Debug)]
pub(crate) struct Gone;

/// Why the stages stopped before a result.
enum Stop {
    Gone,
    Failed(Stage, Error),
}

impl From<Gone> for Stop {
    fn from(_: Gone) -> Self {
        Self::Gone
    }
}

fn ts(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Numbers the items and sends them, with heartbeats while a stage waits.
pub(crate) struct Emitter {
    tx: mpsc::Sender<Item>,
    index: i64,
    heartbeat: Duration,
}

impl Emitter {
    pub(crate) fn new(tx: mpsc::Sender<Item>, heartbeat: Duration) -> Self {
        Self { tx, index: 0, heartbeat }
    }

    pub(crate) async fn send(&mut self, event: Event) -> Result<(), Gone> {
        self.index += 1;
        self.tx.send(Ok(ExecuteResponse { index: self.index, event: Some(event) })).await.map_err(|_| Gone)
    }

    /// Awaits `fut`, sending a heartbeat for `stage` every period meanwhile.
    async fn beat<F: Future>(&mut self, stage: Stage, fut: F) -> Result<F::Output, Gone> {
        let mut fut = std::pin::pin!(fut);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + self.heartbeat, self.heartbeat);
        loop {
            tokio::select! {
                out = &mut fut => return Ok(out),
                _ = ticker.tick() => {
                    self.send(Event::Heartbeat(Heartbeat { sent_at: Some(ts(SystemTime::now())), stage: stage as i32 })).await?;
                }
            }
        }
    }
}

/// The stage timings of a turn, recorded as the stages end.
#[derive(Default)]
struct Timer {
    timings: Vec<StageTiming>,
    /// The stage running now, so a failure reports how long it ran.
    current: Option<Instant>,
}

struct Started {
    stage: Stage,
    at: SystemTime,
    clock: Instant,
}

impl Timer {
    async fn start(&mut self, em: &mut Emitter, stage: Stage) -> Result<Started, Gone> {
        em.send(Event::StageStarted(StageStarted { stage: stage as i32 })).await?;
        let clock = Instant::now();
        self.current = Some(clock);
        Ok(Started { stage, at: SystemTime::now(), clock })
    }

    /// Records the end of `s` and returns the event to send.
    fn record(&mut self, s: &Started, status: StageStatus) -> Event {
        self.current = None;
        let duration_ms = ms(s.clock.elapsed());
        self.timings.push(StageTiming {
            stage: s.stage as i32,
            status: status as i32,
            started_at: Some(ts(s.at)),
            duration_ms,
        });
        Event::StageCompleted(StageCompleted { stage: s.stage as i32, status: status as i32, duration_ms })
    }

    async fn finish(&mut self, em: &mut Emitter, s: &Started, status: StageStatus) -> Result<(), Gone> {
        let event = self.record(s, status);
        em.send(event).await
    }

    async fn skip(&mut self, em: &mut Emitter, stage: Stage) -> Result<(), Gone> {
        self.timings.push(StageTiming {
            stage: stage as i32,
            status: StageStatus::Skipped as i32,
            started_at: None,
            duration_ms: 0,
        });
        em.send(Event::StageCompleted(StageCompleted {
            stage: stage as i32,
            status: StageStatus::Skipped as i32,
            duration_ms: 0,
        }))
        .await
    }
}

/// Stage 1's answer.
#[derive(Debug, Clone)]
struct Detected {
    intent: Intent,
    confidence: f64,
    source: IntentSource,
    /// The deciding rule, or why the classifiers fell back.
    note: String,
    fell_back: bool,
}

/// The turn being built.
struct Draft {
    id: Uuid,
    created_at: SystemTime,
    clock: Instant,
}

impl Pipeline {
    /// Runs one turn, writing its items to `em`; always ends with one `result` or `error`
    /// unless the client left.
    pub(crate) async fn run(self: Arc<Self>, input: TurnInput, mut em: Emitter) {
        let draft = Draft { id: Uuid::now_v7(), created_at: SystemTime::now(), clock: Instant::now() };
        let mut timer = Timer::default();
        let tenant = input.caller.principal.tenant.clone();
        match self.stages(&input, &draft, &mut em, &mut timer).await {
            Ok(turn) => {
                tracing::info!(%tenant, turn_id = %turn.id, outcome = turn.outcome, duration_ms = turn.duration_ms, "turn completed");
                let _ = em.send(Event::Result(turn)).await;
            }
            Err(Stop::Gone) => tracing::info!(%tenant, turn_id = %draft.id, "client left, turn abandoned"),
            Err(Stop::Failed(stage, err)) => {
                tracing::warn!(%tenant, turn_id = %draft.id, stage = stage.as_str_name(), error = %err, "turn failed");
                let duration_ms = timer.current.map(|c| ms(c.elapsed())).unwrap_or_default();
                let _ = em
                    .send(Event::StageCompleted(StageCompleted {
                        stage: stage as i32,
                        status: StageStatus::Failed as i32,
                        duration_ms,
                    }))
                    .await;
                let _ = em.send(Event::Error(err.detail())).await;
            }
        }
    }

    async fn stages(
        &self,
        input: &TurnInput,
        draft: &Draft,
        em: &mut Emitter,
        timer: &mut Timer,
    ) -> Result<Turn, Stop> {
        let caller = &input.caller;
        let p = &caller.principal;
        let message = input.messages.last().map(|m| m.content.as_str()).unwrap_or_default();

        // Stage 1: intent.
        let s = timer.start(em, Stage::IntentDetection).await?;
        let detected = em.beat(Stage::IntentDetection, self.detect(p, message)).await?;
        em.send(Event::IntentDetected(IntentDetected {
            intent: detected.intent.0 as i32,
            confidence: detected.confidence,
            source: detected.source as i32,
            fallback_reason: if detected.fell_back { detected.note.clone() } else { String::new() },
        }))
        .await?;
        timer.finish(em, &s, StageStatus::Ok).await?;

        if detected.confidence < self.settings.clarification_threshold && input.override_agent.is_none() {
            return self.clarify(input, draft, em, timer, &detected, None, Stage::Routing).await;
        }

        // Stage 2: route.
        let s = timer.start(em, Stage::Routing).await?;
        let route = self.router.route(detected.intent, detected.confidence).ok_or_else(|| {
            Stop::Failed(Stage::Routing, Error::InvalidArgument("no routing rule covers this intent".to_owned()))
        })?;
        em.send(Event::RouteSelected(RouteSelected {
            mode: route.mode.proto() as i32,
            rule: route.rule.clone(),
            required_skill: route.skill.clone(),
        }))
        .await?;
        timer.finish(em, &s, StageStatus::Ok).await?;

        // Stage 3: agent.
        let (agent, reason, matched) = match &input.override_agent {
            Some(agent) => {
                timer.skip(em, Stage::AgentSelection).await?;
                (agent.clone(), SelectionReason::Override, Vec::new())
            }
            None => {
                let s = timer.start(em, Stage::AgentSelection).await?;
                let found = em
                    .beat(Stage::AgentSelection, self.select(caller, &route))
                    .await?
                    .map_err(|e| Stop::Failed(Stage::AgentSelection, e))?;
                match found {
                    Some(found) => {
                        timer.finish(em, &s, StageStatus::Ok).await?;
                        found
                    }
                    None => {
                        timer.finish(em, &s, StageStatus::Ok).await?;
                        return self.clarify(input, draft, em, timer, &detected, Some(&route), Stage::Execution).await;
                    }
                }
            }
        };
        let agent_ref = AgentRef { id: agent.id.clone(), name: agent.name.clone(), version: agent.version };
        em.send(Event::AgentSelected(AgentSelected {
            agent: Some(agent_ref.clone()),
            reason: reason as i32,
            matched_skills: matched,
        }))
        .await?;

        // Stage 4: execution.
        let s = timer.start(em, Stage::Execution).await?;
        let (answer, usage) = self.execute(input, &agent, em).await?;
        timer.finish(em, &s, StageStatus::Ok).await?;

        // Stage 5: enhancement and persistence.
        let s = timer.start(em, Stage::Enhancement).await?;
        let actions = ui_actions(&self.settings, detected.intent, message);
        let hints = user_intent_hints(&input.messages, detected.intent, !actions.is_empty());
        // The stored turn carries its own timings, so stage 5 is timed up to the write.
        let done = timer.record(&s, StageStatus::Ok);
        let turn = Turn {
            answer,
            outcome: TurnOutcome::Answered as i32,
            mode: route.mode.proto() as i32,
            agent: Some(agent_ref),
            ui_actions: actions,
            user_intent_hints: hints,
            usage,
            ..self.base_turn(input, draft, &detected, timer)
        };
        let notes = TurnNotes { intent_note: detected.note.clone(), route_rule: route.rule.clone() };
        let turn = self.persist(p, turn, &notes).await.map_err(|e| Stop::Failed(Stage::Enhancement, e))?;
        em.send(done).await?;
        Ok(turn)
    }

    /// The fields every turn has, from the request and stage 1.
    fn base_turn(&self, input: &TurnInput, draft: &Draft, detected: &Detected, timer: &Timer) -> Turn {
        Turn {
            id: draft.id.to_string(),
            conversation_id: input.conversation_id.to_string(),
            client_request_id: input.client_request_id.clone(),
            user_id: input.caller.principal.user.clone(),
            desktop_id: input.desktop_id.clone(),
            messages: input.messages.clone(),
            intent: detected.intent.0 as i32,
            confidence: detected.confidence,
            intent_source: detected.source as i32,
            stage_timings: timer.timings.clone(),
            duration_ms: ms(draft.clock.elapsed()),
            metadata: input.metadata.clone(),
            created_at: Some(ts(draft.created_at)),
            completed_at: Some(ts(SystemTime::now())),
            ..Default::default()
        }
    }

    /// Ends the turn with a clarification question: stages from `first_skipped` on do not run.
    #[allow(clippy::too_many_arguments)]
    async fn clarify(
        &self,
        input: &TurnInput,
        draft: &Draft,
        em: &mut Emitter,
        timer: &mut Timer,
        detected: &Detected,
        route: Option<&Route>,
        first_skipped: Stage,
    ) -> Result<Turn, Stop> {
        let message = input.messages.last().map(|m| m.content.as_str()).unwrap_or_default();
        let french = crate::enhance::is_french(&normalize(message));
        let (question, suggestions) = clarification_text(route.is_some(), french);
        em.send(Event::Clarification(Clarification {
            question: question.clone(),
            suggestions: suggestions.clone(),
            candidate_intent: detected.intent.0 as i32,
            confidence: detected.confidence,
        }))
        .await?;
        for stage in [Stage::Routing, Stage::AgentSelection, Stage::Execution, Stage::Enhancement] {
            if stage as i32 >= first_skipped as i32 {
                timer.skip(em, stage).await?;
            }
        }
        let turn = Turn {
            answer: question,
            outcome: TurnOutcome::ClarificationNeeded as i32,
            mode: route.map(|r| r.mode.proto() as i32).unwrap_or_default(),
            ..self.base_turn(input, draft, detected, timer)
        };
        let notes = TurnNotes {
            intent_note: detected.note.clone(),
            route_rule: route.map(|r| r.rule.clone()).unwrap_or_default(),
        };
        self.persist(&input.caller.principal, turn, &notes).await.map_err(|e| Stop::Failed(Stage::Enhancement, e))
    }

    /// Stage 1: the rules first; the LLM when they are not sure; a fallback when the LLM fails
    /// or answers something unusable.
    async fn detect(&self, p: &Principal, message: &str) -> Detected {
        let guess = match self.rules.classify(message) {
            RuleOutcome::Sure(d) => {
                return Detected {
                    intent: d.intent,
                    confidence: d.confidence,
                    source: IntentSource::Rules,
                    note: format!("rule {}", d.rule.unwrap_or_default()),
                    fell_back: false,
                };
            }
            RuleOutcome::Guess(d) => Some(d),
            RuleOutcome::Nothing => None,
        };
        let reason = match &self.intent_model {
            None => "the llm classifier is disabled".to_owned(),
            Some(model) => match model.classify(p, message).await {
                Ok(raw) => match parse_llm_answer(&raw, &self.settings.intents) {
                    Ok(d) => {
                        return Detected {
                            intent: d.intent,
                            confidence: d.confidence,
                            source: IntentSource::Llm,
                            note: String::new(),
                            fell_back: false,
                        };
                    }
                    Err(why) => {
                        tracing::warn!(tenant = %p.tenant, reason = %why, "intent model answer refused");
                        // The answer may quote the user's message: only at debug level.
                        tracing::debug!(tenant = %p.tenant, raw = %raw.chars().take(300).collect::<String>(), "refused intent model answer");
                        why
                    }
                },
                Err(err) => {
                    tracing::warn!(tenant = %p.tenant, error = %err, "intent model failed");
                    format!("the intent model failed: {}", err.api().message)
                }
            },
        };
        match guess {
            Some(d) => Detected {
                intent: d.intent,
                confidence: d.confidence,
                source: IntentSource::Rules,
                note: format!("fell back to rule {}: {reason}", d.rule.unwrap_or_default()),
                fell_back: true,
            },
            None => {
                let intent = Intent::parse(&self.settings.fallback.intent)
                    .unwrap_or(Intent(getlood_proto::pipeline::v1::Intent::Chat));
                Detected {
                    intent,
                    confidence: self.settings.fallback.confidence,
                    source: IntentSource::Unspecified,
                    note: format!("fell back to {}: {reason}", intent.name()),
                    fell_back: true,
                }
            }
        }
    }

    /// Stage 3: the first agent with the route's skill, else the tenant's default agent.
    async fn select(&self, p: &Caller, route: &Route) -> Result<Option<(Agent, SelectionReason, Vec<String>)>, Error> {
        let matches = self.registry.find(p, &route.skill).await?;
        if let Some(m) = matches.into_iter().find(|m| m.agent.is_some()) {
            let matched = m.matched_skills;
            return Ok(m.agent.map(|a| (a, SelectionReason::SkillMatch, matched)));
        }
        Ok(self
            .registry
            .default_agent(p, self.settings.default_agent.as_deref())
            .await?
            .map(|a| (a, SelectionReason::DefaultAgent, Vec::new())))
    }

    /// Stage 4: QueryAgent, streamed through under a total and an idle deadline.
    async fn execute(
        &self,
        input: &TurnInput,
        agent: &Agent,
        em: &mut Emitter,
    ) -> Result<(String, Option<Usage>), Stop> {
        let failed = |e| Stop::Failed(Stage::Execution, e);
        let deadline = tokio::time::Instant::now() + self.settings.agent_timeout;
        let conversation_id = input.conversation_id.to_string();
        let recalled = match &self.memory {
            Some(memory) => {
                let question = input.messages.last().map(|m| m.content.as_str()).unwrap_or_default();
                em.beat(Stage::Execution, memory.recall(&input.caller, question, &conversation_id)).await?
            }
            None => Vec::new(),
        };
        let messages = with_recall(&input.messages, &recalled);
        let start = self.registry.query(
            &input.caller,
            &agent.id,
            &messages,
            &conversation_id,
            self.settings.heartbeat,
            self.settings.agent_timeout,
        );
        let mut stream = em.beat(Stage::Execution, start).await?.map_err(failed)?;
        let mut answer = String::new();
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(failed(Error::Timeout { what: "the agent's answer", after: self.settings.agent_timeout }));
            }
            let wait = self.settings.agent_idle_timeout.min(deadline - now);
            let item = match tokio::time::timeout(wait, stream.message()).await {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(failed(Error::Timeout {
                        what: "the agent's answer",
                        after: self.settings.agent_timeout,
                    }));
                }
                Err(_) => {
                    return Err(failed(Error::Timeout {
                        what: "the agent stream (idle)",
                        after: self.settings.agent_idle_timeout,
                    }));
                }
                Ok(Err(status)) => return Err(failed(Error::Registry(status))),
                Ok(Ok(None)) => {
                    return Err(failed(Error::Upstream("the agent stream ended without an answer".to_owned())));
                }
                Ok(Ok(Some(item))) => item,
            };
            match item.event {
                Some(query_agent_response::Event::Status(s)) => {
                    em.send(Event::AgentProgress(AgentProgress { kind: s.kind, message: s.message })).await?;
                }
                Some(query_agent_response::Event::Chunk(c)) => {
                    answer.push_str(&c.delta);
                    em.send(Event::AnswerChunk(AnswerChunk { delta: c.delta })).await?;
                }
                Some(query_agent_response::Event::Heartbeat(h)) => {
                    em.send(Event::Heartbeat(Heartbeat { sent_at: h.sent_at, stage: Stage::Execution as i32 })).await?;
                }
                Some(query_agent_response::Event::Completed(c)) => {
                    // The final item repeats the whole answer; stream what chunks did not carry.
                    if let Some(rest) = c.answer.strip_prefix(answer.as_str()).filter(|r| !r.is_empty()) {
                        let rest = rest.to_owned();
                        answer.push_str(&rest);
                        em.send(Event::AnswerChunk(AnswerChunk { delta: rest })).await?;
                    }
                    return Ok((answer, c.usage));
                }
                Some(query_agent_response::Event::Error(d)) => {
                    return Err(failed(Error::Agent { code: d.code, message: d.message }));
                }
                None => {}
            }
        }
    }

    /// Writes the turn and its `turn.completed` event in one transaction. A concurrent retry with
    /// the same idempotency key that committed first wins; its turn is returned instead.
    async fn persist(&self, p: &Principal, turn: Turn, notes: &TurnNotes) -> Result<Turn, Error> {
        let mut tx = self.store.begin().await?;
        if let Err(err) = self.store.insert(&mut tx, &p.tenant, &turn, notes).await {
            let duplicate = matches!(&err, sqlx::Error::Database(db) if db.is_unique_violation());
            if duplicate && !turn.client_request_id.is_empty() {
                drop(tx);
                if let Some(existing) =
                    self.store.by_client_request(&p.tenant, &p.user, &turn.client_request_id).await?
                {
                    return Ok(existing);
                }
            }
            return Err(err.into());
        }
        let user_message = turn.messages.last().map(|m| m.content.clone()).unwrap_or_default();
        let event = new_envelope(
            &p.tenant,
            &p.user,
            &turn.conversation_id,
            "turn.completed",
            Payload::TurnCompleted(TurnCompleted {
                turn_id: turn.id.clone(),
                conversation_id: turn.conversation_id.clone(),
                user_id: turn.user_id.clone(),
                user_message,
                answer: turn.answer.clone(),
                intent: turn.intent,
                confidence: turn.confidence,
                mode: turn.mode,
                agent_name: turn.agent.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
                ui_action_types: turn.ui_actions.iter().map(|a| a.r#type.clone()).collect(),
                outcome: turn.outcome,
                duration_ms: turn.duration_ms,
                desktop_id: turn.desktop_id.clone(),
            }),
        );
        self.outbox.enqueue(&mut tx, Domain::Turn, &event).await?;
        tx.commit().await?;
        self.outbox.notify();
        Ok(turn)
    }
}

/// The clarification question: the intent was unclear (`routed` false), or it was clear but no
/// agent of the tenant can handle it.
fn clarification_text(routed: bool, french: bool) -> (String, Vec<String>) {
    let question = match (routed, french) {
        (false, true) => {
            "Je ne suis pas sûr de comprendre. Voulez-vous créer une interface, un rapport, lancer un workflow, interroger vos données, ou simplement discuter ?"
        }
        (false, false) => {
            "I am not sure what you need. Do you want to build a UI, produce a report, run a workflow, query your data, or just chat?"
        }
        (true, true) => "Aucun de vos agents ne sait encore faire cela. Pouvez-vous reformuler, ou choisir un agent ?",
        (true, false) => "None of your agents can handle this yet. Could you rephrase, or pick an agent?",
    };
    let suggestions: &[&str] = match (routed, french) {
        (false, true) => &["Crée-moi un dashboard", "Prépare un rapport", "Lance un workflow", "Interroge mes données"],
        (false, false) => &["Build me a dashboard", "Prepare a report", "Run a workflow", "Query my data"],
        (true, _) => &[],
    };
    (question.to_owned(), suggestions.iter().map(|s| (*s).to_owned()).collect())
}
