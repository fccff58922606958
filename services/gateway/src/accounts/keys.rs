//! The keys the gateway signs built-in accounts' tokens with (ES256, P-256), kept in its Postgres
//! schema (`signing_keys`) so every replica signs and publishes the same ones.
//!
//! The first start generates a key. A key older than `accounts.signing_key_rotation` gets a
//! successor that is published at once but signs only after [`ACTIVATION_DELAY`]: the other
//! services fetch the JWKS every `auth.jwks_refresh` (5 min by default), so by the time a token
//! names the new key they already hold it. The old key keeps being published, so the tokens it
//! signed verify, until its successor has been signing longer than any token lives
//! ([`super::MAX_TOKEN_LIFETIME`]). Key changes run under a Postgres advisory lock, so replicas
//! starting together create one key, not one each.
//!
//! Private keys are sealed at rest ([`getlood_common::sealing`]: ChaCha20-Poly1305 under a key
//! derived (SHA-256) from `accounts.key_encryption_key`), the key id as associated data; without
//! that setting they are stored as plain PKCS#8 and the start logs a warning. A private key is never logged, returned
//! or printed.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use getlood_common::sealing::SealingKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey as _;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Error;

/// The algorithm of every key.
pub(crate) const ALGORITHM: &str = "ES256";
/// How long a rotated-in key is published before it signs. Above the services' default
/// `auth.jwks_refresh` (5 min), so their periodic fetch has it before any token names it.
pub const ACTIVATION_DELAY: Duration = Duration::from_secs(10 * 60);
/// Tolerance added to a token's lifetime before the key that signed it is retired: replicas
/// pick up a newly active key within one refresh, and verifiers allow clock skew.
const RETIRE_GRACE: Duration = Duration::from_secs(15 * 60);
/// The advisory lock serialising key creation, rotation and retirement across replicas.
const LOCK_ID: i64 = 0x6765_746c_6f6f_6401;

/// The keys as this replica last read them.
struct KeySet {
    /// The newest key whose activation time has passed: its id and private key.
    signing: Option<(String, EncodingKey)>,
    /// The JWK Set of every published key.
    jwks: String,
}

/// The signing keys of this replica, reloaded from Postgres every `key_refresh_interval`.
pub(crate) struct SigningKeys {
    pool: PgPool,
    kek: Option<SealingKey>,
    rotation: Duration,
    set: RwLock<Arc<KeySet>>,
    verifier: Arc<getlood_auth::Verifier>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("SigningKeys").field("encrypted", &self.kek.is_some()).finish_non_exhaustive()
    }
}

/// One key row as read back.
#[derive(sqlx::FromRow)]
struct Row {
    kid: String,
    public_jwk: Value,
    private_key: Vec<u8>,
    nonce: Option<Vec<u8>>,
    encrypted: bool,
    activates_at: DateTime<Utc>,
}

impl SigningKeys {
    /// Makes sure a key exists (creating, rotating and retiring as due), loads the keys into
    /// this replica and the gateway's own verifier, and keeps them fresh until `shutdown`.
    pub(crate) async fn start(
        pool: PgPool,
        settings: &super::AccountsSettings,
        verifier: Arc<getlood_auth::Verifier>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, Error> {
        let kek = settings.key_encryption_key.as_ref().map(SealingKey::new);
        if kek.is_none() {
            tracing::warn!(
                "app.accounts.key_encryption_key is not set: the token signing keys are stored unencrypted in postgres"
            );
        }
        let keys = Arc::new(Self {
            pool,
            kek,
            rotation: settings.signing_key_rotation,
            set: RwLock::new(Arc::new(KeySet { signing: None, jwks: r#"{"keys":[]}"#.to_owned() })),
            verifier,
        });
        // Postgres being down at start does not stop the gateway (readiness reports it): the
        // keys are loaded as soon as it answers, and signing answers 503 until then.
        let mut loaded = keys.refresh().await;
        let this = keys.clone();
        let period = settings.key_refresh_interval;
        tracker.spawn(async move {
            loop {
                let wait = if loaded { period } else { period.min(Duration::from_secs(2)) };
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
                loaded = this.refresh().await || loaded;
            }
        });
        Ok(keys)
    }

    /// [`Self::maintain`] then [`Self::reload`], logging a failure; whether the keys were loaded.
    async fn refresh(&self) -> bool {
        if let Err(err) = self.maintain().await {
            tracing::warn!(error = %err, "signing keys not maintained, retrying");
        }
        match self.reload().await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %err, "signing keys not loaded, keeping the previous ones");
                false
            }
        }
    }

    /// Creates the first key, rotates a key older than the rotation period and retires keys no
    /// valid token can name any more, under the advisory lock.
    async fn maintain(&self) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_ID).execute(&mut *tx).await?;
        let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()").fetch_one(&mut *tx).await?;
        let live: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT kid, created_at, activates_at FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY activates_at DESC, created_at DESC",
        )
        .fetch_all(&mut *tx)
        .await?;
        match live.first() {
            None => {
                let kid = insert_key(&mut tx, self.kek.as_ref(), Duration::ZERO).await?;
                tracing::info!(kid, "token signing key created");
            }
            Some((_, created, _)) if now - *created > chrono_duration(self.rotation) => {
                let kid = insert_key(&mut tx, self.kek.as_ref(), ACTIVATION_DELAY).await?;
                tracing::info!(kid, activates_in = ?ACTIVATION_DELAY, "token signing key rotated");
            }
            Some(_) => {}
        }
        // A key stops signing when its successor activates; once that successor has signed
        // longer than any token lives, nothing valid names the key.
        let retire_after = chrono_duration(super::MAX_TOKEN_LIFETIME + RETIRE_GRACE);
        for pair in live.windows(2) {
            let (successor, key) = (&pair[0], &pair[1]);
            if successor.2 + retire_after < now {
                sqlx::query("UPDATE signing_keys SET retired_at = now() WHERE kid = $1")
                    .bind(&key.0)
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(kid = key.0, "token signing key retired");
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads the published keys, picks the signing one, and hands the JWK Set to the gateway's
    /// verifier.
    async fn reload(&self) -> Result<(), Error> {
        let (rows, now): (Vec<Row>, DateTime<Utc>) = {
            let mut conn = self.pool.acquire().await?;
            let rows = sqlx::query_as(
                "SELECT kid, public_jwk, private_key, nonce, encrypted, activates_at FROM signing_keys \
                 WHERE retired_at IS NULL ORDER BY activates_at DESC, created_at DESC",
            )
            .fetch_all(&mut *conn)
            .await?;
            let (now,): (DateTime<Utc>,) = sqlx::query_as("SELECT now()").fetch_one(&mut *conn).await?;
            (rows, now)
        };
        let mut published = Vec::with_capacity(rows.len());
        let mut signing = None;
        for row in &rows {
            let mut jwk = row.public_jwk.clone();
            if let Some(obj) = jwk.as_object_mut() {
                obj.insert("kid".to_owned(), json!(row.kid));
                obj.insert("alg".to_owned(), json!(ALGORITHM));
                obj.insert("use".to_owned(), json!("sig"));
            }
            published.push(jwk);
            if signing.is_none() && row.activates_at <= now {
                let der = self.open(row)?;
                signing = Some((row.kid.clone(), EncodingKey::from_ec_der(&der)));
            }
        }
        let jwks = json!({ "keys": published }).to_string();
        self.verifier.set_issued_keys(&jwks).map_err(|e| Error::Key(format!("published keys: {e}")))?;
        let set = Arc::new(KeySet { signing, jwks });
        *self.set.write().unwrap_or_else(std::sync::PoisonError::into_inner) = set;
        Ok(())
    }

    /// The private key of `row` as PKCS#8 DER.
    fn open(&self, row: &Row) -> Result<Vec<u8>, Error> {
        if !row.encrypted {
            return Ok(row.private_key.clone());
        }
        let (Some(kek), Some(nonce)) = (self.kek.as_ref(), row.nonce.as_deref()) else {
            return Err(Error::Key(format!(
                "signing key {} is encrypted but app.accounts.key_encryption_key is not set",
                row.kid
            )));
        };
        kek.open(nonce, &row.private_key, row.kid.as_bytes()).map_err(|e| match e {
            getlood_common::sealing::SealError::Open => Error::Key(format!(
                "signing key {} does not decrypt: app.accounts.key_encryption_key is not the key it was stored with",
                row.kid
            )),
            _ => Error::Key(format!("signing key {} has a malformed nonce", row.kid)),
        })
    }

    /// Signs `claims` with the current key.
    pub(crate) fn sign<T: Serialize>(&self, claims: &T) -> Result<String, Error> {
        let set = self.set.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let (kid, key) = set.signing.as_ref().ok_or_else(|| Error::Key("no active signing key".to_owned()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, key).map_err(|e| Error::Key(format!("signing: {e}")))
    }

    /// The JWK Set of the published keys.
    pub(crate) fn jwks(&self) -> String {
        self.set.read().unwrap_or_else(std::sync::PoisonError::into_inner).jwks.clone()
    }
}

/// Adds a signing key to the gateway schema behind `pool`, published at once and signing after
/// `activate_in` (a replica picks it up within its `key_refresh_interval`); returns its key id.
/// The gateway rotates by itself every `accounts.signing_key_rotation`; this is the same step
/// for an operator (or a test) that wants a new key now. `key_encryption_key` must be the
/// gateway's `app.accounts.key_encryption_key`.
pub async fn rotate_signing_key(
    pool: &PgPool,
    key_encryption_key: Option<&SecretString>,
    activate_in: Duration,
) -> Result<String, Error> {
    let kek = key_encryption_key.map(SealingKey::new);
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(LOCK_ID).execute(&mut *tx).await?;
    let kid = insert_key(&mut tx, kek.as_ref(), activate_in).await?;
    tx.commit().await?;
    tracing::info!(kid, activates_in = ?activate_in, "token signing key rotated");
    Ok(kid)
}

/// Generates a P-256 key and stores it, activating after `activate_in`.
async fn insert_key(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    kek: Option<&SealingKey>,
    activate_in: Duration,
) -> Result<String, Error> {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let der = secret.to_pkcs8_der().map_err(|e| Error::Key(format!("encoding a new key: {e}")))?;
    let public_jwk: Value = serde_json::from_str(&secret.public_key().to_jwk_string())
        .map_err(|e| Error::Key(format!("encoding a new public key: {e}")))?;
    let kid = format!("getlood-{}", uuid::Uuid::now_v7().simple());
    let (private_key, nonce) = match kek {
        Some(kek) => {
            let (nonce, sealed) =
                kek.seal(der.as_bytes(), kid.as_bytes()).map_err(|_| Error::Key("encrypting a new key".to_owned()))?;
            (sealed, Some(nonce.to_vec()))
        }
        None => (der.as_bytes().to_vec(), None),
    };
    let activate_secs = activate_in.as_secs_f64();
    sqlx::query(
        "INSERT INTO signing_keys (kid, algorithm, public_jwk, private_key, nonce, encrypted, activates_at) \
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
    )
    .bind(&kid)
    .bind(ALGORITHM)
    .bind(&public_jwk)
    .bind(&private_key)
    .bind(nonce.as_deref())
    .bind(kek.is_some())
    .bind(activate_secs)
    .execute(&mut **tx)
    .await?;
    Ok(kid)
}

fn chrono_duration(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}
