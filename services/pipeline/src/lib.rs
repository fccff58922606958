//! GETLOOD pipeline: the 5-stage chat pipeline (intent detection, routing, agent selection,
//! execution, enhancement) behind `getlood.pipeline.v1.PipelineService`.
//!
//! * Stage 1 asks a keyword classifier first and, when it is not sure, an LLM: a MindsDB model
//!   in the tenant's project, created once per tenant through the Model adapter.
//! * Stage 2 maps the intent to a mode and a skill with configurable rules.
//! * Stages 3 and 4 call the agent registry with the caller's own token: FindAgents by skill,
//!   then QueryAgent, streamed through.
//! * Stage 5 derives UI actions and rule-based user-intent hints, and stores the turn with its
//!   `turn.completed` event in one Postgres transaction (outbox relayed to JetStream).
//!
//! It also serves the tenant's MindsDB models through the same adapter: `ListModels`, and
//! `AskModel` for one completion of a model.

mod convert;
mod enhance;
mod error;
mod grpc;
mod intent;
mod intent_model;
mod memory;
mod models;
mod pipeline;
mod registry;
mod routing;
mod settings;
mod store;
mod text;
mod types;

use std::sync::Arc;
use std::time::Duration;

use getlood_mindsdb::{MindsdbClient, MindsdbConfig};
use getlood_proto::pipeline::v1::pipeline_service_server::PipelineServiceServer;
use getlood_server::{Listeners, Needs, Runtime, ServiceConfig, ServiceSpec, UpstreamTimeouts};

pub use error::{Error, Result};
pub use settings::{
    AppKeywords, FallbackSettings, IntentModelSettings, KeywordRule, Limits, MemorySettings, PipelineSettings,
    RouteRule, RuleSettings,
};
pub use types::Mode;

/// The permission each `PipelineService` method needs (`getlood_auth::allows`), so a direct call inside
/// the cluster is held to the same rule as the gateway's routes; a method missing here is
/// refused to everyone.
pub const GRPC_PERMISSIONS: getlood_server::MethodPermissions = {
    use getlood_auth::Permission as P;
    &[
        ("Execute", P::Chat),
        ("GetTurn", P::Chat),
        ("ListTurns", P::Chat),
        ("ListModels", P::AgentsRead),
        ("AskModel", P::Chat),
    ]
};

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "pipeline",
    needs: Needs { postgres: true, redis: false, nats: true },
    ready_without: Needs { postgres: false, redis: false, nats: false },
};

/// The service's Postgres migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The service's configuration.
pub type Config = ServiceConfig<PipelineSettings, MindsdbConfig>;

/// Defaults: HTTP on :8081, gRPC on :9091, Postgres schema `pipeline`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8081, 9091, "pipeline")
}

// A plain fn, not a closure: a closure with a higher-ranked signature kept alive across the
// awaits below makes the future "not general enough" to be `Send`.
fn serve_err(what: &str, e: &dyn std::fmt::Display) -> getlood_server::Error {
    getlood_server::Error::Serve(format!("{what}: {e}"))
}

/// Runs the service on `listeners` until the runtime's shutdown.
pub async fn run(config: Config, runtime: Runtime, listeners: Listeners) -> getlood_server::Result<()> {
    let outbox = runtime.outbox(config.app.outbox_poll)?;
    let client = MindsdbClient::new(&config.mindsdb).map_err(|e| serve_err("mindsdb client", &e))?;
    let models = models::Models::new(client.clone());
    let intent_model = if config.app.intent_model.enabled {
        let prompt = intent::prompt_template(&config.app.intents);
        Some(
            intent_model::IntentModel::new(client, &config.app.intent_model, prompt)
                .map_err(|e| serve_err("intent model", &e))?,
        )
    } else {
        None
    };
    // QueryAgent answers once MindsDB has started the agent's stream, which may take up to the
    // agent's deadline: the channel's time-to-headers bound must not cut it sooner.
    let runtime = runtime.with_upstream_timeouts(UpstreamTimeouts {
        connect: config.app.registry_timeout.min(Duration::from_secs(3)),
        request: config.app.registry_timeout.max(config.app.agent_timeout),
    });
    let registry = registry::RegistryClient::new(runtime.upstream("agent-registry")?, config.app.registry_timeout);
    let memory = if config.app.memory.enabled {
        Some(memory::MemoryClient::new(runtime.upstream("event-dispatcher")?, config.app.memory.clone()))
    } else {
        None
    };
    let pipeline = Arc::new(pipeline::Pipeline {
        rules: intent::RuleClassifier::new(&config.app),
        router: routing::Router::new(&config.app.routes),
        settings: Arc::new(config.app.clone()),
        intent_model,
        registry,
        memory,
        store: store::Store::new(runtime.postgres()?, config.app.durable_turn_commit),
        outbox,
    });
    let api = grpc::PipelineApi { pipeline, tracker: runtime.tracker().clone(), models };
    let grpc = tonic::service::Routes::new(runtime.authorize(GRPC_PERMISSIONS, PipelineServiceServer::new(api)));
    runtime.serve(listeners, grpc, axum::Router::new()).await
}
