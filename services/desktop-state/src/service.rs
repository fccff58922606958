//! `getlood.desktop_state.v1.DesktopStateService`.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use getlood_auth::Principal;
use getlood_events::{Domain, EventEnvelope, Outbox, Payload, new_envelope};
use getlood_proto::common::v1::PageResponse;
use getlood_proto::desktop_state::v1::desktop_state_service_server::DesktopStateService;
use getlood_proto::desktop_state::v1::*;
use getlood_proto::events::v1::{
    DesktopRestored, DesktopSaved, WindowClosed, WindowFocused, WindowMoved, WindowOpened, WindowStateChanged,
};
use prost::Message as _;
use sqlx::{PgPool, Postgres, Transaction};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::coalescer::{Coalescer, GeometryPatch, Merged, Pending};
use crate::error::{Error, Result};
use crate::model::{
    DEFAULT_SIZE, DesktopRow, WindowRow, check_name, check_request_id, check_window_fields, decode_token, encode_token,
    pack_desktop, pack_window, page_size, parse_id, reject, state_str, struct_to_json, ts, violation,
};
use crate::store::{self, WindowFields};
use crate::tables::AgentTables;

type Tx = Transaction<'static, Postgres>;

/// The service behind the gRPC API.
pub struct Desktops {
    pub pool: PgPool,
    pub outbox: Outbox,
    pub coalescer: Coalescer,
    pub tables: Option<AgentTables>,
    pub max_windows: i64,
    /// The tenants' registered databases.
    pub data_sources: crate::data_sources::DataSources,
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    getlood_server::principal(req).cloned()
}

fn stale_window(w: &WindowRow, expected: i64) -> Error {
    Error::Aborted {
        message: format!(
            "window changed: its version is {}, the request expected {expected}; re-read and retry",
            w.version
        ),
        current_version: w.version,
        current: Some(pack_window(&w.to_proto())),
    }
}

fn stale_desktop(d: &DesktopRow, windows: &[WindowRow], expected: i64) -> Error {
    Error::Aborted {
        message: format!(
            "desktop changed: its version is {}, the request expected {expected}; re-read and retry",
            d.version
        ),
        current_version: d.version,
        current: Some(pack_desktop(&d.to_proto(windows))),
    }
}

fn event(p: &Principal, desktop_id: Uuid, event_type: &str, payload: Payload) -> EventEnvelope {
    // Entity id = desktop id for every window.* and desktop.* event: subscribers filter on it.
    new_envelope(&p.tenant, &p.user, &desktop_id.to_string(), event_type, payload)
}

fn push_front(stack: &mut Vec<Uuid>, id: Uuid) {
    stack.retain(|w| *w != id);
    stack.insert(0, id);
}

/// Where a window opened without geometry goes: a cascade from the top-left corner.
fn cascade(n: i64) -> (i32, i32) {
    let step = i32::try_from(n % 10).unwrap_or(0);
    (40 + 30 * step, 40 + 30 * step)
}

fn state_of(raw: i32, field: &str) -> Result<WindowState> {
    WindowState::try_from(raw).map_err(|_| Error::invalid(field, format!("unknown window state {raw}")))
}

impl Desktops {
    async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// Writes `events` to the outbox in `tx`, commits, and wakes the relay.
    async fn commit(&self, mut tx: Tx, events: &[EventEnvelope]) -> Result<()> {
        for e in events {
            self.outbox.enqueue(&mut tx, Domain::Window, e).await?;
        }
        tx.commit().await?;
        if !events.is_empty() {
            self.outbox.notify();
        }
        Ok(())
    }

    /// Locks the desktop of one of the caller's windows and reads the window, after writing
    /// its coalesced moves (so this operation applies after them). Checks `expected_version`.
    async fn lock_window(&self, p: &Principal, raw_id: &str, expected: i64) -> Result<(Tx, DesktopRow, WindowRow)> {
        let id = parse_id(raw_id, Error::window_not_found)?;
        self.coalescer.flush_window(id).await?;
        let mut tx = self.begin().await?;
        let desktop = store::lock_desktop_of_window(&mut tx, &p.tenant, &p.user, id)
            .await?
            .ok_or_else(|| Error::window_not_found(raw_id))?;
        // Re-read under the lock: a close that committed while we waited removed it.
        let window = store::window_in(&mut tx, &p.tenant, desktop.id, id)
            .await?
            .ok_or_else(|| Error::window_not_found(raw_id))?;
        if expected != 0 && expected != window.version {
            return Err(stale_window(&window, expected));
        }
        Ok((tx, desktop, window))
    }

    /// Locks one of the caller's desktops and checks `expected` against its version.
    async fn lock_desktop(&self, p: &Principal, raw_id: &str, expected: i64) -> Result<(Tx, DesktopRow)> {
        let id = parse_id(raw_id, Error::desktop_not_found)?;
        self.coalescer.flush_desktop(id).await?;
        let mut tx = self.begin().await?;
        let desktop = store::desktop(&mut tx, &p.tenant, &p.user, id, true)
            .await?
            .ok_or_else(|| Error::desktop_not_found(raw_id))?;
        if expected != 0 && expected != desktop.version {
            let windows = store::windows_of(&mut tx, &p.tenant, &[id]).await?;
            return Err(stale_desktop(&desktop, &windows, expected));
        }
        Ok((tx, desktop))
    }

    /// Minimize, maximize and restore: idempotent state changes.
    async fn change_state(&self, p: &Principal, raw_id: &str, expected: i64, target: WindowState) -> Result<Window> {
        let (mut tx, desktop, window) = self.lock_window(p, raw_id, expected).await?;
        let previous = window.window_state();
        if previous == target {
            return Ok(window.to_proto());
        }
        let mut focus = desktop.focus_stack.clone();
        let mut fields = WindowFields::of(&window);
        fields.state = state_str(target);
        if target == WindowState::Minimized {
            // A minimized window cannot hold the focus: the next one in the stack gets it.
            focus.retain(|w| *w != window.id);
        } else if previous == WindowState::Minimized {
            // Coming back from the taskbar shows the window on top, focused.
            push_front(&mut focus, window.id);
            let top = store::max_z(&mut tx, &p.tenant, desktop.id).await?;
            if window.z_index != top {
                fields.z_index = top + 1;
            }
        }
        let row = store::update_window(&mut tx, &p.tenant, window.id, &fields, 0).await?;
        let desktop = store::touch_desktop(&mut tx, &p.tenant, desktop.id, &focus, None).await?;
        let e = event(
            p,
            desktop.id,
            "window.state_changed",
            Payload::WindowStateChanged(WindowStateChanged {
                desktop_id: desktop.id.to_string(),
                window_id: row.id.to_string(),
                previous_state: previous as i32,
                state: target as i32,
                version: row.version,
                focus_stack: desktop.focus_strings(),
            }),
        );
        self.commit(tx, &[e]).await?;
        Ok(row.to_proto())
    }

    /// Writes a geometry update now, checking `expected` (0: no check).
    async fn write_geometry(
        &self,
        p: &Principal,
        raw_id: &str,
        expected: i64,
        patch: &GeometryPatch,
    ) -> Result<Window> {
        let (mut tx, desktop, window) = self.lock_window(p, raw_id, expected).await?;
        if window.window_state() != WindowState::Normal {
            return Err(Error::FailedPrecondition(format!("window is {}: restore it first", window.state)));
        }
        let row = store::apply_geometry(&mut tx, &p.tenant, desktop.id, window.id, patch)
            .await?
            .ok_or_else(|| Error::window_not_found(raw_id))?;
        store::touch_desktop(&mut tx, &p.tenant, desktop.id, &desktop.focus_stack, None).await?;
        let e = event(
            p,
            desktop.id,
            "window.moved",
            Payload::WindowMoved(WindowMoved {
                desktop_id: desktop.id.to_string(),
                window_id: row.id.to_string(),
                geometry: Some(row.geometry()),
                version: row.version,
            }),
        );
        self.commit(tx, &[e]).await?;
        metrics::counter!(crate::coalescer::METRIC_UPDATES, "mode" => "direct").increment(1);
        Ok(row.to_proto())
    }

    /// Queues a versionless geometry update; falls back to writing it when shutting down.
    async fn coalesce_geometry(&self, p: &Principal, raw_id: &str, patch: GeometryPatch) -> Result<Window> {
        let id = parse_id(raw_id, Error::window_not_found)?;
        let queued = match self.coalescer.merge(&p.tenant, &p.user, &p.user, id, patch) {
            Merged::Absent => {
                let mut conn = self.pool.acquire().await?;
                let row = store::window(&mut conn, &p.tenant, &p.user, id)
                    .await?
                    .ok_or_else(|| Error::window_not_found(raw_id))?;
                if row.window_state() != WindowState::Normal {
                    return Err(Error::FailedPrecondition(format!("window is {}: restore it first", row.state)));
                }
                let mut window = row.to_proto();
                patch.apply_to(&mut window);
                // The flush writes the merged moves as one change: one version step.
                window.version = row.version + 1;
                self.coalescer.queue(Pending {
                    tenant: p.tenant.clone(),
                    owner: p.user.clone(),
                    actor: p.user.clone(),
                    desktop_id: row.desktop_id,
                    window,
                    patch,
                })
            }
            other => other,
        };
        match queued {
            Merged::Queued(window) => {
                metrics::counter!(crate::coalescer::METRIC_UPDATES, "mode" => "coalesced").increment(1);
                Ok(*window)
            }
            Merged::Closed | Merged::Absent => self.write_geometry(p, raw_id, 0, &patch).await,
        }
    }

    async fn load_desktop(&self, p: &Principal, raw_id: &str) -> Result<(DesktopRow, Vec<WindowRow>)> {
        let id = parse_id(raw_id, Error::desktop_not_found)?;
        // Read your acknowledged moves.
        self.coalescer.flush_desktop(id).await?;
        let mut conn = self.pool.acquire().await?;
        let desktop = store::desktop(&mut conn, &p.tenant, &p.user, id, false)
            .await?
            .ok_or_else(|| Error::desktop_not_found(raw_id))?;
        let windows = store::windows_of(&mut conn, &p.tenant, &[id]).await?;
        Ok((desktop, windows))
    }
}

#[tonic::async_trait]
impl DesktopStateService for Desktops {
    async fn create_desktop(
        &self,
        req: Request<CreateDesktopRequest>,
    ) -> Result<Response<CreateDesktopResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        reject(check_name("name", &req.name).into_iter().collect())?;
        let request_id = check_request_id(&req.request_id)?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let desktop = store::insert_desktop(&mut conn, &p.tenant, &p.user, req.name.trim(), request_id).await?;
        if let Some(tables) = &self.tables {
            tables.ensure_in_background(&p.tenant);
        }
        Ok(Response::new(CreateDesktopResponse { desktop: Some(desktop.to_proto(&[])) }))
    }

    async fn get_desktop(&self, req: Request<GetDesktopRequest>) -> Result<Response<GetDesktopResponse>, Status> {
        let p = principal(&req)?;
        let (desktop, windows) = self.load_desktop(&p, &req.get_ref().desktop_id).await?;
        Ok(Response::new(GetDesktopResponse { desktop: Some(desktop.to_proto(&windows)) }))
    }

    async fn list_desktops(&self, req: Request<ListDesktopsRequest>) -> Result<Response<ListDesktopsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size)?;
        let after = match decode_token("desktops", &page.page_token)? {
            None => None,
            Some(pos) => {
                let bad = || Error::invalid("page.page_token", "is not a token this query returned");
                let (micros, id) = pos.split_once(':').ok_or_else(bad)?;
                let micros: i64 = micros.parse().map_err(|_| bad())?;
                let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(bad)?;
                Some((at, Uuid::parse_str(id).map_err(|_| bad())?))
            }
        };
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let mut rows = store::list_desktops(&mut conn, &p.tenant, &p.user, after, limit + 1).await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let mut windows: HashMap<Uuid, Vec<WindowRow>> = HashMap::new();
        if req.include_windows && !rows.is_empty() {
            let ids: Vec<Uuid> = rows.iter().map(|d| d.id).collect();
            for w in store::windows_of(&mut conn, &p.tenant, &ids).await? {
                windows.entry(w.desktop_id).or_default().push(w);
            }
        }
        let next = match (more, rows.last()) {
            (true, Some(last)) => {
                encode_token("desktops", &format!("{}:{}", last.created_at.timestamp_micros(), last.id))
            }
            _ => String::new(),
        };
        let desktops = rows.iter().map(|d| d.to_proto(windows.get(&d.id).map_or(&[][..], Vec::as_slice))).collect();
        Ok(Response::new(ListDesktopsResponse {
            desktops,
            page: Some(PageResponse { next_page_token: next, total_size: -1 }),
        }))
    }

    async fn delete_desktop(
        &self,
        req: Request<DeleteDesktopRequest>,
    ) -> Result<Response<DeleteDesktopResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let (mut tx, desktop) = self.lock_desktop(&p, &req.desktop_id, req.expected_version).await?;
        let windows = store::windows_of(&mut tx, &p.tenant, &[desktop.id]).await?;
        store::delete_desktop(&mut tx, &p.tenant, desktop.id).await?;
        // The contract has no desktop.deleted event: subscribers see each window close.
        let events: Vec<EventEnvelope> = windows
            .iter()
            .map(|w| {
                event(
                    &p,
                    desktop.id,
                    "window.closed",
                    Payload::WindowClosed(WindowClosed {
                        desktop_id: desktop.id.to_string(),
                        window_id: w.id.to_string(),
                        desktop_version: desktop.version + 1,
                        focus_stack: Vec::new(),
                    }),
                )
            })
            .collect();
        self.commit(tx, &events).await?;
        Ok(Response::new(DeleteDesktopResponse { desktop_id: desktop.id.to_string() }))
    }

    async fn open_window(&self, req: Request<OpenWindowRequest>) -> Result<Response<OpenWindowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let state = match state_of(req.state, "state")? {
            WindowState::Unspecified => WindowState::Normal,
            s => s,
        };
        let title = if req.title.is_empty() { req.app_id.clone() } else { req.title.clone() };
        reject(check_window_fields("", "", &req.app_id, &title, req.geometry.map(|g| (g.width, g.height))))?;
        let request_id = check_request_id(&req.request_id)?;
        let (mut tx, desktop) = self.lock_desktop(&p, &req.desktop_id, req.expected_desktop_version).await?;
        if let Some(key) = request_id
            && let Some(existing) = store::window_by_request(&mut tx, &p.tenant, desktop.id, key).await?
        {
            // A retry of an open that succeeded: the same window, no second one.
            return Ok(Response::new(OpenWindowResponse {
                window: Some(existing.to_proto()),
                desktop_version: desktop.version,
                focus_stack: desktop.focus_strings(),
            }));
        }
        let count = store::count_windows(&mut tx, &p.tenant, desktop.id).await?;
        if count >= self.max_windows {
            return Err(
                Error::ResourceExhausted(format!("a desktop holds at most {} windows", self.max_windows)).into()
            );
        }
        let (x, y, width, height) = match req.geometry {
            Some(g) => (g.x, g.y, g.width, g.height),
            None => {
                let (x, y) = cascade(count);
                (x, y, DEFAULT_SIZE.0, DEFAULT_SIZE.1)
            }
        };
        let fields = WindowFields {
            app_id: req.app_id.trim().to_owned(),
            title,
            x,
            y,
            width,
            height,
            z_index: store::max_z(&mut tx, &p.tenant, desktop.id).await? + 1,
            state: state_str(state),
            props: struct_to_json(req.props.as_ref()),
        };
        let row =
            store::insert_window(&mut tx, &p.tenant, desktop.id, Uuid::now_v7(), &p.user, &fields, 1, None, request_id)
                .await?;
        let mut focus = desktop.focus_stack.clone();
        if state != WindowState::Minimized {
            push_front(&mut focus, row.id);
        }
        let desktop = store::touch_desktop(&mut tx, &p.tenant, desktop.id, &focus, None).await?;
        let window = row.to_proto();
        let e = event(
            &p,
            desktop.id,
            "window.opened",
            Payload::WindowOpened(WindowOpened {
                window: Some(window.clone()),
                desktop_version: desktop.version,
                focus_stack: desktop.focus_strings(),
            }),
        );
        self.commit(tx, &[e]).await?;
        Ok(Response::new(OpenWindowResponse {
            window: Some(window),
            desktop_version: desktop.version,
            focus_stack: desktop.focus_strings(),
        }))
    }

    async fn get_window(&self, req: Request<GetWindowRequest>) -> Result<Response<GetWindowResponse>, Status> {
        let p = principal(&req)?;
        let raw = &req.get_ref().window_id;
        let id = parse_id(raw, Error::window_not_found)?;
        self.coalescer.flush_window(id).await?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        let row =
            store::window(&mut conn, &p.tenant, &p.user, id).await?.ok_or_else(|| Error::window_not_found(raw))?;
        Ok(Response::new(GetWindowResponse { window: Some(row.to_proto()) }))
    }

    async fn list_windows(&self, req: Request<ListWindowsRequest>) -> Result<Response<ListWindowsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let id = parse_id(&req.desktop_id, Error::desktop_not_found)?;
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size)?;
        let state = match state_of(req.state, "state")? {
            WindowState::Unspecified => None,
            s => Some(state_str(s)),
        };
        // The token names the desktop and filter it was issued for.
        let kind = format!("windows:{id}:{}", state.unwrap_or("any"));
        let after_z = match decode_token(&kind, &page.page_token)? {
            None => None,
            Some(z) => Some(
                z.parse::<i32>()
                    .map_err(|_| Error::invalid("page.page_token", "is not a token this query returned"))?,
            ),
        };
        self.coalescer.flush_desktop(id).await?;
        let mut conn = self.pool.acquire().await.map_err(Error::from)?;
        store::desktop(&mut conn, &p.tenant, &p.user, id, false)
            .await?
            .ok_or_else(|| Error::desktop_not_found(&req.desktop_id))?;
        let mut rows = store::list_windows(&mut conn, &p.tenant, id, state, after_z, limit + 1).await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = match (more, rows.last()) {
            (true, Some(last)) => encode_token(&kind, &last.z_index.to_string()),
            _ => String::new(),
        };
        Ok(Response::new(ListWindowsResponse {
            windows: rows.iter().map(WindowRow::to_proto).collect(),
            page: Some(PageResponse { next_page_token: next, total_size: -1 }),
        }))
    }

    async fn update_window_geometry(
        &self,
        req: Request<UpdateWindowGeometryRequest>,
    ) -> Result<Response<UpdateWindowGeometryResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let patch = GeometryPatch { x: req.x, y: req.y, width: req.width, height: req.height };
        if patch == GeometryPatch::default() {
            return Err(Error::invalid("x", "set at least one of x, y, width, height").into());
        }
        let mut v = Vec::new();
        if patch.width.is_some_and(|w| w <= 0) {
            v.push(violation("width", "", "must be greater than zero"));
        }
        if patch.height.is_some_and(|h| h <= 0) {
            v.push(violation("height", "", "must be greater than zero"));
        }
        reject(v)?;
        let window = if req.expected_version == 0 {
            self.coalesce_geometry(&p, &req.window_id, patch).await?
        } else {
            self.write_geometry(&p, &req.window_id, req.expected_version, &patch).await?
        };
        Ok(Response::new(UpdateWindowGeometryResponse { window: Some(window) }))
    }

    async fn focus_window(&self, req: Request<FocusWindowRequest>) -> Result<Response<FocusWindowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let (mut tx, desktop, window) = self.lock_window(&p, &req.window_id, req.expected_version).await?;
        let mut fields = WindowFields::of(&window);
        let top = store::max_z(&mut tx, &p.tenant, desktop.id).await?;
        if window.z_index != top {
            fields.z_index = top + 1;
        }
        if window.window_state() == WindowState::Minimized {
            fields.state = state_str(WindowState::Normal);
        }
        let mut focus = desktop.focus_stack.clone();
        push_front(&mut focus, window.id);
        let row = store::update_window(&mut tx, &p.tenant, window.id, &fields, 0).await?;
        let desktop = store::touch_desktop(&mut tx, &p.tenant, desktop.id, &focus, None).await?;
        let e = event(
            &p,
            desktop.id,
            "window.focused",
            Payload::WindowFocused(WindowFocused {
                desktop_id: desktop.id.to_string(),
                window_id: row.id.to_string(),
                z_index: row.z_index,
                focus_stack: desktop.focus_strings(),
                version: row.version,
                state: row.window_state() as i32,
            }),
        );
        self.commit(tx, &[e]).await?;
        Ok(Response::new(FocusWindowResponse { window: Some(row.to_proto()), focus_stack: desktop.focus_strings() }))
    }

    async fn minimize_window(
        &self,
        req: Request<MinimizeWindowRequest>,
    ) -> Result<Response<MinimizeWindowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let window = self.change_state(&p, &req.window_id, req.expected_version, WindowState::Minimized).await?;
        Ok(Response::new(MinimizeWindowResponse { window: Some(window) }))
    }

    async fn maximize_window(
        &self,
        req: Request<MaximizeWindowRequest>,
    ) -> Result<Response<MaximizeWindowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let window = self.change_state(&p, &req.window_id, req.expected_version, WindowState::Maximized).await?;
        Ok(Response::new(MaximizeWindowResponse { window: Some(window) }))
    }

    async fn restore_window(
        &self,
        req: Request<RestoreWindowRequest>,
    ) -> Result<Response<RestoreWindowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let window = self.change_state(&p, &req.window_id, req.expected_version, WindowState::Normal).await?;
        Ok(Response::new(RestoreWindowResponse { window: Some(window) }))
    }

    async fn close_window(&self, req: Request<CloseWindowRequest>) -> Result<Response<CloseWindowResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let (mut tx, desktop, window) = self.lock_window(&p, &req.window_id, req.expected_version).await?;
        store::delete_window(&mut tx, &p.tenant, window.id).await?;
        let mut focus = desktop.focus_stack.clone();
        focus.retain(|w| *w != window.id);
        let desktop = store::touch_desktop(&mut tx, &p.tenant, desktop.id, &focus, None).await?;
        let e = event(
            &p,
            desktop.id,
            "window.closed",
            Payload::WindowClosed(WindowClosed {
                desktop_id: desktop.id.to_string(),
                window_id: window.id.to_string(),
                desktop_version: desktop.version,
                focus_stack: desktop.focus_strings(),
            }),
        );
        self.commit(tx, &[e]).await?;
        Ok(Response::new(CloseWindowResponse {
            window_id: window.id.to_string(),
            desktop_version: desktop.version,
            focus_stack: desktop.focus_strings(),
        }))
    }

    async fn save_desktop(&self, req: Request<SaveDesktopRequest>) -> Result<Response<SaveDesktopResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        // Everything that can be checked without the stored state, all problems at once.
        let mut v = Vec::new();
        if !req.name.is_empty() {
            v.extend(check_name("name", &req.name));
        }
        if i64::try_from(req.windows.len()).unwrap_or(i64::MAX) > self.max_windows {
            v.push(violation("windows", "", format!("a desktop holds at most {} windows", self.max_windows)));
        }
        let mut given: Vec<Option<Uuid>> = Vec::with_capacity(req.windows.len());
        let mut seen = HashSet::new();
        for (i, w) in req.windows.iter().enumerate() {
            let prefix = format!("windows[{i}].");
            v.extend(check_window_fields(&prefix, &w.id, &w.app_id, &w.title, Some((w.width, w.height))));
            if WindowState::try_from(w.state).is_err() {
                v.push(violation(&format!("{prefix}state"), &w.id, format!("unknown window state {}", w.state)));
            }
            if w.id.is_empty() {
                given.push(None);
                continue;
            }
            match Uuid::parse_str(&w.id) {
                Ok(id) if !seen.insert(id) => {
                    v.push(violation(&format!("{prefix}id"), &w.id, "appears more than once"));
                    given.push(None);
                }
                Ok(id) => given.push(Some(id)),
                Err(_) => {
                    v.push(violation(&format!("{prefix}id"), &w.id, "is not a window of this desktop"));
                    given.push(None);
                }
            }
        }
        let mut focus = Vec::with_capacity(req.focus_stack.len());
        for (i, f) in req.focus_stack.iter().enumerate() {
            match Uuid::parse_str(f).ok().filter(|id| seen.contains(id)) {
                Some(id) if focus.contains(&id) => {
                    v.push(violation(&format!("focus_stack[{i}]"), f, "appears more than once"))
                }
                Some(id) => focus.push(id),
                None => {
                    v.push(violation(&format!("focus_stack[{i}]"), f, "names no window with an id in this request"))
                }
            }
        }
        let (mut tx, desktop) = self.lock_desktop(&p, &req.desktop_id, req.expected_version).await?;
        let current: HashMap<Uuid, WindowRow> =
            store::windows_of(&mut tx, &p.tenant, &[desktop.id]).await?.into_iter().map(|w| (w.id, w)).collect();
        for (i, id) in given.iter().enumerate() {
            if let Some(id) = id
                && !current.contains_key(id)
            {
                v.push(violation(&format!("windows[{i}].id"), &id.to_string(), "is not a window of this desktop"));
            }
        }
        reject(v)?;

        for id in current.keys().filter(|id| !seen.contains(id)) {
            store::delete_window(&mut tx, &p.tenant, *id).await?;
        }
        for (i, (w, id)) in req.windows.iter().zip(&given).enumerate() {
            let fields = WindowFields {
                app_id: w.app_id.trim().to_owned(),
                title: if w.title.is_empty() { w.app_id.trim().to_owned() } else { w.title.clone() },
                x: w.x,
                y: w.y,
                width: w.width,
                height: w.height,
                // z_index comes from the order given, bottom first.
                z_index: i32::try_from(i + 1).unwrap_or(i32::MAX),
                state: state_str(WindowState::try_from(w.state).unwrap_or(WindowState::Normal)),
                props: struct_to_json(w.props.as_ref()),
            };
            match id.and_then(|id| current.get(&id)) {
                Some(row) if fields.differs(row) => {
                    store::update_window(&mut tx, &p.tenant, row.id, &fields, 0).await?;
                }
                Some(_) => {}
                None => {
                    store::insert_window(
                        &mut tx,
                        &p.tenant,
                        desktop.id,
                        Uuid::now_v7(),
                        &p.user,
                        &fields,
                        1,
                        None,
                        None,
                    )
                    .await?;
                }
            }
        }
        let name = (!req.name.is_empty()).then(|| req.name.trim());
        let desktop = store::touch_desktop(&mut tx, &p.tenant, desktop.id, &focus, name).await?;
        let windows = store::windows_of(&mut tx, &p.tenant, &[desktop.id]).await?;
        // The transaction's now(): the same instant as updated_at, at Postgres precision.
        let saved_at = desktop.updated_at;
        let mut snapshot = desktop.to_proto(&windows);
        snapshot.saved_at = Some(ts(saved_at));
        store::set_snapshot(&mut tx, &p.tenant, desktop.id, &snapshot.encode_to_vec(), saved_at).await?;
        let e = event(
            &p,
            desktop.id,
            "desktop.saved",
            Payload::DesktopSaved(DesktopSaved { desktop: Some(snapshot.clone()) }),
        );
        self.commit(tx, &[e]).await?;
        Ok(Response::new(SaveDesktopResponse { desktop: Some(snapshot) }))
    }

    async fn restore_desktop(
        &self,
        req: Request<RestoreDesktopRequest>,
    ) -> Result<Response<RestoreDesktopResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let (mut tx, desktop) = self.lock_desktop(&p, &req.desktop_id, req.expected_version).await?;
        let Some(bytes) = desktop.saved_snapshot.as_deref() else {
            // Never saved: the current durable state, unchanged.
            let windows = store::windows_of(&mut tx, &p.tenant, &[desktop.id]).await?;
            return Ok(Response::new(RestoreDesktopResponse {
                desktop: Some(desktop.to_proto(&windows)),
                saved_at: None,
            }));
        };
        let snapshot = Desktop::decode(bytes)
            .map_err(|e| Error::Internal(format!("undecodable snapshot of desktop {}: {e}", desktop.id)))?;
        let current: HashMap<Uuid, WindowRow> =
            store::windows_of(&mut tx, &p.tenant, &[desktop.id]).await?.into_iter().map(|w| (w.id, w)).collect();
        let mut keep = HashSet::new();
        let mut restored = Vec::with_capacity(snapshot.windows.len());
        for w in &snapshot.windows {
            let id = Uuid::parse_str(&w.id)
                .map_err(|_| Error::Internal(format!("snapshot window id '{}' is not a uuid", w.id)))?;
            keep.insert(id);
            restored.push((id, w));
        }
        for id in current.keys().filter(|id| !keep.contains(id)) {
            store::delete_window(&mut tx, &p.tenant, *id).await?;
        }
        for (id, w) in restored {
            let fields = WindowFields {
                app_id: w.app_id.clone(),
                title: w.title.clone(),
                x: w.x,
                y: w.y,
                width: w.width,
                height: w.height,
                z_index: w.z_index,
                state: state_str(WindowState::try_from(w.state).unwrap_or(WindowState::Normal)),
                props: struct_to_json(w.props.as_ref()),
            };
            match current.get(&id) {
                // Versions only grow, so clients never take the restored state for a stale one.
                Some(row) if fields.differs(row) => {
                    store::update_window(&mut tx, &p.tenant, id, &fields, w.version + 1).await?;
                }
                Some(_) => {}
                None => {
                    let created = w
                        .created_at
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)));
                    store::insert_window(
                        &mut tx,
                        &p.tenant,
                        desktop.id,
                        id,
                        &p.user,
                        &fields,
                        w.version + 1,
                        created,
                        None,
                    )
                    .await?;
                }
            }
        }
        let focus: Vec<Uuid> =
            snapshot.focus_stack.iter().filter_map(|f| Uuid::parse_str(f).ok()).filter(|f| keep.contains(f)).collect();
        let desktop = store::touch_desktop(&mut tx, &p.tenant, desktop.id, &focus, Some(&snapshot.name)).await?;
        let windows = store::windows_of(&mut tx, &p.tenant, &[desktop.id]).await?;
        let state = desktop.to_proto(&windows);
        let saved_at = desktop.saved_at.map(ts);
        let e = event(
            &p,
            desktop.id,
            "desktop.restored",
            Payload::DesktopRestored(DesktopRestored { desktop: Some(state.clone()), saved_at }),
        );
        self.commit(tx, &[e]).await?;
        Ok(Response::new(RestoreDesktopResponse { desktop: Some(state), saved_at }))
    }
    async fn create_data_source(
        &self,
        req: Request<CreateDataSourceRequest>,
    ) -> Result<Response<CreateDataSourceResponse>, Status> {
        let p = principal(&req)?;
        let data_source = self.data_sources.create(&p, req.get_ref()).await?;
        Ok(Response::new(CreateDataSourceResponse { data_source: Some(data_source) }))
    }

    async fn list_data_sources(
        &self,
        req: Request<ListDataSourcesRequest>,
    ) -> Result<Response<ListDataSourcesResponse>, Status> {
        let p = principal(&req)?;
        Ok(Response::new(ListDataSourcesResponse { data_sources: self.data_sources.list(&p).await? }))
    }

    async fn get_data_source(
        &self,
        req: Request<GetDataSourceRequest>,
    ) -> Result<Response<GetDataSourceResponse>, Status> {
        let p = principal(&req)?;
        let data_source = self.data_sources.get(&p, &req.get_ref().name).await?;
        Ok(Response::new(GetDataSourceResponse { data_source: Some(data_source) }))
    }

    async fn delete_data_source(
        &self,
        req: Request<DeleteDataSourceRequest>,
    ) -> Result<Response<DeleteDataSourceResponse>, Status> {
        let p = principal(&req)?;
        self.data_sources.delete(&p, &req.get_ref().name).await?;
        Ok(Response::new(DeleteDataSourceResponse {}))
    }

    async fn test_data_source(
        &self,
        req: Request<TestDataSourceRequest>,
    ) -> Result<Response<TestDataSourceResponse>, Status> {
        let p = principal(&req)?;
        Ok(Response::new(self.data_sources.test(&p, &req.get_ref().name).await?))
    }

    async fn list_data_source_tables(
        &self,
        req: Request<ListDataSourceTablesRequest>,
    ) -> Result<Response<ListDataSourceTablesResponse>, Status> {
        let p = principal(&req)?;
        Ok(Response::new(ListDataSourceTablesResponse {
            tables: self.data_sources.tables(&p, &req.get_ref().name).await?,
        }))
    }

    async fn get_data_source_table(
        &self,
        req: Request<GetDataSourceTableRequest>,
    ) -> Result<Response<GetDataSourceTableResponse>, Status> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let table = self.data_sources.table(&p, &r.name, &r.table).await?;
        Ok(Response::new(GetDataSourceTableResponse { table: Some(table) }))
    }

    async fn sample_data_source_rows(
        &self,
        req: Request<SampleDataSourceRowsRequest>,
    ) -> Result<Response<SampleDataSourceRowsResponse>, Status> {
        let p = principal(&req)?;
        Ok(Response::new(self.data_sources.sample(&p, req.get_ref()).await?))
    }
}
