//! GETLOOD event-dispatcher: Durable event streams with resumable subscriptions, and knowledge-base memory.
//!
//! Serves gRPC health and reflection and the HTTP admin routes; its v1 API
//! (`getlood.event_dispatcher.v1`) is not served yet, so calls to it return `UNIMPLEMENTED`.

use getlood_server::{Infra, Listeners, Needs, NoSettings, ServiceConfig, ServiceSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec =
    ServiceSpec { name: "event-dispatcher", needs: Needs { postgres: false, redis: false, nats: true } };

/// The service's configuration.
pub type Config = ServiceConfig<NoSettings>;

/// Defaults: HTTP on :8085, gRPC on :9095, Postgres schema `event_dispatcher`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8085, 9095, "event_dispatcher")
}

/// Runs the service on `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> getlood_server::Result<()> {
    let infra = Infra::start(SPEC, &config, None).await?;
    let grpc = tonic::service::Routes::default();
    getlood_server::serve(SPEC, &config, infra, listeners, grpc, axum::Router::new(), shutdown, TaskTracker::new())
        .await
}
