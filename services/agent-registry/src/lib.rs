//! GETLOOD agent-registry: the tenant's agents and skills catalogue. Metadata lives in Postgres
//! (this service's schema), the agents themselves in the tenant's MindsDB project; create,
//! update and delete keep both in step or change neither. Reads go through an in-process and
//! Redis cache that every replica invalidates on `agent.*` events.

mod backend;
mod cache;
mod grpc;
mod keys;
mod model;
mod store;

use std::time::Duration;

use getlood_common::egress::{EgressConfig, EgressPolicy};
use getlood_config::{ConfigError, Validate};
use getlood_mindsdb::{MindsdbClient, MindsdbConfig};
use getlood_proto::agent_registry::v1::agent_registry_service_server::AgentRegistryServiceServer;
use getlood_server::{Error, Listeners, Needs, Runtime, ServiceConfig, ServiceSpec};
use serde::{Deserialize, Serialize};

/// The permission each `AgentRegistryService` method needs (`getlood_auth::allows`), so a direct call inside
/// the cluster is held to the same rule as the gateway's routes; a method missing here is
/// refused to everyone.
pub const GRPC_PERMISSIONS: getlood_server::MethodPermissions = getlood_auth::methods::AGENT_REGISTRY;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "agent-registry",
    needs: Needs { postgres: true, redis: true, nats: true },
    // Redis is the agents' shared cache: an error there is a miss, read from Postgres.
    ready_without: Needs { postgres: false, redis: true, nats: false },
};

/// The service's Postgres migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// agent-registry settings (`GETLOOD_AGENT_REGISTRY_APP__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// How long agent metadata stays cached (in-process and in Redis).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Entries the in-process cache holds at most.
    pub cache_capacity: u64,
    /// Heartbeat period of QueryAgent streams while MindsDB works.
    #[serde(with = "humantime_serde")]
    pub query_heartbeat: Duration,
    /// How often the outbox relay looks for unpublished events without being woken.
    #[serde(with = "humantime_serde")]
    pub outbox_poll: Duration,
    /// Hosts a model's `base_url` may name although they are loopback, private or link-local
    /// (`app.egress.allow`); empty by default. `getlood dev` and the test kit allow loopback.
    pub egress: EgressConfig,
    /// Secret the agents' API keys are encrypted with in the registry's table (32 bytes at
    /// least; the chart passes the gateway's `accounts-key-encryption-key`). The registry keeps
    /// them to put an agent back when MindsDB lost it (its storage reset under a kept Postgres).
    /// Unset: stored unencrypted, with a warning at start; keys stored encrypted then cannot be
    /// used to put agents back until it is set again.
    #[serde(serialize_with = "getlood_config::serialize_secret_opt")]
    pub key_encryption_key: Option<secrecy::SecretString>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(3600),
            cache_capacity: 100_000,
            query_heartbeat: Duration::from_secs(5),
            outbox_poll: Duration::from_secs(1),
            egress: EgressConfig::default(),
            key_encryption_key: None,
        }
    }
}

impl Validate for RegistrySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        getlood_config::require_positive([
            ("app.cache_ttl", self.cache_ttl),
            ("app.query_heartbeat", self.query_heartbeat),
            ("app.outbox_poll", self.outbox_poll),
        ])?;
        EgressPolicy::new(&self.egress).map_err(|e| ConfigError::invalid("app.egress.allow", e.to_string()))?;
        getlood_config::require_key_encryption_key("app.key_encryption_key", self.key_encryption_key.as_ref())
    }
}

/// The service's configuration.
pub type Config = ServiceConfig<RegistrySettings, MindsdbConfig>;

/// Defaults: HTTP on :8084, gRPC on :9094, Postgres schema `agent_registry`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8084, 9094, "agent_registry")
}

/// Runs the service on `listeners` until the runtime's shutdown.
pub async fn run(config: Config, runtime: Runtime, listeners: Listeners) -> getlood_server::Result<()> {
    let mindsdb = MindsdbClient::new(&config.mindsdb).map_err(|e| Error::Serve(format!("mindsdb client: {e}")))?;
    let outbox = runtime.outbox(config.app.outbox_poll)?;
    let cache = cache::AgentCache::new(
        runtime.redis(),
        &config.redis.key_prefix,
        config.app.cache_ttl,
        config.app.cache_capacity,
    );
    cache
        .spawn_invalidation(runtime.nats()?, &config.nats.subject_prefix, runtime.tracker(), runtime.shutdown())
        .await
        .map_err(|e| Error::Serve(format!("nats subscribe: {e}")))?;

    let keys = keys::KeyVault::new(config.app.key_encryption_key.as_ref());
    if !keys.seals() {
        tracing::warn!("app.key_encryption_key is not set: agents' api keys are stored unencrypted in postgres");
    }
    let registry = grpc::Registry {
        store: store::Store::new(runtime.postgres()?),
        cache,
        outbox,
        backend: backend::Backend::new(mindsdb),
        heartbeat: config.app.query_heartbeat,
        egress: EgressPolicy::new(&config.app.egress).map_err(|e| Error::Serve(format!("app.egress.allow: {e}")))?,
        tracker: runtime.tracker().clone(),
        keys,
    };
    let grpc =
        tonic::service::Routes::new(runtime.authorize(GRPC_PERMISSIONS, AgentRegistryServiceServer::new(registry)));
    runtime.serve(listeners, grpc, axum::Router::new()).await
}
