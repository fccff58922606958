use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

use crate::metrics_layer::{GrpcMetricsLayer, http_metrics};
use crate::{Error, Needs, Readiness, Result};

/// What the skeleton needs to know about a service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// The service name: logs, metrics labels, the health service name.
    pub name: &'static str,
    /// The dependencies it uses.
    pub needs: Needs,
}

/// The two listeners of a service, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// HTTP listener.
    pub http: TcpListener,
    /// gRPC listener.
    pub grpc: TcpListener,
}

impl Listeners {
    /// Binds both addresses.
    pub async fn bind(http: SocketAddr, grpc: SocketAddr) -> Result<Self> {
        let bind = |addr| async move { TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source }) };
        Ok(Self { http: bind(http).await?, grpc: bind(grpc).await? })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

impl crate::Runtime {
    /// Serves `grpc` (plus health and reflection) and `http` (plus `/livez`, `/readyz`,
    /// `/metrics`) until the shutdown token is cancelled, then lets in-flight requests finish
    /// within `shutdown_timeout` and stops the background tasks on the tracker.
    pub async fn serve(self, listeners: Listeners, grpc: tonic::service::Routes, http: Router) -> Result<()> {
        serve(self, listeners, grpc, http).await
    }
}

async fn serve(
    runtime: crate::Runtime,
    listeners: Listeners,
    grpc: tonic::service::Routes,
    http: Router,
) -> Result<()> {
    let name = runtime.name();
    let settings = runtime.serve;
    let shutdown = runtime.shutdown();
    let tracker = runtime.tracker().clone();
    let infra = runtime.infra().clone();
    // Install the recorder before the first request so no early sample is lost.
    let _ = getlood_telemetry::prometheus_handle();
    let readiness = Readiness::spawn(name, infra, settings.readiness_interval, shutdown.clone(), &tracker);

    // grpc.health.v1: "" is the whole server; the service name is its own entry, both follow
    // readiness so a Kubernetes gRPC probe and a client-side health check agree with /readyz.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(name, ServingStatus::NotServing).await;
    {
        let mut readiness = readiness.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            loop {
                let report = tokio::select! {
                    report = readiness.changed() => report,
                    () = shutdown.cancelled() => break,
                };
                let status = if report.ready { ServingStatus::Serving } else { ServingStatus::NotServing };
                reporter.set_service_status("", status).await;
                reporter.set_service_status(name, status).await;
            }
            reporter.set_service_status("", ServingStatus::NotServing).await;
            reporter.set_service_status(name, ServingStatus::NotServing).await;
        });
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(getlood_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Serve(e.to_string()))?;
    let routes = grpc.add_service(health).add_service(reflection);

    let grpc_addr = listeners.grpc_addr();
    let http_addr = listeners.http_addr();
    let grpc_server = tonic::transport::Server::builder()
        .timeout(settings.request_timeout)
        .trace_fn(move |req| {
            let span = tracing::info_span!("grpc.request", service = name, method = %req.uri().path());
            getlood_telemetry::set_parent_from_headers(&span, req.headers());
            span
        })
        .layer(GrpcMetricsLayer::new(name))
        .add_routes(routes)
        // TCP_NODELAY: a unary response goes out as two writes (headers and data, then the
        // trailers), and Nagle held the trailers until the client's delayed ACK, about 40 ms
        // a call on Linux.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listeners.grpc).with_nodelay(Some(true)),
            shutdown.clone().cancelled_owned(),
        );

    let app = http.merge(admin_router(readiness)).layer(axum::middleware::from_fn_with_state(name, http_metrics));
    let http_server = axum::serve(listeners.http, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());

    tracing::info!(service = name, %http_addr, %grpc_addr, "service listening");
    let servers = async {
        let (h, g) = tokio::join!(async { http_server.await.map_err(|e| Error::Serve(format!("http: {e}"))) }, async {
            grpc_server.await.map_err(|e| Error::Serve(format!("grpc: {e}")))
        },);
        h.and(g)
    };
    let drain_deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(settings.shutdown_timeout).await;
    };
    let result = tokio::select! {
        result = servers => result,
        () = drain_deadline => {
            tracing::warn!(service = name, timeout = ?settings.shutdown_timeout, "drain timed out, dropping open requests");
            Ok(())
        }
    };
    // A server that failed on its own takes the other down with it.
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.is_err() {
        tracing::warn!(service = name, "background tasks did not stop within 5s");
    }
    tracing::info!(service = name, "service stopped");
    result
}

fn admin_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { getlood_telemetry::prometheus_handle().render() }))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let report = readiness.report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report))
}
