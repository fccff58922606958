//! Rows as stored, their protobuf form, and input validation.

use chrono::{DateTime, Utc};
use getlood_proto::common::v1::FieldViolation;
use getlood_proto::desktop_state::v1::{Desktop, Geometry, Window, WindowState};
use serde_json::Value as Json;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Longest desktop name and window title, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest app id (the seed's `VARCHAR(100)`).
pub const MAX_APP_ID_CHARS: usize = 100;
/// Longest idempotency key.
pub const MAX_REQUEST_ID_CHARS: usize = 200;
/// Size of a window opened without geometry.
pub const DEFAULT_SIZE: (i32, i32) = (800, 600);

/// A `desktops` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DesktopRow {
    pub id: Uuid,
    pub owner_user_id: String,
    pub name: String,
    pub focus_stack: Vec<Uuid>,
    pub version: i64,
    pub saved_snapshot: Option<Vec<u8>>,
    pub saved_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`DesktopRow`], for `SELECT` and `RETURNING`.
pub const DESKTOP_COLUMNS: &str =
    "id, owner_user_id, name, focus_stack, version, saved_snapshot, saved_at, created_at, updated_at";

/// A `windows_state` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WindowRow {
    pub id: Uuid,
    pub desktop_id: Uuid,
    pub app_id: String,
    pub title: String,
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
    pub z_index: i32,
    pub state: String,
    pub props: Json,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Columns of [`WindowRow`], for `SELECT` and `RETURNING`.
pub const WINDOW_COLUMNS: &str = "id, desktop_id, app_id, title, x, y, width, height, z_index, state, \
     props, version, created_at, updated_at";

/// The fields of a geometry update; unset fields keep their value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeometryPatch {
    pub x: Option<i32>,
    pub y: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
}

impl GeometryPatch {
    /// `newer` over `self`: newer fields win, fields it leaves unset keep ours.
    pub fn merge(self, newer: GeometryPatch) -> Self {
        Self {
            x: newer.x.or(self.x),
            y: newer.y.or(self.y),
            width: newer.width.or(self.width),
            height: newer.height.or(self.height),
        }
    }

    /// Applies the patch to a window message.
    pub fn apply_to(&self, w: &mut Window) {
        w.x = self.x.unwrap_or(w.x);
        w.y = self.y.unwrap_or(w.y);
        w.width = self.width.unwrap_or(w.width);
        w.height = self.height.unwrap_or(w.height);
    }
}

/// Protobuf timestamp of `t`.
pub fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

/// The column value of a state; `Unspecified` is stored as normal.
pub fn state_str(state: WindowState) -> &'static str {
    match state {
        WindowState::Minimized => "minimized",
        WindowState::Maximized => "maximized",
        WindowState::Normal | WindowState::Unspecified => "normal",
    }
}

/// The state a column value stands for.
pub fn parse_state(s: &str) -> WindowState {
    match s {
        "minimized" => WindowState::Minimized,
        "maximized" => WindowState::Maximized,
        _ => WindowState::Normal,
    }
}

impl WindowRow {
    /// The state as an enum.
    pub fn window_state(&self) -> WindowState {
        parse_state(&self.state)
    }

    /// The normal geometry.
    pub fn geometry(&self) -> Geometry {
        Geometry { x: self.x, y: self.y, width: self.width, height: self.height }
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> Window {
        Window {
            id: self.id.to_string(),
            desktop_id: self.desktop_id.to_string(),
            app_id: self.app_id.clone(),
            title: self.title.clone(),
            x: self.x,
            y: self.y,
            width: self.width,
            height: self.height,
            z_index: self.z_index,
            state: self.window_state() as i32,
            props: json_to_struct(&self.props),
            version: self.version,
            created_at: Some(ts(self.created_at)),
            updated_at: Some(ts(self.updated_at)),
        }
    }
}

impl DesktopRow {
    /// The focus stack as strings.
    pub fn focus_strings(&self) -> Vec<String> {
        self.focus_stack.iter().map(Uuid::to_string).collect()
    }

    /// The protobuf form with `windows` (already in z-order).
    pub fn to_proto(&self, windows: &[WindowRow]) -> Desktop {
        Desktop {
            id: self.id.to_string(),
            owner_user_id: self.owner_user_id.clone(),
            name: self.name.clone(),
            windows: windows.iter().map(WindowRow::to_proto).collect(),
            focus_stack: self.focus_strings(),
            version: self.version,
            created_at: Some(ts(self.created_at)),
            updated_at: Some(ts(self.updated_at)),
            saved_at: self.saved_at.map(ts),
        }
    }
}

/// Packs a Window as `google.protobuf.Any` (the `current` object of a version conflict).
pub fn pack_window(msg: &Window) -> prost_types::Any {
    // The generated code has no `prost::Name` impls (type names are not enabled in libs/proto).
    prost_types::Any {
        type_url: "type.googleapis.com/getlood.desktop_state.v1.Window".to_owned(),
        value: prost::Message::encode_to_vec(msg),
    }
}

/// Packs a Desktop as `google.protobuf.Any`.
pub fn pack_desktop(msg: &Desktop) -> prost_types::Any {
    prost_types::Any {
        type_url: "type.googleapis.com/getlood.desktop_state.v1.Desktop".to_owned(),
        value: prost::Message::encode_to_vec(msg),
    }
}

/// Parses an id given by the caller. A malformed id cannot name an object of theirs, so it is
/// NOT_FOUND like any other unknown id, through `not_found`.
pub fn parse_id(raw: &str, not_found: fn(&str) -> Error) -> Result<Uuid> {
    Uuid::parse_str(raw).map_err(|_| not_found(raw))
}

/// Checks a desktop name.
pub fn check_name(field: &str, name: &str) -> Option<FieldViolation> {
    let n = name.chars().count();
    if name.trim().is_empty() {
        Some(violation(field, "", "must not be empty"))
    } else if n > MAX_NAME_CHARS {
        Some(violation(field, "", format!("must be at most {MAX_NAME_CHARS} characters")))
    } else {
        None
    }
}

/// A field violation.
pub fn violation(field: &str, subject: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation { field: field.to_owned(), subject: subject.to_owned(), description: description.into() }
}

/// Every problem with a window's app id, title and size; `prefix` names it in the request.
pub fn check_window_fields(
    prefix: &str,
    subject: &str,
    app_id: &str,
    title: &str,
    size: Option<(i32, i32)>,
) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    if app_id.trim().is_empty() {
        out.push(violation(&format!("{prefix}app_id"), subject, "must not be empty"));
    } else if app_id.chars().count() > MAX_APP_ID_CHARS {
        out.push(violation(
            &format!("{prefix}app_id"),
            subject,
            format!("must be at most {MAX_APP_ID_CHARS} characters"),
        ));
    }
    if title.chars().count() > MAX_NAME_CHARS {
        out.push(violation(&format!("{prefix}title"), subject, format!("must be at most {MAX_NAME_CHARS} characters")));
    }
    if let Some((w, h)) = size {
        if w <= 0 {
            out.push(violation(&format!("{prefix}width"), subject, "must be greater than zero"));
        }
        if h <= 0 {
            out.push(violation(&format!("{prefix}height"), subject, "must be greater than zero"));
        }
    }
    out
}

/// Turns collected violations into one INVALID_ARGUMENT, or nothing.
pub fn reject(violations: Vec<FieldViolation>) -> Result<()> {
    if violations.is_empty() {
        return Ok(());
    }
    let message = violations
        .iter()
        .map(|v| {
            if v.subject.is_empty() {
                format!("{}: {}", v.field, v.description)
            } else {
                format!("{} ({}): {}", v.field, v.subject, v.description)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    Err(Error::InvalidArgument { message, violations })
}

/// Checks an idempotency key.
pub fn check_request_id(request_id: &str) -> Result<Option<&str>> {
    match request_id {
        "" => Ok(None),
        r if r.chars().count() > MAX_REQUEST_ID_CHARS => {
            Err(Error::invalid("request_id", format!("must be at most {MAX_REQUEST_ID_CHARS} characters")))
        }
        r => Ok(Some(r)),
    }
}

pub use getlood_common::paging::{decode_page_token as decode_token, encode_page_token as encode_token, page_size};

/// `google.protobuf.Struct` to JSON (for the `props` column), `{}` when absent.
pub use getlood_common::structs::opt_struct_to_json as struct_to_json;

/// JSON (the `props` column) to `google.protobuf.Struct`; `None` for an empty object.
pub fn json_to_struct(j: &Json) -> Option<prost_types::Struct> {
    match j {
        Json::Object(map) if !map.is_empty() => Some(getlood_common::structs::object_to_struct(map)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_round_trip_through_json() {
        let j = serde_json::json!({"chart": "bar", "n": 3, "w": 2.5, "tags": ["a", true, null], "nested": {"k": "v"}});
        let s = json_to_struct(&j).unwrap();
        assert_eq!(struct_to_json(Some(&s)), j);
        assert!(json_to_struct(&serde_json::json!({})).is_none());
    }

    #[test]
    fn page_tokens_are_bound_to_their_query() {
        let t = encode_token("desktops", "123:abc");
        assert_eq!(decode_token("desktops", &t).unwrap().as_deref(), Some("123:abc"));
        assert!(decode_token("windows", &t).is_err());
        assert!(decode_token("desktops", "%%%").is_err());
        assert!(page_size(-1).is_err());
        assert_eq!(page_size(0).unwrap(), 50);
        assert_eq!(page_size(10_000).unwrap(), 500);
    }

    #[test]
    fn window_checks_list_every_problem() {
        let v = check_window_fields("windows[0].", "w1", "", &"t".repeat(201), Some((0, -1)));
        assert_eq!(v.len(), 4);
    }

    #[test]
    fn newer_fields_win_and_unset_fields_keep_older_values() {
        let older = GeometryPatch { x: Some(1), y: Some(2), width: Some(300), height: None };
        let newer = GeometryPatch { x: Some(10), y: None, width: None, height: Some(50) };
        assert_eq!(older.merge(newer), GeometryPatch { x: Some(10), y: Some(2), width: Some(300), height: Some(50) });
    }
}
