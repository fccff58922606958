//! Calls of the nodes that reach outside the platform (issue 15): `a2a_agent` sends a message
//! to a remote A2A 1.0 agent ([`a2a`]), `mcp_tool` calls a tool of a remote MCP server
//! ([`mcp`]).
//!
//! One HTTP client serves both, built so that the egress policy (`app.egress.allow`) holds for
//! every connection, not only for the URL as written: host names are resolved here and every
//! address they resolve to must pass ([`EgressResolver`]; a name answering with the metadata
//! address among public ones is refused), redirects are not followed (a 30x to an internal
//! address would otherwise pass), and no proxy from the environment is used (it would resolve
//! the names instead of us). Every answer is read within a size bound, and every text that
//! leaves a node (its output, its progress, its errors) is scrubbed of the node's credentials
//! ([`Scrub`]): a remote that echoes the token back does not get it into the run.

pub(crate) mod a2a;
pub(crate) mod mcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use getlood_common::egress::{EgressError, EgressPolicy};
use serde_json::Value;
use tokio_util::task::TaskTracker;

use crate::model::{Credentials, REDACTED};
use crate::nodes::NodeError;

/// Time to open a connection to a remote.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest text of a remote's error shown in a run, in characters.
const MAX_ERROR_CHARS: usize = 300;
/// Longest answer text (or tool text) a node outputs, in bytes; a longer one is cut and the
/// output says `"truncated": true`. The same bound as one template rendering.
pub(crate) const MAX_OUTPUT_BYTES: usize = crate::model::MAX_RENDERED_BYTES;
/// Progress events one attempt relays into the run (each is a commit and an event).
pub(crate) const MAX_RELAYED_PROGRESS: usize = 32;

/// A node's intermediate state, as the remote reported it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProgressUpdate {
    /// The remote's state name, e.g. `TASK_STATE_WORKING`.
    pub state: String,
    /// The remote's status text (scrubbed), possibly empty.
    pub message: String,
    /// The remote's id of the work (the A2A task id).
    pub remote_id: String,
}

/// Where a running node reports its progress (the engine records it in the run).
pub(crate) trait Progress: Sync {
    /// Records one update; failures are the recorder's to log, never the node's.
    fn report(&self, update: ProgressUpdate) -> impl Future<Output = ()> + Send;
}

/// No progress recorded (unit tests).
impl Progress for () {
    async fn report(&self, _update: ProgressUpdate) {}
}

/// The client of the remote nodes and what they need besides it.
#[derive(Clone, Debug)]
pub(crate) struct Remote {
    http: reqwest::Client,
    egress: EgressPolicy,
    /// Best-effort work left behind by a node that stopped (a remote task's cancellation): the
    /// runtime's tracker, so shutdown waits for it (bounded by its own timeout).
    tracker: TaskTracker,
}

impl Remote {
    /// The client, checking every connection against `egress`.
    pub(crate) fn new(egress: EgressPolicy, tracker: TaskTracker) -> Result<Self, String> {
        let http = getlood_tls::http_client_builder(None)
            .map_err(|e| e.to_string())?
            .dns_resolver(Arc::new(EgressResolver(egress.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("getlood-workflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { http, egress, tracker })
    }

    /// Checks `url` (a node's, or one a remote named) against the egress policy; `what` names it
    /// in the refusal.
    pub(crate) fn check_url(&self, what: &str, url: &str) -> Result<(), NodeError> {
        self.egress.check_url(url).map_err(|e| NodeError::Permanent(format!("{what} {e}")))
    }

    /// The egress policy.
    pub(crate) fn egress(&self) -> &EgressPolicy {
        &self.egress
    }
}

/// Resolves host names and lets a connection go only to addresses the egress policy allows.
struct EgressResolver(EgressPolicy);

/// A name that resolved to a refused address.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {error}")]
struct ResolvedRefused {
    host: String,
    error: EgressError,
}

impl reqwest::dns::Resolve for EgressResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            // Every address must pass, not only the one the client happens to try first.
            for addr in &addrs {
                policy
                    .check_resolved(&host, addr.ip())
                    .map_err(|error| ResolvedRefused { host: host.clone(), error })?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What a node shows of a URL: scheme, host, port and path, never the query (it may hold a
/// key), cut to 200 characters.
pub(crate) fn shown_url(raw: &str) -> String {
    let shown = match url::Url::parse(raw) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}{}", u.scheme(), u.host_str().unwrap_or_default(), u.path())
        }
        Err(_) => "(an invalid url)".to_owned(),
    };
    shown.chars().take(200).collect()
}

/// Removes a node's credentials from texts that leave it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scrub(Vec<String>);

impl Scrub {
    /// Scrubs the values of `credentials`.
    pub(crate) fn new(credentials: &Credentials) -> Self {
        // Very short values would blank out ordinary text and protect nothing.
        Self(credentials.secrets().into_iter().filter(|s| s.len() >= 4).collect())
    }

    /// `text` with every credential replaced by [`REDACTED`].
    pub(crate) fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.0 {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    /// `value` with every string (and key) scrubbed.
    pub(crate) fn value(&self, value: Value) -> Value {
        if self.0.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (self.text(&k), self.value(v))).collect()),
            other => other,
        }
    }

    /// A remote's text as a run shows it: scrubbed, control characters folded to spaces, cut
    /// to [`MAX_ERROR_CHARS`].
    pub(crate) fn summary(&self, text: &str) -> String {
        let clean: String = self.text(text).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let clean = clean.trim();
        if clean.chars().count() > MAX_ERROR_CHARS {
            format!("{}…", clean.chars().take(MAX_ERROR_CHARS - 1).collect::<String>())
        } else {
            clean.to_owned()
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, and whether it was cut.
pub(crate) fn cut(mut text: String, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

/// The request headers of a node's credentials.
pub(crate) fn credential_headers(credentials: &Credentials) -> Result<reqwest::header::HeaderMap, NodeError> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut map = HeaderMap::new();
    // Validation allowed only header-safe names and values; a stored graph that somehow is not
    // is refused rather than sent half.
    let bad = || NodeError::Permanent("the node's headers are not valid HTTP headers".to_owned());
    for (name, value) in &credentials.headers {
        let mut v = HeaderValue::from_str(value).map_err(|_| bad())?;
        v.set_sensitive(true);
        map.insert(HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?, v);
    }
    if let Some(token) = &credentials.bearer {
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| bad())?;
        v.set_sensitive(true);
        map.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(map)
}

/// A request that got no HTTP answer, as a node error: refused by the egress policy when a
/// name resolved to a refused address (permanent), otherwise transient (the remote may be
/// back on the next attempt). The text never carries the URL's query.
pub(crate) fn send_failed(what: &str, url: &str, err: &reqwest::Error) -> NodeError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<ResolvedRefused>() {
            return NodeError::Permanent(format!("{what}: {refused}"));
        }
        source = e.source();
    }
    let why = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    tracing::info!(url = %shown_url(url), error = %err.without_url_ref(), "remote node request failed");
    NodeError::Transient(format!("{what}: {why} ({})", shown_url(url)))
}

/// An HTTP answer that is not a success, as a node error: 408, 429 and 5xx may pass on
/// another attempt; other statuses will not.
pub(crate) fn status_failed(what: &str, url: &str, status: reqwest::StatusCode) -> NodeError {
    let text = match status.as_u16() {
        401 | 403 => format!("{what}: {} refused the node's credentials (HTTP {})", shown_url(url), status.as_u16()),
        404 => format!("{what}: nothing at {} (HTTP 404)", shown_url(url)),
        code @ 300..=399 => {
            format!("{what}: {} answered a redirect (HTTP {code}), which remote nodes do not follow", shown_url(url))
        }
        code => format!("{what}: {} answered HTTP {code}", shown_url(url)),
    };
    if matches!(status.as_u16(), 408 | 429) || status.is_server_error() {
        NodeError::Transient(text)
    } else {
        NodeError::Permanent(text)
    }
}

/// The body of `resp`, refused past `max` bytes (announced or read).
pub(crate) async fn read_bounded(
    what: &str,
    url: &str,
    resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, NodeError> {
    let too_big =
        || NodeError::Permanent(format!("{what}: the answer of {} is larger than {max} bytes", shown_url(url)));
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| send_failed(what, url, &e))?;
        if body.len() + chunk.len() > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    /// The error's text without its URL (whose query may hold a key).
    fn without_url_ref(&self) -> String {
        let mut text = self.to_string();
        if let Some(url) = self.url() {
            text = text.replace(url.as_str(), &shown_url(url.as_str()));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_credentials_everywhere() {
        let creds = Credentials {
            bearer: Some("tok-very-secret".to_owned()),
            headers: vec![("x-key".to_owned(), "k-123456".to_owned()), ("x-short".to_owned(), "ab".to_owned())],
        };
        let scrub = Scrub::new(&creds);
        assert_eq!(scrub.text("Bearer tok-very-secret rejected"), "Bearer [redacted] rejected");
        let v = scrub.value(serde_json::json!({"a": ["k-123456"], "tok-very-secret": 1, "n": 2}));
        assert_eq!(v, serde_json::json!({"a": ["[redacted]"], "[redacted]": 1, "n": 2}));
        // Two-letter values are not hunted for in ordinary text.
        assert_eq!(scrub.text("about"), "about");
        let long = format!("line\nbreak {}", "x".repeat(400));
        let summary = scrub.summary(&long);
        assert!(summary.starts_with("line break") && summary.chars().count() == MAX_ERROR_CHARS, "{summary}");
    }

    #[test]
    fn urls_are_shown_without_their_query() {
        assert_eq!(shown_url("https://a.example:8443/mcp?key=s3cret#x"), "https://a.example:8443/mcp");
        assert_eq!(shown_url("not a url"), "(an invalid url)");
        assert_eq!(cut("héllo".to_owned(), 2), ("h".to_owned(), true));
        assert_eq!(cut("ok".to_owned(), 2), ("ok".to_owned(), false));
    }

    #[test]
    fn statuses_map_to_retry_or_not() {
        use reqwest::StatusCode as S;
        assert!(matches!(status_failed("x", "http://a/", S::SERVICE_UNAVAILABLE), NodeError::Transient(_)));
        assert!(matches!(status_failed("x", "http://a/", S::TOO_MANY_REQUESTS), NodeError::Transient(_)));
        let e = status_failed("agent card", "http://a/card?token=t", S::UNAUTHORIZED);
        assert_eq!(
            e,
            NodeError::Permanent("agent card: http://a/card refused the node's credentials (HTTP 401)".into())
        );
        assert!(matches!(status_failed("x", "http://a/", S::FOUND), NodeError::Permanent(m) if m.contains("redirect")));
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_not_connected_to() {
        getlood_tls::install_crypto_provider();
        let remote = Remote::new(EgressPolicy::default(), TaskTracker::new()).unwrap();
        // `localhost` resolves to loopback: the resolver refuses it before any connection (the
        // node's URL check refuses this name too, as a fixed alias; other names that resolve to
        // internal addresses meet only the resolver).
        let err = remote.http.get("http://localhost:9/").send().await.unwrap_err();
        let refused = send_failed("card", "http://localhost:9/", &err);
        assert!(
            matches!(&refused, NodeError::Permanent(m) if m.contains("resolves to") && m.contains("loopback")),
            "{refused:?}"
        );
    }
}
