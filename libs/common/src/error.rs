use std::fmt;

use axum::response::{IntoResponse, Response};
use getlood_proto::common::v1::{ErrorCode as WireCode, ErrorDetail};
use http::StatusCode;
use prost::Message as _;
use serde::{Deserialize, Serialize};

/// Binary metadata key of the [`ErrorDetail`] trailer every service error status carries
/// (`common.proto`).
pub const ERROR_DETAIL_KEY: &str = "getlood-error-bin";

/// The closed set of error kinds a GETLOOD API can return.
///
/// Each variant maps to exactly one gRPC code and one HTTP status, so a failure deep in a
/// service surfaces with the same meaning over gRPC, REST, and the OpenAI-compatible API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request itself is wrong (bad field, bad name, malformed JSON).
    InvalidArgument,
    /// No valid credentials: missing, expired or forged token.
    Unauthenticated,
    /// Valid credentials without the right to do this.
    PermissionDenied,
    /// The object does not exist, or belongs to another tenant (existence is not revealed).
    NotFound,
    /// An object with this name or id already exists.
    AlreadyExists,
    /// Optimistic concurrency conflict: the caller's version is stale.
    Aborted,
    /// The object is not in a state that allows the operation.
    FailedPrecondition,
    /// Rate limit or quota exceeded.
    ResourceExhausted,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// A dependency (database, broker, MindsDB) cannot be reached; retrying may help.
    Unavailable,
    /// The operation did not finish within its deadline.
    DeadlineExceeded,
    /// The operation is not implemented by this deployment.
    Unimplemented,
    /// A bug or unexpected failure; details are logged, never returned.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code for this error kind.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::Aborted => tonic::Code::Aborted,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            // gRPC has no "too large" code; OUT_OF_RANGE would mislead, INVALID_ARGUMENT is what
            // grpc-go returns for an oversized message body.
            Self::PayloadTooLarge => tonic::Code::InvalidArgument,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Unimplemented => tonic::Code::Unimplemented,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status for this error kind.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            // FAILED_PRECONDITION is about the resource's state (a run that is not waiting for
            // approval): 409 Conflict. 412 is reserved by HTTP for failed conditional headers,
            // which here are stale versions (ABORTED), also 409 with the current version.
            Self::AlreadyExists | Self::Aborted | Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Self::Unimplemented => StatusCode::NOT_IMPLEMENTED,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error kind a gRPC status code stands for (used when the gateway relays a service error).
    pub fn from_grpc(code: tonic::Code) -> Self {
        match code {
            tonic::Code::InvalidArgument | tonic::Code::OutOfRange => Self::InvalidArgument,
            tonic::Code::Unauthenticated => Self::Unauthenticated,
            tonic::Code::PermissionDenied => Self::PermissionDenied,
            tonic::Code::NotFound => Self::NotFound,
            tonic::Code::AlreadyExists => Self::AlreadyExists,
            tonic::Code::Aborted => Self::Aborted,
            tonic::Code::FailedPrecondition => Self::FailedPrecondition,
            tonic::Code::ResourceExhausted => Self::ResourceExhausted,
            tonic::Code::Unavailable => Self::Unavailable,
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => Self::DeadlineExceeded,
            tonic::Code::Unimplemented => Self::Unimplemented,
            tonic::Code::Ok | tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss => Self::Internal,
        }
    }

    /// The wire `getlood.common.v1.ErrorCode` of this kind (the one mapping between the two).
    pub fn to_wire(self) -> WireCode {
        match self {
            Self::InvalidArgument | Self::PayloadTooLarge => WireCode::InvalidArgument,
            Self::Unauthenticated => WireCode::Unauthenticated,
            Self::PermissionDenied => WireCode::PermissionDenied,
            Self::NotFound => WireCode::NotFound,
            Self::AlreadyExists => WireCode::AlreadyExists,
            Self::Aborted => WireCode::VersionConflict,
            Self::FailedPrecondition => WireCode::FailedPrecondition,
            Self::ResourceExhausted => WireCode::RateLimited,
            Self::Unavailable => WireCode::Unavailable,
            Self::DeadlineExceeded => WireCode::DeadlineExceeded,
            Self::Unimplemented | Self::Internal => WireCode::Internal,
        }
    }

    /// The kind a wire code (as carried in an [`ErrorDetail`]) stands for; unknown values are
    /// internal. A model or MindsDB failure (`UPSTREAM_FAILURE`) is a dependency being
    /// unavailable to the client, and a cancelled call one that ran out of time.
    pub fn from_wire(code: i32) -> Self {
        match WireCode::try_from(code).unwrap_or(WireCode::Internal) {
            WireCode::InvalidArgument => Self::InvalidArgument,
            WireCode::Unauthenticated => Self::Unauthenticated,
            WireCode::PermissionDenied => Self::PermissionDenied,
            WireCode::NotFound => Self::NotFound,
            WireCode::AlreadyExists => Self::AlreadyExists,
            WireCode::VersionConflict => Self::Aborted,
            WireCode::FailedPrecondition => Self::FailedPrecondition,
            WireCode::RateLimited => Self::ResourceExhausted,
            WireCode::Unavailable | WireCode::UpstreamFailure => Self::Unavailable,
            WireCode::DeadlineExceeded | WireCode::Cancelled => Self::DeadlineExceeded,
            WireCode::Internal | WireCode::Unspecified => Self::Internal,
        }
    }

    /// The stable snake_case name used in JSON bodies, e.g. `not_found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::Aborted => "aborted",
            Self::FailedPrecondition => "failed_precondition",
            Self::ResourceExhausted => "resource_exhausted",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unavailable => "unavailable",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Unimplemented => "unimplemented",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON error body of every REST response: `{"code": "not_found", "message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation of what is wrong.
    pub message: String,
}

/// An error on its way to a client: a code plus a message that is safe to show.
///
/// Internal errors carry a generic message; the cause is logged where the error is made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// What kind of failure this is.
    pub code: ErrorCode,
    /// What the client should know about it.
    pub message: String,
}

impl ApiError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// `INVALID_ARGUMENT` with `message`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// `UNAUTHENTICATED` with `message`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    /// `NOT_FOUND` with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `UNAVAILABLE` with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `INTERNAL`, logging `cause` once here and returning a message that leaks nothing.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::Internal, "internal error")
    }

    /// The JSON body for this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code, message: self.message.clone() }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        status(&err)
    }
}

impl ServiceError for ApiError {
    fn code(&self) -> ErrorCode {
        self.code
    }

    fn public_message(&self) -> String {
        self.message.clone()
    }
}

/// What every crate's error tells the one status conversion ([`status`]): its kind, what a
/// client may read, and the structured extras of its [`ErrorDetail`].
///
/// A crate implements this for its `Error` and writes `impl From<Error> for tonic::Status`
/// as `getlood_common::status(&err)`.
pub trait ServiceError: std::error::Error {
    /// The kind of failure.
    fn code(&self) -> ErrorCode;

    /// The message a client may see: the error's text, except for internal errors, whose
    /// cause is logged and never returned.
    fn public_message(&self) -> String {
        if self.code() == ErrorCode::Internal { "internal error".to_owned() } else { self.to_string() }
    }

    /// The gRPC code of the status; a crate overrides it where gRPC has a more precise code than
    /// the kind's (OUT_OF_RANGE for a resume point past the end, which clients test for).
    fn grpc_code(&self) -> tonic::Code {
        self.code().grpc_code()
    }

    /// The wire code of the detail trailer; a crate overrides it to say more than the kind
    /// (e.g. `UPSTREAM_FAILURE` for a model provider's own error).
    fn wire_code(&self) -> WireCode {
        self.code().to_wire()
    }

    /// Adds the kind-specific extras (field violations, the current version) to `detail`.
    fn fill_detail(&self, _detail: &mut ErrorDetail) {}

    /// The in-stream error item of this error (streams carry an [`ErrorDetail`] instead of
    /// ending with a status).
    fn detail(&self) -> ErrorDetail {
        let mut detail =
            ErrorDetail { code: self.wire_code() as i32, message: self.public_message(), ..Default::default() };
        self.fill_detail(&mut detail);
        detail
    }
}

/// The gRPC status of a service error: its code, its public message, and its [`ErrorDetail`]
/// in the [`ERROR_DETAIL_KEY`] trailer. Logs the cause here, once, for the kinds whose cause
/// the client does not see (internal, unavailable, deadline exceeded).
pub fn status<E: ServiceError + ?Sized>(err: &E) -> tonic::Status {
    let code = err.code();
    match code {
        ErrorCode::Internal => tracing::error!(error = %err, "internal error"),
        ErrorCode::Unavailable | ErrorCode::DeadlineExceeded => tracing::warn!(error = %err, "dependency failed"),
        _ => {}
    }
    let detail = err.detail();
    let mut status = tonic::Status::new(err.grpc_code(), detail.message.clone());
    status
        .metadata_mut()
        .insert_bin(ERROR_DETAIL_KEY, tonic::metadata::MetadataValue::from_bytes(&detail.encode_to_vec()));
    status
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let code = ErrorCode::from_grpc(status.code());
        // A service's internal message stays internal; the gateway shows a generic one.
        let message =
            if code == ErrorCode::Internal { "internal error".to_owned() } else { status.message().to_owned() };
        Self { code, message }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.http_status();
        (status, axum::Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorCode; 13] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Aborted,
        ErrorCode::FailedPrecondition,
        ErrorCode::ResourceExhausted,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Unimplemented,
        ErrorCode::Internal,
    ];

    #[test]
    fn codes_round_trip_through_grpc_except_payload_too_large() {
        for code in ALL {
            let back = ErrorCode::from_grpc(code.grpc_code());
            if code == ErrorCode::PayloadTooLarge {
                assert_eq!(back, ErrorCode::InvalidArgument);
            } else {
                assert_eq!(back, code, "{code} did not round-trip");
            }
        }
    }

    #[test]
    fn json_name_matches_serde_name() {
        for code in ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
    }

    #[test]
    fn internal_status_message_is_not_relayed() {
        let err = ApiError::from(tonic::Status::internal("pq: relation secret_table missing"));
        assert_eq!(err.code, ErrorCode::Internal);
        assert_eq!(err.message, "internal error");
        let err = ApiError::from(tonic::Status::not_found("agent 'x' not found"));
        assert_eq!(err.code.http_status(), StatusCode::NOT_FOUND);
        assert_eq!(err.message, "agent 'x' not found");
    }
}
