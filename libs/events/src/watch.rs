//! Best-effort fan-in of one domain's events of every tenant, for replicas that keep a cache
//! of that domain's objects and must drop entries another replica changed.
//!
//! It is a core-NATS subscription (JetStream publishes reach core subscribers too), so it costs
//! no consumer on the server and starts at "now". It can miss events while disconnected: caches
//! fed by it must keep a TTL that bounds how long a missed invalidation is served.

use std::future::Future;

use futures::StreamExt as _;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::{Domain, EventEnvelope, EventError};

/// Calls `on_event` with every well-formed event of `domain`, of every tenant, published under
/// `prefix`, until `shutdown`. Malformed payloads are skipped. The subscription exists when this
/// returns, so an event published after it is seen.
pub async fn spawn_domain_watcher<F, Fut>(
    nats: async_nats::Client,
    prefix: &str,
    domain: Domain,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    on_event: F,
) -> Result<(), EventError>
where
    F: Fn(EventEnvelope) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let subject = format!("{prefix}.*.{}.>", domain.token());
    let mut sub = nats.subscribe(subject.clone()).await.map_err(|e| EventError::JetStream(e.to_string()))?;
    tracker.spawn(async move {
        loop {
            let msg = tokio::select! {
                () = shutdown.cancelled() => break,
                msg = sub.next() => match msg {
                    Some(m) => m,
                    None => break,
                },
            };
            match EventEnvelope::decode(msg.payload) {
                Ok(envelope) => on_event(envelope).await,
                Err(err) => tracing::debug!(subject = %msg.subject, error = %err, "skipping undecodable event"),
            }
        }
        let _ = sub.unsubscribe().await;
        tracing::debug!(subject, "domain watcher stopped");
    });
    Ok(())
}
