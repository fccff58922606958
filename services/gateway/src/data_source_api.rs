//! `/api/v1/data-sources`: the tenant's own databases (PostgreSQL, MySQL, MariaDB), registered
//! with MindsDB by desktop-state's Database adapter. The data source `sales` is the MindsDB
//! database `ds_sales` (its `sql_name`): agents list `ds_sales.<table>` in `data.tables`, and
//! workflow `sql` nodes read `ds_sales.<table>`.
//!
//! The connection parameters are write-only: the body is read field by field, so even a refusal
//! names the field and never repeats a value (serde's own messages quote the offending value),
//! and no answer carries them.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use getlood_common::ApiError;
use getlood_proto::desktop_state::v1::{
    CreateDataSourceRequest, DataSource, DataSourceConnection, DataSourceEngine, DeleteDataSourceRequest,
    GetDataSourceRequest, GetDataSourceTableRequest, ListDataSourceTablesRequest, ListDataSourcesRequest,
    SampleDataSourceRowsRequest, TestDataSourceRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::ApiJson;
use crate::kb_api::bad_query;
use crate::rest::{Deleted, created};

const SERVICE: &str = "desktop-state";

/// A data source as REST shows it: never its connection.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DataSource)]
pub(crate) struct DataSourceJson {
    /// `postgres`, `mysql` or `mariadb`.
    engine: &'static str,
    /// Name: `[a-z][a-z0-9_]{0,59}`.
    name: String,
    /// The MindsDB database agents and sql nodes name: `ds_<name>`.
    sql_name: String,
}

fn engine_name(engine: i32) -> &'static str {
    match DataSourceEngine::try_from(engine) {
        Ok(DataSourceEngine::Postgres) => "postgres",
        Ok(DataSourceEngine::Mysql) => "mysql",
        Ok(DataSourceEngine::Mariadb) => "mariadb",
        _ => "unknown",
    }
}

fn ds_json(d: DataSource) -> DataSourceJson {
    DataSourceJson { engine: engine_name(d.engine), name: d.name, sql_name: d.sql_name }
}

fn missing(what: &str) -> ApiError {
    ApiError::unavailable(format!("desktop-state answered without the {what}"))
}

// The calls, shared by REST and GraphQL (`crate::graphql`).

/// The engine's name as the API spells it.
pub(crate) fn engine_label(engine: i32) -> &'static str {
    engine_name(engine)
}

/// The caller's tenant's data sources.
pub(crate) async fn list_data_sources(state: &AppState, caller: &Caller) -> Result<Vec<DataSource>, ApiError> {
    let req = caller.request(ListDataSourcesRequest {});
    Ok(unary(SERVICE, state.upstreams.desktop_state().list_data_sources(req)).await?.data_sources)
}

/// Registers the data source `body` describes (checked field by field, as REST's body).
pub(crate) async fn create_data_source(
    state: &AppState,
    caller: &Caller,
    body: &Value,
) -> Result<DataSource, ApiError> {
    let req = create_request(body)?;
    let resp = unary(SERVICE, state.upstreams.desktop_state().create_data_source(caller.request(req))).await?;
    resp.data_source.ok_or_else(|| missing("data source"))
}

/// The data source `name`.
pub(crate) async fn get_data_source(state: &AppState, caller: &Caller, name: String) -> Result<DataSource, ApiError> {
    let req = caller.request(GetDataSourceRequest { name });
    let resp = unary(SERVICE, state.upstreams.desktop_state().get_data_source(req)).await?;
    resp.data_source.ok_or_else(|| missing("data source"))
}

/// Unregisters the data source `name`.
pub(crate) async fn delete_data_source(state: &AppState, caller: &Caller, name: String) -> Result<(), ApiError> {
    let req = caller.request(DeleteDataSourceRequest { name });
    unary(SERVICE, state.upstreams.desktop_state().delete_data_source(req)).await?;
    Ok(())
}

/// Whether MindsDB can connect to `name` now, and why not.
pub(crate) async fn test_data_source(
    state: &AppState,
    caller: &Caller,
    name: String,
) -> Result<(bool, String), ApiError> {
    let req = caller.request(TestDataSourceRequest { name });
    let resp = unary(SERVICE, state.upstreams.desktop_state().test_data_source(req)).await?;
    Ok((resp.ok, resp.reason))
}

/// The tables of `name`: (name, kind).
pub(crate) async fn data_source_tables(
    state: &AppState,
    caller: &Caller,
    name: String,
) -> Result<Vec<(String, String)>, ApiError> {
    let req = caller.request(ListDataSourceTablesRequest { name });
    let resp = unary(SERVICE, state.upstreams.desktop_state().list_data_source_tables(req)).await?;
    Ok(resp.tables.into_iter().map(|t| (t.name, t.kind)).collect())
}

/// `GET /api/v1/data-sources` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DataSourceList {
    /// By name.
    data_sources: Vec<DataSourceJson>,
}

/// `POST /api/v1/data-sources/{name}/test` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DataSourceTest)]
pub(crate) struct TestJson {
    /// Whether MindsDB could connect.
    ok: bool,
    /// Why not, in general terms; empty when ok.
    reason: String,
}

/// A column of a table.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TableColumn)]
pub(crate) struct ColumnJson {
    /// Type as the database reports it.
    data_type: String,
    /// Column name.
    name: String,
}

/// A table of a data source.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DataSourceTable)]
pub(crate) struct TableJson {
    /// Columns (only on `GET .../tables/{table}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    columns: Option<Vec<ColumnJson>>,
    /// `BASE TABLE`, `VIEW`, ...
    kind: String,
    /// Table name.
    name: String,
}

/// `GET /api/v1/data-sources/{name}/tables` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DataSourceTables)]
pub(crate) struct TableList {
    /// By name.
    tables: Vec<TableJson>,
}

/// `GET /api/v1/data-sources/{name}/tables/{table}/rows` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TableRows)]
pub(crate) struct RowsJson {
    /// Column names, in order.
    columns: Vec<String>,
    /// Rows, one value per column.
    rows: Vec<Vec<Value>>,
    /// Whether a long text value was cut.
    truncated: bool,
}

/// Query of the rows route.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RowsQuery {
    /// Rows wanted, 1..=100 (default 10).
    limit: Option<u32>,
}

/// `POST /api/v1/data-sources` body, as [`create_request`] reads it field by field.
#[derive(Debug, ToSchema)]
#[schema(as = CreateDataSourceInput)]
#[allow(dead_code, reason = "schema only: the body is read field by field for precise errors")]
pub(crate) struct CreateBodySchema {
    /// `[a-z][a-z0-9_]{0,59}`.
    name: String,
    /// `postgres` (or `postgresql`), `mysql` or `mariadb`.
    engine: String,
    connection: ConnectionSchema,
}

/// The connection of a data source; the password is stored, never returned.
#[derive(Debug, ToSchema)]
#[schema(as = DataSourceConnectionInput)]
#[allow(dead_code, reason = "schema only, see CreateBodySchema")]
pub(crate) struct ConnectionSchema {
    host: Option<String>,
    /// 1..=65535.
    #[schema(minimum = 1, maximum = 65535)]
    port: Option<u32>,
    database: Option<String>,
    user: Option<String>,
    password: Option<String>,
    schema: Option<String>,
}

/// A string field of `obj`; absent is empty. The error names the field only.
fn text(obj: &Map<String, Value>, prefix: &str, field: &str) -> Result<String, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::invalid_argument(format!("{prefix}{field} must be a string"))),
    }
}

fn only_fields(obj: &Map<String, Value>, prefix: &str, allowed: &[&str]) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid_argument(format!(
            "unknown field {prefix}{}: expected one of {}",
            k.chars().take(64).collect::<String>().escape_debug(),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

/// The create body, read field by field (see the module documentation).
fn create_request(body: &Value) -> Result<CreateDataSourceRequest, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::invalid_argument("the body must be a JSON object"))?;
    only_fields(obj, "", &["name", "engine", "connection"])?;
    let name = text(obj, "", "name")?;
    if name.is_empty() {
        return Err(ApiError::invalid_argument("name is required"));
    }
    let engine = match text(obj, "", "engine")?.as_str() {
        "postgres" | "postgresql" => DataSourceEngine::Postgres,
        "mysql" => DataSourceEngine::Mysql,
        "mariadb" => DataSourceEngine::Mariadb,
        "" => return Err(ApiError::invalid_argument("engine is required: postgres, mysql or mariadb")),
        _ => return Err(ApiError::invalid_argument("engine must be postgres, mysql or mariadb")),
    };
    let c = match obj.get("connection") {
        Some(Value::Object(c)) => c,
        None | Some(Value::Null) => return Err(ApiError::invalid_argument("connection is required")),
        Some(_) => return Err(ApiError::invalid_argument("connection must be an object")),
    };
    let p = "connection.";
    only_fields(c, p, &["host", "port", "database", "user", "password", "schema"])?;
    let port = match c.get("port") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| i32::try_from(n).ok())
            .filter(|n| (1..=65535).contains(n))
            .ok_or_else(|| ApiError::invalid_argument("connection.port must be between 1 and 65535"))?,
        Some(_) => return Err(ApiError::invalid_argument("connection.port must be a number")),
    };
    Ok(CreateDataSourceRequest {
        name,
        engine: engine as i32,
        connection: Some(DataSourceConnection {
            host: text(c, p, "host")?,
            port,
            database: text(c, p, "database")?,
            user: text(c, p, "user")?,
            password: text(c, p, "password")?,
            schema: text(c, p, "schema")?,
        }),
    })
}

/// `GET /api/v1/data-sources`: the tenant's data sources, by name.
#[utoipa::path(get, path = "/api/v1/data-sources", operation_id = "list_data_sources", tag = "data-sources",
    responses((status = 200, description = "The tenant's data sources, by name", body = DataSourceList)))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<DataSourceList>, ApiError> {
    let sources = list_data_sources(&state, &caller).await?;
    Ok(Json(DataSourceList { data_sources: sources.into_iter().map(ds_json).collect() }))
}

/// `POST /api/v1/data-sources`: registers a database (201), after MindsDB connected to it.
#[utoipa::path(post, path = "/api/v1/data-sources", operation_id = "create_data_source", tag = "data-sources", request_body = CreateBodySchema,
    responses((status = 201, description = "The registered data source", body = DataSourceJson)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    Ok(created(ds_json(create_data_source(&state, &caller, &body).await?)))
}

/// `GET /api/v1/data-sources/{name}`.
#[utoipa::path(get, path = "/api/v1/data-sources/{name}", operation_id = "get_data_source", tag = "data-sources", params(("name" = String, Path, description = "The data source's name")),
    responses((status = 200, description = "The data source", body = DataSourceJson)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<DataSourceJson>, ApiError> {
    Ok(Json(ds_json(get_data_source(&state, &caller, name).await?)))
}

/// `DELETE /api/v1/data-sources/{name}`: unregisters it (the database is untouched).
#[utoipa::path(delete, path = "/api/v1/data-sources/{name}", operation_id = "delete_data_source", tag = "data-sources", params(("name" = String, Path, description = "The data source's name")),
    responses((status = 200, description = "Unregistered (`id` is its name); the database is untouched", body = Deleted)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete_data_source(&state, &caller, name.clone()).await?;
    Ok(Json(Deleted::id(name)))
}

/// `POST /api/v1/data-sources/{name}/test`: whether MindsDB can connect now.
#[utoipa::path(post, path = "/api/v1/data-sources/{name}/test", operation_id = "test_data_source", tag = "data-sources", params(("name" = String, Path, description = "The data source's name")),
    responses((status = 200, description = "Whether MindsDB can connect now", body = TestJson)))]
pub(crate) async fn test(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TestJson>, ApiError> {
    let (ok, reason) = test_data_source(&state, &caller, name).await?;
    Ok(Json(TestJson { ok, reason }))
}

/// `GET /api/v1/data-sources/{name}/tables`.
#[utoipa::path(get, path = "/api/v1/data-sources/{name}/tables", operation_id = "list_tables", tag = "data-sources", params(("name" = String, Path, description = "The data source's name")),
    responses((status = 200, description = "The data source's tables, by name", body = TableList)))]
pub(crate) async fn tables(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TableList>, ApiError> {
    let tables = data_source_tables(&state, &caller, name)
        .await?
        .into_iter()
        .map(|(name, kind)| TableJson { columns: None, kind, name })
        .collect();
    Ok(Json(TableList { tables }))
}

/// `GET /api/v1/data-sources/{name}/tables/{table}`: the table's columns.
#[utoipa::path(get, path = "/api/v1/data-sources/{name}/tables/{table}", operation_id = "get_table", tag = "data-sources", params(("name" = String, Path, description = "The data source's name"), ("table" = String, Path, description = "The table's name")),
    responses((status = 200, description = "The table with its columns", body = TableJson)))]
pub(crate) async fn table(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, table)): Path<(String, String)>,
) -> Result<Json<TableJson>, ApiError> {
    let req = caller.request(GetDataSourceTableRequest { name, table });
    let resp = unary(SERVICE, state.upstreams.desktop_state().get_data_source_table(req)).await?;
    let t = resp.table.ok_or_else(|| missing("table"))?;
    let columns = t.columns.into_iter().map(|c| ColumnJson { data_type: c.data_type, name: c.name }).collect();
    Ok(Json(TableJson { columns: Some(columns), kind: t.kind, name: t.name }))
}

/// `GET /api/v1/data-sources/{name}/tables/{table}/rows?limit=10`: the first rows.
#[utoipa::path(get, path = "/api/v1/data-sources/{name}/tables/{table}/rows", operation_id = "table_rows", tag = "data-sources", params(("name" = String, Path, description = "The data source's name"), ("table" = String, Path, description = "The table's name"), RowsQuery),
    responses((status = 200, description = "The table's first rows", body = RowsJson)))]
pub(crate) async fn rows(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, table)): Path<(String, String)>,
    query: Result<Query<RowsQuery>, QueryRejection>,
) -> Result<Json<RowsJson>, ApiError> {
    let Query(query) = query.map_err(|r| bad_query(&r))?;
    let limit = match query.limit {
        None => 0,
        Some(n @ 1..=100) => i32::try_from(n).unwrap_or(10),
        Some(_) => return Err(ApiError::invalid_argument("limit must be between 1 and 100")),
    };
    let req = caller.request(SampleDataSourceRowsRequest { name, table, limit });
    let resp = unary(SERVICE, state.upstreams.desktop_state().sample_data_source_rows(req)).await?;
    let rows =
        resp.rows.iter().map(|r| r.values.iter().map(getlood_common::structs::value_to_json).collect()).collect();
    Ok(Json(RowsJson { columns: resp.columns, rows, truncated: resp.truncated }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_body_is_read_field_by_field_and_values_are_never_repeated() {
        let ok = create_request(&json!({"name": "sales", "engine": "mariadb",
            "connection": {"host": "db", "port": 3306, "database": "shop", "user": "u", "password": "s3cret"}}))
        .unwrap();
        assert_eq!(ok.engine, DataSourceEngine::Mariadb as i32);
        assert_eq!(ok.connection.unwrap().port, 3306);
        let msg = |v: Value| create_request(&v).unwrap_err().message;
        let secret = "hunter2-secret";
        for (body, want) in [
            (json!({"name": "s", "engine": "oracle", "connection": {}}), "engine must be"),
            (json!({"name": "s", "engine": "mysql"}), "connection is required"),
            (
                json!({"name": "s", "engine": "mysql", "connection": {"password": 12345}}),
                "connection.password must be a string",
            ),
            (
                json!({"name": "s", "engine": "mysql", "connection": {"port": secret}}),
                "connection.port must be a number",
            ),
            (json!({"name": "s", "engine": "mysql", "connection": {"port": 0}}), "between 1 and 65535"),
            (json!({"name": "s", "engine": "mysql", "connection": {"pass": secret}}), "unknown field connection.pass"),
            (json!({"engine": "mysql", "connection": {}}), "name is required"),
        ] {
            let m = msg(body);
            assert!(m.contains(want), "{m}");
            assert!(!m.contains(secret) && !m.contains("12345"), "{m}");
        }
    }
}
