//! The pipeline's errors and what a client sees of them.

use std::time::Duration;

use getlood_common::{ApiError, ErrorCode, ServiceError};
use getlood_mindsdb::MindsdbError;
use getlood_proto::common::v1::{ErrorCode as ProtoCode, ErrorDetail};

/// Why a pipeline operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The agent reported a failure in its stream (code and safe message as the registry sent).
    #[error("agent failed: {message}")]
    Agent {
        /// The `getlood.common.v1.ErrorCode` the registry reported.
        code: i32,
        /// Its safe message.
        message: String,
    },
    /// The request is wrong.
    #[error("{0}")]
    InvalidArgument(String),
    /// MindsDB (the intent model) failed.
    #[error("intent model: {0}")]
    Mindsdb(#[from] MindsdbError),
    /// The object does not exist in the caller's tenant.
    #[error("{0}")]
    NotFound(String),
    /// Postgres failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// The agent registry answered with an error (or could not be reached).
    #[error("agent registry: {0}")]
    Registry(tonic::Status),
    /// An upstream step did not finish within its deadline.
    #[error("{what} did not finish within {after:?}")]
    Timeout {
        /// What timed out, for the message.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The agent failed while answering (in-stream error of QueryAgent).
    #[error("agent failed: {0}")]
    Upstream(String),
}

/// Result of the pipeline.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What a client may see: the code and a message without internals.
    pub fn api(&self) -> ApiError {
        match self {
            Self::Agent { message, .. } => ApiError::unavailable(message.clone()),
            Self::InvalidArgument(m) => ApiError::invalid_argument(m.clone()),
            Self::NotFound(m) => ApiError::not_found(m.clone()),
            Self::Mindsdb(e) => {
                tracing::warn!(error = %e, "intent model failed");
                ApiError::new(e.code(), "the intent model failed")
            }
            Self::Postgres(e) => match getlood_server::database_message(e) {
                Some(message) => ApiError::invalid_argument(message),
                None => ApiError::internal(e),
            },
            Self::Registry(status) => match status.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                    tracing::warn!(error = %status.message(), "agent registry unavailable");
                    ApiError::unavailable("the agent registry is unavailable, retry shortly")
                }
                tonic::Code::DeadlineExceeded => {
                    ApiError::new(ErrorCode::DeadlineExceeded, "the agent registry did not answer in time")
                }
                _ => ApiError::from(status.clone()),
            },
            Self::Timeout { what, after } => ApiError::new(
                ErrorCode::DeadlineExceeded,
                format!("{what} did not finish within {}s", after.as_secs_f32()),
            ),
            Self::Upstream(m) => ApiError::unavailable(m.clone()),
        }
    }
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        self.api().code
    }

    fn public_message(&self) -> String {
        self.api().message
    }

    fn wire_code(&self) -> ProtoCode {
        match (self, self.code()) {
            (Self::Upstream(_) | Self::Mindsdb(_), ErrorCode::Unavailable) => ProtoCode::UpstreamFailure,
            (_, code) => code.to_wire(),
        }
    }

    /// The agent's own in-stream error is relayed as the registry sent it.
    fn detail(&self) -> ErrorDetail {
        if let Self::Agent { code, message } = self {
            return ErrorDetail { code: *code, message: message.clone(), ..Default::default() };
        }
        ErrorDetail { code: self.wire_code() as i32, message: self.public_message(), ..Default::default() }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        getlood_common::status(&err)
    }
}
