//! `Subscribe`: a tenant's events, filtered by topic and entity, resumable from a cursor.
//!
//! Each subscription follows every stream its topics touch with one ordered JetStream consumer
//! (filtered to `getlood.<tenant>.<domain>.>`, so another tenant's events never reach it) and
//! pumps matching events into a bounded per-subscriber buffer. Consumers are flow-controlled,
//! so catch-up never outruns a reader; a reader that leaves the buffer full for `lag_timeout`
//! is told to resync and its stream ends, instead of the buffer growing or events being dropped
//! in silence.
//!
//! Cursors are scanned positions: a heartbeat's cursor may move past events the filter skipped
//! (other desktops, other topics). Resuming from it delivers exactly what the filter would have
//! delivered after the last event, so it is as good as the last delivery's cursor, and it lets
//! a client that resubscribes skip what it has already been shown to be uninteresting.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt as _};
use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, EventError, RawEvent, StartAt};
use getlood_proto::desktop_state::v1::GetDesktopRequest;
use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
use getlood_proto::event_dispatcher::v1::{
    DeliverPolicy, Delivery, Heartbeat, Resync, SubscribeRequest, SubscribeResponse, subscribe_response,
};
use getlood_server::{Caller, Upstream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::error::{Error, Result};
use crate::filter::{Cursor, DomainKey, Topic, parse_topics};

/// Metric: subscriptions currently open.
pub const METRIC_ACTIVE: &str = "getlood_event_dispatcher_subscriptions";
/// Metric: events delivered to subscribers.
pub const METRIC_DELIVERED: &str = "getlood_event_dispatcher_delivered_total";
/// Metric: subscriptions ended with a resync, labelled `reason`.
pub const METRIC_RESYNC: &str = "getlood_event_dispatcher_resync_total";

/// The items of one Subscribe call.
pub type SubscribeStream = Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send>>;

/// Shared by every subscription of the service.
#[derive(Clone)]
pub(crate) struct Subscriptions {
    pub bus: EventBus,
    pub desktops: Upstream,
    pub heartbeat: Duration,
    pub buffer: usize,
    pub lag_timeout: Duration,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
}

impl Subscriptions {
    /// Validates `req`, opens one follower per stream, and returns the subscription's items.
    pub(crate) async fn subscribe(&self, caller: &Caller, req: SubscribeRequest) -> Result<SubscribeStream> {
        let principal = &caller.principal;
        let topics = parse_topics(&req.topics)?;
        if topics.contains_key(&DomainKey(Domain::Audit))
            && !getlood_auth::allows(&principal.roles, getlood_auth::Permission::AuditRead)
        {
            return Err(Error::PermissionDenied("audit topics need the admin role".to_owned()));
        }
        let entity = (!req.entity_id.is_empty()).then(|| req.entity_id.clone());
        if topics.contains_key(&DomainKey(Domain::Window)) {
            self.check_desktop(caller, entity.as_deref()).await?;
        }
        let heartbeat = match req.heartbeat_interval_ms {
            ms if ms <= 0 => self.heartbeat,
            ms => Duration::from_millis(u64::try_from(ms).unwrap_or(15_000).clamp(100, 300_000)),
        };
        let starts = start_positions(&req, &topics)?;

        let mut follows = Vec::new();
        let mut positions = Cursor::default();
        let mut caught_up = BTreeMap::new();
        let mut stream_last = BTreeMap::new();
        for (domain, start) in starts {
            let follow = self.bus.follow(&principal.tenant, domain.0, start).await?;
            positions.0.insert(domain, follow.start_after);
            stream_last.insert(domain, follow.stream_last);
            caught_up.insert(domain, follow.pending == 0);
            if follow.pending == 0 {
                // Nothing of the tenant is stored past the start: the position may skip to the
                // stream's end, which is what a catch-up-then-share client needs to know.
                positions.0.insert(domain, follow.start_after.max(follow.stream_last));
            }
            follows.push(follow.events.map(move |e| (domain, e)).boxed());
        }

        let (tx, rx) = mpsc::channel(self.buffer);
        let ending = Arc::new(Mutex::new(None));
        let pump = Pump {
            tenant: principal.tenant.clone(),
            topics,
            entity,
            positions,
            caught_up,
            stream_last,
            tx,
            ending: ending.clone(),
            bus: self.bus.clone(),
            lag_timeout: self.lag_timeout,
            heartbeat,
            last_sent_cursor: String::new(),
        };
        let shutdown = self.shutdown.clone();
        self.tracker.spawn(pump.run(stream::select_all(follows), shutdown));

        let items = tokio_stream::wrappers::ReceiverStream::new(rx);
        // The resync item (if any) is set before the pump drops its sender, so it is there once
        // the buffered items are drained.
        let tail = stream::once(async move { ending.lock().ok().and_then(|mut slot| slot.take()) })
            .filter_map(|item| async move { item.map(Ok) });
        Ok(Box::pin(items.chain(tail)))
    }

    /// Window events are per desktop and desktops belong to one user: a non-admin must name a
    /// desktop, and only one they can see (desktop-state decides, with the caller's token).
    async fn check_desktop(&self, caller: &Caller, entity: Option<&str>) -> Result<()> {
        let principal = &caller.principal;
        let Some(desktop_id) = entity else {
            // Every desktop of the tenant: other users' data.
            if getlood_auth::allows(&principal.roles, getlood_auth::Permission::UsersRead) {
                return Ok(());
            }
            return Err(Error::PermissionDenied(
                "window topics need entity_id (a desktop id) unless the caller has the admin role".to_owned(),
            ));
        };
        let req = self.desktops.unary(caller, GetDesktopRequest { desktop_id: desktop_id.to_owned() });
        match self.desktops.client(DesktopStateServiceClient::new).get_desktop(req).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(Error::NotFound(format!("desktop '{}' not found", desktop_id.chars().take(64).collect::<String>())))
            }
            Err(status) => Err(Error::Upstream { service: "desktop-state", status }),
        }
    }
}

/// Where each stream of the subscription starts.
fn start_positions(
    req: &SubscribeRequest,
    topics: &BTreeMap<DomainKey, Vec<Topic>>,
) -> Result<Vec<(DomainKey, StartAt)>> {
    let policy = DeliverPolicy::try_from(req.deliver_policy).unwrap_or(DeliverPolicy::Unspecified);
    let domains = topics.keys().copied();
    match policy {
        DeliverPolicy::Unspecified | DeliverPolicy::New => Ok(domains.map(|d| (d, StartAt::New)).collect()),
        DeliverPolicy::All => Ok(domains.map(|d| (d, StartAt::After(0))).collect()),
        DeliverPolicy::Resume if !req.resume_cursor.is_empty() => {
            let cursor = Cursor::parse(&req.resume_cursor)?;
            domains
                .map(|d| {
                    let seq = cursor.0.get(&d).copied().ok_or_else(|| {
                        Error::InvalidArgument(format!("the cursor does not cover the {} topics", d.0.token()))
                    })?;
                    Ok((d, StartAt::After(seq)))
                })
                .collect()
        }
        DeliverPolicy::Resume => {
            if topics.len() != 1 {
                return Err(Error::InvalidArgument(
                    "start_sequence needs topics of a single stream; use resume_cursor".to_owned(),
                ));
            }
            if req.start_sequence == 0 {
                return Err(Error::InvalidArgument("resume needs resume_cursor or start_sequence".to_owned()));
            }
            Ok(domains.map(|d| (d, StartAt::After(req.start_sequence - 1))).collect())
        }
        DeliverPolicy::ByStartTime => {
            Err(Error::InvalidArgument("DELIVER_POLICY_BY_START_TIME is not supported yet; use a cursor".to_owned()))
        }
    }
}

struct Pump {
    tenant: TenantId,
    topics: BTreeMap<DomainKey, Vec<Topic>>,
    entity: Option<String>,
    positions: Cursor,
    caught_up: BTreeMap<DomainKey, bool>,
    stream_last: BTreeMap<DomainKey, u64>,
    tx: mpsc::Sender<Result<SubscribeResponse, Status>>,
    ending: Arc<Mutex<Option<SubscribeResponse>>>,
    bus: EventBus,
    lag_timeout: Duration,
    heartbeat: Duration,
    last_sent_cursor: String,
}

enum Sent {
    Ok,
    /// The subscriber is gone or lagged: the pump stops.
    Stop,
}

impl Pump {
    async fn run(
        mut self,
        mut events: stream::SelectAll<BoxStream<'static, (DomainKey, Result<RawEvent, EventError>)>>,
        shutdown: CancellationToken,
    ) {
        metrics::gauge!(METRIC_ACTIVE).increment(1.0);
        // The first item tells the client where the subscription starts.
        let mut last_sent = Instant::now();
        if matches!(self.send(self.heartbeat_item()).await, Sent::Ok) {
            let mut ticker = tokio::time::interval(self.heartbeat);
            ticker.reset();
            loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    () = self.tx.closed() => break,
                    next = events.next() => {
                        let (domain, raw) = match next {
                            Some((domain, Ok(raw))) => (domain, raw),
                            Some((domain, Err(err))) => {
                                tracing::warn!(tenant = %self.tenant, stream = domain.0.token(), error = %err, "follower failed, ending subscription");
                                let _ = self.tx.try_send(Err(Status::unavailable("event stream interrupted; resubscribe with the last cursor")));
                                break;
                            }
                            None => break,
                        };
                        match self.on_event(domain, raw).await {
                            Some(Sent::Stop) => break,
                            Some(Sent::Ok) => last_sent = Instant::now(),
                            None => {}
                        }
                    }
                    _ = ticker.tick() => {
                        if last_sent.elapsed() >= self.heartbeat {
                            // try_send: a full buffer already tells the client something is coming.
                            if self.tx.try_send(Ok(self.heartbeat_item())).is_ok() {
                                self.last_sent_cursor = self.positions.to_string();
                                last_sent = Instant::now();
                            }
                        }
                    }
                }
            }
        }
        metrics::gauge!(METRIC_ACTIVE).decrement(1.0);
    }

    /// Handles one stored event; `None` when nothing was sent.
    async fn on_event(&mut self, domain: DomainKey, raw: RawEvent) -> Option<Sent> {
        self.positions.0.insert(domain, raw.sequence);
        let mut just_caught_up = false;
        if raw.pending == 0 && self.caught_up.get(&domain) == Some(&false) {
            self.caught_up.insert(domain, true);
            let last = self.stream_last.get(&domain).copied().unwrap_or(0);
            self.positions.0.insert(domain, raw.sequence.max(last));
            just_caught_up = self.caught_up.values().all(|c| *c);
        }
        if self.matches(domain, &raw) {
            match raw.decode() {
                // Defense in depth: the consumer filter already pins the tenant.
                Ok(envelope) if envelope.tenant_id == self.tenant.as_str() => {
                    let item = SubscribeResponse {
                        item: Some(subscribe_response::Item::Event(Delivery {
                            stream: self.bus.stream_name(domain.0),
                            sequence: raw.sequence,
                            cursor: self.positions.to_string(),
                            subject: raw.subject,
                            envelope: Some(envelope),
                        })),
                    };
                    metrics::counter!(METRIC_DELIVERED).increment(1);
                    return Some(self.send(item).await);
                }
                Ok(envelope) => {
                    tracing::error!(tenant = %self.tenant, event_tenant = %envelope.tenant_id, sequence = raw.sequence, "event of another tenant under this tenant's subject, skipped");
                }
                Err(err) => {
                    tracing::warn!(tenant = %self.tenant, sequence = raw.sequence, error = %err, "undecodable event skipped");
                }
            }
        }
        if just_caught_up {
            // Tells a client waiting to switch from catch-up to a shared live feed where it stands.
            return Some(self.send(self.heartbeat_item()).await);
        }
        None
    }

    fn matches(&self, domain: DomainKey, raw: &RawEvent) -> bool {
        if let Some(entity) = &self.entity {
            // The header spares a decode for every other desktop's or run's events.
            if raw.entity_id.as_deref() != Some(entity.as_str()) {
                return false;
            }
        }
        // subject = <prefix>.<tenant>.<domain>.<entity>.<verb>
        let event_type = raw.subject.splitn(4, '.').nth(3).unwrap_or_default();
        self.topics.get(&domain).is_some_and(|topics| topics.iter().any(|t| t.matches(event_type)))
    }

    fn heartbeat_item(&self) -> SubscribeResponse {
        SubscribeResponse {
            item: Some(subscribe_response::Item::Heartbeat(Heartbeat {
                sent_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                cursor: self.positions.to_string(),
            })),
        }
    }

    /// Queues `item`, waiting at most `lag_timeout` for room before declaring the client lagged.
    async fn send(&mut self, item: SubscribeResponse) -> Sent {
        let cursor = self.positions.to_string();
        match self.tx.send_timeout(Ok(item), self.lag_timeout).await {
            Ok(()) => {
                self.last_sent_cursor = cursor;
                Sent::Ok
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Sent::Stop,
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                self.lagged().await;
                Sent::Stop
            }
        }
    }

    async fn lagged(&mut self) {
        let mut end = Cursor::default();
        for (domain, position) in &self.positions.0 {
            let last = self.bus.last_sequence(domain.0).await.unwrap_or(*position);
            end.0.insert(*domain, last.max(*position));
        }
        tracing::info!(tenant = %self.tenant, cursor = %self.last_sent_cursor, "subscriber lagged, sending resync");
        metrics::counter!(METRIC_RESYNC, "reason" => "lagged").increment(1);
        let resync = SubscribeResponse {
            item: Some(subscribe_response::Item::Resync(Resync {
                reason: "lagged".to_owned(),
                last_delivered_cursor: self.last_sent_cursor.clone(),
                cursor: end.to_string(),
                skipped: 0,
            })),
        };
        if let Ok(mut slot) = self.ending.lock() {
            *slot = Some(resync);
        }
    }
}
