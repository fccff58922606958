//! The drill platform's own dependencies, started here so a drill never touches the machine's
//! shared servers: a Postgres cluster (initdb/pg_ctl, run as the `postgres` user, which
//! Postgres requires), a redis-server, a three-node NATS JetStream cluster on loopback, and a
//! MindsDB of its own (`scripts/mindsdb.sh` with its own port and home). Each can be stopped and
//! started again by a drill; everything is stopped when the harness ends.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

/// Where Debian installs each Postgres version's programs (`<version>/bin`).
const PG_LIB: &str = "/usr/lib/postgresql";
const NATS_SERVER: &str = "/usr/sbin/nats-server";
const REDIS_SERVER: &str = "redis-server";

/// The programs of the newest Postgres installed (`/usr/lib/postgresql/<version>/bin`, the
/// machine's own server's as `scripts/infra.sh` finds it on Debian).
fn pg_bin() -> PathBuf {
    let newest = std::fs::read_dir(PG_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("pg_ctl").exists())
        .max_by_key(|(version, _)| *version);
    newest.map_or_else(|| Path::new(PG_LIB).join("15/bin"), |(_, bin)| bin)
}

/// The lowest port the kernel hands to outgoing connections (`ip_local_port_range`).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A free TCP port on every one of `ips` at once (replicas of a service share a port on
/// different loopback addresses); with `next_too`, `port + 1` is free as well (MindsDB's
/// MySQL API takes the port after its HTTP one).
///
/// Picked below the kernel's ephemeral range: a port the kernel chose (bind to port 0) can be
/// handed to one of the platform's own outgoing connections between this check and the
/// replica's bind, which failed a CI run (`cannot bind 127.0.0.11:37145: Address already in
/// use`). Ports below that range are only ever taken by listeners, which the check sees.
pub fn free_port(ips: &[Ipv4Addr], next_too: bool) -> anyhow::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let ephemeral = ephemeral_low();
    let high = ephemeral.saturating_sub(2).min(65_000);
    if high <= LOW + 1_000 {
        bail!("the ephemeral port range starts at {ephemeral}: no room below it for the drills' ports");
    }
    let span = high - LOW;
    // Runs on one machine start in different places of the range.
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..2_000 {
        // A prime stride walks the whole range (unless the span is a multiple of it).
        let port = LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(7_919)) % span;
        let port = u16::try_from(port).context("port out of range")?;
        let wanted = if next_too { vec![port, port + 1] } else { vec![port] };
        if wanted.iter().all(|p| ips.iter().all(|ip| TcpListener::bind(SocketAddr::from((*ip, *p))).is_ok())) {
            return Ok(port);
        }
    }
    bail!("no port free on {ips:?} after 2,000 tries")
}

/// Runs `cmd` to completion; an error carries its output.
async fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.stdin(Stdio::null()).output().await.with_context(|| format!("{what}: cannot start"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("{what} failed ({}): {}{}", out.status, stdout.trim(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(stdout)
}

/// Sends `signal` to `child` (if it runs) and waits for it to exit.
async fn signal_and_wait(child: &mut Child, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
        // ESRCH: it is already gone, which is what we want.
        let _ = nix::sys::signal::kill(pid, signal);
    }
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.context("process did not exit in 30 s")??;
    Ok(())
}

/// The private Postgres cluster.
#[derive(Debug)]
pub struct Postgres {
    data: PathBuf,
    log: PathBuf,
    port: u16,
    socket_dir: PathBuf,
}

impl Postgres {
    /// initdb in `dir` (owned by the `postgres` user), start on a free port, create the
    /// `getlood` database.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir), "chown the postgres directory").await?;
        let port = free_port(&[Ipv4Addr::LOCALHOST], false)?;
        let pg = Self { data: dir.join("data"), log: dir.join("postgres.log"), port, socket_dir: dir.to_owned() };
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("initdb"))
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "-D"])
                .arg(&pg.data),
            "initdb",
        )
        .await?;
        pg.start_server().await?;
        run(
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(pg_bin().join("createdb")).args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "getlood",
            ]),
            "createdb getlood",
        )
        .await?;
        Ok(pg)
    }

    /// The URL the services use.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/getlood", self.port)
    }

    /// `pg_ctl start`, waiting until it accepts connections.
    pub async fn start_server(&self) -> anyhow::Result<()> {
        // Up to 15 replicas with 8 connections each, their relays, MindsDB and the harness.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c shared_buffers=64MB",
            self.port,
            self.socket_dir.display()
        );
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("pg_ctl"))
                .args(["-w", "-t", "60", "-D"])
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-o", &options, "start"]),
            "pg_ctl start",
        )
        .await?;
        Ok(())
    }

    /// `pg_ctl stop -m fast`: the server ends every session and writes a checkpoint, as a
    /// maintenance restart (or an orchestrator's SIGTERM) does.
    pub async fn stop_server(&self) -> anyhow::Result<()> {
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin().join("pg_ctl"))
                .args(["-w", "-t", "60", "-m", "fast", "-D"])
                .arg(&self.data)
                .arg("stop"),
            "pg_ctl stop",
        )
        .await?;
        Ok(())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Blocking on purpose: the cluster must not outlive the harness, whatever ended it.
        let _ = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin().join("pg_ctl"))
            .args(["-w", "-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The private redis-server (no persistence, as the machine's own).
#[derive(Debug)]
pub struct Redis {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Redis {
    /// Starts it on a free port.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port(&[Ipv4Addr::LOCALHOST], false)?;
        let mut redis = Self { dir: dir.to_owned(), port, child: None };
        redis.start_server().await?;
        Ok(redis)
    }

    /// The URL the services use.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server and waits for its PONG.
    pub async fn start_server(&mut self) -> anyhow::Result<()> {
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start redis-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.ping().await.unwrap_or(false) {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "redis-server does not answer PING on port {}", self.port);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ping(&self) -> anyhow::Result<bool> {
        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        conn.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(1), conn.read(&mut buf)).await??;
        Ok(buf[..n].starts_with(b"+PONG"))
    }

    /// Stops the server (SIGTERM). Without persistence, what it held (rate-limit counters,
    /// cached agents) is gone when it starts again, as with a Redis that lost its node.
    pub async fn stop_server(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            signal_and_wait(&mut child, nix::sys::signal::Signal::SIGTERM).await?;
        }
        Ok(())
    }
}

/// One node of the NATS cluster.
#[derive(Debug)]
struct NatsNode {
    name: String,
    port: u16,
    http_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A three-node NATS JetStream cluster on loopback.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<NatsNode>,
    http: reqwest::Client,
}

impl NatsCluster {
    /// Writes the three nodes' configurations under `dir` and starts them.
    pub async fn start(dir: &Path, http: reqwest::Client) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let lo = [Ipv4Addr::LOCALHOST];
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push((free_port(&lo, false)?, free_port(&lo, false)?, free_port(&lo, false)?));
        }
        let routes: Vec<String> =
            ports.iter().map(|(_, cluster, _)| format!("\"nats-route://127.0.0.1:{cluster}\"")).collect();
        let mut nodes = Vec::new();
        for (i, (port, cluster, http_port)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.join(&name);
            std::fs::create_dir_all(&store)?;
            let config = dir.join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: \"{name}\"\nlisten: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{http_port}\"\n\
                     jetstream {{\n  store_dir: \"{}\"\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}\n\
                     cluster {{\n  name: \"getlood-drills\"\n  listen: \"127.0.0.1:{cluster}\"\n  routes: [{}]\n}}\n",
                    store.display(),
                    routes.join(", ")
                ),
            )?;
            nodes.push(NatsNode {
                name,
                port: *port,
                http_port: *http_port,
                config,
                log: dir.join(format!("n{}.log", i + 1)),
                child: None,
            });
        }
        let mut cluster = Self { nodes, http };
        for i in 0..3 {
            cluster.start_node(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// `nats://…` of every node, comma-separated (the services' `nats.url`).
    pub fn url(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// The node names (`n1`…), as JetStream reports stream leaders.
    pub fn index_of(&self, server_name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == server_name)
    }

    /// A node's name.
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Starts node `i` (its JetStream store is kept from before).
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let child = Command::new(NATS_SERVER)
            .arg("-c")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {NATS_SERVER}"))?;
        node.child = Some(child);
        Ok(())
    }

    /// Stops node `i` (SIGTERM: the server's own clean shutdown).
    pub async fn stop_node(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            signal_and_wait(&mut child, nix::sys::signal::Signal::SIGTERM).await?;
        }
        Ok(())
    }

    /// Whether every running node answers `/healthz` with ok (JetStream included).
    pub async fn healthy(&self) -> bool {
        for node in self.nodes.iter().filter(|n| n.child.is_some()) {
            let url = format!("http://127.0.0.1:{}/healthz", node.http_port);
            match self.http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => {}
                _ => return false,
            }
        }
        true
    }

    /// Waits until [`NatsCluster::healthy`].
    pub async fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.healthy().await {
            ensure!(
                Instant::now() < deadline,
                "the NATS cluster is not healthy after {timeout:?} (logs: {:?})",
                self.nodes[0].log
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }
}

/// A MindsDB of the drills' own, run by `scripts/mindsdb.sh` with its own port and home (so
/// killing it never touches the shared one on :47334).
#[derive(Debug)]
pub struct Mindsdb {
    script: PathBuf,
    home: PathBuf,
    port: u16,
}

impl Mindsdb {
    /// Starts it (the script waits until it answers SQL).
    pub async fn start(repo: &Path, home: &Path) -> anyhow::Result<Self> {
        let port = free_port(&[Ipv4Addr::LOCALHOST], true)?;
        let m = Self { script: repo.join("scripts/mindsdb.sh"), home: home.to_owned(), port };
        m.start_server().await?;
        Ok(m)
    }

    /// Its HTTP URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, action: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script)
            .arg(action)
            .env("MINDSDB_PORT", self.port.to_string())
            .env("MINDSDB_HOME", &self.home)
            .env("MINDSDB_READY_TIMEOUT", "240");
        cmd
    }

    /// `mindsdb.sh start`: returns once it answers SQL.
    pub async fn start_server(&self) -> anyhow::Result<()> {
        run(&mut self.script("start"), "scripts/mindsdb.sh start").await.map(drop)
    }

    /// SIGKILL to MindsDB's whole process group (its workers included: a crash, not a
    /// shutdown), then waits until every process of the group is gone.
    pub async fn kill(&self) -> anyhow::Result<()> {
        let pid_file = self.home.join("pid");
        let pgid: i32 = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("mindsdb pid file {}", pid_file.display()))?
            .trim()
            .parse()
            .context("mindsdb pid file")?;
        let group = nix::unistd::Pid::from_raw(-pgid);
        // ESRCH: already gone.
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(30);
        while group_alive(pgid) {
            ensure!(Instant::now() < deadline, "mindsdb process group {pgid} still there 30 s after SIGKILL");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// Whether a process of group `pgid` still runs. Zombies do not count: the group's leader
/// was started in the background by a script that has exited, so its parent is init, which
/// may reap it late, and `kill(-pgid, 0)` succeeds on a zombie.
fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return false };
    dir.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
        let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
        let mut fields = rest.split(' ');
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

impl Drop for Mindsdb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .env("MINDSDB_PORT", self.port.to_string())
            .env("MINDSDB_HOME", &self.home)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Checks that child processes can get their own `/etc/hosts` (a private mount namespace): the
/// replicas of a service are found through one name with several addresses, as a headless
/// Service's, and only a hosts file gives the system resolver that without a DNS server.
pub async fn check_private_hosts(hosts: &Path) -> anyhow::Result<()> {
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/hosts && getent ahostsv4 drill-check"])
        .arg(hosts)
        .stdin(Stdio::null())
        .output()
        .await
        .context("unshare (util-linux) is needed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && text.contains("127.0.0.12"),
        "cannot give the replicas a private /etc/hosts (unshare -m and mount need root or CAP_SYS_ADMIN): {}{}",
        text.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_ports_are_below_the_ephemeral_range_and_distinct() {
        let ips = [Ipv4Addr::LOCALHOST];
        let ports: Vec<u16> = (0..50).map(|_| free_port(&ips, true).unwrap()).collect();
        for port in &ports {
            assert!(u32::from(*port) + 1 < ephemeral_low(), "{port} is in the ephemeral range");
            TcpListener::bind(SocketAddr::from((ips[0], *port))).unwrap();
        }
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
