//! What the REST route modules share: the request id they forward, paging queries, and
//! optimistic concurrency through `ETag` / `If-Match`.

use axum::Json;
use axum::response::{IntoResponse, Response};
use getlood_common::ApiError;
use getlood_proto::common::v1::{PageRequest, PageResponse};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The request id the gateway assigned (or the client sent), forwarded to the services.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok())
}

/// The `Idempotency-Key` header, or empty: services treat an empty key as none.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> String {
    headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Paging query of the list routes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    page_size: Option<i32>,
    page_token: Option<String>,
}

impl PageQuery {
    /// The proto paging request (0 and empty mean the service's defaults).
    pub(crate) fn page(self) -> Option<PageRequest> {
        Some(PageRequest { page_size: self.page_size.unwrap_or(0), page_token: self.page_token.unwrap_or_default() })
    }
}

/// A list route's body: the `items` under `key`, then the paging fields.
pub(crate) fn list_json(key: &str, items: Vec<Value>, page: Option<PageResponse>) -> Json<Value> {
    let page = page.unwrap_or_default();
    let mut body = Map::new();
    body.insert(key.to_owned(), Value::Array(items));
    body.insert("next_page_token".to_owned(), Value::String(page.next_page_token));
    // -1 is the proto's "not counted": REST leaves the field out rather than show a sentinel.
    if page.total_size >= 0 {
        body.insert("total_size".to_owned(), Value::from(page.total_size));
    }
    Json(Value::Object(body))
}

/// The items of a comma-separated query value (`topics=window,workflow`), trimmed, empty ones
/// dropped.
pub(crate) fn comma_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// Query of the delete routes.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct VersionQuery {
    /// Optimistic concurrency when not given as `If-Match`.
    pub expected_version: Option<i64>,
}

/// The version an `If-Match` header names (`"3"`, `W/"3"` or `3`); `*` means any.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(raw) = headers.get(http::header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = raw.to_str().unwrap_or_default().trim();
    if raw == "*" {
        return Ok(None);
    }
    raw.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| ApiError::invalid_argument("If-Match must be a version such as \"3\""))
}

/// `body` with status `status` and the object's `version` as its `ETag`.
pub(crate) fn with_etag(status: StatusCode, version: i64, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = http::HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(http::header::ETAG, value);
    }
    response
}
