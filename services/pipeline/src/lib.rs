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

mod convert;
mod enhance;
mod error;
mod grpc;
mod intent;
mod intent_model;
mod pipeline;
mod registry;
mod routing;
mod settings;
mod store;
mod text;
mod types;

use std::sync::Arc;

use getlood_auth::Verifier;
use getlood_events::{EventBus, Outbox};
use getlood_mindsdb::MindsdbClient;
use getlood_proto::pipeline::v1::pipeline_service_server::PipelineServiceServer;
use getlood_server::{Infra, Listeners, Needs, ServiceConfig, ServiceSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::{Error, Result};
pub use settings::{
    AppKeywords, FallbackSettings, IntentModelSettings, KeywordRule, Limits, PipelineSettings, RouteRule, RuleSettings,
};
pub use types::Mode;

/// Name and dependencies of the service.
pub const SPEC: ServiceSpec =
    ServiceSpec { name: "pipeline", needs: Needs { postgres: true, redis: false, nats: true } };

/// The service's Postgres migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// The service's configuration.
pub type Config = ServiceConfig<PipelineSettings>;

/// Defaults: HTTP on :8081, gRPC on :9091, Postgres schema `pipeline`.
pub fn default_config() -> Config {
    ServiceConfig::with_ports(8081, 9091, "pipeline")
}

// A plain fn, not a closure: a closure with a higher-ranked signature kept alive across the
// awaits below makes the future "not general enough" to be `Send`.
fn serve_err(what: &str, e: &dyn std::fmt::Display) -> getlood_server::Error {
    getlood_server::Error::Serve(format!("{what}: {e}"))
}

/// Runs the service on `listeners` until `shutdown` is cancelled.
pub async fn run(config: Config, listeners: Listeners, shutdown: CancellationToken) -> getlood_server::Result<()> {
    let verifier = Arc::new(Verifier::new(&config.auth)?);
    let infra = Infra::start(SPEC, &config, Some(&MIGRATOR)).await?;
    let (Some(pool), Some(nats)) = (infra.postgres.clone(), infra.nats.clone()) else {
        return Err(getlood_server::Error::Serve("pipeline needs postgres and nats".to_owned()));
    };
    let tracker = TaskTracker::new();

    let bus = EventBus::new(nats, &config.nats.subject_prefix);
    // Streams are created by whichever service gets there first; a NATS outage at start only
    // delays the outbox relay, which retries.
    if let Err(err) = bus.ensure_streams().await {
        tracing::warn!(error = %err, "jetstream streams not ensured yet; the outbox relay will retry");
    }
    let outbox = Outbox::new(pool.clone());
    outbox.spawn_relay(bus, config.app.outbox_poll, &tracker, shutdown.clone());

    let intent_model = if config.app.intent_model.enabled {
        let client = MindsdbClient::new(&config.mindsdb).map_err(|e| serve_err("mindsdb client", &e))?;
        let prompt = intent::prompt_template(&config.app.intents);
        Some(
            intent_model::IntentModel::new(client, &config.app.intent_model, prompt)
                .map_err(|e| serve_err("intent model", &e))?,
        )
    } else {
        None
    };
    let registry = registry::RegistryClient::new(&config.services.agent_registry, config.app.registry_timeout)
        .map_err(|e| serve_err("agent registry client", &e))?;
    let pipeline = Arc::new(pipeline::Pipeline {
        rules: intent::RuleClassifier::new(&config.app),
        router: routing::Router::new(&config.app.routes),
        settings: Arc::new(config.app.clone()),
        intent_model,
        registry,
        store: store::Store::new(pool, config.app.durable_turn_commit),
        outbox,
    });
    let api = grpc::PipelineApi { pipeline, tracker: tracker.clone() };
    let grpc = tonic::service::Routes::new(PipelineServiceServer::with_interceptor(
        api,
        getlood_server::authenticate(verifier),
    ));
    getlood_server::serve(SPEC, &config, infra, listeners, grpc, axum::Router::new(), shutdown, tracker).await
}
