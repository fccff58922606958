use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use getlood::Overrides;
pub use getlood::Service;
use getlood_server::Listeners;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// HS256 secret every in-process service of a test platform trusts.
pub const TEST_SECRET: &str = "getlood-test-secret-0123456789abcdef";

/// Chooses which services to start and how they reach their dependencies.
#[derive(Debug)]
pub struct PlatformBuilder {
    services: Vec<Service>,
    nats_url: String,
    redis_url: String,
    postgres_url: String,
    mindsdb_url: String,
    redis_key_prefix: Option<String>,
    replica_of: Option<String>,
    app_settings: std::collections::BTreeMap<Service, serde_json::Value>,
    settings: std::collections::BTreeMap<Service, serde_json::Value>,
    shutdown_timeout: Duration,
    auth: Option<getlood_auth::AuthConfig>,
    service_urls: BTreeMap<Service, String>,
    readiness_interval: Duration,
    gateway_jwks: Option<Duration>,
}

/// A started service.
#[derive(Debug)]
pub struct RunningService {
    /// Which one.
    pub service: Service,
    /// Its HTTP address.
    pub http_addr: SocketAddr,
    /// Its gRPC address.
    pub grpc_addr: SocketAddr,
    /// Its admin address (`/metrics`, the detailed `/readyz`).
    pub admin_addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<getlood_server::Result<()>>,
}

/// Services running in this process.
#[derive(Debug)]
pub struct Platform {
    services: BTreeMap<Service, RunningService>,
    run_id: String,
    postgres_url: String,
    owns_schemas: bool,
}

impl Default for PlatformBuilder {
    fn default() -> Self {
        Self {
            services: Vec::new(),
            nats_url: crate::nats_url(),
            redis_url: crate::redis_url(),
            postgres_url: crate::postgres_url(),
            mindsdb_url: crate::mindsdb_url(),
            redis_key_prefix: None,
            replica_of: None,
            // The knowledge-base memory consumer is shared by every dispatcher of a NATS server:
            // off unless a test asks for it, so one test's turns never reach another's consumer.
            // Model doubles and the local model listen on loopback, which the built-in egress
            // policy refuses (issue 13): allowed here as `getlood dev` does; a test of the
            // built-in policy sets the agent-registry's (or desktop-state's) `app` settings itself.
            app_settings: std::collections::BTreeMap::from([
                (Service::EventDispatcher, serde_json::json!({"memory": {"enabled": false}})),
                (Service::AgentRegistry, serde_json::json!({"egress": {"allow": getlood::DEV_EGRESS_ALLOW}})),
                // Data sources on the machine's own Postgres and MariaDB.
                (Service::DesktopState, serde_json::json!({"egress": {"allow": getlood::DEV_EGRESS_ALLOW}})),
                // Workflow a2a_agent and mcp_tool nodes calling the platform's own gateway and
                // the tests' MCP servers.
                (Service::Workflow, serde_json::json!({"egress": {"allow": getlood::DEV_EGRESS_ALLOW}})),
            ]),
            settings: BTreeMap::new(),
            shutdown_timeout: Duration::from_secs(5),
            auth: None,
            service_urls: BTreeMap::new(),
            readiness_interval: Duration::from_millis(100),
            gateway_jwks: None,
        }
    }
}

impl PlatformBuilder {
    /// Adds `service`.
    pub fn service(mut self, service: Service) -> Self {
        if !self.services.contains(&service) {
            self.services.push(service);
        }
        self
    }

    /// Adds all six services.
    pub fn all(mut self) -> Self {
        self.services = Service::ALL.to_vec();
        self
    }

    /// Points the services at this NATS URL (a [`crate::TcpProxy`] in failure tests).
    pub fn nats_url(mut self, url: impl Into<String>) -> Self {
        self.nats_url = url.into();
        self
    }

    /// Points the services at this Redis URL (a [`crate::TcpProxy`] in failure tests).
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = url.into();
        self
    }

    /// Shares Redis keys with another platform (two replicas of one deployment).
    pub fn redis_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.redis_key_prefix = Some(prefix.into());
        self
    }

    /// Starts more replicas of `other`'s services: same Postgres schemas and Redis keys, as
    /// two pods of one Deployment. `other` owns the schemas and drops them when it stops.
    pub fn replica_of(mut self, other: &Platform) -> Self {
        self.replica_of = Some(other.run_id.clone());
        self
    }

    /// Sets `service`'s own `app` settings, e.g. `json!({"coalesce_interval": "50ms"})`;
    /// unknown keys refuse the start as they would in production.
    pub fn app_settings(mut self, service: Service, settings: serde_json::Value) -> Self {
        self.app_settings.insert(service, settings);
        self
    }

    /// Sets any of `service`'s settings, merged at the root of its configuration, e.g.
    /// `json!({"mindsdb": {"max_concurrency_per_tenant": 1}})`; unknown keys refuse the start.
    pub fn settings(mut self, service: Service, settings: serde_json::Value) -> Self {
        self.settings.insert(service, settings);
        self
    }

    /// Points the services at this MindsDB.
    pub fn mindsdb_url(mut self, url: impl Into<String>) -> Self {
        self.mindsdb_url = url.into();
        self
    }

    /// Replaces every service's token verification settings (the default: HS256 with
    /// [`TEST_SECRET`]), e.g. an identity provider's JWKS URL only.
    pub fn auth(mut self, auth: getlood_auth::AuthConfig) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Points the started services at `url` for `service` instead of at the one started here,
    /// e.g. a `dns://` name whose addresses are several replicas (issue 17's balancing).
    pub fn service_url(mut self, service: Service, url: impl Into<String>) -> Self {
        self.service_urls.insert(service, url.into());
        self
    }

    /// How often the services probe their dependencies (default 100 ms, whose probe timeout of
    /// 100 ms a loaded machine can miss: a health-aware caller then skips the replica briefly).
    pub fn readiness_interval(mut self, interval: Duration) -> Self {
        self.readiness_interval = interval;
        self
    }

    /// Gives every service but the gateway the gateway's JWKS as `auth.jwks_url`, fetched every
    /// `refresh` (at least 10 s), as `getlood dev` and the chart do for built-in accounts: tokens
    /// the gateway signs then verify everywhere. HS256 test tokens stay accepted.
    pub fn gateway_jwks(mut self, refresh: Duration) -> Self {
        self.gateway_jwks = Some(refresh);
        self
    }

    /// How long a stopping service waits for in-flight requests.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Binds every service on `127.0.0.1:0`, then starts them.
    pub async fn start(self) -> anyhow::Result<Platform> {
        crate::init_test_logging();
        let owns_schemas = self.replica_of.is_none();
        let run_id =
            self.replica_of.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()[..10].to_owned());
        let mut bound = Vec::new();
        for service in &self.services {
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            bound.push((*service, Listeners::bind(loopback, loopback, loopback).await?));
        }
        let addrs: Vec<_> = bound.iter().map(|(s, l)| (*s, l.grpc_addr())).collect();
        let issuer_jwks_url = self.gateway_jwks.and_then(|_| {
            let (_, gateway) = bound.iter().find(|(s, _)| *s == Service::Gateway)?;
            // The gateway's `JWKS_PATH`.
            Some(format!("http://{}/.well-known/jwks.json", gateway.http_addr()))
        });
        let overrides = Overrides {
            load_environment: false,
            postgres_url: Some(self.postgres_url.clone()),
            // A private schema per service and test run: tests never see each other's rows.
            schema_suffix: Some(run_id.clone()),
            postgres_max_connections: Some(4),
            redis_url: Some(self.redis_url.clone()),
            redis_key_prefix: Some(self.redis_key_prefix.clone().unwrap_or_else(|| format!("getlood_test_{run_id}"))),
            mindsdb_url: Some(self.mindsdb_url.clone()),
            nats_url: Some(self.nats_url.clone()),
            hs256_secret: self.auth.is_none().then(|| TEST_SECRET.to_owned()),
            auth: self.auth.clone(),
            dev_secret_fallback: false,
            issuer_jwks_url,
            jwks_refresh: self.gateway_jwks,
            services: Some(self.urls(&addrs)),
            shutdown_timeout: Some(self.shutdown_timeout),
            readiness_interval: Some(self.readiness_interval),
            config_file: None,
            app_settings: self.app_settings.clone(),
            settings: self.settings.clone(),
        };
        let mut services = BTreeMap::new();
        for (service, listeners) in bound {
            let shutdown = CancellationToken::new();
            let started = getlood::start(service, &overrides, Some(listeners), shutdown.clone()).await?;
            services.insert(
                service,
                RunningService {
                    service,
                    http_addr: started.http_addr,
                    grpc_addr: started.grpc_addr,
                    admin_addr: started.admin_addr,
                    shutdown,
                    task: started.task,
                },
            );
        }
        Ok(Platform { services, run_id, postgres_url: self.postgres_url, owns_schemas })
    }
}

impl PlatformBuilder {
    /// The services' gRPC URLs: those started here, then the ones set with [`Self::service_url`].
    fn urls(&self, addrs: &[(Service, SocketAddr)]) -> getlood_server::ServiceUrls {
        let mut urls = getlood::service_urls(addrs);
        for (service, url) in &self.service_urls {
            let field = match service {
                Service::Gateway => &mut urls.gateway,
                Service::Pipeline => &mut urls.pipeline,
                Service::DesktopState => &mut urls.desktop_state,
                Service::Workflow => &mut urls.workflow,
                Service::AgentRegistry => &mut urls.agent_registry,
                Service::EventDispatcher => &mut urls.event_dispatcher,
            };
            field.clone_from(url);
        }
        urls
    }
}

impl Platform {
    /// A builder with no services yet.
    pub fn builder() -> PlatformBuilder {
        PlatformBuilder::default()
    }

    /// The running `service`; panics in a test that did not start it.
    pub fn get(&self, service: Service) -> &RunningService {
        match self.services.get(&service) {
            Some(s) => s,
            None => panic!("service {} was not started", service.name()),
        }
    }

    /// `http://<addr>` of `service`'s HTTP listener.
    pub fn http_url(&self, service: Service) -> String {
        format!("http://{}", self.get(service).http_addr)
    }

    /// The Postgres schema of a service of this platform (`<base>_<run id>`, e.g. `base` =
    /// `agent_registry`), for tests that put in place a row only MindsDB could otherwise make.
    pub fn schema(&self, base: &str) -> String {
        format!("{base}_{}", self.run_id)
    }

    /// `http://<addr>` of `service`'s admin listener (`/metrics`, the detailed `/readyz`).
    pub fn admin_url(&self, service: Service) -> String {
        format!("http://{}", self.get(service).admin_addr)
    }

    /// A lazily connecting channel to `service`'s gRPC listener.
    pub fn grpc_channel(&self, service: Service) -> Channel {
        let endpoint = format!("http://{}", self.get(service).grpc_addr);
        match Channel::from_shared(endpoint) {
            Ok(e) => e.connect_lazy(),
            Err(e) => panic!("bad endpoint: {e}"),
        }
    }

    /// An HS256 token every service of this platform accepts.
    pub fn token(&self, tenant: &str, user: &str, roles: &[&str]) -> String {
        match getlood_auth::dev_token(TEST_SECRET, "getlood", "getlood", tenant, user, roles, 3600) {
            Ok(t) => t,
            Err(e) => panic!("cannot sign a test token: {e}"),
        }
    }

    /// The gRPC health status of `service` (`""`, the whole server).
    pub async fn health(&self, service: Service) -> anyhow::Result<ServingStatus> {
        let mut client = HealthClient::new(self.grpc_channel(service));
        let resp = client.check(HealthCheckRequest { service: String::new() }).await?;
        Ok(resp.into_inner().status())
    }

    /// Waits until every service reports SERVING over gRPC health.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for service in self.services.keys() {
            loop {
                if matches!(self.health(*service).await, Ok(ServingStatus::Serving)) {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{} not ready within {timeout:?}", service.name());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// Signals `service` to stop (as SIGTERM would) and waits for it to exit.
    pub async fn stop_service(&mut self, service: Service) -> anyhow::Result<()> {
        let running = self.services.remove(&service).context("service not running")?;
        running.shutdown.cancel();
        running.task.await.context("service task panicked")??;
        Ok(())
    }

    /// Stops every service and drops the test run's Postgres schemas.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        for running in self.services.values() {
            running.shutdown.cancel();
        }
        let services = std::mem::take(&mut self.services);
        for (_, running) in services {
            running.task.await.context("service task panicked")??;
        }
        if self.owns_schemas { self.drop_schemas().await } else { Ok(()) }
    }

    async fn drop_schemas(&self) -> anyhow::Result<()> {
        let pool = sqlx::PgPool::connect(&self.postgres_url).await?;
        let suffix = format!("_{}", self.run_id);
        let schemas: Vec<(String,)> =
            sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE '%' || $1")
                .bind(&suffix)
                .fetch_all(&pool)
                .await?;
        for (schema,) in schemas {
            // Names come from pg_namespace and end in our run id; quoting keeps them literal.
            let ddl = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", schema.replace('"', "\"\""));
            sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&pool).await?;
        }
        // Services may create per-tenant roles (desktop-state's MindsDB view access); they carry
        // the run id too, and would otherwise pile up in the shared test database.
        let roles: Vec<(String,)> = sqlx::query_as("SELECT rolname::text FROM pg_roles WHERE rolname LIKE '%' || $1")
            .bind(&suffix)
            .fetch_all(&pool)
            .await?;
        for (role,) in roles {
            let quoted = role.replace('"', "\"\"");
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP OWNED BY \"{quoted}\" CASCADE"))).execute(&pool).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE IF EXISTS \"{quoted}\""))).execute(&pool).await?;
        }
        Ok(())
    }
}
