//! TLS to every dependency, against real local TLS servers: a throwaway Postgres cluster with
//! `ssl=on`, `redis-server --tls-port`, `nats-server` with a `tls {}` block, and an https server
//! serving a JWKS document and MindsDB's ping route. Each is reached through the code the
//! services use (`Infra::connect`, `RedisHandle`, `nats_options`, `verifier`/`fetch_jwks`,
//! `MindsdbClient`), and each shows (a) the test CA's certificate accepted with hostname
//! verification and (b) a client trusting another CA refused, naming the certificate problem.
//!
//! The CAs and the server certificate (SANs `localhost` and `127.0.0.1`) are made with rcgen.
//! A missing server binary skips its test with a message, or fails it when
//! `GETLOOD_TEST_REQUIRE_TLS` is set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use getlood_auth::AuthConfig;
use getlood_mindsdb::{MindsdbClient, MindsdbConfig};
use getlood_server::{Infra, NatsConfig, Needs, NoSettings, RedisConfig, RedisHandle, ServiceConfig};
use p256::pkcs8::EncodePrivateKey as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;

/// What a client trusting the wrong CA must say: rustls' reason for refusing the chain.
const UNKNOWN_ISSUER: &str = "invalid peer certificate: UnknownIssuer";

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("getlood-tls-{what}-{}-{}", std::process::id(), short_id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn short_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{nanos:x}")
}

/// The test's PKI: a CA and the server certificate it signed, plus another CA that signed
/// nothing the servers present. All files are PEM in `dir`.
struct Pki {
    dir: TempDir,
    /// The CA that signed the servers' certificate.
    ca: PathBuf,
    /// Another CA: a client trusting only this one must refuse the servers.
    other_ca: PathBuf,
    /// The server certificate (SANs `localhost`, `127.0.0.1`).
    cert: PathBuf,
    /// Its private key (PKCS#8).
    key: PathBuf,
}

impl Pki {
    fn new(what: &str) -> anyhow::Result<Self> {
        let dir = TempDir::new(what)?;
        let (ca_params, ca_key, ca_pem) = ca("GETLOOD test CA")?;
        let (_, _, other_pem) = ca("GETLOOD other CA")?;
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let pki = Self {
            ca: dir.path("ca.pem"),
            other_ca: dir.path("other-ca.pem"),
            cert: dir.path("server.crt"),
            key: dir.path("server.key"),
            dir,
        };
        std::fs::write(&pki.ca, ca_pem)?;
        std::fs::write(&pki.other_ca, other_pem)?;
        std::fs::write(&pki.cert, cert.pem())?;
        std::fs::write(&pki.key, key.serialize_pem())?;
        Ok(pki)
    }

    /// A rustls server config presenting the server certificate.
    fn server_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&self.cert)?.collect::<Result<Vec<_>, _>>()?;
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key)?;
        Ok(rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?)
    }
}

fn ca(name: &str) -> anyhow::Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let pem = params.self_signed(&key)?.pem();
    Ok((params, key, pem))
}

/// The server binary `name` (on `PATH`, or under `/usr/lib/postgresql/*/bin`); `None` skips the
/// test with a message, unless `GETLOOD_TEST_REQUIRE_TLS` is set, which makes it a failure.
fn server_binary(name: &str) -> anyhow::Result<Option<PathBuf>> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Ok(versions) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut found: Vec<PathBuf> = versions.flatten().map(|v| v.path().join("bin")).collect();
        // Newest major first.
        found.sort();
        found.reverse();
        dirs.extend(found);
    }
    if let Some(bin) = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Ok(Some(bin));
    }
    if std::env::var_os("GETLOOD_TEST_REQUIRE_TLS").is_some() {
        anyhow::bail!(
            "{name} not found on PATH or under /usr/lib/postgresql/*/bin, and GETLOOD_TEST_REQUIRE_TLS is set"
        );
    }
    eprintln!(
        "SKIPPED: {name} not found on PATH or under /usr/lib/postgresql/*/bin (set GETLOOD_TEST_REQUIRE_TLS=1 to fail instead)"
    );
    Ok(None)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` accepts TCP connections, or `child` exits (then names its log).
async fn wait_listening(child: &mut tokio::process::Child, port: u16, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            let output = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!("server exited with {status} before listening on {port}:\n{output}");
        }
        anyhow::ensure!(Instant::now() < deadline, "nothing listens on {port} after 30s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn log_file(path: &Path) -> anyhow::Result<std::process::Stdio> {
    Ok(std::fs::File::create(path)?.into())
}

fn service_config() -> ServiceConfig<NoSettings> {
    ServiceConfig::with_ports(0, 0, "tls_test")
}

// ---------------------------------------------------------------------------------------------
// Postgres
// ---------------------------------------------------------------------------------------------

/// A throwaway Postgres cluster with `ssl=on`, run as the `postgres` user (initdb and postgres
/// refuse to run as root); fast-shut-down on drop.
struct TlsPostgres {
    child: tokio::process::Child,
    port: u16,
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // SIGINT: fast shutdown, which also releases the shared memory.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:")).context("no postgres user in /etc/passwd")?;
    let fields: Vec<&str> = line.split(':').collect();
    Ok((fields.get(2).context("uid")?.parse()?, fields.get(3).context("gid")?.parse()?))
}

async fn start_postgres(pki: &Pki) -> anyhow::Result<Option<TlsPostgres>> {
    let (Some(initdb), Some(postgres)) = (server_binary("initdb")?, server_binary("postgres")?) else {
        return Ok(None);
    };
    let (uid, gid) = postgres_user()?;
    let data = pki.dir.path("pgdata");
    let sockets = pki.dir.path("pgsock");
    std::fs::create_dir_all(&sockets)?;
    // The server reads its key as the postgres user and refuses a key others can read.
    std::os::unix::fs::chown(&pki.dir.0, Some(uid), Some(gid))?;
    for path in [&sockets, &pki.cert, &pki.key, &pki.ca, &pki.other_ca] {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    std::fs::set_permissions(&pki.key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;

    let initdb_log = pki.dir.path("initdb.log");
    let status = tokio::process::Command::new(initdb)
        .args(["-D"])
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync"])
        .uid(uid)
        .gid(gid)
        .current_dir(&pki.dir.0)
        .stdout(log_file(&initdb_log)?)
        .stderr(log_file(&pki.dir.path("initdb.err"))?)
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "initdb failed ({status}): {}",
        std::fs::read_to_string(pki.dir.path("initdb.err")).unwrap_or_default()
    );

    let port = free_port()?;
    let log = pki.dir.path("postgres.log");
    let mut child = tokio::process::Command::new(postgres)
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "ssl=on", "-c", "fsync=off"])
        .arg("-k")
        .arg(&sockets)
        .arg("-c")
        .arg(format!("ssl_cert_file={}", pki.cert.display()))
        .arg("-c")
        .arg(format!("ssl_key_file={}", pki.key.display()))
        .uid(uid)
        .gid(gid)
        .current_dir(&pki.dir.0)
        .stdout(log_file(&log)?)
        .stderr(log_file(&pki.dir.path("postgres.err"))?)
        .kill_on_drop(true)
        .spawn()?;
    wait_listening(&mut child, port, &pki.dir.path("postgres.err")).await?;
    Ok(Some(TlsPostgres { child, port }))
}

#[tokio::test]
async fn postgres_pool_over_tls_verifies_the_server_certificate() -> anyhow::Result<()> {
    let pki = Pki::new("pg")?;
    let Some(pg) = start_postgres(&pki).await? else { return Ok(()) };
    let url = |ca: &Path| {
        format!("postgres://postgres@127.0.0.1:{}/postgres?sslmode=verify-full&sslrootcert={}", pg.port, ca.display())
    };

    // (a) The pool the services build, from a URL the configuration accepts.
    let mut config = service_config();
    config.postgres.url = url(&pki.ca);
    config.validate_storage()?;
    let infra = Infra::connect(Needs { postgres: true, ..Needs::default() }, &config, "tls-test").await?;
    let pool = infra.postgres.context("no pool")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let ssl: bool = loop {
        // The server accepts TCP a moment before it accepts sessions.
        match sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&pool).await {
            Ok(ssl) => break ssl,
            Err(err) if Instant::now() < deadline && getlood_common::error_chain(&err).contains("starting up") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => return Err(anyhow::anyhow!("query over TLS failed: {}", getlood_common::error_chain(&err))),
        }
    };
    assert!(ssl, "the session is not encrypted");
    pool.close().await;

    // (b) Trusting another CA: the certificate is refused, and the error says why.
    let mut config = service_config();
    config.postgres.url = url(&pki.other_ca);
    let infra = Infra::connect(Needs { postgres: true, ..Needs::default() }, &config, "tls-test").await?;
    let pool = infra.postgres.context("no pool")?;
    let err = sqlx::query("SELECT 1").execute(&pool).await.expect_err("a certificate of another CA was accepted");
    let err = getlood_common::error_chain(&err);
    assert!(err.contains(UNKNOWN_ISSUER), "{err}");
    eprintln!("refused as expected: {err}");

    // A root certificate file that does not exist is named at start, not at the first query.
    let mut config = service_config();
    config.postgres.url = url(&pki.dir.path("missing.pem"));
    let err = config.validate_storage().unwrap_err().to_string();
    assert!(err.contains("sslrootcert") && err.contains("missing.pem"), "{err}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------------

async fn start_redis(pki: &Pki) -> anyhow::Result<Option<(tokio::process::Child, u16)>> {
    let Some(redis) = server_binary("redis-server")? else { return Ok(None) };
    let port = free_port()?;
    let log = pki.dir.path("redis.log");
    let mut child = tokio::process::Command::new(redis)
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(&pki.cert)
        .arg("--tls-key-file")
        .arg(&pki.key)
        .arg("--tls-ca-cert-file")
        .arg(&pki.ca)
        .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&pki.dir.0)
        .stdout(log_file(&log)?)
        .stderr(log_file(&pki.dir.path("redis.err"))?)
        .kill_on_drop(true)
        .spawn()?;
    wait_listening(&mut child, port, &log).await?;
    Ok(Some((child, port)))
}

#[tokio::test]
async fn redis_over_rediss_verifies_the_server_certificate() -> anyhow::Result<()> {
    let pki = Pki::new("redis")?;
    let Some((_redis, port)) = start_redis(&pki).await? else { return Ok(()) };
    let redis_config = |ca: &Path| RedisConfig {
        url: format!("rediss://127.0.0.1:{port}"),
        ca_file: Some(ca.to_owned()),
        ..RedisConfig::default()
    };

    // (a) The handle the services use, from settings the configuration accepts.
    let mut config = service_config();
    config.redis = redis_config(&pki.ca);
    config.auth.hs256_secret = Some(getlood_testkit::TEST_SECRET.into());
    getlood_config::Validate::validate(&config)?;
    let handle = RedisHandle::new(&config.redis)?;
    let mut conn = handle
        .connection()
        .await
        .map_err(|e| anyhow::anyhow!("rediss connection failed: {}", getlood_common::error_chain(&e)))?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    assert_eq!(pong, "PONG");

    // (b) Trusting another CA: refused, naming the reason.
    let handle = RedisHandle::new(&redis_config(&pki.other_ca))?;
    let err = match handle.connection().await {
        Ok(_) => anyhow::bail!("a certificate of another CA was accepted"),
        Err(err) => getlood_common::error_chain(&err),
    };
    assert!(err.contains(UNKNOWN_ISSUER), "{err}");
    eprintln!("refused as expected: {err}");

    // A CA file on a plaintext URL is refused at start.
    let mut config = service_config();
    config.redis = RedisConfig { url: format!("redis://127.0.0.1:{port}"), ..redis_config(&pki.ca) };
    config.auth.hs256_secret = Some(getlood_testkit::TEST_SECRET.into());
    let err = getlood_config::Validate::validate(&config).unwrap_err().to_string();
    assert!(err.contains("redis.ca_file"), "{err}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// NATS
// ---------------------------------------------------------------------------------------------

async fn start_nats(pki: &Pki) -> anyhow::Result<Option<(tokio::process::Child, u16)>> {
    let Some(nats) = server_binary("nats-server")? else { return Ok(None) };
    let port = free_port()?;
    let conf = pki.dir.path("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "listen: \"127.0.0.1:{port}\"\ntls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 2\n}}\n",
            pki.cert.display(),
            pki.key.display()
        ),
    )?;
    let log = pki.dir.path("nats.log");
    let mut child = tokio::process::Command::new(nats)
        .arg("-c")
        .arg(&conf)
        .stdout(log_file(&log)?)
        .stderr(log_file(&pki.dir.path("nats.err"))?)
        .kill_on_drop(true)
        .spawn()?;
    wait_listening(&mut child, port, &pki.dir.path("nats.err")).await?;
    Ok(Some((child, port)))
}

#[tokio::test]
async fn nats_over_tls_verifies_the_server_certificate() -> anyhow::Result<()> {
    let pki = Pki::new("nats")?;
    let Some((_nats, port)) = start_nats(&pki).await? else { return Ok(()) };
    let nats_config =
        |url: String, ca: &Path| NatsConfig { url, ca_file: Some(ca.to_owned()), ..NatsConfig::default() };

    // (a) The client the services use: `tls://` URL, and `require_tls` with a `nats://` URL.
    for (url, require_tls) in [(format!("tls://127.0.0.1:{port}"), false), (format!("nats://127.0.0.1:{port}"), true)] {
        let mut config = service_config();
        config.nats = NatsConfig { require_tls, ..nats_config(url.clone(), &pki.ca) };
        config.auth.hs256_secret = Some(getlood_testkit::TEST_SECRET.into());
        getlood_config::Validate::validate(&config)?;
        let infra = Infra::connect(Needs { nats: true, ..Needs::default() }, &config, "tls-test").await?;
        let nats = infra.nats.context("no nats client")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while nats.connection_state() != async_nats::connection::State::Connected {
            anyhow::ensure!(Instant::now() < deadline, "{url}: not connected after 15s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut sub = nats.subscribe("tls.check").await?;
        nats.publish("tls.check", "over tls".into()).await?;
        let msg = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub)).await?;
        assert_eq!(msg.context("subscription ended")?.payload.as_ref(), b"over tls");
    }

    // (b) Trusting another CA: the handshake is refused, naming the reason...
    let config = nats_config(format!("tls://127.0.0.1:{port}"), &pki.other_ca);
    let err = match getlood_server::nats_options(&config, "tls-test")?.connect(config.url.as_str()).await {
        Ok(_) => anyhow::bail!("a certificate of another CA was accepted"),
        Err(err) => getlood_common::error_chain(&err),
    };
    assert!(err.contains(UNKNOWN_ISSUER), "{err}");
    eprintln!("refused as expected: {err}");
    // ...and the services' client, which keeps retrying, never connects.
    let mut service = service_config();
    service.nats = config;
    let infra = Infra::connect(Needs { nats: true, ..Needs::default() }, &service, "tls-test").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = infra.nats.context("no nats client")?.connection_state();
    assert_ne!(state, async_nats::connection::State::Connected);

    // `require_tls` refuses a server that offers no TLS: the machine's plaintext NATS.
    let plain = NatsConfig { url: getlood_testkit::nats_url(), require_tls: true, ..NatsConfig::default() };
    let err = match getlood_server::nats_options(&plain, "tls-test")?.connect(plain.url.as_str()).await {
        Ok(_) => anyhow::bail!("require_tls connected to a plaintext server"),
        Err(err) => getlood_common::error_chain(&err),
    };
    // rustls reads the server's plaintext INFO line as a TLS record.
    assert!(err.contains("received corrupt message"), "{err}");
    eprintln!("refused as expected: {err}");

    // A CA file while plaintext is allowed is refused at start.
    let mut config = service_config();
    config.nats = nats_config(format!("nats://127.0.0.1:{port}"), &pki.ca);
    config.auth.hs256_secret = Some(getlood_testkit::TEST_SECRET.into());
    let err = getlood_config::Validate::validate(&config).unwrap_err().to_string();
    assert!(err.contains("nats.ca_file") && err.contains("TLS is not required"), "{err}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// HTTPS: the identity provider's JWKS and MindsDB
// ---------------------------------------------------------------------------------------------

/// Accepts TCP connections and completes the TLS handshake before handing them to axum; a
/// client that refuses the certificate is dropped here.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Serves `jwks` at `/.well-known/jwks.json` and MindsDB's `/api/util/ping` over https;
/// returns the base URL.
async fn https_server(pki: &Pki, jwks: serde_json::Value) -> anyhow::Result<String> {
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", axum::routing::get(move || async move { axum::Json(jwks) }))
        .route("/api/util/ping", axum::routing::get(|| async { axum::Json(json!({"status": "ok"})) }));
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("https://127.0.0.1:{}", tcp.local_addr()?.port());
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(pki.server_config()?));
    tokio::spawn(async move { axum::serve(TlsListener { tcp, acceptor }, app).await });
    Ok(base)
}

/// An ES256 key of the test identity provider: its JWKS document and a token it signed.
fn identity_provider() -> anyhow::Result<(serde_json::Value, String)> {
    let private = p256::SecretKey::random(&mut rand::thread_rng());
    let mut jwk: serde_json::Value = serde_json::from_str(&private.public_key().to_jwk_string())?;
    jwk["kid"] = json!("tls-idp");
    jwk["alg"] = json!("ES256");
    jwk["use"] = json!("sig");
    let pem = private.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("tls-idp".to_owned());
    let claims = json!({
        "sub": "alice", "tenant": "tls_tenant", "roles": ["member"],
        "exp": jsonwebtoken::get_current_timestamp() + 600, "aud": "getlood", "iss": "getlood",
    });
    let token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())?)?;
    Ok((json!({"keys": [jwk]}), token))
}

#[tokio::test]
async fn jwks_over_https_verifies_the_identity_providers_certificate() -> anyhow::Result<()> {
    let pki = Pki::new("jwks")?;
    let (jwks, token) = identity_provider()?;
    let url = format!("{}/.well-known/jwks.json", https_server(&pki, jwks).await?);
    let auth = |ca: &Path| AuthConfig {
        hs256_secret: None,
        jwks_url: Some(url.clone()),
        jwks_ca_file: Some(ca.to_owned()),
        ..AuthConfig::default()
    };
    let tracker = tokio_util::task::TaskTracker::new();
    let stop = tokio_util::sync::CancellationToken::new();

    // (a) The verifier the services build fetches the keys over https at start.
    let trusted = auth(&pki.ca);
    trusted.validate("auth")?;
    let verifier = getlood_server::verifier(&trusted, &tracker, stop.clone()).await?;
    let principal = verifier.verify(&token).map_err(|e| anyhow::anyhow!("token refused: {e}"))?;
    assert_eq!(principal.user, "alice");

    // (b) Trusting another CA: the fetch is refused, naming the reason, and no key is loaded.
    let untrusted = auth(&pki.other_ca);
    let verifier = getlood_server::verifier(&untrusted, &tracker, stop.clone()).await?;
    assert!(verifier.verify(&token).is_err(), "a token was accepted without the provider's keys");
    let http = getlood_server::jwks_http_client(&untrusted)?;
    let err =
        getlood_server::fetch_jwks(&http, &url, &verifier).await.expect_err("jwks fetched from an untrusted server");
    let err = err.to_string();
    assert!(err.contains(UNKNOWN_ISSUER) && err.contains(&url), "{err}");
    eprintln!("refused as expected: {err}");
    // The system roots do not know the test CA either.
    let system = AuthConfig { jwks_ca_file: None, ..untrusted };
    let err = getlood_server::fetch_jwks(&getlood_server::jwks_http_client(&system)?, &url, &verifier)
        .await
        .expect_err("jwks fetched from a server no system root signed")
        .to_string();
    assert!(err.contains("invalid peer certificate"), "{err}");

    stop.cancel();
    tracker.close();
    Ok(())
}

#[tokio::test]
async fn mindsdb_over_https_verifies_the_server_certificate() -> anyhow::Result<()> {
    let pki = Pki::new("mindsdb")?;
    let base = https_server(&pki, json!({"keys": []})).await?;
    let mindsdb = |ca: &Path| MindsdbConfig {
        url: base.clone(),
        ca_file: Some(ca.to_owned()),
        retries: 0,
        ..MindsdbConfig::default()
    };

    // (a) The client the services build answers MindsDB's ping over https.
    let trusted = mindsdb(&pki.ca);
    trusted.validate_at("mindsdb")?;
    MindsdbClient::new(&trusted)?.ping().await.map_err(|e| anyhow::anyhow!("ping over https failed: {e}"))?;

    // (b) Trusting another CA: refused, naming the reason.
    let err = MindsdbClient::new(&mindsdb(&pki.other_ca))?.ping().await.expect_err("another CA's client pinged");
    let err = err.to_string();
    assert!(err.contains(UNKNOWN_ISSUER), "{err}");
    eprintln!("refused as expected: {err}");

    // A CA file on a plaintext URL is refused at start.
    let plain = MindsdbConfig { url: "http://127.0.0.1:47334".to_owned(), ..trusted };
    let err = plain.validate_at("mindsdb").unwrap_err().to_string();
    assert!(err.contains("mindsdb.ca_file"), "{err}");
    Ok(())
}
