//! Database adapter: attaches a Postgres database (or one schema of it) to the tenant's
//! MindsDB company as an integration, so the tenant's agents can read its tables. Owned by
//! desktop-state.
//!
//! Connection settings travel as JSON through `POST /api/databases/` (no SQL text carries the
//! password). Listings use `information_schema.databases`, and are masked again here because
//! `GET /api/databases/{name}` returns the password in clear.

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{MindsdbClient, RestPath, Retry, TenantContext};
use crate::error::Result;
use crate::mask::mask_secrets;
use crate::sql::{Ident, SqlBuilder};

/// A Postgres database to attach.
#[derive(Debug, Clone)]
pub struct PostgresSpec {
    /// Integration name; tables are then `<name>.<table>`.
    pub name: Ident,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub database: String,
    /// User.
    pub user: String,
    /// Password; never returned.
    pub password: Option<SecretString>,
    /// Only this schema's tables are visible; `None` is `public`.
    pub schema: Option<String>,
}

/// An attached database, secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatabaseInfo {
    /// Integration name.
    pub name: String,
    /// Engine (`postgres`, ...; knowledge-base stores show as `duckdb_faiss`).
    pub engine: Option<String>,
    /// Connection settings with the password masked.
    pub parameters: Value,
}

/// Attaches, lists and detaches the tenant's databases.
#[derive(Debug, Clone)]
pub struct DatabaseAdapter {
    client: MindsdbClient,
}

impl DatabaseAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    /// Attaches a Postgres database; MindsDB connects to check it. `AlreadyExists` if the
    /// name is taken.
    pub async fn attach_postgres(&self, ctx: &TenantContext, spec: &PostgresSpec) -> Result<DatabaseInfo> {
        let mut params = json!({
            "host": spec.host,
            "port": spec.port,
            "database": spec.database,
            "user": spec.user,
            "password": spec.password.as_ref().map(|p| p.expose_secret().to_owned()).unwrap_or_default(),
        });
        if let Some(schema) = &spec.schema {
            params["schema"] = schema.clone().into();
        }
        let body = json!({"database": {"name": spec.name.as_str(), "engine": "postgres", "parameters": params}, "check_connection": true});
        // The trailing slash matters: without it Flask answers 308 to a GET-only redirect.
        let path = RestPath::new("/api/databases/");
        self.client.rest(ctx, "database.attach", Method::POST, &path, Some(&body), Retry::OnlyIfUnsent).await?;
        mask_secrets(&mut params);
        Ok(DatabaseInfo {
            name: spec.name.as_str().to_owned(),
            engine: Some("postgres".to_owned()),
            parameters: params,
        })
    }

    /// Data integrations of the tenant's company (not projects or system databases).
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<DatabaseInfo>> {
        let sql = SqlBuilder::new()
            .kw("SELECT NAME, ENGINE, CONNECTION_DATA FROM information_schema.databases WHERE TYPE =")
            .value("data")
            .build();
        let t = self.client.query_idempotent(ctx, "database.list", &sql).await?.into_table();
        Ok(t.rows
            .iter()
            .map(|r| {
                let mut parameters = t.cell(r, "connection_data").cloned().unwrap_or(Value::Null);
                mask_secrets(&mut parameters);
                DatabaseInfo { name: t.text(r, "name").unwrap_or_default(), engine: t.text(r, "engine"), parameters }
            })
            .collect())
    }

    /// Rows of `SELECT * FROM <db>.<table> LIMIT <limit>`: proves an attached table is readable.
    pub async fn sample(&self, ctx: &TenantContext, db: &Ident, table: &Ident, limit: u32) -> Result<crate::Table> {
        let sql = SqlBuilder::new().kw("SELECT * FROM").qualified(db, table).kw("LIMIT").int(i64::from(limit)).build();
        Ok(self.client.query_idempotent(ctx, "database.sample", &sql).await?.into_table())
    }

    /// Detaches a database (MindsDB's record only; the Postgres data is untouched).
    pub async fn detach(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP DATABASE").ident(name).build();
        self.client.query(ctx, "database.detach", &sql).await?;
        Ok(())
    }
}
