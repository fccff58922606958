//! What every GETLOOD crate shares: one error-code enum mapped to gRPC codes, HTTP statuses
//! and the wire `getlood.common.v1.ErrorCode`, the one conversion of a service error into a
//! gRPC status ([`status`]), the JSON error body clients receive, the identity types (tenant,
//! caller), and the paging and `Struct` conversions every list and JSON-carrying API uses.

pub mod egress;
mod error;
mod identity;
pub mod paging;
pub mod structs;

pub use error::{ApiError, ERROR_DETAIL_KEY, ErrorBody, ErrorCode, ServiceError, status};
pub use identity::{Principal, TenantId};
