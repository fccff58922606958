//! Who a request is made for: the [`Caller`] extractor every authenticated handler takes, and
//! the one way a handler calls an upstream service on the caller's behalf ([`unary`]).

use std::future::Future;

use axum::extract::FromRequestParts;
use getlood_auth::Principal;
use getlood_common::{ApiError, ErrorCode};
use http::request::Parts;

use crate::chat::upstream_error;
use crate::{AppState, upstream};

/// The verified caller of a route: the [`Principal`] that `require_auth` stored in the request
/// extensions, and the request id the `SetRequestId` layer assigned (or the client sent).
///
/// A route that was left outside `require_auth` by mistake has no principal: the extractor then
/// refuses the request with a 401 JSON error instead of serving it anonymously.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    principal: Principal,
    request_id: Option<String>,
}

impl Caller {
    /// The verified principal.
    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The verified principal, owned.
    pub(crate) fn into_principal(self) -> Principal {
        self.principal
    }

    /// The request id forwarded to the services, when there is one.
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The same caller without the request id, for the calls a long-lived connection (a
    /// WebSocket session) makes after the request that opened it has been answered.
    pub(crate) fn without_request_id(self) -> Self {
        Self { request_id: None, ..self }
    }

    /// `message` as an upstream call on the caller's behalf: their own token, the trace context
    /// and the request id (see [`upstream::request`]).
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        upstream::request(&self.principal, self.request_id(), message)
    }
}

impl Caller {
    /// The caller of the request `parts` belong to, or a 401 when no principal was stored.
    pub(crate) fn from_parts(parts: &Parts) -> Result<Self, ApiError> {
        let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
            // A wiring bug (the route is not under `require_auth`), not a client error: loud in
            // the logs, and still no anonymous access.
            tracing::error!(path = %parts.uri.path(), "handler needs a caller but the route is not authenticated");
            return Err(ApiError::new(ErrorCode::Unauthenticated, "authentication is required"));
        };
        let request_id = parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Ok(Self { principal, request_id })
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts)
    }
}

/// Awaits a unary upstream call: its message, or the status as the API error of `service`
/// (see [`upstream_error`]).
///
/// ```ignore
/// let resp = unary(SERVICE, state.upstreams.workflow().get_run(caller.request(req))).await?;
/// ```
pub(crate) async fn unary<T>(
    service: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, ApiError> {
    call.await.map(tonic::Response::into_inner).map_err(|status| upstream_error(service, status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(principal: Option<Principal>, request_id: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().uri("/api/v1/me");
        if let Some(id) = request_id {
            builder = builder.header("x-request-id", id);
        }
        let (mut parts, ()) = builder.body(()).unwrap().into_parts();
        if let Some(p) = principal {
            parts.extensions.insert(p);
        }
        parts
    }

    fn principal() -> Principal {
        Principal {
            tenant: getlood_auth::TenantId::parse("acme").unwrap(),
            user: "alice".to_owned(),
            roles: vec!["user".to_owned()],
            expires_at: 4_000_000_000,
            token: "header.payload.signature".to_owned(),
        }
    }

    #[test]
    fn upstream_requests_carry_the_callers_token_and_request_id() {
        let caller = Caller::from_parts(&parts(Some(principal()), Some("req-7"))).unwrap();
        let req = caller.request(());
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer header.payload.signature");
        assert_eq!(req.metadata().get("x-request-id").unwrap(), "req-7");
    }

    #[test]
    fn missing_principal_is_unauthenticated() {
        let err = Caller::from_parts(&parts(None, None)).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthenticated);
    }
}
