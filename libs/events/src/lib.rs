//! GETLOOD's event backbone on NATS JetStream.
//!
//! Subjects are `<prefix>.<tenant>.<domain>.<entity>.<verb>` (`getlood.acme.workflow.node.completed`),
//! one stream per domain captures `<prefix>.*.<domain>.>`, and every message is a binary protobuf
//! [`EventEnvelope`] with `Nats-Msg-Id` (JetStream de-duplication), `traceparent` and the
//! `Getlood-*` headers documented in `proto/getlood/events/v1/events.proto`.

mod bus;
mod headers;
mod lag;
mod live;
mod outbox;
mod watch;

pub use bus::{Domain, EventBus, EventError, ReceivedEvent, new_envelope};
pub use getlood_proto::events::v1::{EventEnvelope, event_envelope::Payload};
pub use headers::{NatsHeaderExtractor, NatsHeaderInjector};
pub use lag::spawn_lag_reporter;
pub use live::{Follow, RawEvent, StartAt};
pub use outbox::{
    DEFAULT_MAX_ENVELOPE_BYTES, DeadLetter, DeadLetterReason, METRIC_DEAD_LETTERED, Outbox, OutboxError, begin,
};
pub use watch::spawn_domain_watcher;

/// Header carrying [`EventEnvelope::r#type`].
pub const HEADER_TYPE: &str = "Getlood-Type";
/// Header carrying [`EventEnvelope::schema_version`].
pub const HEADER_SCHEMA: &str = "Getlood-Schema";
/// Header carrying [`EventEnvelope::entity_id`], so consumers filter without decoding.
pub const HEADER_ENTITY_ID: &str = "Getlood-Entity-Id";
/// Content type of every event body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Subject token of events without a tenant (audit events of unauthenticated requests); tenant
/// ids cannot start with `_`, so it never names a tenant.
pub const UNAUTHENTICATED_TENANT: &str = "_unauthenticated";
/// Current envelope schema version.
pub const SCHEMA_VERSION: i32 = 1;
