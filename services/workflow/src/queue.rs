//! The work queue: one JetStream work-queue stream shared by every workflow deployment, one
//! subject and durable pull consumer per deployment (its Postgres schema), so replicas of one
//! deployment share the work and two deployments on one NATS never take each other's.
//!
//! A message names a node of a run (`<run_id> <node_id>`); its `Nats-Msg-Id` is the same pair,
//! so a re-publish of a node already queued is dropped by JetStream. Delivery is at least once:
//! handlers check the node's state in Postgres before doing anything (see `engine.rs`).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A work item: one node of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkItem {
    pub run_id: Uuid,
    pub node_id: String,
}

impl WorkItem {
    fn encode(&self) -> String {
        format!("{} {}", self.run_id, self.node_id)
    }

    /// Parses a message body; `None` for anything this service did not write.
    pub(crate) fn decode(body: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(body).ok()?;
        let (run, node) = text.split_once(' ')?;
        Some(Self { run_id: Uuid::parse_str(run).ok()?, node_id: node.to_owned() })
    }
}

/// Publishes work items and opens the deployment's consumer.
#[derive(Clone, Debug)]
pub(crate) struct WorkQueue {
    js: jetstream::Context,
    stream: String,
    subject_root: String,
    subject: String,
    durable: String,
    ack_wait: Duration,
    replicas: usize,
}

impl WorkQueue {
    /// The queue of deployment `schema` under `prefix`; `ack_wait` is the node lease, `replicas`
    /// the stream's copies when this creates it (`nats.stream_replicas`).
    pub(crate) fn new(
        client: async_nats::Client,
        prefix: &str,
        schema: &str,
        ack_wait: Duration,
        replicas: usize,
    ) -> Self {
        Self {
            js: jetstream::new(client),
            stream: format!("{}_WORKFLOW_WORK", prefix.to_ascii_uppercase().replace('-', "_")),
            // Not under `<prefix>.`: the event streams capture `<prefix>.*.<domain>.>`, and
            // JetStream refuses a stream whose subjects could overlap theirs.
            subject_root: format!("{prefix}_work.workflow"),
            subject: format!("{prefix}_work.workflow.{schema}"),
            durable: format!("wf_{schema}"),
            ack_wait,
            replicas: replicas.max(1),
        }
    }

    /// Reports this deployment's consumer lag as `getlood_nats_consumer_lag`.
    pub(crate) fn spawn_lag_reporter(
        &self,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        getlood_events::spawn_lag_reporter(
            self.js.clone(),
            self.stream.clone(),
            self.durable.clone(),
            Duration::from_secs(15),
            tracker,
            shutdown,
        );
    }

    /// Creates the stream and this deployment's consumer if missing (idempotent).
    pub(crate) async fn ensure(&self) -> Result<consumer::Consumer<consumer::pull::Config>> {
        let config = stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.>", self.subject_root)],
            // Work-queue retention: a message is gone once acknowledged.
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            num_replicas: self.replicas,
            ..Default::default()
        };
        let stream = self.js.get_or_create_stream(config).await.map_err(q)?;
        let consumer = stream
            .get_or_create_consumer(
                &self.durable,
                consumer::pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subject: self.subject.clone(),
                    ack_policy: consumer::AckPolicy::Explicit,
                    // A worker that stops renewing (progress acks) for this long is presumed dead
                    // and its message goes to another worker.
                    ack_wait: self.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 4096,
                    // Test deployments come and go; their consumers should not pile up.
                    inactive_threshold: Duration::from_secs(7 * 24 * 3600),
                    ..Default::default()
                },
            )
            .await
            .map_err(q)?;
        Ok(consumer)
    }

    /// Publishes `item` and waits for the stream's acknowledgement.
    pub(crate) async fn publish(&self, item: &WorkItem) -> Result<()> {
        self.publish_as(item, "").await
    }

    /// Publishes `item` again for a parked delay node that is due: its own message id, so the
    /// stream's duplicate window does not drop it as a repeat of the node's first message
    /// (while repeats of this wake-up are dropped).
    pub(crate) async fn publish_wake(&self, item: &WorkItem) -> Result<()> {
        self.publish_as(item, "@wake").await
    }

    async fn publish_as(&self, item: &WorkItem, id_suffix: &str) -> Result<()> {
        let mut headers = async_nats::HeaderMap::new();
        let body = item.encode();
        headers.insert("Nats-Msg-Id", format!("{body}{id_suffix}").as_str());
        self.js.publish_with_headers(self.subject.clone(), headers, body.into()).await.map_err(q)?.await.map_err(q)?;
        Ok(())
    }
}

fn q(e: impl std::fmt::Display) -> Error {
    Error::Queue(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let item = WorkItem { run_id: Uuid::now_v7(), node_id: "analyze data-1".to_owned() };
        assert_eq!(WorkItem::decode(item.encode().as_bytes()), Some(item));
        assert_eq!(WorkItem::decode(b"nope"), None);
    }
}
