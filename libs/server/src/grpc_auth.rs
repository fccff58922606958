//! Bearer verification for a service's own gRPC API. Every service re-verifies the caller's
//! token (forwarded by the gateway), so the tenant is never taken from a message field.

use std::sync::Arc;
use std::time::{Duration, Instant};

use getlood_auth::{Principal, Verifier};
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

/// The verified caller of a request that went through [`authenticate`].
pub fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    // Absent only if a service forgot the interceptor: refuse rather than guess a tenant.
    req.extensions().get::<Principal>().ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// The caller of a request that went through [`authenticate`], for onward calls.
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
