//! Cross-origin access for browsers (REST, SSE, and gRPC-Web on the HTTP port): the origins of
//! `app.cors_allowed_origins` may call the gateway with credentials. The layer runs outside
//! authentication, so a preflight (`OPTIONS`, which carries no token) is answered here and never
//! reaches `require_auth`. With no origin configured (the default) there is no CORS layer at
//! all: browsers then refuse cross-origin calls, as the same-origin policy says.

use std::time::Duration;

use getlood_config::ConfigError;
use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The setting's name in errors.
const SETTING: &str = "app.cors_allowed_origins";

/// How long a browser may cache a preflight answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// Request headers a browser may send: the bearer token, bodies, optimistic concurrency,
/// idempotency, SSE resume, request ids, trace context, and gRPC-Web's own.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "if-match",
    "idempotency-key",
    "last-event-id",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
];

/// Response headers a browser script may read: versions, back-off hints, the request id, the
/// rate-limit budget, and gRPC-Web's status (in the headers of a trailers-only answer) with
/// GETLOOD's error detail.
const EXPOSED_HEADERS: &[&str] = &[
    "etag",
    "retry-after",
    "x-request-id",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "grpc-status",
    "grpc-message",
    "getlood-error-bin",
];

/// Checks `origins` (each `scheme://host[:port]`, http or https, exactly as a browser sends
/// its `Origin`: no path, no trailing slash, no user info, no wildcard, since credentials are
/// allowed), naming the setting and the first bad entry.
pub(crate) fn check_origins(origins: &[String]) -> Result<(), ConfigError> {
    for origin in origins {
        check_origin(origin).map_err(|why| ConfigError::invalid(SETTING, format!("'{origin}' {why}")))?;
    }
    Ok(())
}

fn check_origin(origin: &str) -> Result<(), &'static str> {
    if origin == "*" || origin.contains('*') {
        return Err("is a wildcard: credentials are allowed, so list each origin, e.g. https://app.example.com");
    }
    let uri: http::Uri = origin.parse().map_err(|_| "is not an origin such as https://app.example.com")?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err("is not an origin such as https://app.example.com (scheme and host are required)");
    };
    if scheme != "http" && scheme != "https" {
        return Err("must use http or https");
    }
    if authority.as_str().contains('@') {
        return Err("must not carry user info");
    }
    if authority.host().is_empty() {
        return Err("has no host");
    }
    // What a browser sends: `scheme://authority`, nothing after it (not even a slash).
    if origin != format!("{scheme}://{authority}") {
        return Err("must be scheme://host[:port] with no path, query or trailing slash");
    }
    if origin.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("must be lowercase, as browsers send it");
    }
    Ok(())
}

/// The CORS layer of `origins`, or `None` when there are none. The origins were checked when
/// the configuration was loaded ([`check_origins`]); one that still does not make a header
/// value is left out, not a panic.
pub(crate) fn layer(origins: &[String]) -> Option<CorsLayer> {
    let allowed: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    if allowed.is_empty() {
        return None;
    }
    let names = |list: &[&'static str]| list.iter().map(|h| HeaderName::from_static(h)).collect::<Vec<_>>();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers(names(ALLOWED_HEADERS))
            .expose_headers(names(EXPOSED_HEADERS))
            .max_age(PREFLIGHT_MAX_AGE),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_precisely() {
        assert!(check_origins(&["http://localhost:5173".into(), "https://app.example.com".into()]).is_ok());
        for (bad, why) in [
            ("*", "wildcard"),
            ("https://*.example.com", "wildcard"),
            ("localhost:5173", "scheme"),
            ("ftp://example.com", "http or https"),
            ("https://app.example.com/", "trailing slash"),
            ("https://app.example.com/path", "no path"),
            ("https://user@app.example.com", "user info"),
            ("https://App.example.com", "lowercase"),
            ("not an origin", "origin"),
        ] {
            let err = check_origins(&[bad.to_owned()]).unwrap_err().to_string();
            assert!(err.contains(SETTING) && err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn no_origin_no_layer() {
        assert!(layer(&[]).is_none());
        assert!(layer(&["http://localhost:5173".into()]).is_some());
    }
}
