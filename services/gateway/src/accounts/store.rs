//! The tenants and users of built-in accounts in the gateway's schema
//! (`migrations/0002_accounts.sql`).

use getlood_auth::TenantId;
use getlood_common::{ApiError, ErrorCode};
use sqlx::PgPool;
use uuid::Uuid;

use super::Error;

/// A stored account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct User {
    pub id: Uuid,
    #[sqlx(rename = "tenant_id")]
    pub tenant: String,
    pub email: String,
    pub password_hash: String,
    pub roles: Vec<String>,
}

/// Adds `tenant`; false when it exists already.
pub(crate) async fn insert_tenant(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &TenantId,
) -> Result<bool, ApiError> {
    let inserted = sqlx::query("INSERT INTO tenants (id) VALUES ($1) ON CONFLICT (id) DO NOTHING")
        .bind(tenant.as_str())
        .execute(&mut **tx)
        .await
        .map_err(Error::from)?;
    Ok(inserted.rows_affected() == 1)
}

/// Adds a user of `tenant`; an email that has an account already is `already_exists`.
pub(crate) async fn insert_user(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: &TenantId,
    email: &str,
    password_hash: &str,
    roles: &[String],
) -> Result<User, ApiError> {
    let id = Uuid::now_v7();
    let inserted = sqlx::query(
        "INSERT INTO users (id, tenant_id, email, password_hash, roles) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (email) DO NOTHING",
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(email)
    .bind(password_hash)
    .bind(roles)
    .execute(&mut **tx)
    .await
    .map_err(Error::from)?;
    if inserted.rows_affected() == 0 {
        return Err(ApiError::new(ErrorCode::AlreadyExists, "an account with this email exists already"));
    }
    Ok(User {
        id,
        tenant: tenant.to_string(),
        email: email.to_owned(),
        password_hash: password_hash.to_owned(),
        roles: roles.to_vec(),
    })
}

/// The account of `email` (lower-cased), if any.
pub(crate) async fn user_by_email(pool: &PgPool, email: &str) -> Result<Option<User>, Error> {
    Ok(sqlx::query_as("SELECT id, tenant_id, email, password_hash, roles FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(pool)
        .await?)
}
