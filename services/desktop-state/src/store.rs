//! Postgres persistence of desktops and windows. Every statement filters on `tenant_id`, and
//! desktop lookups also on the owning user. Writers lock the desktop row first (see the
//! migration's locking rule).

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use serde_json::Value as Json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::model::{DESKTOP_COLUMNS, DesktopRow, GeometryPatch, WINDOW_COLUMNS, WindowRow};

/// The fields of a window a write sets.
#[derive(Debug, Clone)]
pub struct WindowFields {
    pub app_id: String,
    pub title: String,
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
    pub z_index: i32,
    pub state: &'static str,
    pub props: Json,
}

impl WindowFields {
    /// The current fields of `row`.
    pub fn of(row: &WindowRow) -> Self {
        Self {
            app_id: row.app_id.clone(),
            title: row.title.clone(),
            x: row.x,
            y: row.y,
            width: row.width,
            height: row.height,
            z_index: row.z_index,
            state: crate::model::state_str(row.window_state()),
            props: row.props.clone(),
        }
    }

    /// Whether writing `self` over `row` changes anything.
    pub fn differs(&self, row: &WindowRow) -> bool {
        self.app_id != row.app_id
            || self.title != row.title
            || (self.x, self.y, self.width, self.height, self.z_index)
                != (row.x, row.y, row.width, row.height, row.z_index)
            || self.state != row.state
            || self.props != row.props
    }
}

/// Inserts a desktop; with an idempotency key already used, returns the desktop it created.
pub async fn insert_desktop(
    conn: &mut PgConnection,
    tenant: &TenantId,
    owner: &str,
    name: &str,
    request_id: Option<&str>,
) -> Result<DesktopRow> {
    let sql = format!(
        "INSERT INTO desktops (tenant_id, id, owner_user_id, name, request_id) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, owner_user_id, request_id) DO NOTHING RETURNING {DESKTOP_COLUMNS}"
    );
    let inserted: Option<DesktopRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(Uuid::now_v7())
        .bind(owner)
        .bind(name)
        .bind(request_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = inserted {
        return Ok(row);
    }
    // Only a repeated key conflicts (NULL keys never do): return the first call's desktop.
    let sql = format!(
        "SELECT {DESKTOP_COLUMNS} FROM desktops WHERE tenant_id = $1 AND owner_user_id = $2 AND request_id = $3"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(owner)
        .bind(request_id)
        .fetch_one(conn)
        .await?)
}

/// One of the owner's desktops; `lock` takes the row lock for a write.
pub async fn desktop(
    conn: &mut PgConnection,
    tenant: &TenantId,
    owner: &str,
    id: Uuid,
    lock: bool,
) -> Result<Option<DesktopRow>> {
    let sql = format!(
        "SELECT {DESKTOP_COLUMNS} FROM desktops WHERE tenant_id = $1 AND owner_user_id = $2 AND id = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(owner).bind(id).fetch_optional(conn).await?)
}

/// Locks the desktop holding window `window_id`, if it is one of the owner's.
pub async fn lock_desktop_of_window(
    conn: &mut PgConnection,
    tenant: &TenantId,
    owner: &str,
    window_id: Uuid,
) -> Result<Option<DesktopRow>> {
    let columns = DESKTOP_COLUMNS.split(", ").map(|c| format!("d.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {columns} FROM desktops d JOIN windows_state w ON w.tenant_id = d.tenant_id AND w.desktop_id = d.id \
         WHERE w.tenant_id = $1 AND w.id = $2 AND d.owner_user_id = $3 FOR UPDATE OF d"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(window_id)
        .bind(owner)
        .fetch_optional(conn)
        .await?)
}

/// A window of desktop `desktop_id`.
pub async fn window_in(
    conn: &mut PgConnection,
    tenant: &TenantId,
    desktop_id: Uuid,
    id: Uuid,
) -> Result<Option<WindowRow>> {
    let sql =
        format!("SELECT {WINDOW_COLUMNS} FROM windows_state WHERE tenant_id = $1 AND desktop_id = $2 AND id = $3");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(desktop_id)
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

/// A window on one of the owner's desktops.
pub async fn window(conn: &mut PgConnection, tenant: &TenantId, owner: &str, id: Uuid) -> Result<Option<WindowRow>> {
    let columns = WINDOW_COLUMNS.split(", ").map(|c| format!("w.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {columns} FROM windows_state w JOIN desktops d ON d.tenant_id = w.tenant_id AND d.id = w.desktop_id \
         WHERE w.tenant_id = $1 AND w.id = $2 AND d.owner_user_id = $3"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id).bind(owner).fetch_optional(conn).await?)
}

/// Windows of the given desktops, in z-order (bottom first).
pub async fn windows_of(conn: &mut PgConnection, tenant: &TenantId, desktop_ids: &[Uuid]) -> Result<Vec<WindowRow>> {
    let sql = format!(
        "SELECT {WINDOW_COLUMNS} FROM windows_state WHERE tenant_id = $1 AND desktop_id = ANY($2) ORDER BY desktop_id, z_index"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(desktop_ids).fetch_all(conn).await?)
}

/// A page of the owner's desktops, newest first, after `(created_at, id)`.
pub async fn list_desktops(
    conn: &mut PgConnection,
    tenant: &TenantId,
    owner: &str,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<DesktopRow>> {
    let (after_ts, after_id) = after.unzip();
    let sql = format!(
        "SELECT {DESKTOP_COLUMNS} FROM desktops WHERE tenant_id = $1 AND owner_user_id = $2 \
         AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4)) ORDER BY created_at DESC, id DESC LIMIT $5"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(owner)
        .bind(after_ts)
        .bind(after_id)
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// A page of a desktop's windows in z-order, above `after_z`, optionally in one state.
pub async fn list_windows(
    conn: &mut PgConnection,
    tenant: &TenantId,
    desktop_id: Uuid,
    state: Option<&str>,
    after_z: Option<i32>,
    limit: i64,
) -> Result<Vec<WindowRow>> {
    let sql = format!(
        "SELECT {WINDOW_COLUMNS} FROM windows_state WHERE tenant_id = $1 AND desktop_id = $2 \
         AND ($3::text IS NULL OR state = $3) AND ($4::int IS NULL OR z_index > $4) ORDER BY z_index LIMIT $5"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(desktop_id)
        .bind(state)
        .bind(after_z)
        .bind(limit)
        .fetch_all(conn)
        .await?)
}

/// Deletes a desktop (its windows go with it).
pub async fn delete_desktop(conn: &mut PgConnection, tenant: &TenantId, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM desktops WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Bumps a desktop's version after a change to it or its windows, storing `focus_stack` (and
/// `name` when given).
pub async fn touch_desktop(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: Uuid,
    focus_stack: &[Uuid],
    name: Option<&str>,
) -> Result<DesktopRow> {
    let sql = format!(
        "UPDATE desktops SET focus_stack = $3, name = COALESCE($4, name), version = version + 1, updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 RETURNING {DESKTOP_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(id)
        .bind(focus_stack)
        .bind(name)
        .fetch_one(conn)
        .await?)
}

/// Records `snapshot` as the desktop's saved state, taken at `saved_at`.
pub async fn set_snapshot(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: Uuid,
    snapshot: &[u8],
    saved_at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("UPDATE desktops SET saved_snapshot = $3, saved_at = $4 WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .bind(snapshot)
        .bind(saved_at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The highest z-index on a desktop (0 when empty).
pub async fn max_z(conn: &mut PgConnection, tenant: &TenantId, desktop_id: Uuid) -> Result<i32> {
    let (z,): (Option<i32>,) =
        sqlx::query_as("SELECT max(z_index) FROM windows_state WHERE tenant_id = $1 AND desktop_id = $2")
            .bind(tenant.as_str())
            .bind(desktop_id)
            .fetch_one(conn)
            .await?;
    Ok(z.unwrap_or(0))
}

/// How many windows a desktop has.
pub async fn count_windows(conn: &mut PgConnection, tenant: &TenantId, desktop_id: Uuid) -> Result<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM windows_state WHERE tenant_id = $1 AND desktop_id = $2")
        .bind(tenant.as_str())
        .bind(desktop_id)
        .fetch_one(conn)
        .await?;
    Ok(n)
}

/// The window a desktop's earlier OpenWindow with this idempotency key created.
pub async fn window_by_request(
    conn: &mut PgConnection,
    tenant: &TenantId,
    desktop_id: Uuid,
    request_id: &str,
) -> Result<Option<WindowRow>> {
    let sql = format!(
        "SELECT {WINDOW_COLUMNS} FROM windows_state WHERE tenant_id = $1 AND desktop_id = $2 AND request_id = $3"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(desktop_id)
        .bind(request_id)
        .fetch_optional(conn)
        .await?)
}

/// Inserts a window. `version` and `created_at` are given when a restore re-creates one.
#[allow(clippy::too_many_arguments)]
pub async fn insert_window(
    conn: &mut PgConnection,
    tenant: &TenantId,
    desktop_id: Uuid,
    id: Uuid,
    user: &str,
    f: &WindowFields,
    version: i64,
    created_at: Option<DateTime<Utc>>,
    request_id: Option<&str>,
) -> Result<WindowRow> {
    let sql = format!(
        "INSERT INTO windows_state (tenant_id, id, desktop_id, user_id, app_id, title, x, y, width, height, z_index, \
         state, props, version, created_at, request_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, COALESCE($15, now()), $16) \
         RETURNING {WINDOW_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(id)
        .bind(desktop_id)
        .bind(user)
        .bind(&f.app_id)
        .bind(&f.title)
        .bind(f.x)
        .bind(f.y)
        .bind(f.width)
        .bind(f.height)
        .bind(f.z_index)
        .bind(f.state)
        .bind(&f.props)
        .bind(version)
        .bind(created_at)
        .bind(request_id)
        .fetch_one(conn)
        .await?)
}

/// Writes every mutable field of a window and bumps its version to at least `min_version`.
pub async fn update_window(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: Uuid,
    f: &WindowFields,
    min_version: i64,
) -> Result<WindowRow> {
    let sql = format!(
        "UPDATE windows_state SET app_id = $3, title = $4, x = $5, y = $6, width = $7, height = $8, z_index = $9, \
         state = $10, props = $11, version = GREATEST(version + 1, $12), updated_at = now() \
         WHERE tenant_id = $1 AND id = $2 RETURNING {WINDOW_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(id)
        .bind(&f.app_id)
        .bind(&f.title)
        .bind(f.x)
        .bind(f.y)
        .bind(f.width)
        .bind(f.height)
        .bind(f.z_index)
        .bind(f.state)
        .bind(&f.props)
        .bind(min_version)
        .fetch_one(conn)
        .await?)
}

/// Moves and/or resizes a window (unset fields keep their value); `None` if it is gone.
pub async fn apply_geometry(
    conn: &mut PgConnection,
    tenant: &TenantId,
    desktop_id: Uuid,
    id: Uuid,
    g: &GeometryPatch,
) -> Result<Option<WindowRow>> {
    let sql = format!(
        "UPDATE windows_state SET x = COALESCE($4, x), y = COALESCE($5, y), width = COALESCE($6, width), \
         height = COALESCE($7, height), version = version + 1, updated_at = now() \
         WHERE tenant_id = $1 AND desktop_id = $2 AND id = $3 RETURNING {WINDOW_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(desktop_id)
        .bind(id)
        .bind(g.x)
        .bind(g.y)
        .bind(g.width)
        .bind(g.height)
        .fetch_optional(conn)
        .await?)
}

/// Deletes one window.
pub async fn delete_window(conn: &mut PgConnection, tenant: &TenantId, id: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM windows_state WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Locks desktop `id` of any owner (the coalescer acts for the user who queued the move).
pub async fn lock_desktop_any_owner(conn: &mut PgConnection, tenant: &TenantId, id: Uuid) -> Result<bool> {
    let row: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM desktops WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}
