//! Data sources over GraphQL: the tenant's databases, through the REST routes' calls
//! (`crate::data_source_api`, whose field-by-field check of the connection applies here too) and
//! permissions; merged into the root `Query` and `Mutation`. Connection parameters are
//! write-only: no type here has a field for them.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use getlood_auth::Permission;
use getlood_proto::desktop_state::v1 as desktop;
use serde_json::{Map, Value, json};

use super::guard::{Need, caller, gql_error, state};
use super::types::{Deleted, UPSTREAM_FIELD_COST};
use crate::RouteClass;
use crate::data_source_api as api;

/// A database of the tenant registered with MindsDB.
#[derive(Debug, SimpleObject)]
pub(crate) struct DataSource {
    pub name: String,
    /// `postgres`, `mysql` or `mariadb`.
    pub engine: String,
    /// The MindsDB database name: agents and `sql` nodes read `<sqlName>.<table>`.
    pub sql_name: String,
}

impl From<desktop::DataSource> for DataSource {
    fn from(d: desktop::DataSource) -> Self {
        Self { engine: api::engine_label(d.engine).to_owned(), name: d.name, sql_name: d.sql_name }
    }
}

/// A table (or view) of a data source.
#[derive(Debug, SimpleObject)]
pub(crate) struct DataSourceTable {
    pub name: String,
    pub kind: String,
}

/// Whether MindsDB can connect now.
#[derive(Debug, SimpleObject)]
pub(crate) struct DataSourceTest {
    pub ok: bool,
    /// Why not, in fixed words; empty when `ok`.
    pub reason: String,
}

/// How MindsDB reaches the database (write-only).
#[derive(Debug, InputObject)]
pub(crate) struct DataSourceConnectionInput {
    pub host: Option<String>,
    pub port: Option<u32>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Postgres only.
    pub schema: Option<String>,
}

/// A data source to register.
#[derive(Debug, InputObject)]
pub(crate) struct DataSourceInput {
    pub name: String,
    pub engine: String,
    pub connection: DataSourceConnectionInput,
}

impl DataSourceInput {
    /// The REST body it stands for, so one check reads both.
    fn body(self) -> Value {
        let c = self.connection;
        let mut connection = Map::new();
        for (key, value) in [
            ("host", c.host.map(Value::from)),
            ("port", c.port.map(Value::from)),
            ("database", c.database.map(Value::from)),
            ("user", c.user.map(Value::from)),
            ("password", c.password.map(Value::from)),
            ("schema", c.schema.map(Value::from)),
        ] {
            if let Some(value) = value {
                connection.insert(key.to_owned(), value);
            }
        }
        json!({"name": self.name, "engine": self.engine, "connection": connection})
    }
}

/// Data-source reads.
#[derive(Debug, Default)]
pub(crate) struct DataSourceQuery;

#[Object]
impl DataSourceQuery {
    /// The tenant's data sources.
    #[graphql(
        guard = "Need::to(Permission::DataSourcesRead)",
        complexity = "UPSTREAM_FIELD_COST + 20 * child_complexity"
    )]
    async fn data_sources(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<DataSource>> {
        let sources = api::list_data_sources(state(ctx)?, caller(ctx)?).await.map_err(gql_error)?;
        Ok(sources.into_iter().map(Into::into).collect())
    }

    /// The data source `name`.
    #[graphql(guard = "Need::to(Permission::DataSourcesRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn data_source(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<DataSource> {
        Ok(api::get_data_source(state(ctx)?, caller(ctx)?, name).await.map_err(gql_error)?.into())
    }

    /// The tables of `name` (a read of the tenant's own database through MindsDB).
    #[graphql(
        guard = "Need::write(Permission::DataSourcesRead, RouteClass::Search)",
        complexity = "UPSTREAM_FIELD_COST + 50 * child_complexity"
    )]
    async fn data_source_tables(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Vec<DataSourceTable>> {
        let tables = api::data_source_tables(state(ctx)?, caller(ctx)?, name).await.map_err(gql_error)?;
        Ok(tables.into_iter().map(|(name, kind)| DataSourceTable { name, kind }).collect())
    }
}

/// Data-source writes.
#[derive(Debug, Default)]
pub(crate) struct DataSourceMutation;

#[Object]
impl DataSourceMutation {
    /// Registers a database, after MindsDB connected to it.
    #[graphql(guard = "Need::write(Permission::DataSourcesWrite, RouteClass::Write)")]
    async fn create_data_source(&self, ctx: &Context<'_>, input: DataSourceInput) -> async_graphql::Result<DataSource> {
        let source = api::create_data_source(state(ctx)?, caller(ctx)?, &input.body()).await.map_err(gql_error)?;
        Ok(source.into())
    }

    /// Unregisters `name` (the database is untouched).
    #[graphql(guard = "Need::write(Permission::DataSourcesWrite, RouteClass::Write)")]
    async fn delete_data_source(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Deleted> {
        api::delete_data_source(state(ctx)?, caller(ctx)?, name.clone()).await.map_err(gql_error)?;
        Ok(Deleted { id: name, version: None })
    }

    /// Whether MindsDB can connect to `name` now (a POST in REST: it opens a connection).
    #[graphql(guard = "Need::write(Permission::DataSourcesRead, RouteClass::Write)")]
    async fn test_data_source(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<DataSourceTest> {
        let (ok, reason) = api::test_data_source(state(ctx)?, caller(ctx)?, name).await.map_err(gql_error)?;
        Ok(DataSourceTest { ok, reason })
    }
}
