//! The real `getlood` binary running one service (`getlood gateway`, as its Deployment does):
//! refuses bad configuration by name, and exits cleanly on SIGTERM. Every service goes through
//! the same `getlood_server::cli::main`.

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
        .env("GETLOOD_GATEWAY_LOG_FORMAT", "json");
    cmd
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
    let mut child = gateway().stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // Wait for the listening line (JSON logs), proving the server is up before the signal.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines.next().expect("binary exited before listening").unwrap();
        if line.contains("service listening") {
            break;
        }
        assert!(Instant::now() < deadline, "no listening line");
    }
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
