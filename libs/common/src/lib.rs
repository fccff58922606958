//! What every GETLOOD crate shares: one error-code enum mapped to gRPC codes, HTTP statuses
//! and the wire `getlood.common.v1.ErrorCode`, the one conversion of a service error into a
//! gRPC status ([`status`]), the JSON error body clients receive, the identity types (tenant,
//! caller), the paging and `Struct` conversions every list and JSON-carrying API uses, and the
//! sealing of secrets kept in Postgres ([`sealing`]).

pub mod egress;
mod error;
mod identity;
pub mod paging;
pub mod sealing;
pub mod structs;

pub use error::{ApiError, ERROR_DETAIL_KEY, ErrorBody, ErrorCode, ServiceError, status};
pub use identity::{Principal, TenantId};

/// `err` and its sources on one line (`a: b: c`): an HTTP client's own text ("error sending
/// request") does not say whether the connection was refused, reset or its certificate refused;
/// the reason is in the sources.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
