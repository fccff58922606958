//! Bearer verification for a service's own gRPC API. Every service re-verifies the caller's
//! token (forwarded by the gateway), so the tenant is never taken from a message field.

use std::sync::Arc;

use getlood_auth::{Principal, Verifier};
use tonic::{Request, Status};

/// A tonic interceptor that verifies the `authorization` metadata and stores the
/// [`Principal`] in the request extensions. Health and reflection are not wrapped by it.
pub fn authenticate(
    verifier: Arc<Verifier>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone + Send + Sync + 'static {
    move |mut req: Request<()>| {
        let principal = verifier.verify_metadata(req.metadata())?;
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// The verified caller of a request that went through [`authenticate`].
pub fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    // Absent only if a service forgot the interceptor: refuse rather than guess a tenant.
    req.extensions().get::<Principal>().ok_or_else(|| Status::unauthenticated("missing bearer token"))
}
