//! `GET /api/v1/events`: the caller's events as Server-Sent Events, or over a WebSocket when the
//! request is an upgrade, resumable; the shared [`stream`] also serves
//! `GET /api/v1/workflows/runs/{id}/events` (see `workflow_api`).
//!
//! Query: `topics` (comma-separated, e.g. `window,workflow.node.*`), `entity_id` (a desktop or
//! run id; window topics need one unless the caller is admin), and `after` (a cursor). The
//! `Last-Event-ID` header, which browsers send when they reconnect, wins over `after`. Without
//! either, only new events are sent.
//!
//! Each event is `id: <cursor>`, `event: <type>` (`window.opened`, ...), `data: <json>`. A client
//! that falls behind gets `event: resync` (`{"reason","cursor","last_delivered_cursor"}`) and the
//! stream ends; it reloads its state and reconnects with `after=<cursor>`. Keep-alive comments
//! are sent every `sse_heartbeat_interval`. The stream ends when the gateway shuts down; the
//! browser reconnects with its last id. It also ends when the caller's token expires, with a
//! last `event: expired` (`{"code":"unauthenticated","message":"token expired"}`): the client
//! reconnects with a fresh token and its last id. Over a WebSocket the same subscription counts
//! against `ws_max_sockets_per_user` (429 beyond it) and ends with close 1008.

use std::convert::Infallible;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRequestParts, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use getlood_common::ApiError;
use getlood_proto::event_dispatcher::v1::{DeliverPolicy, SubscribeRequest, subscribe_response};
use http::request::Parts;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::chat::upstream_error;
use crate::desktop_api::event_json;
use crate::extract::ApiQuery;
use crate::rest::comma_list;

const SERVICE: &str = "event-dispatcher";

/// Query of `/api/v1/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Comma-separated topics, e.g. `window,workflow.node.*` (required).
    topics: Option<String>,
    /// Only events of this desktop or run; window topics need one unless the caller is admin.
    entity_id: Option<String>,
    /// Resume after this cursor (the `Last-Event-ID` header wins over it).
    after: Option<String>,
}

/// The `Last-Event-ID` header, which browsers send when they reconnect an `EventSource`.
#[derive(Debug, Default)]
pub(crate) struct LastEventId(Option<String>);

impl LastEventId {
    /// The cursor to resume after: the header wins over `after` (a query parameter).
    pub(crate) fn or(self, after: Option<String>) -> Option<String> {
        self.0.or(after)
    }
}

impl IntoParams for LastEventId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            ParameterBuilder::new()
                .name("Last-Event-ID")
                .parameter_in(ParameterIn::Header)
                .required(Required::False)
                .description(Some("The `id` of the last event received: the stream resumes after it."))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        ]
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LastEventId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

/// `GET /api/v1/events`.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventsQuery, LastEventId),
    description = "The caller's events as Server-Sent Events: `id: <cursor>`, `event: <type>`, `data: <Event JSON>`; keep-alive comments meanwhile. `event: resync` (`{\"reason\",\"cursor\",\"last_delivered_cursor\"}`), `error` or `expired` (`{\"code\",\"message\"}`, at the token's expiry) end the stream. Without a cursor only new events are sent. A WebSocket upgrade on the same URL carries the same events as JSON frames (101).",
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        (status = 101, description = "Switched to a WebSocket carrying the same events as JSON frames")))]
pub(crate) async fn events(
    State(state): State<AppState>,
    caller: Caller,
    last_event_id: LastEventId,
    ApiQuery(query): ApiQuery<EventsQuery>,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    let topics = comma_list(query.topics.as_deref());
    if topics.is_empty() {
        return Err(ApiError::invalid_argument("topics is required, e.g. topics=window"));
    }
    let entity_id = query.entity_id.unwrap_or_default();
    let cursor = last_event_id.or(query.after);
    stream(&state, &caller, upgrade, topics, entity_id, cursor, Start::New).await
}

/// `GET /ws/events`: the same subscription as [`events`] (same query and resume rules), over a
/// WebSocket only; a request that is not an upgrade is a 400 naming the SSE route.
#[utoipa::path(get, path = "/ws/events", tag = "events", params(EventsQuery, LastEventId),
    description = "The events of `GET /api/v1/events` over a WebSocket only (JSON frames; same query and resume rules); a request that is not an upgrade is a 400.",
    responses((status = 101, description = "Switched to the events WebSocket")))]
pub(crate) async fn events_socket(
    state: State<AppState>,
    caller: Caller,
    last_event_id: LastEventId,
    query: ApiQuery<EventsQuery>,
    upgrade: Upgrade,
) -> Result<Response, ApiError> {
    if is_plain(&upgrade) {
        return Err(ApiError::invalid_argument(
            "GET /ws/events needs a WebSocket upgrade; Server-Sent Events are at GET /api/v1/events",
        ));
    }
    events(state, caller, last_event_id, query, upgrade).await
}

/// Where a stream starts when the client names no cursor.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// Only events published from now on (a live feed).
    New,
    /// Every retained event that matches (a bounded history such as one run's, then live).
    All,
}

/// One item of an event subscription, whatever transport carries it.
#[derive(Debug)]
pub(crate) enum Item {
    /// An event and the cursor to resume after it.
    Event { cursor: String, kind: String, data: Value },
    /// The client fell behind (`{"reason","cursor","last_delivered_cursor"}`); nothing follows.
    Resync(Value),
    /// The upstream failed (`{"code","message"}`); nothing follows.
    Failed(Value),
    /// The caller's token expired (`{"code","message"}`); nothing follows.
    Expired(Value),
}

/// The caller's events on `topics`, of `entity_id` only when not empty, resuming after `cursor`
/// when it is given and not empty ([`LastEventId::or`]), and otherwise starting as `start`
/// says; served as Server-Sent Events, or over a WebSocket when the request is an upgrade
/// (`upgrade`). The handler has already checked that the entity is one the caller may see; the
/// dispatcher pins the tenant either way.
pub(crate) async fn stream(
    state: &AppState,
    caller: &Caller,
    upgrade: Upgrade,
    topics: Vec<String>,
    entity_id: String,
    cursor: Option<String>,
    start: Start,
) -> Result<Response, ApiError> {
    let upgrade = upgrade_of(upgrade)?;
    // Counted before the subscription opens, so a refused socket costs the dispatcher nothing.
    let permit = match &upgrade {
        Some(_) => match state.realtime.acquire_socket(caller.principal()) {
            Ok(permit) => Some(permit),
            Err(err) => return Ok(crate::ws::too_many_sockets(err)),
        },
        None => None,
    };
    let items = subscribe(state, caller, topics, entity_id, cursor, start).await?;
    let items = until_expiry(items, crate::ws::token_deadline(caller.principal()));
    match (upgrade, permit) {
        (Some(upgrade), Some(permit)) => Ok(crate::ws::events_socket(state, upgrade, items, permit)),
        _ => Ok(sse(state, items)),
    }
}

/// `items` until `deadline` (the token's expiry), then one [`Item::Expired`]: a stream is
/// authorised by the token it was opened with, and must not outlive it.
fn until_expiry(items: BoxStream<'static, Item>, deadline: tokio::time::Instant) -> BoxStream<'static, Item> {
    let expiry = Box::pin(tokio::time::sleep_until(deadline));
    futures::stream::unfold(Some((items, expiry)), |state| async move {
        let (mut items, mut expiry) = state?;
        tokio::select! {
            item = items.next() => item.map(|item| (item, Some((items, expiry)))),
            () = &mut expiry => {
                let data = json!({"code": "unauthenticated", "message": crate::ws::TOKEN_EXPIRED});
                Some((Item::Expired(data), None))
            }
        }
    })
    .boxed()
}

/// A WebSocket upgrade, if the request is one.
pub(crate) type Upgrade = Result<WebSocketUpgrade, WebSocketUpgradeRejection>;

/// Whether the request attempted no upgrade at all (a plain GET, or not a GET).
fn is_plain(upgrade: &Upgrade) -> bool {
    matches!(
        upgrade,
        Err(WebSocketUpgradeRejection::InvalidConnectionHeader(_)
            | WebSocketUpgradeRejection::InvalidUpgradeHeader(_)
            | WebSocketUpgradeRejection::MethodNotGet(_))
    )
}

/// None for a plain request; a refused upgrade attempt (a bad version or key) is a 400.
fn upgrade_of(upgrade: Upgrade) -> Result<Option<WebSocketUpgrade>, ApiError> {
    if is_plain(&upgrade) {
        return Ok(None);
    }
    upgrade.map(Some).map_err(|rejection| ApiError::invalid_argument(rejection.body_text()))
}

/// Opens the dispatcher subscription. Errors before the first item (bad topic, unknown desktop,
/// expired cursor) are plain HTTP errors; after that they can only be in-stream.
pub(crate) async fn subscribe(
    state: &AppState,
    caller: &Caller,
    topics: Vec<String>,
    entity_id: String,
    cursor: Option<String>,
    start: Start,
) -> Result<BoxStream<'static, Item>, ApiError> {
    let cursor = cursor.filter(|c| !c.is_empty());
    let deliver_policy = match (&cursor, start) {
        (Some(_), _) => DeliverPolicy::Resume,
        (None, Start::New) => DeliverPolicy::New,
        (None, Start::All) => DeliverPolicy::All,
    };
    let req = SubscribeRequest {
        topics,
        entity_id,
        deliver_policy: deliver_policy as i32,
        resume_cursor: cursor.unwrap_or_default(),
        ..SubscribeRequest::default()
    };
    let upstream = unary(SERVICE, state.upstreams.event_dispatcher().subscribe(caller.request(req))).await?;
    let shutdown = state.realtime.shutdown.clone();
    let items = futures::stream::unfold(Some(upstream), |upstream| async move {
        let mut upstream = upstream?;
        loop {
            match upstream.message().await {
                Ok(Some(resp)) => match resp.item {
                    Some(subscribe_response::Item::Event(d)) => {
                        let data = d.envelope.as_ref().map(event_json).unwrap_or_default();
                        let kind = d.envelope.as_ref().map(|e| e.r#type.clone()).unwrap_or_default();
                        return Some((Item::Event { cursor: d.cursor, kind, data }, Some(upstream)));
                    }
                    Some(subscribe_response::Item::Resync(r)) => {
                        let data = json!({
                            "reason": r.reason,
                            "cursor": r.cursor,
                            "last_delivered_cursor": r.last_delivered_cursor,
                        });
                        return Some((Item::Resync(data), None));
                    }
                    // Upstream heartbeats only keep the gRPC stream alive; clients get their
                    // transport's own keep-alives instead.
                    Some(subscribe_response::Item::Heartbeat(_)) | None => {}
                },
                Ok(None) => return None,
                Err(status) => {
                    let err = upstream_error(SERVICE, status);
                    return Some((Item::Failed(json!({"code": err.code, "message": err.message})), None));
                }
            }
        }
    })
    .take_until(shutdown.cancelled_owned());
    Ok(items.boxed())
}

/// Renders `items` as Server-Sent Events.
fn sse(state: &AppState, items: BoxStream<'static, Item>) -> Response {
    let events = items.map(|item| {
        Ok::<_, Infallible>(match item {
            Item::Event { cursor, kind, data } => Event::default().id(cursor).event(kind).data(data.to_string()),
            Item::Resync(data) => Event::default().event("resync").data(data.to_string()),
            Item::Failed(data) => Event::default().event("error").data(data.to_string()),
            Item::Expired(data) => Event::default().event("expired").data(data.to_string()),
        })
    });
    let sse = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.settings.sse_heartbeat_interval).text("keep-alive"));
    let mut response = sse.into_response();
    // Tells nginx-style proxies not to buffer the stream.
    response.headers_mut().insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    response
}
