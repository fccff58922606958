//! The service skeleton every GETLOOD binary is built on, so there is one way to do each thing:
//!
//! * [`ServiceConfig`]: the settings every service shares (listen addresses, dependencies,
//!   auth, shutdown), plus the service's own settings under `app`;
//! * [`Infra`]: lazily connected Postgres, Redis and NATS clients, so a service starts even when
//!   a dependency is down and reports it through readiness instead of crash-looping;
//! * [`Runtime`]: built once per service from its config (verifier with JWKS refresh, infra
//!   clients, event bus, outbox relay, channels to other services, task tracker, shutdown) and
//!   handed to the service's `run`;
//! * [`Upstream`] and [`Caller`]: the one way to call another service, over one channel or
//!   balanced over a headless Service's endpoints ([`balance`]);
//! * [`Runtime::serve`]: gRPC (with `grpc.health.v1` and reflection), public HTTP (`/livez`, a
//!   bare `/readyz`, plus the service's routes) and admin HTTP (`/metrics`, the detailed
//!   `/readyz`) on caller-bound listeners, draining in-flight requests
//!   on shutdown within `shutdown_timeout`;
//! * [`shutdown_signal`]: SIGINT/SIGTERM to a `CancellationToken`.

pub mod balance;
pub mod cli;
mod config;
mod error;
mod grpc_auth;
mod infra;
mod metrics_layer;
mod readiness;
mod runtime;
mod serve;
mod shutdown;
mod upstream;
mod verifier;

pub use balance::UpstreamChannel;
pub use config::{NatsConfig, NoMindsdb, NoSettings, PostgresConfig, RedisConfig, ServiceConfig, ServiceUrls};
pub use error::{Error, Result, database_code, database_message};
pub use grpc_auth::{Authorized, MethodPermissions, authenticate, authorize, caller, principal};
pub use infra::{Infra, Needs, RedisHandle, nats_options, nats_servers};
pub use metrics_layer::{GrpcMetricsLayer, http_metrics};
pub use readiness::{Readiness, ReadinessReport};
pub use runtime::{Runtime, run_service};
pub use serve::{Listeners, ServiceSpec};
pub use shutdown::shutdown_signal;
pub use upstream::{Caller, REQUEST_ID, Upstream, UpstreamTimeouts, request as upstream_request};
pub use verifier::{fetch_jwks, jwks_http_client, verifier};
