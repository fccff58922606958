use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use getlood_auth::AuthConfig;
use getlood_config::{ConfigError, Validate};
use getlood_telemetry::LogFormat;
use serde::{Deserialize, Serialize};

/// Settings every service shares, plus the service's own settings `A` under the `app` key and,
/// for the services that own a MindsDB adapter, its connection `M` under `mindsdb` (the others
/// use [`NoMindsdb`], which refuses any `mindsdb.*` key).
///
/// Env: `GETLOOD_<SERVICE>_HTTP_ADDR`, `GETLOOD_<SERVICE>_POSTGRES__URL`,
/// `GETLOOD_<SERVICE>_MINDSDB__URL`, `GETLOOD_<SERVICE>_APP__<KEY>`, and so on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig<A, M = NoMindsdb> {
    /// Public HTTP listener: `/livez`, a bare `/readyz` (status only), and the service's HTTP
    /// API if any. This is the port an Ingress or another service may reach.
    pub http_addr: SocketAddr,
    /// Admin HTTP listener, never routed by the Ingress: `/metrics`, `/readyz` with each
    /// dependency's check (raw infrastructure errors included) and `/livez`. Default: the HTTP
    /// port plus 1000 (gateway 9080 … event-dispatcher 9085).
    pub admin_addr: SocketAddr,
    /// gRPC listener: the service API, `grpc.health.v1` and reflection.
    pub grpc_addr: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM. Keep it below the pod's
    /// `terminationGracePeriodSeconds`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Per-request deadline on the gRPC server (time to the response headers).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often dependencies are probed for readiness.
    #[serde(with = "humantime_serde")]
    pub readiness_interval: Duration,
    /// `pretty` for terminals, `json` for Kubernetes.
    pub log_format: LogFormat,
    /// The service's Postgres schema and connection (ignored by services without one).
    pub postgres: PostgresConfig,
    /// Redis connection (ignored by services without one).
    pub redis: RedisConfig,
    /// NATS connection.
    pub nats: NatsConfig,
    /// MindsDB connection of the services that own a MindsDB adapter.
    #[serde(default)]
    pub mindsdb: M,
    /// Token verification.
    pub auth: AuthConfig,
    /// Where the other services' gRPC endpoints are.
    pub services: ServiceUrls,
    /// The service's own settings.
    pub app: A,
}

/// Postgres settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// Connection URL.
    pub url: String,
    /// Schema owned by this service; its tables and migration history live there.
    pub schema: String,
    /// Pool size.
    pub max_connections: u32,
    /// Run migrations at start (Helm runs them once per release in a hook Job instead).
    pub run_migrations: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/test".to_owned(),
            schema: String::new(),
            max_connections: 10,
            run_migrations: true,
        }
    }
}

/// Redis settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// Connection URL; `rediss://` for TLS (the server's certificate and hostname are verified).
    pub url: String,
    /// Prefix of every key, so several deployments can share one Redis.
    pub key_prefix: String,
    /// PEM bundle of the CAs that sign the Redis server's certificate (`rediss://` only).
    /// Unset: the system roots. Set: only these CAs are trusted.
    pub ca_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self { url: "redis://127.0.0.1:6379".to_owned(), key_prefix: "getlood".to_owned(), ca_file: None }
    }
}

/// NATS settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL (comma-separated for a cluster); `tls://` requires TLS to that server.
    pub url: String,
    /// Prefix of every subject and stream name.
    pub subject_prefix: String,
    /// Refuse a plaintext connection to any server, whatever its URL's scheme.
    pub require_tls: bool,
    /// PEM bundle of the CAs that sign the NATS servers' certificates; needs TLS to be
    /// required (`tls://` URLs or `require_tls`). Unset: the system roots. Set: only these CAs.
    pub ca_file: Option<PathBuf>,
    /// Replicas of the JetStream streams this service creates (the event streams, the workflow
    /// work queue): 1 for a single server, 3 on a NATS cluster so a stopped node loses no
    /// acknowledged event. Applies when a stream is created; an existing stream keeps its own.
    pub stream_replicas: usize,
}

/// Most replicas a JetStream stream may have (the server's own limit).
pub const MAX_STREAM_REPLICAS: usize = 5;

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            subject_prefix: "getlood".to_owned(),
            require_tls: false,
            ca_file: None,
            stream_replicas: 1,
        }
    }
}

impl NatsConfig {
    /// Whether every connection is TLS: `require_tls`, or only `tls://`/`wss://` URLs.
    pub fn tls_required(&self) -> bool {
        self.require_tls
            || self.url.split(',').all(|url| {
                let url = url.trim();
                url.starts_with("tls://") || url.starts_with("wss://")
            })
    }
}

/// gRPC endpoints of the services: `http://host:port` (one connection, e.g. a ClusterIP
/// Service), or `dns://host:port[?refresh=5s]` to balance every call over each address the name
/// resolves to (a headless Service; see [`crate::balance`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceUrls {
    /// gateway gRPC.
    pub gateway: String,
    /// pipeline gRPC.
    pub pipeline: String,
    /// desktop-state gRPC.
    pub desktop_state: String,
    /// workflow gRPC.
    pub workflow: String,
    /// agent-registry gRPC.
    pub agent_registry: String,
    /// event-dispatcher gRPC.
    pub event_dispatcher: String,
}

impl Default for ServiceUrls {
    fn default() -> Self {
        Self {
            gateway: "http://127.0.0.1:9090".to_owned(),
            pipeline: "http://127.0.0.1:9091".to_owned(),
            desktop_state: "http://127.0.0.1:9092".to_owned(),
            workflow: "http://127.0.0.1:9093".to_owned(),
            agent_registry: "http://127.0.0.1:9094".to_owned(),
            event_dispatcher: "http://127.0.0.1:9095".to_owned(),
        }
    }
}

impl<A: Default, M: Default> ServiceConfig<A, M> {
    /// The defaults of a service listening on `http_port` and `grpc_port` (and for admin on
    /// `http_port + 1000`, or 0 when `http_port` is 0), with its Postgres schema named `schema`.
    pub fn with_ports(http_port: u16, grpc_port: u16, schema: &str) -> Self {
        Self {
            http_addr: SocketAddr::from(([0, 0, 0, 0], http_port)),
            admin_addr: SocketAddr::from(([0, 0, 0, 0], admin_port(http_port))),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], grpc_port)),
            shutdown_timeout: Duration::from_secs(25),
            request_timeout: Duration::from_secs(60),
            readiness_interval: Duration::from_secs(2),
            log_format: LogFormat::Pretty,
            postgres: PostgresConfig { schema: schema.to_owned(), ..PostgresConfig::default() },
            redis: RedisConfig::default(),
            nats: NatsConfig::default(),
            mindsdb: M::default(),
            auth: AuthConfig::default(),
            services: ServiceUrls::default(),
            app: A::default(),
        }
    }
}

impl<A, M> ServiceConfig<A, M> {
    /// Checks only what `migrate` uses: the Postgres settings.
    pub fn validate_storage(&self) -> Result<(), ConfigError> {
        check_url("postgres.url", &self.postgres.url, &["postgres", "postgresql"])?;
        check_postgres_tls(&self.postgres.url)?;
        if !is_identifier(&self.postgres.schema) {
            return Err(ConfigError::invalid("postgres.schema", "must match [a-z][a-z0-9_]{0,62}"));
        }
        if self.postgres.max_connections == 0 {
            return Err(ConfigError::invalid("postgres.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

impl<A: Validate, M: Validate> Validate for ServiceConfig<A, M> {
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_storage()?;
        check_url("redis.url", &self.redis.url, &["redis", "rediss"])?;
        if let Some(path) = &self.redis.ca_file {
            if !self.redis.url.starts_with("rediss://") {
                return Err(ConfigError::invalid("redis.ca_file", "is set but redis.url is not a rediss:// url"));
            }
            getlood_tls::check_ca_file("redis.ca_file", path)?;
        }
        for (i, url) in self.nats.url.split(',').enumerate() {
            check_url(&format!("nats.url[{i}]"), url.trim(), &["nats", "tls", "ws", "wss"])?;
        }
        if let Some(path) = &self.nats.ca_file {
            if !self.nats.tls_required() {
                return Err(ConfigError::invalid(
                    "nats.ca_file",
                    "is set but TLS is not required: use tls:// urls in nats.url or set nats.require_tls",
                ));
            }
            getlood_tls::check_ca_file("nats.ca_file", path)?;
        }
        if !is_subject_token(&self.nats.subject_prefix) {
            return Err(ConfigError::invalid("nats.subject_prefix", "must match [a-zA-Z0-9_-]+"));
        }
        if !(1..=MAX_STREAM_REPLICAS).contains(&self.nats.stream_replicas) {
            return Err(ConfigError::invalid(
                "nats.stream_replicas",
                format!("must be from 1 to {MAX_STREAM_REPLICAS} (JetStream's limit)"),
            ));
        }
        check_distinct_ports(self.http_addr, self.grpc_addr, self.admin_addr)?;
        getlood_config::require_positive([
            ("shutdown_timeout", self.shutdown_timeout),
            ("request_timeout", self.request_timeout),
            ("readiness_interval", self.readiness_interval),
        ])?;
        let urls = &self.services;
        for (key, url) in [
            ("services.gateway", &urls.gateway),
            ("services.pipeline", &urls.pipeline),
            ("services.desktop_state", &urls.desktop_state),
            ("services.workflow", &urls.workflow),
            ("services.agent_registry", &urls.agent_registry),
            ("services.event_dispatcher", &urls.event_dispatcher),
        ] {
            crate::balance::Target::parse(url).map_err(|e| ConfigError::invalid(key, format!("'{url}': {e}")))?;
        }
        self.auth.validate("auth")?;
        self.mindsdb.validate()?;
        self.app.validate()
    }
}

/// The `mindsdb` section of a service without a MindsDB adapter: empty, and any key in it is
/// refused at start, so a setting meant for another service is not silently ignored.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoMindsdb {}

impl Validate for NoMindsdb {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The `app` settings of a service that has none of its own yet: any `APP__*` key is refused.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl Validate for NoSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// The default admin port of a service whose public HTTP port is `http_port`.
fn admin_port(http_port: u16) -> u16 {
    if http_port == 0 { 0 } else { http_port.saturating_add(1000) }
}

/// Refuses two listeners on one port: the admin port must stay apart from the public one for the
/// Ingress and the NetworkPolicy to keep it private. Port 0 (any free port) never clashes.
fn check_distinct_ports(http: SocketAddr, grpc: SocketAddr, admin: SocketAddr) -> Result<(), ConfigError> {
    let clash = |a: SocketAddr, b: SocketAddr| a.port() != 0 && a.port() == b.port();
    if clash(admin, http) || clash(admin, grpc) {
        return Err(ConfigError::invalid(
            "admin_addr",
            format!("port {} is already the http or grpc port", admin.port()),
        ));
    }
    if clash(http, grpc) {
        return Err(ConfigError::invalid("grpc_addr", format!("port {} is already the http port", grpc.port())));
    }
    Ok(())
}

fn check_url(key: &str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    match scheme {
        Some(s) if schemes.contains(&s) => Ok(()),
        _ => Err(ConfigError::invalid(key, format!("'{url}' is not a {} url", schemes.join("/")))),
    }
}

/// Parses the Postgres URL as the pool will (so a bad `sslmode` is named at start), and checks
/// the `sslrootcert` file it names, if any: sqlx reads it only on the first connection.
fn check_postgres_tls(url: &str) -> Result<(), ConfigError> {
    sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| ConfigError::invalid("postgres.url", e.to_string()))?;
    let parsed = reqwest::Url::parse(url).map_err(|e| ConfigError::invalid("postgres.url", e.to_string()))?;
    for (name, value) in parsed.query_pairs() {
        if matches!(name.as_ref(), "sslrootcert" | "ssl-root-cert" | "ssl-ca") {
            getlood_tls::check_ca_file(&format!("postgres.url ({name})"), std::path::Path::new(value.as_ref()))?;
        }
    }
    Ok(())
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && s.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_subject_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct App {
        limit: u32,
    }

    impl Validate for App {
        fn validate(&self) -> Result<(), ConfigError> {
            Ok(())
        }
    }

    #[test]
    fn defaults_have_no_key_and_refuse_to_start_naming_the_settings() {
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("auth.jwks_url") && err.contains("auth.hs256_secret"), "{err}");
        c.auth.jwks_url = Some("https://idp.example/jwks.json".to_owned());
        c.validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
        c.auth.jwks_url = Some("https://idp.example/jwks.json".to_owned());
        c.postgres.url = "mysql://x".into();
        assert!(c.validate().unwrap_err().to_string().contains("postgres.url"));
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "Gate-way");
        c.postgres.schema = "Gate-way".into();
        assert!(c.validate().unwrap_err().to_string().contains("postgres.schema"));
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
        c.shutdown_timeout = Duration::ZERO;
        assert!(c.validate().unwrap_err().to_string().contains("shutdown_timeout"));
    }

    #[test]
    fn upstream_urls_may_be_dns_names_and_are_checked_at_start() {
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
        c.auth.jwks_url = Some("https://idp.example/jwks.json".to_owned());
        c.services.agent_registry = "dns://agent-registry-headless.getlood.svc:9094?refresh=2s".into();
        c.validate().unwrap();
        c.services.agent_registry = "dns://agent-registry-headless:9094?refresh=forever".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("services.agent_registry") && e.contains("refresh 'forever'"), "{e}");
        c.services.agent_registry = "grpc://agent-registry:9094".into();
        assert!(c.validate().unwrap_err().to_string().contains("scheme 'grpc'"));
    }

    #[test]
    fn stream_replicas_are_within_jetstream_limits() {
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
        c.auth.jwks_url = Some("https://idp.example/jwks.json".to_owned());
        assert_eq!(c.nats.stream_replicas, 1);
        c.nats.stream_replicas = 3;
        c.validate().unwrap();
        for bad in [0, 6] {
            c.nats.stream_replicas = bad;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("nats.stream_replicas") && e.contains("from 1 to 5"), "{e}");
        }
    }

    #[test]
    fn admin_port_defaults_beside_http_and_must_differ() {
        let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
        assert_eq!(c.admin_addr.port(), 9080);
        assert_eq!(ServiceConfig::<App>::with_ports(0, 0, "gateway").admin_addr.port(), 0);
        c.auth.jwks_url = Some("https://idp.example/jwks.json".to_owned());
        c.admin_addr = SocketAddr::from(([0, 0, 0, 0], 8080));
        assert!(c.validate().unwrap_err().to_string().contains("admin_addr"));
    }

    #[test]
    fn tls_settings_are_checked_at_start() {
        let valid = || {
            let mut c = ServiceConfig::<App>::with_ports(8080, 9090, "gateway");
            c.auth.jwks_url = Some("https://idp.example/jwks.json".to_owned());
            c
        };
        let err = |c: ServiceConfig<App>| c.validate().unwrap_err().to_string();

        let mut c = valid();
        c.postgres.url = "postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/root.pem".into();
        let e = err(c);
        assert!(e.contains("sslrootcert") && e.contains("/nonexistent/root.pem"), "{e}");
        let mut c = valid();
        c.postgres.url = "postgres://db/x?sslmode=sometimes".into();
        assert!(err(c).contains("postgres.url"));

        let mut c = valid();
        c.redis.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(c).contains("not a rediss:// url"));
        let mut c = valid();
        c.redis.url = "rediss://cache:6380".into();
        c.redis.ca_file = Some("/nonexistent/ca.pem".into());
        let e = err(c);
        assert!(e.contains("redis.ca_file") && e.contains("cannot read CA file"), "{e}");

        let mut c = valid();
        c.nats.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(c).contains("TLS is not required"));
        let mut c = valid();
        c.nats.url = "tls://nats:4222".into();
        c.nats.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(err(c).contains("nats.ca_file"));
        let mut c = valid();
        c.nats.require_tls = true;
        assert!(c.nats.tls_required());
        c.validate().unwrap();
    }
}
