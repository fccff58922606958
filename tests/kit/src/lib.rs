//! Test harness: starts any set of the six services in-process, each on port 0, against the real
//! Postgres, Redis and NATS of the machine, with a private Postgres schema per service and test.
//!
//! Addresses of the shared servers come from `GETLOOD_TEST_POSTGRES_URL`, `GETLOOD_TEST_REDIS_URL`
//! and `GETLOOD_TEST_NATS_URL`, defaulting to the standard local ports.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]

mod openai_double;
mod otlp;
mod platform;
mod proxy;

pub use openai_double::{DOUBLE_EMBEDDING_DIM, DOUBLE_MODELS, OpenAiDouble, RecordedCall, double_embedding};
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use platform::{Platform, PlatformBuilder, RunningService, Service, TEST_SECRET};
pub use proxy::TcpProxy;
pub use tonic_health::pb::health_check_response::ServingStatus;

/// Postgres URL of the test database.
pub fn postgres_url() -> String {
    std::env::var("GETLOOD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Redis URL of the test server.
pub fn redis_url() -> String {
    std::env::var("GETLOOD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// NATS URL of the test server.
pub fn nats_url() -> String {
    std::env::var("GETLOOD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// MindsDB HTTP URL of the test server (`scripts/mindsdb.sh start`).
pub fn mindsdb_url() -> String {
    std::env::var("GETLOOD_TEST_MINDSDB_URL").unwrap_or_else(|_| "http://127.0.0.1:47334".to_owned())
}

/// Installs a test log subscriber once; `TEST_LOG=1` shows the services' logs, and
/// `TEST_LOG_SPANS=1` also a line with the busy and idle time of every span that closes (where
/// a request's time went, for the benches' profiles).
pub fn init_test_logging() {
    if std::env::var_os("TEST_LOG").is_some() {
        let spans = if std::env::var_os("TEST_LOG_SPANS").is_some() {
            tracing_subscriber::fmt::format::FmtSpan::CLOSE
        } else {
            tracing_subscriber::fmt::format::FmtSpan::NONE
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .with_span_events(spans)
            .with_test_writer()
            .try_init();
    }
}

/// The `getlood` binary built next to the running test or bench (`target/<profile>/getlood`,
/// from `target/<profile>/deps/<test>-<hash>`), if it has been built.
pub fn getlood_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("getlood");
    bin.exists().then_some(bin)
}

/// A command that runs `service` the way its Deployment does: `getlood <service>`.
pub fn service_command(service: &str) -> anyhow::Result<std::process::Command> {
    let bin = getlood_binary()
        .ok_or_else(|| anyhow::anyhow!("the getlood binary is missing: run `cargo build --bin getlood` first"))?;
    let mut cmd = std::process::Command::new(bin);
    cmd.arg(service);
    Ok(cmd)
}
