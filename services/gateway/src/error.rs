//! Errors of the gateway crate that are not already an [`ApiError`] on their way to a client.

use getlood_common::{ApiError, ErrorCode};

/// Why the gateway could not do something.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The rate-limit store (Redis) did not answer in time.
    #[error("rate-limit store timed out")]
    RateLimitStoreTimeout,
    /// The rate-limit store (Redis) refused or failed the call.
    #[error("rate-limit store: {0}")]
    RateLimitStore(#[from] redis::RedisError),
    /// The gateway has no Redis configured, so shared limits cannot be kept.
    #[error("rate-limit store is not configured")]
    RateLimitStoreMissing,
}

/// Result of the gateway crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            // The store being down is a dependency outage the client may retry, not a bug.
            Error::RateLimitStore(_) | Error::RateLimitStoreMissing | Error::RateLimitStoreTimeout => {
                ApiError::new(ErrorCode::Unavailable, "rate limiting is temporarily unavailable, retry shortly")
            }
        }
    }
}
