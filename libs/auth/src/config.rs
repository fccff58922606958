use getlood_config::ConfigError;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

/// Token verification settings, shared by the gateway and every service that re-verifies the
/// caller's token on its gRPC API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Expected `iss` claim.
    pub issuer: String,
    /// Expected `aud` claim.
    pub audience: String,
    /// Shared secret for HS256 tokens. Unset (the default) disables HS256: no key is active unless
    /// configured, so an install with OIDC never accepts tokens signed with a known secret.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub hs256_secret: Option<SecretString>,
    /// Public keys for RS256/ES256 tokens, selected by the token's `kid`.
    pub public_keys: Vec<PublicKeyConfig>,
    /// JWKS document of an OIDC provider (`https://idp/.well-known/jwks.json`), fetched at start
    /// and every `jwks_refresh`; its RS256/ES256 keys join `public_keys`.
    pub jwks_url: Option<String>,
    /// How often the JWKS document is fetched again (key rotation).
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: std::time::Duration,
    /// PEM bundle of the CAs that sign the `https` JWKS server's certificate (a private CA).
    /// Unset: the system roots. Set: only these CAs are trusted for the JWKS fetch.
    pub jwks_ca_file: Option<std::path::PathBuf>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// One asymmetric verification key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyConfig {
    /// Key id matched against the token header's `kid`.
    pub kid: String,
    /// `RS256` or `ES256`.
    pub algorithm: String,
    /// The PEM-encoded public key.
    pub pem: String,
}

/// The development secret of `getlood dev` and `make token`, and nothing else: no service has
/// it unless told to (the default [`AuthConfig`] has no key at all); a service given it logs a
/// warning.
pub const DEV_HS256_SECRET: &str = "getlood-dev-secret-change-me-0123456789abcdef";

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "getlood".to_owned(),
            audience: "getlood".to_owned(),
            hs256_secret: None,
            public_keys: Vec::new(),
            jwks_url: None,
            jwks_refresh: std::time::Duration::from_secs(300),
            jwks_ca_file: None,
            leeway_secs: 30,
        }
    }
}

impl AuthConfig {
    /// Whether any verification key is configured.
    pub fn has_key(&self) -> bool {
        self.hs256_secret.is_some() || !self.public_keys.is_empty() || self.jwks_url.is_some()
    }

    /// Checks the values, naming the offending key under `prefix` (e.g. `auth`).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        if self.issuer.is_empty() {
            return Err(ConfigError::invalid(format!("{prefix}.issuer"), "must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::invalid(format!("{prefix}.audience"), "must not be empty"));
        }
        if let Some(secret) = &self.hs256_secret {
            // RFC 7518 §3.2: an HS256 key must be at least as long as the hash (256 bits).
            if secret.expose_secret().len() < 32 {
                return Err(ConfigError::invalid(format!("{prefix}.hs256_secret"), "must be at least 32 bytes"));
            }
        }
        if !self.has_key() {
            return Err(ConfigError::invalid(
                prefix,
                format!(
                    "no verification key: set {prefix}.jwks_url (OIDC), {prefix}.public_keys or {prefix}.hs256_secret"
                ),
            ));
        }
        if let Some(url) = &self.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ConfigError::invalid(format!("{prefix}.jwks_url"), "must be an http(s) url"));
            }
            if self.jwks_refresh.as_secs() < 10 {
                return Err(ConfigError::invalid(format!("{prefix}.jwks_refresh"), "must be at least 10s"));
            }
        }
        if let Some(path) = &self.jwks_ca_file {
            let key = format!("{prefix}.jwks_ca_file");
            if !self.jwks_url.as_deref().is_some_and(|url| url.starts_with("https://")) {
                return Err(ConfigError::invalid(key, format!("is set but {prefix}.jwks_url is not an https url")));
            }
            getlood_tls::check_ca_file(&key, path)?;
        }
        for (i, key) in self.public_keys.iter().enumerate() {
            if !matches!(key.algorithm.as_str(), "RS256" | "ES256") {
                return Err(ConfigError::invalid(
                    format!("{prefix}.public_keys[{i}].algorithm"),
                    format!("'{}' is not one of RS256, ES256", key.algorithm),
                ));
            }
        }
        Ok(())
    }
}

fn serialize_secret_opt<S: serde::Serializer>(secret: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    // Serialized only as the defaults layer of figment; the value must survive that round trip.
    match secret {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}
