//! Shared helpers of the MindsDB integration tests. They talk to the real MindsDB 26.1 at
//! `GETLOOD_TEST_MINDSDB_URL` (default `http://127.0.0.1:47334`; `scripts/mindsdb.sh start`)
//! and to the machine's Postgres at `GETLOOD_TEST_POSTGRES_URL`.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

use getlood_common::TenantId;
use getlood_mindsdb::{MindsdbClient, MindsdbConfig, ProjectAdapter, TenantContext};

// The testkit's double and proxy are self-contained files; including them by path keeps this
// crate's tests from building every service (see the dev-dependencies comment in Cargo.toml).
#[path = "../../../../tests/kit/src/openai_double.rs"]
pub mod openai_double;
#[path = "../../../../tests/kit/src/proxy.rs"]
pub mod proxy;

pub use openai_double::OpenAiDouble;
pub use proxy::TcpProxy;

/// MindsDB under test.
pub fn mindsdb_url() -> String {
    std::env::var("GETLOOD_TEST_MINDSDB_URL").unwrap_or_else(|_| "http://127.0.0.1:47334".to_owned())
}

/// Postgres under test.
pub fn postgres_url() -> String {
    std::env::var("GETLOOD_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Config for the test MindsDB.
pub fn config() -> MindsdbConfig {
    MindsdbConfig { url: mindsdb_url(), ..MindsdbConfig::default() }
}

/// A client of the test MindsDB.
pub fn client() -> MindsdbClient {
    MindsdbClient::new(&config()).expect("client")
}

/// A fresh tenant (its own MindsDB company and project) for one test.
pub fn tenant(tag: &str) -> TenantContext {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TenantContext::new(TenantId::parse(&format!("{tag}_{}", &id[..10])).expect("tenant id"), "tester@example.com")
}

/// A fresh tenant whose project exists.
pub async fn provisioned(tag: &str) -> (MindsdbClient, TenantContext) {
    let c = client();
    let ctx = tenant(tag);
    ProjectAdapter::new(c.clone()).ensure(&ctx).await.expect("ensure project");
    (c, ctx)
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Connection to the test Postgres.
pub async fn pg() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&postgres_url()).await.expect("postgres")
}

/// (host, port, database, user) of the test Postgres, for attaching it to MindsDB.
pub fn pg_parts() -> (String, u16, String, String) {
    let url = reqwest::Url::parse(&postgres_url()).expect("postgres url");
    (
        url.host_str().unwrap_or("127.0.0.1").to_owned(),
        url.port().unwrap_or(5432),
        url.path().trim_start_matches('/').to_owned(),
        if url.username().is_empty() { "postgres".to_owned() } else { url.username().to_owned() },
    )
}
