use std::time::{Duration, SystemTime};

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt as _;
use getlood_common::TenantId;
use prost::Message as _;

use crate::{
    CONTENT_TYPE, EventEnvelope, HEADER_ENTITY_ID, HEADER_SCHEMA, HEADER_TYPE, NatsHeaderExtractor, NatsHeaderInjector,
    Payload, SCHEMA_VERSION,
};

/// Why an event could not be published or read.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A payload arrived that is not a valid envelope.
    #[error("cannot decode event: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The requested position was already removed by the stream's retention.
    #[error("sequence {requested} is no longer stored (the stream starts at {first_available})")]
    Expired {
        /// The position asked for.
        requested: u64,
        /// The oldest sequence still stored.
        first_available: u64,
    },
    /// JetStream refused or did not acknowledge the operation.
    #[error("jetstream: {0}")]
    JetStream(String),
    /// The message is larger than the server's `max_payload`: it can never be published.
    #[error("event too large for the server: {0}")]
    TooLarge(String),
}

impl EventError {
    /// Whether retrying cannot help: the same bytes fail the same way every time.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Decode(_) | Self::TooLarge(_))
    }
}

pub(crate) fn js_err(err: impl std::fmt::Display) -> EventError {
    EventError::JetStream(err.to_string())
}

/// The event domains, one JetStream stream each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// agent.created / updated / deleted
    Agent,
    /// turn.completed
    Turn,
    /// window.* and desktop.*
    Window,
    /// run.* and node.*
    Workflow,
    /// audit.recorded
    Audit,
}

impl Domain {
    /// Every domain.
    pub const ALL: [Domain; 5] = [Domain::Agent, Domain::Turn, Domain::Window, Domain::Workflow, Domain::Audit];

    /// The subject token (`workflow`).
    pub fn token(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Turn => "turn",
            Self::Window => "window",
            Self::Workflow => "workflow",
            Self::Audit => "audit",
        }
    }
}

/// Publishes and consumes GETLOOD events.
#[derive(Clone, Debug)]
pub struct EventBus {
    pub(crate) js: jetstream::Context,
    pub(crate) prefix: String,
    replicas: usize,
}

/// An event read from a stream, with what a consumer needs to resume and to continue the trace.
#[derive(Debug)]
pub struct ReceivedEvent {
    /// The decoded envelope.
    pub envelope: EventEnvelope,
    /// The stream sequence: resume after it.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// The producer's trace context.
    pub parent: opentelemetry::Context,
}

impl EventBus {
    /// A bus over `client`, with subjects and stream names under `prefix` (normally `getlood`).
    pub fn new(client: async_nats::Client, prefix: &str) -> Self {
        Self { js: jetstream::new(client), prefix: prefix.to_owned(), replicas: 1 }
    }

    /// The same bus creating its streams with `replicas` copies (3 on a NATS cluster, so a
    /// stopped node loses no acknowledged event); 1, the default, suits a single server.
    /// [`EventBus::ensure_streams`] applies it to the streams it creates, not to existing ones.
    #[must_use]
    pub fn with_stream_replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// The stream name of `domain`: `GETLOOD_WORKFLOW`.
    pub fn stream_name(&self, domain: Domain) -> String {
        format!("{}_{}", self.prefix.to_ascii_uppercase().replace('-', "_"), domain.token().to_ascii_uppercase())
    }

    /// The subject of an event: `getlood.<tenant>.<domain>.<type>`. An empty tenant (an audit
    /// event of a request whose token could not be verified) maps to the reserved token
    /// [`crate::UNAUTHENTICATED_TENANT`], which no tenant id can equal, so no tenant reads it.
    pub fn subject(&self, tenant: &str, domain: Domain, event_type: &str) -> String {
        let tenant = if tenant.is_empty() { crate::UNAUTHENTICATED_TENANT } else { tenant };
        format!("{}.{tenant}.{}.{event_type}", self.prefix, domain.token())
    }

    /// Creates the stream of every domain if missing (idempotent; safe from every replica).
    pub async fn ensure_streams(&self) -> Result<(), EventError> {
        for domain in Domain::ALL {
            let config = stream::Config {
                name: self.stream_name(domain),
                subjects: vec![format!("{}.*.{}.>", self.prefix, domain.token())],
                storage: stream::StorageType::File,
                max_age: Duration::from_secs(7 * 24 * 3600),
                // Window for Nats-Msg-Id de-duplication of retried publishes.
                duplicate_window: Duration::from_secs(120),
                num_replicas: self.replicas,
                ..Default::default()
            };
            self.js.get_or_create_stream(config).await.map_err(js_err)?;
        }
        Ok(())
    }

    /// Publishes `envelope` to its domain and waits for the JetStream ack; returns the sequence.
    pub async fn publish(&self, domain: Domain, envelope: &EventEnvelope) -> Result<u64, EventError> {
        let ack = self.send(domain, envelope, envelope.encode_to_vec().into()).await?.await.map_err(js_err)?;
        Ok(ack.sequence)
    }

    /// Sends `envelope` (`body` is its encoding) to its domain without waiting for the JetStream
    /// ack, so a relay can keep many publishes in flight; the returned future yields the ack.
    /// The trace context is the one the envelope captured when it was made, else the current one.
    pub async fn send(
        &self,
        domain: Domain,
        envelope: &EventEnvelope,
        body: bytes::Bytes,
    ) -> Result<jetstream::context::PublishAckFuture, EventError> {
        let subject = self.subject(&envelope.tenant_id, domain, &envelope.r#type);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", envelope.id.as_str());
        headers.insert(HEADER_TYPE, envelope.r#type.as_str());
        headers.insert(HEADER_SCHEMA, envelope.schema_version.to_string().as_str());
        headers.insert(HEADER_ENTITY_ID, envelope.entity_id.as_str());
        headers.insert("Content-Type", CONTENT_TYPE);
        if envelope.traceparent.is_empty() {
            getlood_telemetry::inject_context(&mut NatsHeaderInjector(&mut headers));
        } else {
            headers.insert("traceparent", envelope.traceparent.as_str());
        }
        self.js.publish_with_headers(subject, headers, body).await.map_err(|err| {
            if err.kind() == jetstream::context::PublishErrorKind::MaxPayloadExceeded {
                EventError::TooLarge(err.to_string())
            } else {
                js_err(err)
            }
        })
    }

    /// Reads `tenant`'s events of `domain` after `after_sequence` (0: from the start), for at
    /// most `max` messages or until `wait` passes without a new one. An ordered, ephemeral
    /// consumer: nothing is left behind on the server.
    pub async fn read(
        &self,
        tenant: &TenantId,
        domain: Domain,
        after_sequence: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<ReceivedEvent>, EventError> {
        let stream = self.js.get_stream(self.stream_name(domain)).await.map_err(js_err)?;
        let deliver_policy = if after_sequence == 0 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: after_sequence + 1 }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: format!("{}.{tenant}.{}.>", self.prefix, domain.token()),
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(js_err)?;
        let mut messages = consumer.messages().await.map_err(js_err)?;
        let mut out = Vec::new();
        while out.len() < max {
            let Ok(next) = tokio::time::timeout(wait, messages.next()).await else {
                break;
            };
            let Some(msg) = next else { break };
            let msg = msg.map_err(js_err)?;
            let info = msg.info().map_err(js_err)?;
            let sequence = info.stream_sequence;
            let parent = msg
                .headers
                .as_ref()
                .map(|h| getlood_telemetry::extract_context(&NatsHeaderExtractor(h)))
                .unwrap_or_default();
            out.push(ReceivedEvent {
                envelope: EventEnvelope::decode(msg.payload.clone())?,
                sequence,
                subject: msg.subject.to_string(),
                parent,
            });
        }
        Ok(out)
    }
}

/// Builds an envelope for `payload` of `event_type`, stamped now with the current trace context.
pub fn new_envelope(
    tenant: &TenantId,
    actor: &str,
    entity_id: &str,
    event_type: &str,
    payload: Payload,
) -> EventEnvelope {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    EventEnvelope {
        id: uuid::Uuid::now_v7().to_string(),
        r#type: event_type.to_owned(),
        schema_version: SCHEMA_VERSION,
        tenant_id: tenant.to_string(),
        entity_id: entity_id.to_owned(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
        }),
        actor: actor.to_owned(),
        traceparent: getlood_telemetry::current_traceparent().unwrap_or_default(),
        request_id: String::new(),
        payload: Some(payload),
    }
}
