//! GETLOOD desktop-state: each user's desktops, their windows (app, title, geometry, z-order,
//! state) and focus stacks, persisted in this service's Postgres schema. Every change commits
//! with its `window.*` / `desktop.*` event in a transactional outbox (entity id = desktop id),
//! relayed to JetStream for the clients of that desktop.
//!
//! Moves from dragging are coalesced ([`coalescer`]) and flushed on shutdown; each tenant's
//! windows are readable by that tenant's MindsDB agents through the Database adapter
//! ([`tables`]), and so are the databases a tenant registers as data sources
//! ([`data_sources`]: `ds_<name>` in MindsDB).

pub mod coalescer;
pub mod data_sources;
pub mod error;
mod model;
mod service;
mod store;
pub mod tables;

use std::time::Duration;

use getlood_common::egress::{EgressConfig, EgressPolicy};
use getlood_config::{ConfigError, Validate};
use getlood_mindsdb::{MindsdbClient, MindsdbConfig};
use getlood_proto::desktop_state::v1::desktop_state_service_server::DesktopStateServiceServer;
use getlood_server::{Error, Listeners, Needs, Runtime, ServiceConfig, ServiceSpec};
use serde::{Deserialize, Serialize};

pub use error::{Error as DesktopError, Result};
pub use tables::AgentTablesSettings;

/// The permission each `DesktopStateService` method needs (`getlood_auth::allows`), so a direct call inside
/// the cluster is held to the same rule as the gateway's routes; a method missing here is
/// refused to everyone.
pub const GRPC_PERMISSIONS: getlood_server::MethodPermissions = getlood_auth::methods::DESKTOP_STATE;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "desktop-state",
    needs: Needs { postgres: true, redis: false, nats: true },
    // A window write commits its events to the outbox in the same transaction; the relay
    // publishes them when NATS is back. Only Postgres is needed to serve.
    ready_without: Needs { postgres: false, redis: false, nats: true },
};

/// The service's Postgres migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// desktop-state settings (`GETLOOD_DESKTOP_STATE_APP__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DesktopSettings {
    /// How often coalesced moves are written. With the write itself it must stay under the
    /// 500 ms the API promises, hence the 400 ms ceiling.
    #[serde(with = "humantime_serde")]
    pub coalesce_interval: Duration,
    /// How often the outbox relay looks for unpublished events without being woken.
    #[serde(with = "humantime_serde")]
    pub outbox_poll: Duration,
    /// Windows one desktop may hold.
    pub max_windows_per_desktop: u32,
    /// Whether coalesced drag writes wait for Postgres to flush them to disk. Off by default:
    /// drag positions are high-rate and already acknowledged, and the flush wait (about 4 ms
    /// here) is a large part of a move's trip to the other clients. A Postgres crash can then
    /// lose the positions of its last few hundred milliseconds, each with its event (never one
    /// without the other); a desktop-state restart or SIGTERM loses nothing either way.
    pub durable_coalesced_writes: bool,
    /// The tenants' windows as MindsDB tables.
    pub agent_tables: AgentTablesSettings,
    /// The tenants' registered databases.
    pub data_sources: data_sources::DataSourceSettings,
    /// Hosts a data source may name although the built-in egress policy refuses them
    /// (loopback, private, link-local): `app.egress.allow`, empty by default. `getlood dev` and
    /// the test kit allow loopback.
    pub egress: EgressConfig,
}

impl Default for DesktopSettings {
    fn default() -> Self {
        Self {
            coalesce_interval: Duration::from_millis(100),
            outbox_poll: Duration::from_secs(1),
            max_windows_per_desktop: 200,
            durable_coalesced_writes: false,
            agent_tables: AgentTablesSettings::default(),
            data_sources: data_sources::DataSourceSettings::default(),
            egress: EgressConfig::default(),
        }
    }
}

impl Validate for DesktopSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.coalesce_interval.is_zero() || self.coalesce_interval > Duration::from_millis(400) {
            return Err(ConfigError::invalid("app.coalesce_interval", "must be between 1ms and 400ms"));
        }
        if self.outbox_poll.is_zero() {
            return Err(ConfigError::invalid("app.outbox_poll", "must be greater than zero"));
        }
        if self.max_windows_per_desktop == 0 {
            return Err(ConfigError::invalid("app.max_windows_per_desktop", "must be at least 1"));
        }
        if self.data_sources.max_per_tenant == 0 {
            return Err(ConfigError::invalid("app.data_sources.max_per_tenant", "must be at least 1"));
        }
        EgressPolicy::new(&self.egress).map_err(|e| ConfigError::invalid("app.egress.allow", e.to_string()))?;
        if getlood_mindsdb::Ident::new(&self.agent_tables.integration).is_err() {
            return Err(ConfigError::invalid("app.agent_tables.integration", "must match [a-z_][a-z0-9_]{0,62}"));
        }
        Ok(())
    }
}

/// The service's configuration.
pub type Config = ServiceConfig<DesktopSettings, MindsdbConfig>;

/// Defaults: HTTP on :8082, gRPC on :9092, Postgres schema `desktop_state`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8082, 9092, "desktop_state")
}

/// Runs the service on `listeners` until the runtime's shutdown. On shutdown the coalesced
/// moves are written before this returns.
pub async fn run(config: Config, runtime: Runtime, listeners: Listeners) -> getlood_server::Result<()> {
    let pool = runtime.postgres()?;
    let outbox = runtime.outbox(config.app.outbox_poll)?;
    let coalescer = coalescer::Coalescer::new(pool.clone(), outbox.clone(), config.app.durable_coalesced_writes);
    coalescer.spawn(config.app.coalesce_interval, runtime.bus()?, runtime.tracker(), runtime.shutdown());

    let mindsdb = MindsdbClient::new(&config.mindsdb).map_err(|e| Error::Serve(format!("mindsdb client: {e}")))?;
    let egress = EgressPolicy::new(&config.app.egress).map_err(|e| Error::Serve(format!("app.egress.allow: {e}")))?;
    let data_sources = data_sources::DataSources::new(mindsdb.clone(), egress, &config.app.data_sources);
    let tables = tables::AgentTables::new(
        &config.app.agent_tables,
        &config.postgres.url,
        &config.postgres.schema,
        pool.clone(),
        mindsdb,
        runtime.tracker().clone(),
        runtime.shutdown(),
    )
    .map_err(|e| Error::Serve(format!("agent tables: {e}")))?;
    if let Some(tables) = &tables {
        tables.resume_in_background();
    }

    let desktops = service::Desktops {
        pool,
        outbox,
        coalescer,
        tables,
        max_windows: i64::from(config.app.max_windows_per_desktop),
        data_sources,
    };
    let grpc =
        tonic::service::Routes::new(runtime.authorize(GRPC_PERMISSIONS, DesktopStateServiceServer::new(desktops)));
    runtime.serve(listeners, grpc, axum::Router::new()).await
}
