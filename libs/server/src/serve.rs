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

/// The fully qualified name of `grpc.health.v1`, which every server serves.
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
/// The fully qualified name of the reflection service every server serves.
const REFLECTION_SERVICE: &str = "grpc.reflection.v1.ServerReflection";

/// What the skeleton needs to know about a service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// The service name: logs, metrics labels, the health service name.
    pub name: &'static str,
    /// The dependencies it uses.
    pub needs: Needs,
    /// The dependencies it keeps serving without (degraded): their check still shows on the
    /// admin `/readyz`, but their outage does not take the service out of its load balancers.
    /// A dependency belongs here when every call path treats its failure as a policy (a cache
    /// miss, a fail-open limit, events left in the outbox), so that an unready service would
    /// turn a partial outage of one dependency into a full outage of every caller.
    pub ready_without: Needs,
}

/// The three listeners of a service, bound by the caller (port 0 in tests).
#[derive(Debug)]
pub struct Listeners {
    /// Public HTTP listener: the API, `/livez` and a bare `/readyz`.
    pub http: TcpListener,
    /// gRPC listener.
    pub grpc: TcpListener,
    /// Admin HTTP listener: `/metrics`, the detailed `/readyz`, `/livez`. Never routed by the
    /// Ingress; only Prometheus and the kubelet reach it.
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the three addresses.
    pub async fn bind(http: SocketAddr, grpc: SocketAddr, admin: SocketAddr) -> Result<Self> {
        let bind = |addr| async move { TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source }) };
        Ok(Self { http: bind(http).await?, grpc: bind(grpc).await?, admin: bind(admin).await? })
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
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
    /// Serves `grpc` (plus health and reflection), `http` (plus `/livez` and a bare `/readyz`)
    /// and the admin listener (`/metrics`, the detailed `/readyz`, `/livez`) until the shutdown token is cancelled, then lets in-flight requests finish
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
    let readiness = Readiness::spawn(
        name,
        infra,
        runtime.spec.ready_without,
        settings.readiness_interval,
        shutdown.clone(),
        &tracker,
    );

    // grpc.health.v1: "" is the whole server; the service name is its own entry, both follow
    // readiness so a Kubernetes gRPC probe and a client-side health check agree with /readyz.
    let (reporter, health) = tonic_health::server::health_reporter();
    // The whole server, the service's own name, and each gRPC service it declared it serves.
    let entries: Vec<&'static str> =
        [name].into_iter().chain(runtime.grpc_services.unwrap_or_default().iter().copied()).collect();
    reporter.set_service_status("", ServingStatus::NotServing).await;
    for entry in &entries {
        reporter.set_service_status(entry, ServingStatus::NotServing).await;
    }
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
                for entry in &entries {
                    reporter.set_service_status(entry, status).await;
                }
            }
            reporter.set_service_status("", ServingStatus::NotServing).await;
            for entry in &entries {
                reporter.set_service_status(entry, ServingStatus::NotServing).await;
            }
        });
    }
    let reflection = || {
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(getlood_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        if let Some(services) = runtime.grpc_services {
            // Naming any service turns off "every service of the descriptor sets"; health and
            // reflection are served by every server.
            reflection = reflection.with_service_name(HEALTH_SERVICE).with_service_name(REFLECTION_SERVICE);
            for service in services {
                reflection = reflection.with_service_name(*service);
            }
        }
        reflection
    };
    // v1alpha as well as v1: grpcurl before 1.9 (the one PyPI ships), grpcui and other tools
    // speak only v1alpha ("server does not support the reflection API"). Both answer the same;
    // the listing names v1, the current one.
    let reflection_v1 = reflection().build_v1().map_err(|e| Error::Serve(e.to_string()))?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(|e| Error::Serve(e.to_string()))?;
    let routes = grpc.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha);

    let grpc_addr = listeners.grpc_addr();
    let http_addr = listeners.http_addr();
    let admin_addr = listeners.admin_addr();
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

    let app =
        http.merge(public_probes(readiness.clone())).layer(axum::middleware::from_fn_with_state(name, http_metrics));
    // The peer address reaches handlers (the gateway's audit log records the client's).
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let http_server = axum::serve(listeners.http, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    // Scrapes and probes are not counted in the request metrics: they would drown the API's.
    let admin_server = axum::serve(listeners.admin, admin_router(readiness))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    tracing::info!(service = name, %http_addr, %grpc_addr, %admin_addr, "service listening");
    let servers = async {
        let (h, g, a) = tokio::join!(
            async { http_server.await.map_err(|e| Error::Serve(format!("http: {e}"))) },
            async { grpc_server.await.map_err(|e| Error::Serve(format!("grpc: {e}"))) },
            async { admin_server.await.map_err(|e| Error::Serve(format!("admin: {e}"))) },
        );
        h.and(g).and(a)
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

/// The probes of the public port: liveness, and readiness as a status only. Which dependency
/// failed and why (hostnames, driver errors) is for operators, on the admin port.
fn public_probes(readiness: Readiness) -> Router {
    Router::new().route("/livez", get(livez)).route("/readyz", get(bare_readyz)).with_state(readiness)
}

/// The admin port: the metrics and the detailed readiness report.
fn admin_router(readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { getlood_telemetry::prometheus_handle().render() }))
        .with_state(readiness)
}

async fn livez() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn bare_readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.report().ready {
        (StatusCode::OK, axum::Json(serde_json::json!({"status": "ready"})))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({"status": "not_ready"})))
    }
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let report = readiness.report();
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(report))
}
