//! Built-in accounts (issue 16), for installs without an OpenID Connect provider: sign-up (a new
//! tenant, its MindsDB project, and its first user as admin), sign-in, and users an admin adds.
//! The gateway signs their tokens with its own keys ([`keys`]) and publishes them at
//! [`JWKS_PATH`], so every service verifies them as it would an identity provider's
//! (`auth.jwks_url` pointing at the gateway).
//!
//! Public routes (no token; `http_api::PUBLIC_ROUTES`): `GET /api/v1/auth/config` (which sign-in
//! the browser does), `POST /api/v1/auth/signup`, `POST /api/v1/auth/login` and the JWKS. They
//! are rate-limited per client address and per email with the gateway's shared limiter, and
//! every sign-up and sign-in, refused or not, is in the audit log. `POST /api/v1/auth/users` is an
//! ordinary authenticated route (`users.write`: admins).
//!
//! Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane, the
//! OWASP minimum) on the blocking pool, at most [`MAX_CONCURRENT_HASHES`] at once. A sign-in
//! naming an unknown email still runs one verification, against a hash made at start, so the
//! answer takes as long and says the same as a wrong password.

mod keys;
mod store;

use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use axum::extract::{FromRequestParts, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use getlood_auth::{Principal, Role, TenantId};
use getlood_common::{ApiError, ErrorCode};
use http::StatusCode;
use http::request::Parts;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::Semaphore;
use utoipa::ToSchema;

pub use keys::{ACTIVATION_DELAY, rotate_signing_key};

use crate::audit::{Actor, Described, Refusal};
use crate::caller::Caller;
use crate::extract::ApiJson;
use crate::rate_limit::Verdict;
use crate::{AppState, upstream};

/// Where the gateway publishes its signing keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Which sign-in this deployment uses.
pub(crate) const CONFIG_PATH: &str = "/api/v1/auth/config";
/// Creates a tenant and its admin.
pub(crate) const SIGNUP_PATH: &str = "/api/v1/auth/signup";
/// Signs in.
pub(crate) const LOGIN_PATH: &str = "/api/v1/auth/login";
/// The public routes of this module, for `http_api::PUBLIC_ROUTES` and the OpenAPI document.
pub(crate) const PUBLIC: &[(&str, &str)] =
    &[("GET", CONFIG_PATH), ("POST", SIGNUP_PATH), ("POST", LOGIN_PATH), ("GET", JWKS_PATH)];

/// The longest lifetime `accounts.session_lifetime` may have: the bound on every issued token,
/// and what key retirement waits for.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Longest email accepted, in bytes (RFC 5321's path limit).
const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part of an email, in bytes (RFC 5321).
const MAX_EMAIL_LOCAL_BYTES: usize = 64;
/// Longest password accepted, in bytes: argon2 takes any length, the bound keeps a request from
/// making the hash read megabytes.
const MAX_PASSWORD_BYTES: usize = 1024;
/// Roles one user may be given.
const MAX_ROLES: usize = 5;
/// Password hashes computed at once on this replica (each holds 19 MiB while it runs).
const MAX_CONCURRENT_HASHES: usize = 4;
/// Length of a generated password (an invitation without one).
const GENERATED_PASSWORD_CHARS: usize = 24;
/// The one answer to an unknown email and to a wrong password.
const BAD_CREDENTIALS: &str = "invalid email or password";

/// Built-in accounts (`GETLOOD_GATEWAY_APP__ACCOUNTS__*`); used unless `app.oidc` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSettings {
    /// Whether anyone may create a tenant with `POST /api/v1/auth/signup` (its first user becomes
    /// its admin). False: sign-up answers 403; invited users and existing accounts still sign in.
    pub signup: bool,
    /// Lifetime of the tokens the gateway issues; at most 24 h. There is no refresh token: the
    /// browser signs in again when it expires.
    #[serde(with = "humantime_serde")]
    pub session_lifetime: Duration,
    /// Shortest password accepted, in characters (8 at least).
    pub min_password_chars: usize,
    /// Sign-up and sign-in attempts a minute from one client address, across replicas (the
    /// address as the audit log sees it, `app.client_ip_forwarded_hops`).
    pub rate_limit_per_ip_per_minute: u32,
    /// Sign-up and sign-in attempts a minute naming one email, across replicas.
    pub rate_limit_per_email_per_minute: u32,
    /// Secret the signing keys' private halves, and A2A push-notification tokens and
    /// credentials, are encrypted with in Postgres (32 bytes at least; the chart generates one for
    /// built-in accounts; set it with an OIDC provider too, for the push credentials). Unset: stored unencrypted, with a warning at start.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub key_encryption_key: Option<SecretString>,
    /// Age at which the signing key gets a successor (published at once, signing 10 min later;
    /// the old key verifies its tokens until they expire).
    #[serde(with = "humantime_serde")]
    pub signing_key_rotation: Duration,
    /// How often each replica re-reads the signing keys (a rotation reaches every replica within
    /// this).
    #[serde(with = "humantime_serde")]
    pub key_refresh_interval: Duration,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        Self {
            signup: true,
            session_lifetime: Duration::from_secs(8 * 3600),
            min_password_chars: 10,
            rate_limit_per_ip_per_minute: 30,
            rate_limit_per_email_per_minute: 10,
            key_encryption_key: None,
            signing_key_rotation: Duration::from_secs(30 * 24 * 3600),
            key_refresh_interval: Duration::from_secs(30),
        }
    }
}

impl AccountsSettings {
    /// Checks the values, naming the key.
    pub(crate) fn validate(&self) -> Result<(), getlood_config::ConfigError> {
        use getlood_config::ConfigError;
        if self.session_lifetime.is_zero() || self.session_lifetime > MAX_TOKEN_LIFETIME {
            return Err(ConfigError::invalid("app.accounts.session_lifetime", "must be between 1s and 24h"));
        }
        if !(8..=256).contains(&self.min_password_chars) {
            return Err(ConfigError::invalid("app.accounts.min_password_chars", "must be between 8 and 256"));
        }
        if self.rate_limit_per_ip_per_minute == 0 || self.rate_limit_per_email_per_minute == 0 {
            return Err(ConfigError::invalid(
                "app.accounts.rate_limit_per_ip_per_minute",
                "sign-in limits must be at least 1 (per ip and per email)",
            ));
        }
        getlood_config::require_key_encryption_key(
            "app.accounts.key_encryption_key",
            self.key_encryption_key.as_ref(),
        )?;
        if self.signing_key_rotation < Duration::from_secs(3600) {
            return Err(ConfigError::invalid("app.accounts.signing_key_rotation", "must be at least 1h"));
        }
        if self.key_refresh_interval.is_zero() || self.key_refresh_interval > Duration::from_secs(300) {
            return Err(ConfigError::invalid("app.accounts.key_refresh_interval", "must be between 1s and 5m"));
        }
        Ok(())
    }
}

/// The OpenID Connect provider browsers sign in with (`GETLOOD_GATEWAY_APP__OIDC__*`). Set: the
/// deployment's mode is `oidc` and built-in accounts are off; the provider's issuer is
/// `auth.issuer` and its keys `auth.jwks_url`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The web app's client id at the provider (a public client: authorization code + PKCE).
    pub client_id: String,
    /// The provider's authorization endpoint.
    pub authorization_endpoint: String,
    /// The provider's token endpoint.
    pub token_endpoint: String,
    /// Scopes the web app asks for.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "profile", "email"].map(str::to_owned).to_vec()
}

impl OidcSettings {
    /// Checks the values, naming the key.
    pub(crate) fn validate(&self) -> Result<(), getlood_config::ConfigError> {
        use getlood_config::ConfigError;
        if self.client_id.is_empty() || self.client_id.len() > 256 {
            return Err(ConfigError::invalid("app.oidc.client_id", "must be 1 to 256 bytes"));
        }
        for (key, url) in [
            ("app.oidc.authorization_endpoint", &self.authorization_endpoint),
            ("app.oidc.token_endpoint", &self.token_endpoint),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::invalid(key, "must be an http(s) url"));
            }
        }
        if self.scopes.is_empty()
            || self.scopes.iter().any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
        {
            return Err(ConfigError::invalid("app.oidc.scopes", "must be non-empty scope names"));
        }
        Ok(())
    }
}

fn serialize_secret_opt<S: serde::Serializer>(secret: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret as _;
    // Serialized only as the defaults layer of figment; the value must survive that round trip.
    match secret {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// Why an account operation failed inside the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Postgres refused or failed.
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// A signing key could not be made, read or used.
    #[error("signing key: {0}")]
    Key(String),
    /// Hashing or checking a password failed.
    #[error("password hash: {0}")]
    Hash(String),
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        // Logged once here with its cause; the client learns only that it may retry.
        tracing::error!(error = %err, "accounts failure");
        ApiError::unavailable("accounts are temporarily unavailable, retry shortly")
    }
}

/// The built-in accounts of this replica: the store, the signing keys and the hashing limits.
pub(crate) struct Accounts {
    pool: sqlx::PgPool,
    keys: Arc<keys::SigningKeys>,
    settings: AccountsSettings,
    issuer: String,
    audience: String,
    /// A hash of a random password, checked when a sign-in names an unknown email.
    decoy_hash: String,
    hashing: Semaphore,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").field("issuer", &self.issuer).finish_non_exhaustive()
    }
}

impl Accounts {
    /// Loads (or creates) the signing keys and keeps them fresh until `shutdown`.
    pub(crate) async fn start(
        pool: sqlx::PgPool,
        settings: AccountsSettings,
        auth: &getlood_auth::AuthConfig,
        verifier: Arc<getlood_auth::Verifier>,
        tracker: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<Self, Error> {
        let keys = keys::SigningKeys::start(pool.clone(), &settings, verifier, tracker, shutdown).await?;
        let decoy = generated_password();
        let decoy_hash =
            tokio::task::spawn_blocking(move || hash(&decoy)).await.map_err(|e| Error::Hash(e.to_string()))??;
        Ok(Self {
            pool,
            keys,
            settings,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            decoy_hash,
            hashing: Semaphore::new(MAX_CONCURRENT_HASHES),
        })
    }

    async fn hash(&self, password: String) -> Result<String, Error> {
        let _permit = self.hashing.acquire().await.map_err(|e| Error::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || hash(&password)).await.map_err(|e| Error::Hash(e.to_string()))?
    }

    /// Whether `password` matches `stored` (a PHC string); a malformed stored hash is no match.
    async fn verify(&self, password: String, stored: String) -> Result<bool, Error> {
        let _permit = self.hashing.acquire().await.map_err(|e| Error::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .map_err(|e| Error::Hash(e.to_string()))
    }

    /// A token for `user`, and its lifetime in seconds.
    fn issue(&self, user: &store::User) -> Result<(String, u64), Error> {
        let now = jsonwebtoken::get_current_timestamp();
        let ttl = self.settings.session_lifetime.as_secs().max(1);
        let claims = IssuedClaims {
            sub: user.id.to_string(),
            tenant: user.tenant.clone(),
            roles: user.roles.clone(),
            email: user.email.clone(),
            iat: now,
            nbf: now,
            exp: now + ttl,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        Ok((self.keys.sign(&claims)?, ttl))
    }
}

/// The claims of an issued token: what `getlood_auth::Claims` reads, plus the email for the UI.
#[derive(Debug, Serialize)]
struct IssuedClaims {
    sub: String,
    tenant: String,
    roles: Vec<String>,
    email: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    iss: String,
    aud: String,
}

fn hash(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// A random password of letters and digits.
fn generated_password() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    (0..GENERATED_PASSWORD_CHARS).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect()
}

/// `raw` trimmed and lower-cased, if it is an email address of bounded size.
fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let email = raw.trim().to_lowercase();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(ApiError::invalid_argument(format!("email must be at most {MAX_EMAIL_BYTES} bytes")));
    }
    let invalid = || ApiError::invalid_argument("email must be an address such as name@example.com");
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    let ok = !local.is_empty()
        && local.len() <= MAX_EMAIL_LOCAL_BYTES
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.contains("..")
        && email.chars().all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '<' | '>' | '"' | ',' | ';'));
    if ok { Ok(email) } else { Err(invalid()) }
}

/// Refuses a password outside `[min_chars, MAX_PASSWORD_BYTES]`.
fn check_password(password: &str, min_chars: usize) -> Result<(), ApiError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid_argument(format!("password must be at most {MAX_PASSWORD_BYTES} bytes")));
    }
    if password.chars().count() < min_chars {
        return Err(ApiError::invalid_argument(format!("password must be at least {min_chars} characters")));
    }
    Ok(())
}

/// The roles of an invitation: known role names, at least one, each once (`user` is `member`).
fn check_roles(raw: &[String]) -> Result<Vec<String>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_ROLES {
        return Err(ApiError::invalid_argument(format!("roles must name 1 to {MAX_ROLES} roles")));
    }
    let mut roles = Vec::new();
    for name in raw {
        let role: Role = name.parse().map_err(|_| {
            ApiError::invalid_argument(format!(
                "role '{}' is not one of admin, builder, operator, member, viewer",
                name.chars().take(32).collect::<String>()
            ))
        })?;
        if !roles.contains(&role.as_str().to_owned()) {
            roles.push(role.as_str().to_owned());
        }
    }
    Ok(roles)
}

// ---------------------------------------------------------------------------------------------
// Request and response bodies
// ---------------------------------------------------------------------------------------------

/// `POST /api/v1/auth/signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignupRequest {
    /// The new admin's email (at most 254 bytes), the sign-in name.
    email: String,
    /// At least `accounts.min_password_chars` characters (10 by default), at most 1024 bytes.
    password: String,
    /// The new tenant's id: 1 to 48 of `a-z`, `0-9`, `_`, not starting with `_`.
    tenant: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// The account's email.
    email: String,
    /// Its password.
    password: String,
}

/// `POST /api/v1/auth/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateUserRequest {
    /// The new user's email.
    email: String,
    /// Their password; absent: one is generated and returned once.
    #[serde(default)]
    password: Option<String>,
    /// Their roles: `admin`, `builder`, `operator`, `member`, `viewer` (1 to 5).
    roles: Vec<String>,
}

/// An account.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserBody {
    /// Sign-in name, lower-cased.
    email: String,
    /// The user id: the tokens' `sub`.
    id: String,
    /// Roles the tokens grant.
    roles: Vec<String>,
    /// The user's tenant.
    tenant: String,
}

impl From<&store::User> for UserBody {
    fn from(user: &store::User) -> Self {
        Self {
            email: user.email.clone(),
            id: user.id.to_string(),
            roles: user.roles.clone(),
            tenant: user.tenant.clone(),
        }
    }
}

/// A signed-in session: the bearer token and who it names.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TokenBody {
    /// An ES256 JWT signed by the gateway (keys at `/.well-known/jwks.json`); send it as
    /// `Authorization: Bearer <token>`.
    access_token: String,
    /// Seconds until the token expires.
    expires_in: u64,
    /// Always `Bearer`.
    token_type: &'static str,
    /// The account.
    user: UserBody,
}

/// `POST /api/v1/auth/users`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedUserBody {
    /// The generated password, when the request had none: shown once, stored only as a hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    /// The account.
    user: UserBody,
}

/// How the browser signs in.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuthConfigBody {
    /// `builtin`: `POST /api/v1/auth/login` (and sign-up); `oidc`: authorization code + PKCE
    /// against the provider below.
    mode: &'static str,
    /// The provider, in `oidc` mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    oidc: Option<OidcBody>,
    /// Whether `POST /api/v1/auth/signup` is open (built-in mode).
    signup: bool,
}

/// The OpenID Connect provider of an `oidc` deployment.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OidcBody {
    /// The provider's authorization endpoint.
    authorization_endpoint: String,
    /// The web app's client id.
    client_id: String,
    /// The provider's issuer (the tokens' `iss`).
    issuer: String,
    /// Scopes to ask for.
    scopes: Vec<String>,
    /// The provider's token endpoint.
    token_endpoint: String,
}

/// A JWK Set (RFC 7517).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: the document is written by the signing keys")]
pub(crate) struct JwksBody {
    /// The published ES256 keys (`kty` EC, `crv` P-256, `x`, `y`, `kid`, `alg`, `use`).
    #[schema(value_type = Vec<Object>)]
    keys: Vec<serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// The public routes: merged into the gateway's router outside `require_auth`, with the audit
/// layer (every sign-up and sign-in is recorded) and the plain deadline.
pub(crate) fn public_routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(CONFIG_PATH, get(config))
        .route(SIGNUP_PATH, post(signup))
        .route(LOGIN_PATH, post(login))
        .route(JWKS_PATH, get(jwks))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.settings.http_request_timeout,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::record))
}

/// The client address of a request, as the audit log records it.
pub(crate) struct ClientAddr(String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Ok(Self(crate::audit::client_ip_of(&parts.headers, &parts.extensions, state.settings.client_ip_forwarded_hops)))
    }
}

/// The accounts of a built-in deployment, or the 404 of an `oidc` one.
fn accounts(state: &AppState) -> Result<&Accounts, ApiError> {
    state.accounts.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "built-in accounts are off: this deployment signs in with its OpenID Connect provider (GET /api/v1/auth/config)",
        )
    })
}

/// Counts one attempt of `addr` naming `email` against the sign-in limits.
async fn limit(state: &AppState, accounts: &Accounts, addr: &str, email: &str) -> Result<(), Response> {
    // The email is hashed: keys stay short and hold no address.
    let email_key = hex(&sha2::Sha256::digest(email.as_bytes())[..16]);
    let settings = &accounts.settings;
    let limits = vec![
        (format!("ip:{addr}"), settings.rate_limit_per_ip_per_minute),
        (format!("email:{email_key}"), settings.rate_limit_per_email_per_minute),
    ];
    match crate::rate_limit::keyed_verdict(&state.limiter, "signin", "sign-in attempts", limits).await {
        Verdict::Proceed(_) => Ok(()),
        Verdict::Refuse(err, decision) => Err(crate::rate_limit::refusal(err.into_response(), decision)),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Marks `response` for the audit log: its action, the account when known, and why it failed.
fn audited(mut response: Response, action: &str, actor: Option<&store::User>, reason: &str) -> Response {
    let status = response.status();
    response.extensions_mut().insert(Described::Write { action: action.to_owned(), status, reason: String::new() });
    if let Some(user) = actor
        && let Ok(tenant) = TenantId::parse(&user.tenant)
    {
        response.extensions_mut().insert(Actor { tenant, user: user.id.to_string() });
    }
    if !reason.is_empty() {
        response.extensions_mut().insert(Refusal(reason.to_owned()));
    }
    response
}

/// `GET /api/v1/auth/config`.
#[utoipa::path(get, path = "/api/v1/auth/config", operation_id = "get_auth_config", tag = "auth", security(()),
    description = "Which sign-in the browser does: `builtin` (the routes below) or `oidc` (authorization code + PKCE against the provider named here). Public.",
    responses((status = 200, description = "The deployment's sign-in", body = AuthConfigBody)))]
pub(crate) async fn config(State(state): State<AppState>) -> Json<AuthConfigBody> {
    let body = match &state.settings.oidc {
        Some(oidc) => AuthConfigBody {
            mode: "oidc",
            oidc: Some(OidcBody {
                authorization_endpoint: oidc.authorization_endpoint.clone(),
                client_id: oidc.client_id.clone(),
                issuer: state.verifier.issuer().to_owned(),
                scopes: oidc.scopes.clone(),
                token_endpoint: oidc.token_endpoint.clone(),
            }),
            signup: false,
        },
        None => AuthConfigBody { mode: "builtin", oidc: None, signup: state.settings.accounts.signup },
    };
    Json(body)
}

/// `GET /.well-known/jwks.json`.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "get_jwks", tag = "auth", security(()),
    description = "The keys the gateway signs built-in accounts' tokens with (ES256). Every service is configured with `auth.jwks_url` pointing here. A rotated-in key is listed before it signs; a retired key stays listed until its tokens have expired. Public.",
    responses((status = 200, description = "The JWK Set", body = JwksBody)))]
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    match accounts(&state) {
        Ok(accounts) => (
            [
                (http::header::CONTENT_TYPE, "application/json"),
                // Verifiers fetch it on their own schedule; a short cache spares the gateway.
                (http::header::CACHE_CONTROL, "public, max-age=60"),
            ],
            accounts.keys.jwks(),
        )
            .into_response(),
        Err(err) => err.into_response(),
    }
}

/// `POST /api/v1/auth/signup`.
#[utoipa::path(post, path = "/api/v1/auth/signup", operation_id = "signup", tag = "auth", security(()),
    description = "Creates a tenant, its MindsDB project and its first user, who is the tenant's admin, and signs them in. A tenant that exists already is a 409: later users are added by an admin (`POST /api/v1/auth/users`). Rate-limited per client address and per email. Public.",
    request_body = SignupRequest,
    responses(
        (status = 201, description = "The tenant exists; its admin is signed in", body = TokenBody),
        (status = 403, description = "Sign-up is closed on this deployment (`permission_denied`)", body = getlood_common::ErrorBody),
        (status = 409, description = "The tenant or the email exists already (`already_exists`)", body = getlood_common::ErrorBody)))]
pub(crate) async fn signup(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: http::HeaderMap,
    body: Result<ApiJson<SignupRequest>, ApiError>,
) -> Response {
    const ACTION: &str = "auth.signup";
    let outcome = async {
        let accounts = accounts(&state)?;
        let ApiJson(body) = body?;
        let email = normalize_email(&body.email)?;
        let tenant = TenantId::parse(&body.tenant)
            .map_err(|_| ApiError::invalid_argument("tenant must be 1 to 48 of a-z, 0-9 and _, not starting with _"))?;
        check_password(&body.password, accounts.settings.min_password_chars)?;
        if !accounts.settings.signup {
            return Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "sign-up is closed on this deployment: ask a tenant admin to add you",
            ));
        }
        if let Err(refused) = limit(&state, accounts, &addr, &email).await {
            return Ok(Err(refused));
        }
        let hash = accounts.hash(body.password).await?;
        let request_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
        let user = create_tenant(&state, accounts, &tenant, &email, &hash, request_id).await?;
        let (token, expires_in) = accounts.issue(&user)?;
        tracing::info!(tenant = %tenant, user = %user.id, "tenant signed up");
        Ok(Ok((user, token, expires_in)))
    }
    .await;
    match outcome {
        Ok(Ok((user, access_token, expires_in))) => {
            let body = TokenBody { access_token, expires_in, token_type: "Bearer", user: UserBody::from(&user) };
            audited(crate::rest::created(body), ACTION, Some(&user), "")
        }
        Ok(Err(refused)) => audited(refused, ACTION, None, "rate limited"),
        Err(err) => {
            let reason = err.message.clone();
            audited(err.into_response(), ACTION, None, &reason)
        }
    }
}

/// Creates `tenant` with its admin and provisions its MindsDB project through the agent registry,
/// all or nothing: the rows are committed only once the project exists.
async fn create_tenant(
    state: &AppState,
    accounts: &Accounts,
    tenant: &TenantId,
    email: &str,
    hash: &str,
    request_id: Option<&str>,
) -> Result<store::User, ApiError> {
    let mut tx = accounts.pool.begin().await.map_err(Error::from)?;
    if !store::insert_tenant(&mut tx, tenant).await? {
        return Err(ApiError::new(
            ErrorCode::AlreadyExists,
            format!("tenant '{tenant}' already exists: ask its admin to add you"),
        ));
    }
    let user = store::insert_user(&mut tx, tenant, email, hash, &[Role::Admin.as_str().to_owned()]).await?;
    // The project is made with the new admin's own token, as every call on a tenant's behalf is.
    let (token, _) = accounts.issue(&user)?;
    let principal = state.verifier.verify(&token).map_err(|e| {
        tracing::error!(error = %e, "a token the gateway just signed does not verify");
        ApiError::unavailable("accounts are temporarily unavailable, retry shortly")
    })?;
    provision(state, &principal, request_id).await?;
    tx.commit().await.map_err(Error::from)?;
    Ok(user)
}

/// Creates the tenant's MindsDB project: the agent registry owns the tenant's agents and their
/// project.
async fn provision(state: &AppState, principal: &Principal, request_id: Option<&str>) -> Result<(), ApiError> {
    let request =
        upstream::request(principal, request_id, getlood_proto::agent_registry::v1::ProvisionTenantRequest {});
    crate::caller::unary("agent-registry", state.upstreams.agent_registry_writes().provision_tenant(request))
        .await
        .map(drop)
}

/// `POST /api/v1/auth/login`.
#[utoipa::path(post, path = "/api/v1/auth/login", operation_id = "login", tag = "auth", security(()),
    description = "Signs in with a built-in account. An unknown email and a wrong password get the same 401 in the same time. Rate-limited per client address and per email. Public.",
    request_body = LoginRequest,
    responses((status = 200, description = "Signed in", body = TokenBody)))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    body: Result<ApiJson<LoginRequest>, ApiError>,
) -> Response {
    const ACTION: &str = "auth.login";
    let outcome = async {
        let accounts = accounts(&state)?;
        let ApiJson(body) = body?;
        let email = normalize_email(&body.email)?;
        if body.password.len() > MAX_PASSWORD_BYTES {
            return Err(ApiError::invalid_argument(format!("password must be at most {MAX_PASSWORD_BYTES} bytes")));
        }
        if let Err(refused) = limit(&state, accounts, &addr, &email).await {
            return Ok(Err((refused, None, "rate limited")));
        }
        let user = store::user_by_email(&accounts.pool, &email).await?;
        // Always one verification, so an unknown email costs what a wrong password costs.
        let stored = user.as_ref().map_or_else(|| accounts.decoy_hash.clone(), |u| u.password_hash.clone());
        let matches = accounts.verify(body.password, stored).await?;
        match user {
            Some(user) if matches => {
                let (access_token, expires_in) = accounts.issue(&user)?;
                let body = TokenBody { access_token, expires_in, token_type: "Bearer", user: UserBody::from(&user) };
                Ok(Ok((Json(body).into_response(), user)))
            }
            Some(user) => Ok(Err((bad_credentials(), Some(user), "wrong password"))),
            None => Ok(Err((bad_credentials(), None, "unknown email"))),
        }
    }
    .await;
    match outcome {
        Ok(Ok((response, user))) => audited(response, ACTION, Some(&user), ""),
        Ok(Err((response, user, reason))) => audited(response, ACTION, user.as_ref(), reason),
        Err(err) => {
            let reason = err.message.clone();
            audited(err.into_response(), ACTION, None, &reason)
        }
    }
}

fn bad_credentials() -> Response {
    let mut response = ApiError::new(ErrorCode::Unauthenticated, BAD_CREDENTIALS).into_response();
    if let Ok(value) = http::HeaderValue::from_str(r#"Bearer error="invalid_grant""#) {
        response.headers_mut().insert(http::header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `POST /api/v1/auth/users`.
#[utoipa::path(post, path = "/api/v1/auth/users", operation_id = "create_user", tag = "auth",
    description = "Adds a built-in account to the caller's tenant (admins: `users.write`). Without a password one is generated and returned once.",
    request_body = CreateUserRequest,
    responses((status = 201, description = "The account", body = CreatedUserBody)))]
pub(crate) async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<Response, ApiError> {
    let accounts = accounts(&state)?;
    let email = normalize_email(&body.email)?;
    let roles = check_roles(&body.roles)?;
    let (password, generated) = match body.password {
        Some(password) => {
            check_password(&password, accounts.settings.min_password_chars)?;
            (password, None)
        }
        None => {
            let password = generated_password();
            (password.clone(), Some(password))
        }
    };
    let hash = accounts.hash(password).await?;
    let tenant = &caller.principal().tenant;
    let mut tx = accounts.pool.begin().await.map_err(Error::from)?;
    // A tenant whose admin came from a development token or an earlier identity provider has no
    // row yet.
    store::insert_tenant(&mut tx, tenant).await?;
    let user = store::insert_user(&mut tx, tenant, &email, &hash, &roles).await?;
    tx.commit().await.map_err(Error::from)?;
    tracing::info!(tenant = %tenant, user = %user.id, by = %caller.principal().user, "user added");
    // Audited by the route itself: `auth.users.create`.
    Ok(crate::rest::created(CreatedUserBody { password: generated, user: UserBody::from(&user) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_bounded_normalized_and_checked() {
        assert_eq!(normalize_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "a b@example.com",
            "a@b@c.com",
            "a@.com",
            "a..b@x.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
        let long = format!("{}@example.com", "a".repeat(MAX_EMAIL_LOCAL_BYTES + 1));
        assert!(normalize_email(&long).is_err());
        let huge = format!("a@{}.com", "b".repeat(10_000));
        assert!(normalize_email(&huge).unwrap_err().message.contains("254"));
    }

    #[test]
    fn passwords_are_bounded_both_ways() {
        assert!(check_password("short", 10).is_err());
        assert!(check_password("long enough pass", 10).is_ok());
        // Characters, not bytes: ten accented letters are ten characters.
        assert!(check_password("éééééééééé", 10).is_ok());
        assert!(check_password(&"x".repeat(MAX_PASSWORD_BYTES + 1), 10).unwrap_err().message.contains("1024"));
    }

    #[test]
    fn roles_are_known_names_without_repeats() {
        assert_eq!(check_roles(&["user".into(), "member".into(), "viewer".into()]).unwrap(), ["member", "viewer"]);
        assert!(check_roles(&[]).is_err());
        assert!(check_roles(&["root".into()]).is_err());
        assert!(check_roles(&vec!["viewer".to_owned(); 6]).is_err());
    }

    #[test]
    fn hashes_are_argon2id_and_verify_only_the_password() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$"), "{stored}");
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse battery", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"correct horse batterz", &parsed).is_err());
        assert_ne!(hash("correct horse battery").unwrap(), stored, "salted");
        let generated = generated_password();
        assert_eq!(generated.len(), GENERATED_PASSWORD_CHARS);
        assert!(generated.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn settings_are_bounded() {
        assert!(AccountsSettings::default().validate().is_ok());
        let long = AccountsSettings { session_lifetime: Duration::from_secs(25 * 3600), ..AccountsSettings::default() };
        assert!(long.validate().unwrap_err().to_string().contains("session_lifetime"));
        let weak =
            AccountsSettings { key_encryption_key: Some(SecretString::from("short")), ..AccountsSettings::default() };
        assert!(weak.validate().unwrap_err().to_string().contains("key_encryption_key"));
    }
}
