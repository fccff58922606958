//! GETLOOD workflow: visual workflow definitions (React Flow graphs, immutable versions) and
//! their durable runs.
//!
//! Runs execute node by node in this service (state in Postgres, work handed out through a
//! JetStream work queue, retries, timeouts, cancellation, human approvals, crash recovery),
//! publishing `run.*` and `node.*` events through the transactional outbox; or, on request and
//! for scheduled jobs, compile to a MindsDB JOB whose progress comes from `log.jobs_history`.

mod agents;
mod backlog;
mod convert;
mod engine;
mod error;
mod grpc;
mod jobmode;
mod model;
mod nodes;
mod queue;
mod relay;
mod remote;
mod scheduler;
mod sqlnode;
mod state;
mod store;

use std::sync::Arc;
use std::time::Duration;

use getlood_common::egress::{EgressConfig, EgressPolicy};
use getlood_config::{ConfigError, Validate};
use getlood_mindsdb::{JobAdapter, MindsdbClient, MindsdbConfig, ProjectAdapter};
use getlood_proto::workflow::v1::workflow_service_server::WorkflowServiceServer;
use getlood_server::{Error, Listeners, Needs, Runtime, ServiceConfig, ServiceSpec};
use serde::{Deserialize, Serialize};

pub use error::ERROR_DETAIL_KEY;

/// The permission each `WorkflowService` method needs (`getlood_auth::allows`), so a direct call inside
/// the cluster is held to the same rule as the gateway's routes; a method missing here is
/// refused to everyone.
pub const GRPC_PERMISSIONS: getlood_server::MethodPermissions = getlood_auth::methods::WORKFLOW;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "workflow",
    needs: Needs { postgres: true, redis: false, nats: true },
    ready_without: Needs { postgres: false, redis: false, nats: false },
};

/// The service's Postgres migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// workflow settings (`GETLOOD_WORKFLOW_APP__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowSettings {
    /// How long a worker's claim on a running node holds without renewal; also the work
    /// queue's ack wait. After a crash, the node is taken over once it runs out.
    #[serde(with = "humantime_serde")]
    pub node_lease: Duration,
    /// Run timeout when ExecuteWorkflow gives none.
    #[serde(with = "humantime_serde")]
    pub run_timeout: Duration,
    /// Period of the sweeper (lost work, run deadlines, MindsDB job follow-up).
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Period of the engine-mode scheduler.
    #[serde(with = "humantime_serde")]
    pub scheduler_interval: Duration,
    /// Nodes one replica executes at the same time.
    pub worker_concurrency: usize,
    /// How often the outbox relay looks for unpublished events without being woken.
    #[serde(with = "humantime_serde")]
    pub outbox_poll: Duration,
    /// Events this replica committed and JetStream has not acknowledged yet, above which new
    /// ExecuteWorkflow calls wait (up to `relay_backlog_max_wait`): a saturated engine answers
    /// later instead of delivering node events later. 0 disables the wait.
    pub relay_backlog_limit: u64,
    /// Longest an ExecuteWorkflow call waits for the relay's backlog to drain.
    #[serde(with = "humantime_serde")]
    pub relay_backlog_max_wait: Duration,
    /// Whether the user who started a run may decide its human_approval nodes. Off by default:
    /// an approval is a second pair of eyes (the approver also needs `runs.approve`).
    pub approval_self_allowed: bool,
    /// Nodes a saved graph may have (a 400 names the limit). Validation is linear in the
    /// graph's size; the limit keeps one request's work and a run's state rows bounded.
    pub max_graph_nodes: usize,
    /// Edges a saved graph may have.
    pub max_graph_edges: usize,
    /// What `sql` nodes may read.
    pub sql: SqlSettings,
    /// Delay nodes hold no worker while they wait. One that must wait longer than this also
    /// gives its work message back (which would hold a JetStream ack-pending slot for the
    /// whole wait) and is woken by the sweeper, within `sweep_interval` of its time; shorter
    /// waits come back as the same message, on time.
    #[serde(with = "humantime_serde")]
    pub delay_park_after: Duration,
    /// Hosts that `a2a_agent` and `mcp_tool` nodes may call although the built-in egress
    /// policy refuses them (loopback, private, link-local): `app.egress.allow`, empty by
    /// default. Checked when a graph is saved, and when the node runs with the addresses the
    /// names resolve to. `getlood dev` and the test kit allow loopback.
    pub egress: EgressConfig,
    /// Secret the credentials of `a2a_agent` and `mcp_tool` nodes (`auth.bearer`, header
    /// values) are encrypted with in the saved graphs (32 bytes at least; the chart passes the
    /// gateway's `accounts-key-encryption-key`). Unset: stored unencrypted, with a warning at
    /// start; a graph saved encrypted then fails to load until it is set again.
    #[serde(serialize_with = "getlood_config::serialize_secret_opt")]
    pub key_encryption_key: Option<secrecy::SecretString>,
}

/// `app.sql`: what workflow `sql` nodes may read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlSettings {
    /// MindsDB databases (`files`), database prefixes (`ds_*`: every database whose name
    /// starts with `ds_`) and single tables (`crm.accounts`) of the tenant that `sql` nodes may
    /// read, besides nothing: MindsDB's catalogue, logs and projects (agents with their API
    /// keys, models, the memory knowledge base) are never readable. `ds_*` is the tenant's
    /// registered data sources (desktop-state names the data source `sales` `ds_sales`).
    pub allow: Vec<String>,
}

impl Default for SqlSettings {
    fn default() -> Self {
        Self { allow: vec!["files".to_owned(), "ds_*".to_owned()] }
    }
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        Self {
            node_lease: Duration::from_secs(10),
            run_timeout: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(2),
            scheduler_interval: Duration::from_secs(1),
            worker_concurrency: 64,
            outbox_poll: Duration::from_secs(1),
            relay_backlog_limit: 128,
            relay_backlog_max_wait: Duration::from_secs(1),
            approval_self_allowed: false,
            max_graph_nodes: 2_000,
            max_graph_edges: 10_000,
            sql: SqlSettings::default(),
            delay_park_after: Duration::from_secs(60),
            egress: EgressConfig::default(),
            key_encryption_key: None,
        }
    }
}

impl Validate for WorkflowSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        getlood_config::require_positive([
            ("app.run_timeout", self.run_timeout),
            ("app.sweep_interval", self.sweep_interval),
            ("app.scheduler_interval", self.scheduler_interval),
            ("app.outbox_poll", self.outbox_poll),
        ])?;
        if self.run_timeout > MAX_RUN_TIMEOUT {
            return Err(ConfigError::invalid("app.run_timeout", "must be at most 7 days"));
        }
        if self.node_lease < Duration::from_secs(1) {
            return Err(ConfigError::invalid("app.node_lease", "must be at least 1s"));
        }
        if !(1..=MAX_GRAPH_NODES).contains(&self.max_graph_nodes) {
            return Err(ConfigError::invalid("app.max_graph_nodes", format!("must be from 1 to {MAX_GRAPH_NODES}")));
        }
        if !(1..=MAX_GRAPH_EDGES).contains(&self.max_graph_edges) {
            return Err(ConfigError::invalid("app.max_graph_edges", format!("must be from 1 to {MAX_GRAPH_EDGES}")));
        }
        sqlnode::SqlPolicy::new(&self.sql.allow).map_err(|e| ConfigError::invalid("app.sql.allow", e))?;
        EgressPolicy::new(&self.egress).map_err(|e| ConfigError::invalid("app.egress.allow", e.to_string()))?;
        if self.worker_concurrency == 0 {
            return Err(ConfigError::invalid("app.worker_concurrency", "must be at least 1"));
        }
        getlood_config::require_key_encryption_key("app.key_encryption_key", self.key_encryption_key.as_ref())
    }
}

/// The highest `app.max_graph_nodes`: a graph this size validates in well under a second.
pub const MAX_GRAPH_NODES: usize = 20_000;

/// The highest `app.max_graph_edges`.
pub const MAX_GRAPH_EDGES: usize = 100_000;

/// The longest run timeout, given per run or as `app.run_timeout`.
pub const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The service's configuration.
pub type Config = ServiceConfig<WorkflowSettings, MindsdbConfig>;

/// Defaults: HTTP on :8083, gRPC on :9093, Postgres schema `workflow`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8083, 9093, "workflow")
}

/// Runs the service on `listeners` until the runtime's shutdown.
pub async fn run(config: Config, runtime: Runtime, listeners: Listeners) -> getlood_server::Result<()> {
    let pool = runtime.postgres()?;
    let (tracker, shutdown) = (runtime.tracker(), runtime.shutdown());
    let mindsdb = MindsdbClient::new(&config.mindsdb).map_err(|e| Error::Serve(format!("mindsdb client: {e}")))?;
    let sql_policy =
        sqlnode::SqlPolicy::new(&config.app.sql.allow).map_err(|e| Error::Serve(format!("app.sql.allow: {e}")))?;
    let egress = EgressPolicy::new(&config.app.egress).map_err(|e| Error::Serve(format!("app.egress.allow: {e}")))?;
    let remote = remote::Remote::new(egress, tracker.clone())
        .map_err(|e| Error::Serve(format!("remote nodes' http client: {e}")))?;

    // The workflow relay is its own (pipelined, with back-pressure on ExecuteWorkflow), not
    // the runtime's generic outbox relay.
    let backlog =
        Arc::new(backlog::RelayBacklog::new(config.app.relay_backlog_limit, config.app.relay_backlog_max_wait));
    relay::spawn(&pool, runtime.bus()?, backlog.clone(), config.app.outbox_poll, tracker, shutdown.clone());

    let queue = queue::WorkQueue::new(
        runtime.nats()?,
        &config.nats.subject_prefix,
        &config.postgres.schema,
        config.app.node_lease,
        config.nats.stream_replicas,
    );
    queue.spawn_lag_reporter(tracker, shutdown.clone());
    let directory = agents::AgentDirectory::new(pool.clone(), Some(runtime.upstream("agent-registry")?));
    directory.spawn_feed(runtime.bus()?, tracker, shutdown.clone());
    let engine = Arc::new(engine::Engine::new(
        pool.clone(),
        queue,
        backlog,
        nodes::NodeRunner::new(mindsdb.clone(), directory.clone(), sql_policy, remote),
        JobAdapter::new(mindsdb.clone()),
        config.app.clone(),
        &config.postgres.schema,
    ));
    engine.spawn_listener(tracker, shutdown.clone());
    engine.spawn_workers(tracker, shutdown.clone());
    engine.spawn_sweeper(tracker, shutdown.clone());
    scheduler::spawn(engine.clone(), tracker, shutdown);

    let key = config.app.key_encryption_key.as_ref().map(getlood_common::sealing::SealingKey::new);
    if key.is_none() {
        tracing::warn!(
            "app.key_encryption_key is not set: the credentials of a2a_agent and mcp_tool nodes are stored unencrypted in postgres"
        );
    }
    let service = grpc::Service {
        store: store::Store { pool, key },
        engine,
        projects: ProjectAdapter::new(mindsdb),
        agents: directory,
    };
    let grpc = tonic::service::Routes::new(runtime.authorize(GRPC_PERMISSIONS, WorkflowServiceServer::new(service)));
    runtime.serve(listeners, grpc, axum::Router::new()).await
}
