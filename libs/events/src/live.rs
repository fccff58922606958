//! Following a tenant's events live: an ordered (ephemeral, flow-controlled) JetStream consumer
//! that starts at a known stream position, catches up on what is stored, then keeps delivering
//! as events are published. Bodies are not decoded here, so a subscriber can drop events of
//! other entities by their `Getlood-Entity-Id` header without paying for the decode.

use async_nats::jetstream::consumer;
use futures::stream::BoxStream;
use futures::{StreamExt as _, TryStreamExt as _};
use getlood_common::TenantId;
use prost::Message as _;

use crate::bus::js_err;
use crate::{Domain, EventBus, EventEnvelope, EventError, HEADER_ENTITY_ID};

/// One stored event, as read from its stream, body still encoded.
#[derive(Debug, Clone)]
pub struct RawEvent {
    /// Stream sequence.
    pub sequence: u64,
    /// The subject it was published on.
    pub subject: String,
    /// The `Getlood-Entity-Id` header, when present.
    pub entity_id: Option<String>,
    /// Events of the followed subjects still stored after this one when it was delivered
    /// (0: this was the newest, the follower has caught up).
    pub pending: u64,
    /// The encoded [`EventEnvelope`].
    pub payload: bytes::Bytes,
}

impl RawEvent {
    /// Decodes the envelope.
    pub fn decode(&self) -> Result<EventEnvelope, EventError> {
        Ok(EventEnvelope::decode(self.payload.clone())?)
    }
}

/// A live subscription to one domain stream of one tenant.
pub struct Follow {
    /// The stream position the subscription starts after: every event of the tenant with a
    /// greater sequence is delivered, in order, none twice.
    pub start_after: u64,
    /// Events of the tenant stored after `start_after` when the subscription was created
    /// (0: it starts live).
    pub pending: u64,
    /// The stream's newest sequence (any tenant) when the subscription was created. Once the
    /// follower has nothing pending, it has seen every event of its tenant up to here.
    pub stream_last: u64,
    /// The events; an error ends the subscription.
    pub events: BoxStream<'static, Result<RawEvent, EventError>>,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follow")
            .field("start_after", &self.start_after)
            .field("pending", &self.pending)
            .field("stream_last", &self.stream_last)
            .finish_non_exhaustive()
    }
}

/// Where a [`EventBus::follow`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// After the newest stored event: only events published from now on.
    New,
    /// After this stream sequence (0: everything still stored).
    After(u64),
}

impl EventBus {
    /// The JetStream context, for consumers this crate does not wrap (durable work queues).
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.js
    }

    /// The subject and stream prefix (normally `getlood`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The newest sequence of `domain`'s stream (0 when it never held anything).
    pub async fn last_sequence(&self, domain: Domain) -> Result<u64, EventError> {
        let stream = self.js.get_stream(self.stream_name(domain)).await.map_err(js_err)?;
        Ok(stream.cached_info().state.last_sequence)
    }

    /// Follows `tenant`'s events of `domain` from `start`: stored events first, then live ones.
    ///
    /// [`EventError::Expired`] when `start` names a position the stream's retention has
    /// already removed (events may have been lost; the caller must reload state).
    pub async fn follow(&self, tenant: &TenantId, domain: Domain, start: StartAt) -> Result<Follow, EventError> {
        self.follow_subject(format!("{}.{tenant}.{}.>", self.prefix, domain.token()), domain, start).await
    }

    /// Follows the events of `domain` of every tenant from `start`, as [`EventBus::follow`]
    /// does for one: for a service's own read model of another service's entities (the
    /// workflow service's directory of agents).
    pub async fn follow_all(&self, domain: Domain, start: StartAt) -> Result<Follow, EventError> {
        self.follow_subject(format!("{}.*.{}.>", self.prefix, domain.token()), domain, start).await
    }

    async fn follow_subject(
        &self,
        filter_subject: String,
        domain: Domain,
        start: StartAt,
    ) -> Result<Follow, EventError> {
        let stream = self.js.get_stream(self.stream_name(domain)).await.map_err(js_err)?;
        let state = &stream.cached_info().state;
        let stream_last = state.last_sequence;
        let start_after = match start {
            // The position is read before the consumer exists and the consumer starts right after
            // it, so an event published in between is delivered rather than skipped.
            StartAt::New => state.last_sequence,
            StartAt::After(seq) => {
                // Sequences below first_sequence are gone. After a purge of an empty stream
                // first_sequence is last_sequence + 1, which still lets `seq == last` resume.
                if seq > 0 && seq + 1 < state.first_sequence {
                    return Err(EventError::Expired { requested: seq, first_available: state.first_sequence });
                }
                seq
            }
        };
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject,
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: start_after + 1 },
                ..Default::default()
            })
            .await
            .map_err(js_err)?;
        let pending = consumer.cached_info().num_pending;
        let messages = consumer.messages().await.map_err(js_err)?;
        // async-nats' ordered consumer recreates itself (consumer lost, heartbeats missed: a
        // NATS cluster restarting) from the last stream sequence it delivered, and from the
        // stream's first event when it has delivered none yet, not from `start_after`: a follower
        // resumed just before an outage would deliver every stored event again. Nothing at or
        // before the last delivered position is passed on; the stream ends with an error instead,
        // so the caller follows again from its own position (a subscription's client resumes
        // from its cursor), rather than waiting here while the whole stream is read again.
        let events = messages
            .map_err(js_err)
            .and_then(|msg| async move {
                let info = msg.info().map_err(js_err)?;
                let (sequence, pending) = (info.stream_sequence, info.pending);
                let entity_id =
                    msg.headers.as_ref().and_then(|h| h.get(HEADER_ENTITY_ID)).map(|v| v.as_str().to_owned());
                Ok(RawEvent {
                    sequence,
                    subject: msg.subject.to_string(),
                    entity_id,
                    pending,
                    payload: msg.payload.clone(),
                })
            })
            .scan(Some(start_after), |last, item| {
                let Some(after) = *last else { return futures::future::ready(None) };
                let item = match item {
                    Ok(event) if event.sequence <= after => {
                        *last = None;
                        Err(EventError::JetStream(format!(
                            "the ordered consumer restarted at sequence {}, at or before {after} already delivered; follow again from {after}",
                            event.sequence
                        )))
                    }
                    Ok(event) => {
                        *last = Some(event.sequence);
                        Ok(event)
                    }
                    Err(err) => Err(err),
                };
                futures::future::ready(Some(item))
            })
            .boxed();
        Ok(Follow { start_after, pending, stream_last, events })
    }
}
