//! Event subscriptions over a WebSocket: `GET /api/v1/events` and
//! `GET /api/v1/workflows/runs/{id}/events` requested as an upgrade, for clients that prefer one
//! socket to SSE. Authentication is the same as the desktop socket's (header, or the
//! `getlood.v1, bearer.<jwt>` subprotocols for browsers); the subscription is opened before the
//! upgrade, so a bad topic, an unknown run or an expired cursor is a plain HTTP error.
//!
//! **Frames from the server** (JSON text): `{"type":"event","cursor":"workflow:42","event":{...}}`
//! for each event (reconnect with `?after=<cursor>` to resume after it, none twice);
//! `{"type":"resync","reason":..,"cursor":..,"last_delivered_cursor":..}` then a close (1013)
//! when the client fell behind; `{"type":"error","code":..,"message":..}` then a close (1013)
//! when the event stream failed. Text frames from the client get an error frame (this socket
//! takes no commands); a ping is sent every `ws_ping_interval` and a client silent for three
//! intervals is dropped. Inbound frames are limited to 4 KiB, refused from the frame header
//! (close 1009); the socket counts against `ws_max_sockets_per_user`; at the token's expiry the
//! server sends close 1008 `token expired`.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures::stream::BoxStream;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{METRIC_SOCKETS, PROTOCOL, SocketPermit, TOKEN_EXPIRED, close, text};
use crate::AppState;
use crate::sse::Item;

/// Largest frame or message a client may send: this socket takes no commands, so anything
/// bigger than a close reason is noise.
const MAX_INBOUND_BYTES: usize = 4 * 1024;

/// Upgrades to a socket that sends `items` (which end at the token's expiry with
/// [`Item::Expired`]), holding `permit` until it closes.
pub(crate) fn events_socket(
    state: &AppState,
    upgrade: WebSocketUpgrade,
    items: BoxStream<'static, Item>,
    permit: SocketPermit,
) -> Response {
    let ping = state.settings.ws_ping_interval;
    let send_timeout = state.settings.ws_send_timeout;
    let shutdown = state.realtime.shutdown.clone();
    configure(upgrade).on_failed_upgrade(|err| tracing::info!(error = %err, "websocket upgrade failed")).on_upgrade(
        move |socket| async move {
            metrics::gauge!(METRIC_SOCKETS).increment(1.0);
            run(socket, items, ping, send_timeout, shutdown).await;
            metrics::gauge!(METRIC_SOCKETS).decrement(1.0);
            drop(permit);
        },
    )
}

/// The handshake and limits of an event socket. The frame limit matters as much as the message
/// limit: tungstenite checks the message size only once a frame is fully read, so without it a
/// client could make the gateway buffer a 16 MiB frame.
fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade
        .protocols([PROTOCOL])
        // Small buffers, for the same reason as the desktop socket's (`super::configure`): the
        // client sends only pings and a close.
        .read_buffer_size(2 * 1024)
        .write_buffer_size(4 * 1024)
        .max_message_size(MAX_INBOUND_BYTES)
        .max_frame_size(MAX_INBOUND_BYTES)
}

async fn run(
    socket: WebSocket,
    mut items: BoxStream<'static, Item>,
    ping: Duration,
    send_timeout: Duration,
    shutdown: CancellationToken,
) {
    let (mut sink, mut stream) = socket.split();
    let mut send = async |msg: Message| matches!(tokio::time::timeout(send_timeout, sink.send(msg)).await, Ok(Ok(())));
    let mut ticker = tokio::time::interval(ping);
    ticker.reset();
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                let _ = send(close(close_code::AWAY, "server shutting down")).await;
                break;
            }
            msg = stream.next() => {
                last_heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => {
                        let frame = json!({"type": "error", "id": Value::Null, "code": "invalid_argument",
                            "message": "this socket only sends events; it takes no commands"});
                        if !send(text(&frame)).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                }
            }
            item = items.next() => match item {
                Some(Item::Event { cursor, kind: _, data }) => {
                    if !send(text(&json!({"type": "event", "cursor": cursor, "event": data}))).await {
                        tracing::info!("websocket client too slow to write to, dropped");
                        break;
                    }
                }
                Some(Item::Resync(mut data)) => {
                    if let Some(obj) = data.as_object_mut() {
                        obj.insert("type".to_owned(), json!("resync"));
                    }
                    let _ = send(text(&data)).await;
                    let _ = send(close(close_code::AGAIN, "resync")).await;
                    break;
                }
                Some(Item::Failed(mut data)) => {
                    if let Some(obj) = data.as_object_mut() {
                        obj.insert("type".to_owned(), json!("error"));
                    }
                    let _ = send(text(&data)).await;
                    let _ = send(close(close_code::AGAIN, "event stream unavailable")).await;
                    break;
                }
                Some(Item::Expired(_)) => {
                    let _ = send(close(close_code::POLICY, TOKEN_EXPIRED)).await;
                    break;
                }
                None => {
                    let _ = send(close(close_code::NORMAL, "event stream ended")).await;
                    break;
                }
            },
            _ = ticker.tick() => {
                if last_heard.elapsed() > ping * 3 {
                    tracing::info!("websocket client silent, dropped");
                    break;
                }
                if !send(Message::Ping(Default::default())).await {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn event_socket_refuses_an_oversized_frame_from_its_header() {
        assert!(super::super::tests::oversized_frame_is_refused_from_its_header(super::configure).await);
    }
}
