//! GETLOOD gateway: the only component clients talk to. It verifies the caller's JWT on every
//! route except health, metrics and docs, assigns request ids, and answers with JSON errors.

mod a2a;
mod accounts;
mod agent_cache;
mod audit;
mod audit_api;
mod auth;
mod caller;
mod chat;
mod cors;
mod data_source_api;
mod desktop_api;
mod edge;
mod error;
mod extract;
mod graphql;
mod grpc;
mod http_api;
mod kb_api;
mod mcp;
mod memory_api;
mod models_api;
mod openai;
mod openapi;
mod permissions;
mod proto_json;
mod rate_limit;
mod registry_api;
mod rest;
mod sse;
mod upstream;
mod web;
mod workflow_api;
mod ws;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use getlood_auth::Verifier;
use getlood_common::egress::{EgressConfig, EgressPolicy};
use getlood_config::{ConfigError, Validate};
use getlood_server::{Infra, Listeners, Needs, Runtime, ServiceConfig, ServiceSpec, UpstreamTimeouts};
use serde::{Deserialize, Serialize};

pub use a2a::{METRIC_PUSH_DELIVERED as METRIC_A2A_PUSH_DELIVERED, METRIC_PUSH_FAILED as METRIC_A2A_PUSH_FAILED};
pub use accounts::{
    ACTIVATION_DELAY as SIGNING_KEY_ACTIVATION_DELAY, AccountsSettings, Error as AccountsError, JWKS_PATH,
    MAX_TOKEN_LIFETIME, OidcSettings, rotate_signing_key,
};
pub use audit::{METRIC_DROPPED as METRIC_AUDIT_DROPPED, METRIC_PUBLISHED as METRIC_AUDIT_PUBLISHED};
pub use error::{Error, Result};
pub use http_api::router;
pub use openapi::{PATH as OPENAPI_PATH, document_json as openapi_json};
pub use permissions::{RoutePermission, grpc_permissions, permission_for, route_permissions};
pub use rate_limit::{ClassLimit, RateLimiter, RouteClass, StoreErrorPolicy};
pub use upstream::Upstreams;
pub use ws::Realtime;

/// Name and dependencies of the gateway: Redis for rate limits and caches, NATS for audit events,
/// Postgres for the A2A server's tasks (its own schema: the gateway speaks A2A, so it owns the
/// protocol's task state; the pipeline keeps the turns).
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "gateway",
    needs: Needs { postgres: true, redis: true, nats: true },
    // Redis holds the rate limits (each route class fails open or closed by its own policy) and
    // caches; NATS feeds the WebSockets and the audit stream. Without either the REST API and
    // chat still work, so a gateway stays in its Service rather than taking the whole edge down
    // (the drills' Redis and NATS outages).
    ready_without: Needs { postgres: false, redis: true, nats: true },
};

/// The gateway's schema migrations (`migrations/`): the A2A tasks (their leases and push
/// configs), the built-in accounts and the keys their tokens are signed with.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// Gateway-specific settings (`GETLOOD_GATEWAY_APP__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Deadline of a plain (non-streaming) HTTP request.
    #[serde(with = "humantime_serde")]
    pub http_request_timeout: Duration,
    /// Chat requests a minute allowed to one user of one tenant, across every gateway replica.
    pub chat_rate_limit_per_minute: u32,
    /// Chat requests a minute allowed to a whole tenant, across every replica; 0 disables the
    /// tenant-wide limit.
    pub tenant_rate_limit_per_minute: u32,
    /// Per-tenant replacements of `tenant_rate_limit_per_minute` (tenant id to limit; 0 disables).
    pub tenant_rate_limit_overrides: BTreeMap<String, u32>,
    /// What a limited route does when Redis cannot answer in time: `allow` (fail open, the
    /// default) or `deny` (fail closed with 503).
    pub rate_limit_on_store_error: StoreErrorPolicy,
    /// Per-user and per-tenant budgets of the other limited route classes (`workflow_execute`,
    /// `workflow_validate`, `agent_write`, `search`, `ws_command`, `write`); a class left out,
    /// or a 0, is not limited. Set one class at a time with
    /// `APP__RATE_LIMITS__WORKFLOW_EXECUTE__PER_USER_PER_MINUTE=10`.
    pub rate_limits: BTreeMap<RouteClass, ClassLimit>,
    /// What the classes other than chat do when Redis cannot answer in time: false (the
    /// default) fails closed with 503 and `Retry-After`; true serves them without a limit.
    pub rate_limit_fail_open: bool,
    /// Chat turns one tenant may have in flight on one gateway replica; one more is a 429.
    /// 0 removes the cap.
    pub tenant_max_concurrent_chats: usize,
    /// How long a rate-limit decision may wait for Redis before the store-error policy applies.
    #[serde(with = "humantime_serde")]
    pub rate_limit_store_timeout: Duration,
    /// Time allowed to open a connection to an upstream service.
    #[serde(with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// Deadline of a unary upstream call (and of a streaming call until its first response).
    #[serde(with = "humantime_serde")]
    pub upstream_request_timeout: Duration,
    /// Deadline of an agent create, update or delete: MindsDB checks the agent's model with a
    /// live call first, which on a small local model under load takes longer than a plain call.
    /// Below `http_request_timeout`, so the caller gets this precise 504, not the layer's.
    #[serde(with = "humantime_serde")]
    pub agent_write_timeout: Duration,
    /// Longest silence tolerated on the pipeline stream (it sends heartbeats while it works)
    /// before the chat completion ends with a timeout error.
    #[serde(with = "humantime_serde")]
    pub chat_idle_timeout: Duration,
    /// Overall deadline of one chat completion, streaming or not.
    #[serde(with = "humantime_serde")]
    pub chat_total_timeout: Duration,
    /// Interval of the `: keep-alive` SSE comments sent while the answer is not flowing.
    #[serde(with = "humantime_serde")]
    pub sse_heartbeat_interval: Duration,
    /// Events buffered per WebSocket client; a client further behind is told to resync.
    pub ws_buffer: usize,
    /// Recent events each desktop feed keeps, so a client reconnecting shortly after a drop
    /// resumes from memory instead of replaying the stream.
    pub ws_replay: usize,
    /// Interval of the WebSocket ping frames; a client silent for three intervals is dropped.
    #[serde(with = "humantime_serde")]
    pub ws_ping_interval: Duration,
    /// WebSockets one user may hold open on one gateway replica (desktop and event sockets
    /// together); one more upgrade is a 429.
    pub ws_max_sockets_per_user: usize,
    /// Longest a single frame may take to be written to a client before it is dropped.
    #[serde(with = "humantime_serde")]
    pub ws_send_timeout: Duration,
    /// How long a desktop feed with no client stays subscribed, for clients that reconnect.
    #[serde(with = "humantime_serde")]
    pub ws_feed_idle: Duration,
    /// How long an agent read stays in this replica's response cache; `0s` disables the cache.
    /// Changes made through any replica drop entries at once (NATS `agent.*` events); this
    /// bounds staleness only when such an event is missed.
    #[serde(with = "humantime_serde")]
    pub agent_cache_ttl: Duration,
    /// Most agents the response cache holds.
    pub agent_cache_capacity: u64,
    /// Deepest field nesting a GraphQL operation may have (introspection included: GraphiQL's
    /// introspection query needs 13).
    pub graphql_max_depth: usize,
    /// Highest complexity a GraphQL operation may have: a field costs 1, a field that calls a
    /// service 5 more, a list its page size times its selection.
    pub graphql_max_complexity: usize,
    /// Most aliased fields one GraphQL document may have.
    pub graphql_max_aliases: usize,
    /// Most operations one batched GraphQL request may hold.
    pub graphql_max_batch: usize,
    /// Subscriptions one GraphQL socket may hold open at once.
    pub graphql_max_subscriptions: usize,
    /// Whether the GraphQL schema answers introspection (`__schema`, `__type`).
    pub graphql_introspection: bool,
    /// Browser origins (`scheme://host[:port]`, exactly as the `Origin` header) allowed to call
    /// the gateway cross-origin with credentials: REST, SSE and gRPC-Web. Empty (the default)
    /// means no CORS at all; `getlood dev` allows the web app's dev server,
    /// `http://localhost:5173`. Set with `APP__CORS_ALLOWED_ORIGINS='["https://app.example.com"]'`.
    pub cors_allowed_origins: Vec<String>,
    /// Proxies in front of the gateway that append the address they saw to `X-Forwarded-For`
    /// (an Ingress controller: 1). The audit log's client address is the entry that many from
    /// the right; 0 (the default) takes the TCP peer and ignores the header, which a client can
    /// write itself.
    pub client_ip_forwarded_hops: usize,
    /// Hosts that URLs the gateway calls itself (A2A push-notification webhooks) may name
    /// although the built-in egress policy refuses them (loopback, private, link-local):
    /// `app.egress.allow`, empty by default. The test kit's tests allow loopback.
    pub egress: EgressConfig,
    /// Lease of a running A2A task: the replica running its turn renews it every third of this;
    /// a task whose lease expired lost its replica (killed, its node lost) and any replica
    /// fails it within half a lease more.
    #[serde(with = "humantime_serde")]
    pub a2a_task_lease: Duration,
    /// Deadline of one A2A push-notification POST.
    #[serde(with = "humantime_serde")]
    pub a2a_push_timeout: Duration,
    /// POSTs of one push notification to one webhook, the first included (0.5 s before the
    /// second, doubled before each further one); 1 to 10.
    pub a2a_push_attempts: u32,
    /// Built-in accounts: sign-up, sign-in and the tokens the gateway signs (used unless `oidc`
    /// is set).
    pub accounts: AccountsSettings,
    /// The OpenID Connect provider browsers sign in with. Set: `GET /api/v1/auth/config` says
    /// `oidc` and built-in accounts are off; the provider's issuer and keys are `auth.issuer`
    /// and `auth.jwks_url`.
    pub oidc: Option<OidcSettings>,
    /// Directory of the web desktop's built files (`web/dist`), served at `/` with an SPA
    /// fallback; unset (the default): no web app. `getlood dev` sets `web/dist` when it exists;
    /// the image holds it at `/usr/share/getlood/web`.
    pub web_dir: Option<std::path::PathBuf>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            http_request_timeout: Duration::from_secs(30),
            chat_rate_limit_per_minute: 100,
            tenant_rate_limit_per_minute: 1000,
            tenant_rate_limit_overrides: BTreeMap::new(),
            rate_limit_on_store_error: StoreErrorPolicy::Allow,
            rate_limits: rate_limit::default_class_limits(),
            rate_limit_fail_open: false,
            tenant_max_concurrent_chats: 32,
            rate_limit_store_timeout: Duration::from_millis(250),
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_request_timeout: Duration::from_secs(10),
            agent_write_timeout: Duration::from_secs(25),
            chat_idle_timeout: Duration::from_secs(60),
            chat_total_timeout: Duration::from_secs(300),
            sse_heartbeat_interval: Duration::from_secs(10),
            ws_buffer: 256,
            ws_replay: 1024,
            ws_ping_interval: Duration::from_secs(15),
            ws_max_sockets_per_user: 16,
            ws_send_timeout: Duration::from_secs(10),
            ws_feed_idle: Duration::from_secs(30),
            agent_cache_ttl: Duration::from_secs(60),
            agent_cache_capacity: 10_000,
            graphql_max_depth: 16,
            graphql_max_complexity: 1000,
            graphql_max_aliases: 30,
            graphql_max_batch: 8,
            graphql_max_subscriptions: 16,
            graphql_introspection: true,
            cors_allowed_origins: Vec::new(),
            client_ip_forwarded_hops: 0,
            egress: EgressConfig::default(),
            a2a_task_lease: Duration::from_secs(30),
            // The spec recommends 10-30 s per webhook request.
            a2a_push_timeout: Duration::from_secs(10),
            a2a_push_attempts: 3,
            accounts: AccountsSettings::default(),
            oidc: None,
            web_dir: None,
        }
    }
}

impl Validate for GatewaySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::invalid("app.max_body_bytes", "must be at least 1024"));
        }
        if self.ws_buffer == 0 {
            return Err(ConfigError::invalid("app.ws_buffer", "must be at least 1"));
        }
        if self.ws_max_sockets_per_user == 0 {
            return Err(ConfigError::invalid("app.ws_max_sockets_per_user", "must be at least 1"));
        }
        for (key, value, min) in [
            ("app.graphql_max_depth", self.graphql_max_depth, 2),
            ("app.graphql_max_complexity", self.graphql_max_complexity, 10),
            ("app.graphql_max_batch", self.graphql_max_batch, 1),
            ("app.graphql_max_subscriptions", self.graphql_max_subscriptions, 1),
        ] {
            if value < min {
                return Err(ConfigError::invalid(key, format!("must be at least {min}")));
            }
        }
        if self.chat_rate_limit_per_minute == 0 {
            return Err(ConfigError::invalid("app.chat_rate_limit_per_minute", "must be at least 1"));
        }
        if self.rate_limits.contains_key(&RouteClass::Chat) {
            return Err(ConfigError::invalid(
                "app.rate_limits.chat",
                "chat has its own settings: chat_rate_limit_per_minute and tenant_rate_limit_per_minute",
            ));
        }
        cors::check_origins(&self.cors_allowed_origins)?;
        self.accounts.validate()?;
        if let Some(oidc) = &self.oidc {
            oidc.validate()?;
        }
        EgressPolicy::new(&self.egress).map_err(|e| ConfigError::invalid("app.egress.allow", e.to_string()))?;
        if self.a2a_task_lease < Duration::from_secs(1) {
            return Err(ConfigError::invalid("app.a2a_task_lease", "must be at least 1s"));
        }
        if !(1..=10).contains(&self.a2a_push_attempts) {
            return Err(ConfigError::invalid("app.a2a_push_attempts", "must be from 1 to 10"));
        }
        for tenant in self.tenant_rate_limit_overrides.keys() {
            if getlood_auth::TenantId::parse(tenant).is_err() {
                return Err(ConfigError::invalid(
                    "app.tenant_rate_limit_overrides",
                    format!("'{tenant}' is not a valid tenant id"),
                ));
            }
        }
        getlood_config::require_positive([
            ("app.http_request_timeout", self.http_request_timeout),
            ("app.rate_limit_store_timeout", self.rate_limit_store_timeout),
            ("app.upstream_connect_timeout", self.upstream_connect_timeout),
            ("app.upstream_request_timeout", self.upstream_request_timeout),
            ("app.agent_write_timeout", self.agent_write_timeout),
            ("app.chat_idle_timeout", self.chat_idle_timeout),
            ("app.chat_total_timeout", self.chat_total_timeout),
            ("app.sse_heartbeat_interval", self.sse_heartbeat_interval),
            ("app.ws_ping_interval", self.ws_ping_interval),
            ("app.ws_send_timeout", self.ws_send_timeout),
            ("app.ws_feed_idle", self.ws_feed_idle),
            ("app.a2a_push_timeout", self.a2a_push_timeout),
        ])?;
        if self.agent_write_timeout >= self.http_request_timeout {
            return Err(ConfigError::invalid(
                "app.agent_write_timeout",
                "must be shorter than app.http_request_timeout (that layer would cut the call first)",
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

/// What request handlers share: one pointer, because axum clones the state for every extractor
/// and middleware of every request, and cloning the parts (a tonic channel is a buffered
/// service with its own sender) showed up at the top of the cached-read profile.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Verifies bearer tokens.
    pub verifier: Arc<Verifier>,
    /// Redis and NATS clients.
    pub infra: Infra,
    /// Gateway settings.
    pub settings: Arc<GatewaySettings>,
    /// Lazily connected channels to the internal services.
    pub upstreams: Upstreams,
    /// Shared (Redis) rate limits of the chat routes.
    pub limiter: RateLimiter,
    /// Desktop feeds shared by the WebSocket clients of this replica, and the shutdown of
    /// long-lived streams.
    pub realtime: Realtime,
    /// Agent reads served without calling the registry.
    pub(crate) agents: agent_cache::AgentCache,
    /// The audit log's queue to its publisher task.
    pub(crate) audit: audit::AuditSink,
    /// The A2A server's tasks: their store and the turns running on this replica.
    pub(crate) a2a: a2a::Tasks,
    /// Built-in accounts; `None` with an OpenID Connect provider (`app.oidc`).
    pub(crate) accounts: Option<Arc<accounts::Accounts>>,
}

/// Runs the gateway on `listeners` until the runtime's shutdown.
pub async fn run(config: Config, runtime: Runtime, listeners: Listeners) -> getlood_server::Result<()> {
    let settings = Arc::new(config.app.clone());
    let runtime = runtime
        .with_upstream_timeouts(UpstreamTimeouts {
            connect: settings.upstream_connect_timeout,
            request: settings.upstream_request_timeout,
        })
        .with_grpc_services(permissions::GRPC_SERVICE_NAMES);
    let agent_writes =
        UpstreamTimeouts { connect: settings.upstream_connect_timeout, request: settings.agent_write_timeout };
    let upstreams = Upstreams::connect_lazy(&runtime, &config.services.agent_registry, agent_writes)?;
    let limiter = RateLimiter::new(runtime.redis(), &config.redis.key_prefix, settings.clone());
    let realtime = Realtime::new(settings.clone(), upstreams.clone(), runtime.tracker().clone(), runtime.shutdown());
    let agents = agent_cache::AgentCache::new(settings.agent_cache_ttl, settings.agent_cache_capacity);
    agents
        .spawn_invalidation(runtime.nats()?, &config.nats.subject_prefix, runtime.tracker(), runtime.shutdown())
        .await
        .map_err(|e| getlood_server::Error::Serve(format!("nats subscribe: {e}")))?;
    let audit = audit::AuditSink::start(
        runtime.bus()?,
        settings.client_ip_forwarded_hops,
        runtime.tracker(),
        runtime.shutdown(),
    );
    let egress = EgressPolicy::new(&settings.egress)
        .map_err(|e| getlood_server::Error::Serve(format!("app.egress.allow: {e}")))?;
    let push_key = settings.accounts.key_encryption_key.as_ref().map(getlood_common::sealing::SealingKey::new);
    if push_key.is_none() {
        tracing::warn!(
            "app.accounts.key_encryption_key is not set: a2a push-notification credentials are stored unencrypted in postgres"
        );
    }
    let store = runtime.postgres().ok().map(|pool| a2a::Store::new(pool, settings.a2a_task_lease, push_key));
    let pusher = match &store {
        Some(store) => Some(
            a2a::Pusher::new(
                store.clone(),
                a2a::PushSettings {
                    egress: egress.clone(),
                    timeout: settings.a2a_push_timeout,
                    attempts: settings.a2a_push_attempts,
                },
                runtime.tracker().clone(),
                runtime.shutdown(),
            )
            .map_err(getlood_server::Error::Serve)?,
        ),
        None => None,
    };
    // A turn is bounded by chat_total_timeout; a minute more covers its start.
    let leases = a2a::Leases {
        lease: settings.a2a_task_lease,
        orphan_age: settings.chat_total_timeout + Duration::from_secs(60),
    };
    let a2a = a2a::Tasks::new(store, runtime.bus().ok(), pusher, egress, leases, runtime.tracker().clone());
    a2a.spawn_sweeper(runtime.shutdown());
    let accounts = match &settings.oidc {
        Some(_) => None,
        None => Some(Arc::new(
            accounts::Accounts::start(
                runtime.postgres()?,
                settings.accounts.clone(),
                &config.auth,
                runtime.verifier(),
                runtime.tracker(),
                runtime.shutdown(),
            )
            .await
            .map_err(|e| getlood_server::Error::Serve(format!("built-in accounts: {e}")))?,
        )),
    };
    let state = AppState(Arc::new(Shared {
        verifier: runtime.verifier(),
        infra: runtime.infra().clone(),
        settings,
        upstreams,
        limiter,
        realtime,
        agents,
        audit,
        a2a,
        accounts,
    }));
    let grpc = grpc::routes(state.clone());
    // The OpenAPI document is public like the skeleton's probes: outside the authenticated router.
    runtime.serve(listeners, grpc, router(state).merge(openapi::public_routes())).await
}
