//! The GraphQL WebSocket (`GET /graphql` upgraded, subprotocol `graphql-transport-ws`, or the
//! legacy `graphql-ws`). async-graphql speaks the protocol; this module holds the socket to the
//! gateway's rules for long-lived connections, as the desktop and event sockets do:
//!
//! * the caller is the one `require_auth` verified on the upgrade (header, or the browser's
//!   `bearer.<jwt>` subprotocol entry). A `connection_init` payload may carry a token too
//!   (`{"Authorization": "Bearer <jwt>"}`); it must verify and name the same tenant and user, or
//!   the socket is closed;
//! * `connection_init` must come within [`INIT_TIMEOUT`] (close 4408);
//! * each `subscribe` counts against the `ws_command` rate limit (refused with an `error`
//!   message, code `resource_exhausted`), a socket holds at most `graphql_max_subscriptions`
//!   subscriptions, and the socket counts against `ws_max_sockets_per_user`;
//! * inbound messages are bounded by `max_body_bytes` (checked on the frame header, close 1009);
//!   a client sending faster than the server reads is closed (1008);
//! * a ping every `ws_ping_interval`, a client silent for three is dropped; at the token's expiry
//!   close 1008 `token expired`; on shutdown close 1001.

use std::time::Duration;

use async_graphql::Data;
use async_graphql::dataloader::DataLoader;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse as _, Response};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::GatewaySchema;
use super::loader::RunLoader;
use super::subscription::Slots;
use crate::AppState;
use crate::caller::Caller;
use crate::rate_limit::{RouteClass, Verdict, class_verdict};
use crate::ws::{METRIC_SOCKETS, SocketPermit};

/// Time a client has to send `connection_init` after the upgrade.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Client messages queued for the protocol handler; a client further ahead is closed.
const INBOUND_QUEUE: usize = 64;
/// Server messages queued for writing.
const OUTBOUND_QUEUE: usize = 256;

/// Upgrades to the GraphQL socket of `caller`, or answers 429 over `ws_max_sockets_per_user`.
pub(crate) fn upgrade(
    state: &AppState,
    schema: GatewaySchema,
    caller: Caller,
    upgrade: WebSocketUpgrade,
    protocol: GraphQLProtocol,
) -> Response {
    let permit = match state.realtime.acquire_socket(caller.principal()) {
        Ok(permit) => permit,
        Err(err) => return crate::ws::too_many_sockets(err),
    };
    let max = state.settings.max_body_bytes;
    let state = state.clone();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max)
        .max_frame_size(max)
        .on_failed_upgrade(|err| tracing::info!(error = %err, "graphql websocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            metrics::gauge!(METRIC_SOCKETS).increment(1.0);
            run(state, schema, caller.without_request_id(), socket, protocol, permit).await;
            metrics::gauge!(METRIC_SOCKETS).decrement(1.0);
        })
        .into_response()
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// Checks a `connection_init` payload's token, if it has one, against the socket's caller.
fn check_init(state: &AppState, caller: &Caller, payload: &Value) -> async_graphql::Result<Data> {
    let token = ["Authorization", "authorization", "token"].iter().find_map(|k| payload.get(*k)?.as_str());
    let Some(token) = token else { return Ok(Data::default()) };
    let header = if token.len() > 7 && token[..7].eq_ignore_ascii_case("bearer ") {
        token.to_owned()
    } else {
        format!("Bearer {token}")
    };
    let principal = caller.principal();
    match state.verifier.verify_header(Some(&header)) {
        Ok(p) if p.tenant == principal.tenant && p.user == principal.user => Ok(Data::default()),
        Ok(_) => Err("the connection_init token names another caller than the socket's".into()),
        Err(err) => Err(format!("the connection_init token is refused: {err}").into()),
    }
}

/// The `error` message refusing operation `id` because the caller is over a limit.
fn refused(id: &Value, err: &getlood_common::ApiError, retry_after: Option<u64>) -> Message {
    let mut extensions = json!({"code": err.code.as_str()});
    if let Some(secs) = retry_after {
        extensions["retry_after"] = json!(secs);
    }
    let body = json!({"id": id, "type": "error", "payload": [{"message": err.message, "extensions": extensions}]});
    Message::Text(Utf8Bytes::from(body.to_string()))
}

async fn run(
    state: AppState,
    schema: GatewaySchema,
    caller: Caller,
    socket: WebSocket,
    protocol: GraphQLProtocol,
    permit: SocketPermit,
) {
    let settings = state.settings.clone();
    let (in_tx, in_rx) = tokio::sync::mpsc::channel::<Result<Message, axum::Error>>(INBOUND_QUEUE);
    let (out_tx, mut out_rx) = futures::channel::mpsc::channel::<Message>(OUTBOUND_QUEUE);
    // The socket's loader acts for its caller; without a cache, a query over the socket never
    // answers from an earlier one's reads.
    let loader = DataLoader::new(RunLoader::new(state.clone(), caller.clone()), super::spawner(&state));
    loader.enable_all_cache(false);
    let mut data = Data::default();
    data.insert(caller.clone());
    data.insert(loader);
    data.insert(Slots::new(settings.graphql_max_subscriptions));
    let init_state = state.clone();
    let init_caller = caller.clone();
    let protocol_handler =
        GraphQLWebSocket::new_with_pair(out_tx, tokio_stream::wrappers::ReceiverStream::new(in_rx), schema, protocol)
            .with_data(data)
            .on_connection_init(move |payload| {
                let checked = check_init(&init_state, &init_caller, &payload);
                async move { checked }
            })
            .serve();

    let (mut sink, mut stream) = socket.split();
    let send_timeout = settings.ws_send_timeout;
    let ping = settings.ws_ping_interval;
    let shutdown = state.realtime.shutdown.clone();
    let expiry = tokio::time::sleep_until(crate::ws::token_deadline(caller.principal()));
    let init_deadline = tokio::time::sleep(INIT_TIMEOUT);
    let pump = async move {
        tokio::pin!(expiry, init_deadline);
        let mut send =
            async |msg: Message| matches!(tokio::time::timeout(send_timeout, sink.send(msg)).await, Ok(Ok(())));
        let mut ticker = tokio::time::interval(ping);
        ticker.reset();
        let mut last_heard = Instant::now();
        let mut acked = false;
        let in_tx = in_tx;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = send(close(close_code::AWAY, "server shutting down")).await;
                    break;
                }
                () = &mut expiry => {
                    let _ = send(close(close_code::POLICY, crate::ws::TOKEN_EXPIRED)).await;
                    break;
                }
                () = &mut init_deadline, if !acked => {
                    let _ = send(close(4408, "connection initialisation timeout")).await;
                    break;
                }
                msg = stream.next() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                            if let Some(answer) = over_limit(&state, &caller, &msg).await {
                                if !send(answer).await {
                                    break;
                                }
                                continue;
                            }
                            if in_tx.try_send(Ok(msg)).is_err() {
                                let _ = send(close(close_code::POLICY, "too many messages in flight")).await;
                                break;
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                    }
                }
                out = out_rx.next() => match out {
                    Some(Message::Close(frame)) => {
                        let _ = send(Message::Close(frame)).await;
                        break;
                    }
                    Some(msg) => {
                        if let Message::Text(text) = &msg
                            && text.as_str().contains("\"connection_ack\"")
                        {
                            acked = true;
                        }
                        if !send(msg).await {
                            tracing::info!("graphql websocket client too slow to write to, dropped");
                            break;
                        }
                    }
                    None => {
                        let _ = send(close(close_code::NORMAL, "")).await;
                        break;
                    }
                },
                _ = ticker.tick() => {
                    if last_heard.elapsed() > ping * 3 {
                        tracing::info!("graphql websocket client silent, dropped");
                        break;
                    }
                    if !send(Message::Ping(Default::default())).await {
                        break;
                    }
                }
            }
        }
        // Dropping the inbound queue ends the protocol handler and its subscriptions.
        drop(in_tx);
    };
    futures::future::join(protocol_handler, pump).await;
    drop(permit);
}

/// For a `subscribe` (or legacy `start`) message over the caller's `ws_command` budget, the
/// `error` message that refuses it; None to let the message through.
async fn over_limit(state: &AppState, caller: &Caller, msg: &Message) -> Option<Message> {
    let bytes: &[u8] = match msg {
        Message::Text(t) => t.as_bytes(),
        Message::Binary(b) => b,
        _ => return None,
    };
    let parsed: Value = serde_json::from_slice(bytes).ok()?;
    if !matches!(parsed["type"].as_str(), Some("subscribe" | "start")) {
        return None;
    }
    match class_verdict(&state.limiter, RouteClass::WsCommand, caller.principal()).await {
        Verdict::Proceed(_) => None,
        Verdict::Refuse(err, decision) => Some(refused(&parsed["id"], &err, decision.map(|d| d.retry_after_secs))),
    }
}
