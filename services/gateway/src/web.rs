//! The web desktop (issue 16): the static files of `app.web_dir` (the built `web/dist`) served at
//! `/` as the router's fallback, so every API route keeps precedence and an unknown API path
//! stays a JSON 404.
//!
//! A path that names no file and is not an API path gets `index.html` (the app routes in the
//! browser). Hashed bundles under `/assets/` are cached for a year as immutable; everything else
//! (`index.html` first) is revalidated on every load, so a new release is picked up at once.
//! Every answer carries a Content-Security-Policy without inline scripts, `nosniff` and a
//! referrer policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use getlood_common::{ApiError, ErrorCode};
use http::{HeaderValue, Method, header};
use tower::ServiceExt as _;
use tower_http::services::{ServeDir, ServeFile};

/// Prefixes of the gateway's own surfaces: never answered with the app, so a mistyped API path
/// is a JSON 404 a client can read, not a 200 HTML page.
const API_PREFIXES: &[&str] = &[
    "/api/",
    "/v1/",
    "/graphql",
    "/mcp",
    "/a2a/",
    "/ws/",
    "/.well-known/",
    "/openapi.json",
    "/livez",
    "/readyz",
    "/getlood.",
];
/// Where the bundler writes its content-hashed files.
const ASSETS: &str = "/assets/";
/// Cache of a hashed asset: its name changes with its content.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Cache of everything else: revalidate every time.
const REVALIDATE: &str = "no-cache";

/// The app's files and the policy their answers carry.
#[derive(Debug, Clone)]
pub(crate) struct WebApp {
    /// The SPA: files, else `index.html`.
    app: ServeDir<ServeFile>,
    /// Hashed assets only: a missing one is a 404, never `index.html` under a year-long cache.
    assets: ServeDir,
    /// `connect-src` origins besides the page's own (the OpenID provider's token endpoint).
    extra_connect: Arc<str>,
}

impl WebApp {
    /// The app in `dir`, or `None` (logged) when `dir` has no `index.html`: a gateway whose image
    /// was built without the app still serves the API.
    pub(crate) fn new(dir: &Path, oidc_token_endpoint: Option<&str>) -> Option<Self> {
        let index = dir.join("index.html");
        if !index.is_file() {
            tracing::warn!(web_dir = %dir.display(), "app.web_dir has no index.html; the web app is not served");
            return None;
        }
        tracing::info!(web_dir = %dir.display(), "serving the web app at /");
        let extra_connect = oidc_token_endpoint.and_then(origin).unwrap_or_default();
        Some(Self {
            app: ServeDir::new(dir).append_index_html_on_directories(true).fallback(ServeFile::new(index)),
            assets: ServeDir::new(PathBuf::from(dir)),
            extra_connect: Arc::from(extra_connect),
        })
    }

    /// Answers a request no route matched.
    pub(crate) async fn serve(self, req: Request) -> Response {
        let path = req.uri().path();
        if API_PREFIXES.iter().any(|p| path.starts_with(p))
            || !(req.method() == Method::GET || req.method() == Method::HEAD)
        {
            return not_found(&req);
        }
        let asset = path.starts_with(ASSETS);
        let host =
            req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).filter(|h| is_host(h)).map(str::to_owned);
        let served = if asset { self.assets.oneshot(req).await } else { self.app.oneshot(req).await };
        let mut response = match served {
            Ok(response) => response.map(Body::new),
            Err(err) => {
                tracing::warn!(error = %err, "web app file not served");
                ApiError::unavailable("the web app cannot be read").into_response()
            }
        };
        let cache = if asset && response.status().is_success() { IMMUTABLE } else { REVALIDATE };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if let Ok(csp) = HeaderValue::from_str(&policy(host.as_deref(), &self.extra_connect)) {
            headers.insert(header::CONTENT_SECURITY_POLICY, csp);
        }
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        response
    }
}

/// The router's JSON 404 (what an unknown path answers without the app).
pub(crate) fn not_found(req: &Request) -> Response {
    ApiError::new(ErrorCode::NotFound, format!("no route for {} {}", req.method(), req.uri().path())).into_response()
}

/// The Content-Security-Policy of the app: its own origin only, no inline or evaluated script,
/// never framed. `connect-src` names the page's own WebSocket origins too (`'self'` covers
/// them only in CSP 3 browsers) and, in `oidc` mode, the provider the browser trades its code
/// with.
fn policy(host: Option<&str>, extra_connect: &str) -> String {
    let mut connect = String::from("'self'");
    if let Some(host) = host {
        connect.push_str(&format!(" ws://{host} wss://{host}"));
    }
    if !extra_connect.is_empty() {
        connect.push(' ');
        connect.push_str(extra_connect);
    }
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         font-src 'self' data:; connect-src {connect}; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

/// Whether a `Host` value is a plain host[:port] (no character that could end the directive).
fn is_host(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 255
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then(|| parsed.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_pages_own_sockets_and_no_inline_script() {
        let csp = policy(Some("app.example.com"), "");
        assert!(csp.starts_with("default-src 'self'; script-src 'self';"), "{csp}");
        assert!(csp.contains("connect-src 'self' ws://app.example.com wss://app.example.com;"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe-eval"));
        let with_idp = policy(None, "https://login.example.com");
        assert!(with_idp.contains("connect-src 'self' https://login.example.com;"), "{with_idp}");
        assert_eq!(
            origin("https://login.example.com:8443/oauth/token?x=1").as_deref(),
            Some("https://login.example.com:8443")
        );
        assert_eq!(origin("javascript:alert(1)"), None);
    }

    #[test]
    fn only_plain_hosts_reach_the_header() {
        assert!(is_host("localhost:8080") && is_host("[::1]:8080") && is_host("app.example.com"));
        assert!(!is_host("evil.com; script-src *") && !is_host("") && !is_host("a b"));
    }
}
