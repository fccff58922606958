//! Errors of the event dispatcher and their gRPC status.

use getlood_common::{ErrorCode, ServiceError};
use getlood_events::EventError;
use getlood_mindsdb::MindsdbError;
use tonic::Status;

/// Why a dispatcher operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object of that name already exists for the caller's tenant.
    #[error("{0}")]
    AlreadyExists(String),
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
    /// The tenant reached a quota (e.g. its number of knowledge bases).
    #[error("{0}")]
    ResourceExhausted(String),
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

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::Events(EventError::Expired { .. }) | Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::Events(EventError::Decode(_) | EventError::TooLarge(_)) => ErrorCode::Internal,
            Error::Events(EventError::JetStream(_)) => ErrorCode::Unavailable,
            Error::Mindsdb(e) => e.code(),
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::PermissionDenied(_) => ErrorCode::PermissionDenied,
            Error::ResourceExhausted(_) => ErrorCode::ResourceExhausted,
            Error::Upstream { status, .. } => match status.code() {
                // The callee's answer about the caller's own request is relayed as it is.
                tonic::Code::NotFound | tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
                    ErrorCode::from_grpc(status.code())
                }
                _ => ErrorCode::Unavailable,
            },
        }
    }

    fn grpc_code(&self) -> tonic::Code {
        match self {
            // Past the stream's retention: OUT_OF_RANGE tells the client to resync.
            Error::Events(EventError::Expired { .. }) => tonic::Code::OutOfRange,
            other => other.code().grpc_code(),
        }
    }

    fn public_message(&self) -> String {
        match self {
            Error::Events(EventError::JetStream(_)) => "the event streams are unavailable, retry shortly".to_owned(),
            Error::Events(EventError::Decode(_) | EventError::TooLarge(_)) => "internal error".to_owned(),
            Error::Mindsdb(e) => e.public_message(),
            Error::Upstream { service, status } => match self.code() {
                ErrorCode::Unavailable => format!("the {service} service is unavailable"),
                _ => status.message().to_owned(),
            },
            other => other.to_string(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        getlood_common::status(&err)
    }
}
