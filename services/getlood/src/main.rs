//! `getlood`: the one binary of GETLOOD.
//!
//! `getlood <service> [serve|migrate|print-config] [--config FILE]` runs one service, as each
//! Kubernetes Deployment does (`getlood gateway`, `getlood workflow migrate`, ...).
//! `getlood dev` runs the six services in this process on their default ports (each still reads
//! its own `GETLOOD_<SERVICE>_*` settings), prints the gateway URL and a development token, and
//! stops everything on Ctrl-C. `getlood token` signs a development token.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use getlood::{Overrides, Service};
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    about = "GETLOOD: one binary for the six services",
    after_help = "Services: getlood <gateway|pipeline|desktop-state|workflow|agent-registry|event-dispatcher> \
                  [serve|migrate|print-config] [--config FILE]"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run all six services in this process until Ctrl-C.
    Dev {
        /// TOML file applied to every service (env still overrides it).
        #[arg(long, env = "GETLOOD_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Tenant of the printed development token.
        #[arg(long, default_value = "dev")]
        tenant: String,
    },
    /// Load one service's configuration from the environment (and `--config`) exactly as its
    /// binary would, and report whether it is accepted. Exit code 2 when it is not.
    CheckConfig {
        /// The service, e.g. `desktop-state`.
        #[arg(long)]
        service: String,
        /// Optional TOML file.
        #[arg(long, env = "GETLOOD_CONFIG_FILE")]
        config: Option<PathBuf>,
        /// Check it as `getlood <service> migrate` loads it (the database settings only).
        #[arg(long)]
        migrate: bool,
    },
    /// Print the gateway's OpenAPI 3.1 document, as `GET /openapi.json` serves it
    /// (`getlood openapi > docs/api/openapi.json` refreshes the checked-in copy).
    Openapi,
    /// Print a development (HS256) token signed with the gateway's configured secret.
    Token {
        /// Tenant claim.
        #[arg(long, default_value = "dev")]
        tenant: String,
        /// Subject (user id).
        #[arg(long, default_value = "developer")]
        user: String,
        /// Comma-separated roles.
        #[arg(long, default_value = "admin")]
        roles: String,
        /// Lifetime, e.g. `12h`.
        #[arg(long, default_value = "12h", value_parser = humantime_serde::re::humantime::parse_duration)]
        ttl: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    // `getlood <service> ...`: the service's own command line, as its Deployment runs it.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(service) = args.get(1).and_then(|a| a.to_str()).and_then(Service::from_name) {
        let program = format!("getlood {}", service.name());
        args.splice(0..2, [program.into()]);
        return getlood::run_service(service, args).await;
    }
    let cli = Cli::parse();
    if let Command::CheckConfig { service, config, migrate } = &cli.command {
        let Some(svc) = Service::from_name(service) else {
            eprintln!("getlood: unknown service '{service}'");
            return ExitCode::from(2);
        };
        return match getlood::check_config(svc, config.as_deref(), *migrate) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("{service}: {err}");
                ExitCode::from(2)
            }
        };
    }
    let result = match cli.command {
        Command::Dev { config, tenant } => dev(config, &tenant).await,
        Command::CheckConfig { .. } => Ok(()),
        Command::Openapi => {
            #[allow(clippy::print_stdout)]
            {
                print!("{}", getlood_gateway::openapi_json());
            }
            Ok(())
        }
        Command::Token { tenant, user, roles, ttl } => {
            token(&tenant, &user, &roles.split(',').map(str::trim).collect::<Vec<_>>(), ttl).map(|t| {
                #[allow(clippy::print_stdout)]
                {
                    println!("{t}");
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("getlood: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn gateway_config() -> anyhow::Result<getlood_gateway::Config> {
    // Not validated: a gateway without a key is what `getlood dev` completes with the dev secret.
    Ok(getlood_config::figment("gateway", None, &getlood_gateway::default_config())
        .extract()
        .map_err(getlood_config::ConfigError::from)?)
}

fn token(tenant: &str, user: &str, roles: &[&str], ttl: Duration) -> anyhow::Result<String> {
    let config = gateway_config()?;
    // The gateway's configured secret, else the development secret `getlood dev` gives a
    // service that has no key (the token is for that mode).
    let secret =
        config.auth.hs256_secret.unwrap_or_else(|| secrecy::SecretString::from(getlood_auth::DEV_HS256_SECRET));
    Ok(getlood_auth::dev_token(
        secret.expose_secret(),
        &config.auth.issuer,
        &config.auth.audience,
        tenant,
        user,
        roles,
        ttl.as_secs(),
    )?)
}

async fn dev(config_file: Option<PathBuf>, tenant: &str) -> anyhow::Result<()> {
    let telemetry = getlood_telemetry::init("getlood", getlood_telemetry::LogFormat::Pretty)?;
    let shutdown = CancellationToken::new();
    // The one place besides `getlood token` and the tests where the development secret exists:
    // a service the environment gives no key gets it, so `make dev` works with no setup.
    let mut overrides =
        Overrides { load_environment: true, config_file, dev_secret_fallback: true, ..Overrides::default() };
    // The local model listens on loopback, which the built-in egress policy refuses; an
    // allow-list given in the environment wins.
    if std::env::var_os("GETLOOD_AGENT_REGISTRY_APP__EGRESS__ALLOW").is_none() {
        overrides
            .app_settings
            .insert(Service::AgentRegistry, serde_json::json!({"egress": {"allow": getlood::DEV_EGRESS_ALLOW}}));
    }
    // Data sources on the developer's own machine (a local Postgres or MariaDB) too.
    if std::env::var_os("GETLOOD_DESKTOP_STATE_APP__EGRESS__ALLOW").is_none() {
        overrides
            .app_settings
            .insert(Service::DesktopState, serde_json::json!({"egress": {"allow": getlood::DEV_EGRESS_ALLOW}}));
    }
    // Remote A2A agents and MCP servers of workflow nodes on the developer's machine (the
    // platform's own /a2a and /mcp among them).
    if std::env::var_os("GETLOOD_WORKFLOW_APP__EGRESS__ALLOW").is_none() {
        overrides
            .app_settings
            .insert(Service::Workflow, serde_json::json!({"egress": {"allow": getlood::DEV_EGRESS_ALLOW}}));
    }
    // The web app's dev server runs on another origin; an allow-list given in the environment
    // wins.
    if std::env::var_os("GETLOOD_GATEWAY_APP__CORS_ALLOWED_ORIGINS").is_none() {
        overrides
            .app_settings
            .insert(Service::Gateway, serde_json::json!({"cors_allowed_origins": getlood::DEV_CORS_ORIGINS}));
    }
    // Built-in accounts: the other services verify the gateway's tokens with its JWKS (the
    // development secret stays accepted); an `AUTH__JWKS_URL` given in the environment wins.
    let gateway_port = gateway_config()?.http_addr.port();
    overrides.issuer_jwks_url = Some(format!("http://127.0.0.1:{gateway_port}{}", getlood_gateway::JWKS_PATH));
    // The web desktop, built by `make dev` into web/dist, at the gateway's `/`.
    if std::env::var_os("GETLOOD_GATEWAY_APP__WEB_DIR").is_none() && std::path::Path::new(getlood::DEV_WEB_DIR).is_dir()
    {
        let gateway = overrides.app_settings.entry(Service::Gateway).or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = gateway.as_object_mut() {
            obj.insert("web_dir".to_owned(), serde_json::json!(getlood::DEV_WEB_DIR));
        }
    }
    // A2A push-notification webhooks on the developer's machine (a local receiver); an
    // allow-list given in the environment wins.
    if std::env::var_os("GETLOOD_GATEWAY_APP__EGRESS__ALLOW").is_none() {
        let gateway = overrides.app_settings.entry(Service::Gateway).or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = gateway.as_object_mut() {
            obj.insert("egress".to_owned(), serde_json::json!({"allow": getlood::DEV_EGRESS_ALLOW}));
        }
    }
    let mut started = Vec::new();
    for service in Service::ALL {
        match getlood::start(service, &overrides, None, shutdown.clone()).await {
            Ok(s) => started.push(s),
            Err(err) => {
                shutdown.cancel();
                for s in started {
                    let _ = s.task.await;
                }
                return Err(anyhow::anyhow!("{} cannot start: {err}", service.name()));
            }
        }
    }
    let gateway = started.iter().find(|s| s.service == Service::Gateway).context("gateway not started")?;
    let url = format!("http://{}", local(gateway.http_addr));
    let token = token(tenant, "developer", &["admin"], Duration::from_secs(12 * 3600))?;
    #[allow(clippy::print_stdout)]
    {
        println!();
        println!("GETLOOD is up (all six services in one process).");
        for s in &started {
            println!(
                "  {:<17} http://{}  grpc://{}  admin (metrics, readiness): http://{}",
                s.service.name(),
                local(s.http_addr),
                local(s.grpc_addr),
                local(s.admin_addr)
            );
        }
        println!();
        println!("Gateway:  {url}");
        println!("Token:    {token}");
        println!("Try:      curl -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/me");
        if std::path::Path::new(getlood::DEV_WEB_DIR).is_dir() {
            println!("Web app:  {url}/ (sign up to create a tenant)");
        }
        println!("Ctrl-C stops everything.");
    }
    // The signal watcher outlives every service's tracker: it is what stops them.
    #[allow(clippy::disallowed_methods)]
    tokio::spawn(getlood_server::shutdown_signal(shutdown.clone()));
    let mut failed = None;
    for s in started {
        match s.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                shutdown.cancel();
                failed.get_or_insert(anyhow::anyhow!("{} failed: {err}", s.service.name()));
            }
            Err(err) => {
                shutdown.cancel();
                failed.get_or_insert(anyhow::anyhow!("{} panicked: {err}", s.service.name()));
            }
        }
    }
    telemetry.shutdown().await;
    failed.map_or(Ok(()), Err)
}

/// Shows `0.0.0.0:8080` as `127.0.0.1:8080`, the address a developer can click.
fn local(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() { std::net::SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr }
}
