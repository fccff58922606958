/// Why a service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] getlood_config::ConfigError),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The identity provider's JWKS document could not be fetched or read.
    #[error("jwks {url}: {message}")]
    Jwks {
        /// The document's URL.
        url: String,
        /// Why, with the transport error's causes (a refused certificate names its reason).
        message: String,
    },
    /// A database migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A service asked its runtime for a dependency its spec does not declare.
    #[error("{service} does not declare {what} in its spec")]
    NotNeeded {
        /// The service.
        service: &'static str,
        /// The dependency.
        what: &'static str,
    },
    /// Postgres refused a statement during start-up.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A server stopped with an I/O or transport error.
    #[error("server error: {0}")]
    Serve(String),
    /// A TLS setting (a CA file) cannot be used.
    #[error(transparent)]
    Tls(#[from] getlood_tls::Error),
    /// A URL in the configuration cannot be used.
    #[error("invalid {what} url: {message}")]
    Url {
        /// Which dependency.
        what: &'static str,
        /// Why.
        message: String,
    },
}

/// Result of the server skeleton.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a Postgres failure as a client sees it: the pool could not get a connection
/// (Postgres down or saturated, retrying later may help) is UNAVAILABLE; a value Postgres cannot
/// store (see [`database_message`]) is the caller's INVALID_ARGUMENT; anything else a bug or an
/// unexpected state, INTERNAL.
pub fn database_code(err: &sqlx::Error) -> getlood_common::ErrorCode {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            getlood_common::ErrorCode::Unavailable
        }
        _ if database_message(err).is_some() => getlood_common::ErrorCode::InvalidArgument,
        _ => getlood_common::ErrorCode::Internal,
    }
}

/// The public message of a Postgres refusal the caller's data caused, or `None` for every
/// other failure. Postgres text cannot hold NUL (`\u0000` in JSON is valid, so it reaches the
/// insert): SQLSTATE 22021 / 22P05; a value over Postgres's own size limits: 54000.
pub fn database_message(err: &sqlx::Error) -> Option<&'static str> {
    let sqlx::Error::Database(db) = err else { return None };
    match db.code().as_deref() {
        Some("22021" | "22P05") => Some("text must not contain NUL (\\u0000) characters"),
        Some("54000") => Some("a value is larger than the database can store"),
        _ => None,
    }
}
