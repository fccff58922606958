//! The shared `main` of every service binary: parse flags, load config, init telemetry, bind,
//! run until SIGTERM, then flush telemetry last.

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use getlood_config::Validate;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::{Infra, Listeners, Result, Runtime, ServiceConfig, ServiceSpec, shutdown_signal};

#[derive(Debug, Parser)]
struct Cli {
    /// Optional TOML config file; env `GETLOOD_<SERVICE>_*` overrides it.
    #[arg(long, env = "GETLOOD_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum Command {
    /// Serve (the default).
    Serve,
    /// Create the service's Postgres schema, apply its migrations, and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and exit.
    PrintConfig,
}

/// Runs one service as its own process over `args` (the first is the program name): the
/// `getlood <service> [serve|migrate|print-config]` command of the one binary. `run` is the
/// service's library entry point.
pub async fn main<A, M, F, Fut, I, T>(
    spec: ServiceSpec,
    defaults: ServiceConfig<A, M>,
    migrator: Option<&'static sqlx::migrate::Migrator>,
    run: F,
    args: I,
) -> ExitCode
where
    A: Serialize + DeserializeOwned + Validate,
    M: Serialize + DeserializeOwned + Validate + Default,
    F: FnOnce(ServiceConfig<A, M>, Runtime, Listeners) -> Fut,
    Fut: Future<Output = Result<()>>,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let loaded = getlood_config::figment(spec.name, cli.config.as_deref(), &defaults)
        .extract::<ServiceConfig<A, M>>()
        .map_err(getlood_config::ConfigError::from)
        .and_then(|config| {
            // A migration Job verifies no token: it needs the database settings, not a key.
            let checked =
                if matches!(command, Command::Migrate) { config.validate_storage() } else { config.validate() };
            checked.map(|()| config)
        });
    let config = match loaded {
        Ok(config) => config,
        Err(err) => {
            // Telemetry is not up yet, and this must reach the operator: stderr it is.
            eprintln!("{}: refusing to start: {err}", spec.name);
            return ExitCode::from(2);
        }
    };
    let telemetry = match getlood_telemetry::init(spec.name, config.log_format) {
        Ok(guard) => guard,
        Err(err) => {
            eprintln!("{}: refusing to start: {err}", spec.name);
            return ExitCode::from(2);
        }
    };
    let outcome = match command {
        Command::Serve => serve(spec, config, migrator, run).await,
        Command::Migrate => migrate(spec, &config, migrator).await,
        Command::PrintConfig => {
            let mut value = serde_json::to_value(&config).unwrap_or_default();
            redact(&mut value);
            // The command's output is the document itself, for a shell or a CI step to read; a
            // reader that closes the pipe early (`| head`) is not an error of the service.
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            Ok(())
        }
    };
    let code = match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(service = spec.name, error = %err, "service failed");
            ExitCode::FAILURE
        }
    };
    // Last: flush spans recorded during the drain.
    telemetry.shutdown().await;
    code
}

async fn serve<A, M, F, Fut>(
    spec: ServiceSpec,
    config: ServiceConfig<A, M>,
    migrator: Option<&'static sqlx::migrate::Migrator>,
    run: F,
) -> Result<()>
where
    F: FnOnce(ServiceConfig<A, M>, Runtime, Listeners) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let listeners = Listeners::bind(config.http_addr, config.grpc_addr, config.admin_addr).await?;
    let shutdown = CancellationToken::new();
    // The signal watcher is the one task outside the runtime's tracker: it must outlive it.
    #[allow(clippy::disallowed_methods)]
    let signal = tokio::spawn(shutdown_signal(shutdown.clone()));
    let result = crate::run_service(spec, config, migrator, listeners, shutdown.clone(), run).await;
    shutdown.cancel();
    let _ = signal.await;
    result
}

async fn migrate<A, M>(
    spec: ServiceSpec,
    config: &ServiceConfig<A, M>,
    migrator: Option<&'static sqlx::migrate::Migrator>,
) -> Result<()> {
    if !spec.needs.postgres {
        tracing::info!(service = spec.name, "no postgres schema to migrate");
        return Ok(());
    }
    let infra = Infra::connect(crate::Needs { postgres: true, ..Default::default() }, config, spec.name).await?;
    infra.migrate(&config.postgres.schema, migrator).await?;
    tracing::info!(service = spec.name, schema = %config.postgres.schema, "migrations applied");
    Ok(())
}

/// Blanks every value whose key looks secret, and the credentials inside every URL setting,
/// whatever its key (`postgres.url`, `redis.url`, `nats.url`, `mindsdb.url`, `auth.jwks_url`,
/// model `base_url`s, ...): see [`redact_url`].
fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                let k = key.to_ascii_lowercase();
                let secret_key = k.contains("secret")
                    || k.contains("password")
                    || k.contains("token")
                    || k == "pem"
                    || k == "key"
                    || k.ends_with("_key");
                if secret_key {
                    if !v.is_null() {
                        *v = serde_json::Value::String(REDACTED.to_owned());
                    }
                } else {
                    redact(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        serde_json::Value::String(s) if s.contains("://") => *s = redact_url(s),
        _ => {}
    }
}

const REDACTED: &str = "[redacted]";

/// The URL (or comma-separated URLs, as `nats.url` takes) with its credentials blanked:
/// `user:password@` keeps the user (`user:[redacted]@`), a lone userinfo is a token
/// (`nats://TOKEN@host`, `redis://PASSWORD@host`) and is blanked whole, and every query
/// parameter whose name looks secret (`password`, `token`, `api_key`, `secret`, `auth`, ...;
/// `ssl*` file paths excepted) gets `[redacted]` as its value. The rest stays as written, so an
/// operator still sees hosts, ports, databases and TLS settings.
fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one_url).collect::<Vec<_>>().join(",")
}

fn redact_one_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) if !user.is_empty() => format!("{user}:{REDACTED}@{host}"),
            _ => format!("{REDACTED}@{host}"),
        },
        None => authority.to_owned(),
    };
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (tail, None),
    };
    let tail = match before_fragment.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if secret_param(name) => format!("{name}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => before_fragment.to_owned(),
    };
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{scheme}://{authority}{tail}{fragment}")
}

/// Whether a query parameter named `name` carries a credential.
fn secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    !name.starts_with("ssl")
        && ["pass", "pwd", "secret", "token", "key", "auth", "credential", "sig"].iter().any(|w| name.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        let mut v = serde_json::json!({
            "postgres": {"url": "postgres://app:hunter2@db:5432/x"},
            "auth": {"hs256_secret": "s", "public_keys": [{"pem": "k", "kid": "a"}]},
        });
        redact(&mut v);
        assert_eq!(v["postgres"]["url"], "postgres://app:[redacted]@db:5432/x");
        assert_eq!(v["auth"]["hs256_secret"], "[redacted]");
        assert_eq!(v["auth"]["public_keys"][0]["pem"], "[redacted]");
        assert_eq!(v["auth"]["public_keys"][0]["kid"], "a");
    }

    #[test]
    fn every_url_setting_loses_its_credentials() {
        let mut v = serde_json::json!({
            "postgres": {"url": "postgres://app@db:5432/x?sslmode=verify-full&sslrootcert=/etc/getlood/ca/pg.pem&password=hunter2"},
            "redis": {"url": "rediss://:s3cret@cache:6380/0"},
            "nats": {"url": "tls://TOKEN123@nats-1:4222, nats://user:pw@nats-2:4222"},
            "mindsdb": {"url": "https://mindsdb:47334/api?user=admin&PassWord=pw1#frag"},
            "auth": {"jwks_url": "https://idp.example/jwks.json?access_token=abc&tenant=t1"},
            "app": {"intent_model": {"base_url": "http://model:8080/v1?api_key=sk-1", "api_key": "sk-2"},
                    "key_prefix": "getlood"},
            "services": {"gateway": "http://127.0.0.1:9090"},
        });
        redact(&mut v);
        let out = v.to_string();
        for secret in ["hunter2", "s3cret", "TOKEN123", "pw@", "pw1", "abc", "sk-1", "sk-2"] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert_eq!(
            v["postgres"]["url"],
            "postgres://[redacted]@db:5432/x?sslmode=verify-full&sslrootcert=/etc/getlood/ca/pg.pem&password=[redacted]"
        );
        assert_eq!(v["redis"]["url"], "rediss://[redacted]@cache:6380/0");
        assert_eq!(v["nats"]["url"], "tls://[redacted]@nats-1:4222, nats://user:[redacted]@nats-2:4222");
        assert_eq!(v["mindsdb"]["url"], "https://mindsdb:47334/api?user=admin&PassWord=[redacted]#frag");
        assert_eq!(v["auth"]["jwks_url"], "https://idp.example/jwks.json?access_token=[redacted]&tenant=t1");
        assert_eq!(v["app"]["key_prefix"], "getlood");
        assert_eq!(v["services"]["gateway"], "http://127.0.0.1:9090");
    }
}
