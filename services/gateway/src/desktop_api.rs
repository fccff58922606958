//! REST for desktops and windows (`/api/v1/desktops`, `/api/v1/windows`, and the seed's
//! `/api/v1/desktop/state`), plus the JSON shapes and window commands the WebSocket shares:
//! thin mappings onto desktop-state's gRPC API, called with the caller's own token.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use getlood_common::ApiError;
use getlood_proto::common::v1::PageRequest;
use getlood_proto::desktop_state::v1::{
    CloseWindowRequest, CreateDesktopRequest, DeleteDesktopRequest, Desktop, FocusWindowRequest, Geometry,
    GetDesktopRequest, GetWindowRequest, ListDesktopsRequest, ListWindowsRequest, MaximizeWindowRequest,
    MinimizeWindowRequest, OpenWindowRequest, RestoreDesktopRequest, RestoreWindowRequest, SaveDesktopRequest,
    UpdateWindowGeometryRequest, Window, WindowState,
};
use getlood_proto::events::v1::EventEnvelope;
use getlood_proto::events::v1::event_envelope::Payload;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::{ApiJson, ApiQuery, OptionalJson};
use crate::proto_json::{json_object_to_struct, proto_struct_to_json, timestamp, timestamp_json};
use crate::rest::{Deleted, created};

const SERVICE: &str = "desktop-state";

/// A window's display state.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WindowStateName {
    Normal,
    Minimized,
    Maximized,
}

fn state_name(state: i32) -> WindowStateName {
    match WindowState::try_from(state) {
        Ok(WindowState::Minimized) => WindowStateName::Minimized,
        Ok(WindowState::Maximized) => WindowStateName::Maximized,
        _ => WindowStateName::Normal,
    }
}

fn parse_state(name: Option<&str>) -> Result<i32, ApiError> {
    match name {
        None | Some("") => Ok(WindowState::Unspecified as i32),
        Some("normal") => Ok(WindowState::Normal as i32),
        Some("minimized") => Ok(WindowState::Minimized as i32),
        Some("maximized") => Ok(WindowState::Maximized as i32),
        Some(other) => Err(ApiError::invalid_argument(format!(
            "state '{}' is not one of normal, minimized, maximized",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// A window as REST and the WebSocket return it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Window)]
pub(crate) struct WindowJson {
    /// The app the window shows, e.g. `notes`.
    app_id: String,
    /// RFC 3339 creation time.
    #[schema(format = DateTime)]
    created_at: Option<String>,
    desktop_id: String,
    height: i32,
    id: String,
    /// The app's own properties, as given.
    #[schema(value_type = Object)]
    props: Value,
    state: WindowStateName,
    title: String,
    /// RFC 3339 time of the last change.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// Incremented on every change of the window.
    version: i64,
    width: i32,
    x: i32,
    y: i32,
    /// Stacking order; higher is in front.
    z_index: i32,
}

/// A window as REST and the WebSocket return it.
pub(crate) fn window_json(w: &Window) -> WindowJson {
    WindowJson {
        app_id: w.app_id.clone(),
        created_at: timestamp(w.created_at.as_ref()),
        desktop_id: w.desktop_id.clone(),
        height: w.height,
        id: w.id.clone(),
        props: w.props.as_ref().map_or_else(|| json!({}), proto_struct_to_json),
        state: state_name(w.state),
        title: w.title.clone(),
        updated_at: timestamp(w.updated_at.as_ref()),
        version: w.version,
        width: w.width,
        x: w.x,
        y: w.y,
        z_index: w.z_index,
    }
}

/// A desktop with its windows (z-order, bottom first) and focus stack.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Desktop)]
pub(crate) struct DesktopJson {
    /// RFC 3339 creation time.
    #[schema(format = DateTime)]
    created_at: Option<String>,
    /// Window ids, most recently focused first.
    focus_stack: Vec<String>,
    id: String,
    name: String,
    owner_user_id: String,
    /// RFC 3339 time of the last save (the snapshot restore goes back to), if any.
    #[schema(format = DateTime)]
    saved_at: Option<String>,
    /// RFC 3339 time of the last change.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// Incremented on every change of the desktop or its windows.
    version: i64,
    /// Bottom first; empty in lists unless `include_windows=true`.
    windows: Vec<WindowJson>,
}

/// A desktop with its windows (z-order, bottom first) and focus stack.
pub(crate) fn desktop_json(d: &Desktop) -> DesktopJson {
    DesktopJson {
        created_at: timestamp(d.created_at.as_ref()),
        focus_stack: d.focus_stack.clone(),
        id: d.id.clone(),
        name: d.name.clone(),
        owner_user_id: d.owner_user_id.clone(),
        saved_at: timestamp(d.saved_at.as_ref()),
        updated_at: timestamp(d.updated_at.as_ref()),
        version: d.version,
        windows: d.windows.iter().map(window_json).collect(),
    }
}

fn geometry_json(g: Option<&Geometry>) -> Value {
    g.map_or(Value::Null, |g| json!({"x": g.x, "y": g.y, "width": g.width, "height": g.height}))
}

/// The payload of an event as JSON; unknown payloads give `null` (clients ignore them).
fn payload_json(payload: Option<&Payload>) -> Value {
    let Some(payload) = payload else { return Value::Null };
    match payload {
        Payload::WindowOpened(e) => json!({
            "window": e.window.as_ref().map(window_json),
            "desktop_version": e.desktop_version,
            "focus_stack": e.focus_stack,
        }),
        Payload::WindowMoved(e) => json!({
            "desktop_id": e.desktop_id,
            "window_id": e.window_id,
            "geometry": geometry_json(e.geometry.as_ref()),
            "version": e.version,
        }),
        Payload::WindowFocused(e) => json!({
            "desktop_id": e.desktop_id,
            "window_id": e.window_id,
            "z_index": e.z_index,
            "focus_stack": e.focus_stack,
            "version": e.version,
            "state": state_name(e.state),
        }),
        Payload::WindowStateChanged(e) => json!({
            "desktop_id": e.desktop_id,
            "window_id": e.window_id,
            "previous_state": state_name(e.previous_state),
            "state": state_name(e.state),
            "version": e.version,
            "focus_stack": e.focus_stack,
        }),
        Payload::WindowClosed(e) => json!({
            "desktop_id": e.desktop_id,
            "window_id": e.window_id,
            "desktop_version": e.desktop_version,
            "focus_stack": e.focus_stack,
        }),
        Payload::DesktopSaved(e) => json!({"desktop": e.desktop.as_ref().map(desktop_json)}),
        Payload::DesktopRestored(e) => json!({
            "desktop": e.desktop.as_ref().map(desktop_json),
            "saved_at": timestamp_json(e.saved_at.as_ref()),
        }),
        Payload::AgentCreated(e) => {
            json!({"agent_id": e.agent_id, "name": e.name, "version": e.version, "skills": e.skills})
        }
        Payload::AgentUpdated(e) => json!({
            "agent_id": e.agent_id, "name": e.name, "version": e.version,
            "changed_fields": e.changed_fields, "skills": e.skills,
        }),
        Payload::AgentDeleted(e) => json!({"agent_id": e.agent_id, "name": e.name, "version": e.version}),
        Payload::TurnCompleted(e) => json!({
            "turn_id": e.turn_id, "conversation_id": e.conversation_id, "user_id": e.user_id,
            "agent_name": e.agent_name, "ui_action_types": e.ui_action_types, "duration_ms": e.duration_ms,
            "desktop_id": e.desktop_id,
        }),
        Payload::A2aTaskStatusChanged(e) => json!({
            "task_id": e.task_id, "context_id": e.context_id, "agent_name": e.agent_name, "user_id": e.user_id,
            "state": e.state, "turn_id": e.turn_id, "reason": e.reason,
        }),
        Payload::RunStarted(e) => {
            json!({"run_id": e.run_id, "workflow_id": e.workflow_id, "run_sequence": e.run_sequence})
        }
        Payload::NodeStarted(e) => json!({
            "run_id": e.run_id, "node_id": e.node_id, "node_type": e.node_type, "attempt": e.attempt,
            "run_sequence": e.run_sequence,
        }),
        Payload::NodeCompleted(e) => json!({
            "run_id": e.run_id, "node_id": e.node_id, "node_type": e.node_type, "attempt": e.attempt,
            "duration_ms": e.duration_ms, "output_summary": e.output_summary, "run_sequence": e.run_sequence,
        }),
        Payload::NodeFailed(e) => json!({
            "run_id": e.run_id, "node_id": e.node_id, "attempt": e.attempt, "error": e.error,
            "will_retry": e.will_retry, "duration_ms": e.duration_ms, "run_sequence": e.run_sequence,
        }),
        Payload::NodeProgress(e) => json!({
            "run_id": e.run_id, "node_id": e.node_id, "node_type": e.node_type, "attempt": e.attempt,
            "state": e.state, "message": e.message, "remote_id": e.remote_id, "run_sequence": e.run_sequence,
        }),
        Payload::RunCompleted(e) => json!({
            "run_id": e.run_id, "workflow_id": e.workflow_id, "duration_ms": e.duration_ms,
            "result": e.result.as_ref().map(proto_struct_to_json), "run_sequence": e.run_sequence,
        }),
        Payload::RunFailed(e) => json!({
            "run_id": e.run_id, "workflow_id": e.workflow_id, "failed_node_id": e.failed_node_id,
            "duration_ms": e.duration_ms, "run_sequence": e.run_sequence,
        }),
        Payload::RunCancelled(e) => json!({"run_id": e.run_id, "reason": e.reason, "run_sequence": e.run_sequence}),
        Payload::RunWaitingApproval(e) => json!({
            "run_id": e.run_id, "node_id": e.node_id, "message": e.message, "run_sequence": e.run_sequence,
        }),
        Payload::Audit(e) => {
            json!({"action": e.action, "route": e.route, "http_status": e.http_status, "resource_id": e.resource_id})
        }
    }
}

/// An event as the WebSocket and SSE deliver it (the `data` of an SSE event, the `event` of a
/// socket's event frame).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Event)]
pub(crate) struct EventJson {
    /// The user whose request caused the event.
    actor: String,
    /// The event's payload; its fields depend on `type`.
    #[schema(value_type = Object)]
    data: Value,
    /// The desktop, run, agent, ... the event is about.
    entity_id: String,
    id: String,
    /// RFC 3339 time of the change.
    #[schema(format = DateTime)]
    occurred_at: Option<String>,
    /// e.g. `window.opened`, `workflow.run.completed`.
    #[serde(rename = "type")]
    kind: String,
}

/// An event as the WebSocket and SSE deliver it.
pub(crate) fn event_json(e: &EventEnvelope) -> Value {
    let event = EventJson {
        actor: e.actor.clone(),
        data: payload_json(e.payload.as_ref()),
        entity_id: e.entity_id.clone(),
        id: e.id.clone(),
        occurred_at: timestamp(e.occurred_at.as_ref()),
        kind: e.r#type.clone(),
    };
    serde_json::to_value(event).unwrap_or_default()
}

/// A window to open (REST body and WebSocket `open` command).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = OpenWindowInput)]
pub(crate) struct OpenBody {
    /// The app the window shows, e.g. `notes` (required).
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub title: String,
    pub x: Option<i32>,
    pub y: Option<i32>,
    /// Default 800 when any coordinate is given.
    pub width: Option<i32>,
    /// Default 600 when any coordinate is given.
    pub height: Option<i32>,
    #[schema(value_type = Option<WindowStateName>)]
    pub state: Option<String>,
    /// The app's own properties: a JSON object.
    #[schema(value_type = Option<Object>)]
    pub props: Option<Value>,
    /// Optimistic concurrency on the desktop; 0 means any.
    #[serde(default)]
    pub expected_desktop_version: i64,
    /// Idempotency key: a retry with the same key returns the first window.
    #[serde(default)]
    pub request_id: String,
}

/// A move and/or resize (REST `PATCH` body and WebSocket `move` command).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = WindowGeometryInput)]
pub(crate) struct GeometryBody {
    pub x: Option<i32>,
    pub y: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// Optimistic concurrency on the window; 0 means any.
    #[serde(default)]
    pub expected_version: i64,
}

/// The answer of an opened window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenedWindow {
    /// The desktop's version after the open.
    desktop_version: i64,
    focus_stack: Vec<String>,
    window: Option<WindowJson>,
}

/// The answer of a move, focus, minimize, maximize or restore.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChangedWindow {
    /// The desktop's focus stack; only after a focus.
    #[serde(skip_serializing_if = "Option::is_none")]
    focus_stack: Option<Vec<String>>,
    window: Option<WindowJson>,
}

/// The answer of a closed window.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClosedWindow {
    /// The desktop's version after the close.
    desktop_version: i64,
    focus_stack: Vec<String>,
    window_id: String,
}

/// The answer of a window command, written as the variant's own object.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum CommandResult {
    Opened(OpenedWindow),
    Changed(ChangedWindow),
    Closed(ClosedWindow),
}

/// What can be done to a desktop's windows, from REST or the WebSocket.
#[derive(Debug)]
pub(crate) enum WindowCommand {
    Open { desktop_id: String, body: OpenBody },
    Move { window_id: String, body: GeometryBody },
    Focus { window_id: String, expected_version: i64 },
    Minimize { window_id: String, expected_version: i64 },
    Maximize { window_id: String, expected_version: i64 },
    Restore { window_id: String, expected_version: i64 },
    Close { window_id: String, expected_version: i64 },
}

/// Runs `cmd` against desktop-state as `caller`; the answer of the operation.
pub(crate) async fn execute(state: &AppState, caller: &Caller, cmd: WindowCommand) -> Result<CommandResult, ApiError> {
    let mut client = state.upstreams.desktop_state();
    let window = |w: Option<Window>| w.as_ref().map(window_json);
    let changed = |w: Option<Window>| CommandResult::Changed(ChangedWindow { focus_stack: None, window: window(w) });
    Ok(match cmd {
        WindowCommand::Open { desktop_id, body } => {
            let geometry = match (body.x, body.y, body.width, body.height) {
                (None, None, None, None) => None,
                (x, y, w, h) => Some(Geometry {
                    x: x.unwrap_or(0),
                    y: y.unwrap_or(0),
                    width: w.unwrap_or(800),
                    height: h.unwrap_or(600),
                }),
            };
            let req = OpenWindowRequest {
                desktop_id,
                app_id: body.app_id,
                title: body.title,
                geometry,
                state: parse_state(body.state.as_deref())?,
                props: json_object_to_struct(body.props.as_ref(), "props")?,
                expected_desktop_version: body.expected_desktop_version,
                request_id: body.request_id,
            };
            let r = unary(SERVICE, client.open_window(caller.request(req))).await?;
            CommandResult::Opened(OpenedWindow {
                desktop_version: r.desktop_version,
                focus_stack: r.focus_stack,
                window: window(r.window),
            })
        }
        WindowCommand::Move { window_id, body } => {
            let GeometryBody { x, y, width, height, expected_version } = body;
            let req = UpdateWindowGeometryRequest { window_id, x, y, width, height, expected_version };
            changed(unary(SERVICE, client.update_window_geometry(caller.request(req))).await?.window)
        }
        WindowCommand::Focus { window_id, expected_version } => {
            let req = FocusWindowRequest { window_id, expected_version };
            let r = unary(SERVICE, client.focus_window(caller.request(req))).await?;
            CommandResult::Changed(ChangedWindow { focus_stack: Some(r.focus_stack), window: window(r.window) })
        }
        WindowCommand::Minimize { window_id, expected_version } => {
            let req = MinimizeWindowRequest { window_id, expected_version };
            changed(unary(SERVICE, client.minimize_window(caller.request(req))).await?.window)
        }
        WindowCommand::Maximize { window_id, expected_version } => {
            let req = MaximizeWindowRequest { window_id, expected_version };
            changed(unary(SERVICE, client.maximize_window(caller.request(req))).await?.window)
        }
        WindowCommand::Restore { window_id, expected_version } => {
            let req = RestoreWindowRequest { window_id, expected_version };
            changed(unary(SERVICE, client.restore_window(caller.request(req))).await?.window)
        }
        WindowCommand::Close { window_id, expected_version } => {
            let req = CloseWindowRequest { window_id, expected_version };
            let r = unary(SERVICE, client.close_window(caller.request(req))).await?;
            CommandResult::Closed(ClosedWindow {
                desktop_version: r.desktop_version,
                focus_stack: r.focus_stack,
                window_id: r.window_id,
            })
        }
    })
}

/// The caller's desktop `id`; another user's or tenant's is 404 like a missing one.
pub(crate) async fn get_desktop(state: &AppState, caller: &Caller, id: &str) -> Result<Desktop, ApiError> {
    let req = GetDesktopRequest { desktop_id: id.to_owned() };
    let resp = unary(SERVICE, state.upstreams.desktop_state().get_desktop(caller.request(req))).await?;
    Ok(resp.desktop.unwrap_or_default())
}

/// Paging and filters of `GET /api/v1/desktops`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DesktopListQuery {
    /// Most desktops in one page; 0 or absent uses the service's default.
    page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
    /// Include each desktop's windows.
    #[serde(default)]
    include_windows: bool,
}

/// Paging and filters of `GET /api/v1/desktops/{id}/windows`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WindowListQuery {
    /// Most windows in one page; 0 or absent uses the service's default.
    page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
    /// Only windows in this state.
    #[param(value_type = Option<WindowStateName>)]
    state: Option<String>,
}

/// Query of the routes with optimistic concurrency.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// The version the change expects; 0 or absent means any. A stale one is 409.
    #[serde(default)]
    expected_version: i64,
}

/// Body of the version-only actions (focus, minimize, ...); may be empty.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = VersionInput)]
pub(crate) struct VersionBody {
    /// The version the change expects; 0 or absent means any. A stale one is 409.
    #[serde(default)]
    expected_version: i64,
}

/// `POST /api/v1/desktops` body.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CreateDesktopInput)]
pub(crate) struct CreateDesktopBody {
    #[serde(default)]
    name: String,
    /// Idempotency key: a retry with the same key returns the first desktop.
    #[serde(default)]
    request_id: String,
}

/// `GET /api/v1/desktops` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DesktopList {
    /// Newest first.
    desktops: Vec<DesktopJson>,
    /// Token of the next page; empty on the last page.
    next_page_token: String,
}

/// `GET /api/v1/desktops/{id}/windows` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WindowList {
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// In z-order, bottom first.
    windows: Vec<WindowJson>,
}

/// `POST /api/v1/desktops/{id}/restore` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Restored {
    desktop: Option<DesktopJson>,
    /// RFC 3339 time of the snapshot restored.
    #[schema(format = DateTime)]
    saved_at: Option<String>,
}

fn page(page_size: Option<i32>, page_token: Option<&String>) -> Option<PageRequest> {
    Some(PageRequest { page_size: page_size.unwrap_or(0), page_token: page_token.cloned().unwrap_or_default() })
}

/// `POST /api/v1/desktops`: 201 with the new desktop.
#[utoipa::path(post, path = "/api/v1/desktops", tag = "desktops", request_body = CreateDesktopBody,
    responses((status = 201, description = "The new desktop", body = DesktopJson)))]
pub(crate) async fn create_desktop(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateDesktopBody>,
) -> Result<Response, ApiError> {
    let req = CreateDesktopRequest { name: body.name, request_id: body.request_id };
    let resp = unary(SERVICE, state.upstreams.desktop_state().create_desktop(caller.request(req))).await?;
    Ok(created(desktop_json(&resp.desktop.unwrap_or_default())))
}

/// `GET /api/v1/desktops`: the caller's desktops, newest first.
#[utoipa::path(get, path = "/api/v1/desktops", tag = "desktops", params(DesktopListQuery),
    responses((status = 200, description = "A page of the caller's desktops, newest first", body = DesktopList)))]
pub(crate) async fn list_desktops(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DesktopListQuery>,
) -> Result<Json<DesktopList>, ApiError> {
    let req = ListDesktopsRequest {
        page: page(query.page_size, query.page_token.as_ref()),
        include_windows: query.include_windows,
    };
    let resp = unary(SERVICE, state.upstreams.desktop_state().list_desktops(caller.request(req))).await?;
    Ok(Json(DesktopList {
        desktops: resp.desktops.iter().map(desktop_json).collect(),
        next_page_token: resp.page.unwrap_or_default().next_page_token,
    }))
}

/// `GET /api/v1/desktops/{id}`: the current durable state (after a save, the saved state),
/// without changing anything; another user's or tenant's desktop is 404 like a missing one.
#[utoipa::path(get, path = "/api/v1/desktops/{id}", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id")),
    responses((status = 200, description = "The desktop with its windows", body = DesktopJson)))]
pub(crate) async fn read_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DesktopJson>, ApiError> {
    Ok(Json(desktop_json(&get_desktop(&state, &caller, &id).await?)))
}

/// The seed's `GET /api/v1/desktop/state/{id}` (`useDesktopBridge`): [`read_desktop`].
#[utoipa::path(get, path = "/api/v1/desktop/state/{id}", tag = "desktops",
    description = "The seed's `useDesktopBridge` read: the same answer as `GET /api/v1/desktops/{id}`.",
    params(("id" = String, Path, description = "The desktop's id")),
    responses((status = 200, description = "The desktop with its windows", body = DesktopJson)))]
pub(crate) async fn read_desktop_state(
    state: State<AppState>,
    caller: Caller,
    id: Path<String>,
) -> Result<Json<DesktopJson>, ApiError> {
    read_desktop(state, caller, id).await
}

/// `DELETE /api/v1/desktops/{id}`.
#[utoipa::path(delete, path = "/api/v1/desktops/{id}", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id"), VersionQuery),
    responses((status = 200, description = "The desktop and its windows are deleted", body = Deleted)))]
pub(crate) async fn delete_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let req = DeleteDesktopRequest { desktop_id: id, expected_version: query.expected_version };
    let resp = unary(SERVICE, state.upstreams.desktop_state().delete_desktop(caller.request(req))).await?;
    Ok(Json(Deleted::id(resp.desktop_id)))
}

/// `GET /api/v1/desktops/{id}/windows`: a page of windows in z-order.
#[utoipa::path(get, path = "/api/v1/desktops/{id}/windows", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id"), WindowListQuery),
    responses((status = 200, description = "A page of the desktop's windows in z-order", body = WindowList)))]
pub(crate) async fn list_windows(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<WindowListQuery>,
) -> Result<Json<WindowList>, ApiError> {
    let req = ListWindowsRequest {
        desktop_id: id,
        page: page(query.page_size, query.page_token.as_ref()),
        state: parse_state(query.state.as_deref())?,
    };
    let resp = unary(SERVICE, state.upstreams.desktop_state().list_windows(caller.request(req))).await?;
    Ok(Json(WindowList {
        next_page_token: resp.page.unwrap_or_default().next_page_token,
        windows: resp.windows.iter().map(window_json).collect(),
    }))
}

/// `POST /api/v1/desktops/{id}/windows`: 201 with the window, the desktop version and focus
/// stack; every WebSocket client of the desktop receives `window.opened`.
#[utoipa::path(post, path = "/api/v1/desktops/{id}/windows", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id")), request_body = OpenBody,
    responses((status = 201, description = "The opened window", body = OpenedWindow)))]
pub(crate) async fn open_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<OpenBody>,
) -> Result<Response, ApiError> {
    let cmd = WindowCommand::Open { desktop_id: id, body };
    Ok(created(execute(&state, &caller, cmd).await?))
}

/// `GET /api/v1/windows/{id}`.
#[utoipa::path(get, path = "/api/v1/windows/{id}", tag = "desktops",
    params(("id" = String, Path, description = "The window's id")),
    responses((status = 200, description = "The window", body = WindowJson)))]
pub(crate) async fn get_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WindowJson>, ApiError> {
    let req = GetWindowRequest { window_id: id };
    let resp = unary(SERVICE, state.upstreams.desktop_state().get_window(caller.request(req))).await?;
    Ok(Json(window_json(&resp.window.unwrap_or_default())))
}

/// `PATCH /api/v1/windows/{id}`: move and/or resize.
#[utoipa::path(patch, path = "/api/v1/windows/{id}", tag = "desktops",
    params(("id" = String, Path, description = "The window's id")), request_body = GeometryBody,
    responses((status = 200, description = "The moved window", body = ChangedWindow)))]
pub(crate) async fn move_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GeometryBody>,
) -> Result<Json<CommandResult>, ApiError> {
    let cmd = WindowCommand::Move { window_id: id, body };
    Ok(Json(execute(&state, &caller, cmd).await?))
}

/// `DELETE /api/v1/windows/{id}`: close.
#[utoipa::path(delete, path = "/api/v1/windows/{id}", tag = "desktops",
    params(("id" = String, Path, description = "The window's id"), VersionQuery),
    responses((status = 200, description = "The window is closed", body = ClosedWindow)))]
pub(crate) async fn close_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<CommandResult>, ApiError> {
    let cmd = WindowCommand::Close { window_id: id, expected_version: query.expected_version };
    Ok(Json(execute(&state, &caller, cmd).await?))
}

/// The actions of `POST /api/v1/windows/{id}/{action}`.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code, reason = "the path parameter's schema; the handler matches the text, answering 404 to others")]
pub(crate) enum WindowAction {
    Focus,
    Minimize,
    Maximize,
    Restore,
}

/// `POST /api/v1/windows/{id}/{action}` with action `focus`, `minimize`, `maximize` or
/// `restore`; the body (`{"expected_version": n}`) is optional.
#[utoipa::path(post, path = "/api/v1/windows/{id}/{action}", tag = "desktops",
    params(("id" = String, Path, description = "The window's id"),
        ("action" = WindowAction, Path, description = "What to do; another action is 404")),
    request_body(content = Option<VersionBody>, description = "Optional; an empty body expects any version"),
    responses((status = 200, description = "The window after the action (and the focus stack after a focus)", body = ChangedWindow)))]
pub(crate) async fn window_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<VersionBody>,
) -> Result<Json<CommandResult>, ApiError> {
    let expected_version = body.expected_version;
    let cmd = match action.as_str() {
        "focus" => WindowCommand::Focus { window_id: id, expected_version },
        "minimize" => WindowCommand::Minimize { window_id: id, expected_version },
        "maximize" => WindowCommand::Maximize { window_id: id, expected_version },
        "restore" => WindowCommand::Restore { window_id: id, expected_version },
        _ => {
            return Err(ApiError::not_found(format!(
                "no window action '{}'",
                action.chars().take(32).collect::<String>()
            )));
        }
    };
    Ok(Json(execute(&state, &caller, cmd).await?))
}

/// A window of a whole-desktop save: windows with an id are updated, without one created.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SaveWindowInput)]
pub(crate) struct SaveWindowBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    app_id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    x: i32,
    #[serde(default)]
    y: i32,
    #[serde(default)]
    width: i32,
    #[serde(default)]
    height: i32,
    #[schema(value_type = Option<WindowStateName>)]
    state: Option<String>,
    /// The app's own properties: a JSON object.
    #[schema(value_type = Option<Object>)]
    props: Option<Value>,
}

/// `POST /api/v1/desktops/{id}/save` body, and the seed's `POST /api/v1/desktop/state` body
/// (which names the desktop in `desktop_id`).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SaveDesktopInput)]
pub(crate) struct SaveBody {
    /// The desktop to save; required on `POST /api/v1/desktop/state`, ignored on
    /// `POST /api/v1/desktops/{id}/save` (the path names it).
    #[serde(default)]
    desktop_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    windows: Vec<SaveWindowBody>,
    /// Window ids, most recently focused first.
    #[serde(default)]
    focus_stack: Vec<String>,
    /// The version the save expects; 0 means any.
    #[serde(default)]
    expected_version: i64,
}

/// Writes the whole state of `desktop_id` from `body` and records it as the snapshot.
async fn save(
    state: &AppState,
    caller: &Caller,
    desktop_id: String,
    body: SaveBody,
) -> Result<Json<DesktopJson>, ApiError> {
    let windows = body
        .windows
        .into_iter()
        .map(|w| {
            Ok(Window {
                id: w.id,
                app_id: w.app_id,
                title: w.title,
                x: w.x,
                y: w.y,
                width: w.width,
                height: w.height,
                state: parse_state(w.state.as_deref())?,
                props: json_object_to_struct(w.props.as_ref(), "props")?,
                ..Window::default()
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let req = SaveDesktopRequest {
        desktop_id,
        name: body.name,
        windows,
        focus_stack: body.focus_stack,
        expected_version: body.expected_version,
    };
    let resp = unary(SERVICE, state.upstreams.desktop_state().save_desktop(caller.request(req))).await?;
    Ok(Json(desktop_json(&resp.desktop.unwrap_or_default())))
}

/// `POST /api/v1/desktops/{id}/save`: writes the whole state and records it as the snapshot.
#[utoipa::path(post, path = "/api/v1/desktops/{id}/save", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id")), request_body = SaveBody,
    responses((status = 200, description = "The saved desktop", body = DesktopJson)))]
pub(crate) async fn save_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SaveBody>,
) -> Result<Json<DesktopJson>, ApiError> {
    save(&state, &caller, id, body).await
}

/// The seed's `POST /api/v1/desktop/state` (`useDesktopBridge`'s debounced sync):
/// `{"desktop_id", "windows", "focus_stack"}` saved as one SaveDesktop.
#[utoipa::path(post, path = "/api/v1/desktop/state", tag = "desktops",
    description = "The seed's `useDesktopBridge` sync: the whole state of the desktop `desktop_id` saved at once.",
    request_body = SaveBody,
    responses((status = 200, description = "The saved desktop", body = DesktopJson)))]
pub(crate) async fn save_state(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SaveBody>,
) -> Result<Json<DesktopJson>, ApiError> {
    if body.desktop_id.is_empty() {
        return Err(ApiError::invalid_argument("desktop_id is required"));
    }
    let id = body.desktop_id.clone();
    save(&state, &caller, id, body).await
}

/// `POST /api/v1/desktops/{id}/restore`: makes the last saved snapshot current again.
#[utoipa::path(post, path = "/api/v1/desktops/{id}/restore", tag = "desktops",
    params(("id" = String, Path, description = "The desktop's id")),
    request_body(content = Option<VersionBody>, description = "Optional; an empty body expects any version"),
    responses((status = 200, description = "The desktop as last saved, now current", body = Restored)))]
pub(crate) async fn restore_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<VersionBody>,
) -> Result<Json<Restored>, ApiError> {
    let req = RestoreDesktopRequest { desktop_id: id, expected_version: body.expected_version };
    let resp = unary(SERVICE, state.upstreams.desktop_state().restore_desktop(caller.request(req))).await?;
    Ok(Json(Restored { desktop: resp.desktop.as_ref().map(desktop_json), saved_at: timestamp(resp.saved_at.as_ref()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rest::assert_sorted_keys;

    fn ts() -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 0 })
    }

    fn window() -> Window {
        Window {
            id: "w1".into(),
            desktop_id: "d1".into(),
            app_id: "notes".into(),
            title: "Notes".into(),
            x: 1,
            y: 2,
            width: 3,
            height: 4,
            z_index: 5,
            state: WindowState::Maximized as i32,
            props: Some(prost_types::Struct::default()),
            version: 6,
            created_at: ts(),
            updated_at: None,
        }
    }

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced: every field
    /// the old objects had, with the same values, in alphabetical order.
    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        let w = window();
        let old = json!({
            "id": "w1", "desktop_id": "d1", "app_id": "notes", "title": "Notes", "x": 1, "y": 2,
            "width": 3, "height": 4, "z_index": 5, "state": "maximized", "props": {}, "version": 6,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": null,
        });
        assert_eq!(serde_json::to_string(&window_json(&w)).unwrap(), old.to_string());
        let d = Desktop {
            id: "d1".into(),
            owner_user_id: "u".into(),
            name: "main".into(),
            windows: vec![w],
            focus_stack: vec!["w1".into()],
            version: 7,
            created_at: ts(),
            updated_at: ts(),
            saved_at: None,
        };
        let desktop = desktop_json(&d);
        assert_sorted_keys(&desktop);
        let value = serde_json::to_value(&desktop).unwrap();
        let keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        let want = [
            "created_at",
            "focus_stack",
            "id",
            "name",
            "owner_user_id",
            "saved_at",
            "updated_at",
            "version",
            "windows",
        ];
        assert_eq!(keys, want);
        assert_sorted_keys(&DesktopList { desktops: vec![desktop_json(&d)], next_page_token: "t".to_owned() });
        assert_sorted_keys(&WindowList { next_page_token: String::new(), windows: vec![window_json(&window())] });
        let restored = Restored { desktop: None, saved_at: None };
        let old = json!({"desktop": Option::<Value>::None, "saved_at": Value::Null});
        assert_eq!(serde_json::to_string(&restored).unwrap(), old.to_string());
        let opened = CommandResult::Opened(OpenedWindow {
            desktop_version: 2,
            focus_stack: vec!["w1".into()],
            window: Some(window_json(&window())),
        });
        assert_sorted_keys(&opened);
        let focused = CommandResult::Changed(ChangedWindow { focus_stack: Some(vec![]), window: None });
        assert_eq!(serde_json::to_string(&focused).unwrap(), json!({"window": null, "focus_stack": []}).to_string());
        let moved = CommandResult::Changed(ChangedWindow { focus_stack: None, window: None });
        assert_eq!(serde_json::to_string(&moved).unwrap(), json!({"window": null}).to_string());
        let closed =
            CommandResult::Closed(ClosedWindow { desktop_version: 3, focus_stack: vec![], window_id: "w1".into() });
        let old = json!({"window_id": "w1", "desktop_version": 3, "focus_stack": []});
        assert_eq!(serde_json::to_string(&closed).unwrap(), old.to_string());
    }
}
