//! A JSON body extractor whose every rejection is a JSON error body, never axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use getlood_common::{ApiError, ErrorCode};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

/// `axum::Json<T>`, with malformed JSON, a wrong content type and an oversized body turned into
/// [`ApiError`]s (400, 400, 413) that the route then renders in its own error shape.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(&rejection)),
        }
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`, for action routes whose
/// body only carries options (`POST .../cancel`). A body that is present must be valid JSON of
/// `T` (any content type: curl's `-d` sends form encoding by default), or it is a 400.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let body = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
            } else {
                ApiError::invalid_argument(format!("cannot read request body: {}", r.body_text()))
            }
        })?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&body)
            .map(Self)
            .map_err(|e| ApiError::invalid_argument(format!("invalid request body: {e}")))
    }
}

/// `axum::extract::Query<T>`, with a query string that does not parse as `T` (a number that is
/// not one, an unknown field where `T` denies them) turned into a JSON 400 naming the problem,
/// never axum's plain-text rejection.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::invalid_argument(rejection.body_text())),
        }
    }
}

/// Maps axum's JSON rejections onto the platform's error codes with a readable message.
pub(crate) fn rejection_to_error(rejection: &JsonRejection) -> ApiError {
    match rejection {
        // The body limit surfaces as a buffering failure with status 413.
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large")
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::invalid_argument("request body must be JSON with 'content-type: application/json'")
        }
        JsonRejection::JsonSyntaxError(e) => ApiError::invalid_argument(format!("malformed JSON: {}", e.body_text())),
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid_argument(format!("invalid request body: {}", e.body_text()))
        }
        other => ApiError::invalid_argument(format!("cannot read request body: {}", other.body_text())),
    }
}
