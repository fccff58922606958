use std::time::Duration;

use getlood_common::{ApiError, ErrorCode};

/// Why a MindsDB call failed.
///
/// MindsDB 26.1 answers SQL-level failures with HTTP 200 and a free-text `error_message`
/// (`error_code` is always 0), so most variants come out of [`MindsdbError::from_message`],
/// which matches the message texts observed on a real 26.1 server (e.g. `Table 'x' not found in
/// database: p`). The text of a variant is for logs; [`From<MindsdbError> for ApiError`] decides
/// what a client may see.
#[derive(Debug, thiserror::Error)]
pub enum MindsdbError {
    /// An object with this name already exists.
    #[error("mindsdb object already exists: {0}")]
    AlreadyExists(String),
    /// MindsDB rejected the platform's own credentials: a deployment error, not the caller's.
    #[error("mindsdb rejected the client credentials: {0}")]
    Auth(String),
    /// A name or value was refused before anything was sent to MindsDB.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// MindsDB could not connect to a database it was given; the reason is in this crate's fixed
    /// words ([`crate::database::connection_reason`]), never the driver's text.
    #[error("cannot connect to the database: {0}")]
    ConnectionFailed(&'static str),
    /// MindsDB could not parse the statement.
    #[error("mindsdb could not parse the statement: {0}")]
    InvalidSql(String),
    /// Anything else: an unexpected answer, a handler traceback, a bug.
    #[error("mindsdb internal error: {0}")]
    Internal(String),
    /// The object does not exist (or belongs to another tenant: the two are not told apart).
    #[error("mindsdb object not found: {0}")]
    NotFound(String),
    /// No answer within the configured timeout.
    #[error("mindsdb did not answer within {0:?}")]
    Timeout(Duration),
    /// MindsDB cannot be reached or says it is overloaded; retrying later may help.
    #[error("mindsdb unavailable: {0}")]
    Unavailable(String),
    /// This MindsDB install cannot do it (a handler it lacks); the message says what is missing.
    #[error("not supported by this mindsdb: {0}")]
    Unsupported(String),
    /// The model provider behind MindsDB (LLM or embeddings endpoint) failed.
    #[error("model provider failed: {0}")]
    Upstream(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = MindsdbError> = std::result::Result<T, E>;

impl MindsdbError {
    /// The common error code this failure maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            // Our credentials failing is an operator problem; telling the caller "unauthenticated"
            // would send them looking at their own token.
            Self::Auth(_) | Self::Internal(_) => ErrorCode::Internal,
            Self::InvalidArgument(_) | Self::InvalidSql(_) | Self::ConnectionFailed(_) => ErrorCode::InvalidArgument,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Timeout(_) => ErrorCode::DeadlineExceeded,
            Self::Unavailable(_) | Self::Upstream(_) => ErrorCode::Unavailable,
            Self::Unsupported(_) => ErrorCode::Unimplemented,
        }
    }

    /// Whether a retry of the same request may succeed (connectivity or overload, never a
    /// semantic error).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Classifies the free-text `error_message` of a MindsDB `{"type":"error"}` answer.
    ///
    /// The order matters: provider errors often contain "not found" (`API key for openai not
    /// found`), so they are recognised first.
    pub fn from_message(message: &str) -> Self {
        let m = message.to_ascii_lowercase();
        let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
        let short = first_line(message);
        if has(&["already exists"]) {
            Self::AlreadyExists(short)
        } else if has(&[
            "connection error",
            "apiconnectionerror",
            "error in completion event generator",
            "api key",
            "rate limit",
            "ratelimit",
            "authenticationerror",
            "invalid model name",
            "openai.",
            "llm",
            // pydantic-ai's model errors (26.1 agents): `ModelHTTPError` details start with the
            // provider's status, `UnexpectedModelBehavior` is an answer that is not the asked shape.
            "status_code:",
            "output validation",
        ]) {
            Self::Upstream(short)
        } else if has(&[
            "not found",
            "does not exist",
            "doesn't exist",
            "does not exists",
            "not exists",
            "unknown integration name",
            "there is no integration",
            "can't find",
            // 26.1's answer to `PUT .../agents/{name}` for an agent it does not have (a 400).
            "creation of an agent using the put method is not allowed",
        ]) {
            Self::NotFound(short)
        } else if has(&[
            "cannot be parsed",
            "syntax error",
            "parser error",
            "only a single sql statement",
            "unable to parse",
        ]) {
            Self::InvalidSql(short)
        } else if has(&["service unavailable", "temporarily unavailable", "too many requests", "server is busy"]) {
            Self::Unavailable(short)
        } else {
            Self::Internal(short)
        }
    }

    /// The message a client may see: short, and generic where MindsDB's text can carry
    /// internals (tracebacks, generated SQL, provider responses).
    pub fn public_message(&self) -> String {
        match self {
            // MindsDB quotes settings in some of these (26.1: an agent whose `data.tables` names a
            // missing table is "The model \"{'api_key': 'sk-...', ...}\" does not exist"): a text
            // that may carry a secret is replaced, whatever it says.
            Self::AlreadyExists(m) | Self::NotFound(m) | Self::InvalidArgument(m) if may_carry_secret(m) => {
                match self.code() {
                    ErrorCode::NotFound => "a mindsdb object named in the request does not exist".to_owned(),
                    ErrorCode::AlreadyExists => "a mindsdb object of that name already exists".to_owned(),
                    _ => "mindsdb refused the request's settings".to_owned(),
                }
            }
            Self::AlreadyExists(m) | Self::NotFound(m) | Self::InvalidArgument(m) | Self::Unsupported(m) => m.clone(),
            Self::InvalidSql(_) => "the statement was rejected by mindsdb".to_owned(),
            // Our own words ("the server refused the user name or password"), not MindsDB's.
            Self::ConnectionFailed(reason) => format!("cannot connect to the database: {reason}"),
            Self::Timeout(_) => "mindsdb did not answer in time".to_owned(),
            Self::Unavailable(_) => "mindsdb is unavailable".to_owned(),
            Self::Upstream(_) => "the model provider failed".to_owned(),
            Self::Auth(_) | Self::Internal(_) => "internal error".to_owned(),
        }
    }
}

impl From<MindsdbError> for ApiError {
    fn from(err: MindsdbError) -> Self {
        match err.code() {
            // Logged once here, where the cause is still known.
            ErrorCode::Internal => ApiError::internal(&err),
            code => {
                if matches!(err, MindsdbError::InvalidSql(_) | MindsdbError::Upstream(_)) {
                    tracing::warn!(error = %err, "mindsdb call failed");
                }
                ApiError::new(code, err.public_message())
            }
        }
    }
}

/// Whether a MindsDB message quotes something that may be a secret (a settings dict, a key).
fn may_carry_secret(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["api_key", "apikey", "password", "secret", "token", "'sk-", "\"sk-"].iter().any(|n| m.contains(n))
}

/// The first line of `message`, at most 300 characters: MindsDB appends tracebacks and the
/// generated query after the first line.
fn first_line(message: &str) -> String {
    let line = message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    line.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_observed_messages() {
        let cases = [
            ("Project already exists: proj_a", ErrorCode::AlreadyExists),
            ("Table 'nope' not found in database: proj_a", ErrorCode::NotFound),
            ("Database does not exists: nope", ErrorCode::NotFound),
            ("Job does not exist: j1", ErrorCode::NotFound),
            ("Creation of an agent using the PUT method is not allowed.", ErrorCode::NotFound),
            ("Unknown integration name: mindsdb", ErrorCode::NotFound),
            ("There is no integration with name 'files': unknown", ErrorCode::NotFound),
            (
                "The SQL statement cannot be parsed - SELEC 1: Syntax error, unknown input:\n>SELEC 1",
                ErrorCode::InvalidArgument,
            ),
            ("Only a single sql statement is expected. Got multiple instead", ErrorCode::InvalidArgument),
            ("Connection error.", ErrorCode::Unavailable),
            ("API key for openai not found", ErrorCode::Unavailable),
            ("status_code: 405, model_name: gpt-4, body: <!doctype html>", ErrorCode::Unavailable),
            ("Exceeded maximum retries (1) for output validation", ErrorCode::Unavailable),
            ("Traceback (most recent call last):\n  File x", ErrorCode::Internal),
        ];
        for (msg, code) in cases {
            assert_eq!(MindsdbError::from_message(msg).code(), code, "{msg}");
        }
    }

    #[test]
    fn api_error_hides_internals() {
        let err = MindsdbError::from_message(
            "An error occurred while processing an internally generated query\nFailed Query: SELECT secret",
        );
        let api = ApiError::from(err);
        assert_eq!(api.code, ErrorCode::Internal);
        assert_eq!(api.message, "internal error");
        let api = ApiError::from(MindsdbError::from_message(
            "The model \"{'api_key': 'sk-agent', 'base_url': 'http://h/v1', 'model_name': 'm'}\" does not exist.",
        ));
        assert_eq!(api.code, ErrorCode::NotFound);
        assert!(!api.message.contains("sk-agent"), "{}", api.message);
        let api = ApiError::from(MindsdbError::Upstream("openai.APIError: key sk-123 bad".into()));
        assert_eq!(api.code, ErrorCode::Unavailable);
        assert!(!api.message.contains("sk-123"));
    }
}
