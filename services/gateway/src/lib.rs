//! GETLOOD gateway: the only component clients talk to. It verifies the caller's JWT on every
//! route except health, metrics and docs, assigns request ids, and answers with JSON errors.

mod auth;
mod grpc;
mod http_api;

use std::sync::Arc;
use std::time::Duration;

use getlood_auth::Verifier;
use getlood_config::{ConfigError, Validate};
use getlood_server::{Infra, Listeners, Needs, ServiceConfig, ServiceSpec};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use http_api::router;

/// Name and dependencies of the gateway: Redis for rate limits and caches, NATS for audit events.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "gateway",
    needs: Needs {
        postgres: false,
        redis: true,
        nats: true,
    },
};

/// Gateway-specific settings (`GETLOOD_GATEWAY_APP__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Deadline of a plain (non-streaming) HTTP request.
    #[serde(with = "humantime_serde")]
    pub http_request_timeout: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            http_request_timeout: Duration::from_secs(30),
        }
    }
}

impl Validate for GatewaySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::invalid(
                "app.max_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.http_request_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "app.http_request_timeout",
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

/// The gateway's configuration.
pub type Config = ServiceConfig<GatewaySettings>;

/// Defaults: HTTP on :8080, gRPC on :9090.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8080, 9090, "gateway")
}

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    /// Verifies bearer tokens.
    pub verifier: Arc<Verifier>,
    /// Redis and NATS clients.
    pub infra: Infra,
    /// Gateway settings.
    pub settings: Arc<GatewaySettings>,
}

/// Runs the gateway on `listeners` until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> getlood_server::Result<()> {
    let verifier = Arc::new(Verifier::new(&config.auth)?);
    if config
        .auth
        .hs256_secret
        .as_ref()
        .is_some_and(|s| s.expose_secret() == getlood_auth::DEV_HS256_SECRET)
    {
        tracing::warn!(
            "auth uses the built-in development secret; set GETLOOD_GATEWAY_AUTH__HS256_SECRET or public keys in production"
        );
    }
    let infra = Infra::start(SPEC, &config, None).await?;
    let state = AppState {
        verifier: verifier.clone(),
        infra: infra.clone(),
        settings: Arc::new(config.app.clone()),
    };
    let grpc = grpc::routes(verifier);
    getlood_server::serve(
        SPEC,
        &config,
        infra,
        listeners,
        grpc,
        router(state),
        shutdown,
        TaskTracker::new(),
    )
    .await
}
