//! The audit log's producer (issue 13): every mutation (any method but `GET` and `HEAD`) and
//! every refused request (401, 403) of the router becomes an `audit.recorded` event on the
//! tenant's audit stream; a request whose token could not be verified has no tenant and is
//! published under the reserved `_unauthenticated` subject, which no tenant reads.
//!
//! [`record`] runs as the outermost route layer, around `require_auth` and the permission
//! check, so it sees their refusals and the matched route template. It never waits on NATS:
//! events go through a bounded channel to one publisher task ([`AuditSink::start`]); when the
//! channel is full the event is dropped, counted in [`METRIC_DROPPED`] and logged.
//!
//! Rate-limit refusals (429) are collapsed: a client hammering past its budget would otherwise
//! turn every refused request into an event (8,800 a second in the fair-share bench), and the
//! audit stream, JetStream and the store behind it would carry the flood the limiter exists to
//! stop. The first refusal of a (tenant, user, route) in [`REFUSAL_WINDOW`] is recorded; the
//! others are counted ([`METRIC_SUPPRESSED`]) and the next recorded refusal of that key says how
//! many were collapsed into it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, EventEnvelope, Payload};
use getlood_proto::events::v1::{AuditEvent, AuditOutcome};
use http::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::AppState;

/// Audit events dropped before reaching JetStream, by `reason` (`buffer_full`, `publish`).
pub const METRIC_DROPPED: &str = "getlood_gateway_audit_dropped_total";
/// Audit events JetStream acknowledged.
pub const METRIC_PUBLISHED: &str = "getlood_gateway_audit_published_total";
/// Rate-limit refusals collapsed into an earlier refusal's event instead of recorded alone.
pub const METRIC_SUPPRESSED: &str = "getlood_gateway_audit_suppressed_total";

/// Within this time after a recorded 429 of a (tenant, user, route), further 429s of the same key
/// are counted, not recorded.
const REFUSAL_WINDOW: Duration = Duration::from_secs(10);
/// Keys of the refusal throttle above which the ones whose window ended are swept.
const REFUSAL_SWEEP_AT: usize = 10_000;

/// Events waiting for the publisher; beyond this the request path drops rather than waits.
const BUFFER: usize = 4096;
/// Events published concurrently by the publisher task.
const BATCH: usize = 64;
/// How long the publisher keeps flushing queued events after shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest path id or user agent kept in an event, in characters.
const MAX_FIELD_CHARS: usize = 256;
/// Trailing literal segments of a `POST` route that name the action itself
/// (`/api/v1/desktops/{id}/save` is `desktops.save`, not `desktops.save.create`).
const POST_VERBS: &[&str] = &["approve", "cancel", "execute", "restore", "save", "schedule", "validate"];

/// Who made an authenticated request: `require_auth` stores it in the response's extensions,
/// where [`record`] (outside it) finds it.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    /// The verified tenant.
    pub tenant: TenantId,
    /// The verified user (`sub`).
    pub user: String,
}

/// What a handler tells the audit log, in its response's extensions, when its route does not
/// say what it did (one `POST /graphql` reads or writes anything).
#[derive(Debug, Clone)]
pub(crate) enum Described {
    /// Nothing was changed: recorded only when refused, as a `GET`.
    Read,
    /// A write, recorded as `action` (e.g. `graphql.createAgent`) with the status REST would
    /// have answered (a refusal inside a 200 GraphQL answer is a 403) and its error message.
    Write { action: String, status: StatusCode, reason: String },
}

/// Why a request was refused, stored in the response's extensions by the middleware that
/// refused it (authentication or the permission check).
#[derive(Debug, Clone)]
pub(crate) struct Refusal(pub String);

/// The request path's side of the audit log: a bounded queue to the publisher task.
#[derive(Debug, Clone)]
pub(crate) struct AuditSink {
    tx: mpsc::Sender<EventEnvelope>,
    dropped: Arc<AtomicU64>,
    refusals: Arc<RefusalThrottle>,
    /// `app.client_ip_forwarded_hops`: how many proxies in front of the gateway append to
    /// `X-Forwarded-For` (0: the peer address is the client).
    forwarded_hops: usize,
}

impl AuditSink {
    /// Starts the publisher on `tracker`; it flushes what is queued when `shutdown` fires
    /// (for at most [`DRAIN_TIMEOUT`]) and then ends.
    pub(crate) fn start(
        bus: EventBus,
        forwarded_hops: usize,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        tracker.spawn(publish_loop(bus, rx, shutdown, dropped.clone()));
        Self { tx, dropped, refusals: Arc::new(RefusalThrottle::default()), forwarded_hops }
    }

    /// Queues `event` without waiting; a full queue (or a stopped publisher) drops it.
    fn submit(&self, event: EventEnvelope) {
        if let Err(err) = self.tx.try_send(event) {
            let reason = match err {
                mpsc::error::TrySendError::Full(_) => "buffer_full",
                mpsc::error::TrySendError::Closed(_) => "stopped",
            };
            dropped(&self.dropped, reason, 1);
        }
    }
}

/// Counts `n` dropped events and logs the first drop and every thousandth after it, so an
/// outage is visible without one log line per request.
fn dropped(total: &AtomicU64, reason: &'static str, n: u64) {
    metrics::counter!(METRIC_DROPPED, "reason" => reason).increment(n);
    let before = total.fetch_add(n, Ordering::Relaxed);
    if before == 0 || before / 1000 != (before + n) / 1000 {
        tracing::warn!(reason, dropped_total = before + n, "audit events dropped");
    }
}

/// Collapses repeated rate-limit refusals of one (tenant, user, route) into one event per
/// [`REFUSAL_WINDOW`].
#[derive(Debug, Default)]
struct RefusalThrottle {
    /// Key to (when its last refusal was recorded, refusals collapsed since).
    seen: Mutex<HashMap<String, (Instant, u64)>>,
}

impl RefusalThrottle {
    /// `Some(n)` when this refusal is to be recorded, `n` being the refusals of the key collapsed
    /// since the last recorded one; `None` when it is collapsed.
    fn admit(&self, key: String, now: Instant) -> Option<u64> {
        let Ok(mut seen) = self.seen.lock() else {
            return Some(0);
        };
        if let Some((recorded, collapsed)) = seen.get_mut(&key)
            && now.duration_since(*recorded) < REFUSAL_WINDOW
        {
            *collapsed += 1;
            metrics::counter!(METRIC_SUPPRESSED).increment(1);
            return None;
        }
        if seen.len() >= REFUSAL_SWEEP_AT {
            // A swept key's collapsed count is only in the metric; its next refusal starts over.
            seen.retain(|_, (recorded, _)| now.duration_since(*recorded) < REFUSAL_WINDOW);
        }
        let collapsed = seen.insert(key, (now, 0)).map_or(0, |(_, n)| n);
        Some(collapsed)
    }
}

async fn publish_loop(
    bus: EventBus,
    mut rx: mpsc::Receiver<EventEnvelope>,
    shutdown: CancellationToken,
    total_dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            // `recv_many` is cancel safe: nothing received is lost when shutdown wins.
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                publish_batch(&bus, &mut batch, &total_dropped).await;
            }
            () = shutdown.cancelled() => break,
        }
    }
    // Requests still draining may queue a few more; they are taken until the deadline.
    rx.close();
    let drain = async {
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            publish_batch(&bus, &mut batch, &total_dropped).await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        let left = u64::try_from(rx.len()).unwrap_or(u64::MAX);
        dropped(&total_dropped, "shutdown", left);
    }
}

/// Publishes `batch` concurrently (each waits for its JetStream ack) and empties it.
async fn publish_batch(bus: &EventBus, batch: &mut Vec<EventEnvelope>, total_dropped: &AtomicU64) {
    let results = futures::future::join_all(batch.iter().map(|event| bus.publish(Domain::Audit, event))).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(err)) = results.iter().find(|r| r.is_err()) {
        tracing::warn!(error = %err, failed, "audit events not published");
        dropped(total_dropped, "publish", u64::try_from(failed).unwrap_or(u64::MAX));
    }
    let published = results.len() - failed;
    metrics::counter!(METRIC_PUBLISHED).increment(u64::try_from(published).unwrap_or(u64::MAX));
    batch.clear();
}

/// Whether a request with this method and answer is audited: every mutation, whatever its
/// outcome, and every refusal of the token or the role.
fn audited(method: &Method, status: StatusCode) -> bool {
    !(method == Method::GET || method == Method::HEAD)
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
}

/// How a request ended, by its status: a refusal (token, role, rate limit) is `Denied`, another
/// client or server error is `Error`.
fn outcome(status: StatusCode) -> AuditOutcome {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => AuditOutcome::Denied,
        s if s.is_client_error() || s.is_server_error() => AuditOutcome::Error,
        _ => AuditOutcome::Allowed,
    }
}

fn bounded(value: &str) -> String {
    value.chars().take(MAX_FIELD_CHARS).collect()
}

/// The dotted action of `method` on the route `template` (e.g. `POST /api/v1/agents` is
/// `agents.create`, `POST /api/v1/desktops/{id}/save` is `desktops.save`) and the path's
/// values of the template's `{params}`, joined by `/` (the target).
fn action_and_target(method: &Method, template: &str, path: &str) -> (String, String) {
    let mut names = Vec::new();
    let mut ids = Vec::new();
    let mut action_param = None;
    let relative = template.strip_prefix("/api/v1/").or_else(|| template.strip_prefix("/v1/")).unwrap_or(template);
    let skip = template.split('/').count() - relative.split('/').count();
    for (segment, value) in relative.split('/').zip(path.split('/').skip(skip)) {
        if segment.starts_with('{') {
            if segment == "{action}" {
                action_param = Some(value);
            }
            ids.push(bounded(value));
        } else if !segment.is_empty() {
            names.push(segment);
        }
    }
    let last_is_param = relative.ends_with('}');
    let verb = match *method {
        Method::GET | Method::HEAD => "read",
        Method::PUT | Method::PATCH => "update",
        Method::DELETE => "delete",
        Method::POST => match (action_param, names.last()) {
            // `POST /api/v1/windows/{id}/{action}`: the action is the path's, when it is a word.
            (Some(value), _)
                if !value.is_empty()
                    && value.len() <= 32
                    && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
            {
                value
            }
            (Some(_), _) => "action",
            (None, Some(last)) if !last_is_param && POST_VERBS.contains(last) => names.pop().unwrap_or("create"),
            _ => "create",
        },
        _ => "call",
    };
    names.push(verb);
    (names.join("."), ids.join("/"))
}

/// The event of one audited request.
struct Observed<'a> {
    method: &'a Method,
    template: &'a str,
    path: &'a str,
    status: StatusCode,
    request_id: String,
    user_agent: String,
    client_ip: String,
    actor: Option<Actor>,
    reason: String,
}

impl Observed<'_> {
    fn into_envelope(self) -> EventEnvelope {
        let (action, resource_id) = action_and_target(self.method, self.template, self.path);
        let (tenant, user) = match self.actor {
            Some(actor) => (actor.tenant.to_string(), actor.user),
            // Unverified: no tenant (the reserved subject) and no user.
            None => (String::new(), String::new()),
        };
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let audit = AuditEvent {
            action,
            outcome: outcome(self.status) as i32,
            route: format!("{} {}", self.method, self.template),
            http_status: i32::from(self.status.as_u16()),
            reason: self.reason,
            client_ip: self.client_ip,
            user_agent: self.user_agent,
            resource_id,
        };
        EventEnvelope {
            id: uuid::Uuid::now_v7().to_string(),
            r#type: "audit.recorded".to_owned(),
            schema_version: getlood_events::SCHEMA_VERSION,
            tenant_id: tenant,
            entity_id: user.clone(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
            }),
            actor: user,
            traceparent: getlood_telemetry::current_traceparent().unwrap_or_default(),
            request_id: self.request_id,
            payload: Some(Payload::Audit(audit)),
        }
    }
}

/// A request header's text, bounded; empty when absent or not text.
fn header(req: &Request, name: &str) -> String {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(bounded).unwrap_or_default()
}

/// The client's address: the peer's, or behind `hops` proxies the `hops`-th address from the
/// right of `X-Forwarded-For` (the entries further left are the client's own claims); empty
/// when unknown.
fn client_ip(req: &Request, hops: usize) -> String {
    client_ip_of(req.headers(), req.extensions(), hops)
}

/// [`client_ip`] from a request's parts: what the sign-in limits key on.
pub(crate) fn client_ip_of(headers: &http::HeaderMap, extensions: &http::Extensions, hops: usize) -> String {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    if hops == 0 {
        return peer.map(|ip| ip.to_string()).unwrap_or_default();
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    forwarded
        .len()
        .checked_sub(hops)
        .and_then(|i| forwarded.get(i))
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .or(peer)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// Records the request in the audit log when [`audited`]: after the response is made (the
/// body of a stream may still be flowing), without waiting for NATS. Repeated rate-limit
/// refusals are collapsed ([`RefusalThrottle`]).
pub(crate) async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let template = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let path = req.uri().path().to_owned();
    let (request_id, user_agent) = (header(&req, "x-request-id"), header(&req, "user-agent"));
    let client_ip = client_ip(&req, state.audit.forwarded_hops);
    let mut response = next.run(req).await;
    let mut status = response.status();
    if !audited(&method, status) {
        return response;
    }
    let described = response.extensions().get::<Described>().cloned();
    let mut action = None;
    match described {
        Some(Described::Read) if !audited(&Method::GET, status) => return response,
        Some(Described::Write { action: named, status: outcome, reason }) => {
            action = Some(named);
            if status.is_success() {
                status = outcome;
                if !reason.is_empty() {
                    response.extensions_mut().insert(Refusal(reason));
                }
            }
        }
        _ => {}
    }
    // A route layer always has the matched route; the raw path is a fallback only.
    let template = template.as_deref().unwrap_or(&path);
    let actor = response.extensions().get::<Actor>().cloned();
    let mut reason = response.extensions().get::<Refusal>().map(|r| bounded(&r.0)).unwrap_or_default();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let who = actor.as_ref().map(|a| format!("{}/{}", a.tenant, a.user)).unwrap_or_default();
        let route = action.as_deref().unwrap_or(template);
        match state.audit.refusals.admit(format!("{who} {method} {route}"), Instant::now()) {
            None => return response,
            Some(0) => {}
            Some(n) => reason = format!("{reason} (and {n} more refused within {}s before)", REFUSAL_WINDOW.as_secs()),
        }
    }
    let observed = Observed {
        method: &method,
        template,
        path: &path,
        status,
        request_id,
        user_agent,
        client_ip,
        actor,
        reason: reason.trim_start().to_owned(),
    };
    let mut envelope = observed.into_envelope();
    if let (Some(action), Some(Payload::Audit(audit))) = (action, envelope.payload.as_mut()) {
        audit.action = bounded(&action);
    }
    state.audit.submit(envelope);
    response
}

/// The HTTP status a gRPC status code stands for in the audit log (`http_status`, outcome):
/// the mapping of `getlood_common::ErrorCode`, so REST and gRPC refusals read alike.
fn grpc_http_status(code: i32) -> StatusCode {
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => StatusCode::OK,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::AlreadyExists | tonic::Code::Aborted => StatusCode::CONFLICT,
        tonic::Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        // Cancelled by the client: no answer was given; 499 as nginx logs it.
        tonic::Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A gRPC call's audit event, waiting for the call's status.
struct PendingGrpc {
    state: AppState,
    path: String,
    action: String,
    request_id: String,
    user_agent: String,
    client_ip: String,
    actor: Option<Actor>,
}

impl PendingGrpc {
    /// Records the call with its final `grpc-status` (`reason`: its message, for refusals).
    fn finish(self, code: i32, reason: String) {
        let status = grpc_http_status(code);
        if !(self.is_mutation() || status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN) {
            return;
        }
        let mut reason =
            if status.is_client_error() && status != StatusCode::NOT_FOUND { bounded(&reason) } else { String::new() };
        if status == StatusCode::TOO_MANY_REQUESTS {
            let who = self.actor.as_ref().map(|a| format!("{}/{}", a.tenant, a.user)).unwrap_or_default();
            match self.state.audit.refusals.admit(format!("{who} POST {}", self.path), Instant::now()) {
                None => return,
                Some(0) => {}
                Some(n) => {
                    reason = format!("{reason} (and {n} more refused within {}s before)", REFUSAL_WINDOW.as_secs())
                }
            }
        }
        let observed = Observed {
            method: &Method::POST,
            template: &self.path,
            path: &self.path,
            status,
            request_id: self.request_id.clone(),
            user_agent: self.user_agent.clone(),
            client_ip: self.client_ip.clone(),
            actor: self.actor.clone(),
            reason,
        };
        let mut envelope = observed.into_envelope();
        if let Some(Payload::Audit(audit)) = envelope.payload.as_mut() {
            audit.action = bounded(&self.action);
        }
        self.state.audit.submit(envelope);
    }

    fn is_mutation(&self) -> bool {
        // Set by `record_grpc`: the action of a read-only method is empty.
        !self.action.ends_with(".read")
    }
}

/// A response body that records its call once the gRPC status (the trailers) went by, or the
/// body was dropped before (the client went away: `CANCELLED`).
struct AuditedBody {
    inner: axum::body::Body,
    pending: Option<PendingGrpc>,
}

impl http_body::Body for AuditedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(trailers) = frame.trailers_ref()
            && let Some(pending) = self.pending.take()
        {
            let (code, message) = grpc_status_of(trailers);
            pending.finish(code, message);
        }
        if let std::task::Poll::Ready(None) = &polled
            && let Some(pending) = self.pending.take()
        {
            // A stream that ended without trailers ended badly.
            pending.finish(tonic::Code::Unknown as i32, String::new());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.finish(tonic::Code::Cancelled as i32, String::new());
        }
    }
}

/// `grpc-status` and `grpc-message` of a header map (trailers, or a trailers-only answer).
fn grpc_status_of(headers: &http::HeaderMap) -> (i32, String) {
    let code = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).unwrap_or(2);
    let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).map(percent_decode).unwrap_or_default();
    (code, message)
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = raw.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The audit log of the gateway's gRPC services (gRPC port and gRPC-Web): every call of a
/// method that is not read-only (its permission is not `*.read`), and every refusal of the token
/// or the role, like REST. The caller comes from `getlood_server::authorize`, which puts the
/// verified principal on the response; the outcome from the call's `grpc-status`, which for a
/// call that answered is in the trailers, so the event is made when they go by.
pub(crate) async fn record_grpc(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let (service, method) = path.strip_prefix('/').and_then(|p| p.split_once('/')).unwrap_or_default();
    let read_only = crate::permissions::grpc_permissions()
        .iter()
        .find(|(name, _)| *name == service)
        .and_then(|(_, methods)| methods.iter().find(|(m, _)| *m == method))
        .is_some_and(|(_, permission)| permission.is_read());
    let short = service.rsplit('.').next().unwrap_or_default();
    let action = format!("grpc.{short}.{method}{}", if read_only { ".read" } else { "" });
    let (request_id, user_agent) = (header(&req, "x-request-id"), header(&req, "user-agent"));
    let client_ip = client_ip(&req, state.audit.forwarded_hops);
    let response = next.run(req).await;
    let actor = response
        .extensions()
        .get::<getlood_auth::Principal>()
        .map(|p| Actor { tenant: p.tenant.clone(), user: p.user.clone() });
    let pending = PendingGrpc { state, path, action, request_id, user_agent, client_ip, actor };
    if response.headers().contains_key("grpc-status") {
        // Trailers-only: refused or failed before any message.
        let (code, message) = grpc_status_of(response.headers());
        pending.finish(code, message);
        return response;
    }
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, axum::body::Body::new(AuditedBody { inner: body, pending: Some(pending) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(method: Method, template: &str, path: &str) -> (String, String) {
        action_and_target(&method, template, path)
    }

    #[test]
    fn actions_are_named_from_the_route_and_targets_from_its_ids() {
        assert_eq!(act(Method::POST, "/api/v1/agents", "/api/v1/agents"), ("agents.create".into(), String::new()));
        assert_eq!(act(Method::PUT, "/api/v1/agents/{id}", "/api/v1/agents/a1"), ("agents.update".into(), "a1".into()));
        assert_eq!(
            act(Method::DELETE, "/api/v1/skills/{name}", "/api/v1/skills/ui"),
            ("skills.delete".into(), "ui".into())
        );
        assert_eq!(
            act(Method::POST, "/api/v1/desktops/{id}/save", "/api/v1/desktops/d1/save"),
            ("desktops.save".into(), "d1".into())
        );
        assert_eq!(
            act(Method::POST, "/api/v1/desktops/{id}/windows", "/api/v1/desktops/d1/windows"),
            ("desktops.windows.create".into(), "d1".into())
        );
        assert_eq!(
            act(Method::POST, "/api/v1/workflows/runs/{run_id}/cancel", "/api/v1/workflows/runs/r9/cancel"),
            ("workflows.runs.cancel".into(), "r9".into())
        );
        assert_eq!(
            act(Method::DELETE, "/api/v1/workflows/{id}/schedule", "/api/v1/workflows/w/schedule"),
            ("workflows.schedule.delete".into(), "w".into())
        );
        assert_eq!(
            act(Method::POST, "/api/v1/windows/{id}/{action}", "/api/v1/windows/w1/focus"),
            ("windows.focus".into(), "w1/focus".into())
        );
        assert_eq!(
            act(Method::POST, "/api/v1/windows/{id}/{action}", "/api/v1/windows/w1/Dr%20op").0,
            "windows.action"
        );
        assert_eq!(act(Method::POST, "/v1/chat/completions", "/v1/chat/completions").0, "chat.completions.create");
        assert_eq!(act(Method::GET, "/ws/desktop/{id}", "/ws/desktop/d2"), ("ws.desktop.read".into(), "d2".into()));
        let long = format!("/api/v1/agents/{}", "x".repeat(5000));
        assert_eq!(act(Method::PUT, "/api/v1/agents/{id}", &long).1.len(), MAX_FIELD_CHARS);
    }

    #[test]
    fn mutations_and_refusals_are_audited_reads_are_not() {
        assert!(audited(&Method::POST, StatusCode::CREATED));
        assert!(audited(&Method::DELETE, StatusCode::NOT_FOUND));
        assert!(audited(&Method::GET, StatusCode::UNAUTHORIZED));
        assert!(audited(&Method::GET, StatusCode::FORBIDDEN));
        assert!(!audited(&Method::GET, StatusCode::OK));
        assert!(!audited(&Method::HEAD, StatusCode::NOT_FOUND));
        assert_eq!(outcome(StatusCode::OK), AuditOutcome::Allowed);
        assert_eq!(outcome(StatusCode::TOO_MANY_REQUESTS), AuditOutcome::Denied);
        assert_eq!(outcome(StatusCode::FORBIDDEN), AuditOutcome::Denied);
        assert_eq!(outcome(StatusCode::CONFLICT), AuditOutcome::Error);
        assert_eq!(outcome(StatusCode::BAD_GATEWAY), AuditOutcome::Error);
    }

    #[test]
    fn an_unverified_request_has_no_tenant_and_no_user() {
        let env = Observed {
            method: &Method::POST,
            template: "/api/v1/agents",
            path: "/api/v1/agents",
            status: StatusCode::UNAUTHORIZED,
            request_id: "r1".into(),
            user_agent: String::new(),
            client_ip: "10.0.0.7".into(),
            actor: None,
            reason: "token has expired".into(),
        }
        .into_envelope();
        assert_eq!((env.tenant_id.as_str(), env.actor.as_str(), env.entity_id.as_str()), ("", "", ""));
        assert_eq!(env.r#type, "audit.recorded");
        assert_eq!(env.request_id, "r1");
        let Some(Payload::Audit(a)) = env.payload else { panic!("not an audit payload") };
        assert_eq!(
            (a.outcome, a.http_status, a.route.as_str()),
            (AuditOutcome::Denied as i32, 401, "POST /api/v1/agents")
        );
        assert_eq!(a.reason, "token has expired");
        assert_eq!(a.client_ip, "10.0.0.7");
    }

    #[test]
    fn repeated_refusals_of_a_key_are_collapsed_into_the_next_recorded_one() {
        let throttle = RefusalThrottle::default();
        let t0 = Instant::now();
        assert_eq!(throttle.admit("a/u POST /v1/chat/completions".into(), t0), Some(0));
        for i in 1..=5 {
            assert_eq!(throttle.admit("a/u POST /v1/chat/completions".into(), t0 + Duration::from_millis(i)), None);
        }
        // Another user, or another route, is its own key.
        assert_eq!(throttle.admit("a/v POST /v1/chat/completions".into(), t0), Some(0));
        assert_eq!(throttle.admit("a/u POST /api/v1/agents".into(), t0), Some(0));
        assert_eq!(throttle.admit("a/u POST /v1/chat/completions".into(), t0 + REFUSAL_WINDOW), Some(5));
        assert_eq!(throttle.admit("a/u POST /v1/chat/completions".into(), t0 + REFUSAL_WINDOW), None);
    }

    fn request_from(peer: &str, forwarded: &[&str]) -> Request {
        let mut req = Request::new(axum::body::Body::empty());
        req.extensions_mut().insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
        for value in forwarded {
            req.headers_mut().append("x-forwarded-for", http::HeaderValue::from_str(value).unwrap());
        }
        req
    }

    #[test]
    fn the_client_ip_is_the_peer_or_the_proxies_view() {
        // No proxy trusted: whatever the client wrote in X-Forwarded-For is ignored.
        assert_eq!(client_ip(&request_from("10.1.2.3:5000", &["6.6.6.6"]), 0), "10.1.2.3");
        // One proxy (the Ingress) appends the address it saw: the rightmost entry.
        assert_eq!(client_ip(&request_from("10.0.0.1:5000", &["6.6.6.6, 203.0.113.9"]), 1), "203.0.113.9");
        assert_eq!(client_ip(&request_from("10.0.0.1:5000", &["6.6.6.6", "203.0.113.9"]), 1), "203.0.113.9");
        // Two hops: the entry the outer proxy wrote.
        assert_eq!(client_ip(&request_from("10.0.0.1:5000", &["1.1.1.1, 198.51.100.2, 10.0.0.9"]), 2), "198.51.100.2");
        // Fewer entries than hops, or garbage: the peer.
        assert_eq!(client_ip(&request_from("10.0.0.1:5000", &[]), 1), "10.0.0.1");
        assert_eq!(client_ip(&request_from("10.0.0.1:5000", &["not-an-ip"]), 1), "10.0.0.1");
        assert_eq!(client_ip(&Request::new(axum::body::Body::empty()), 0), "");
    }
}

#[cfg(test)]
mod grpc_tests {
    use super::*;

    #[test]
    fn grpc_codes_read_as_the_http_statuses_of_rest() {
        assert_eq!(grpc_http_status(0), StatusCode::OK);
        assert_eq!(grpc_http_status(16), StatusCode::UNAUTHORIZED);
        assert_eq!(grpc_http_status(7), StatusCode::FORBIDDEN);
        assert_eq!(grpc_http_status(8), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(grpc_http_status(5), StatusCode::NOT_FOUND);
        assert_eq!(grpc_http_status(13), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(outcome(grpc_http_status(7)), AuditOutcome::Denied);
    }

    #[test]
    fn grpc_messages_are_percent_decoded() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        headers.insert("grpc-message", http::HeaderValue::from_static("agents.write%20needs%20role%20%25x"));
        assert_eq!(grpc_status_of(&headers), (7, "agents.write needs role %x".to_owned()));
        assert_eq!(percent_decode("100%"), "100%");
    }
}
