//! The gateway's response cache of agent reads (`GET /api/v1/agents/{id}`).
//!
//! Agents are read far more often than written (every client screen that shows one), and a
//! read that stops at the gateway costs no gRPC hop and no second token verification. Entries
//! are the encoded JSON body and version, per tenant and agent id, in process memory: a Redis
//! tier here would add a network round trip to every hit and duplicate the registry's own Redis
//! tier, which already serves this cache's misses.
//!
//! Freshness: this replica drops an entry when it updates or deletes the agent itself, and every
//! replica drops it when the `agent.*` event arrives on NATS. A fill that raced with an
//! invalidation is discarded (a generation counter is read before the upstream call and checked
//! after the insert), so a stale body is never cached after the event that made it stale. An
//! event missed during a NATS disconnect is bounded by the TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use getlood_auth::TenantId;
use getlood_events::{Domain, Payload};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Metric: cache lookups, labelled `result` (`hit` or `miss`).
pub const METRIC_LOOKUPS: &str = "getlood_gateway_agent_cache_total";

/// One cached agent response.
#[derive(Debug)]
pub(crate) struct CachedAgent {
    /// The agent's version (the ETag).
    pub version: i64,
    /// The JSON body, encoded once.
    pub body: Bytes,
}

type Key = (TenantId, String);

/// The agent-read cache of one gateway replica; cheap to clone.
#[derive(Clone)]
pub(crate) struct AgentCache {
    /// None when disabled (`agent_cache_ttl = 0`).
    entries: Option<moka::sync::Cache<Key, Arc<CachedAgent>>>,
    /// Bumped by every invalidation, so a fill that started before one is not kept.
    generation: Arc<AtomicU64>,
}

impl AgentCache {
    /// A cache of at most `capacity` agents kept `ttl`; a zero TTL disables it.
    pub(crate) fn new(ttl: Duration, capacity: u64) -> Self {
        let entries =
            (!ttl.is_zero()).then(|| moka::sync::Cache::builder().max_capacity(capacity).time_to_live(ttl).build());
        Self { entries, generation: Arc::new(AtomicU64::new(0)) }
    }

    /// The cached response of `tenant`'s agent `id`.
    pub(crate) fn get(&self, tenant: &TenantId, id: &str) -> Option<Arc<CachedAgent>> {
        let entries = self.entries.as_ref()?;
        let hit = entries.get(&(tenant.clone(), id.to_owned()));
        metrics::counter!(METRIC_LOOKUPS, "result" => if hit.is_some() { "hit" } else { "miss" }).increment(1);
        hit
    }

    /// The generation to pass to [`Self::fill`] (read before the upstream call).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a response read upstream, unless an invalidation happened since `generation`.
    pub(crate) fn fill(&self, generation: u64, tenant: &TenantId, id: &str, value: CachedAgent) {
        let Some(entries) = &self.entries else { return };
        if self.generation() != generation {
            return;
        }
        let key = (tenant.clone(), id.to_owned());
        entries.insert(key.clone(), Arc::new(value));
        // An invalidation between the check and the insert would have found nothing to drop.
        if self.generation() != generation {
            entries.invalidate(&key);
        }
    }

    /// Drops `tenant`'s agent `id`.
    pub(crate) fn invalidate(&self, tenant: &TenantId, id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.invalidate(&(tenant.clone(), id.to_owned()));
        }
    }

    /// Drops entries named by `agent.*` events of every tenant, from every replica.
    pub(crate) async fn spawn_invalidation(
        &self,
        nats: async_nats::Client,
        subject_prefix: &str,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(), getlood_events::EventError> {
        if self.entries.is_none() {
            return Ok(());
        }
        let this = self.clone();
        getlood_events::spawn_domain_watcher(nats, subject_prefix, Domain::Agent, tracker, shutdown, move |envelope| {
            let Ok(tenant) = TenantId::parse(&envelope.tenant_id) else { return std::future::ready(()) };
            match envelope.payload {
                Some(Payload::AgentUpdated(e)) => this.invalidate(&tenant, &e.agent_id),
                Some(Payload::AgentDeleted(e)) => this.invalidate(&tenant, &e.agent_id),
                _ => {}
            }
            std::future::ready(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    fn value(version: i64) -> CachedAgent {
        CachedAgent { version, body: Bytes::from(format!("{{\"version\":{version}}}")) }
    }

    #[test]
    fn entries_are_per_tenant_and_dropped_on_invalidation() {
        let cache = AgentCache::new(Duration::from_secs(60), 100);
        let (a, b) = (tenant("acme"), tenant("globex"));
        cache.fill(cache.generation(), &a, "x", value(1));
        assert_eq!(cache.get(&a, "x").unwrap().version, 1);
        assert!(cache.get(&b, "x").is_none(), "another tenant never sees the entry");
        cache.invalidate(&a, "x");
        assert!(cache.get(&a, "x").is_none());
    }

    #[test]
    fn a_fill_that_raced_with_an_invalidation_is_discarded() {
        let cache = AgentCache::new(Duration::from_secs(60), 100);
        let a = tenant("acme");
        let before = cache.generation();
        // The agent changes while the upstream read of the old version is in flight.
        cache.invalidate(&a, "x");
        cache.fill(before, &a, "x", value(1));
        assert!(cache.get(&a, "x").is_none());
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let cache = AgentCache::new(Duration::ZERO, 100);
        let a = tenant("acme");
        cache.fill(cache.generation(), &a, "x", value(1));
        assert!(cache.get(&a, "x").is_none());
    }
}
