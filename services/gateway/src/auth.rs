//! Bearer authentication for every API route.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use getlood_common::ApiError;

use crate::AppState;

/// Verifies the `Authorization` header and stores the [`getlood_auth::Principal`] in the request
/// extensions; a refused token never reaches a handler or a service.
pub(crate) async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.verifier.verify_header(header) {
        Ok(principal) => {
            tracing::Span::current().record("tenant", principal.tenant.as_str());
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(err) => {
            tracing::info!(reason = %err, path = %req.uri().path(), "request refused: unauthenticated");
            let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{err}\"");
            let mut response = ApiError::from(err).into_response();
            if let Ok(value) = http::HeaderValue::from_str(&challenge) {
                // RFC 6750 §3: tell the client which scheme and why.
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}
