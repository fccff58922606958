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
    /// A database migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Postgres refused a statement during start-up.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// A server stopped with an I/O or transport error.
    #[error("server error: {0}")]
    Serve(String),
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
