//! Telemetry shared by every GETLOOD process: a `tracing` subscriber (pretty or JSON logs),
//! OpenTelemetry spans exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, W3C
//! `traceparent` propagation helpers, and the process-wide Prometheus recorder.

mod export;
mod metrics_recorder;
mod propagation;

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use metrics_recorder::prometheus_handle;
pub use propagation::{
    HeaderExtractor, HeaderInjector, current_traceparent, extract_context, inject_context, set_parent_from_headers,
};

/// Which spans are exported (an `EnvFilter` directive), independent of `RUST_LOG`.
pub const TRACES_FILTER_ENV: &str = "OTEL_TRACES_FILTER";

/// The environment variable that turns on OTLP export (standard OpenTelemetry name).
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for Kubernetes log collectors.
    Json,
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (bad endpoint).
    #[error("cannot build the otlp exporter: {0}")]
    Exporter(String),
}

/// Keeps the tracer provider alive; call [`TelemetryGuard::shutdown`] last, after servers drain,
/// so the final spans are flushed.
#[must_use = "dropping the guard without shutdown loses buffered spans"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops span export. Blocking work runs off the async workers.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(err) = provider.shutdown() {
                    tracing::warn!(error = %err, "telemetry shutdown failed");
                }
            })
            .await;
        }
    }
}

static INSTALLED: OnceLock<()> = OnceLock::new();

/// Installs the global subscriber for `service_name`. Only the first call in a process takes
/// effect (the all-in-one launcher and the tests start several services in one process); later
/// calls return a guard that owns nothing.
pub fn init(service_name: &str, format: LogFormat) -> Result<TelemetryGuard, TelemetryError> {
    if INSTALLED.get().is_some() {
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service_name.to_owned()).build());
    // Spans get real trace ids even without an exporter, so `traceparent` still flows between
    // services and log lines can be correlated.
    if let Some(endpoint) = std::env::var(OTLP_ENDPOINT_ENV).ok().filter(|e| !e.is_empty()) {
        let exporter = export::RuntimeExporter::new(endpoint).map_err(TelemetryError::Exporter)?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_owned());
    opentelemetry::global::set_tracer_provider(provider.clone());

    // Per-layer filters: RUST_LOG sets how much is logged, `OTEL_TRACES_FILTER` (default: our
    // info spans) what is traced, so quieting logs never silently drops traces.
    let log_filter = || {
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,h2=warn,hyper=warn,tower=warn,async_nats=warn"))
    };
    let trace_filter = EnvFilter::try_from_env(TRACES_FILTER_ENV)
        .unwrap_or_else(|_| EnvFilter::new("info,h2=off,hyper=off,tower=off,async_nats=off,sqlx=warn"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(trace_filter);
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_filter(log_filter()),
            )
            .try_init(),
        LogFormat::Pretty => {
            registry.with(tracing_subscriber::fmt::layer().compact().with_filter(log_filter())).try_init()
        }
    };
    let _ = INSTALLED.set(());
    match installed {
        Ok(()) => Ok(TelemetryGuard { provider: Some(provider) }),
        // Another subscriber (a test harness) got there first; keep it.
        Err(_) => Ok(TelemetryGuard { provider: None }),
    }
}
