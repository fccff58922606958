//! Bearer verification and the role check of a service's own gRPC API. Every service
//! re-verifies the caller's token (forwarded by the gateway), so the tenant is never taken from
//! a message field, and holds every method to the permission its table declares
//! ([`authorize`]), so a call made directly inside the cluster meets the same rule as one made
//! through the gateway.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use getlood_auth::{Permission, Principal, Verifier};
use tonic::server::NamedService;
use tonic::{Request, Status};

use crate::upstream::{Caller, REQUEST_ID};

/// A tonic interceptor that verifies the `authorization` metadata and stores the
/// [`Principal`] and the [`Caller`] (with the request id and the `grpc-timeout` deadline, so
/// onward calls carry them) in the request extensions. Health and reflection are not wrapped.
pub fn authenticate(
    verifier: Arc<Verifier>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |mut req: Request<()>| {
        let principal = verifier.verify_metadata(req.metadata())?;
        let request_id = req.metadata().get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let deadline = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout)
            .map(|t| Instant::now() + t);
        req.extensions_mut().insert(Caller { principal: principal.clone(), request_id, deadline });
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// The permission each gRPC method of one service needs: `(method name, permission)`, e.g.
/// `("CreateAgent", Permission::AgentsWrite)`. A method missing from the table is refused to
/// everyone (`permission_denied`), never let through.
pub type MethodPermissions = &'static [(&'static str, Permission)];

/// Wraps a generated tonic server: verifies the bearer token, checks the caller's roles against
/// the permission `methods` declares for the called method (by the gRPC path
/// `/<package.Service>/<Method>`), and stores the [`Principal`] and [`Caller`] like
/// [`authenticate`] does. Health and reflection are not wrapped.
pub fn authorize<S: NamedService>(verifier: Arc<Verifier>, methods: MethodPermissions, inner: S) -> Authorized<S> {
    Authorized { inner, verifier, methods }
}

/// A tonic server behind [`authorize`].
#[derive(Clone)]
pub struct Authorized<S> {
    inner: S,
    verifier: Arc<Verifier>,
    methods: MethodPermissions,
}

impl<S> std::fmt::Debug for Authorized<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorized").field("methods", &self.methods.len()).finish_non_exhaustive()
    }
}

impl<S: NamedService> NamedService for Authorized<S> {
    const NAME: &'static str = S::NAME;
}

impl<S: NamedService> Authorized<S> {
    /// The verified caller of `req` if its roles allow the method it calls; a refusal carries the
    /// caller when the token was valid (a permission denied), so the refusal can be audited.
    fn check(&self, req: &http::Request<impl Sized>) -> Result<Principal, (Status, Option<Principal>)> {
        let metadata = tonic::metadata::MetadataMap::from_headers(req.headers().clone());
        let principal = self.verifier.verify_metadata(&metadata).map_err(|err| (Status::from(err), None))?;
        self.allowed(req, &principal).map_err(|status| (status, Some(principal.clone())))?;
        Ok(principal)
    }

    /// Whether `principal`'s roles allow the method `req` calls.
    fn allowed(&self, req: &http::Request<impl Sized>, principal: &Principal) -> Result<(), Status> {
        let method =
            req.uri().path().strip_prefix('/').and_then(|p| p.strip_prefix(S::NAME)).and_then(|p| p.strip_prefix('/'));
        let permission = method.and_then(|m| self.methods.iter().find(|(name, _)| *name == m)).map(|(_, p)| *p);
        let Some(permission) = permission else {
            tracing::error!(service = S::NAME, path = %req.uri().path(), "grpc method without a declared permission refused");
            return Err(Status::permission_denied(format!("{} has no declared permission", req.uri().path())));
        };
        getlood_auth::require(&principal.roles, permission)?;
        Ok(())
    }
}

impl<S, B> tower::Service<http::Request<B>> for Authorized<S>
where
    S: NamedService + tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        std::future::Ready<Result<Self::Response, Self::Error>>,
        futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.check(&req) {
            Ok(principal) => {
                let caller = caller_of(&principal, req.headers());
                req.extensions_mut().insert(caller);
                req.extensions_mut().insert(principal.clone());
                // The response carries the caller too, for layers outside (the gateway's audit).
                let call = self.inner.call(req);
                futures::future::Either::Right(Box::pin(async move {
                    let mut response = call.await?;
                    response.extensions_mut().insert(principal);
                    Ok(response)
                }))
            }
            Err((status, principal)) => {
                let mut response = status.into_http();
                if let Some(principal) = principal {
                    response.extensions_mut().insert(principal);
                }
                futures::future::Either::Left(std::future::ready(Ok(response)))
            }
        }
    }
}

/// The [`Caller`] of a verified request: the principal, the request id and the `grpc-timeout`
/// deadline, so onward calls carry them.
fn caller_of(principal: &Principal, headers: &http::HeaderMap) -> Caller {
    let request_id = headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let deadline = headers
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map(|t| Instant::now() + t);
    Caller { principal: principal.clone(), request_id, deadline }
}

/// The verified caller of a request that went through [`authenticate`] or [`authorize`].
pub fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    // Absent only if a service forgot the interceptor: refuse rather than guess a tenant.
    req.extensions().get::<Principal>().ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// The caller of a request that went through [`authenticate`] or [`authorize`], for onward calls.
pub fn caller<T>(req: &Request<T>) -> Result<&Caller, Status> {
    req.extensions().get::<Caller>().ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// `grpc-timeout` (`<digits><unit>`, at most 8 digits, units H M S m u n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        for bad in ["", "S", "5", "5x", "123456789S", "-1S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
