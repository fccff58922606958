//! GETLOOD agent-registry: the tenant's agents and skills catalogue. Metadata lives in Postgres
//! (this service's schema), the agents themselves in the tenant's MindsDB project; create,
//! update and delete keep both in step or change neither. Reads go through an in-process and
//! Redis cache that every replica invalidates on `agent.*` events.

mod backend;
mod cache;
mod grpc;
mod model;
mod store;

use std::time::Duration;

use getlood_config::{ConfigError, Validate};
use getlood_events::{EventBus, Outbox};
use getlood_mindsdb::MindsdbClient;
use getlood_proto::agent_registry::v1::agent_registry_service_server::AgentRegistryServiceServer;
use getlood_server::{Error, Infra, Listeners, Needs, ServiceConfig, ServiceSpec};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec =
    ServiceSpec { name: "agent-registry", needs: Needs { postgres: true, redis: true, nats: true } };

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
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(3600),
            cache_capacity: 100_000,
            query_heartbeat: Duration::from_secs(5),
            outbox_poll: Duration::from_secs(1),
        }
    }
}

impl Validate for RegistrySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            ("app.cache_ttl", self.cache_ttl),
            ("app.query_heartbeat", self.query_heartbeat),
            ("app.outbox_poll", self.outbox_poll),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(key, "must be greater than zero"));
            }
        }
        Ok(())
    }
}

/// The service's configuration.
pub type Config = ServiceConfig<RegistrySettings>;

/// Defaults: HTTP on :8084, gRPC on :9094, Postgres schema `agent_registry`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8084, 9094, "agent_registry")
}

/// Runs the service on `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> getlood_server::Result<()> {
    let tracker = TaskTracker::new();
    let verifier = getlood_server::verifier(&config.auth, &tracker, shutdown.clone()).await?;
    let infra = Infra::start(SPEC, &config, Some(&MIGRATOR)).await?;
    let (Some(pool), Some(nats)) = (infra.postgres.clone(), infra.nats.clone()) else {
        return Err(Error::Serve("agent-registry needs postgres and nats".to_owned()));
    };
    let mindsdb = MindsdbClient::new(&config.mindsdb).map_err(|e| Error::Serve(format!("mindsdb client: {e}")))?;

    let bus = EventBus::new(nats.clone(), &config.nats.subject_prefix);
    // Streams are created lazily by whichever replica gets there first; a NATS outage at start
    // only delays the outbox relay, which retries.
    if let Err(err) = bus.ensure_streams().await {
        tracing::warn!(error = %err, "jetstream streams not ensured yet; the outbox relay will retry");
    }
    let outbox = Outbox::new(pool.clone());
    outbox.spawn_relay(bus, config.app.outbox_poll, &tracker, shutdown.clone());

    let cache = cache::AgentCache::new(
        infra.redis.clone(),
        &config.redis.key_prefix,
        config.app.cache_ttl,
        config.app.cache_capacity,
    );
    cache
        .spawn_invalidation(nats, &config.nats.subject_prefix, &tracker, shutdown.clone())
        .await
        .map_err(|e| Error::Serve(format!("nats subscribe: {e}")))?;

    let registry = grpc::Registry {
        store: store::Store::new(pool),
        cache,
        outbox,
        backend: backend::Backend::new(mindsdb),
        heartbeat: config.app.query_heartbeat,
    };
    let grpc = tonic::service::Routes::new(AgentRegistryServiceServer::with_interceptor(
        registry,
        getlood_server::authenticate(verifier),
    ));
    getlood_server::serve(SPEC, &config, infra, listeners, grpc, axum::Router::new(), shutdown, tracker).await
}
