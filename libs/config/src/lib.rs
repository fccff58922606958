//! Layered configuration for every GETLOOD service, after Restate's figment loader.
//!
//! Precedence, lowest first: the config type's `Default`, an optional TOML file, then
//! environment variables `GETLOOD_<SERVICE>_<KEY>` with `__` separating nested keys
//! (`GETLOOD_GATEWAY_POSTGRES__URL`). Config types use `#[serde(deny_unknown_fields)]`, so a
//! misspelt key anywhere refuses the start and names the key and where it came from.

use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key is unknown, has the wrong type, or a file cannot be parsed.
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A key parsed but its value is not acceptable.
    #[error("invalid configuration: key `{key}`: {message}")]
    Invalid {
        /// The dotted key path, e.g. `auth.hs256_secret`.
        key: String,
        /// What is wrong with its value.
        message: String,
    },
}

impl ConfigError {
    /// A value error for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.into(), message: message.into() }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        // figment reports every error of a run; each one names its key path and source.
        let all: Vec<String> = err.into_iter().map(|e| e.to_string()).collect();
        Self::Load(all.join("; "))
    }
}

/// A configuration type that can check its own values after loading.
pub trait Validate {
    /// Returns the first unacceptable value, naming its key.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Refuses the first of `durations` (key, value) that is zero, naming its key: every timeout,
/// interval and lease of every service must be positive.
pub fn require_positive<'a>(
    durations: impl IntoIterator<Item = (&'a str, std::time::Duration)>,
) -> Result<(), ConfigError> {
    match durations.into_iter().find(|(_, value)| value.is_zero()) {
        Some((key, _)) => Err(ConfigError::invalid(key, "must be greater than zero")),
        None => Ok(()),
    }
}

/// Refuses a key-encryption secret (`key`) shorter than 32 bytes: the sealing key is derived
/// from it, so a short one is guessable. Unset is accepted (each service says what it does then).
pub fn require_key_encryption_key(key: &str, secret: Option<&secrecy::SecretString>) -> Result<(), ConfigError> {
    use secrecy::ExposeSecret as _;
    match secret {
        Some(s) if s.expose_secret().len() < 32 => Err(ConfigError::invalid(key, "must be at least 32 bytes")),
        _ => Ok(()),
    }
}

/// Serializes an optional secret setting as its value: settings are serialized only as
/// figment's defaults layer, and the value must survive that round trip
/// (`#[serde(serialize_with = "getlood_config::serialize_secret_opt")]`).
pub fn serialize_secret_opt<S: serde::Serializer>(
    secret: &Option<secrecy::SecretString>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret as _;
    match secret {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

/// The env prefix of a service: `gateway` -> `GETLOOD_GATEWAY_`, `desktop-state` ->
/// `GETLOOD_DESKTOP_STATE_`.
pub fn env_prefix(service: &str) -> String {
    format!("GETLOOD_{}_", service.to_ascii_uppercase().replace('-', "_"))
}

/// Loads `T` for `service` from `defaults`, the optional TOML `file` and the environment, then
/// validates it.
pub fn load<T>(service: &str, file: Option<&Path>, defaults: &T) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Validate,
{
    let config: T = figment(service, file, defaults).extract()?;
    config.validate()?;
    Ok(config)
}

/// The figment behind [`load`], exposed so a launcher can merge extra layers.
pub fn figment<T: Serialize>(service: &str, file: Option<&Path>, defaults: &T) -> Figment {
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(file) = file {
        figment = figment.merge(Toml::file_exact(file));
    }
    figment.merge(Env::prefixed(&env_prefix(service)).split("__"))
}

#[cfg(test)]
// figment's `Jail` closures must return its (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        http_addr: String,
        nested: Nested,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Nested {
        url: String,
        port: u16,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.nested.port == 1 {
                return Err(ConfigError::invalid("nested.port", "port 1 is reserved"));
            }
            Ok(())
        }
    }

    #[test]
    fn env_overrides_file_overrides_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "http_addr = \"file\"\n[nested]\nurl = \"file-url\"\n")?;
            jail.set_env("GETLOOD_DESKTOP_STATE_NESTED__URL", "env-url");
            let got: Sample = load("desktop-state", Some(Path::new("c.toml")), &Sample::default()).unwrap();
            assert_eq!(got.http_addr, "file");
            assert_eq!(got.nested.url, "env-url");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_is_refused_and_named() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GETLOOD_GATEWAY_HTTP_ADRR", "x");
            let err = load("gateway", None, &Sample::default()).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("http_adrr"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn wrong_type_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GETLOOD_GATEWAY_NESTED__PORT", "eighty");
            let err = load("gateway", None, &Sample::default()).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("nested.port"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn validation_failure_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("GETLOOD_GATEWAY_NESTED__PORT", "1");
            let err = load("gateway", None, &Sample::default()).unwrap_err().to_string().to_lowercase();
            assert_eq!(err, "invalid configuration: key `nested.port`: port 1 is reserved");
            Ok(())
        });
    }
}
