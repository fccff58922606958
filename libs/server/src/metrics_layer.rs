//! Request counts and latencies, by route for HTTP and by method for gRPC.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Axum middleware recording `getlood_http_requests_total` and
/// `getlood_http_request_duration_seconds` labelled by service, matched route, method and status.
pub async fn http_metrics(State(service): State<&'static str>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // The matched route template, never the raw path: ids in paths would explode cardinality.
    let route = req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("service", service.to_owned()), ("route", route), ("method", method), ("status", status)];
    metrics::counter!("getlood_http_requests_total", &labels).increment(1);
    metrics::histogram!("getlood_http_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
    response
}

/// Tower layer recording `getlood_grpc_requests_total` and `getlood_grpc_request_duration_seconds`
/// by service, method and status code (time to response headers; streams are counted when they
/// start).
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    service: &'static str,
}

impl GrpcMetricsLayer {
    /// A layer labelling its series with `service`.
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner, service: self.service }
    }
}

/// The service made by [`GrpcMetricsLayer`].
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    service: &'static str,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = req.uri().path().to_owned();
        let service = self.service;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            // A trailers-only response (every error) carries grpc-status in the headers; success
            // sends it in trailers, which are not visible here.
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or("Ok", |c| code_name(tonic::Code::from_i32(c))),
                Err(_) => "Unavailable",
            };
            let labels = [("service", service.to_owned()), ("method", method), ("code", code.to_owned())];
            metrics::counter!("getlood_grpc_requests_total", &labels).increment(1);
            metrics::histogram!("getlood_grpc_request_duration_seconds", &labels).record(start.elapsed().as_secs_f64());
            result
        })
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "Ok",
        tonic::Code::Cancelled => "Cancelled",
        tonic::Code::Unknown => "Unknown",
        tonic::Code::InvalidArgument => "InvalidArgument",
        tonic::Code::DeadlineExceeded => "DeadlineExceeded",
        tonic::Code::NotFound => "NotFound",
        tonic::Code::AlreadyExists => "AlreadyExists",
        tonic::Code::PermissionDenied => "PermissionDenied",
        tonic::Code::ResourceExhausted => "ResourceExhausted",
        tonic::Code::FailedPrecondition => "FailedPrecondition",
        tonic::Code::Aborted => "Aborted",
        tonic::Code::OutOfRange => "OutOfRange",
        tonic::Code::Unimplemented => "Unimplemented",
        tonic::Code::Internal => "Internal",
        tonic::Code::Unavailable => "Unavailable",
        tonic::Code::DataLoss => "DataLoss",
        tonic::Code::Unauthenticated => "Unauthenticated",
    }
}
