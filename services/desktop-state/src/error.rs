//! The service's errors, and how they reach a gRPC client: a status code, a message that is
//! safe to show, and a `getlood.common.v1.ErrorDetail` in the `getlood-error-bin` trailer.

use getlood_common::{ApiError, ErrorCode, ServiceError};
use getlood_proto::common::v1::{ErrorDetail, FieldViolation};
use getlood_server::{database_code, database_message};
use tonic::Status;

pub use getlood_common::ERROR_DETAIL_KEY;

/// Why a desktop-state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shared rule refused the request (e.g. the paging rule), with its kind and message.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `expected_version` was stale: carries the stored version and, where the RPC documents
    /// it, the current object packed as an `Any`.
    #[error("{message}")]
    Aborted {
        /// What happened and what to do.
        message: String,
        /// The version currently stored.
        current_version: i64,
        /// The current Window or Desktop.
        current: Option<prost_types::Any>,
    },
    /// Postgres failed; logged once when turned into a status, never shown to the client.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The object is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A bug or an unexpected failure; the message is logged, not returned.
    #[error("internal: {0}")]
    Internal(String),
    /// Bad input, with every problem found.
    #[error("{message}")]
    InvalidArgument {
        /// Summary.
        message: String,
        /// One entry per problem.
        violations: Vec<FieldViolation>,
    },
    /// Unknown object, or another tenant's or user's (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// A per-desktop limit was reached.
    #[error("{0}")]
    ResourceExhausted(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// `INVALID_ARGUMENT` with a single problem.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let description = description.into();
        Self::InvalidArgument {
            message: format!("{field}: {description}"),
            violations: vec![FieldViolation { field: field.to_owned(), subject: String::new(), description }],
        }
    }

    /// `NOT_FOUND` for a desktop id as the caller gave it (truncated: it may be hostile).
    pub fn desktop_not_found(id: &str) -> Self {
        Self::NotFound(format!("desktop '{}' not found", truncate(id)))
    }

    /// `NOT_FOUND` for a window id as the caller gave it.
    pub fn window_not_found(id: &str) -> Self {
        Self::NotFound(format!("window '{}' not found", truncate(id)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::Api(e) => e.code,
            Error::Aborted { .. } => ErrorCode::Aborted,
            Error::Database(db) => database_code(db),
            Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Error::Internal(_) => ErrorCode::Internal,
            Error::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
        }
    }

    fn public_message(&self) -> String {
        match self {
            Error::Api(e) => e.message.clone(),
            Error::Database(_) if self.code() == ErrorCode::Unavailable => "database unavailable".to_owned(),
            Error::Database(db) if database_message(db).is_some() => {
                database_message(db).unwrap_or_default().to_owned()
            }
            Error::Database(_) | Error::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    fn fill_detail(&self, detail: &mut ErrorDetail) {
        match self {
            Error::Aborted { current_version, current, .. } => {
                detail.current_version = *current_version;
                detail.current.clone_from(current);
            }
            Error::InvalidArgument { violations, .. } => detail.field_violations.clone_from(violations),
            _ => {}
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        getlood_common::status(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use getlood_proto::common::v1::ErrorCode as DetailCode;
    use prost::Message as _;
    use tonic::Code;

    #[test]
    fn aborted_carries_the_current_version_in_the_trailer() {
        let status: Status = Error::Aborted { message: "stale".into(), current_version: 7, current: None }.into();
        assert_eq!(status.code(), Code::Aborted);
        let bytes = status.metadata().get_bin(ERROR_DETAIL_KEY).unwrap().to_bytes().unwrap();
        let detail = ErrorDetail::decode(bytes).unwrap();
        assert_eq!(detail.current_version, 7);
        assert_eq!(detail.code, DetailCode::VersionConflict as i32);
    }

    #[test]
    fn database_errors_do_not_leak() {
        let status: Status = Error::Database(sqlx::Error::Protocol("relation secret missing".into())).into();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }
}
