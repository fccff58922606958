//! REST for desktops and windows (`/api/v1/desktops`, `/api/v1/windows`, and the seed's
//! `/api/v1/desktop/state`), plus the JSON shapes and window commands the WebSocket shares:
//! thin mappings onto desktop-state's gRPC API, called with the caller's own token.

use axum::Json;
use axum::extract::{Path, Query, State};
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

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::{ApiJson, OptionalJson};
use crate::proto_json::{json_object_to_struct, proto_struct_to_json, timestamp_json};
use crate::rest::{Deleted, created};

const SERVICE: &str = "desktop-state";

fn state_name(state: i32) -> &'static str {
    match WindowState::try_from(state) {
        Ok(WindowState::Minimized) => "minimized",
        Ok(WindowState::Maximized) => "maximized",
        _ => "normal",
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
pub(crate) fn window_json(w: &Window) -> Value {
    json!({
        "id": w.id,
        "desktop_id": w.desktop_id,
        "app_id": w.app_id,
        "title": w.title,
        "x": w.x,
        "y": w.y,
        "width": w.width,
        "height": w.height,
        "z_index": w.z_index,
        "state": state_name(w.state),
        "props": w.props.as_ref().map_or_else(|| json!({}), proto_struct_to_json),
        "version": w.version,
        "created_at": timestamp_json(w.created_at.as_ref()),
        "updated_at": timestamp_json(w.updated_at.as_ref()),
    })
}

/// A desktop with its windows (z-order, bottom first) and focus stack.
pub(crate) fn desktop_json(d: &Desktop) -> Value {
    json!({
        "id": d.id,
        "owner_user_id": d.owner_user_id,
        "name": d.name,
        "windows": d.windows.iter().map(window_json).collect::<Vec<_>>(),
        "focus_stack": d.focus_stack,
        "version": d.version,
        "created_at": timestamp_json(d.created_at.as_ref()),
        "updated_at": timestamp_json(d.updated_at.as_ref()),
        "saved_at": timestamp_json(d.saved_at.as_ref()),
    })
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

/// An event as the WebSocket and SSE deliver it.
pub(crate) fn event_json(e: &EventEnvelope) -> Value {
    json!({
        "id": e.id,
        "type": e.r#type,
        "entity_id": e.entity_id,
        "occurred_at": timestamp_json(e.occurred_at.as_ref()),
        "actor": e.actor,
        "data": payload_json(e.payload.as_ref()),
    })
}

/// A window to open (REST body and WebSocket `open` command).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct OpenBody {
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub title: String,
    pub x: Option<i32>,
    pub y: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub state: Option<String>,
    pub props: Option<Value>,
    #[serde(default)]
    pub expected_desktop_version: i64,
    /// Idempotency key: a retry with the same key returns the first window.
    #[serde(default)]
    pub request_id: String,
}

/// A move and/or resize (REST `PATCH` body and WebSocket `move` command).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct GeometryBody {
    pub x: Option<i32>,
    pub y: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    #[serde(default)]
    pub expected_version: i64,
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

/// Runs `cmd` against desktop-state as `caller`; the JSON answer of the operation.
pub(crate) async fn execute(state: &AppState, caller: &Caller, cmd: WindowCommand) -> Result<Value, ApiError> {
    let mut client = state.upstreams.desktop_state();
    let window = |w: Option<Window>| w.as_ref().map_or(Value::Null, window_json);
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
            json!({"window": window(r.window), "desktop_version": r.desktop_version, "focus_stack": r.focus_stack})
        }
        WindowCommand::Move { window_id, body } => {
            let GeometryBody { x, y, width, height, expected_version } = body;
            let req = UpdateWindowGeometryRequest { window_id, x, y, width, height, expected_version };
            let r = unary(SERVICE, client.update_window_geometry(caller.request(req))).await?;
            json!({"window": window(r.window)})
        }
        WindowCommand::Focus { window_id, expected_version } => {
            let req = FocusWindowRequest { window_id, expected_version };
            let r = unary(SERVICE, client.focus_window(caller.request(req))).await?;
            json!({"window": window(r.window), "focus_stack": r.focus_stack})
        }
        WindowCommand::Minimize { window_id, expected_version } => {
            let req = MinimizeWindowRequest { window_id, expected_version };
            json!({"window": window(unary(SERVICE, client.minimize_window(caller.request(req))).await?.window)})
        }
        WindowCommand::Maximize { window_id, expected_version } => {
            let req = MaximizeWindowRequest { window_id, expected_version };
            json!({"window": window(unary(SERVICE, client.maximize_window(caller.request(req))).await?.window)})
        }
        WindowCommand::Restore { window_id, expected_version } => {
            let req = RestoreWindowRequest { window_id, expected_version };
            json!({"window": window(unary(SERVICE, client.restore_window(caller.request(req))).await?.window)})
        }
        WindowCommand::Close { window_id, expected_version } => {
            let req = CloseWindowRequest { window_id, expected_version };
            let r = unary(SERVICE, client.close_window(caller.request(req))).await?;
            json!({"window_id": r.window_id, "desktop_version": r.desktop_version, "focus_stack": r.focus_stack})
        }
    })
}

/// The caller's desktop `id`; another user's or tenant's is 404 like a missing one.
pub(crate) async fn get_desktop(state: &AppState, caller: &Caller, id: &str) -> Result<Desktop, ApiError> {
    let req = GetDesktopRequest { desktop_id: id.to_owned() };
    let resp = unary(SERVICE, state.upstreams.desktop_state().get_desktop(caller.request(req))).await?;
    Ok(resp.desktop.unwrap_or_default())
}

/// Paging and filters of the list routes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    page_size: Option<i32>,
    page_token: Option<String>,
    #[serde(default)]
    include_windows: bool,
    state: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Option<PageRequest> {
        Some(PageRequest {
            page_size: self.page_size.unwrap_or(0),
            page_token: self.page_token.clone().unwrap_or_default(),
        })
    }
}

/// Query of the routes with optimistic concurrency.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct VersionQuery {
    #[serde(default)]
    expected_version: i64,
}

/// Body of the version-only actions (focus, minimize, ...); may be empty.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct VersionBody {
    #[serde(default)]
    expected_version: i64,
}

/// `POST /api/v1/desktops` body.
#[derive(Debug, Deserialize)]
pub(crate) struct CreateDesktopBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    request_id: String,
}

/// `GET /api/v1/desktops` answer.
#[derive(Debug, Serialize)]
pub(crate) struct DesktopList {
    desktops: Vec<Value>,
    next_page_token: String,
}

/// `GET /api/v1/desktops/{id}/windows` answer.
#[derive(Debug, Serialize)]
pub(crate) struct WindowList {
    next_page_token: String,
    windows: Vec<Value>,
}

/// `POST /api/v1/desktops/{id}/restore` answer.
#[derive(Debug, Serialize)]
pub(crate) struct Restored {
    desktop: Option<Value>,
    saved_at: Value,
}

/// `POST /api/v1/desktops`: 201 with the new desktop.
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
pub(crate) async fn list_desktops(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<DesktopList>, ApiError> {
    let req = ListDesktopsRequest { page: query.page(), include_windows: query.include_windows };
    let resp = unary(SERVICE, state.upstreams.desktop_state().list_desktops(caller.request(req))).await?;
    Ok(Json(DesktopList {
        desktops: resp.desktops.iter().map(desktop_json).collect(),
        next_page_token: resp.page.unwrap_or_default().next_page_token,
    }))
}

/// `GET /api/v1/desktops/{id}` and the seed's `GET /api/v1/desktop/state/{id}`: the current
/// durable state (after a save, the saved state), without changing anything.
pub(crate) async fn read_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(desktop_json(&get_desktop(&state, &caller, &id).await?)))
}

/// `DELETE /api/v1/desktops/{id}`.
pub(crate) async fn delete_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<Deleted>, ApiError> {
    let req = DeleteDesktopRequest { desktop_id: id, expected_version: query.expected_version };
    let resp = unary(SERVICE, state.upstreams.desktop_state().delete_desktop(caller.request(req))).await?;
    Ok(Json(Deleted::id(resp.desktop_id)))
}

/// `GET /api/v1/desktops/{id}/windows`: a page of windows in z-order.
pub(crate) async fn list_windows(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<WindowList>, ApiError> {
    let req = ListWindowsRequest { desktop_id: id, page: query.page(), state: parse_state(query.state.as_deref())? };
    let resp = unary(SERVICE, state.upstreams.desktop_state().list_windows(caller.request(req))).await?;
    Ok(Json(WindowList {
        next_page_token: resp.page.unwrap_or_default().next_page_token,
        windows: resp.windows.iter().map(window_json).collect(),
    }))
}

/// `POST /api/v1/desktops/{id}/windows`: 201 with the window, the desktop version and focus
/// stack; every WebSocket client of the desktop receives `window.opened`.
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
pub(crate) async fn get_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let req = GetWindowRequest { window_id: id };
    let resp = unary(SERVICE, state.upstreams.desktop_state().get_window(caller.request(req))).await?;
    Ok(Json(window_json(&resp.window.unwrap_or_default())))
}

/// `PATCH /api/v1/windows/{id}`: move and/or resize.
pub(crate) async fn move_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GeometryBody>,
) -> Result<Json<Value>, ApiError> {
    let cmd = WindowCommand::Move { window_id: id, body };
    Ok(Json(execute(&state, &caller, cmd).await?))
}

/// `DELETE /api/v1/windows/{id}`: close.
pub(crate) async fn close_window(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let cmd = WindowCommand::Close { window_id: id, expected_version: query.expected_version };
    Ok(Json(execute(&state, &caller, cmd).await?))
}

/// `POST /api/v1/windows/{id}/{action}` with action `focus`, `minimize`, `maximize` or
/// `restore`; the body (`{"expected_version": n}`) is optional.
pub(crate) async fn window_action(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    OptionalJson(body): OptionalJson<VersionBody>,
) -> Result<Json<Value>, ApiError> {
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
#[derive(Debug, Deserialize)]
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
    state: Option<String>,
    props: Option<Value>,
}

/// `POST /api/v1/desktops/{id}/save` body, and the seed's `POST /api/v1/desktop/state` body
/// (which names the desktop in `desktop_id`).
#[derive(Debug, Deserialize)]
pub(crate) struct SaveBody {
    #[serde(default)]
    desktop_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    windows: Vec<SaveWindowBody>,
    #[serde(default)]
    focus_stack: Vec<String>,
    #[serde(default)]
    expected_version: i64,
}

/// Writes the whole state of `desktop_id` from `body` and records it as the snapshot.
async fn save(state: &AppState, caller: &Caller, desktop_id: String, body: SaveBody) -> Result<Json<Value>, ApiError> {
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
pub(crate) async fn save_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SaveBody>,
) -> Result<Json<Value>, ApiError> {
    save(&state, &caller, id, body).await
}

/// The seed's `POST /api/v1/desktop/state` (`useDesktopBridge`'s debounced sync):
/// `{"desktop_id", "windows", "focus_stack"}` saved as one SaveDesktop.
pub(crate) async fn save_state(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SaveBody>,
) -> Result<Json<Value>, ApiError> {
    if body.desktop_id.is_empty() {
        return Err(ApiError::invalid_argument("desktop_id is required"));
    }
    let id = body.desktop_id.clone();
    save(&state, &caller, id, body).await
}

/// `POST /api/v1/desktops/{id}/restore`: makes the last saved snapshot current again.
pub(crate) async fn restore_desktop(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<VersionBody>,
) -> Result<Json<Restored>, ApiError> {
    let req = RestoreDesktopRequest { desktop_id: id, expected_version: body.expected_version };
    let resp = unary(SERVICE, state.upstreams.desktop_state().restore_desktop(caller.request(req))).await?;
    Ok(Json(Restored {
        desktop: resp.desktop.as_ref().map(desktop_json),
        saved_at: timestamp_json(resp.saved_at.as_ref()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced.
    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        let item = json!({"id": "d1"});
        let list = DesktopList { desktops: vec![item.clone()], next_page_token: "t".to_owned() };
        let old = json!({"desktops": [item.clone()], "next_page_token": "t"});
        assert_eq!(serde_json::to_string(&list).unwrap(), old.to_string());
        let list = WindowList { next_page_token: String::new(), windows: vec![item.clone()] };
        let old = json!({"windows": [item.clone()], "next_page_token": ""});
        assert_eq!(serde_json::to_string(&list).unwrap(), old.to_string());
        let restored = Restored { desktop: None, saved_at: Value::Null };
        let old = json!({"desktop": Option::<Value>::None, "saved_at": Value::Null});
        assert_eq!(serde_json::to_string(&restored).unwrap(), old.to_string());
    }
}
