//! Database adapter: attaches a database (PostgreSQL, MySQL or MariaDB) to the tenant's
//! MindsDB company as an integration, so the tenant's agents and workflows can read its tables.
//! Owned by desktop-state (its windows view, and the tenants' registered data sources).
//!
//! Connection settings travel as JSON through `POST /api/databases/` (no SQL text carries the
//! password). Listings use `information_schema.databases`, and are masked again here because
//! `GET /api/databases/{name}` returns the password in clear.
//!
//! MindsDB 26.1 answers a failed connection check with HTTP 200 and
//! `{"status": "connection_error", "detail": ...}`, without creating anything; the adapter turns
//! that into an error whose message says why in words of its own (the driver's text names the
//! host and user, and is not shown).

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::{Value, json};

use crate::client::{MindsdbClient, RestPath, Retry, TenantContext};
use crate::error::{MindsdbError, Result};
use crate::mask::mask_secrets;
use crate::sql::{Ident, SqlBuilder};

/// The MindsDB handler a database is read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseEngine {
    /// PostgreSQL (`postgres` handler, psycopg; in every MindsDB install).
    Postgres,
    /// MySQL (`mysql` handler, needs `mysql-connector-python`: `mindsdb[mysql]`).
    Mysql,
    /// MariaDB (`mariadb` handler, the MySQL one under another name).
    Mariadb,
}

impl DatabaseEngine {
    /// MindsDB's handler name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Mysql => "mysql",
            Self::Mariadb => "mariadb",
        }
    }

    /// The engine of a handler name, if it is one of these.
    pub fn from_handler(name: &str) -> Option<Self> {
        match name {
            "postgres" => Some(Self::Postgres),
            "mysql" => Some(Self::Mysql),
            "mariadb" => Some(Self::Mariadb),
            _ => None,
        }
    }
}

/// A database to attach.
#[derive(Debug, Clone)]
pub struct DatabaseSpec {
    /// Integration name; tables are then `<name>.<table>`.
    pub name: Ident,
    /// Handler.
    pub engine: DatabaseEngine,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database.
    pub database: String,
    /// User.
    pub user: String,
    /// Password; never returned. The MySQL and MariaDB handlers refuse an empty one.
    pub password: Option<SecretString>,
    /// PostgreSQL only: only this schema's tables are visible; `None` is `public`.
    pub schema: Option<String>,
}

/// A Postgres database to attach ([`DatabaseSpec`] with the engine fixed).
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

impl From<&PostgresSpec> for DatabaseSpec {
    fn from(pg: &PostgresSpec) -> Self {
        Self {
            name: pg.name.clone(),
            engine: DatabaseEngine::Postgres,
            host: pg.host.clone(),
            port: pg.port,
            database: pg.database.clone(),
            user: pg.user.clone(),
            password: pg.password.clone(),
            schema: pg.schema.clone(),
        }
    }
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

/// The outcome of a connection check of an attached database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionCheck {
    /// Whether MindsDB could connect.
    pub ok: bool,
    /// Why not, in the adapter's words (see [`connection_reason`]); empty when `ok`.
    pub reason: String,
}

/// A table (or view) of an attached database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Table name as the database spells it.
    pub name: String,
    /// `BASE TABLE`, `VIEW`, ... as the database reports it.
    pub kind: String,
}

/// A column of a table of an attached database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Type as the database reports it (`int`, `varchar`, ...).
    pub data_type: String,
}

/// Attaches, checks, reads and detaches the tenant's databases.
#[derive(Debug, Clone)]
pub struct DatabaseAdapter {
    client: MindsdbClient,
}

impl DatabaseAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    /// Attaches a Postgres database ([`DatabaseAdapter::attach`]).
    pub async fn attach_postgres(&self, ctx: &TenantContext, spec: &PostgresSpec) -> Result<DatabaseInfo> {
        self.attach(ctx, &DatabaseSpec::from(spec)).await
    }

    /// Attaches a database; MindsDB connects to check it first and creates nothing when it
    /// cannot. Errors: `AlreadyExists` if the name is taken, `InvalidArgument` when the check
    /// fails (the message says why: refused, unknown host, bad credentials...), `Unsupported`
    /// when this MindsDB lacks the engine's handler.
    pub async fn attach(&self, ctx: &TenantContext, spec: &DatabaseSpec) -> Result<DatabaseInfo> {
        let mut params = json!({
            "host": spec.host,
            "port": spec.port,
            "database": spec.database,
            "user": spec.user,
            "password": spec.password.as_ref().map(|p| p.expose_secret().to_owned()).unwrap_or_default(),
        });
        if let (DatabaseEngine::Postgres, Some(schema)) = (spec.engine, &spec.schema) {
            params["schema"] = schema.clone().into();
        }
        let body = json!({
            "database": {"name": spec.name.as_str(), "engine": spec.engine.as_str(), "parameters": params},
            "check_connection": true,
        });
        // The trailing slash matters: without it Flask answers 308 to a GET-only redirect.
        let path = RestPath::new("/api/databases/");
        let answer =
            self.client.rest(ctx, "database.attach", Method::POST, &path, Some(&body), Retry::OnlyIfUnsent).await?;
        if let Some(detail) = connection_error(&answer) {
            return Err(check_failure(spec.engine, detail));
        }
        mask_secrets(&mut params);
        Ok(DatabaseInfo {
            name: spec.name.as_str().to_owned(),
            engine: Some(spec.engine.as_str().to_owned()),
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

    /// Connects to an attached database now; `NotFound` if it is not attached. A failed
    /// connection is an answer (`ok: false`), not an error.
    pub async fn check(&self, ctx: &TenantContext, name: &Ident) -> Result<ConnectionCheck> {
        let path = RestPath::new("/api/databases").id(name).fixed("?check_connection=true");
        let v = self.client.rest(ctx, "database.check", Method::GET, &path, None, Retry::Idempotent).await?;
        // The answer also carries `connection_data` in clear: only the status is read.
        let status = v.get("connection_status").cloned().unwrap_or(Value::Null);
        if status.get("success").and_then(Value::as_bool) == Some(true) {
            return Ok(ConnectionCheck { ok: true, reason: String::new() });
        }
        let detail = status.get("error_message").and_then(Value::as_str).unwrap_or_default();
        Ok(ConnectionCheck { ok: false, reason: connection_reason(detail).to_owned() })
    }

    /// The tables and views of an attached database, at most `limit`, by name.
    pub async fn tables(&self, ctx: &TenantContext, db: &Ident, limit: u32) -> Result<Vec<TableInfo>> {
        let sql = SqlBuilder::new()
            .kw("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.tables WHERE TABLE_SCHEMA =")
            .value(db.as_str())
            .build();
        let t = self.client.query_idempotent(ctx, "database.tables", &sql).await?.into_table();
        let mut tables: Vec<TableInfo> = t
            .rows
            .iter()
            .filter_map(|r| {
                Some(TableInfo { name: t.text(r, "table_name")?, kind: t.text(r, "table_type").unwrap_or_default() })
            })
            .collect();
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        tables.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(tables)
    }

    /// The columns of one table of an attached database, in the table's order; `NotFound`
    /// when the table does not exist there.
    pub async fn columns(&self, ctx: &TenantContext, db: &Ident, table: &Ident) -> Result<Vec<ColumnInfo>> {
        let sql = SqlBuilder::new()
            .kw("SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.columns WHERE TABLE_SCHEMA =")
            .value(db.as_str())
            .kw("AND TABLE_NAME =")
            .value(table.as_str())
            .build();
        let t = self.client.query_idempotent(ctx, "database.columns", &sql).await?.into_table();
        let columns: Vec<ColumnInfo> = t
            .rows
            .iter()
            .filter_map(|r| {
                Some(ColumnInfo {
                    name: t.text(r, "column_name")?,
                    data_type: t.text(r, "data_type").unwrap_or_default(),
                })
            })
            .collect();
        if columns.is_empty() {
            return Err(MindsdbError::NotFound(format!("table '{table}' not found in '{db}'")));
        }
        Ok(columns)
    }

    /// Rows of `SELECT * FROM <db>.<table> LIMIT <limit>`: proves an attached table is readable.
    pub async fn sample(&self, ctx: &TenantContext, db: &Ident, table: &Ident, limit: u32) -> Result<crate::Table> {
        let sql = SqlBuilder::new().kw("SELECT * FROM").qualified(db, table).kw("LIMIT").int(i64::from(limit)).build();
        Ok(self.client.query_idempotent(ctx, "database.sample", &sql).await?.into_table())
    }

    /// Detaches a database (MindsDB's record only; the data is untouched).
    pub async fn detach(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP DATABASE").ident(name).build();
        self.client.query(ctx, "database.detach", &sql).await?;
        Ok(())
    }
}

/// The driver's text of a `{"status": "connection_error"}` answer (`redirect_required`, an
/// OAuth flow, counts as one too: these engines never need it).
fn connection_error(answer: &Value) -> Option<&str> {
    match answer.get("status").and_then(Value::as_str) {
        Some("connection_error" | "redirect_required") => {
            Some(answer.get("detail").and_then(Value::as_str).unwrap_or_default())
        }
        _ => None,
    }
}

fn check_failure(engine: DatabaseEngine, detail: &str) -> MindsdbError {
    // "Handler 'mysql' cannot be imported: No module named 'mysql'" (26.1 without the extra).
    if detail.to_ascii_lowercase().contains("cannot be imported") {
        return MindsdbError::Unsupported(format!(
            "this MindsDB cannot use the {} handler (install mindsdb[mysql] next to it and restart it)",
            engine.as_str()
        ));
    }
    tracing::debug!(engine = engine.as_str(), detail, "database connection check failed");
    MindsdbError::ConnectionFailed(connection_reason(detail))
}

/// Why a connection failed, in fixed words chosen from the driver's message (psycopg's or
/// mysql-connector's), which itself is never shown: it quotes the host and user, and a hostile
/// server could put anything in it.
pub fn connection_reason(detail: &str) -> &'static str {
    let d = detail.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| d.contains(n));
    if has(&["password authentication failed", "access denied", "authentication failed", "no password supplied"]) {
        "the server refused the user name or password"
    } else if has(&[
        "could not translate host name",
        "name or service not known",
        "unknown host",
        "(2005)",
        "nodename nor servname",
        "temporary failure in name resolution",
    ]) {
        "the host name does not resolve"
    } else if has(&["timeout expired", "timed out", "timeout"]) {
        "the connection timed out"
    } else if has(&[
        "connection refused",
        "can't connect",
        "could not connect",
        "(2003)",
        "network is unreachable",
        "no route to host",
    ]) {
        "nothing accepts connections at that host and port"
    } else if has(&["unknown database", "database \"", "does not exist"]) {
        "the database does not exist on that server"
    } else if has(&["ssl", "tls"]) {
        "the TLS negotiation failed"
    } else {
        "the server could not be reached or refused the connection"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_messages_become_fixed_reasons() {
        let cases = [
            ("1045 (28000): Access denied for user 'u'@'127.0.0.1' (using password: YES)", "user name or password"),
            (
                "connection to server at \"h\" (1.2.3.4), port 5432 failed: FATAL:  password authentication failed for user \"u\"",
                "user name or password",
            ),
            ("2003 (HY000): Can't connect to MySQL server on '127.0.0.1:9' (111)", "nothing accepts"),
            ("connection to server at \"127.0.0.1\", port 9 failed: Connection refused", "nothing accepts"),
            ("could not translate host name \"nope.invalid\" to address", "does not resolve"),
            ("1049 (42000): Unknown database 'nope'", "does not exist"),
            ("FATAL:  database \"nope\" does not exist", "does not exist"),
            ("timeout expired", "timed out"),
            ("", "could not be reached"),
        ];
        for (detail, want) in cases {
            assert!(connection_reason(detail).contains(want), "{detail}: {}", connection_reason(detail));
        }
    }

    #[test]
    fn a_missing_handler_is_unsupported_and_the_rest_invalid() {
        let e = check_failure(DatabaseEngine::Mysql, "Handler 'mysql' cannot be imported: No module named 'mysql'");
        assert_eq!(e.code(), getlood_common::ErrorCode::Unimplemented);
        let e = check_failure(DatabaseEngine::Postgres, "password authentication failed for user \"sneaky\"");
        assert_eq!(e.code(), getlood_common::ErrorCode::InvalidArgument);
        assert!(!e.public_message().contains("sneaky"));
        assert_eq!(connection_error(&json!({"status": "connection_error", "detail": "x"})), Some("x"));
        assert_eq!(connection_error(&json!({"name": "ds", "id": 3})), None);
    }
}
