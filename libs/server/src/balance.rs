//! Client-side load balancing of one upstream over every address its DNS name resolves to.
//!
//! A Kubernetes ClusterIP Service balances connections, not requests, and a tonic channel keeps
//! one HTTP/2 connection: every call of one client would go to one pod. An upstream URL
//! `dns://<host>:<port>` (a headless Service, whose name resolves to every ready pod) instead
//! gets one lazily connected channel per resolved address, and takes them in turn for each call
//! (gRPC's `round_robin` policy):
//!
//! * discovery re-resolves the name every `refresh` (default [`DEFAULT_REFRESH`], or the URL's
//!   `?refresh=` e.g. `dns://registry-headless:9094?refresh=2s`) and as soon as a call to one of
//!   its endpoints fails to reach it; addresses that appear are added, addresses that disappear
//!   get no new calls;
//! * each endpoint is health-aware: it takes calls only while its `grpc.health.v1` Watch of the
//!   whole server (`""`) says SERVING; NOT_SERVING (a pod draining on SIGTERM or whose
//!   dependencies are down), a failed connection or a broken stream take it out until a later
//!   probe finds it serving again; so does a call that gets no gRPC answer from it (refused or
//!   reset, a stream refused by a draining server, a proxy's error page; not a timeout), without
//!   waiting for the watch;
//! * with no endpoint serving, a call fails at once with UNAVAILABLE naming the upstream instead
//!   of waiting (before the first health answers, a call waits for the first serving endpoint).
//!
//! A call already sent to an endpoint is never retried on another (its body is gone, and a
//! unary call may have had effects): the calls that can fail are those on their way to a
//! replica as it goes.
//!
//! Names are resolved by the system resolver (`getaddrinfo` through [`tokio::net::lookup_host`]:
//! every A and AAAA record, and the URL names the port, so SRV records are not needed; the
//! refresh period stands in for the record TTL, which Kubernetes DNS sets to 5 s).
//! [`override_resolver`] replaces it for one host name in this process: how a test names
//! in-process replicas without a DNS server or a hosts file.
//!
//! Metrics: `getlood_upstream_endpoints{upstream,state}` (`resolved`, `ready`),
//! `getlood_upstream_calls_total{upstream,endpoint}` (also for plain `http://` upstreams, whose
//! endpoint is the URL's authority) and `getlood_upstream_resolve_errors_total{upstream}`.

// The balancer's worker, discovery and health watches live as long as the channel (as tonic's
// own channel worker does), not as the service: they end when its last clone is dropped, which
// can be after the service's task tracker is waited for.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower::buffer::Buffer;
use tower::util::BoxService;
use tower::{BoxError, Service};

/// How often a `dns://` upstream's name is resolved again when its URL sets no `refresh`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// Bounds of a URL's `refresh`: below, the resolver would be hammered; above, a scaled-out
/// Deployment's new pods would wait too long for calls.
const REFRESH_BOUNDS: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(300));
/// Calls queued in front of the balancer (tonic's own channel default).
const BUFFER: usize = 1024;
/// First wait before probing an endpoint that is not serving again; doubles up to `refresh`.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Least time between two resolutions a failed call asks for: calls failing in a burst
/// resolve the name once.
const MIN_RESOLVE_GAP: Duration = Duration::from_millis(250);

/// What a `dns://` upstream URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DnsTarget {
    /// The name to resolve (a headless Service, e.g. `agent-registry-headless.ns.svc`).
    pub host: String,
    /// The gRPC port of every endpoint.
    pub port: u16,
    /// How often the name is resolved again.
    pub refresh: Duration,
}

/// How calls to an upstream are spread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `http://host:port` or `https://…`: one channel to that address (a ClusterIP Service or
    /// a single process), as before client-side balancing.
    Single,
    /// `dns://host:port[?refresh=<duration>]` (or gRPC's `dns:///host:port`): every resolved
    /// address, balanced.
    Dns(DnsTarget),
}

impl Target {
    /// Parses an upstream URL; the error says what is wrong with it (without the URL, which
    /// the caller names with its setting).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err("not a http, https or dns url".to_owned());
        };
        match scheme {
            "http" | "https" => {
                Endpoint::from_shared(url.to_owned()).map_err(|e| e.to_string())?;
                Ok(Self::Single)
            }
            "dns" => parse_dns(rest).map(Self::Dns),
            _ => Err(format!("scheme '{scheme}' is not http, https or dns")),
        }
    }
}

fn parse_dns(rest: &str) -> Result<DnsTarget, String> {
    // gRPC's naming spells the default DNS server as an empty authority: `dns:///host:port`.
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    if authority.contains('/') {
        return Err("a dns url names host:port only (no path, and no DNS server authority)".to_owned());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => (host, port),
        _ => return Err("a dns url needs host:port, e.g. dns://agent-registry-headless:9094".to_owned()),
    };
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
    if host.is_empty() || (host.contains(':') && !ipv6) || host.contains(['@', ' ']) {
        return Err(format!("'{host}' is not a host name"));
    }
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("port '{port}' is not a number from 1 to 65535")),
    };
    let mut refresh = DEFAULT_REFRESH;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("refresh", value)) => {
                refresh = humantime_serde::re::humantime::parse_duration(value)
                    .map_err(|e| format!("refresh '{value}' is not a duration such as 5s: {e}"))?;
                let (min, max) = REFRESH_BOUNDS;
                if refresh < min || refresh > max {
                    return Err(format!("refresh '{value}' is outside {min:?} to {max:?}"));
                }
            }
            _ => return Err(format!("unknown parameter '{pair}': the only one is refresh=<duration>")),
        }
    }
    Ok(DnsTarget { host: host.to_owned(), port, refresh })
}

/// Resolves a host name to the addresses of its endpoints.
pub trait Resolve: Send + Sync + fmt::Debug + 'static {
    /// Every address `host` names now, with `port` applied where the answer has none (DNS).
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>>;
}

/// The system resolver (`getaddrinfo`): every A and AAAA record of the name.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        async move { Ok(tokio::net::lookup_host((host, port)).await?.collect()) }.boxed()
    }
}

/// A resolver answering with a list of socket addresses that can be changed at any time (ports
/// included: in-process replicas listen on different ports of one address).
#[derive(Debug, Default)]
pub struct StaticResolver {
    addrs: RwLock<Vec<SocketAddr>>,
}

impl StaticResolver {
    /// A resolver answering `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> Arc<Self> {
        Arc::new(Self { addrs: RwLock::new(addrs) })
    }

    /// Answers `addrs` from now on (taken up at each upstream's next refresh).
    pub fn set(&self, addrs: Vec<SocketAddr>) {
        *self.addrs.write().unwrap_or_else(std::sync::PoisonError::into_inner) = addrs;
    }
}

impl Resolve for StaticResolver {
    fn resolve<'a>(&'a self, _host: &'a str, _port: u16) -> BoxFuture<'a, std::io::Result<Vec<SocketAddr>>> {
        let addrs = self.addrs.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        futures::future::ready(Ok(addrs)).boxed()
    }
}

type Overrides = RwLock<HashMap<String, Arc<dyn Resolve>>>;
static OVERRIDES: LazyLock<Overrides> = LazyLock::new(Overrides::default);

/// Resolves `host` with `resolver` instead of the system resolver in every `dns://` upstream this
/// process makes from now on: how tests and embedders name in-process replicas.
pub fn override_resolver(host: &str, resolver: Arc<dyn Resolve>) {
    OVERRIDES.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(host.to_owned(), resolver);
}

fn resolver_for(host: &str) -> Arc<dyn Resolve> {
    OVERRIDES
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(host)
        .cloned()
        .unwrap_or_else(|| Arc::new(SystemResolver))
}

type BoxedFuture = BoxFuture<'static, Result<http::Response<Body>, BoxError>>;

/// The transport of an upstream's generated clients: one tonic channel, or the balancer over
/// a `dns://` upstream's endpoints. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct UpstreamChannel {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Single { channel: Channel, calls: metrics::Counter },
    Balanced { service: Buffer<http::Request<Body>, BoxedFuture>, state: Arc<Shared> },
}

impl fmt::Debug for UpstreamChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Single { .. } => f.debug_struct("UpstreamChannel").field("balanced", &false).finish(),
            Inner::Balanced { state, .. } => f
                .debug_struct("UpstreamChannel")
                .field("upstream", &state.upstream)
                .field("host", &state.host)
                .field("ready", &state.ready.load(Ordering::Relaxed))
                .finish(),
        }
    }
}

/// What the discovery task and the call path share.
#[derive(Debug)]
struct Shared {
    upstream: &'static str,
    host: String,
    /// Endpoints taking calls: none fails a call at once instead of queueing it, once
    /// `settled`.
    ready: AtomicUsize,
    /// Discovery has heard from every endpoint of its first answer (or had none): before, a
    /// call waits for the first serving endpoint rather than failing while the health
    /// watches start.
    settled: AtomicBool,
    /// Wakes discovery to resolve now (a call could not reach its endpoint).
    resolve_now: Notify,
    /// Fails a call that waited this long for an endpoint (while discovery had not settled, or
    /// while every endpoint's queue was full).
    wait: Duration,
}

impl UpstreamChannel {
    /// `channel` alone, counting calls under `upstream` and `authority` (its `host:port`).
    pub(crate) fn single(upstream: &'static str, authority: String, channel: Channel) -> Self {
        let calls = metrics::counter!("getlood_upstream_calls_total", "upstream" => upstream, "endpoint" => authority);
        Self { inner: Inner::Single { channel, calls } }
    }

    /// The balancer over `target`'s endpoints, each made by `endpoint` from `http://<addr>`;
    /// starts the discovery task, which ends when the last clone is dropped.
    pub(crate) fn balanced(
        upstream: &'static str,
        target: DnsTarget,
        wait: Duration,
        endpoint: impl Fn(Endpoint) -> Endpoint + Send + Sync + 'static,
    ) -> Self {
        let (changes, rx) = mpsc::channel(BUFFER);
        let state = Arc::new(Shared {
            upstream,
            host: target.host.clone(),
            ready: AtomicUsize::new(0),
            settled: AtomicBool::new(false),
            resolve_now: Notify::new(),
            wait,
        });
        let balancer = RoundRobin { changes: rx, endpoints: Vec::new(), next: 0, chosen: None, state: state.clone() };
        let (service, worker) = Buffer::pair(BoxService::new(balancer), BUFFER);
        tokio::spawn(worker);
        let (health, health_rx) = mpsc::unbounded_channel();
        let discovery = Discovery {
            target,
            resolver: resolver_for(&state.host),
            endpoint: Arc::new(endpoint),
            changes,
            state: state.clone(),
            endpoints: HashMap::new(),
            health,
        };
        tokio::spawn(discovery.run(health_rx));
        Self { inner: Inner::Balanced { service, state } }
    }
}

impl Service<http::Request<Body>> for UpstreamChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match &mut self.inner {
            Inner::Single { channel, .. } => channel.poll_ready(cx).map_err(Into::into),
            Inner::Balanced { service, .. } => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match &mut self.inner {
            Inner::Single { channel, calls } => {
                calls.increment(1);
                let call = channel.call(request);
                async move { call.await.map_err(Into::into) }.boxed()
            }
            Inner::Balanced { service, state } => {
                if state.ready.load(Ordering::Acquire) == 0 && state.settled.load(Ordering::Acquire) {
                    state.resolve_now.notify_one();
                    return futures::future::ready(Err(no_endpoint(state))).boxed();
                }
                let call = service.call(request);
                let state = state.clone();
                async move {
                    match tokio::time::timeout(state.wait, call).await {
                        Ok(result) => result,
                        Err(_) => Err(no_endpoint(&state)),
                    }
                }
                .boxed()
            }
        }
    }
}

fn no_endpoint(state: &Shared) -> BoxError {
    Box::new(tonic::Status::unavailable(format!("{}: no endpoint of '{}' is serving", state.upstream, state.host)))
}

/// One endpoint as the balancer sees it: its channel, counting calls, waking discovery when a
/// call cannot reach it.
struct EndpointService {
    addr: SocketAddr,
    channel: Channel,
    calls: metrics::Counter,
    state: Arc<Shared>,
    /// Takes the endpoint out at once when a call cannot reach it.
    report: mpsc::UnboundedSender<(SocketAddr, bool)>,
    /// Makes its health watch start over, to find whether it still serves.
    unreachable: Arc<Notify>,
}

impl EndpointService {
    /// Sends `request` on the endpoint's channel, which the balancer found ready.
    fn call(&mut self, request: http::Request<Body>) -> BoxedFuture {
        self.calls.increment(1);
        let call = self.channel.call(request);
        let (addr, state, report, unreachable) =
            (self.addr, self.state.clone(), self.report.clone(), self.unreachable.clone());
        async move {
            let result = call.await;
            if !reached(&result) {
                // No gRPC answer from the endpoint (refused or reset connection, a stream
                // refused by a draining server, a proxy's error page): no new call goes there
                // until its health watch, started over, finds it serving; and the name is
                // resolved now rather than at the next refresh.
                let _ = report.send((addr, false));
                unreachable.notify_one();
                state.resolve_now.notify_one();
            }
            result.map_err(Into::into)
        }
        .boxed()
    }
}

/// Whether a call's answer came from a gRPC server: one always answers HTTP 200 (errors are in
/// `grpc-status`). A timeout says the endpoint is slow, not gone.
fn reached(result: &Result<http::Response<Body>, tonic::transport::Error>) -> bool {
    match result {
        Ok(response) => response.status() == http::StatusCode::OK,
        Err(err) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
            while let Some(e) = source {
                if e.is::<tonic::TimeoutExpired>() {
                    return true;
                }
                source = e.source();
            }
            false
        }
    }
}

/// A change to the balancer's endpoints, from discovery.
enum Change {
    Insert(SocketAddr, EndpointService),
    Remove(SocketAddr),
}

/// Round robin over the serving endpoints, as gRPC's `round_robin` policy: every endpoint gets
/// the same share of calls whatever their timing (power-of-two-choices on calls in flight
/// spread a gateway's calls no better than chance when the upstream answers quickly). Polled
/// by the one buffer worker, which applies discovery's changes before each pick.
struct RoundRobin {
    changes: mpsc::Receiver<Change>,
    endpoints: Vec<(SocketAddr, EndpointService)>,
    next: usize,
    /// The endpoint found ready by `poll_ready`, which the next `call` uses; none: the call
    /// fails (no endpoint is serving).
    chosen: Option<usize>,
    state: Arc<Shared>,
}

impl Service<http::Request<Body>> for RoundRobin {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxedFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            match self.changes.poll_recv(cx) {
                Poll::Ready(Some(Change::Insert(addr, endpoint))) => {
                    self.endpoints.retain(|(a, _)| *a != addr);
                    self.endpoints.push((addr, endpoint));
                    self.chosen = None;
                }
                Poll::Ready(Some(Change::Remove(addr))) => {
                    self.endpoints.retain(|(a, _)| *a != addr);
                    self.chosen = None;
                }
                // Discovery stops only once this balancer is dropped.
                Poll::Ready(None) => return Poll::Ready(Err("upstream discovery stopped".into())),
                Poll::Pending => break,
            }
        }
        if let Some(i) = self.chosen
            && let Some((_, endpoint)) = self.endpoints.get_mut(i)
            && endpoint.channel.poll_ready(cx).is_ready()
        {
            return Poll::Ready(Ok(()));
        }
        let n = self.endpoints.len();
        if n == 0 && self.state.settled.load(Ordering::Acquire) {
            // A call let through just before the last endpoint went out: it fails now rather
            // than waiting for one to come back.
            return Poll::Ready(Ok(()));
        }
        for k in 0..n {
            let i = (self.next + k) % n;
            // A channel's readiness is room in its queue; its connection failures come back
            // from the call, and its health watch takes it out.
            if let Poll::Ready(Ok(())) = self.endpoints[i].1.channel.poll_ready(cx) {
                self.chosen = Some(i);
                self.next = i + 1;
                return Poll::Ready(Ok(()));
            }
        }
        // No endpoint (discovery wakes us with one) or none with room (each wakes us).
        Poll::Pending
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.chosen.take().and_then(|i| self.endpoints.get_mut(i)) {
            Some((_, endpoint)) => endpoint.call(request),
            None => futures::future::ready(Err(no_endpoint(&self.state))).boxed(),
        }
    }
}

/// A resolved address: its channel, and its health watch (stopped when the address goes).
struct Known {
    channel: Channel,
    ready: bool,
    /// Its health watch has reported at least once.
    reported: bool,
    /// Wakes its health watch when a call could not reach it.
    unreachable: Arc<Notify>,
    _watch: DropGuard,
}

/// The task that keeps the balancer's endpoints in step with the name and their health.
struct Discovery {
    target: DnsTarget,
    resolver: Arc<dyn Resolve>,
    endpoint: Arc<dyn Fn(Endpoint) -> Endpoint + Send + Sync>,
    changes: mpsc::Sender<Change>,
    state: Arc<Shared>,
    endpoints: HashMap<SocketAddr, Known>,
    /// Health changes of the endpoints, from their watches and from failed calls.
    health: mpsc::UnboundedSender<(SocketAddr, bool)>,
}

impl Discovery {
    async fn run(mut self, mut health_rx: mpsc::UnboundedReceiver<(SocketAddr, bool)>) {
        loop {
            self.resolve().await;
            let resolved = tokio::time::Instant::now();
            let next = tokio::time::sleep(self.target.refresh);
            tokio::pin!(next);
            loop {
                tokio::select! {
                    // Every clone of the channel is gone: stop, dropping the health watches.
                    () = self.changes.closed() => return,
                    () = &mut next => break,
                    () = self.state.resolve_now.notified() => {
                        let soon = resolved + MIN_RESOLVE_GAP;
                        if soon < next.deadline() {
                            next.as_mut().reset(soon);
                        }
                    }
                    Some((addr, serving)) = health_rx.recv() => {
                        if self.set_ready(addr, serving).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    async fn resolve(&mut self) {
        let upstream = self.state.upstream;
        let addrs = match self.resolver.resolve(&self.target.host, self.target.port).await {
            Ok(addrs) => addrs,
            Err(err) => {
                // Keep the endpoints we have: a resolver hiccup must not empty the upstream.
                tracing::warn!(upstream, host = %self.target.host, error = %err, "upstream name not resolved");
                metrics::counter!("getlood_upstream_resolve_errors_total", "upstream" => upstream).increment(1);
                self.state.settled.store(true, Ordering::Release);
                return;
            }
        };
        let gone: Vec<SocketAddr> = self.endpoints.keys().filter(|a| !addrs.contains(a)).copied().collect();
        for addr in gone {
            if self.endpoints.remove(&addr).is_some_and(|known| known.ready) {
                self.state.ready.fetch_sub(1, Ordering::AcqRel);
                let _ = self.changes.send(Change::Remove(addr)).await;
            }
            tracing::info!(upstream, %addr, "upstream endpoint left the name");
        }
        for addr in addrs {
            if self.endpoints.contains_key(&addr) {
                continue;
            }
            let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) else { continue };
            let channel = (self.endpoint)(endpoint).connect_lazy();
            let cancel = CancellationToken::new();
            let unreachable = Arc::new(Notify::new());
            let watch = HealthWatch {
                addr,
                channel: channel.clone(),
                report: self.health.clone(),
                max_backoff: self.target.refresh,
                state: self.state.clone(),
                unreachable: unreachable.clone(),
            };
            tokio::spawn(watch.run(cancel.clone()));
            let known = Known { channel, ready: false, reported: false, unreachable, _watch: cancel.drop_guard() };
            self.endpoints.insert(addr, known);
            tracing::info!(upstream, %addr, "upstream endpoint resolved");
        }
        self.settle();
        self.gauges();
    }

    /// Marks discovery settled once every known endpoint has reported its health.
    fn settle(&self) {
        if !self.state.settled.load(Ordering::Acquire) && self.endpoints.values().all(|known| known.reported) {
            self.state.settled.store(true, Ordering::Release);
        }
    }

    /// Puts `addr` in the balancer or takes it out; an error when the balancer is gone.
    async fn set_ready(&mut self, addr: SocketAddr, serving: bool) -> Result<(), ()> {
        let upstream = self.state.upstream;
        let Some(known) = self.endpoints.get_mut(&addr) else { return Ok(()) };
        let changed = known.ready != serving;
        known.ready = serving;
        known.reported = true;
        if !changed {
            self.settle();
            return Ok(());
        }
        let change = if serving {
            self.state.ready.fetch_add(1, Ordering::AcqRel);
            tracing::info!(upstream, %addr, "upstream endpoint serving");
            let calls = metrics::counter!(
                "getlood_upstream_calls_total", "upstream" => upstream, "endpoint" => addr.to_string()
            );
            let service = EndpointService {
                addr,
                channel: known.channel.clone(),
                calls,
                state: self.state.clone(),
                report: self.health.clone(),
                unreachable: known.unreachable.clone(),
            };
            Change::Insert(addr, service)
        } else {
            self.state.ready.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(upstream, %addr, "upstream endpoint not serving, taken out");
            Change::Remove(addr)
        };
        self.gauges();
        let sent = self.changes.send(change).await.map_err(drop);
        // After the change: a call let through by `settled` finds the endpoint in the balancer.
        self.settle();
        sent
    }

    fn gauges(&self) {
        let upstream = self.state.upstream;
        let ready = self.state.ready.load(Ordering::Acquire);
        metrics::gauge!("getlood_upstream_endpoints", "upstream" => upstream, "state" => "resolved")
            .set(self.endpoints.len() as f64);
        metrics::gauge!("getlood_upstream_endpoints", "upstream" => upstream, "state" => "ready").set(ready as f64);
    }
}

/// Follows one endpoint's `grpc.health.v1` status and reports each change to discovery.
struct HealthWatch {
    addr: SocketAddr,
    channel: Channel,
    report: mpsc::UnboundedSender<(SocketAddr, bool)>,
    max_backoff: Duration,
    state: Arc<Shared>,
    unreachable: Arc<Notify>,
}

/// Why a watch of an endpoint ended.
enum Ended {
    /// It answered, but not SERVING: probe again later.
    NotServing,
    /// It could not be reached or the stream broke: probe again later, and resolve now.
    Failed,
}

impl HealthWatch {
    async fn run(self, cancel: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let ended = tokio::select! {
                () = cancel.cancelled() => return,
                ended = self.watch(&mut backoff) => ended,
            };
            if self.report.send((self.addr, false)).is_err() {
                return;
            }
            if matches!(ended, Ended::Failed) {
                self.state.resolve_now.notify_one();
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(self.max_backoff);
            // Calls that failed while it was out are answered by the watch about to start.
            let _ = self.unreachable.notified().now_or_never();
        }
    }

    /// Watches until the endpoint stops serving; reports it serving whenever it says so.
    async fn watch(&self, backoff: &mut Duration) -> Ended {
        let mut client = HealthClient::new(self.channel.clone());
        let mut stream = match client.watch(HealthCheckRequest { service: String::new() }).await {
            Ok(stream) => stream.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                // A server without grpc.health: reachable is all we can know. It serves while
                // a probe every `max_backoff` still reaches it.
                loop {
                    if self.report.send((self.addr, true)).is_err() {
                        return Ended::Failed;
                    }
                    tokio::time::sleep(self.max_backoff).await;
                    match client.watch(HealthCheckRequest { service: String::new() }).await {
                        Err(status) if status.code() == tonic::Code::Unimplemented => {}
                        _ => return Ended::Failed,
                    }
                }
            }
            Err(status) => {
                tracing::debug!(upstream = self.state.upstream, addr = %self.addr, %status, "health watch failed");
                return Ended::Failed;
            }
        };
        loop {
            let message = tokio::select! {
                message = stream.message() => message,
                // A call could not reach it although the watch saw nothing yet: start over.
                () = self.unreachable.notified() => return Ended::Failed,
            };
            match message {
                Ok(Some(reply)) if reply.status() == ServingStatus::Serving => {
                    *backoff = MIN_BACKOFF;
                    if self.report.send((self.addr, true)).is_err() {
                        return Ended::Failed;
                    }
                }
                // Dropping the stream matters: a draining server waits for its open streams.
                Ok(Some(_)) => return Ended::NotServing,
                Ok(None) | Err(_) => return Ended::Failed,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server with only grpc.health, its reporter, and its address.
    async fn health_server() -> (tonic_health::server::HealthReporter, SocketAddr) {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        (reporter, addr)
    }

    async fn check(upstream: &crate::Upstream) -> Result<(), tonic::Status> {
        let mut client = upstream.client(HealthClient::new);
        client.check(HealthCheckRequest { service: String::new() }).await.map(drop)
    }

    #[tokio::test]
    async fn endpoints_follow_their_health_and_none_serving_fails_at_once() {
        let (reporter, addr) = health_server().await;
        let resolver = StaticResolver::new(vec![addr]);
        override_resolver("health.balance.test", resolver.clone());
        let timeouts = crate::UpstreamTimeouts::default();
        let upstream =
            crate::Upstream::connect_lazy("unit", "dns://health.balance.test:1?refresh=100ms", timeouts).unwrap();
        // The first call waits for the health watch instead of failing while it starts.
        check(&upstream).await.unwrap();

        let shared = &upstream;
        let within = |what: &'static str| async move {
            for _ in 0..100 {
                // No call waits for an endpoint, even one racing the last endpoint's removal.
                let answer = tokio::time::timeout(Duration::from_secs(1), check(shared)).await;
                match (what, answer.expect("a call waited for an endpoint")) {
                    ("down", Err(status)) => {
                        assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                        assert!(status.message().contains("no endpoint of 'health.balance.test'"), "{status}");
                        return;
                    }
                    ("up", Ok(())) => return,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            panic!("the upstream never went {what}");
        };
        reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        within("down").await;
        let started = std::time::Instant::now();
        assert!(check(&upstream).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(100), "no endpoint serving must fail at once");
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        within("up").await;
        resolver.set(Vec::new());
        within("down").await;
    }

    #[test]
    fn upstream_urls_parse_with_precise_errors() {
        assert_eq!(Target::parse("http://127.0.0.1:9094"), Ok(Target::Single));
        let dns = |host: &str, port, refresh| Ok(Target::Dns(DnsTarget { host: host.to_owned(), port, refresh }));
        assert_eq!(
            Target::parse("dns://registry-headless.ns.svc:9094"),
            dns("registry-headless.ns.svc", 9094, DEFAULT_REFRESH)
        );
        assert_eq!(Target::parse("dns:///registry:9094?refresh=2s"), dns("registry", 9094, Duration::from_secs(2)));
        assert_eq!(Target::parse("dns://[::1]:9094"), dns("::1", 9094, DEFAULT_REFRESH));
        let err = |url: &str| Target::parse(url).unwrap_err();
        assert!(err("dns://registry").contains("needs host:port"), "{}", err("dns://registry"));
        assert!(err("dns://registry:0").contains("port '0'"));
        assert!(err("dns://registry:http").contains("port 'http'"));
        assert!(err("dns://8.8.8.8/registry:9094").contains("no DNS server authority"));
        assert!(err("dns://registry:9094?refresh=1ms").contains("outside"));
        assert!(err("dns://registry:9094?refresh=soon").contains("not a duration"));
        assert!(err("dns://registry:9094?ttl=5s").contains("unknown parameter 'ttl=5s'"));
        assert!(err("grpc://registry:9094").contains("scheme 'grpc'"));
        assert!(err("registry:9094").contains("not a http, https or dns url"));
    }
}
