//! GETLOOD workflow: Visual workflow definitions, versions and durable runs.
//!
//! Serves gRPC health and reflection and the HTTP admin routes; its v1 API
//! (`getlood.workflow.v1`) is not served yet, so calls to it return `UNIMPLEMENTED`.

use getlood_server::{Infra, Listeners, Needs, NoSettings, ServiceConfig, ServiceSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec =
    ServiceSpec { name: "workflow", needs: Needs { postgres: true, redis: false, nats: true } };

/// The service's configuration.
pub type Config = ServiceConfig<NoSettings>;

/// Defaults: HTTP on :8083, gRPC on :9093, Postgres schema `workflow`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8083, 9093, "workflow")
}

/// Runs the service on `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> getlood_server::Result<()> {
    let infra = Infra::start(SPEC, &config, None).await?;
    let grpc = tonic::service::Routes::default();
    getlood_server::serve(SPEC, &config, infra, listeners, grpc, axum::Router::new(), shutdown, TaskTracker::new())
        .await
}
