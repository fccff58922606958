//! Makes each tenant's windows readable by that tenant's MindsDB agents, and by nobody else's.
//!
//! Per tenant, in Postgres: a schema and a login role of the same name (`dsk_<tenant>_<service
//! schema>`), and in that schema a `security_barrier` view `windows` over this service's
//! `windows_state`, filtered on the tenant. The role may read that view and nothing else (the
//! view runs with its owner's rights, so the role needs no access to the base table). In
//! MindsDB, the schema is attached through the Database adapter as the integration
//! `app.agent_tables.integration` (default `desktop`) of the tenant's company, logging in as the
//! tenant's role: agents query `SELECT * FROM desktop.windows`. Because the integration's own
//! credentials can read only that view, even a hand-written query naming another schema gets
//! nothing from another tenant.
//!
//! Provisioning runs in the background when a tenant creates a desktop and it is not attached
//! yet, and at start for tenants whose attach failed; it never fails the user's request.

use std::collections::HashSet;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use getlood_auth::TenantId;
use getlood_mindsdb::{
    DatabaseAdapter, Ident, MindsdbClient, MindsdbError, PostgresSpec, ProjectAdapter, TenantContext,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgPool};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The view agents read.
pub const VIEW: &str = "windows";

/// Settings of the MindsDB tables (`GETLOOD_DESKTOP_STATE_APP__AGENT_TABLES__*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentTablesSettings {
    /// Provision the tables at all (needs a Postgres user allowed to create roles).
    pub enabled: bool,
    /// Name of the integration in each tenant's MindsDB company.
    pub integration: String,
    /// Postgres host as MindsDB reaches it; unset: the host of `postgres.url`.
    pub postgres_host: Option<String>,
    /// Postgres port as MindsDB reaches it; unset: the port of `postgres.url`.
    pub postgres_port: Option<u16>,
    /// Database as MindsDB reaches it; unset: the database of `postgres.url`.
    pub postgres_database: Option<String>,
}

impl Default for AgentTablesSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            integration: "desktop".to_owned(),
            postgres_host: None,
            postgres_port: None,
            postgres_database: None,
        }
    }
}

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// Postgres refused a statement (often: the service's user may not create roles).
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// A name could not be made safe.
    #[error("invalid name: {0}")]
    Name(String),
    /// MindsDB refused or is unreachable.
    #[error("mindsdb: {0}")]
    Mindsdb(#[from] MindsdbError),
}

/// Where MindsDB finds Postgres.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    database: String,
}

/// Provisions tenants' MindsDB tables.
#[derive(Clone)]
pub struct AgentTables {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    service_schema: String,
    integration: Ident,
    target: Target,
    databases: DatabaseAdapter,
    projects: ProjectAdapter,
    /// Tenants attached, or being attached right now.
    known: Mutex<HashSet<String>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl AgentTables {
    /// Builds the provisioner; `None` when disabled.
    pub fn new(
        settings: &AgentTablesSettings,
        postgres_url: &str,
        service_schema: &str,
        pool: PgPool,
        mindsdb: MindsdbClient,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Option<Self>, TablesError> {
        if !settings.enabled {
            return Ok(None);
        }
        let options = PgConnectOptions::from_str(postgres_url)?;
        let target = Target {
            host: settings.postgres_host.clone().unwrap_or_else(|| options.get_host().to_owned()),
            port: settings.postgres_port.unwrap_or_else(|| options.get_port()),
            database: settings
                .postgres_database
                .clone()
                .or_else(|| options.get_database().map(str::to_owned))
                .unwrap_or_else(|| "postgres".to_owned()),
        };
        let integration = Ident::new(&settings.integration).map_err(|e| TablesError::Name(e.to_string()))?;
        Ok(Some(Self {
            inner: Arc::new(Inner {
                pool,
                service_schema: service_schema.to_owned(),
                integration,
                target,
                databases: DatabaseAdapter::new(mindsdb.clone()),
                projects: ProjectAdapter::new(mindsdb),
                known: Mutex::new(HashSet::new()),
                tracker,
                shutdown,
            }),
        }))
    }

    /// Provisions `tenant` in the background unless it is attached or being attached.
    pub fn ensure_in_background(&self, tenant: &TenantId) {
        {
            let mut known = self.inner.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !known.insert(tenant.as_str().to_owned()) {
                return;
            }
        }
        let this = self.clone();
        let tenant = tenant.clone();
        self.inner.tracker.spawn(async move {
            let outcome = tokio::select! {
                () = this.inner.shutdown.cancelled() => return,
                outcome = this.ensure(&tenant) => outcome,
            };
            if let Err(err) = outcome {
                tracing::warn!(tenant = %tenant, error = %err, "mindsdb tables not provisioned; retrying on the tenant's next desktop");
                this.inner.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(tenant.as_str());
            }
        });
    }

    /// Retries, in the background, every tenant whose attach has not succeeded yet.
    pub fn resume_in_background(&self) {
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let rows: Result<Vec<(String,)>, _> =
                sqlx::query_as("SELECT tenant_id FROM agent_tables WHERE attached_at IS NULL")
                    .fetch_all(&this.inner.pool)
                    .await;
            match rows {
                Ok(rows) => {
                    for (tenant,) in rows {
                        if let Ok(tenant) = TenantId::parse(&tenant) {
                            this.ensure_in_background(&tenant);
                        }
                    }
                }
                Err(err) => tracing::debug!(error = %err, "cannot list unattached tenants yet"),
            }
        });
    }

    /// The schema and role of `tenant`: readable, ending in the service schema's name.
    pub fn schema_name(&self, tenant: &TenantId) -> String {
        schema_name(tenant, &self.inner.service_schema)
    }

    /// Creates `tenant`'s schema, role and view, and attaches them to MindsDB. Idempotent;
    /// replicas serialize on an advisory lock per tenant.
    pub async fn ensure(&self, tenant: &TenantId) -> Result<(), TablesError> {
        let inner = &self.inner;
        let mut conn = inner.pool.acquire().await?;
        let lock_key = format!("getlood.desktop_state.agent_tables.{}.{tenant}", inner.service_schema);
        sqlx::query("SELECT pg_advisory_lock(hashtext($1))").bind(&lock_key).execute(&mut *conn).await?;
        let outcome = self.ensure_locked(&mut conn, tenant).await;
        // Release even after a failure: the connection goes back to the pool.
        if let Err(err) =
            sqlx::query("SELECT pg_advisory_unlock(hashtext($1))").bind(&lock_key).execute(&mut *conn).await
        {
            tracing::warn!(error = %err, "advisory unlock failed; closing the connection");
            conn.detach();
        }
        outcome
    }

    async fn ensure_locked(&self, conn: &mut sqlx::PgConnection, tenant: &TenantId) -> Result<(), TablesError> {
        let inner = &self.inner;
        let attached: Option<(Option<chrono::DateTime<chrono::Utc>>,)> =
            sqlx::query_as("SELECT attached_at FROM agent_tables WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        if matches!(attached, Some((Some(_),))) {
            return Ok(());
        }
        let schema = self.schema_name(tenant);
        // Every name below matches [a-z0-9_]+ (checked): quoting them is enough, and the tenant
        // literal cannot close its quotes. A fresh random password per attach, never stored.
        check_name(&schema)?;
        check_name(&inner.service_schema)?;
        check_name(tenant.as_str())?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        let svc = &inner.service_schema;
        let statements = [
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            format!(
                "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{schema}') THEN \
                 CREATE ROLE \"{schema}\" LOGIN; END IF; END$$"
            ),
            format!(
                "ALTER ROLE \"{schema}\" WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
                 CONNECTION LIMIT 10 PASSWORD '{password}'"
            ),
            format!("ALTER ROLE \"{schema}\" SET default_transaction_read_only = on"),
            format!(
                "CREATE OR REPLACE VIEW \"{schema}\".{VIEW} WITH (security_barrier) AS \
                 SELECT w.id::text AS id, w.desktop_id::text AS desktop_id, d.name AS desktop_name, w.user_id, \
                 w.app_id, w.title, w.x, w.y, w.width, w.height, w.z_index, w.state, \
                 (d.focus_stack[1] IS NOT DISTINCT FROM w.id) AS focused, w.props::text AS props, w.version, \
                 w.created_at, w.updated_at \
                 FROM \"{svc}\".windows_state w JOIN \"{svc}\".desktops d ON d.tenant_id = w.tenant_id AND d.id = w.desktop_id \
                 WHERE w.tenant_id = '{tenant}'"
            ),
            format!("REVOKE ALL ON SCHEMA \"{schema}\" FROM PUBLIC"),
            format!("GRANT USAGE ON SCHEMA \"{schema}\" TO \"{schema}\""),
            format!("REVOKE ALL ON \"{schema}\".{VIEW} FROM PUBLIC"),
            format!("GRANT SELECT ON \"{schema}\".{VIEW} TO \"{schema}\""),
        ];
        let mut tx = conn.begin().await?;
        for ddl in statements {
            sqlx::query(sqlx::AssertSqlSafe(ddl)).execute(&mut *tx).await?;
        }
        sqlx::query(
            "INSERT INTO agent_tables (tenant_id, schema_name) VALUES ($1, $2) \
             ON CONFLICT (tenant_id) DO UPDATE SET schema_name = EXCLUDED.schema_name, updated_at = now()",
        )
        .bind(tenant.as_str())
        .bind(&schema)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;

        let ctx = TenantContext::new(tenant.clone(), "system");
        inner.projects.ensure(&ctx).await?;
        let spec = PostgresSpec {
            name: inner.integration.clone(),
            host: inner.target.host.clone(),
            port: inner.target.port,
            database: inner.target.database.clone(),
            user: schema.clone(),
            password: Some(SecretString::from(password)),
            schema: Some(schema.clone()),
        };
        match inner.databases.attach_postgres(&ctx, &spec).await {
            Ok(_) => {}
            // Left over from an earlier attach (whose password we just replaced): attach anew.
            Err(MindsdbError::AlreadyExists(_)) => {
                inner.databases.detach(&ctx, &inner.integration).await?;
                inner.databases.attach_postgres(&ctx, &spec).await?;
            }
            Err(err) => return Err(err.into()),
        }
        sqlx::query("UPDATE agent_tables SET attached_at = now(), updated_at = now() WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await?;
        tracing::info!(tenant = %tenant, schema = %schema, integration = inner.integration.as_str(), "mindsdb tables attached");
        Ok(())
    }
}

/// `dsk_<tenant>_<service schema>`, or with a hash of the tenant when that is over Postgres's
/// 63-byte limit. Ending in the service schema's name keeps test runs' names apart.
fn schema_name(tenant: &TenantId, service_schema: &str) -> String {
    let readable = format!("dsk_{tenant}_{service_schema}");
    if readable.len() <= 63 {
        return readable;
    }
    let hashed = format!("dsk_h{:016x}_{service_schema}", fnv1a(tenant.as_str()));
    if hashed.len() <= 63 { hashed } else { format!("dsk_h{:016x}", fnv1a(&format!("{tenant}/{service_schema}"))) }
}

/// FNV-1a, 64 bits: a stable short name, not a security boundary (the UNIQUE schema_name
/// column refuses a collision instead of sharing a schema).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn check_name(s: &str) -> Result<(), TablesError> {
    let ok =
        !s.is_empty() && s.len() <= 63 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(()) } else { Err(TablesError::Name(format!("{} bytes, not [a-z0-9_]{{1,63}}", s.len()))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_fit_postgres_and_end_in_the_service_schema() {
        let t = TenantId::parse("acme").unwrap();
        assert_eq!(schema_name(&t, "desktop_state_ab12"), "dsk_acme_desktop_state_ab12");
        let long = TenantId::parse(&"a".repeat(48)).unwrap();
        let name = schema_name(&long, "desktop_state_0123456789");
        assert!(name.len() <= 63 && name.ends_with("_desktop_state_0123456789"), "{name}");
        assert!(check_name(&name).is_ok());
    }
}
