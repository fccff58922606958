//! Agent metadata cache: in-process (moka) in front of Redis (shared by replicas, 1 h TTL) in
//! front of Postgres. Writers delete the Redis entry after commit; every replica drops its
//! in-process entry when an `agent.*` event arrives on NATS.

use std::sync::Arc;
use std::time::Duration;

use getlood_auth::TenantId;
use getlood_events::{Domain, Payload};
use getlood_proto::agent_registry::v1::Agent;
use getlood_server::RedisHandle;
use prost::Message as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::StoredAgent;

/// Two keys per agent, one by id and one by name, both tenant-scoped.
fn keys(tenant: &TenantId, id: &str, name: &str) -> [String; 2] {
    [format!("{tenant}:id:{id}"), format!("{tenant}:name:{name}")]
}

/// The cache of one agent-registry replica.
#[derive(Clone)]
pub(crate) struct AgentCache {
    local: moka::future::Cache<String, Arc<StoredAgent>>,
    redis: Option<RedisHandle>,
    redis_prefix: String,
    ttl: Duration,
}

impl AgentCache {
    pub(crate) fn new(redis: Option<RedisHandle>, redis_prefix: &str, ttl: Duration, capacity: u64) -> Self {
        Self {
            local: moka::future::Cache::builder().max_capacity(capacity).time_to_live(ttl).build(),
            redis,
            redis_prefix: format!("{redis_prefix}:agent-registry:agent"),
            ttl,
        }
    }

    /// Looks `key` (from [`key_by_id`]/[`key_by_name`]) up locally, then in Redis.
    pub(crate) async fn get(&self, key: &str) -> Option<Arc<StoredAgent>> {
        if let Some(hit) = self.local.get(key).await {
            metrics::counter!("getlood_agent_cache_total", "layer" => "local", "result" => "hit").increment(1);
            return Some(hit);
        }
        let redis = self.redis.as_ref()?;
        let bytes: Option<Vec<u8>> = async {
            let mut conn = redis.connection().await.ok()?;
            redis::cmd("GET").arg(format!("{}:{key}", self.redis_prefix)).query_async(&mut conn).await.ok()?
        }
        .await;
        let Some(bytes) = bytes else {
            metrics::counter!("getlood_agent_cache_total", "layer" => "redis", "result" => "miss").increment(1);
            return None;
        };
        let agent = Agent::decode(bytes.as_slice()).ok()?;
        let stored = Arc::new(StoredAgent::from_agent(agent)?);
        metrics::counter!("getlood_agent_cache_total", "layer" => "redis", "result" => "hit").increment(1);
        self.local.insert(key.to_owned(), stored.clone()).await;
        Some(stored)
    }

    /// Stores `agent` under both its keys, locally and in Redis. Redis failures only cost a miss.
    pub(crate) async fn put(&self, tenant: &TenantId, agent: &StoredAgent) {
        let stored = Arc::new(agent.clone());
        let keys = keys(tenant, &agent.agent.id, &agent.agent.name);
        for key in &keys {
            self.local.insert(key.clone(), stored.clone()).await;
        }
        if let Some(redis) = &self.redis {
            let bytes = agent.agent.encode_to_vec();
            let result: Result<(), String> = async {
                let mut conn = redis.connection().await.map_err(|e| e.to_string())?;
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("SET")
                        .arg(format!("{}:{key}", self.redis_prefix))
                        .arg(&bytes)
                        .arg("EX")
                        .arg(self.ttl.as_secs())
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn).await.map_err(|e| e.to_string())
            }
            .await;
            if let Err(err) = result {
                tracing::debug!(error = %err, "agent cache write to redis skipped");
            }
        }
    }

    /// Drops `agent`'s entries locally and in Redis (writers, after commit).
    pub(crate) async fn invalidate(&self, tenant: &TenantId, id: &str, name: &str) {
        self.invalidate_local(tenant, id, name).await;
        if let Some(redis) = &self.redis {
            let keys: Vec<String> =
                keys(tenant, id, name).iter().map(|k| format!("{}:{k}", self.redis_prefix)).collect();
            let result: Result<(), String> = async {
                let mut conn = redis.connection().await.map_err(|e| e.to_string())?;
                redis::cmd("DEL").arg(&keys).query_async::<()>(&mut conn).await.map_err(|e| e.to_string())
            }
            .await;
            if let Err(err) = result {
                // A stale Redis entry would outlive this write by up to the TTL: say so loudly.
                tracing::warn!(error = %err, agent_id = id, "cannot drop agent from redis cache");
            }
        }
    }

    async fn invalidate_local(&self, tenant: &TenantId, id: &str, name: &str) {
        for key in keys(tenant, id, name) {
            self.local.invalidate(&key).await;
        }
    }

    /// Listens to `agent.*` events of every tenant and drops the local entries they name, so a
    /// replica never serves an agent another replica changed.
    pub(crate) async fn spawn_invalidation(
        &self,
        nats: async_nats::Client,
        subject_prefix: &str,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<(), getlood_events::EventError> {
        let this = self.clone();
        getlood_events::spawn_domain_watcher(nats, subject_prefix, Domain::Agent, tracker, shutdown, move |envelope| {
            let this = this.clone();
            async move {
                let Ok(tenant) = TenantId::parse(&envelope.tenant_id) else { return };
                let (id, name) = match envelope.payload {
                    Some(Payload::AgentUpdated(e)) => (e.agent_id, e.name),
                    Some(Payload::AgentDeleted(e)) => (e.agent_id, e.name),
                    Some(Payload::AgentCreated(e)) => (e.agent_id, e.name),
                    _ => return,
                };
                this.invalidate_local(&tenant, &id, &name).await;
            }
        })
        .await
    }
}

/// Cache key of an agent by id.
pub(crate) fn key_by_id(tenant: &TenantId, id: &str) -> String {
    format!("{tenant}:id:{id}")
}

/// Cache key of an agent by name.
pub(crate) fn key_by_name(tenant: &TenantId, name: &str) -> String {
    format!("{tenant}:name:{name}")
}
