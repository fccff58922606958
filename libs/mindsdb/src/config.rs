use std::time::Duration;

use getlood_config::ConfigError;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

/// How a service reaches MindsDB. Embedded in every service's config under the key `mindsdb`
/// (env `GETLOOD_<SVC>_MINDSDB__URL`, `..._MINDSDB__REQUEST_TIMEOUT=30s`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MindsdbConfig {
    /// Base URL of MindsDB's HTTP API, e.g. `http://127.0.0.1:47334`.
    pub url: String,
    /// User for MindsDB's HTTP auth (`MINDSDB_USERNAME` on the server). Unset: no login.
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(serialize_with = "serialize_secret_opt")]
    pub password: Option<SecretString>,
    /// Deadline of one SQL or REST request, retries excluded.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline for opening a TCP connection; short, so a down MindsDB fails fast.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of a whole agent answer stream (agents make several LLM calls).
    #[serde(with = "humantime_serde")]
    pub stream_timeout: Duration,
    /// Requests in flight per client. A MindsDB 26.1 replica on 2 cores topped out near 75 req/s
    /// with 8 clients (median ~100 ms against 12 ms alone), so more in flight only queues there.
    pub max_concurrency: usize,
    /// Requests in flight for one tenant at most (of `max_concurrency`), so one tenant's slow
    /// agent questions cannot hold every slot while the others wait.
    pub max_concurrency_per_tenant: usize,
    /// Whether the limit follows MindsDB's load (probed while requests are in flight) instead of
    /// staying at `max_concurrency`: see the crate's `fair` module. Off only to compare.
    pub adaptive_concurrency: bool,
    /// How often MindsDB is probed while this client has requests in flight.
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    /// A probe (`GET /api/status`) slower than this means MindsDB is saturated and the limit
    /// shrinks. Idle, the probe takes 1-3 ms here; with one agent answer computing it takes
    /// about 10 ms, with two or more 30 ms and up.
    #[serde(with = "humantime_serde")]
    pub congested_above: Duration,
    /// How long a tenant keeps its share of the slots after its last request ended, so its
    /// user's next question (a moment later) does not find it taken by a busier tenant.
    #[serde(with = "humantime_serde")]
    pub tenant_linger: Duration,
    /// Retries of a transient failure (connect error, 502/503/504); never for a statement
    /// that may already have taken effect.
    pub retries: u32,
    /// First retry delay; doubled on each further retry.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// PEM bundle of the CAs that sign MindsDB's certificate, for an `https` `url` behind a
    /// private CA. Unset: the system roots. Set: only these CAs are trusted.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for MindsdbConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:47334".to_owned(),
            username: None,
            password: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(2),
            stream_timeout: Duration::from_secs(120),
            max_concurrency: 8,
            max_concurrency_per_tenant: 4,
            adaptive_concurrency: true,
            probe_interval: Duration::from_millis(250),
            congested_above: Duration::from_millis(25),
            tenant_linger: Duration::from_millis(250),
            retries: 2,
            retry_backoff: Duration::from_millis(100),
            ca_file: None,
        }
    }
}

/// As the `mindsdb` section of a service's configuration.
impl getlood_config::Validate for MindsdbConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_at("mindsdb")
    }
}

impl MindsdbConfig {
    /// Checks the values, naming the offending key under `prefix` (e.g. `mindsdb`).
    pub fn validate_at(&self, prefix: &str) -> Result<(), ConfigError> {
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ConfigError::invalid(format!("{prefix}.url"), format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::invalid(
                format!("{prefix}.url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::invalid(format!("{prefix}.url"), "must not have a query or fragment"));
        }
        if self.username.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::invalid(format!("{prefix}.username"), "must not be empty when set"));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::invalid(
                format!("{prefix}.password"),
                "username and password must be set together",
            ));
        }
        if self.password.as_ref().is_some_and(|p| p.expose_secret().is_empty()) {
            return Err(ConfigError::invalid(format!("{prefix}.password"), "must not be empty when set"));
        }
        for (key, value) in [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("stream_timeout", self.stream_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(format!("{prefix}.{key}"), "must be greater than zero"));
            }
        }
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            return Err(ConfigError::invalid(format!("{prefix}.max_concurrency"), "must be between 1 and 1024"));
        }
        if self.max_concurrency_per_tenant == 0 || self.max_concurrency_per_tenant > self.max_concurrency {
            return Err(ConfigError::invalid(
                format!("{prefix}.max_concurrency_per_tenant"),
                "must be between 1 and max_concurrency",
            ));
        }
        if !(Duration::from_millis(20)..=Duration::from_secs(60)).contains(&self.probe_interval) {
            return Err(ConfigError::invalid(format!("{prefix}.probe_interval"), "must be between 20ms and 60s"));
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&self.congested_above) {
            return Err(ConfigError::invalid(format!("{prefix}.congested_above"), "must be between 1ms and 10s"));
        }
        if self.tenant_linger > Duration::from_secs(60) {
            return Err(ConfigError::invalid(format!("{prefix}.tenant_linger"), "must be at most 60s"));
        }
        if self.retries > 10 {
            return Err(ConfigError::invalid(format!("{prefix}.retries"), "must be at most 10"));
        }
        if let Some(path) = &self.ca_file {
            let key = format!("{prefix}.ca_file");
            if url.scheme() != "https" {
                return Err(ConfigError::invalid(key, format!("is set but {prefix}.url is not an https url")));
            }
            getlood_tls::check_ca_file(&key, path)?;
        }
        Ok(())
    }
}

fn serialize_secret_opt<S: serde::Serializer>(secret: &Option<SecretString>, ser: S) -> Result<S::Ok, S::Error> {
    // Serialized only as figment's defaults layer; the value must survive that round trip.
    match secret {
        Some(s) => ser.serialize_some(s.expose_secret()),
        None => ser.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips() {
        let cfg = MindsdbConfig::default();
        cfg.validate_at("mindsdb").unwrap();
        let json = serde_json::to_value(&cfg).unwrap();
        assert_eq!(json["request_timeout"], "30s");
        let back: MindsdbConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back.max_concurrency, 8);
    }

    #[test]
    fn rejects_bad_values_naming_the_key() {
        let cases: Vec<(MindsdbConfig, &str)> = vec![
            (MindsdbConfig { url: "ftp://x".into(), ..Default::default() }, "mindsdb.url"),
            (MindsdbConfig { url: "not a url".into(), ..Default::default() }, "mindsdb.url"),
            (MindsdbConfig { max_concurrency: 0, ..Default::default() }, "mindsdb.max_concurrency"),
            (
                MindsdbConfig { max_concurrency: 4, max_concurrency_per_tenant: 5, ..Default::default() },
                "mindsdb.max_concurrency_per_tenant",
            ),
            (MindsdbConfig { request_timeout: Duration::ZERO, ..Default::default() }, "mindsdb.request_timeout"),
            (MindsdbConfig { username: Some("admin".into()), ..Default::default() }, "mindsdb.password"),
            (MindsdbConfig { ca_file: Some("/etc/ssl/ca.pem".into()), ..Default::default() }, "mindsdb.ca_file"),
            (
                MindsdbConfig {
                    url: "https://mindsdb:47334".into(),
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..Default::default()
                },
                "mindsdb.ca_file",
            ),
        ];
        for (cfg, key) in cases {
            let err = cfg.validate_at("mindsdb").unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = serde_json::from_value::<MindsdbConfig>(serde_json::json!({"urll": "x"})).unwrap_err();
        assert!(err.to_string().contains("urll"));
    }
}
