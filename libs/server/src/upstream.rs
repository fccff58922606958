//! The one client for service-to-service calls: how a channel to another service is made, and
//! what every call carries (the caller's own bearer token, the W3C trace context, the request
//! id and the caller's remaining deadline).

use std::time::{Duration, Instant};

use getlood_auth::Principal;
use tonic::transport::Endpoint;

use crate::balance::{Target, UpstreamChannel};
use crate::{Error, Result};

/// Who a call is made for: the verified caller, the request id to correlate logs with, and
/// the instant by which the caller wants an answer.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The verified caller; its token is forwarded so the callee re-verifies it and scopes
    /// everything to its tenant (no service vouches for another's tenant).
    pub principal: Principal,
    /// `x-request-id` of the originating request, when there is one.
    pub request_id: Option<String>,
    /// When the caller stops waiting (its `grpc-timeout`), when it gave one.
    pub deadline: Option<Instant>,
}

impl Caller {
    /// Wraps `message` for an upstream call on behalf of this caller ([`request`]).
    pub fn request<T>(&self, message: T, timeout: Option<Duration>) -> tonic::Request<T> {
        request(&self.principal, self.request_id.as_deref(), self.deadline, message, timeout)
    }
}

/// Wraps `message` for an upstream call on behalf of `principal`: bearer token, trace context
/// of the current span, `request_id`, and a `grpc-timeout` of the smaller of `timeout` and the
/// time left before `deadline` (none when both are absent: a stream whose length is bounded by
/// its own idle and total deadlines). Borrows the caller's parts, so a hot path that has them
/// builds no [`Caller`].
pub fn request<T>(
    principal: &Principal,
    request_id: Option<&str>,
    deadline: Option<Instant>,
    message: T,
    timeout: Option<Duration>,
) -> tonic::Request<T> {
    let mut headers = http::HeaderMap::new();
    getlood_telemetry::inject_context(&mut getlood_telemetry::HeaderInjector(&mut headers));
    if let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {}", principal.token)) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    if let Some(value) = request_id.and_then(|id| http::HeaderValue::from_str(id).ok()) {
        headers.insert(REQUEST_ID, value);
    }
    let mut req = tonic::Request::new(message);
    *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
    let timeout = match (timeout, remaining) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(t) = timeout {
        req.set_timeout(t);
    }
    req
}

/// Header and metadata key of the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Deadlines of the channels to other services.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    /// Time allowed to open a connection.
    pub connect: Duration,
    /// Deadline of every call until its response headers (a unary call's whole answer).
    pub request: Duration,
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        Self { connect: Duration::from_secs(2), request: Duration::from_secs(10) }
    }
}

/// A lazily connected channel to another service: made once at start, cloned per call (a tonic
/// `Channel` multiplexes HTTP/2 streams and reconnects by itself). The service starts while the
/// other is down, and a call to it then fails fast with UNAVAILABLE instead of hanging.
///
/// `http://host:port` is one channel to that address (a ClusterIP Service balances connections,
/// so all of this client's calls go to one pod); `dns://host:port[?refresh=5s]` balances every
/// call over each address the name resolves to (a headless Service), health-aware
/// ([`crate::balance`]).
#[derive(Debug, Clone)]
pub struct Upstream {
    channel: UpstreamChannel,
    timeouts: UpstreamTimeouts,
}

impl Upstream {
    /// A channel named `name` (for errors, logs and metrics) to `url`, without dialing (a
    /// `dns://` url starts resolving in the background).
    pub fn connect_lazy(name: &'static str, url: &str, timeouts: UpstreamTimeouts) -> Result<Self> {
        let bad = |message: String| Error::Url { what: name, message: format!("'{url}': {message}") };
        let channel = match Target::parse(url).map_err(bad)? {
            Target::Single => {
                let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| bad(e.to_string()))?;
                let authority = endpoint.uri().authority().map_or_else(String::new, ToString::to_string);
                UpstreamChannel::single(name, authority, configure(endpoint, timeouts).connect_lazy())
            }
            // A call waits for an endpoint at most as long as connecting and answering take.
            Target::Dns(target) => {
                UpstreamChannel::balanced(name, target, timeouts.connect + timeouts.request, move |e| {
                    configure(e, timeouts)
                })
            }
        };
        Ok(Self { channel, timeouts })
    }

    /// A generated client over the channel, e.g. `upstream.client(PipelineServiceClient::new)`.
    pub fn client<C>(&self, make: impl FnOnce(UpstreamChannel) -> C) -> C {
        make(self.channel.clone())
    }

    /// `message` wrapped for a unary call on behalf of `caller`, under the default deadline
    /// (or the caller's remaining time, if shorter).
    pub fn unary<T>(&self, caller: &Caller, message: T) -> tonic::Request<T> {
        caller.request(message, Some(self.timeouts.request))
    }
}

/// The settings of every connection to another service (each endpoint's, when balanced).
fn configure(endpoint: Endpoint, timeouts: UpstreamTimeouts) -> Endpoint {
    endpoint
        .connect_timeout(timeouts.connect)
        // Time to the response headers: bounds a unary call, and a stream until it starts;
        // a stream's body has its handler's idle and total deadlines instead.
        .timeout(timeouts.request)
        .tcp_nodelay(true)
        // Detects a silently dead peer under a long stream (chat answers, subscriptions).
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            tenant: getlood_auth::TenantId::parse("acme").unwrap(),
            user: "u".into(),
            roles: vec![],
            expires_at: 0,
            token: "tok".into(),
        }
    }

    #[test]
    fn a_call_carries_token_request_id_and_the_shorter_deadline() {
        let mut caller = Caller { principal: principal(), request_id: Some("rid-1".into()), deadline: None };
        caller.deadline = Some(Instant::now() + Duration::from_secs(2));
        let req = caller.request((), Some(Duration::from_secs(10)));
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer tok");
        assert_eq!(req.metadata().get(REQUEST_ID).unwrap(), "rid-1");
        let timeout = req.metadata().get("grpc-timeout").unwrap().to_str().unwrap().to_owned();
        let (value, unit) = timeout.split_at(timeout.len() - 1);
        let nanos_per_unit: u128 = match unit {
            "H" => 3_600_000_000_000,
            "M" => 60_000_000_000,
            "S" => 1_000_000_000,
            "m" => 1_000_000,
            "u" => 1_000,
            _ => 1,
        };
        let nanos = value.parse::<u128>().unwrap() * nanos_per_unit;
        assert!(nanos <= 2_000_000_000 && nanos > 1_000_000_000, "{timeout}");
        let req = Caller { principal: principal(), request_id: None, deadline: None }.request((), None);
        assert!(req.metadata().get("grpc-timeout").is_none());
    }
}
