//! The tenants' data sources: their own PostgreSQL, MySQL and MariaDB databases, registered
//! with MindsDB through the Database adapter so their agents and workflows can read them.
//!
//! Naming, which agents and workflows rely on: the data source `sales` is the MindsDB database
//! `ds_sales` of the tenant's company (MindsDB's `company-id` is the tenant, from the verified
//! token). Agents list its tables as `ds_sales.<table>` in `data.tables`; workflow `sql` nodes
//! read `ds_sales.<table>` (the workflow service's `app.sql.allow` holds `ds_*` by default). The
//! prefix keeps the tenants' databases apart from the platform's own integrations of the same
//! company (`files`, `desktop`, the knowledge bases' `store_*`), which this API never lists,
//! tests or deletes.
//!
//! Connection parameters are write-only: they go to MindsDB once, as JSON, and no answer or log
//! line of this module carries them (a failed connection is described in fixed words, never with
//! the driver's text). The host passes the egress policy first (`app.egress.allow`), as an
//! agent's model URL does: MindsDB would otherwise connect wherever a tenant points it, the
//! cloud metadata address included.

use getlood_auth::Principal;
use getlood_common::egress::{EgressError, EgressPolicy};
use getlood_common::{ApiError, ErrorCode};
use getlood_mindsdb::{
    DatabaseAdapter, DatabaseEngine, DatabaseSpec, Ident, MindsdbClient, MindsdbError, ProjectAdapter, TenantContext,
};
use getlood_proto::desktop_state::v1::{
    CreateDataSourceRequest, DataSource, DataSourceColumn, DataSourceConnection, DataSourceEngine, DataSourceTable,
    SampleDataSourceRowsRequest, SampleDataSourceRowsResponse, TestDataSourceResponse,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The MindsDB database name of a data source is this prefix and its name.
pub const SQL_PREFIX: &str = "ds_";

/// Most tables a listing returns.
const MAX_TABLES: u32 = 1000;
/// Most rows one sample returns.
const MAX_SAMPLE_ROWS: i32 = 100;
/// Longest text value of a sample, in characters; longer ones are cut.
const MAX_CELL_CHARS: usize = 2000;
/// Bytes of sampled text after which no further row is added.
const MAX_SAMPLE_BYTES: usize = 1024 * 1024;

/// Settings of the data sources (`GETLOOD_DESKTOP_STATE_APP__DATA_SOURCES__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSourceSettings {
    /// Data sources one tenant may register.
    pub max_per_tenant: usize,
}

impl Default for DataSourceSettings {
    fn default() -> Self {
        Self { max_per_tenant: 20 }
    }
}

/// The tenants' data sources.
#[derive(Clone)]
pub struct DataSources {
    databases: DatabaseAdapter,
    projects: ProjectAdapter,
    egress: EgressPolicy,
    max_per_tenant: usize,
}

fn ctx(p: &Principal) -> TenantContext {
    TenantContext::new(p.tenant.clone(), p.user.clone())
}

fn engine_to_proto(engine: DatabaseEngine) -> DataSourceEngine {
    match engine {
        DatabaseEngine::Postgres => DataSourceEngine::Postgres,
        DatabaseEngine::Mysql => DataSourceEngine::Mysql,
        DatabaseEngine::Mariadb => DataSourceEngine::Mariadb,
    }
}

fn data_source(name: &str, engine: DatabaseEngine) -> DataSource {
    DataSource {
        name: name.to_owned(),
        engine: engine_to_proto(engine) as i32,
        sql_name: format!("{SQL_PREFIX}{name}"),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect::<String>().escape_debug().to_string()
}

/// The MindsDB database of the data source `name`, if `name` is a valid data source name:
/// `[a-z][a-z0-9_]{0,59}`, so that `ds_<name>` is a MindsDB identifier.
fn sql_name(name: &str) -> Result<Ident, ApiError> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 60
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(ApiError::invalid_argument(format!(
            "data source name '{}' is invalid: use 1-60 characters of [a-z0-9_], starting with a letter",
            truncate(name)
        )));
    }
    Ident::new(&format!("{SQL_PREFIX}{name}")).map_err(ApiError::from)
}

fn table_name(table: &str) -> Result<Ident, ApiError> {
    Ident::new(table).map_err(|_| {
        ApiError::invalid_argument(format!(
            "table name '{}' is invalid: use [a-z_][a-z0-9_]{{0,62}} (the names agents and sql nodes can use)",
            truncate(table)
        ))
    })
}

/// A text field of the connection: required unless `optional`, at most `max` characters, no
/// control characters. The error names the field, never its value.
fn text_field(field: &str, value: &str, max: usize, optional: bool) -> Result<(), ApiError> {
    if value.is_empty() && !optional {
        return Err(ApiError::invalid_argument(format!("connection.{field} is required")));
    }
    if value.chars().count() > max {
        return Err(ApiError::invalid_argument(format!("connection.{field} is longer than {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_argument(format!("connection.{field} contains control characters")));
    }
    Ok(())
}

impl DataSources {
    /// Data sources on `client`, their hosts checked by `egress`.
    pub fn new(client: MindsdbClient, egress: EgressPolicy, settings: &DataSourceSettings) -> Self {
        Self {
            databases: DatabaseAdapter::new(client.clone()),
            projects: ProjectAdapter::new(client),
            egress,
            max_per_tenant: settings.max_per_tenant,
        }
    }

    /// Checks the host against the egress policy; the message says what kind of address it is,
    /// without repeating it.
    fn check_host(&self, host: &str) -> Result<(), ApiError> {
        text_field("host", host, 253, false)?;
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let shape = bare.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
        if !shape {
            return Err(ApiError::invalid_argument(
                "connection.host must be a host name or an IP address (letters, digits, '.', '-', ':'), \
                 without scheme, port or path",
            ));
        }
        // The policy judges URLs; the host is put in one as MindsDB's driver will read it (a
        // decimal or hex IPv4 is the address it names).
        let url = if bare.contains(':') { format!("http://[{bare}]/") } else { format!("http://{bare}/") };
        self.egress.check_url(&url).map_err(|e| match e {
            EgressError::Refused { kind, .. } => ApiError::invalid_argument(format!(
                "connection.host is {kind} address, which MindsDB may not connect to; allow it with app.egress.allow"
            )),
            _ => ApiError::invalid_argument("connection.host is not a valid host name or IP address"),
        })
    }

    /// The whole create request checked, as the spec to attach.
    fn spec(&self, req: &CreateDataSourceRequest) -> Result<DatabaseSpec, ApiError> {
        let name = sql_name(&req.name)?;
        let engine = match DataSourceEngine::try_from(req.engine) {
            Ok(DataSourceEngine::Postgres) => DatabaseEngine::Postgres,
            Ok(DataSourceEngine::Mysql) => DatabaseEngine::Mysql,
            Ok(DataSourceEngine::Mariadb) => DatabaseEngine::Mariadb,
            _ => return Err(ApiError::invalid_argument("engine must be postgres, mysql or mariadb")),
        };
        let c: &DataSourceConnection =
            req.connection.as_ref().ok_or_else(|| ApiError::invalid_argument("connection is required"))?;
        self.check_host(&c.host)?;
        let port = match c.port {
            0 if engine == DatabaseEngine::Postgres => 5432,
            0 => 3306,
            p => u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::invalid_argument("connection.port must be between 1 and 65535"))?,
        };
        text_field("database", &c.database, 128, false)?;
        text_field("user", &c.user, 128, false)?;
        text_field("password", &c.password, 512, true)?;
        // The MySQL handler refuses to connect without one (its settings check, before any try).
        if engine != DatabaseEngine::Postgres && c.password.is_empty() {
            return Err(ApiError::invalid_argument(format!("connection.password is required for {}", engine.as_str())));
        }
        let schema = match (engine, c.schema.as_str()) {
            (_, "") => None,
            (DatabaseEngine::Postgres, s) => {
                let mut b = s.bytes();
                let ok = matches!(b.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
                    && s.len() <= 63
                    && b.all(|c| c.is_ascii_alphanumeric() || c == b'_');
                if !ok {
                    return Err(ApiError::invalid_argument(
                        "connection.schema must be a schema name: [A-Za-z_][A-Za-z0-9_]{0,62}",
                    ));
                }
                Some(s.to_owned())
            }
            (_, _) => {
                return Err(ApiError::invalid_argument(format!(
                    "connection.schema is for postgres only: a {} database is its own schema",
                    engine.as_str()
                )));
            }
        };
        Ok(DatabaseSpec {
            name,
            engine,
            host: c.host.clone(),
            port,
            database: c.database.clone(),
            user: c.user.clone(),
            password: Some(SecretString::from(c.password.clone())).filter(|_| !c.password.is_empty()),
            schema,
        })
    }

    /// The tenant's data sources: `(name without the prefix, engine)`, by name.
    async fn own(&self, ctx: &TenantContext) -> Result<Vec<(String, DatabaseEngine)>, ApiError> {
        let all = match self.databases.list(ctx).await {
            Ok(all) => all,
            // A company MindsDB has never seen has no databases.
            Err(MindsdbError::NotFound(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        let mut own: Vec<(String, DatabaseEngine)> = all
            .into_iter()
            .filter_map(|db| {
                let name = db.name.strip_prefix(SQL_PREFIX)?.to_owned();
                let engine = DatabaseEngine::from_handler(db.engine.as_deref()?)?;
                Some((name, engine))
            })
            .collect();
        own.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(own)
    }

    /// The data source `name` of the caller's tenant, or NOT_FOUND.
    async fn find(&self, ctx: &TenantContext, name: &str) -> Result<(Ident, DatabaseEngine), ApiError> {
        let sql = sql_name(name)?;
        self.own(ctx)
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, engine)| (sql, engine))
            .ok_or_else(|| ApiError::not_found(format!("data source '{name}' not found")))
    }

    /// Registers a data source (MindsDB connects to it first).
    pub async fn create(&self, p: &Principal, req: &CreateDataSourceRequest) -> Result<DataSource, ApiError> {
        let spec = self.spec(req)?;
        let ctx = ctx(p);
        let own = self.own(&ctx).await?;
        if own.iter().any(|(n, _)| *n == req.name) {
            return Err(ApiError::new(ErrorCode::AlreadyExists, format!("data source '{}' already exists", req.name)));
        }
        if own.len() >= self.max_per_tenant {
            return Err(ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("the tenant already has {} data sources, the most allowed", self.max_per_tenant),
            ));
        }
        self.projects.ensure(&ctx).await?;
        match self.databases.attach(&ctx, &spec).await {
            Ok(_) => {}
            Err(MindsdbError::AlreadyExists(_)) => {
                return Err(ApiError::new(
                    ErrorCode::AlreadyExists,
                    format!("data source '{}' already exists", req.name),
                ));
            }
            Err(MindsdbError::ConnectionFailed(reason)) => {
                return Err(ApiError::invalid_argument(format!(
                    "data source '{}': cannot connect to the database: {reason}; nothing was registered",
                    req.name
                )));
            }
            Err(err) => return Err(err.into()),
        }
        tracing::info!(tenant = %ctx.tenant, user = %ctx.user, data_source = %req.name, engine = spec.engine.as_str(), "data source registered");
        Ok(data_source(&req.name, spec.engine))
    }

    /// The caller's tenant data sources, by name.
    pub async fn list(&self, p: &Principal) -> Result<Vec<DataSource>, ApiError> {
        Ok(self.own(&ctx(p)).await?.into_iter().map(|(n, e)| data_source(&n, e)).collect())
    }

    /// One data source.
    pub async fn get(&self, p: &Principal, name: &str) -> Result<DataSource, ApiError> {
        let (_, engine) = self.find(&ctx(p), name).await?;
        Ok(data_source(name, engine))
    }

    /// Unregisters a data source.
    pub async fn delete(&self, p: &Principal, name: &str) -> Result<(), ApiError> {
        let ctx = ctx(p);
        let (sql, _) = self.find(&ctx, name).await?;
        match self.databases.detach(&ctx, &sql).await {
            Ok(()) => {}
            Err(MindsdbError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("data source '{name}' not found")));
            }
            Err(err) => return Err(err.into()),
        }
        tracing::info!(tenant = %ctx.tenant, user = %ctx.user, data_source = %name, "data source deleted");
        Ok(())
    }

    /// Connects now.
    pub async fn test(&self, p: &Principal, name: &str) -> Result<TestDataSourceResponse, ApiError> {
        let ctx = ctx(p);
        let (sql, _) = self.find(&ctx, name).await?;
        let check = self.databases.check(&ctx, &sql).await?;
        Ok(TestDataSourceResponse { ok: check.ok, reason: check.reason })
    }

    /// Its tables, by name.
    pub async fn tables(&self, p: &Principal, name: &str) -> Result<Vec<DataSourceTable>, ApiError> {
        let ctx = ctx(p);
        let (sql, _) = self.find(&ctx, name).await?;
        let tables = self.databases.tables(&ctx, &sql, MAX_TABLES).await?;
        Ok(tables.into_iter().map(|t| DataSourceTable { name: t.name, kind: t.kind, columns: Vec::new() }).collect())
    }

    /// One table with its columns.
    pub async fn table(&self, p: &Principal, name: &str, table: &str) -> Result<DataSourceTable, ApiError> {
        let ctx = ctx(p);
        let table = table_name(table)?;
        let (sql, _) = self.find(&ctx, name).await?;
        let columns = match self.databases.columns(&ctx, &sql, &table).await {
            Ok(columns) => columns,
            Err(MindsdbError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("table '{table}' not found in data source '{name}'")));
            }
            Err(err) => return Err(err.into()),
        };
        let kind = self
            .databases
            .tables(&ctx, &sql, MAX_TABLES)
            .await?
            .into_iter()
            .find(|t| t.name == table.as_str())
            .map(|t| t.kind)
            .unwrap_or_default();
        Ok(DataSourceTable {
            name: table.as_str().to_owned(),
            kind,
            columns: columns.into_iter().map(|c| DataSourceColumn { name: c.name, data_type: c.data_type }).collect(),
        })
    }

    /// The first rows of a table.
    pub async fn sample(
        &self,
        p: &Principal,
        req: &SampleDataSourceRowsRequest,
    ) -> Result<SampleDataSourceRowsResponse, ApiError> {
        let table = table_name(&req.table)?;
        let limit = match req.limit {
            0 => 10,
            n @ 1..=MAX_SAMPLE_ROWS => u32::try_from(n).unwrap_or(10),
            _ => return Err(ApiError::invalid_argument(format!("limit must be between 1 and {MAX_SAMPLE_ROWS}"))),
        };
        let ctx = ctx(p);
        let (sql, _) = self.find(&ctx, &req.name).await?;
        let t = match self.databases.sample(&ctx, &sql, &table, limit).await {
            Ok(t) => t,
            Err(MindsdbError::NotFound(_)) => {
                return Err(ApiError::not_found(format!("table '{table}' not found in data source '{}'", req.name)));
            }
            Err(err) => return Err(err.into()),
        };
        let mut truncated = false;
        let mut bytes = 0usize;
        let mut rows = Vec::with_capacity(t.rows.len());
        for row in t.rows {
            if bytes > MAX_SAMPLE_BYTES {
                truncated = true;
                break;
            }
            let values = row
                .into_iter()
                .map(|cell| {
                    let cell = match cell {
                        Value::String(s) if s.chars().count() > MAX_CELL_CHARS => {
                            truncated = true;
                            Value::String(s.chars().take(MAX_CELL_CHARS).collect())
                        }
                        other => other,
                    };
                    bytes += cell.as_str().map_or(16, str::len);
                    getlood_common::structs::json_to_value(&cell)
                })
                .collect();
            rows.push(prost_types::ListValue { values });
        }
        Ok(SampleDataSourceRowsResponse { columns: t.columns, rows, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use getlood_common::egress::EgressConfig;

    fn sources(allow: &[&str]) -> DataSources {
        let client = MindsdbClient::new(&getlood_mindsdb::MindsdbConfig::default()).unwrap();
        let egress =
            EgressPolicy::new(&EgressConfig { allow: allow.iter().map(|s| (*s).to_owned()).collect() }).unwrap();
        DataSources::new(client, egress, &DataSourceSettings::default())
    }

    fn req(engine: DataSourceEngine, host: &str, password: &str) -> CreateDataSourceRequest {
        CreateDataSourceRequest {
            name: "sales".into(),
            engine: engine as i32,
            connection: Some(DataSourceConnection {
                host: host.into(),
                port: 0,
                database: "shop".into(),
                user: "reader".into(),
                password: password.into(),
                schema: String::new(),
            }),
        }
    }

    #[test]
    fn names_map_to_ds_databases() {
        assert_eq!(sql_name("sales").unwrap().as_str(), "ds_sales");
        for bad in ["", "Sales", "_s", "1s", "s-a", &"s".repeat(61)] {
            assert!(sql_name(bad).unwrap_err().message.contains("is invalid"), "{bad}");
        }
    }

    #[test]
    fn hosts_pass_the_egress_policy_and_are_never_repeated() {
        let s = sources(&[]);
        let spec = s.spec(&req(DataSourceEngine::Postgres, "db.example.com", "")).unwrap();
        assert_eq!((spec.port, spec.name.as_str()), (5432, "ds_sales"));
        for host in ["169.254.169.254", "2852039166", "127.0.0.1", "10.0.0.8", "::1", "[::ffff:169.254.169.254]"] {
            let err = s.spec(&req(DataSourceEngine::Postgres, host, "")).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument, "{host}");
            assert!(err.message.starts_with("connection.host is a"), "{host}: {}", err.message);
            assert!(!err.message.contains(host.trim_matches(['[', ']'])), "{host}: {}", err.message);
        }
        for host in ["http://x", "a b", "x/y", "u@h", ""] {
            assert!(s.spec(&req(DataSourceEngine::Postgres, host, "")).is_err(), "{host}");
        }
        // The development allow-list lets loopback through.
        let dev = sources(&["127.0.0.0/8"]);
        assert!(dev.spec(&req(DataSourceEngine::Mariadb, "127.0.0.1", "pw")).is_ok());
    }

    #[test]
    fn connection_fields_are_checked() {
        let s = sources(&[]);
        let msg = |r: CreateDataSourceRequest| s.spec(&r).unwrap_err().message;
        assert_eq!(
            msg(req(DataSourceEngine::Unspecified, "h.example", "")),
            "engine must be postgres, mysql or mariadb"
        );
        assert_eq!(msg(req(DataSourceEngine::Mysql, "h.example", "")), "connection.password is required for mysql");
        let mut r = req(DataSourceEngine::Postgres, "h.example", "");
        r.connection.as_mut().unwrap().port = 70_000;
        assert!(msg(r).contains("port"));
        let mut r = req(DataSourceEngine::Mysql, "h.example", "pw");
        r.connection.as_mut().unwrap().schema = "public".into();
        assert!(msg(r).contains("postgres only"));
        let mut r = req(DataSourceEngine::Postgres, "h.example", "");
        r.connection.as_mut().unwrap().user = "a\nb".into();
        assert!(msg(r).contains("connection.user contains control characters"));
        let r = CreateDataSourceRequest { connection: None, ..req(DataSourceEngine::Postgres, "h", "") };
        assert_eq!(msg(r), "connection is required");
    }
}
