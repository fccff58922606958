use std::collections::HashMap;

use base64::Engine as _;
use getlood_common::{ApiError, ErrorCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use crate::{AuthConfig, Principal, TenantId};

/// Why a token was refused. Every variant is a 401 whose message says which check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `alg` is `none` or an algorithm this deployment has no key for.
    #[error("token algorithm '{0}' is not allowed")]
    AlgorithmNotAllowed(String),
    /// `exp` is in the past.
    #[error("token has expired")]
    Expired,
    /// `aud` does not name this deployment.
    #[error("token audience is invalid (expected '{0}')")]
    InvalidAudience(String),
    /// `iss` is not the configured issuer.
    #[error("token issuer is invalid (expected '{0}')")]
    InvalidIssuer(String),
    /// The signature does not verify with the configured key.
    #[error("token signature is invalid")]
    InvalidSignature,
    /// The `tenant` claim is not a valid tenant id.
    #[error("token tenant claim '{0}' is invalid")]
    InvalidTenant(String),
    /// Not three base64url segments of JSON.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// A claim we require is absent.
    #[error("token is missing the '{0}' claim")]
    MissingClaim(String),
    /// No `Authorization: Bearer` header at all.
    #[error("missing bearer token")]
    MissingToken,
    /// `nbf` is in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// The `kid` names no configured key.
    #[error("token key id '{0}' is unknown")]
    UnknownKey(String),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        ApiError::new(ErrorCode::Unauthenticated, err.to_string())
    }
}

impl From<AuthError> for tonic::Status {
    fn from(err: AuthError) -> Self {
        ApiError::from(err).into()
    }
}

/// The claims GETLOOD reads from a token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The tenant id; optional here so its absence gets its own error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Granted roles: a JSON array, or one string of names separated by spaces or commas (as
    /// some identity providers write them).
    #[serde(default, deserialize_with = "names")]
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Audience: one string, or an array when the identity provider names several (Auth0 and
    /// Keycloak do for access tokens also good at their own userinfo endpoint); the token is
    /// accepted when one of them is `auth.audience`. Written back as a string when single.
    #[serde(deserialize_with = "one_or_many", serialize_with = "string_when_single")]
    pub aud: Vec<String>,
    /// Issuer.
    pub iss: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(match OneOrMany::deserialize(de)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

fn names<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<OneOrMany>::deserialize(de)? {
        None => Vec::new(),
        Some(OneOrMany::One(joined)) => {
            joined.split([' ', ',']).filter(|name| !name.is_empty()).map(str::to_owned).collect()
        }
        Some(OneOrMany::Many(many)) => many,
    })
}

fn string_when_single<S: serde::Serializer>(aud: &[String], ser: S) -> Result<S::Ok, S::Error> {
    match aud {
        [one] => ser.serialize_str(one),
        many => many.serialize(ser),
    }
}

/// Verifies bearer tokens against the configured keys. Cheap to clone behind an `Arc`.
pub struct Verifier {
    hs256: Option<DecodingKey>,
    by_kid: HashMap<String, (Algorithm, DecodingKey)>,
    /// Keys of the identity provider's JWKS document, replaced wholesale on each refresh.
    jwks: std::sync::RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    jwks_url: Option<String>,
    /// Keys of the tokens this process issues itself (the gateway's built-in accounts), loaded
    /// by the issuer from its own store: kept apart from the JWKS keys, which a refresh replaces
    /// wholesale, so the issuer verifies its tokens whether or not its own JWKS was fetched yet.
    issued: std::sync::RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    /// Woken by a token whose `kid` is unknown, so the JWKS refresher fetches the document
    /// again at once instead of at the next period: an identity provider that rotates its
    /// signing key issues tokens with the new `kid` before any period would pass.
    unknown_kid: tokio::sync::Notify,
    issuer: String,
    audience: String,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hs256", &self.hs256.is_some())
            .field("kids", &self.by_kid.keys().collect::<Vec<_>>())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl Verifier {
    /// Builds a verifier; fails if a configured PEM key does not parse.
    pub fn new(config: &AuthConfig) -> Result<Self, getlood_config::ConfigError> {
        let mut by_kid = HashMap::new();
        for (i, key) in config.public_keys.iter().enumerate() {
            let (alg, decoding) = match key.algorithm.as_str() {
                "RS256" => (Algorithm::RS256, DecodingKey::from_rsa_pem(key.pem.as_bytes())),
                "ES256" => (Algorithm::ES256, DecodingKey::from_ec_pem(key.pem.as_bytes())),
                other => {
                    return Err(getlood_config::ConfigError::invalid(
                        format!("auth.public_keys[{i}].algorithm"),
                        format!("'{other}' is not one of RS256, ES256"),
                    ));
                }
            };
            let decoding = decoding.map_err(|e| {
                getlood_config::ConfigError::invalid(format!("auth.public_keys[{i}].pem"), e.to_string())
            })?;
            by_kid.insert(key.kid.clone(), (alg, decoding));
        }
        Ok(Self {
            hs256: config.hs256_secret.as_ref().map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            by_kid,
            jwks: std::sync::RwLock::new(HashMap::new()),
            jwks_url: config.jwks_url.clone(),
            issued: std::sync::RwLock::new(HashMap::new()),
            unknown_kid: tokio::sync::Notify::new(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway: config.leeway_secs,
        })
    }

    /// The configured JWKS document URL, if any.
    pub fn jwks_url(&self) -> Option<&str> {
        self.jwks_url.as_deref()
    }

    /// Completes when a token named a `kid` this verifier does not know (the JWKS refresher
    /// then fetches the document again, rate-limited on its side).
    pub async fn unknown_kid_seen(&self) {
        self.unknown_kid.notified().await;
    }

    /// Replaces the JWKS keys with those of `document` (a JWK Set JSON), returning how many
    /// usable RS256/ES256 signing keys it held. Keys without `kid` or of other types are skipped.
    pub fn load_jwks(&self, document: &str) -> Result<usize, AuthError> {
        let keys = parse_jwks(document)?;
        let count = keys.len();
        *self.jwks.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(count)
    }

    /// Replaces the keys of the tokens this process issues itself with those of `document` (a
    /// JWK Set JSON, as the issuer publishes it), returning how many it holds. Independent of
    /// the JWKS keys of [`Verifier::load_jwks`].
    pub fn set_issued_keys(&self, document: &str) -> Result<usize, AuthError> {
        let keys = parse_jwks(document)?;
        let count = keys.len();
        *self.issued.write().unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
        Ok(count)
    }

    /// The issuer every accepted token names.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Verifies the value of an `Authorization` header (`Bearer <jwt>`).
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::MissingToken)?
            .trim();
        self.verify(token)
    }

    /// Verifies the bearer token in gRPC request metadata.
    pub fn verify_metadata(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Principal, AuthError> {
        self.verify_header(metadata.get(crate::AUTHORIZATION).and_then(|v| v.to_str().ok()))
    }

    /// Verifies `token` and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let alg = raw_algorithm(token)?;
        let (algorithm, key) = match alg.as_str() {
            "HS256" => {
                (Algorithm::HS256, self.hs256.clone().ok_or_else(|| AuthError::AlgorithmNotAllowed(alg.clone()))?)
            }
            "RS256" | "ES256" => {
                let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
                let jwks = self.jwks.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                let issued = self.issued.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                let (key_alg, key) = match header.kid {
                    Some(kid) => {
                        match self.by_kid.get(&kid).or_else(|| jwks.get(&kid)).or_else(|| issued.get(&kid)).cloned() {
                            Some(key) => key,
                            None => {
                                if self.jwks_url.is_some() {
                                    self.unknown_kid.notify_one();
                                }
                                return Err(AuthError::UnknownKey(kid));
                            }
                        }
                    }
                    None => self
                        .by_kid
                        .values()
                        .chain(jwks.values())
                        .chain(issued.values())
                        .find(|(a, _)| *a == header.alg)
                        .cloned()
                        .ok_or_else(|| AuthError::AlgorithmNotAllowed(alg.clone()))?,
                };
                // The key fixes the algorithm: a token cannot pick a weaker one for a known kid.
                if key_alg != header.alg {
                    return Err(AuthError::AlgorithmNotAllowed(alg));
                }
                (key_alg, key)
            }
            _ => return Err(AuthError::AlgorithmNotAllowed(alg)),
        };
        let key = &key;

        let mut validation = Validation::new(algorithm);
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;

        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| self.map_error(e))?;
        let claims = data.claims;
        let tenant_raw = claims.tenant.ok_or_else(|| AuthError::MissingClaim("tenant".to_owned()))?;
        let tenant = TenantId::parse(&tenant_raw).map_err(AuthError::InvalidTenant)?;
        if claims.sub.is_empty() {
            return Err(AuthError::MissingClaim("sub".to_owned()));
        }
        Ok(Principal { tenant, user: claims.sub, roles: claims.roles, expires_at: claims.exp, token: token.to_owned() })
    }

    fn map_error(&self, err: jsonwebtoken::errors::Error) -> AuthError {
        match err.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::InvalidSignature,
            ErrorKind::InvalidAudience => AuthError::InvalidAudience(self.audience.clone()),
            ErrorKind::InvalidIssuer => AuthError::InvalidIssuer(self.issuer.clone()),
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            ErrorKind::InvalidAlgorithm => AuthError::AlgorithmNotAllowed("mismatch".to_owned()),
            _ => AuthError::Malformed(err.to_string()),
        }
    }
}

/// The usable RS256/ES256 signing keys of a JWK Set document, by `kid`. Keys without `kid` or
/// of other types are skipped.
fn parse_jwks(document: &str) -> Result<HashMap<String, (Algorithm, DecodingKey)>, AuthError> {
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(document).map_err(|e| AuthError::Malformed(format!("jwks document: {e}")))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else { continue };
        let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (jsonwebtoken::jwk::AlgorithmParameters::RSA(_), None | Some(jsonwebtoken::jwk::KeyAlgorithm::RS256)) => {
                Algorithm::RS256
            }
            (
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_),
                None | Some(jsonwebtoken::jwk::KeyAlgorithm::ES256),
            ) => Algorithm::ES256,
            _ => continue,
        };
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid, (alg, key));
        }
    }
    Ok(keys)
}

/// Reads `alg` from the token header ourselves: jsonwebtoken cannot even parse `"none"`, and the
/// client deserves to hear that the algorithm, not the token's shape, is the problem.
fn raw_algorithm(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed("expected three dot-separated segments".to_owned()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("header is not base64url".to_owned()))?;
    #[derive(Deserialize)]
    struct RawHeader {
        alg: Option<String>,
    }
    let raw: RawHeader =
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed("header is not a JSON object".to_owned()))?;
    raw.alg.ok_or_else(|| AuthError::Malformed("header has no 'alg'".to_owned()))
}

/// Signs an HS256 development token (used by `make dev`, the testkit and benchmarks).
pub fn dev_token(
    secret: &str,
    issuer: &str,
    audience: &str,
    tenant: &str,
    user: &str,
    roles: &[&str],
    ttl_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: user.to_owned(),
        tenant: Some(tenant.to_owned()),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        exp: now + ttl_secs,
        iat: Some(now),
        aud: vec![audience.to_owned()],
        iss: issuer.to_owned(),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    use secrecy::SecretString;

    use super::*;
    use crate::PublicKeyConfig;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config() -> AuthConfig {
        AuthConfig { hs256_secret: Some(SecretString::from(SECRET)), ..AuthConfig::default() }
    }

    fn sign(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    }

    fn claims() -> serde_json::Value {
        serde_json::json!({
            "sub": "alice", "tenant": "acme", "roles": ["admin"],
            "exp": jsonwebtoken::get_current_timestamp() + 600, "aud": "getlood", "iss": "getlood",
        })
    }

    #[test]
    fn valid_token_yields_principal() {
        let v = Verifier::new(&config()).unwrap();
        let p = v.verify_header(Some(&format!("Bearer {}", sign(claims(), SECRET)))).unwrap();
        assert_eq!(p.tenant.as_str(), "acme");
        assert_eq!(p.user, "alice");
        assert!(p.has_role("admin"));
    }

    #[test]
    fn audience_arrays_and_role_strings_of_identity_providers() {
        let v = Verifier::new(&config()).unwrap();
        let mut several = claims();
        several["aud"] = serde_json::json!(["https://idp.example.com/userinfo", "getlood"]);
        several["roles"] = serde_json::json!("builder operator,viewer");
        let p = v.verify(&sign(several, SECRET)).unwrap();
        assert_eq!(p.roles, ["builder", "operator", "viewer"]);
        let mut none_ours = claims();
        none_ours["aud"] = serde_json::json!(["https://idp.example.com/userinfo", "other"]);
        assert_eq!(v.verify(&sign(none_ours, SECRET)), Err(AuthError::InvalidAudience("getlood".into())));
        let mut null_roles = claims();
        null_roles["roles"] = serde_json::Value::Null;
        assert!(v.verify(&sign(null_roles, SECRET)).unwrap().roles.is_empty());
        // A development token still carries its audience as a plain string.
        let dev = dev_token(SECRET, "getlood", "getlood", "acme", "alice", &["admin"], 60).unwrap();
        let payload = dev.split('.').nth(1).unwrap();
        let payload: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(payload["aud"], "getlood");
    }

    #[test]
    fn rejection_matrix() {
        let v = Verifier::new(&config()).unwrap();
        let mut expired = claims();
        expired["exp"] = serde_json::json!(jsonwebtoken::get_current_timestamp() - 3600);
        let mut wrong_aud = claims();
        wrong_aud["aud"] = serde_json::json!("other");
        let mut wrong_iss = claims();
        wrong_iss["iss"] = serde_json::json!("evil");
        let mut no_tenant = claims();
        no_tenant.as_object_mut().unwrap().remove("tenant");
        let mut bad_tenant = claims();
        bad_tenant["tenant"] = serde_json::json!("a`b");
        let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let alg_none = format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(&claims()));

        let cases = [
            (sign(expired, SECRET), AuthError::Expired),
            (sign(claims(), "another-secret-another-secret-xx"), AuthError::InvalidSignature),
            (sign(wrong_aud, SECRET), AuthError::InvalidAudience("getlood".into())),
            (sign(wrong_iss, SECRET), AuthError::InvalidIssuer("getlood".into())),
            (sign(no_tenant, SECRET), AuthError::MissingClaim("tenant".into())),
            (sign(bad_tenant, SECRET), AuthError::InvalidTenant("a`b".into())),
            (alg_none, AuthError::AlgorithmNotAllowed("none".into())),
            ("abc".to_owned(), AuthError::Malformed("expected three dot-separated segments".into())),
        ];
        for (token, want) in cases {
            assert_eq!(v.verify(&token), Err(want));
        }
        assert_eq!(v.verify_header(None), Err(AuthError::MissingToken));
        assert_eq!(v.verify_header(Some("Basic abc")), Err(AuthError::MissingToken));
    }

    #[test]
    fn rs256_with_kid_and_no_algorithm_confusion() {
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let cfg = AuthConfig {
            hs256_secret: None,
            public_keys: vec![PublicKeyConfig { kid: "k1".into(), algorithm: "RS256".into(), pem: public_pem.clone() }],
            ..AuthConfig::default()
        };
        cfg.validate("auth").unwrap();
        let v = Verifier::new(&cfg).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap())
                .unwrap();
        assert_eq!(v.verify(&token).unwrap().user, "alice");

        // HS256 signed with the public key as secret (the classic confusion attack) is refused.
        let forged = sign(claims(), &public_pem);
        assert_eq!(v.verify(&forged), Err(AuthError::AlgorithmNotAllowed("HS256".into())));
        // An unknown kid is named.
        header.kid = Some("k2".into());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap())
                .unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::UnknownKey("k2".into())));
    }

    #[test]
    fn jwks_keys_verify_by_kid_and_are_replaced_on_refresh() {
        use rsa::traits::PublicKeyParts as _;
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 2048).unwrap();
        let b64 = |b: Vec<u8>| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwks = serde_json::json!({"keys": [{
            "kty": "RSA", "kid": "idp-1", "alg": "RS256", "use": "sig",
            "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be()),
        }]});
        let cfg = AuthConfig {
            hs256_secret: None,
            jwks_url: Some("https://idp.example/jwks.json".into()),
            ..AuthConfig::default()
        };
        cfg.validate("auth").unwrap();
        let v = Verifier::new(&cfg).unwrap();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("idp-1".into());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap();
        // Before the first fetch the key is unknown.
        assert_eq!(v.verify(&token), Err(AuthError::UnknownKey("idp-1".into())));
        assert_eq!(v.load_jwks(&jwks.to_string()).unwrap(), 1);
        assert_eq!(v.verify(&token).unwrap().user, "alice");
        // A rotation that drops the key revokes its tokens.
        assert_eq!(v.load_jwks(r#"{"keys": []}"#).unwrap(), 0);
        assert_eq!(v.verify(&token), Err(AuthError::UnknownKey("idp-1".into())));
        assert!(v.load_jwks("not json").is_err());
    }

    #[test]
    fn issued_keys_verify_and_survive_a_jwks_refresh() {
        let private = p256::SecretKey::random(&mut rand::thread_rng());
        let mut jwk: serde_json::Value = serde_json::from_str(&private.public_key().to_jwk_string()).unwrap();
        jwk["kid"] = serde_json::json!("own-1");
        jwk["alg"] = serde_json::json!("ES256");
        let document = serde_json::json!({"keys": [jwk]}).to_string();
        let v = Verifier::new(&config()).unwrap();
        let pem = p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&private, p256::pkcs8::LineEnding::LF).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("own-1".into());
        let token =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap();
        assert_eq!(v.verify(&token), Err(AuthError::UnknownKey("own-1".into())));
        assert_eq!(v.set_issued_keys(&document).unwrap(), 1);
        assert_eq!(v.verify(&token).unwrap().user, "alice");
        // An identity provider's refresh replaces its own keys, never the issued ones.
        assert_eq!(v.load_jwks(r#"{"keys": []}"#).unwrap(), 0);
        assert_eq!(v.verify(&token).unwrap().user, "alice");
    }

    #[test]
    fn config_validation_names_keys() {
        let short = AuthConfig { hs256_secret: Some(SecretString::from("short")), ..AuthConfig::default() };
        assert!(short.validate("auth").unwrap_err().to_string().contains("auth.hs256_secret"));
        let none = AuthConfig { hs256_secret: None, ..AuthConfig::default() };
        assert!(none.validate("auth").unwrap_err().to_string().contains("auth.public_keys"));
    }
}
