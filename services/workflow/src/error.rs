//! The service's errors, and how they reach a gRPC client: a status code, a message that is
//! safe to show, and a `getlood.common.v1.ErrorDetail` in the `getlood-error-bin` trailer.

use getlood_proto::common::v1::{ErrorCode as DetailCode, ErrorDetail, FieldViolation};
use prost::Message as _;
use tonic::{Code, Status};

/// Binary metadata key of the [`ErrorDetail`] trailer (see `common.proto`).
pub const ERROR_DETAIL_KEY: &str = "getlood-error-bin";

/// Why a workflow operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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

/// What a client may see of a MindsDB failure (the adapter's own public wording).
fn mindsdb_public_message(e: &getlood_mindsdb::MindsdbError) -> String {
    use getlood_mindsdb::MindsdbError as M;
    match e {
        M::AlreadyExists(m) | M::NotFound(m) | M::InvalidArgument(m) => m.clone(),
        M::InvalidSql(_) => "the statement was rejected by mindsdb".to_owned(),
        M::Timeout(_) => "mindsdb did not answer in time".to_owned(),
        M::Unavailable(_) => "mindsdb is unavailable".to_owned(),
        M::Upstream(_) => "the model provider failed".to_owned(),
        _ => "internal error".to_owned(),
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let (code, detail_code, message) = match &err {
            Error::Aborted { message, .. } => (Code::Aborted, DetailCode::VersionConflict, message.clone()),
            Error::AlreadyExists(m) => (Code::AlreadyExists, DetailCode::AlreadyExists, m.clone()),
            Error::Database(db) => match db {
                // The pool could not get a connection: Postgres is down or saturated.
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                    tracing::warn!(error = %db, "postgres unavailable");
                    (Code::Unavailable, DetailCode::Unavailable, "database unavailable".to_owned())
                }
                _ => {
                    tracing::error!(error = %db, "database error");
                    (Code::Internal, DetailCode::Internal, "internal error".to_owned())
                }
            },
            Error::FailedPrecondition(m) => (Code::FailedPrecondition, DetailCode::FailedPrecondition, m.clone()),
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                (Code::Internal, DetailCode::Internal, "internal error".to_owned())
            }
            Error::InvalidArgument { message, .. } => {
                (Code::InvalidArgument, DetailCode::InvalidArgument, message.clone())
            }
            Error::Mindsdb(e) => {
                tracing::warn!(error = %e, "mindsdb call failed");
                let code = e.code();
                let detail = match code {
                    getlood_common::ErrorCode::NotFound => DetailCode::NotFound,
                    getlood_common::ErrorCode::InvalidArgument => DetailCode::InvalidArgument,
                    getlood_common::ErrorCode::AlreadyExists => DetailCode::AlreadyExists,
                    getlood_common::ErrorCode::Unavailable => DetailCode::Unavailable,
                    getlood_common::ErrorCode::DeadlineExceeded => DetailCode::DeadlineExceeded,
                    _ => DetailCode::UpstreamFailure,
                };
                (code.grpc_code(), detail, mindsdb_public_message(e))
            }
            Error::NotFound(m) => (Code::NotFound, DetailCode::NotFound, m.clone()),
            Error::OutOfRange(m) => (Code::OutOfRange, DetailCode::InvalidArgument, m.clone()),
            Error::Queue(m) => {
                tracing::warn!(error = %m, "jetstream unavailable");
                (Code::Unavailable, DetailCode::Unavailable, "work queue unavailable".to_owned())
            }
        };
        let mut detail = ErrorDetail { code: detail_code as i32, message: message.clone(), ..Default::default() };
        match err {
            Error::Aborted { current_version, .. } => detail.current_version = current_version,
            Error::InvalidArgument { violations, .. } => detail.field_violations = violations,
            _ => {}
        }
        let mut status = Status::new(code, message);
        status
            .metadata_mut()
            .insert_bin(ERROR_DETAIL_KEY, tonic::metadata::MetadataValue::from_bytes(&detail.encode_to_vec()));
        status
    }
}
