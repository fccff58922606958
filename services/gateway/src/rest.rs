//! What the REST route modules share: paging queries, the `Idempotency-Key` header, and
//! optimistic concurrency through `ETag` / `If-Match`. The caller and the upstream call itself
//! are in [`crate::caller`].

use std::convert::Infallible;

use axum::Json;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use getlood_common::ApiError;
use getlood_proto::common::v1::{PageRequest, PageResponse};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::{ObjectBuilder, Required, Type};
use utoipa::{IntoParams, ToSchema};

/// The `Idempotency-Key` header, when the client sent a readable one.
#[derive(Debug, Default)]
pub(crate) struct IdempotencyKey(pub Option<String>);

impl IdempotencyKey {
    /// The key, or empty: services treat an empty key as none.
    pub(crate) fn or_empty(self) -> String {
        self.0.unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned)))
    }
}

/// An optional string header parameter of the OpenAPI document.
fn header_param(name: &str, description: &str) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .build()
}

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_param(
            "Idempotency-Key",
            "A retry with the same key within 24 h returns what the first call created instead of creating it again.",
        )]
    }
}

/// The `If-Match` precondition of a write. It is only read when the handler asks for the
/// version ([`IfMatch::or`]), so a malformed header is reported after the body and query have
/// been checked, as the route always did.
#[derive(Debug, Default)]
pub(crate) struct IfMatch(Option<HeaderValue>);

impl IfMatch {
    /// The version the write expects: the one `If-Match` names (`"3"`, `W/"3"` or `3`; `*` means
    /// any), else `fallback` (a body or query field), else 0 (any).
    pub(crate) fn or(self, fallback: Option<i64>) -> Result<i64, ApiError> {
        Ok(parse_if_match(self.0.as_ref())?.or(fallback).unwrap_or(0))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(http::header::IF_MATCH).cloned()))
    }
}

impl IntoParams for IfMatch {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_param(
            "If-Match",
            "The version the write expects (`\"3\"`, `W/\"3\"` or `3`; `*` means any): 409 when the object is at another one.",
        )]
    }
}

/// Paging query of the list routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Most items in one page; 0 or absent uses the service's default (bounded by its maximum).
    page_size: Option<i32>,
    /// `next_page_token` of the previous page; absent for the first page.
    page_token: Option<String>,
}

impl PageQuery {
    /// The proto paging request (0 and empty mean the service's defaults).
    pub(crate) fn page(self) -> Option<PageRequest> {
        Some(PageRequest { page_size: self.page_size.unwrap_or(0), page_token: self.page_token.unwrap_or_default() })
    }
}

/// The items of a comma-separated query value (`topics=window,workflow`), trimmed, empty ones
/// dropped.
pub(crate) fn comma_list(raw: Option<&str>) -> Vec<String> {
    raw.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect()
}

/// The paging fields of a list body: the token of the next page (empty on the last) and the
/// total when the service counted it (-1, "not counted", leaves the field out).
pub(crate) fn page_fields(page: Option<PageResponse>) -> (String, Option<i64>) {
    let page = page.unwrap_or_default();
    (page.next_page_token, (page.total_size >= 0).then_some(page.total_size))
}

/// The answer of a delete by id (`{"deleted": true, "id": ...}`).
///
/// The typed response bodies list their fields alphabetically, the order in which `json!`
/// objects (a `BTreeMap` without serde_json's `preserve_order`) have always been written, so
/// the bodies stay byte for byte what they were.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deleted {
    /// Always true.
    deleted: bool,
    /// The deleted object's id.
    id: String,
}

impl Deleted {
    /// `id` was deleted.
    pub(crate) fn id(id: String) -> Self {
        Self { deleted: true, id }
    }
}

/// Query of the delete routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// Optimistic concurrency when not given as `If-Match`.
    pub expected_version: Option<i64>,
}

/// The version an `If-Match` header names (`"3"`, `W/"3"` or `3`); `*` means any.
fn parse_if_match(raw: Option<&HeaderValue>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else {
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
pub(crate) fn with_etag(status: StatusCode, version: i64, body: impl Serialize) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(http::header::ETAG, value);
    }
    response
}

/// `body` as a 201.
pub(crate) fn created(body: impl Serialize) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Asserts that `body` is written with its keys sorted at every level, as the `json!` objects
/// it replaced were (serde_json's `Value` sorts them): a typed body's fields must be declared
/// alphabetically for its bytes to stay what they were.
#[cfg(test)]
#[track_caller]
pub(crate) fn assert_sorted_keys(body: &impl Serialize) {
    let typed = serde_json::to_string(body).unwrap();
    let sorted = serde_json::to_value(body).unwrap().to_string();
    assert_eq!(typed, sorted, "fields not in alphabetical order");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn if_match(raw: Option<&'static str>) -> IfMatch {
        IfMatch(raw.map(HeaderValue::from_static))
    }

    #[test]
    fn if_match_wins_over_the_fallback_and_star_means_any() {
        assert_eq!(if_match(Some("\"3\"")).or(Some(7)).unwrap(), 3);
        assert_eq!(if_match(Some("W/\"4\"")).or(None).unwrap(), 4);
        assert_eq!(if_match(Some("5")).or(None).unwrap(), 5);
        assert_eq!(if_match(Some("*")).or(Some(7)).unwrap(), 7);
        assert_eq!(if_match(None).or(Some(7)).unwrap(), 7);
        assert_eq!(if_match(None).or(None).unwrap(), 0);
        assert!(if_match(Some("abc")).or(Some(7)).unwrap_err().message.contains("If-Match"));
    }

    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        let typed = serde_json::to_string(&Deleted::id("wf-1".to_owned())).unwrap();
        let old = serde_json::json!({"id": "wf-1", "deleted": true}).to_string();
        assert_eq!(typed, old);
    }
}
