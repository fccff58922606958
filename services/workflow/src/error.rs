//! The service's errors, and how they reach a gRPC client: a status code, a message that is
//! safe to show, and a `getlood.common.v1.ErrorDetail` in the `getlood-error-bin` trailer.

use getlood_common::{ApiError, ErrorCode, ServiceError};
use getlood_proto::common::v1::{ErrorCode as DetailCode, ErrorDetail, FieldViolation};
use getlood_server::{database_code, database_message};
use tonic::Status;

pub use getlood_common::ERROR_DETAIL_KEY;

/// Why a workflow operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shared rule refused the request (e.g. the paging rule), with its kind and message.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `expected_version` was stale.
    #[error("{message}")]
    Aborted {
        /// What happened and what to do.
        message: String,
        /// The version currently stored.
        current_version: i64,
    },
    /// An object with this name already exists.
    #[error("{0}")]
    AlreadyExists(String),
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
        /// Summary (one line per problem).
        message: String,
        /// One entry per problem.
        violations: Vec<FieldViolation>,
    },
    /// MindsDB refused or failed.
    #[error("mindsdb: {0}")]
    Mindsdb(#[from] getlood_mindsdb::MindsdbError),
    /// Unknown object, or another tenant's (the two are not told apart).
    #[error("{0}")]
    NotFound(String),
    /// A resume point beyond the end of the run's events.
    #[error("{0}")]
    OutOfRange(String),
    /// NATS JetStream failed.
    #[error("jetstream: {0}")]
    Queue(String),
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

    /// `INVALID_ARGUMENT` listing every problem, one per line, prefixed by its subject.
    pub fn violations(summary: &str, violations: Vec<FieldViolation>) -> Self {
        let mut message = format!("{summary} ({} problems):", violations.len());
        for v in &violations {
            let subject = if v.subject.is_empty() { String::new() } else { format!("[{}] ", v.subject) };
            message.push_str(&format!("\n- {subject}{}: {}", v.field, v.description));
        }
        Self::InvalidArgument { message, violations }
    }

    /// `NOT_FOUND` for an object named as the caller gave it (truncated: it may be hostile).
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::NotFound(format!("{what} '{}' not found", id.chars().take(64).collect::<String>()))
    }
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::Api(e) => e.code,
            Error::Aborted { .. } => ErrorCode::Aborted,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::Database(db) => database_code(db),
            Error::FailedPrecondition(_) => ErrorCode::FailedPrecondition,
            Error::Internal(_) => ErrorCode::Internal,
            Error::InvalidArgument { .. } | Error::OutOfRange(_) => ErrorCode::InvalidArgument,
            Error::Mindsdb(e) => e.code(),
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::Queue(_) => ErrorCode::Unavailable,
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
            Error::Mindsdb(e) => e.public_message(),
            Error::Queue(_) => "work queue unavailable".to_owned(),
            other => other.to_string(),
        }
    }

    fn grpc_code(&self) -> tonic::Code {
        match self {
            // A resume point past the end is OUT_OF_RANGE on the wire (INVALID_ARGUMENT in
            // the detail), which is what gRPC clients test for.
            Error::OutOfRange(_) => tonic::Code::OutOfRange,
            other => other.code().grpc_code(),
        }
    }

    fn wire_code(&self) -> DetailCode {
        match self {
            // A MindsDB failure that is not one of the client's own kinds is the model
            // provider's or MindsDB's own error.
            Error::Mindsdb(e)
                if !matches!(
                    e.code(),
                    ErrorCode::NotFound
                        | ErrorCode::InvalidArgument
                        | ErrorCode::AlreadyExists
                        | ErrorCode::Unavailable
                        | ErrorCode::DeadlineExceeded
                ) =>
            {
                DetailCode::UpstreamFailure
            }
            other => other.code().to_wire(),
        }
    }

    fn fill_detail(&self, detail: &mut ErrorDetail) {
        match self {
            Error::Aborted { current_version, .. } => detail.current_version = *current_version,
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
