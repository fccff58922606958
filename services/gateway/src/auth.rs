//! Bearer authentication for every route of the gateway router, the desktop WebSocket included
//! (the public routes are the skeleton's, see `http_api::PUBLIC_ROUTES`).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use getlood_common::ApiError;

use crate::AppState;
use crate::audit::{Actor, Refusal};

/// Prefix of the WebSocket subprotocol that carries a browser's token.
const BEARER_PROTOCOL: &str = "bearer.";

/// The bearer credential of a request, as an `Authorization` value: the header, else (browsers
/// cannot set headers on a WebSocket) a `bearer.<jwt>` entry of `Sec-WebSocket-Protocol`. The
/// token is never taken from the URL, where proxies and access logs would keep it.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<String> {
    if let Some(h) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return Some(h.to_owned());
    }
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(BEARER_PROTOCOL).map(|t| format!("Bearer {t}")))
}

/// Verifies the bearer credential ([`bearer`]) and stores the [`getlood_auth::Principal`] in the
/// request extensions; a refused token never reaches a handler or a service.
pub(crate) async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = bearer(req.headers());
    match state.verifier.verify_header(header.as_deref()) {
        Ok(principal) => {
            tracing::Span::current().record("tenant", principal.tenant.as_str());
            // For the audit layer outside this one, which only sees the response.
            let actor = Actor { tenant: principal.tenant.clone(), user: principal.user.clone() };
            req.extensions_mut().insert(principal);
            let mut response = next.run(req).await;
            response.extensions_mut().insert(actor);
            response
        }
        Err(err) => {
            tracing::info!(reason = %err, path = %req.uri().path(), "request refused: unauthenticated");
            let challenge = challenge(&err.to_string());
            let refusal = Refusal(err.to_string());
            let mut response = ApiError::from(err).into_response();
            response.extensions_mut().insert(refusal);
            if let Ok(value) = http::HeaderValue::from_str(&challenge) {
                // RFC 6750 §3: tell the client which scheme and why.
                response.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

/// The `WWW-Authenticate` value for a refusal described by `reason`. The reason can quote the
/// token (an unknown `kid`), so only characters that cannot close or escape the quoted-string
/// (RFC 7230 §3.2.6: no `"`, `\\` or control characters) are kept, at most 200 of them.
fn challenge(reason: &str) -> String {
    let safe: String = reason
        .chars()
        .map(|c| if c == '"' || c == '\\' || c.is_control() || !c.is_ascii() { '\'' } else { c })
        .take(200)
        .collect();
    format!("Bearer error=\"invalid_token\", error_description=\"{safe}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_quoting_the_token_cannot_inject_header_parameters() {
        let value = challenge(r#"unknown key id 'x", error="insufficient_scope\\'"#);
        assert_eq!(value.matches('"').count(), 4, "{value}");
        assert!(!value.contains('\\'), "{value}");
        assert!(http::HeaderValue::from_str(&value).is_ok());
        assert!(challenge(&"k".repeat(1000)).len() < 260);
    }
}
