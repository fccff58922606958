//! The gateway's HTTP surface and its layer stack.

use axum::extract::{Extension, Request};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use getlood_auth::Principal;
use getlood_common::{ApiError, ErrorCode};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::auth::require_auth;

/// The gateway's router: authenticated API routes under `/api/v1` and `/v1`, behind the shared
/// layer stack. Health, readiness and metrics are added by the server skeleton, unauthenticated.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let api = Router::new().route("/api/v1/me", get(me)).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), require_auth),
    );

    api.fallback(not_found).with_state(state).layer(
        // Outermost first.
        ServiceBuilder::new()
            // Tokens must never reach a log line, whatever layer logs headers later.
            .layer(SetSensitiveRequestHeadersLayer::new([
                http::header::AUTHORIZATION,
            ]))
            // The id exists before the span is made, so every log line of the request carries it.
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(make_span))
            // Echo the id back so a client can quote it in a support request.
            .layer(PropagateRequestIdLayer::x_request_id())
            // Plain requests only; streaming routes added later opt out of this deadline.
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                settings.http_request_timeout,
            ))
            // Refuse oversized bodies before a handler buffers them.
            .layer(axum::extract::DefaultBodyLimit::max(
                settings.max_body_bytes,
            )),
    )
}

fn make_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "gateway.http",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %request_id,
        tenant = tracing::field::Empty,
    );
    getlood_telemetry::set_parent_from_headers(&span, req.headers());
    span
}

/// The caller as the gateway sees it, from the verified token only.
#[derive(Debug, Serialize)]
struct Me {
    tenant: String,
    user: String,
    roles: Vec<String>,
    expires_at: u64,
}

async fn me(Extension(principal): Extension<Principal>) -> Json<Me> {
    Json(Me {
        tenant: principal.tenant.to_string(),
        user: principal.user,
        roles: principal.roles,
        expires_at: principal.expires_at,
    })
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}
