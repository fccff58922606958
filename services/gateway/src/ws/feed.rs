//! Desktop feeds: one event-dispatcher subscription per desktop per gateway replica, shared by
//! every WebSocket client of that desktop on the replica. A thousand clients of one desktop cost
//! one upstream stream, one JSON encoding per event, and one broadcast ring.
//!
//! Each feed keeps the last `ws_replay` events with their stream sequence. A client attaches at
//! a position (the sequence it has seen up to): if the feed covers everything after that
//! position, the client gets the missed events from the ring and then the live ones, with no gap
//! and no duplicate, because both are taken under the feed's lock. Otherwise the client catches
//! up through its own dispatcher subscription first (see the session in `mod.rs`).
//!
//! The broadcast channel is the per-client buffer: a client that falls `ws_buffer` events
//! behind sees `Lagged` and is told to resync, the others are not slowed down.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use getlood_auth::{Principal, TenantId};
use getlood_common::ApiError;
use getlood_proto::event_dispatcher::v1::{DeliverPolicy, Delivery, SubscribeRequest, subscribe_response};
use serde_json::json;
use tokio::sync::{OnceCell, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::chat::upstream_error;
use crate::desktop_api::event_json;
use crate::{GatewaySettings, Upstreams, upstream};

/// Metric: desktop feeds open on this replica.
pub const METRIC_FEEDS: &str = "getlood_gateway_desktop_feeds";

/// How often the dispatcher heartbeats a feed's subscription (detects a dead upstream).
const FEED_HEARTBEAT: Duration = Duration::from_secs(5);

/// One event, encoded once for every client.
#[derive(Debug)]
pub(crate) struct FeedItem {
    /// Stream sequence of the event.
    pub seq: u64,
    /// Position to resume after this event (>= seq).
    pub position: u64,
    /// The `{"type":"event",...}` text frame.
    pub frame: Utf8Bytes,
}

/// What an attach returns: events to send first, then the live receiver.
pub(crate) struct Attached {
    pub replay: VecDeque<Arc<FeedItem>>,
    pub rx: broadcast::Receiver<Arc<FeedItem>>,
    /// The position the client is at before `replay` is sent.
    pub position: u64,
}

struct FeedState {
    ring: VecDeque<Arc<FeedItem>>,
    /// Every event of the desktop with a sequence >= this is in the ring or still to come.
    covered_from: u64,
    /// Position of the newest item or heartbeat seen.
    position: u64,
    /// None once the feed has stopped: receivers then see `Closed`.
    tx: Option<broadcast::Sender<Arc<FeedItem>>>,
}

/// The shared feed of one desktop.
pub(crate) struct Feed {
    state: Mutex<FeedState>,
    replay: usize,
}

impl Feed {
    /// Attaches a new client at the feed's current position (it has just loaded the state).
    pub(crate) fn attach_live(&self) -> Option<Attached> {
        let state = self.state.lock().ok()?;
        let rx = state.tx.as_ref()?.subscribe();
        Some(Attached { replay: VecDeque::new(), rx, position: state.position })
    }

    /// Attaches a client that has seen everything up to `position`, if the feed covers the rest.
    pub(crate) fn attach_from(&self, position: u64) -> Option<Attached> {
        let state = self.state.lock().ok()?;
        let tx = state.tx.as_ref()?;
        if state.covered_from > position.saturating_add(1) {
            return None;
        }
        let replay: VecDeque<_> = state.ring.iter().filter(|i| i.seq > position).cloned().collect();
        Some(Attached { replay, rx: tx.subscribe(), position })
    }

    fn is_closed(&self) -> bool {
        self.state.lock().map(|s| s.tx.is_none()).unwrap_or(true)
    }

    fn receivers(&self) -> usize {
        self.state.lock().ok().and_then(|s| s.tx.as_ref().map(broadcast::Sender::receiver_count)).unwrap_or(0)
    }

    fn push(&self, item: FeedItem) {
        let Ok(mut state) = self.state.lock() else { return };
        let item = Arc::new(item);
        state.position = state.position.max(item.position);
        state.ring.push_back(item.clone());
        while state.ring.len() > self.replay {
            if let Some(old) = state.ring.pop_front() {
                state.covered_from = old.seq + 1;
            }
        }
        if let Some(tx) = &state.tx {
            // No receiver is fine: the ring still serves clients that reconnect.
            let _ = tx.send(item);
        }
    }

    fn advance(&self, position: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.position = state.position.max(position);
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.tx = None;
        }
    }
}

type FeedKey = (TenantId, String);
/// A feed being started or running; the cell makes concurrent first clients share one start.
type FeedSlot = Arc<OnceCell<Arc<Feed>>>;

/// The desktop feeds of this replica, and the lifetime of its long-lived streams.
#[derive(Clone)]
pub struct Realtime {
    feeds: Arc<Mutex<HashMap<FeedKey, FeedSlot>>>,
    /// Open WebSockets per (tenant, user) on this replica, bounded by `ws_max_sockets_per_user`.
    sockets: Arc<Mutex<HashMap<(TenantId, String), usize>>>,
    pub(crate) settings: Arc<GatewaySettings>,
    pub(crate) upstreams: Upstreams,
    tracker: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

/// One open WebSocket of a user, counted until dropped ([`Realtime::acquire_socket`]).
pub(crate) struct SocketPermit {
    sockets: Arc<Mutex<HashMap<(TenantId, String), usize>>>,
    key: (TenantId, String),
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        if let Ok(mut sockets) = self.sockets.lock()
            && let Some(open) = sockets.get_mut(&self.key)
        {
            *open = open.saturating_sub(1);
            if *open == 0 {
                sockets.remove(&self.key);
            }
        }
    }
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime").finish_non_exhaustive()
    }
}

impl Realtime {
    /// Feeds started on `tracker`, all stopped by `shutdown`.
    pub fn new(
        settings: Arc<GatewaySettings>,
        upstreams: Upstreams,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            feeds: Arc::new(Mutex::new(HashMap::new())),
            sockets: Arc::new(Mutex::new(HashMap::new())),
            settings,
            upstreams,
            tracker,
            shutdown,
        }
    }

    /// The task tracker of the gateway's background work, which shutdown waits for.
    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Counts one more WebSocket of `principal`'s user on this replica, or refuses it when the
    /// user already holds `ws_max_sockets_per_user`: each socket holds buffers, a feed slot and
    /// possibly an upstream subscription, so one client must not hold them without bound. The
    /// permit gives the slot back when dropped (socket closed or upgrade failed).
    pub(crate) fn acquire_socket(&self, principal: &Principal) -> Result<SocketPermit, ApiError> {
        let limit = self.settings.ws_max_sockets_per_user;
        let key = (principal.tenant.clone(), principal.user.clone());
        let mut sockets = self.sockets.lock().map_err(|_| ApiError::unavailable("socket registry poisoned"))?;
        let open = sockets.entry(key.clone()).or_insert(0);
        if *open >= limit {
            return Err(ApiError::new(
                getlood_common::ErrorCode::ResourceExhausted,
                format!("at most {limit} WebSockets per user are open at once; close one first"),
            ));
        }
        *open += 1;
        Ok(SocketPermit { sockets: self.sockets.clone(), key })
    }
    /// The live feed of `desktop_id`, started with `principal`'s token if there is none. The
    /// caller must already have checked that `principal` may see the desktop.
    pub(crate) async fn feed(&self, principal: &Principal, desktop_id: &str) -> Result<Arc<Feed>, ApiError> {
        let key = (principal.tenant.clone(), desktop_id.to_owned());
        for _ in 0..2 {
            let cell = {
                let mut feeds = self.feeds.lock().map_err(|_| ApiError::unavailable("feed registry poisoned"))?;
                feeds.entry(key.clone()).or_default().clone()
            };
            let started = cell.get_or_try_init(|| self.start(principal, desktop_id, cell.clone())).await;
            match started {
                Ok(feed) if !feed.is_closed() => return Ok(feed.clone()),
                // Stopped between lookup and use: forget it and start another.
                Ok(_) => self.forget(&key, &cell),
                Err(err) => {
                    self.forget(&key, &cell);
                    return Err(err);
                }
            }
        }
        Err(ApiError::unavailable("the desktop feed could not be started, retry shortly"))
    }

    fn forget(&self, key: &FeedKey, cell: &FeedSlot) {
        if let Ok(mut feeds) = self.feeds.lock()
            && feeds.get(key).is_some_and(|c| Arc::ptr_eq(c, cell))
        {
            feeds.remove(key);
        }
    }

    /// Opens the upstream subscription and waits for its first item, which says where it starts.
    async fn start(&self, principal: &Principal, desktop_id: &str, cell: FeedSlot) -> Result<Arc<Feed>, ApiError> {
        let (stream, start) = subscribe(&self.upstreams, principal, desktop_id, None).await?;
        let (tx, _) = broadcast::channel(self.settings.ws_buffer);
        let feed = Arc::new(Feed {
            state: Mutex::new(FeedState {
                ring: VecDeque::new(),
                covered_from: start.saturating_add(1),
                position: start,
                tx: Some(tx),
            }),
            replay: self.settings.ws_replay,
        });
        let key = (principal.tenant.clone(), desktop_id.to_owned());
        let this = self.clone();
        let task_feed = feed.clone();
        self.tracker.spawn(async move {
            metrics::gauge!(METRIC_FEEDS).increment(1.0);
            this.pump(&task_feed, stream, &key.1).await;
            task_feed.close();
            this.forget(&key, &cell);
            metrics::gauge!(METRIC_FEEDS).decrement(1.0);
        });
        tracing::debug!(tenant = %principal.tenant, desktop_id, start, "desktop feed started");
        Ok(feed)
    }

    async fn pump(
        &self,
        feed: &Feed,
        mut stream: tonic::Streaming<getlood_proto::event_dispatcher::v1::SubscribeResponse>,
        desktop_id: &str,
    ) {
        let idle_limit = self.settings.ws_feed_idle;
        let mut idle_since: Option<tokio::time::Instant> = None;
        let mut check = tokio::time::interval((idle_limit / 4).max(Duration::from_millis(50)));
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = check.tick() => {
                    // Kept a while without clients, so a client that reconnects resumes from the ring.
                    if feed.receivers() > 0 {
                        idle_since = None;
                    } else if idle_since.get_or_insert_with(tokio::time::Instant::now).elapsed() >= idle_limit {
                        tracing::debug!(desktop_id, "desktop feed idle, stopping");
                        return;
                    }
                }
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => match resp.item {
                        Some(subscribe_response::Item::Event(delivery)) => feed.push(encode(&delivery)),
                        Some(subscribe_response::Item::Heartbeat(h)) => {
                            if let Some(p) = parse_position(&h.cursor) {
                                feed.advance(p);
                            }
                        }
                        Some(subscribe_response::Item::Resync(r)) => {
                            // The feed's clients re-attach from their own positions and catch up
                            // through the dispatcher: nothing is lost, the feed just restarts.
                            tracing::warn!(desktop_id, reason = %r.reason, "desktop feed told to resync, restarting");
                            return;
                        }
                        None => {}
                    },
                    Ok(None) => return,
                    Err(status) => {
                        tracing::warn!(desktop_id, error = %status, "desktop feed upstream failed, restarting");
                        return;
                    }
                },
            }
        }
    }
}

/// Opens a window-event subscription of `desktop_id`: live (`after` None) or after a position.
/// Returns the stream and the position it starts after (its first item, a heartbeat).
pub(crate) async fn subscribe(
    upstreams: &Upstreams,
    principal: &Principal,
    desktop_id: &str,
    after: Option<u64>,
) -> Result<(tonic::Streaming<getlood_proto::event_dispatcher::v1::SubscribeResponse>, u64), ApiError> {
    let (policy, cursor) = match after {
        None => (DeliverPolicy::New, String::new()),
        Some(p) => (DeliverPolicy::Resume, cursor(p)),
    };
    let req = SubscribeRequest {
        topics: vec!["window".to_owned()],
        entity_id: desktop_id.to_owned(),
        deliver_policy: policy as i32,
        resume_cursor: cursor,
        heartbeat_interval_ms: i32::try_from(FEED_HEARTBEAT.as_millis()).unwrap_or(5000),
        ..SubscribeRequest::default()
    };
    let mut stream = upstreams
        .event_dispatcher()
        .subscribe(upstream::request(principal, None, req))
        .await
        .map_err(|s| upstream_error("event-dispatcher", s))?
        .into_inner();
    let first = stream.message().await.map_err(|s| upstream_error("event-dispatcher", s))?;
    match first.and_then(|r| r.item) {
        Some(subscribe_response::Item::Heartbeat(h)) => {
            let start = parse_position(&h.cursor).unwrap_or(after.unwrap_or(0));
            Ok((stream, start))
        }
        _ => Err(ApiError::unavailable("the event-dispatcher subscription did not start")),
    }
}

/// The cursor of a window-stream position, as the dispatcher writes it.
pub(crate) fn cursor(position: u64) -> String {
    format!("window:{position}")
}

/// The window-stream position of a dispatcher cursor (`window:42`).
pub(crate) fn parse_position(cursor: &str) -> Option<u64> {
    cursor.split(',').find_map(|part| part.strip_prefix("window:")).and_then(|n| n.parse().ok())
}

/// The frame of one delivered event.
pub(crate) fn encode(d: &Delivery) -> FeedItem {
    let position = parse_position(&d.cursor).unwrap_or(d.sequence).max(d.sequence);
    let event = d.envelope.as_ref().map(event_json).unwrap_or_default();
    let frame = json!({
        "type": "event",
        "cursor": cursor(position),
        "sequence": d.sequence,
        "event": event,
    });
    FeedItem { seq: d.sequence, position, frame: Utf8Bytes::from(frame.to_string()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(start: u64, replay: usize) -> Feed {
        let (tx, _) = broadcast::channel(8);
        Feed {
            state: Mutex::new(FeedState {
                ring: VecDeque::new(),
                covered_from: start + 1,
                position: start,
                tx: Some(tx),
            }),
            replay,
        }
    }

    fn item(seq: u64) -> FeedItem {
        FeedItem { seq, position: seq, frame: Utf8Bytes::from(seq.to_string()) }
    }

    #[test]
    fn attach_replays_exactly_what_was_missed() {
        let f = feed(10, 3);
        for seq in [12, 15, 17] {
            f.push(item(seq));
        }
        let a = f.attach_from(12).unwrap();
        assert_eq!(a.replay.iter().map(|i| i.seq).collect::<Vec<_>>(), [15, 17]);
        assert_eq!(a.position, 12);
        // Anything before the feed started is not covered: the client must catch up upstream.
        assert!(f.attach_from(9).is_none());
        assert!(f.attach_from(10).is_some());
        // Evicting 12 moves coverage to 13.
        f.push(item(20));
        assert!(f.attach_from(11).is_none());
        assert_eq!(f.attach_from(12).unwrap().replay.len(), 3);
    }

    #[test]
    fn live_attach_starts_at_the_newest_position() {
        let f = feed(10, 3);
        f.push(item(11));
        f.advance(30);
        let mut a = f.attach_live().unwrap();
        assert!(a.replay.is_empty());
        assert_eq!(a.position, 30);
        f.push(item(31));
        assert_eq!(a.rx.try_recv().unwrap().seq, 31);
        f.close();
        assert!(f.attach_live().is_none());
    }

    #[test]
    fn positions_parse_from_cursors() {
        assert_eq!(parse_position("window:42"), Some(42));
        assert_eq!(parse_position("agent:1,window:7"), Some(7));
        assert_eq!(parse_position("agent:1"), None);
        assert_eq!(cursor(5), "window:5");
    }
}
