//! The real `getlood` binary running one service (`getlood gateway`, as its Deployment does):
//! refuses bad configuration by name, and exits cleanly on SIGTERM. Every service goes through
//! the same `getlood_server::cli::main`.

// Helpers of test code: a failed unwrap is the test failing, with its location; a child left
// behind by a failing helper dies with the test process.
#![allow(clippy::unwrap_used, clippy::zombie_processes)]

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_getlood");

fn gateway() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("gateway")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GETLOOD_GATEWAY_HTTP_ADDR", "127.0.0.1:0")
        .env("GETLOOD_GATEWAY_GRPC_ADDR", "127.0.0.1:0")
        .env("GETLOOD_GATEWAY_ADMIN_ADDR", "127.0.0.1:0")
        .env("GETLOOD_GATEWAY_LOG_FORMAT", "json")
        .env("GETLOOD_GATEWAY_AUTH__HS256_SECRET", "a-test-secret-that-is-long-enough-0123456789");
    cmd
}

type Logs = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Starts `cmd` and waits for its JSON "service listening" line (the server is up): the child,
/// its HTTP address from that line, and the rest of its log lines.
fn start(mut cmd: Command) -> (std::process::Child, String, Logs) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines.next().expect("binary exited before listening").unwrap();
        if line.contains("service listening") {
            let json: serde_json::Value = serde_json::from_str(&line).unwrap();
            let addr = json["fields"]["http_addr"].as_str().or(json["http_addr"].as_str()).unwrap().to_owned();
            return (child, addr, lines);
        }
        assert!(Instant::now() < deadline, "no listening line");
    }
}

/// The status code of `GET path` with `token`, over a plain HTTP/1.0 exchange.
fn get_status(addr: &str, path: &str, token: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nAuthorization: Bearer {token}\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn without_any_key_the_service_refuses_to_start_naming_the_settings() {
    let out = gateway().env_remove("GETLOOD_GATEWAY_AUTH__HS256_SECRET").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("auth.jwks_url") && stderr.contains("auth.hs256_secret"), "{stderr}");
}

#[test]
fn an_oidc_install_refuses_tokens_signed_with_the_development_secret() {
    // OIDC only, as the chart renders it with `auth.jwksUrl` and no HS256 secret (the IdP is not
    // reachable here: its keys are simply absent, which changes nothing for an HS256 token).
    let mut cmd = gateway();
    cmd.env_remove("GETLOOD_GATEWAY_AUTH__HS256_SECRET")
        .env("GETLOOD_GATEWAY_AUTH__JWKS_URL", "http://127.0.0.1:9/.well-known/jwks.json");
    let (mut child, addr, lines) = start(cmd);
    // Keep draining the logs so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let forged = getlood_auth::dev_token(
        getlood_auth::DEV_HS256_SECRET,
        "getlood",
        "getlood",
        "victim",
        "mallory",
        &["admin"],
        600,
    )
    .unwrap();
    let status = get_status(&addr, "/api/v1/me", &forged);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 401, "a token signed with the public development secret was accepted");
}

#[test]
fn unknown_key_refuses_start_and_names_it() {
    let out = gateway().env("GETLOOD_GATEWAY_HTTP_ADRR", "127.0.0.1:1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(stderr.contains("http_adrr"), "{stderr}");
}

#[test]
fn invalid_values_refuse_start_and_name_the_key() {
    for (key, value, named) in [
        ("GETLOOD_GATEWAY_SHUTDOWN_TIMEOUT", "soon", "shutdown_timeout"),
        ("GETLOOD_GATEWAY_REDIS__URL", "http://redis", "redis.url"),
        ("GETLOOD_GATEWAY_AUTH__HS256_SECRET", "short", "auth.hs256_secret"),
        ("GETLOOD_GATEWAY_APP__MAX_BODY_BYTES", "10", "app.max_body_bytes"),
        // The gateway owns no MindsDB adapter: a MindsDB setting meant for another service is
        // refused, not silently ignored.
        ("GETLOOD_GATEWAY_MINDSDB__URL", "http://mindsdb:47334", "url"),
    ] {
        let out = gateway().env(key, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}");
        let stderr = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(stderr.contains(named), "{key}: {stderr}");
    }
}

#[test]
fn sigterm_stops_the_binary_cleanly() {
    let (mut child, _, lines) = start(gateway());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(rest.iter().any(|l| l.contains("service stopped")), "{rest:?}");
    let stopped = rest.iter().find(|l| l.contains("service stopped")).unwrap();
    let json: serde_json::Value = serde_json::from_str(stopped).unwrap();
    assert_eq!(json["level"], "INFO");
}
