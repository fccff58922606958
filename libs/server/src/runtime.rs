//! The [`Runtime`]: everything a service is handed at start, built here once so no service
//! assembles its own (hand-built startups drifted: two services once skipped the JWKS refresh).

use std::sync::Arc;
use std::time::Duration;

use getlood_auth::Verifier;
use getlood_events::{EventBus, Outbox};
use secrecy::ExposeSecret as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::upstream::{Upstream, UpstreamTimeouts};
use crate::{Error, Infra, RedisHandle, Result, ServiceConfig, ServiceSpec, ServiceUrls};

/// The server settings [`Runtime::serve`] applies, copied from the service's configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeSettings {
    pub request_timeout: Duration,
    pub readiness_interval: Duration,
    pub shutdown_timeout: Duration,
}

/// What a service runs on: its token verifier (with the identity provider's JWKS fetched and
/// refreshed), its Postgres/Redis/NATS clients, its event bus with the streams ensured, the
/// channels to other services, the task tracker every background task is spawned on, and the
/// shutdown token.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) spec: ServiceSpec,
    verifier: Arc<Verifier>,
    infra: Infra,
    bus: Option<EventBus>,
    urls: ServiceUrls,
    upstream_timeouts: UpstreamTimeouts,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    pub(crate) serve: ServeSettings,
    /// The gRPC services [`Runtime::serve`] advertises (reflection) and reports (health); `None`
    /// advertises every service of the descriptor set.
    pub(crate) grpc_services: Option<&'static [&'static str]>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("service", &self.spec.name).field("infra", &self.infra).finish()
    }
}

impl Runtime {
    /// Builds the runtime of `spec` from `config`: verifier first (a bad key refuses the start
    /// before anything connects), then the dependencies `spec.needs` asks for, the migrations
    /// (unless a release job runs them), and the JetStream streams. Dependencies that are down
    /// do not fail the start: readiness reports them and the clients reconnect.
    pub async fn build<A, M>(
        spec: ServiceSpec,
        config: &ServiceConfig<A, M>,
        migrator: Option<&sqlx::migrate::Migrator>,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let tracker = TaskTracker::new();
        let verifier = crate::verifier(&config.auth, &tracker, shutdown.clone()).await?;
        if config.auth.hs256_secret.as_ref().is_some_and(|s| s.expose_secret() == getlood_auth::DEV_HS256_SECRET) {
            tracing::warn!(
                service = spec.name,
                "auth uses the built-in development secret; configure auth.hs256_secret or public keys in production"
            );
        }
        let infra = Infra::start(spec, config, migrator).await?;
        let bus = infra.nats.clone().map(|nats| {
            EventBus::new(nats, &config.nats.subject_prefix).with_stream_replicas(config.nats.stream_replicas)
        });
        if let Some(bus) = &bus {
            // Every service ensures the streams; the first to reach JetStream creates them. A
            // NATS outage at start only delays the relays and consumers, which retry.
            if let Err(err) = bus.ensure_streams().await {
                tracing::warn!(service = spec.name, error = %err, "jetstream streams not ensured yet, will retry");
            }
        }
        Ok(Self {
            spec,
            verifier,
            infra,
            bus,
            urls: config.services.clone(),
            upstream_timeouts: UpstreamTimeouts::default(),
            tracker,
            shutdown,
            serve: ServeSettings {
                request_timeout: config.request_timeout,
                readiness_interval: config.readiness_interval,
                shutdown_timeout: config.shutdown_timeout,
            },
            grpc_services: None,
        })
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// The token verifier.
    pub fn verifier(&self) -> Arc<Verifier> {
        self.verifier.clone()
    }

    /// The gRPC interceptor that verifies every call's bearer token ([`crate::authenticate`]).
    pub fn authenticate(
        &self,
    ) -> impl FnMut(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status>
    + Clone
    + Send
    + Sync
    + 'static {
        crate::authenticate(self.verifier.clone())
    }

    /// The service's gRPC server `inner` behind token verification and the per-method role
    /// check of `methods` ([`crate::authorize`]): what every service serves its API with.
    pub fn authorize<S: tonic::server::NamedService>(
        &self,
        methods: crate::MethodPermissions,
        inner: S,
    ) -> crate::Authorized<S> {
        crate::authorize(self.verifier.clone(), methods, inner)
    }

    /// The Postgres, Redis and NATS clients.
    pub fn infra(&self) -> &Infra {
        &self.infra
    }

    /// The service's Postgres pool; an error if its spec does not need Postgres.
    pub fn postgres(&self) -> Result<PgPool> {
        self.infra.postgres.clone().ok_or(Error::NotNeeded { service: self.spec.name, what: "postgres" })
    }

    /// The Redis handle, when the spec needs Redis.
    pub fn redis(&self) -> Option<RedisHandle> {
        self.infra.redis.clone()
    }

    /// The NATS client; an error if the spec does not need NATS.
    pub fn nats(&self) -> Result<async_nats::Client> {
        self.infra.nats.clone().ok_or(Error::NotNeeded { service: self.spec.name, what: "nats" })
    }

    /// The event bus (JetStream streams ensured at build); an error without NATS.
    pub fn bus(&self) -> Result<EventBus> {
        self.bus.clone().ok_or(Error::NotNeeded { service: self.spec.name, what: "nats" })
    }

    /// The outbox of the service's Postgres schema, with its relay to JetStream running until
    /// shutdown (rows are published in commit order, then deleted; re-publishes are dropped
    /// by JetStream's `Nats-Msg-Id` de-duplication).
    pub fn outbox(&self, poll: Duration) -> Result<Outbox> {
        let outbox = Outbox::new(self.postgres()?).for_service(self.spec.name);
        outbox.spawn_relay(self.bus()?, poll, &self.tracker, self.shutdown.clone());
        Ok(outbox)
    }

    /// The channel to another service, by its name in `services.*` (e.g. `agent-registry`).
    pub fn upstream(&self, service: &'static str) -> Result<Upstream> {
        let url = match service {
            "gateway" => &self.urls.gateway,
            "pipeline" => &self.urls.pipeline,
            "desktop-state" => &self.urls.desktop_state,
            "workflow" => &self.urls.workflow,
            "agent-registry" => &self.urls.agent_registry,
            "event-dispatcher" => &self.urls.event_dispatcher,
            _ => return Err(Error::Url { what: service, message: "no such service".to_owned() }),
        };
        Upstream::connect_lazy(service, url, self.upstream_timeouts)
    }

    /// The same runtime with other deadlines for the channels [`Runtime::upstream`] makes.
    #[must_use]
    pub fn with_upstream_timeouts(mut self, timeouts: UpstreamTimeouts) -> Self {
        self.upstream_timeouts = timeouts;
        self
    }

    /// The same runtime advertising only `services` (fully qualified gRPC service names, e.g.
    /// `getlood.workflow.v1.WorkflowService`) in reflection, and reporting each of them in
    /// `grpc.health.v1` next to the whole server: for a server, such as the gateway, that serves
    /// a chosen part of the descriptor set, so reflection never describes what it does not serve.
    #[must_use]
    pub fn with_grpc_services(mut self, services: &'static [&'static str]) -> Self {
        self.grpc_services = Some(services);
        self
    }

    /// The tracker every background task of the service runs on; [`Runtime::serve`] waits for
    /// them after the drain.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Cancelled when the service stops.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Builds the runtime of `spec` from `config` and runs the service (`run`, its library entry
/// point) on it until `shutdown`: what a service process, the in-process launcher and the
/// tests all do.
pub async fn run_service<A, M, F, Fut>(
    spec: ServiceSpec,
    config: ServiceConfig<A, M>,
    migrator: Option<&sqlx::migrate::Migrator>,
    listeners: crate::Listeners,
    shutdown: CancellationToken,
    run: F,
) -> Result<()>
where
    F: FnOnce(ServiceConfig<A, M>, Runtime, crate::Listeners) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let runtime = Runtime::build(spec, &config, migrator, shutdown).await?;
    run(config, runtime, listeners).await
}
