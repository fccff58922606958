use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::OnceCell;

use crate::{Error, NatsConfig, RedisConfig, Result, ServiceConfig};

/// Which shared dependencies a service uses; only these are connected and probed for readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Its own Postgres schema.
    pub postgres: bool,
    /// Redis.
    pub redis: bool,
    /// NATS JetStream.
    pub nats: bool,
}

/// The service's connections to Postgres, Redis and NATS, created without waiting for the
/// servers: each reconnects on its own, and readiness reports what answers.
#[derive(Clone)]
pub struct Infra {
    /// Pool whose connections use the service's schema as `search_path`.
    pub postgres: Option<PgPool>,
    /// Redis connection manager, created on first use.
    pub redis: Option<RedisHandle>,
    /// NATS client (reconnects forever).
    pub nats: Option<async_nats::Client>,
}

impl std::fmt::Debug for Infra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Infra")
            .field("postgres", &self.postgres.is_some())
            .field("redis", &self.redis.is_some())
            .field("nats", &self.nats.is_some())
            .finish()
    }
}

impl Infra {
    /// Creates the clients `needs` asks for. Only a malformed URL fails here.
    pub async fn connect<A, M>(needs: Needs, config: &ServiceConfig<A, M>, name: &str) -> Result<Self> {
        let postgres = if needs.postgres {
            let options = PgConnectOptions::from_str(&config.postgres.url)
                .map_err(|e| Error::Url { what: "postgres", message: e.to_string() })?
                .application_name(name)
                .options([("search_path", config.postgres.schema.as_str())]);
            Some(
                PgPoolOptions::new()
                    .max_connections(config.postgres.max_connections)
                    .acquire_timeout(Duration::from_secs(3))
                    .connect_lazy_with(options),
            )
        } else {
            None
        };
        // async-nats and redis build their rustls configs with the process-wide provider.
        getlood_tls::install_crypto_provider();
        let redis = if needs.redis { Some(RedisHandle::new(&config.redis)?) } else { None };
        let nats = if needs.nats {
            let client = nats_options(&config.nats, name)?
                // Start even when NATS is down; the client keeps trying and readiness says so.
                .retry_on_initial_connect()
                // A cluster's servers, comma-separated: the client takes them in turn (and
                // learns the others from the servers it reaches). Given as one string, async-nats
                // would parse the whole list as one URL and refuse it.
                .connect(nats_servers(&config.nats.url))
                .await
                .map_err(|e| Error::Url { what: "nats", message: e.to_string() })?;
            Some(client)
        } else {
            None
        };
        Ok(Self { postgres, redis, nats })
    }

    /// Connects what `spec` needs and, unless a release job does it, applies the migrations.
    pub async fn start<A, M>(
        spec: crate::ServiceSpec,
        config: &ServiceConfig<A, M>,
        migrator: Option<&sqlx::migrate::Migrator>,
    ) -> Result<Self> {
        let infra = Self::connect(spec.needs, config, spec.name).await?;
        if spec.needs.postgres && config.postgres.run_migrations {
            infra.migrate(&config.postgres.schema, migrator).await?;
        }
        Ok(infra)
    }

    /// Creates the service's schema and applies its migrations, if it has any. Replicas that
    /// start together serialize on an advisory lock keyed by the schema (held on one connection
    /// while the pool does the work): `CREATE SCHEMA IF NOT
    /// EXISTS` alone races (both see it missing, one fails on the catalog's unique index).
    pub async fn migrate(&self, schema: &str, migrator: Option<&sqlx::migrate::Migrator>) -> Result<()> {
        let Some(pool) = &self.postgres else { return Ok(()) };
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))").bind(schema).execute(&mut *conn).await?;
        let result = Self::create_and_migrate(pool, schema, migrator).await;
        // Unlock even after a failure; the connection goes back to the pool either way.
        sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(schema).execute(&mut *conn).await?;
        result
    }
}

impl Infra {
    async fn create_and_migrate(pool: &PgPool, schema: &str, migrator: Option<&sqlx::migrate::Migrator>) -> Result<()> {
        // The schema name was validated against [a-z][a-z0-9_]* at config load.
        let ddl = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
        sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(pool).await?;
        if let Some(migrator) = migrator {
            migrator.run(pool).await?;
        }
        Ok(())
    }
}

/// The servers of a `nats.url`: one URL, or a cluster's URLs comma-separated.
pub fn nats_servers(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect()
}

/// The NATS connection options of a service named `name`, TLS included: `tls://` URLs or
/// `require_tls` refuse plaintext, and `ca_file` replaces the system roots. The caller adds
/// its retry policy and connects.
pub fn nats_options(config: &NatsConfig, name: &str) -> Result<async_nats::ConnectOptions> {
    getlood_tls::install_crypto_provider();
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(2))
        .require_tls(config.require_tls);
    if let Some(path) = &config.ca_file {
        // Read now so a bad file fails the start, not every reconnect; async-nats reads it again.
        getlood_tls::CaFile::read(path)?;
        options = options.add_root_certificates(path.clone());
    }
    Ok(options)
}

/// A Redis connection manager created on first successful use, then shared (it multiplexes one
/// connection and reconnects by itself).
#[derive(Clone)]
pub struct RedisHandle {
    client: redis::Client,
    manager: Arc<OnceCell<redis::aio::ConnectionManager>>,
}

impl RedisHandle {
    /// A handle on the Redis of `config`: `rediss://` is TLS, trusting only `ca_file`'s CAs when
    /// it is set. Only a malformed URL or an unreadable CA file fails here; nothing connects yet.
    pub fn new(config: &RedisConfig) -> Result<Self> {
        getlood_tls::install_crypto_provider();
        let url = config.url.as_str();
        let client = match &config.ca_file {
            Some(path) => {
                let ca = getlood_tls::CaFile::read(path)?;
                redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(ca.pem) })
            }
            None => redis::Client::open(url),
        }
        .map_err(|e| Error::Url { what: "redis", message: e.to_string() })?;
        Ok(Self { client, manager: Arc::new(OnceCell::new()) })
    }

    /// The shared connection, connecting if this is the first use.
    pub async fn connection(&self) -> redis::RedisResult<redis::aio::ConnectionManager> {
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_number_of_retries(2);
                redis::aio::ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(manager.clone())
    }
}
