//! GETLOOD event-dispatcher: durable event streams with resumable subscriptions, and
//! knowledge-base memory.
//!
//! * `Subscribe` streams a tenant's events (tenant from the verified token only), filtered by
//!   topic and entity, from a cursor, live after catch-up, with heartbeats and a bounded buffer
//!   per subscriber ([`subscribe`]).
//! * `turn.completed` events are ingested into each tenant's memory knowledge base by a durable
//!   consumer, and `Search` serves it to the pipeline's enhancement stage ([`memory`]).

mod error;
mod filter;
mod grpc;
mod memory;
mod settings;
mod subscribe;

use getlood_events::EventBus;
use getlood_mindsdb::MindsdbClient;
use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_server::EventDispatcherServiceServer;
use getlood_server::{Infra, Listeners, Needs, ServiceConfig, ServiceSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{Error, Result};
pub use filter::{Cursor, Topic};
pub use settings::{DispatcherSettings, EmbeddingConfig, MemorySettings};
pub use subscribe::{METRIC_ACTIVE, METRIC_DELIVERED, METRIC_RESYNC};

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec =
    ServiceSpec { name: "event-dispatcher", needs: Needs { postgres: false, redis: false, nats: true } };

/// The service's configuration.
pub type Config = ServiceConfig<DispatcherSettings>;

/// Defaults: HTTP on :8085, gRPC on :9095.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8085, 9095, "event_dispatcher")
}

/// Runs the service on `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> getlood_server::Result<()> {
    let tracker = TaskTracker::new();
    let verifier = getlood_server::verifier(&config.auth, &tracker, shutdown.clone()).await?;
    let infra = Infra::start(SPEC, &config, None).await?;
    let Some(nats) = infra.nats.clone() else {
        return Err(getlood_server::Error::Serve("event-dispatcher needs nats".to_owned()));
    };
    let bus = EventBus::new(nats, &config.nats.subject_prefix);
    // Every service ensures the streams; the first to reach JetStream creates them.
    if let Err(err) = bus.ensure_streams().await {
        tracing::warn!(error = %err, "jetstream streams not ensured yet");
    }

    let mindsdb = MindsdbClient::new(&config.mindsdb)
        .map_err(|e| getlood_server::Error::Serve(format!("mindsdb client: {e}")))?;
    let memory = memory::Memory::new(mindsdb, &config.app.memory)
        .map_err(|e| getlood_server::Error::Serve(format!("memory: {e}")))?;
    if config.app.memory.enabled {
        memory::spawn_ingestion(bus.clone(), memory.clone(), config.app.memory.clone(), &tracker, shutdown.clone())
            .await;
    }

    let desktops = tonic::transport::Endpoint::from_shared(config.services.desktop_state.clone())
        .map_err(|e| getlood_server::Error::Url { what: "desktop-state", message: e.to_string() })?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(10))
        .connect_lazy();
    let subscriptions = subscribe::Subscriptions {
        bus,
        desktops: DesktopStateServiceClient::new(desktops),
        heartbeat: config.app.heartbeat_interval,
        buffer: config.app.subscriber_buffer,
        lag_timeout: config.app.lag_timeout,
        tracker: tracker.clone(),
        // Open subscriptions end when the service stops, so the gRPC drain is not held up by
        // streams that would otherwise never finish; clients resume with their cursor.
        shutdown: shutdown.clone(),
    };
    let dispatcher = grpc::Dispatcher { subscriptions, memory };
    let grpc = tonic::service::Routes::new(EventDispatcherServiceServer::with_interceptor(
        dispatcher,
        getlood_server::authenticate(verifier),
    ));
    getlood_server::serve(SPEC, &config, infra, listeners, grpc, axum::Router::new(), shutdown, tracker).await
}
