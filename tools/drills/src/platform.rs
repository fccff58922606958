//! The services, as Kubernetes runs them: the release binary, `getlood <service>`, one process
//! per replica. Replica `i` of every service listens on `127.0.0.(11+i)` with the service's
//! ports, and the name `drill-<service>` resolves to every replica's address, so each service
//! reaches the others through `dns://drill-<service>:<grpc port>` (the headless Service and
//! client-side balancing of production). The name comes from a hosts file mounted over
//! `/etc/hosts` in each replica's own mount namespace (`unshare -m`): nothing on the machine
//! changes.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use tokio::process::{Child, Command};

use crate::deps::free_port;

/// The services and how many replicas each runs: three of the cheap stateless edge and
/// desktop services, two of the others.
pub const SERVICES: [(&str, usize); 6] = [
    ("agent-registry", 2),
    ("event-dispatcher", 2),
    ("desktop-state", 3),
    ("workflow", 2),
    ("pipeline", 2),
    ("gateway", 3),
];

/// The loopback address of replica `i`.
pub fn replica_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 11 + u8::try_from(i).unwrap_or(0))
}

/// Where the platform's services find their dependencies.
#[derive(Debug, Clone)]
pub struct Dependencies {
    pub postgres_url: String,
    pub redis_url: String,
    pub nats_url: String,
    pub mindsdb_url: String,
}

/// A service's three ports, the same on each replica's address.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
    pub admin: u16,
}

/// One process of one service.
#[derive(Debug)]
pub struct Replica {
    pub service: &'static str,
    pub index: usize,
    pub ports: Ports,
    child: Option<Child>,
    log: PathBuf,
}

impl Replica {
    /// `http://127.0.0.(11+i):<http>`.
    pub fn http_url(&self) -> String {
        format!("http://{}:{}", replica_ip(self.index), self.ports.http)
    }

    /// `http://127.0.0.(11+i):<admin>` (`/readyz` with each dependency, `/metrics`).
    pub fn admin_url(&self) -> String {
        format!("http://{}:{}", replica_ip(self.index), self.ports.admin)
    }

    /// `<service>-<i>`.
    pub fn name(&self) -> String {
        format!("{}-{}", self.service, self.index)
    }
}

/// Every replica of every service.
#[derive(Debug)]
pub struct Platform {
    binary: PathBuf,
    hosts: PathBuf,
    deps: Dependencies,
    ports: BTreeMap<&'static str, Ports>,
    replicas: Vec<Replica>,
    http: reqwest::Client,
}

/// The environment prefix of `service`: `GETLOOD_DESKTOP_STATE_`.
fn prefix(service: &str) -> String {
    format!("GETLOOD_{}_", service.to_ascii_uppercase().replace('-', "_"))
}

impl Platform {
    /// `(name, admin URL)` of every replica.
    pub fn admin_urls(&self) -> Vec<(String, String)> {
        self.replicas.iter().map(|r| (r.name(), r.admin_url())).collect()
    }

    /// Chooses the ports, writes the hosts file under `dir` and starts every replica.
    pub async fn start(binary: &Path, dir: &Path, deps: Dependencies, http: reqwest::Client) -> anyhow::Result<Self> {
        let ips: Vec<Ipv4Addr> = (0..3).map(replica_ip).collect();
        let mut ports = BTreeMap::new();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (service, count) in SERVICES {
            let p =
                Ports { http: free_port(&ips, false)?, grpc: free_port(&ips, false)?, admin: free_port(&ips, false)? };
            ports.insert(service, p);
            for i in 0..count {
                hosts.push_str(&format!("{} drill-{service}\n", replica_ip(i)));
            }
        }
        hosts.push_str(&format!("{} drill-check\n", replica_ip(1)));
        let hosts_file = dir.join("hosts");
        std::fs::write(&hosts_file, hosts)?;
        crate::deps::check_private_hosts(&hosts_file).await?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut replicas = Vec::new();
        for (service, count) in SERVICES {
            for index in 0..count {
                let log = logs.join(format!("{service}-{index}.log"));
                replicas.push(Replica { service, index, ports: ports[service], child: None, log });
            }
        }
        let mut platform = Self { binary: binary.to_owned(), hosts: hosts_file, deps, ports, replicas, http };
        // Upstreams first, so the first calls find someone (they wait for a serving endpoint
        // anyway); each service's replicas together, as a Deployment's pods start.
        for i in 0..platform.replicas.len() {
            platform.spawn(i)?;
        }
        Ok(platform)
    }

    /// Every replica.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// The position of `service`'s replica `index` in [`Platform::replicas`].
    pub fn position(&self, service: &str, index: usize) -> Option<usize> {
        self.replicas.iter().position(|r| r.service == service && r.index == index)
    }

    /// The gateways' public URLs (the load balancer in front of them is the harness's client).
    pub fn gateway_urls(&self) -> Vec<String> {
        self.replicas.iter().filter(|r| r.service == "gateway").map(Replica::http_url).collect()
    }

    fn environment(&self, replica: &Replica) -> Vec<(String, String)> {
        let service = replica.service;
        let p = prefix(service);
        let ip = replica_ip(replica.index);
        let d = &self.deps;
        let mut env = vec![
            ("HTTP_ADDR".to_owned(), format!("{ip}:{}", replica.ports.http)),
            ("GRPC_ADDR".to_owned(), format!("{ip}:{}", replica.ports.grpc)),
            ("ADMIN_ADDR".to_owned(), format!("{ip}:{}", replica.ports.admin)),
            ("SHUTDOWN_TIMEOUT".to_owned(), "5s".to_owned()),
            ("READINESS_INTERVAL".to_owned(), "500ms".to_owned()),
            ("POSTGRES__URL".to_owned(), d.postgres_url.clone()),
            ("POSTGRES__MAX_CONNECTIONS".to_owned(), "8".to_owned()),
            ("REDIS__URL".to_owned(), d.redis_url.clone()),
            ("NATS__URL".to_owned(), d.nats_url.clone()),
            // Every stream on all three nodes: one node down loses no acknowledged event.
            ("NATS__STREAM_REPLICAS".to_owned(), "3".to_owned()),
            ("AUTH__HS256_SECRET".to_owned(), getlood_testkit::TEST_SECRET.to_owned()),
        ];
        for (other, _) in SERVICES {
            let key = format!("SERVICES__{}", other.to_ascii_uppercase().replace('-', "_"));
            env.push((key, format!("dns://drill-{other}:{}?refresh=1s", self.ports[other].grpc)));
        }
        if service != "gateway" {
            env.push(("MINDSDB__URL".to_owned(), d.mindsdb_url.clone()));
        }
        let app: &[(&str, String)] = match service {
            // The drill's load is one tenant and one user: the budgets are lifted, Redis still
            // counts every request (and the Redis drill shows what its absence does).
            "gateway" => &[
                ("CHAT_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
                ("TENANT_RATE_LIMIT_PER_MINUTE", "0".to_owned()),
                ("RATE_LIMITS__WRITE__PER_USER_PER_MINUTE", "1000000".to_owned()),
                ("RATE_LIMITS__WRITE__PER_TENANT_PER_MINUTE", "0".to_owned()),
                ("RATE_LIMITS__WORKFLOW_EXECUTE__PER_USER_PER_MINUTE", "1000000".to_owned()),
                ("RATE_LIMITS__WORKFLOW_EXECUTE__PER_TENANT_PER_MINUTE", "0".to_owned()),
                ("RATE_LIMITS__AGENT_WRITE__PER_USER_PER_MINUTE", "1000000".to_owned()),
                ("RATE_LIMITS__AGENT_WRITE__PER_TENANT_PER_MINUTE", "0".to_owned()),
            ],
            // The LLM intent classifier and memory recall and ingestion are more MindsDB work
            // per turn (the double does not answer the classifier's JSON anyway): off, so the
            // two cores go to the drilled paths; a turn still goes through MindsDB's agent.
            "pipeline" => &[("INTENT_MODEL__ENABLED", "false".to_owned()), ("MEMORY__ENABLED", "false".to_owned())],
            "event-dispatcher" => &[("MEMORY__ENABLED", "false".to_owned())],
            // Agents' models are the double on loopback.
            "agent-registry" => &[("EGRESS__ALLOW", "[\"127.0.0.0/8\"]".to_owned())],
            // A node whose worker was killed is taken over after its lease.
            "workflow" => &[("NODE_LEASE", "4s".to_owned()), ("SWEEP_INTERVAL", "1s".to_owned())],
            _ => &[],
        };
        env.extend(app.iter().map(|(k, v)| (format!("APP__{k}"), v.clone())));
        env.into_iter().map(|(k, v)| (format!("{p}{k}"), v)).collect()
    }

    /// Starts replica `i` (again, after a kill): `unshare -m` gives it the private hosts file.
    pub fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let env = self.environment(&self.replicas[i]);
        let replica = &self.replicas[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&replica.log)?;
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/hosts && exec \"$@\""])
            .arg(&self.hosts)
            .arg(&self.binary)
            .arg(replica.service)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", std::env::var("DRILLS_RUST_LOG").unwrap_or_else(|_| "info".to_owned()))
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} {}", self.binary.display(), replica.service))?;
        self.replicas[i].child = Some(child);
        Ok(())
    }

    /// SIGKILL to replica `i` (`unshare` and `sh` exec'd into `getlood`: its pid is the
    /// service's), then waits for it to be gone.
    pub async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(mut child) = self.replicas[i].child.take() else { return Ok(()) };
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid)?),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        tokio::time::timeout(Duration::from_secs(10), child.wait()).await.context("killed replica did not exit")??;
        Ok(())
    }

    /// Replicas that have exited on their own (a crash), with their exit status.
    pub fn exited(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for r in &mut self.replicas {
            if let Some(child) = &mut r.child
                && let Ok(Some(status)) = child.try_wait()
            {
                out.push((r.name(), status.to_string()));
            }
        }
        out
    }

    /// The replicas not ready now, with what their detailed `/readyz` says.
    pub async fn not_ready(&self) -> Vec<String> {
        let checks = (0..self.replicas.len()).map(|i| async move {
            let url = format!("{}/readyz", self.replicas[i].admin_url());
            match self.http.get(url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => None,
                Ok(r) => Some(format!("{} ({})", self.replicas[i].name(), r.text().await.unwrap_or_default().trim())),
                Err(e) => Some(format!("{} ({})", self.replicas[i].name(), crate::load::transport_label(&e))),
            }
        });
        futures::future::join_all(checks).await.into_iter().flatten().collect()
    }

    /// Waits until every replica is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let missing = self.not_ready().await;
            if missing.is_empty() {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "not ready after {timeout:?}: {}", missing.join("; "));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The value of a gauge or counter on replica `i`'s `/metrics` (the first line of `name`).
    pub async fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let url = format!("{}/metrics", self.replicas[i].admin_url());
        let page = self.http.get(url).timeout(Duration::from_secs(2)).send().await.ok()?.text().await.ok()?;
        page.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(|a, b| a + b)
    }
}

/// Polls every replica's admin `/readyz` (every 100 ms) for the whole run, so a drill knows
/// when a replica last was not ready, also while the fault is being held.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The last time (since the harness started) a replica was seen not ready, and which.
    pub last_not_ready: std::sync::Mutex<Option<(Duration, String)>>,
}

impl Readiness {
    /// Starts polling `replicas` (`(name, admin URL)`) until `stop`.
    pub fn spawn(
        replicas: Vec<(String, String)>,
        http: reqwest::Client,
        epoch: Instant,
        stop: tokio_util::sync::CancellationToken,
    ) -> std::sync::Arc<Self> {
        let this = std::sync::Arc::new(Self::default());
        let me = this.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let at = epoch.elapsed();
                let checks = replicas.iter().map(|(name, url)| {
                    let http = http.clone();
                    async move {
                        let ok = matches!(
                            http.get(format!("{url}/readyz")).timeout(Duration::from_secs(1)).send().await,
                            Ok(r) if r.status().is_success()
                        );
                        (!ok).then(|| name.clone())
                    }
                });
                let down: Vec<String> = futures::future::join_all(checks).await.into_iter().flatten().collect();
                if !down.is_empty() {
                    *crate::load::lock(&me.last_not_ready) = Some((at, down.join(", ")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        this
    }
}
