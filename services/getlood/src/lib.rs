//! Runs any of the six GETLOOD services inside the current process, like Loki's monolithic
//! mode: the `getlood dev` launcher and the test kit both start services through [`start`].
//! In Kubernetes each Deployment runs the same `getlood` binary with its service's name as
//! the argument ([`run_service`]).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use getlood_config::Validate;
use getlood_server::{Listeners, Runtime, ServiceConfig, ServiceUrls};
use secrecy::SecretString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `$body` with `$krate` naming the crate of `$service` and `$migrator` its migrations:
/// the one place that lists the six services' entry points.
macro_rules! with_service {
    ($service:expr, |$krate:ident, $migrator:ident| $body:expr) => {
        match $service {
            Service::Gateway => {
                use getlood_gateway as $krate;
                let $migrator = Some(&getlood_gateway::MIGRATOR);
                $body
            }
            Service::Pipeline => {
                use getlood_pipeline as $krate;
                let $migrator = Some(&getlood_pipeline::MIGRATOR);
                $body
            }
            Service::DesktopState => {
                use getlood_desktop_state as $krate;
                let $migrator = Some(&getlood_desktop_state::MIGRATOR);
                $body
            }
            Service::Workflow => {
                use getlood_workflow as $krate;
                let $migrator = Some(&getlood_workflow::MIGRATOR);
                $body
            }
            Service::AgentRegistry => {
                use getlood_agent_registry as $krate;
                let $migrator = Some(&getlood_agent_registry::MIGRATOR);
                $body
            }
            Service::EventDispatcher => {
                use getlood_event_dispatcher as $krate;
                let $migrator: Option<&'static sqlx::migrate::Migrator> = None;
                $body
            }
        }
    };
}

/// One of the six services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// The authenticated public edge.
    Gateway,
    /// The 5-stage chat pipeline.
    Pipeline,
    /// Desktops and windows.
    DesktopState,
    /// Workflows and runs.
    Workflow,
    /// Agents and skills.
    AgentRegistry,
    /// Event streams and memory.
    EventDispatcher,
}

impl Service {
    /// All six, in start order (the gateway's upstreams first).
    pub const ALL: [Service; 6] = [
        Service::AgentRegistry,
        Service::EventDispatcher,
        Service::DesktopState,
        Service::Workflow,
        Service::Pipeline,
        Service::Gateway,
    ];

    /// The service name, e.g. `desktop-state`.
    pub fn name(self) -> &'static str {
        with_service!(self, |krate, _migrator| krate::SPEC.name)
    }

    /// The service named `name`, e.g. `desktop-state`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Settings forced onto every started service, on top of its own configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Load `GETLOOD_<SERVICE>_*` and the config file first (dev mode), or start from the
    /// built-in defaults only (tests, which must not depend on the caller's environment).
    pub load_environment: bool,
    /// Optional TOML file, as `--config` of a service binary.
    pub config_file: Option<std::path::PathBuf>,
    /// Postgres URL.
    pub postgres_url: Option<String>,
    /// Appended to each service's schema name (`pipeline_<suffix>`).
    pub schema_suffix: Option<String>,
    /// Pool size per service.
    pub postgres_max_connections: Option<u32>,
    /// Redis URL.
    pub redis_url: Option<String>,
    /// Redis key prefix.
    pub redis_key_prefix: Option<String>,
    /// NATS URL.
    pub nats_url: Option<String>,
    /// MindsDB HTTP URL.
    pub mindsdb_url: Option<String>,
    /// HS256 secret.
    pub hs256_secret: Option<String>,
    /// The whole `auth` section, replacing the service's (applied before `hs256_secret`).
    pub auth: Option<getlood_auth::AuthConfig>,
    /// `getlood dev` only: a service given no verification key at all gets the development
    /// secret ([`getlood_auth::DEV_HS256_SECRET`]) instead of refusing to start.
    pub dev_secret_fallback: bool,
    /// The gateway's JWKS (`http://<gateway>/.well-known/jwks.json`), given as `auth.jwks_url`
    /// to every other service whose configuration names none, so they verify the tokens of the
    /// gateway's built-in accounts; applied after `dev_secret_fallback`, so the development
    /// secret stays accepted too.
    pub issuer_jwks_url: Option<String>,
    /// `auth.jwks_refresh` of the services given `issuer_jwks_url`.
    pub jwks_refresh: Option<Duration>,
    /// gRPC endpoints of the other services.
    pub services: Option<ServiceUrls>,
    /// Drain deadline.
    pub shutdown_timeout: Option<Duration>,
    /// Readiness probe period.
    pub readiness_interval: Option<Duration>,
    /// Service-specific `app` settings (JSON, merged key by key over the service's defaults).
    pub app_settings: std::collections::BTreeMap<Service, serde_json::Value>,
    /// Any of a service's settings (JSON merged at the root of its configuration, e.g.
    /// `{"mindsdb": {"max_concurrency_per_tenant": 1}}`), applied before `app_settings`.
    pub settings: std::collections::BTreeMap<Service, serde_json::Value>,
}

/// What `getlood dev` and the test kit let user-supplied URLs (an agent's model `base_url`)
/// name although the built-in egress policy refuses it: loopback, where the local model
/// (`http://127.0.0.1:18080/v1`) and the test doubles listen. Never a production default.
pub const DEV_EGRESS_ALLOW: &[&str] = &["127.0.0.0/8", "::1", "localhost"];

/// The browser origins `getlood dev` lets call the gateway cross-origin (CORS): the web app's
/// dev server (Vite's default port). Never a production default.
pub const DEV_CORS_ORIGINS: &[&str] = &["http://localhost:5173", "http://127.0.0.1:5173"];

/// Where `getlood dev` serves the web app from (relative to the working directory, the
/// repository root under `make dev`) when that directory exists and no `app.web_dir` is set.
pub const DEV_WEB_DIR: &str = "web/dist";

/// A service started in this process.
#[derive(Debug)]
pub struct Started {
    /// Which one.
    pub service: Service,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound admin address (`/metrics`, detailed `/readyz`).
    pub admin_addr: SocketAddr,
    /// Completes when the service has stopped.
    pub task: JoinHandle<getlood_server::Result<()>>,
}

/// Starts `service` on `listeners` (or on its configured addresses when `None`) until `shutdown`.
pub async fn start(
    service: Service,
    overrides: &Overrides,
    listeners: Option<Listeners>,
    shutdown: CancellationToken,
) -> getlood_server::Result<Started> {
    let (Bound { http_addr, grpc_addr, admin_addr }, task) = with_service!(service, |krate, migrator| {
        spawn(service, krate::SPEC, krate::default_config(), migrator, overrides, listeners, shutdown, krate::run)
            .await?
    });
    Ok(Started { service, http_addr, grpc_addr, admin_addr, task })
}

/// Runs `service` as its own process would (`getlood <service> [serve|migrate|print-config]`):
/// `args` are the service's arguments, the first being the program name.
pub async fn run_service(service: Service, args: Vec<std::ffi::OsString>) -> std::process::ExitCode {
    with_service!(service, |krate, migrator| {
        getlood_server::cli::main(krate::SPEC, krate::default_config(), migrator, krate::run, args).await
    })
}

/// Loads `service`'s configuration from `file` and the environment exactly as its binary would,
/// without starting it: used to prove that what Helm and compose set is accepted. With
/// `migrate`, only what `getlood <service> migrate` needs is checked.
pub fn check_config(service: Service, file: Option<&Path>, migrate: bool) -> Result<(), getlood_config::ConfigError> {
    with_service!(service, |krate, _migrator| {
        if migrate {
            let config: krate::Config = getlood_config::figment(service.name(), file, &krate::default_config())
                .extract()
                .map_err(getlood_config::ConfigError::from)?;
            config.validate_storage()
        } else {
            getlood_config::load(service.name(), file, &krate::default_config()).map(drop)
        }
    })
}

/// How the launcher sets a service's MindsDB URL, whether or not the service has a MindsDB
/// section.
trait MindsdbSection {
    fn set_url(&mut self, url: &str);
}

impl MindsdbSection for getlood_mindsdb::MindsdbConfig {
    fn set_url(&mut self, url: &str) {
        self.url = url.to_owned();
    }
}

impl MindsdbSection for getlood_server::NoMindsdb {
    fn set_url(&mut self, _url: &str) {}
}

// Every argument is a distinct part of one service's start; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn spawn<A, M, F, Fut>(
    service: Service,
    spec: getlood_server::ServiceSpec,
    defaults: ServiceConfig<A, M>,
    migrator: Option<&'static sqlx::migrate::Migrator>,
    overrides: &Overrides,
    listeners: Option<Listeners>,
    shutdown: CancellationToken,
    run: F,
) -> getlood_server::Result<(Bound, JoinHandle<getlood_server::Result<()>>)>
where
    A: Serialize + DeserializeOwned + Validate + Send + Sync + 'static,
    M: Serialize + DeserializeOwned + Validate + Default + MindsdbSection + Send + Sync + 'static,
    F: FnOnce(ServiceConfig<A, M>, Runtime, Listeners) -> Fut + Send + 'static,
    Fut: Future<Output = getlood_server::Result<()>> + Send + 'static,
{
    let mut config = if overrides.load_environment {
        // Validated below, once the overrides (the dev secret among them) are applied.
        getlood_config::figment(spec.name, overrides.config_file.as_deref().map(Path::new), &defaults)
            .extract()
            .map_err(getlood_config::ConfigError::from)?
    } else {
        defaults
    };
    apply(&mut config, overrides);
    if service != Service::Gateway
        && config.auth.jwks_url.is_none()
        && let Some(url) = &overrides.issuer_jwks_url
    {
        config.auth.jwks_url = Some(url.clone());
        if let Some(refresh) = overrides.jwks_refresh {
            config.auth.jwks_refresh = refresh;
        }
    }
    let root = overrides.settings.get(&service);
    let app = overrides.app_settings.get(&service);
    if root.is_some() || app.is_some() {
        // Merged over the service's own settings and checked by the same deserializer, so a
        // test cannot set a key the service does not know.
        let mut figment = figment::Figment::from(figment::providers::Serialized::defaults(&config));
        if let Some(root) = root {
            figment = figment.merge(figment::providers::Serialized::defaults(root));
        }
        if let Some(app) = app {
            figment = figment.merge(figment::providers::Serialized::default("app", app));
        }
        config = figment.extract().map_err(getlood_config::ConfigError::from)?;
    }
    config.validate()?;
    let listeners = match listeners {
        Some(l) => l,
        None => Listeners::bind(config.http_addr, config.grpc_addr, config.admin_addr).await?,
    };
    let bound = Bound {
        http_addr: listeners.http_addr(),
        grpc_addr: listeners.grpc_addr(),
        admin_addr: listeners.admin_addr(),
    };
    config.http_addr = bound.http_addr;
    config.grpc_addr = bound.grpc_addr;
    config.admin_addr = bound.admin_addr;
    // Each in-process service is one task of the launcher, which waits on its handle; its own
    // background tasks run on its runtime's tracker.
    #[allow(clippy::disallowed_methods)]
    let task = tokio::spawn(getlood_server::run_service(spec, config, migrator, listeners, shutdown, run));
    Ok((bound, task))
}

/// The addresses a service was bound to.
struct Bound {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
}

fn apply<A, M: MindsdbSection>(config: &mut ServiceConfig<A, M>, o: &Overrides) {
    if let Some(v) = &o.postgres_url {
        config.postgres.url.clone_from(v);
    }
    if let Some(suffix) = &o.schema_suffix {
        config.postgres.schema = format!("{}_{suffix}", config.postgres.schema);
    }
    if let Some(v) = o.postgres_max_connections {
        config.postgres.max_connections = v;
    }
    if let Some(v) = &o.redis_url {
        config.redis.url.clone_from(v);
    }
    if let Some(v) = &o.redis_key_prefix {
        config.redis.key_prefix.clone_from(v);
    }
    if let Some(v) = &o.nats_url {
        config.nats.url.clone_from(v);
    }
    if let Some(v) = &o.mindsdb_url {
        config.mindsdb.set_url(v);
    }
    if let Some(v) = &o.auth {
        config.auth = v.clone();
    }
    if let Some(v) = &o.hs256_secret {
        config.auth.hs256_secret = Some(SecretString::from(v.as_str()));
    }
    if o.dev_secret_fallback && !config.auth.has_key() {
        config.auth.hs256_secret = Some(SecretString::from(getlood_auth::DEV_HS256_SECRET));
    }
    if let Some(v) = &o.services {
        config.services = v.clone();
    }
    if let Some(v) = o.shutdown_timeout {
        config.shutdown_timeout = v;
    }
    if let Some(v) = o.readiness_interval {
        config.readiness_interval = v;
    }
}

/// The gRPC endpoints of services bound at `addrs`, for [`Overrides::services`].
pub fn service_urls(addrs: &[(Service, SocketAddr)]) -> ServiceUrls {
    let mut urls = ServiceUrls::default();
    for (service, addr) in addrs {
        let url = format!("http://{addr}");
        match service {
            Service::Gateway => urls.gateway = url,
            Service::Pipeline => urls.pipeline = url,
            Service::DesktopState => urls.desktop_state = url,
            Service::Workflow => urls.workflow = url,
            Service::AgentRegistry => urls.agent_registry = url,
            Service::EventDispatcher => urls.event_dispatcher = url,
        }
    }
    urls
}
