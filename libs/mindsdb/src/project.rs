//! Project adapter: the tenant's own MindsDB project, `t_<tenant>`, inside the tenant's
//! MindsDB company (the `company-id` header). Owned by the gateway (tenant provisioning).

use crate::client::{MindsdbClient, Retry, TenantContext};
use crate::error::Result;
use crate::sql::{Ident, SqlBuilder};

/// Creates, lists and drops the tenant's project.
#[derive(Debug, Clone)]
pub struct ProjectAdapter {
    client: MindsdbClient,
}

impl ProjectAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    /// Creates the tenant's project if it does not exist; returns its name.
    pub async fn ensure(&self, ctx: &TenantContext) -> Result<Ident> {
        let project = ctx.project();
        let sql = SqlBuilder::new().kw("CREATE PROJECT IF NOT EXISTS").ident(&project).build();
        // IF NOT EXISTS makes a repeat harmless, so it may be retried.
        match self.client.query_with(ctx, "project.ensure", &sql, Retry::Idempotent).await {
            Ok(_) => Ok(project),
            // Two first requests of a new tenant at once: both find no project, both insert, and
            // MindsDB answers the second with its store's "UNIQUE constraint failed:
            // project.name, ..." (a 500, not "already exists"). The project is there all the
            // same, which is all `ensure` promises.
            Err(err) => match self.exists(ctx).await {
                Ok(true) => Ok(project),
                _ => Err(err),
            },
        }
    }

    /// Drops the tenant's project if it exists. MindsDB refuses while views remain in it;
    /// the other adapters' `delete` calls empty it first.
    pub async fn drop(&self, ctx: &TenantContext) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP PROJECT IF EXISTS").ident(&ctx.project()).build();
        self.client.query_with(ctx, "project.drop", &sql, Retry::Idempotent).await?;
        Ok(())
    }

    /// Names of the projects the tenant's MindsDB company holds (normally just `t_<tenant>`).
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<String>> {
        let sql =
            SqlBuilder::new().kw("SELECT NAME FROM information_schema.databases WHERE TYPE =").value("project").build();
        let table = self.client.query_with(ctx, "project.list", &sql, Retry::Idempotent).await?.into_table();
        Ok(table.rows.iter().filter_map(|r| table.text(r, "name")).collect())
    }

    /// Whether the tenant's project exists.
    pub async fn exists(&self, ctx: &TenantContext) -> Result<bool> {
        let project = ctx.project();
        Ok(self.list(ctx).await?.iter().any(|p| p == project.as_str()))
    }
}
