//! Errors of the event dispatcher and their gRPC status.

use getlood_common::{ApiError, ErrorCode};
use getlood_events::EventError;
use getlood_mindsdb::MindsdbError;
use tonic::Status;

/// Why a dispatcher operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or following a stream failed.
    #[error(transparent)]
    Events(#[from] EventError),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// A knowledge-base call failed.
    #[error(transparent)]
    Mindsdb(#[from] MindsdbError),
    /// The entity named does not exist for the caller (or belongs to someone else).
    #[error("{0}")]
    NotFound(String),
    /// The caller lacks the role the request needs.
    #[error("{0}")]
    PermissionDenied(String),
    /// Another service answered with an error.
    #[error("{service}: {status}")]
    Upstream {
        /// Which service.
        service: &'static str,
        /// What it said.
        status: Status,
    },
}

/// Result of the dispatcher crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::Events(EventError::Expired { .. }) => Status::out_of_range(err.to_string()),
            Error::Events(EventError::Decode(_)) => ApiError::internal(&err).into(),
            Error::Events(EventError::JetStream(ref message)) => {
                // Logged here because the client only learns "unavailable".
                tracing::warn!(error = %message, "jetstream call failed");
                Status::unavailable("the event streams are unavailable, retry shortly")
            }
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::Mindsdb(e) => ApiError::from(e).into(),
            Error::NotFound(message) => Status::not_found(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::Upstream { service, status } => match status.code() {
                tonic::Code::NotFound | tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => status,
                _ => {
                    tracing::warn!(service, error = %status, "upstream call failed");
                    ApiError::new(ErrorCode::Unavailable, format!("the {service} service is unavailable")).into()
                }
            },
        }
    }
}
