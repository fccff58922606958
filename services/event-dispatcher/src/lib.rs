//! GETLOOD event-dispatcher: durable event streams with resumable subscriptions, and
//! knowledge-base memory.
//!
//! * `Subscribe` streams a tenant's events (tenant from the verified token only), filtered by
//!   topic and entity, from a cursor, live after catch-up, with heartbeats and a bounded buffer
//!   per subscriber ([`subscribe`]).
//! * `turn.completed` events are ingested into each tenant's memory knowledge base by a durable
//!   consumer, and `Search` serves it to the pipeline's enhancement stage ([`memory`]).
//! * `ListAudit` pages through the tenant's audit events for callers with `audit.read`
//!   ([`audit`]).
//! * The tenants' own knowledge bases: create, list, get, delete, insert documents and search,
//!   in the tenant's MindsDB project, never the platform's memory one ([`kb`]).

mod audit;
mod error;
mod filter;
mod grpc;
mod kb;
mod memory;
mod settings;
mod subscribe;

use getlood_mindsdb::{MindsdbClient, MindsdbConfig};
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_server::EventDispatcherServiceServer;
use getlood_server::{Listeners, Needs, Runtime, ServiceConfig, ServiceSpec};

pub use error::{Error, Result};
pub use filter::{Cursor, Topic};
pub use settings::{DispatcherSettings, EmbeddingConfig, KnowledgeBaseSettings, MemorySettings};
pub use subscribe::{METRIC_ACTIVE, METRIC_DELIVERED, METRIC_RESYNC};

/// The permission each `EventDispatcherService` method needs (`getlood_auth::allows`), so a direct call inside
/// the cluster is held to the same rule as the gateway's routes; a method missing here is
/// refused to everyone.
pub const GRPC_PERMISSIONS: getlood_server::MethodPermissions = getlood_auth::methods::EVENT_DISPATCHER;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "event-dispatcher",
    needs: Needs { postgres: false, redis: false, nats: true },
    ready_without: Needs { postgres: false, redis: false, nats: false },
};

/// The service's configuration.
pub type Config = ServiceConfig<DispatcherSettings, MindsdbConfig>;

/// Defaults: HTTP on :8085, gRPC on :9095.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8085, 9095, "event_dispatcher")
}

/// Runs the service on `listeners` until the runtime's shutdown.
pub async fn run(config: Config, runtime: Runtime, listeners: Listeners) -> getlood_server::Result<()> {
    let bus = runtime.bus()?;
    let mindsdb = MindsdbClient::new(&config.mindsdb)
        .map_err(|e| getlood_server::Error::Serve(format!("mindsdb client: {e}")))?;
    let knowledge_bases = kb::KnowledgeBases::new(mindsdb.clone(), &config.app.memory, &config.app.knowledge_bases);
    let memory = memory::Memory::new(mindsdb, &config.app.memory)
        .map_err(|e| getlood_server::Error::Serve(format!("memory: {e}")))?;
    if config.app.memory.enabled {
        memory::spawn_ingestion(
            bus.clone(),
            memory.clone(),
            config.app.memory.clone(),
            runtime.tracker(),
            runtime.shutdown(),
        )
        .await;
    }
    let subscriptions = subscribe::Subscriptions {
        bus,
        desktops: runtime.upstream("desktop-state")?,
        heartbeat: config.app.heartbeat_interval,
        buffer: config.app.subscriber_buffer,
        lag_timeout: config.app.lag_timeout,
        tracker: runtime.tracker().clone(),
        // Open subscriptions end when the service stops, so the gRPC drain is not held up by
        // streams that would otherwise never finish; clients resume with their cursor.
        shutdown: runtime.shutdown(),
    };
    let dispatcher = grpc::Dispatcher { subscriptions, memory, knowledge_bases };
    let grpc =
        tonic::service::Routes::new(runtime.authorize(GRPC_PERMISSIONS, EventDispatcherServiceServer::new(dispatcher)));
    runtime.serve(listeners, grpc, axum::Router::new()).await
}
