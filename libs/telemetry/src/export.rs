//! Runs the OTLP exporter on a runtime of its own.
//!
//! The SDK's batch span processor exports from a plain OS thread, while the tonic exporter needs
//! a Tokio reactor: called from that thread it panics ("there is no reactor running") and every
//! span is dropped silently (open-telemetry/opentelemetry-rust#3125, quickwit-oss/quickwit#6557).
//! Each export is therefore spawned on a one-worker runtime owned by this adapter.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

#[derive(Debug)]
pub(crate) struct RuntimeExporter {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Runtime,
}

impl RuntimeExporter {
    /// Builds the tonic exporter for `endpoint` inside the adapter's runtime, so its channel's
    /// background tasks live there too.
    pub(crate) fn new(endpoint: String) -> Result<Self, String> {
        use opentelemetry_otlp::WithExportConfig as _;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // `init` runs inside the service's runtime, where `block_on` is refused: build on a
        // short-lived thread that has no runtime context.
        let inner = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    runtime.block_on(async {
                        opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()
                    })
                })
                .join()
        })
        .map_err(|_| "otlp exporter build panicked".to_owned())?;
        Ok(Self { inner: Arc::new(inner.map_err(|e| e.to_string())?), runtime })
    }
}

impl SpanExporter for RuntimeExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let inner = self.inner.clone();
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move { task.await.unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string()))) }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called once while the provider is built, before any export holds a clone.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
