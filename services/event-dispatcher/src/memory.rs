//! Knowledge-base memory: every `turn.completed` event is written into its tenant's memory
//! knowledge base (created on first use in the tenant's MindsDB project), and `Search` reads it.
//!
//! Ingestion is a durable JetStream pull consumer shared by the replicas: a turn is acked only
//! once MindsDB has stored it, a failed insert is redelivered after a growing delay, and after
//! `max_deliver` attempts the event is terminated (it stays in the stream for a manual replay).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{self, pull};
use futures::StreamExt as _;
use getlood_auth::{Principal, TenantId};
use getlood_events::{Domain, EventBus, EventEnvelope, Payload};
use getlood_mindsdb::{
    Document, EmbeddingSettings, Ident, KbHit, KnowledgeBaseAdapter, KnowledgeBaseSpec, MindsdbClient, MindsdbError,
    ProjectAdapter, TenantContext,
};
use getlood_proto::event_dispatcher::v1::{SearchHit, SearchRequest, SearchSource};
use getlood_proto::events::v1::TurnCompleted;
use prost::Message as _;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};
use crate::settings::MemorySettings;

/// Metric: turns ingested, labelled `outcome` (`stored`, `retry`, `dropped`).
pub const METRIC_INGESTED: &str = "getlood_event_dispatcher_memory_ingested_total";

/// Metadata columns of the memory knowledge base (filters and hit metadata).
const METADATA_COLUMNS: [&str; 7] =
    ["source", "conversation_id", "user_id", "turn_id", "event_id", "agent_name", "desktop_id"];

/// The tenants' memory knowledge bases.
#[derive(Clone)]
pub(crate) struct Memory {
    kb: KnowledgeBaseAdapter,
    projects: ProjectAdapter,
    name: Ident,
    embedding: EmbeddingSettings,
    /// Tenants whose knowledge base is known to exist (a cache: a miss costs one create).
    ready: Arc<Mutex<HashSet<TenantId>>>,
}

impl Memory {
    pub(crate) fn new(client: MindsdbClient, settings: &MemorySettings) -> Result<Self> {
        let name = Ident::new(&settings.knowledge_base)?;
        Ok(Self {
            kb: KnowledgeBaseAdapter::new(client.clone()),
            projects: ProjectAdapter::new(client),
            name,
            embedding: EmbeddingSettings {
                provider: settings.embedding.provider.clone(),
                model_name: settings.embedding.model_name.clone(),
                api_key: settings.embedding.api_key.clone(),
                base_url: settings.embedding.base_url.clone(),
            },
            ready: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    fn is_ready(&self, tenant: &TenantId) -> bool {
        self.ready.lock().map(|r| r.contains(tenant)).unwrap_or(false)
    }

    fn set_ready(&self, tenant: &TenantId, ready: bool) {
        if let Ok(mut r) = self.ready.lock() {
            if ready {
                r.insert(tenant.clone());
            } else {
                r.remove(tenant);
            }
        }
    }

    /// Creates the tenant's project and memory knowledge base unless they exist.
    async fn ensure(&self, ctx: &TenantContext) -> Result<()> {
        if self.is_ready(&ctx.tenant) {
            return Ok(());
        }
        self.projects.ensure(ctx).await?;
        let spec = KnowledgeBaseSpec {
            name: self.name.clone(),
            embedding: self.embedding.clone(),
            metadata_columns: METADATA_COLUMNS.iter().filter_map(|c| Ident::new(c).ok()).collect(),
            chunk_size: None,
        };
        match self.kb.create(ctx, &spec).await {
            // Another replica (or an earlier run) created it: same thing.
            Ok(_) | Err(MindsdbError::AlreadyExists(_)) => {}
            Err(err) => return Err(err.into()),
        }
        tracing::info!(tenant = %ctx.tenant, kb = %self.name.as_str(), "memory knowledge base ready");
        self.set_ready(&ctx.tenant, true);
        Ok(())
    }

    /// Stores one document in the tenant's memory (an upsert by id).
    pub(crate) async fn ingest(&self, tenant: &TenantId, doc: Document) -> Result<()> {
        let ctx = TenantContext::new(tenant.clone(), "system");
        self.ensure(&ctx).await?;
        match self.kb.insert(&ctx, &self.name, std::slice::from_ref(&doc)).await {
            Ok(()) => Ok(()),
            Err(MindsdbError::NotFound(_)) => {
                // Dropped behind our back: create it again, once.
                self.set_ready(tenant, false);
                self.ensure(&ctx).await?;
                Ok(self.kb.insert(&ctx, &self.name, &[doc]).await?)
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Semantic search over the caller's tenant memory, best hit first.
    pub(crate) async fn search(&self, principal: &Principal, req: &SearchRequest) -> Result<Vec<SearchHit>> {
        let query = req.query.trim();
        if query.is_empty() {
            return Err(Error::InvalidArgument("query is required".to_owned()));
        }
        if query.chars().count() > 4000 {
            return Err(Error::InvalidArgument("query is longer than 4000 characters".to_owned()));
        }
        let top_k = match req.top_k {
            0 => 5,
            k @ 1..=100 => usize::try_from(k).unwrap_or(5),
            _ => return Err(Error::InvalidArgument("top_k must be between 1 and 100".to_owned())),
        };
        if !(0.0..=1.0).contains(&req.min_score) {
            return Err(Error::InvalidArgument("min_score must be between 0 and 1".to_owned()));
        }
        let admin = getlood_auth::allows(&principal.roles, getlood_auth::Permission::UsersRead);
        // Conversation memory is personal: a member only ever searches their own turns.
        let user_filter = match (admin, req.user_id.as_str()) {
            (true, "") => None,
            (true, user) => Some(user.to_owned()),
            (false, "") => Some(principal.user.clone()),
            (false, user) if user == principal.user => Some(principal.user.clone()),
            (false, _) => {
                return Err(Error::PermissionDenied("searching another user's memory needs the admin role".to_owned()));
            }
        };
        let conversations = req.sources.is_empty() || req.sources.contains(&(SearchSource::Conversations as i32));
        if !conversations {
            // Only conversation turns are ingested so far; workflow results are not.
            return Ok(Vec::new());
        }
        let mut filters: Vec<(String, String)> =
            req.metadata_filter.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(user) = user_filter {
            filters.push(("user_id".to_owned(), user));
        }
        if !req.conversation_id.is_empty() {
            filters.push(("conversation_id".to_owned(), req.conversation_id.clone()));
        }
        // The adapter searches by similarity only, so filters apply to an over-fetched page.
        let fetch = if filters.is_empty() && req.min_score == 0.0 { top_k } else { (top_k * 8).min(800) };
        let ctx = TenantContext::new(principal.tenant.clone(), principal.user.clone());
        let hits = match self.kb.search(&ctx, &self.name, query, u32::try_from(fetch).unwrap_or(100)).await {
            Ok(hits) => hits,
            // No turn ingested yet for this tenant: an empty memory, not an error.
            Err(MindsdbError::NotFound(_)) => return Ok(Vec::new()),
            Err(err) => return Err(err.into()),
        };
        Ok(hits
            .into_iter()
            .map(to_hit)
            .filter(|h| h.score >= req.min_score)
            .filter(|h| filters.iter().all(|(k, v)| h.metadata.get(k) == Some(v)))
            .take(top_k)
            .collect())
    }
}

fn to_hit(hit: KbHit) -> SearchHit {
    let metadata: std::collections::HashMap<String, String> = hit
        .metadata
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    SearchHit {
        source_event_id: metadata.get("event_id").cloned().unwrap_or_default(),
        id: hit.id,
        content: hit.content,
        score: hit.relevance.unwrap_or(0.0).clamp(0.0, 1.0),
        metadata,
        attributes: None,
    }
}

/// The document a turn becomes.
fn turn_document(envelope: &EventEnvelope, turn: &TurnCompleted) -> Document {
    let mut metadata = Map::new();
    let mut put = |k: &str, v: &str| {
        metadata.insert(k.to_owned(), Value::String(v.to_owned()));
    };
    put("source", "conversation");
    put("conversation_id", &turn.conversation_id);
    put("user_id", &turn.user_id);
    put("turn_id", &turn.turn_id);
    put("event_id", &envelope.id);
    put("agent_name", &turn.agent_name);
    put("desktop_id", &turn.desktop_id);
    // Turn ids are UUIDs; anything else falls back to the event id, which is one too.
    let id = if is_doc_id(&turn.turn_id) { format!("turn-{}", turn.turn_id) } else { format!("event-{}", envelope.id) };
    Document { id, content: format!("User: {}\nAssistant: {}", turn.user_message, turn.answer), metadata }
}

fn is_doc_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Starts the ingestion consumer; it runs until `shutdown`.
pub(crate) async fn spawn_ingestion(
    bus: EventBus,
    memory: Memory,
    settings: MemorySettings,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    getlood_events::spawn_lag_reporter(
        bus.jetstream().clone(),
        bus.stream_name(Domain::Turn),
        settings.consumer_name.clone(),
        Duration::from_secs(15),
        tracker,
        shutdown.clone(),
    );
    tracker.spawn(async move {
        // JetStream may be down at start: keep trying to bind the consumer until it answers.
        let mut delay = Duration::from_millis(500);
        let consumer = loop {
            match memory_consumer(&bus, &settings).await {
                Ok(c) => break c,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?delay, "memory consumer not ready, retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        };
        loop {
            let messages = match consumer.messages().await {
                Ok(m) => m,
                Err(err) => {
                    tracing::warn!(error = %err, "memory consumer cannot pull, retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(2)) => continue,
                    }
                }
            };
            let handled = messages.take_until(shutdown.clone().cancelled_owned()).for_each_concurrent(
                settings.concurrency,
                |msg| {
                    let memory = memory.clone();
                    let settings = settings.clone();
                    async move {
                        match msg {
                            Ok(msg) => handle(&memory, &settings, msg).await,
                            Err(err) => tracing::warn!(error = %err, "memory consumer pull failed"),
                        }
                    }
                },
            );
            handled.await;
            if shutdown.is_cancelled() {
                return;
            }
        }
    });
}

async fn memory_consumer(bus: &EventBus, settings: &MemorySettings) -> Result<consumer::Consumer<pull::Config>> {
    let js = bus.jetstream();
    let stream = js
        .get_stream(bus.stream_name(Domain::Turn))
        .await
        .map_err(|e| getlood_events::EventError::JetStream(e.to_string()))?;
    let filter = settings.filter_subject.clone().unwrap_or_else(|| format!("{}.*.turn.turn.completed", bus.prefix()));
    let config = pull::Config {
        durable_name: Some(settings.consumer_name.clone()),
        description: Some("turn.completed into the tenants' knowledge-base memory".to_owned()),
        filter_subject: filter,
        ack_policy: consumer::AckPolicy::Explicit,
        // A first binding starts with new turns; history is not back-filled into memory.
        deliver_policy: consumer::DeliverPolicy::New,
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        max_ack_pending: i64::try_from(settings.concurrency * 4).unwrap_or(64),
        ..Default::default()
    };
    stream
        .get_or_create_consumer(&settings.consumer_name, config)
        .await
        .map_err(|e| getlood_events::EventError::JetStream(e.to_string()).into())
}

async fn handle(memory: &Memory, settings: &MemorySettings, msg: async_nats::jetstream::Message) {
    let attempt = msg.info().map(|i| i.delivered).unwrap_or(1);
    let envelope = match EventEnvelope::decode(msg.payload.clone()) {
        Ok(e) => e,
        Err(err) => {
            tracing::warn!(subject = %msg.subject, error = %err, "undecodable turn event dropped");
            ack(&msg, AckKind::Term).await;
            return;
        }
    };
    let (Some(Payload::TurnCompleted(turn)), Ok(tenant)) = (&envelope.payload, TenantId::parse(&envelope.tenant_id))
    else {
        // Not a turn (or no tenant): nothing to remember.
        ack(&msg, AckKind::Ack).await;
        return;
    };
    // The subject's tenant token must agree with the body; a mismatch is never stored.
    if msg.subject.split('.').nth(1) != Some(tenant.as_str()) {
        tracing::error!(subject = %msg.subject, tenant = %tenant, "turn event tenant does not match its subject, dropped");
        ack(&msg, AckKind::Term).await;
        return;
    }
    match memory.ingest(&tenant, turn_document(&envelope, turn)).await {
        Ok(()) => {
            metrics::counter!(METRIC_INGESTED, "outcome" => "stored").increment(1);
            tracing::debug!(tenant = %tenant, turn_id = %turn.turn_id, "turn stored in memory");
            ack(&msg, AckKind::Ack).await;
        }
        Err(err) if attempt >= settings.max_deliver || matches!(err, Error::InvalidArgument(_)) => {
            metrics::counter!(METRIC_INGESTED, "outcome" => "dropped").increment(1);
            tracing::error!(tenant = %tenant, turn_id = %turn.turn_id, attempt, error = %err, "turn not stored in memory, giving up");
            ack(&msg, AckKind::Term).await;
        }
        Err(err) => {
            let index = usize::try_from(attempt.saturating_sub(1)).unwrap_or(0);
            let delay = settings.backoff.get(index).or(settings.backoff.last()).map_or(Duration::from_secs(5), |d| **d);
            metrics::counter!(METRIC_INGESTED, "outcome" => "retry").increment(1);
            tracing::warn!(tenant = %tenant, turn_id = %turn.turn_id, attempt, retry_in = ?delay, error = %err, "turn not stored in memory, redelivering");
            ack(&msg, AckKind::Nak(Some(delay))).await;
        }
    }
}

async fn ack(msg: &async_nats::jetstream::Message, kind: AckKind) {
    if let Err(err) = msg.ack_with(kind).await {
        // The server redelivers after ack_wait; nothing else to do.
        tracing::warn!(subject = %msg.subject, error = %err, "cannot acknowledge memory event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_documents_use_the_turn_id_and_carry_metadata() {
        let envelope = EventEnvelope { id: "0190-ev".into(), tenant_id: "acme".into(), ..Default::default() };
        let turn = TurnCompleted {
            turn_id: "0190-abc".into(),
            conversation_id: "c1".into(),
            user_id: "alice".into(),
            user_message: "hi".into(),
            answer: "hello".into(),
            ..Default::default()
        };
        let doc = turn_document(&envelope, &turn);
        assert_eq!(doc.id, "turn-0190-abc");
        assert_eq!(doc.content, "User: hi\nAssistant: hello");
        assert_eq!(doc.metadata["user_id"], "alice");
        assert_eq!(doc.metadata["event_id"], "0190-ev");
        let odd = TurnCompleted { turn_id: "x'y".into(), ..turn };
        assert_eq!(turn_document(&envelope, &odd).id, "event-0190-ev");
    }
}
