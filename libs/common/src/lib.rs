//! What every GETLOOD crate shares: one error-code enum mapped to both gRPC codes and HTTP
//! statuses, and the JSON error body clients receive.

mod error;

pub use error::{ApiError, ErrorBody, ErrorCode};
