//! `GET /ws/desktop/{id}`: real-time sync of one desktop.
//!
//! **Authentication.** Either `Authorization: Bearer <jwt>` (servers, CLIs, tests), or, for
//! browsers, which cannot set headers on a WebSocket, the subprotocol list
//! `Sec-WebSocket-Protocol: getlood.v1, bearer.<jwt>`; the server selects `getlood.v1`. The
//! token is never accepted in the URL, where proxies and access logs would keep it. Both are
//! checked by `require_auth`, which covers this route like every other one.
//! Before the upgrade the desktop is read with the caller's token: an unknown desktop, or
//! another user's or tenant's, is a plain 404 and no socket is opened.
//!
//! **Frames from the server** (JSON text):
//! * `{"type":"state","desktop":{...},"cursor":"window:41"}`: always first, the current state;
//! * `{"type":"event","cursor":"window:42","sequence":42,"event":{"type":"window.opened",...}}`:
//!   each change after that, in stream order. An event may already be reflected in the state
//!   frame; clients skip events whose version is not newer than what they hold;
//! * `{"type":"result","id":...,"command":"open","result":{...}}` and
//!   `{"type":"error","id":...,"code":"invalid_argument","message":"..."}` answer commands; a
//!   malformed command gets an error frame and the socket stays open, and so does a command over
//!   the `ws_command` rate limit (`"code":"resource_exhausted"`, `"retry_after":<s>`);
//! * `{"type":"resync","reason":"lagged","cursor":"window:57"}`, then a close (1013): the client
//!   fell further behind than `ws_buffer` events; it reconnects (with `?after=<cursor>` to get
//!   the missed events, or without to reload the state).
//!
//! **Commands** (JSON text, optional `id` echoed in the answer): `open` (`app_id`, `title`, `x`,
//! `y`, `width`, `height`, `state`, `props`, `request_id`), `move` (`window_id`, `x`, `y`,
//! `width`, `height`, `expected_version`), and `focus`, `minimize`, `maximize`, `restore`,
//! `close` (`window_id`, `expected_version`).
//! Commands need `desktops.write` (role member or above); a read-only viewer's socket gets the
//! state and events, and each command it sends is answered with a `permission_denied` error frame.
//!
//! **Resume.** `?after=<cursor>` (the `cursor` of the last frame received) delivers, after the
//! state frame, every event the client missed, none twice, then the live ones.
//!
//! **Heartbeats.** A ping frame every `ws_ping_interval`; a client silent for three intervals
//! is dropped.
//!
//! **Bounds.** Inbound frames and messages are limited (64 KiB here, 4 KiB on the event
//! sockets), checked on the frame header so an oversized frame is refused before it is buffered
//! (close 1009). A user holds at most `ws_max_sockets_per_user` sockets on a replica; one more
//! upgrade is a 429 with `Retry-After`. A socket lives no longer than the token it was opened
//! with: at the token's `exp` the server sends close 1008 `token expired` and the client
//! reconnects with a fresh token (resuming with `?after=<cursor>`).

mod events;
mod feed;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use futures::stream::SplitSink;
use futures::{SinkExt as _, StreamExt as _};
use getlood_auth::Principal;
use getlood_common::{ApiError, ErrorCode};
use getlood_proto::event_dispatcher::v1::{SubscribeResponse, subscribe_response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::AppState;
use crate::caller::Caller;
use crate::desktop_api::{self, GeometryBody, OpenBody, WindowCommand};
use crate::extract::ApiQuery;
pub(crate) use events::events_socket;
pub use feed::Realtime;
pub(crate) use feed::SocketPermit;
use feed::{Feed, FeedItem, parse_position};

/// Metric: WebSocket clients connected to this replica.
pub const METRIC_SOCKETS: &str = "getlood_gateway_ws_clients";
/// Metric: clients told to resync, labelled `reason`.
pub const METRIC_RESYNC: &str = "getlood_gateway_ws_resync_total";
/// Metric: WebSocket upgrades refused, labelled `reason`.
pub const METRIC_REFUSED: &str = "getlood_gateway_ws_refused_total";

/// The subprotocol the server selects.
const PROTOCOL: &str = "getlood.v1";
/// Largest command frame accepted.
const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most event frames written with one flush.
const MAX_BATCH: usize = 64;

/// Query of the socket route.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SocketQuery {
    /// Resume after this cursor.
    after: Option<String>,
}

/// `GET /ws/desktop/{id}`, behind `require_auth` like every route (which accepts the
/// browser's `bearer.<jwt>` subprotocol entry as the credential).
#[utoipa::path(get, path = "/ws/desktop/{id}", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id"), SocketQuery,
        ("Sec-WebSocket-Protocol" = Option<String>, Header, description = "Browsers: `getlood.v1, bearer.<jwt>` (the server selects `getlood.v1`) instead of the Authorization header")),
    description = "Real-time sync of one desktop over a WebSocket. The server sends a `state` frame first, then `event` frames (`{\"type\":\"event\",\"cursor\",\"sequence\",\"event\"}`), `result`/`error` frames answering commands and `resync` before a close 1013. Commands (JSON text, optional `id`): `open`, `move`, `focus`, `minimize`, `maximize`, `restore`, `close`; they need `desktops.write`. The desktop is read before the upgrade: another user's is a 404, never a socket. Frames are at most 64 KiB; the socket closes with 1008 at the token's expiry.",
    responses(
        (status = 101, description = "Switched to the desktop's WebSocket (subprotocol `getlood.v1`)"),
        (status = 429, description = "The user already holds `ws_max_sockets_per_user` sockets", body = getlood_common::ErrorBody)))]
pub(crate) async fn desktop_socket(
    State(state): State<AppState>,
    caller: Caller,
    Path(desktop_id): Path<String>,
    ApiQuery(query): ApiQuery<SocketQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let after = match query.after.as_deref() {
        None | Some("") => None,
        Some(raw) => match parse_position(raw) {
            Some(p) => Some(p),
            None => return ApiError::invalid_argument("after must be a cursor such as window:42").into_response(),
        },
    };
    // Checked before the upgrade, so another tenant's desktop is a 404, never a socket.
    if let Err(err) = desktop_api::get_desktop(&state, &caller, &desktop_id).await {
        return err.into_response();
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return ApiError::invalid_argument(rejection.body_text()).into_response(),
    };
    let permit = match state.realtime.acquire_socket(caller.principal()) {
        Ok(permit) => permit,
        Err(err) => return too_many_sockets(err),
    };
    // The session's own calls (state read, commands) are not part of the handshake request.
    let caller = caller.without_request_id();
    let settings = &state.settings;
    configure(upgrade).on_failed_upgrade(|err| tracing::info!(error = %err, "websocket upgrade failed")).on_upgrade({
        let ping = settings.ws_ping_interval;
        let send_timeout = settings.ws_send_timeout;
        move |socket| async move {
            metrics::gauge!(METRIC_SOCKETS).increment(1.0);
            let session = Session { state, caller, desktop_id, ping, send_timeout };
            session.run(socket, after).await;
            metrics::gauge!(METRIC_SOCKETS).decrement(1.0);
            drop(permit);
        }
    })
}

/// The handshake and limits of a desktop socket.
fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        // Only `getlood.v1` is ever selected: the `bearer.<jwt>` entry a browser offers next to
        // it carries the token and is never echoed back in the handshake response.
        .protocols([PROTOCOL])
        // Small buffers: ten thousand sockets must fit in one gateway's memory budget (issue 17:
        // 300 MB). The read buffer is allocated (and zero-filled) up front for every socket and
        // commands are a few hundred bytes; a bigger one grows it for that read only. The write
        // threshold bounds the buffer a burst of event frames leaves behind (its capacity is
        // kept for the socket's life), at one write per 4 KiB of frames.
        .read_buffer_size(2 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(MAX_COMMAND_BYTES)
        .max_frame_size(MAX_COMMAND_BYTES)
}

struct Session {
    state: AppState,
    caller: Caller,
    desktop_id: String,
    ping: Duration,
    send_timeout: Duration,
}

/// What the event side of a socket produced.
enum Next {
    Frame(Utf8Bytes),
    Resync(&'static str),
}

impl Session {
    async fn run(self, socket: WebSocket, after: Option<u64>) {
        let (mut sink, mut stream) = socket.split();
        let mut events = Events {
            realtime: self.state.realtime.clone(),
            principal: self.caller.principal(),
            desktop_id: self.desktop_id.clone(),
            position: after.unwrap_or(0),
            source: Source::Detached,
            feed: None,
        };
        // Attach (or start catching up) before reading the state, so no change falls between.
        // The gRPC calls here, of commands and of a reattach are boxed: a socket's task keeps
        // room for its largest await for its whole life, and those run rarely.
        let start = match after {
            Some(_) => Box::pin(events.reattach()).await,
            None => Box::pin(events.attach_live()).await,
        };
        let initial = match start {
            Ok(()) => Box::pin(desktop_api::get_desktop(&self.state, &self.caller, &self.desktop_id)).await,
            Err(err) => Err(err),
        };
        let desktop = match initial {
            Ok(d) => d,
            Err(err) => {
                let _ = self.send(&mut sink, error_frame(&Value::Null, &err)).await;
                let _ = self.send(&mut sink, close(close_code::AGAIN, "unavailable")).await;
                return;
            }
        };
        let state_frame = json!({
            "type": "state",
            "desktop": desktop_api::desktop_json(&desktop),
            "cursor": feed::cursor(events.position),
        });
        if !self.send(&mut sink, text(&state_frame)).await {
            return;
        }

        let shutdown = self.state.realtime.shutdown.clone();
        let expiry = tokio::time::sleep_until(token_deadline(self.caller.principal()));
        tokio::pin!(expiry);
        let mut ping = tokio::time::interval(self.ping);
        ping.reset();
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = self.send(&mut sink, close(close_code::AWAY, "server shutting down")).await;
                    break;
                }
                () = &mut expiry => {
                    let _ = self.send(&mut sink, close(close_code::POLICY, TOKEN_EXPIRED)).await;
                    break;
                }
                msg = stream.next() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            let reply = Box::pin(self.command(t.as_str())).await;
                            if !self.send(&mut sink, text(&reply)).await {
                                break;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let err = ApiError::invalid_argument("commands are JSON text frames");
                            if !self.send(&mut sink, error_frame(&Value::Null, &err)).await {
                                break;
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    }
                }
                next = events.next() => match next {
                    Ok(Next::Frame(frame)) => {
                        // Whatever else is already queued goes out in the same write: under a
                        // burst one flush (one syscall) carries many frames instead of one each.
                        let mut frames = vec![frame];
                        let mut resync = None;
                        while frames.len() < MAX_BATCH {
                            match events.try_next() {
                                Some(Next::Frame(f)) => frames.push(f),
                                Some(Next::Resync(reason)) => {
                                    resync = Some(reason);
                                    break;
                                }
                                None => break,
                            }
                        }
                        if !self.send_frames(&mut sink, frames).await {
                            tracing::info!(desktop_id = %self.desktop_id, "websocket client too slow to write to, dropped");
                            break;
                        }
                        if let Some(reason) = resync {
                            self.resync(&mut sink, reason, events.position).await;
                            break;
                        }
                    }
                    Ok(Next::Resync(reason)) => {
                        self.resync(&mut sink, reason, events.position).await;
                        break;
                    }
                    Err(err) => {
                        let _ = self.send(&mut sink, error_frame(&Value::Null, &err)).await;
                        let _ = self.send(&mut sink, close(close_code::AGAIN, "event stream unavailable")).await;
                        break;
                    }
                },
                _ = ping.tick() => {
                    if last_heard.elapsed() > self.ping * 3 {
                        tracing::info!(desktop_id = %self.desktop_id, "websocket client silent, dropped");
                        break;
                    }
                    if !self.send(&mut sink, Message::Ping(Default::default())).await {
                        break;
                    }
                }
            }
        }
    }

    /// Writes one frame within `send_timeout`; false when the client is gone or too slow.
    async fn send(&self, sink: &mut SplitSink<WebSocket, Message>, msg: Message) -> bool {
        matches!(tokio::time::timeout(self.send_timeout, sink.send(msg)).await, Ok(Ok(())))
    }

    /// Writes event frames with one flush, all within `send_timeout`.
    async fn send_frames(&self, sink: &mut SplitSink<WebSocket, Message>, frames: Vec<Utf8Bytes>) -> bool {
        let write = async {
            for frame in frames {
                sink.feed(Message::Text(frame)).await?;
            }
            sink.flush().await
        };
        matches!(tokio::time::timeout(self.send_timeout, write).await, Ok(Ok(())))
    }

    /// Tells a client that fell behind where to resume, and closes the socket.
    async fn resync(&self, sink: &mut SplitSink<WebSocket, Message>, reason: &'static str, position: u64) {
        metrics::counter!(METRIC_RESYNC, "reason" => reason).increment(1);
        tracing::info!(desktop_id = %self.desktop_id, reason, "websocket client told to resync");
        let frame = json!({"type": "resync", "reason": reason, "cursor": feed::cursor(position)});
        let _ = self.send(sink, text(&frame)).await;
        let _ = self.send(sink, close(close_code::AGAIN, "resync")).await;
    }

    /// Runs one command frame; the answer frame, result or error.
    async fn command(&self, raw: &str) -> Value {
        let value: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                return error_frame_json(&Value::Null, &ApiError::invalid_argument(format!("malformed JSON: {e}")));
            }
        };
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        let frame: CommandFrame = match serde_json::from_value(value) {
            Ok(f) => f,
            Err(e) => return error_frame_json(&id, &ApiError::invalid_argument(format!("invalid command: {e}"))),
        };
        // The socket is open to read-only viewers (desktops.read); commands change the desktop.
        if let Err(err) = getlood_auth::require(&self.caller.principal().roles, getlood_auth::Permission::DesktopsWrite)
        {
            return error_frame_json(&id, &err);
        }
        // Commands are writes: the same per-user and per-tenant budgets as REST writes, in
        // their own class. A refused command gets an error frame; the socket stays open.
        match crate::rate_limit::class_verdict(
            &self.state.limiter,
            crate::RouteClass::WsCommand,
            self.caller.principal(),
        )
        .await
        {
            crate::rate_limit::Verdict::Proceed(_) => {}
            crate::rate_limit::Verdict::Refuse(err, decision) => {
                let mut frame = error_frame_json(&id, &err);
                if let Some(d) = decision {
                    frame["retry_after"] = json!(d.retry_after_secs);
                }
                return frame;
            }
        }
        let (name, cmd) = frame.into_command(&self.desktop_id);
        match desktop_api::execute(&self.state, &self.caller, cmd).await {
            Ok(result) => json!({"type": "result", "id": id, "command": name, "result": result}),
            Err(err) => error_frame_json(&id, &err),
        }
    }
}

/// A command frame from the client.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum CommandFrame {
    Open(OpenBody),
    Move(MoveBody),
    Focus(WindowRef),
    Minimize(WindowRef),
    Maximize(WindowRef),
    Restore(WindowRef),
    Close(WindowRef),
}

#[derive(Debug, Deserialize)]
struct MoveBody {
    window_id: String,
    x: Option<i32>,
    y: Option<i32>,
    width: Option<i32>,
    height: Option<i32>,
    #[serde(default)]
    expected_version: i64,
}

#[derive(Debug, Deserialize)]
struct WindowRef {
    window_id: String,
    #[serde(default)]
    expected_version: i64,
}

impl CommandFrame {
    fn into_command(self, desktop_id: &str) -> (&'static str, WindowCommand) {
        match self {
            Self::Open(body) => ("open", WindowCommand::Open { desktop_id: desktop_id.to_owned(), body }),
            Self::Move(m) => (
                "move",
                WindowCommand::Move {
                    window_id: m.window_id,
                    body: GeometryBody {
                        x: m.x,
                        y: m.y,
                        width: m.width,
                        height: m.height,
                        expected_version: m.expected_version,
                    },
                },
            ),
            Self::Focus(r) => {
                ("focus", WindowCommand::Focus { window_id: r.window_id, expected_version: r.expected_version })
            }
            Self::Minimize(r) => {
                ("minimize", WindowCommand::Minimize { window_id: r.window_id, expected_version: r.expected_version })
            }
            Self::Maximize(r) => {
                ("maximize", WindowCommand::Maximize { window_id: r.window_id, expected_version: r.expected_version })
            }
            Self::Restore(r) => {
                ("restore", WindowCommand::Restore { window_id: r.window_id, expected_version: r.expected_version })
            }
            Self::Close(r) => {
                ("close", WindowCommand::Close { window_id: r.window_id, expected_version: r.expected_version })
            }
        }
    }
}

/// The close reason (and SSE `expired` message) of a stream whose token expired.
pub(crate) const TOKEN_EXPIRED: &str = "token expired";

/// When `principal`'s token expires, on the tokio clock; a stream opened with it ends then.
pub(crate) fn token_deadline(principal: &Principal) -> Instant {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let left = Duration::from_secs(principal.expires_at).saturating_sub(now);
    Instant::now() + left
}

/// The 429 of an upgrade over the per-user socket limit. A socket frees its slot only when it
/// closes, so the hint is a short back-off rather than an exact time.
pub(crate) fn too_many_sockets(err: ApiError) -> Response {
    metrics::counter!(METRIC_REFUSED, "reason" => "sockets_per_user").increment(1);
    let mut response = err.into_response();
    response.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    response
}

fn text(v: &Value) -> Message {
    Message::Text(Utf8Bytes::from(v.to_string()))
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

fn error_frame_json(id: &Value, err: &ApiError) -> Value {
    json!({"type": "error", "id": id, "code": err.code, "message": err.message})
}

fn error_frame(id: &Value, err: &ApiError) -> Message {
    text(&error_frame_json(id, err))
}

/// Where a socket's events come from.
enum Source {
    /// Not attached yet (or the feed stopped): the next call attaches.
    Detached,
    /// The shared desktop feed: missed events from its ring, then live ones.
    Live { replay: VecDeque<Arc<FeedItem>>, rx: broadcast::Receiver<Arc<FeedItem>> },
    /// The socket's own dispatcher subscription, until the feed covers its position.
    CatchUp(tonic::Streaming<SubscribeResponse>),
}

/// The event side of one socket. Every method is cancel-safe (the session's select drops
/// `next` whenever a command arrives): state changes only after the awaits they depend on.
/// It borrows the session's principal: one copy of the caller's identity (and token) per socket.
struct Events<'a> {
    realtime: Realtime,
    principal: &'a Principal,
    desktop_id: String,
    /// Every event up to here has been sent (or did not concern the desktop).
    position: u64,
    source: Source,
    /// The feed a catching-up socket will switch to.
    feed: Option<Arc<Feed>>,
}

impl Events<'_> {
    async fn attach_live(&mut self) -> Result<(), ApiError> {
        let feed = self.realtime.feed(self.principal, &self.desktop_id).await?;
        match feed.attach_live() {
            Some(a) => {
                self.position = a.position;
                self.source = Source::Live { replay: a.replay, rx: a.rx };
                Ok(())
            }
            None => self.reattach().await,
        }
    }

    /// Continues from `position`: from the feed if it covers it, else catching up upstream.
    async fn reattach(&mut self) -> Result<(), ApiError> {
        let feed = self.realtime.feed(self.principal, &self.desktop_id).await?;
        if let Some(a) = feed.attach_from(self.position) {
            self.position = a.position;
            self.source = Source::Live { replay: a.replay, rx: a.rx };
            self.feed = None;
            return Ok(());
        }
        let (stream, _) =
            feed::subscribe(&self.realtime.upstreams, self.principal, &self.desktop_id, Some(self.position)).await?;
        self.source = Source::CatchUp(stream);
        self.feed = Some(feed);
        Ok(())
    }

    /// Switches a catching-up socket to the shared feed once the feed covers its position.
    fn try_share(&mut self) {
        let Some(feed) = &self.feed else { return };
        if let Some(a) = feed.attach_from(self.position) {
            self.position = a.position;
            self.source = Source::Live { replay: a.replay, rx: a.rx };
            self.feed = None;
        }
    }

    /// The frame of a shared-feed item not sent yet, advancing the position.
    fn accept(&mut self, item: &FeedItem) -> Option<Utf8Bytes> {
        if item.seq <= self.position {
            return None;
        }
        self.position = item.position;
        Some(item.frame.clone())
    }

    /// The next shared-feed frame if one is already queued, without waiting. None when nothing
    /// is queued or the socket is not on the shared feed (`next` then takes over).
    fn try_next(&mut self) -> Option<Next> {
        loop {
            let Source::Live { replay, rx } = &mut self.source else { return None };
            let item = match replay.pop_front() {
                Some(item) => item,
                None => match rx.try_recv() {
                    Ok(item) => item,
                    Err(broadcast::error::TryRecvError::Lagged(_)) => return Some(Next::Resync("lagged")),
                    Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                        return None;
                    }
                },
            };
            if let Some(frame) = self.accept(&item) {
                return Some(Next::Frame(frame));
            }
        }
    }

    async fn next(&mut self) -> Result<Next, ApiError> {
        loop {
            match &mut self.source {
                Source::Detached => Box::pin(self.reattach()).await?,
                Source::Live { replay, rx } => {
                    let item = match replay.pop_front() {
                        Some(item) => item,
                        None => match rx.recv().await {
                            Ok(item) => item,
                            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(Next::Resync("lagged")),
                            Err(broadcast::error::RecvError::Closed) => {
                                self.source = Source::Detached;
                                continue;
                            }
                        },
                    };
                    if let Some(frame) = self.accept(&item) {
                        return Ok(Next::Frame(frame));
                    }
                }
                Source::CatchUp(stream) => match stream.message().await {
                    Ok(Some(SubscribeResponse { item: Some(subscribe_response::Item::Event(d)) })) => {
                        let item = feed::encode(&d);
                        if item.seq <= self.position {
                            continue;
                        }
                        self.position = item.position;
                        self.try_share();
                        return Ok(Next::Frame(item.frame));
                    }
                    Ok(Some(SubscribeResponse { item: Some(subscribe_response::Item::Heartbeat(h)) })) => {
                        if let Some(p) = parse_position(&h.cursor) {
                            self.position = self.position.max(p);
                        }
                        self.try_share();
                    }
                    Ok(Some(SubscribeResponse { item: Some(subscribe_response::Item::Resync(_)) })) => {
                        return Ok(Next::Resync("lagged"));
                    }
                    Ok(Some(SubscribeResponse { item: None })) => {}
                    Ok(None) => self.source = Source::Detached,
                    Err(status) if status.code() == tonic::Code::OutOfRange => return Ok(Next::Resync("retention")),
                    Err(status) => {
                        tracing::warn!(desktop_id = %self.desktop_id, error = %status, "catch-up subscription failed");
                        return Err(ApiError::new(ErrorCode::Unavailable, "the event stream is unavailable"));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test harness tasks end with the test
mod tests {
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// The handshake response of a socket served with [`configure`], to a client offering
    /// `protocols`.
    async fn handshake(protocols: &str) -> String {
        let app = Router::new()
            .route("/ws", get(|u: WebSocketUpgrade| async { configure(u).on_upgrade(|_socket| async {}) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {protocols}\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let mut buf = [0u8; 1024];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the handshake response");
            response.extend_from_slice(&buf[..n]);
        }
        server.abort();
        String::from_utf8(response).unwrap().to_ascii_lowercase()
    }

    /// Opens a socket served with `configure` that reads until it fails, sends a frame header
    /// announcing a 16 MiB text frame plus 1 KiB of its payload, and returns whether the server
    /// closed the connection within 3 s (it must not wait to buffer the rest).
    pub(crate) async fn oversized_frame_is_refused_from_its_header(
        configure: fn(WebSocketUpgrade) -> WebSocketUpgrade,
    ) -> bool {
        let app = Router::new().route(
            "/ws",
            get(move |u: WebSocketUpgrade| async move {
                configure(u).on_upgrade(|mut socket| async move { while let Some(Ok(_)) = socket.recv().await {} })
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: getlood.v1\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before the handshake response");
            response.extend_from_slice(&buf[..n]);
        }
        assert!(response.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&response));
        // FIN + text, masked, 64-bit length of 16 MiB, a zero mask, then part of the payload.
        let mut frame = vec![0x81, 0xFF];
        frame.extend_from_slice(&(16u64 * 1024 * 1024).to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(&[b'a'; 1024]);
        conn.write_all(&frame).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // A close frame (opcode 8) then EOF.
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok();
        server.abort();
        closed
    }

    #[tokio::test]
    async fn desktop_socket_refuses_an_oversized_frame_from_its_header() {
        assert!(oversized_frame_is_refused_from_its_header(configure).await);
    }

    #[test]
    fn token_deadline_is_the_tokens_exp() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let principal = |exp| Principal {
            tenant: getlood_auth::TenantId::parse("acme").unwrap(),
            user: "u".to_owned(),
            roles: Vec::new(),
            expires_at: exp,
            token: String::new(),
        };
        let left = token_deadline(&principal(now + 30)) - Instant::now();
        assert!(left > Duration::from_secs(28) && left <= Duration::from_secs(30), "{left:?}");
        assert!(token_deadline(&principal(now - 5)) <= Instant::now());
    }

    #[tokio::test]
    async fn browser_handshake_selects_getlood_v1_and_never_echoes_the_token() {
        let response = handshake("getlood.v1, bearer.header.payload.signature").await;
        assert!(response.starts_with("http/1.1 101"), "{response}");
        assert!(response.contains("sec-websocket-protocol: getlood.v1\r\n"), "{response}");
        assert!(!response.contains("bearer"), "{response}");
    }
}
