//! `make drills`: failure drills on the release binary (`make drills-ci`: on the debug one).
//!
//! Starts a private Postgres, Redis, three-node NATS JetStream cluster and MindsDB (the OpenAI
//! double as every model), then two or three replicas of each service as separate
//! `target/release/getlood <service>` processes that reach each other through `dns://` names, as
//! in Kubernetes. Under a steady load of chat turns, window drags and opens, workflow runs and
//! agent creations, with one client following the event stream, it runs each drill, waits for
//! the platform to recover, verifies what must hold, and prints one row per drill: requests and
//! failures with the errors clients saw, time to recover (until all load succeeds again and
//! every replica is ready), acknowledged writes lost, workflow nodes run twice, event gaps and
//! duplicates. It exits 1 when an invariant fails, 2 when the harness itself could not run.
//!
//! The drills, in order: SIGKILL one replica of each service (then started again); stop the
//! NATS node leading the window stream for 10 s, then all three; restart Postgres; SIGKILL
//! MindsDB and start it again; stop Redis for 10 s.
//!
//! Environment: `DRILLS` (comma-separated drill keys or prefixes to run, default all:
//! `sigkill-<service>`, `nats-node`, `nats-cluster`, `postgres`, `mindsdb`, `redis`),
//! `DRILLS_KEEP=1` (keep the work directory), `DRILLS_RUST_LOG` (the services' `RUST_LOG`),
//! `DRILLS_PROFILE` (`release`, the default, or `debug`: the binary `make test` builds, which
//! `make drills-ci` uses), `GETLOOD_DRILLS_BINARY` (a binary path; wins over the profile;
//! default `$CARGO_TARGET_DIR/<profile>/getlood`).
//!
//! `getlood-drills soak` (`make soak`; `make bench` runs it after the benches): the same platform
//! under the same load with no fault for `DRILLS_SOAK_SECONDS` (default 600), every replica's RSS
//! and CPU time (and MindsDB's process group's) sampled every 10 s; it prints the requests and
//! their latencies by kind, each replica's memory (after the first minute, the second and last
//! minutes' means, the growth between them, the end, the max) and each service's CPU and
//! throughput per core, runs the drills' checks once at the end, and exits 1 when a replica's
//! memory grew (not "flat"), more than 1% of requests failed or a check failed. See `soak.rs`.

// A command-line report: its table goes to stdout.
#![allow(clippy::print_stdout)]
// The harness's tasks (load, event client) end with it; there is no service to drain.
#![allow(clippy::disallowed_methods)]

mod checks;
mod deps;
mod events;
mod load;
mod platform;
mod soak;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use getlood_testkit::OpenAiDouble;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::deps::{Mindsdb, NatsCluster, Postgres, Redis};
use crate::events::{Continuity, Received, Truth};
use crate::load::{Api, Fixtures, Load, Stream, lock};
use crate::platform::{Dependencies, Platform, SERVICES};

const TENANT: &str = "drills";
/// How long the platform must serve everything after a drill before it counts as recovered.
const QUIET: Duration = Duration::from_secs(5);
/// The longest a drill may take to recover before a replica counts as never back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(150);

fn stamp(epoch: Instant, what: &str) {
    println!("drills: {what} ({}s)", epoch.elapsed().as_secs());
}

/// A fault to inject.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL one replica of the service, then start it again.
    Kill(&'static str),
    /// Stop the NATS node leading the window stream for 10 s.
    NatsNode,
    /// Stop all three NATS nodes for 10 s.
    NatsCluster,
    /// Restart Postgres (a fast shutdown, then a start).
    PostgresRestart,
    /// SIGKILL MindsDB's process group, then start it again.
    MindsdbRestart,
    /// Stop Redis for 10 s (it comes back empty).
    RedisStop,
}

/// How long a stopped NATS cluster, node or Redis stays down.
const HOLD: Duration = Duration::from_secs(10);

impl Fault {
    fn name(self) -> String {
        match self {
            Self::Kill(service) => format!("sigkill {service}"),
            Self::NatsNode => "nats: one node down 10s".to_owned(),
            Self::NatsCluster => "nats: all three down 10s".to_owned(),
            Self::PostgresRestart => "postgres restart".to_owned(),
            Self::MindsdbRestart => "mindsdb: sigkill, restart".to_owned(),
            Self::RedisStop => "redis: down 10s".to_owned(),
        }
    }

    fn key(self) -> String {
        match self {
            Self::Kill(service) => format!("sigkill-{service}"),
            Self::NatsNode => "nats-node".to_owned(),
            Self::NatsCluster => "nats-cluster".to_owned(),
            Self::PostgresRestart => "postgres".to_owned(),
            Self::MindsdbRestart => "mindsdb".to_owned(),
            Self::RedisStop => "redis".to_owned(),
        }
    }

    /// Every drill, in the order they run: the replicas first, then the dependencies.
    fn all() -> Vec<Self> {
        let mut faults: Vec<Self> = SERVICES.iter().map(|(s, _)| Self::Kill(s)).collect();
        faults.extend([
            Self::NatsNode,
            Self::NatsCluster,
            Self::PostgresRestart,
            Self::MindsdbRestart,
            Self::RedisStop,
        ]);
        faults
    }
}

/// One row of the report.
#[derive(Debug, Default)]
struct Row {
    name: String,
    requests: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
    recovered: Option<Duration>,
    lost: checks::Lost,
    /// Drags a killed desktop-state replica had acknowledged and not written yet (its
    /// coalescing interval): the coalescer's documented bound, reported apart.
    coalesced_lost: u64,
    twice: Vec<String>,
    resumed: u64,
    stuck: Vec<String>,
    runs_failed: BTreeMap<String, u64>,
    continuity: Continuity,
    /// The events received again or out of order during this drill, as [`Received::repeats`].
    repeats: Vec<String>,
    not_ready: Vec<String>,
    crashed: Vec<String>,
    target: String,
}

impl Row {
    fn invariant_failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.lost.total() > 0 {
            out.push(format!("{} acknowledged writes lost: {}", self.lost.total(), self.lost.details().join("; ")));
        }
        if !self.twice.is_empty() {
            out.push(format!("nodes run twice: {}", self.twice.join("; ")));
        }
        if !self.stuck.is_empty() {
            out.push(format!("{} acknowledged runs never finished: {}", self.stuck.len(), self.stuck.join(", ")));
        }
        if self.continuity.gaps > 0 || self.continuity.duplicates > 0 {
            out.push(format!(
                "event stream: {} missing, {} duplicated after resume{}",
                self.continuity.gaps,
                self.continuity.duplicates,
                if self.repeats.is_empty() { String::new() } else { format!(" ({})", self.repeats.join("; ")) }
            ));
        }
        if !self.not_ready.is_empty() {
            out.push(format!("not back to ready: {}", self.not_ready.join("; ")));
        }
        if !self.crashed.is_empty() {
            out.push(format!("replicas exited on their own: {}", self.crashed.join(", ")));
        }
        out
    }
}

struct Harness {
    epoch: Instant,
    dir: PathBuf,
    http: reqwest::Client,
    double: OpenAiDouble,
    // Dropped in reverse order of start: services before their dependencies.
    platform: Platform,
    postgres: Postgres,
    redis: Redis,
    nats: NatsCluster,
    mindsdb: Mindsdb,
    js: async_nats::jetstream::Context,
    load: Arc<Load>,
    received: Arc<Received>,
    readiness: Arc<platform::Readiness>,
    truth: Truth,
    settled: HashSet<String>,
    continuity: Continuity,
    /// How many of [`Received::repeats`] earlier drills reported.
    repeats_before: usize,
    lost_before: checks::Lost,
    /// `[from, to)` of each drill, to report what failed outside them.
    windows: Vec<(Duration, Duration)>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Interrupted (Ctrl-C, or SIGTERM from CI's timeout): `run`'s future is dropped, and with it
    // the harness, whose drops stop every process and server it started.
    let interrupted = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    };
    let result = tokio::select! {
        r = run() => r,
        r = interrupted => Err(anyhow::anyhow!("interrupted ({r:?}); everything started was stopped")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            println!("drills: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

fn selected(fault: Fault) -> bool {
    match std::env::var("DRILLS") {
        Ok(list) if !list.trim().is_empty() => list.split(',').any(|p| fault.key().starts_with(p.trim())),
        _ => true,
    }
}

async fn run() -> anyhow::Result<bool> {
    let epoch = Instant::now();
    let root = repo_root();
    let profile = std::env::var("DRILLS_PROFILE").unwrap_or_default();
    let (profile, build) = match profile.trim() {
        "" | "release" => ("release", "make release"),
        "debug" => ("debug", "cargo build --bin getlood"),
        other => bail!("DRILLS_PROFILE={other}: release or debug"),
    };
    let binary = match std::env::var_os("GETLOOD_DRILLS_BINARY") {
        Some(b) => PathBuf::from(b),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| root.join("target"), PathBuf::from)
            .join(profile)
            .join("getlood"),
    };
    ensure!(binary.exists(), "{} is missing: run `{build}` first", binary.display());
    let dir = std::env::temp_dir().join(format!("getlood-drills-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // Postgres runs as its own user and must reach its directory.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    println!("drills: binary {}, work directory {}", binary.display(), dir.display());

    let soak = std::env::args().nth(1).as_deref() == Some("soak");
    let mut harness = Harness::start(epoch, &root, &binary, &dir).await?;
    let result = if soak { soak::run(&mut harness).await } else { harness.drills().await };
    harness.stop_load();
    let keep = std::env::var_os("DRILLS_KEEP").is_some();
    let ok = match result {
        Ok(ok) => ok,
        Err(e) => {
            println!("drills: error: {e:#}");
            println!("drills: logs kept in {}", dir.display());
            drop(harness);
            return Err(e);
        }
    };
    drop(harness);
    if ok && !keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("drills: logs kept in {}", dir.display());
    }
    stamp(
        epoch,
        match (soak, ok) {
            (false, true) => "every invariant held",
            (false, false) => "an invariant failed",
            (true, true) => "soak: flat, every check held",
            (true, false) => "soak: failed",
        },
    );
    Ok(ok)
}

impl Harness {
    async fn start(epoch: Instant, root: &Path, binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        let http = getlood_tls::http_client_builder(None)?.pool_idle_timeout(Duration::from_secs(5)).build()?;
        let double = OpenAiDouble::start().await?;
        // An agent node takes a few seconds, as a real model's answer does: a workflow replica
        // killed under load is then likely to be executing one.
        double.delay_when("drill run [", Duration::from_millis(1500));
        let (pg_dir, redis_dir, nats_dir, mindsdb_dir) =
            (dir.join("postgres"), dir.join("redis"), dir.join("nats"), dir.join("mindsdb"));
        let (postgres, redis, nats, mindsdb) = tokio::try_join!(
            Postgres::start(&pg_dir),
            Redis::start(&redis_dir),
            NatsCluster::start(&nats_dir, http.clone()),
            Mindsdb::start(root, &mindsdb_dir),
        )?;
        stamp(
            epoch,
            &format!(
                "dependencies up: postgres {}, redis {}, nats {}, mindsdb {}",
                postgres.url(),
                redis.url(),
                nats.url(),
                mindsdb.url()
            ),
        );
        let deps = Dependencies {
            postgres_url: postgres.url(),
            redis_url: redis.url(),
            nats_url: nats.url(),
            mindsdb_url: mindsdb.url(),
        };
        let platform = Platform::start(binary, dir, deps, http.clone()).await?;
        platform
            .wait_ready(Duration::from_secs(180))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#} (service logs in {})", dir.join("logs").display()))?;
        stamp(epoch, &format!("{} replicas ready", platform.replicas().len()));

        let nats_client =
            async_nats::ConnectOptions::new().retry_on_initial_connect().connect(nats_servers(&nats.url())).await?;
        let js = async_nats::jetstream::new(nats_client.clone());
        let tenant = getlood_common::TenantId::parse(TENANT).map_err(|t| anyhow::anyhow!("bad tenant {t}"))?;
        let truth = Truth::new(nats_client, tenant);

        let token = getlood_auth::dev_token(
            getlood_testkit::TEST_SECRET,
            "getlood",
            "getlood",
            TENANT,
            "sre",
            &["admin"],
            4 * 3600,
        )?;
        let api = Api::new(http.clone(), platform.gateway_urls(), token.clone());
        let fixtures = seed(&api, &double.base_url()).await?;
        check_stream_replicas(&js).await?;
        stamp(epoch, "fixtures created; every stream has 3 replicas");

        let received = Arc::new(Received::default());
        let stop = STOP.get_or_init(CancellationToken::new).clone();
        let readiness = platform::Readiness::spawn(platform.admin_urls(), http.clone(), epoch, stop);
        let load = Arc::new(Load::new(api, load::Recorder::new(epoch), fixtures));
        Ok(Self {
            epoch,
            dir: dir.to_owned(),
            http,
            double,
            platform,
            postgres,
            redis,
            nats,
            mindsdb,
            js,
            load,
            received,
            readiness,
            truth,
            settled: HashSet::new(),
            continuity: Continuity::default(),
            repeats_before: 0,
            lost_before: checks::Lost::default(),
            windows: Vec::new(),
        })
    }
}

/// The servers of a comma-separated NATS URL, as the services take them.
fn nats_servers(url: &str) -> Vec<String> {
    url.split(',').map(|u| u.trim().to_owned()).collect()
}

/// Every stream the platform created must keep three copies.
async fn check_stream_replicas(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in [
        "GETLOOD_AGENT",
        "GETLOOD_TURN",
        "GETLOOD_WINDOW",
        "GETLOOD_WORKFLOW",
        "GETLOOD_AUDIT",
        "GETLOOD_WORKFLOW_WORK",
    ] {
        loop {
            match js.get_stream(name).await {
                Ok(mut stream) => {
                    let info = stream.info().await?;
                    ensure!(
                        info.config.num_replicas == 3,
                        "stream {name} has {} replicas, not 3",
                        info.config.num_replicas
                    );
                    break;
                }
                Err(e) if Instant::now() > deadline => bail!("stream {name}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
    Ok(())
}

/// The agent, desktops, windows and workflows the load works on.
async fn seed(api: &Api, llm_url: &str) -> anyhow::Result<Fixtures> {
    let post = |path: String, body: Value, expected: u16| async move {
        let mut last = String::new();
        for _ in 0..5 {
            match api.expect(reqwest::Method::POST, &path, Some(&body), expected, Duration::from_secs(60)).await {
                Ok(v) => return Ok(v),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        bail!("POST {path}: {last}")
    };
    let id = |v: &Value, key: &str| v[key].as_str().map(str::to_owned).context("no id in the answer");
    let chat = post("/api/v1/agents".to_owned(), load::agent_body("drill_chat", llm_url), 201).await?;
    // A workflow agent node names a MindsDB agent of the tenant's project: the registry keeps
    // each agent there as `agent_<id without dashes>`.
    let chat_mindsdb = format!("agent_{}", id(&chat, "id")?.replace('-', ""));
    let mut desktops = Vec::new();
    for n in 0..5 {
        desktops.push(id(
            &post("/api/v1/desktops".to_owned(), json!({"name": format!("drill desktop {n}")}), 201).await?,
            "id",
        )?);
    }
    let drag_desktop = desktops.remove(0);
    let mut dragged = vec![Vec::new(), Vec::new(), Vec::new()];
    for n in 0..9 {
        let body = json!({"app_id": "chart", "title": format!("dragged {n}"), "x": 0, "y": 40});
        let opened = post(format!("/api/v1/desktops/{drag_desktop}/windows"), body, 201).await?;
        dragged[n % 3].push(opened["window"]["id"].as_str().context("no window id")?.to_owned());
    }
    let delay = json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}},
            {"id": "wait", "type": "delay", "data": {"seconds": 0.5}},
            {"id": "mark", "type": "transform", "data": {"mapping": {"n": "{{input.n}}"}}},
            {"id": "end", "type": "end", "data": {}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "wait"},
            {"id": "e2", "source": "wait", "target": "mark"},
            {"id": "e3", "source": "mark", "target": "end"},
        ],
    });
    let agent = json!({
        "nodes": [
            {"id": "start", "type": "start", "data": {}},
            {"id": "wait", "type": "delay", "data": {"seconds": 0.3}},
            {"id": "ask", "type": "agent", "data": {"agent": chat_mindsdb, "prompt_template": "drill run [{{input.n}}]: summarise the day"}},
            {"id": "end", "type": "end", "data": {}},
        ],
        "edges": [
            {"id": "e1", "source": "start", "target": "wait"},
            {"id": "e2", "source": "wait", "target": "ask"},
            {"id": "e3", "source": "ask", "target": "end"},
        ],
    });
    let delay_workflow =
        id(&post("/api/v1/workflows".to_owned(), json!({"name": "drill delay", "graph": delay}), 201).await?, "id")?;
    let agent_workflow =
        id(&post("/api/v1/workflows".to_owned(), json!({"name": "drill agent", "graph": agent}), 201).await?, "id")?;
    Ok(Fixtures {
        chat_agent: "drill_chat".to_owned(),
        dragged,
        desktops,
        delay_workflow,
        agent_workflow,
        llm_url: llm_url.to_owned(),
    })
}

impl Harness {
    fn stop_load(&mut self) {
        if let Some(stop) = STOP.get() {
            stop.cancel();
        }
    }

    /// Starts the events client under the harness's stop token and waits until its stream is
    /// open; the token and the client's task.
    async fn follow_events(&self) -> anyhow::Result<(CancellationToken, tokio::task::JoinHandle<()>)> {
        let stop = STOP.get_or_init(CancellationToken::new).clone();
        let follower = tokio::spawn(events::follow(
            self.http.clone(),
            self.platform.gateway_urls(),
            self.load.api.token.clone(),
            self.received.clone(),
            stop.clone(),
        ));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.received.connected.load(Ordering::Relaxed) {
            ensure!(Instant::now() < deadline, "the events client could not open GET /api/v1/events");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((stop, follower))
    }

    async fn drills(&mut self) -> anyhow::Result<bool> {
        let (stop, follower) = self.follow_events().await?;
        let workers = self.load.spawn(&stop);
        let baseline_from = self.load.recorder.now();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let mut rows = vec![self.baseline(baseline_from).await?];
        stamp(self.epoch, "baseline done");

        for fault in Fault::all().into_iter().filter(|f| selected(*f)) {
            let row = self.drill(fault).await?;
            stamp(
                self.epoch,
                &format!(
                    "{} done: {}",
                    row.name,
                    if row.invariant_failures().is_empty() { "ok" } else { "INVARIANT FAILED" }
                ),
            );
            rows.push(row);
        }
        stop.cancel();
        for w in workers {
            let _ = w.await;
        }
        let _ = follower.await;
        rows.push(self.outside_drills());
        print_table(&rows);
        let mut ok = true;
        for row in &rows {
            for failure in row.invariant_failures() {
                ok = false;
                println!("drills: FAILED {}: {failure}", row.name);
            }
        }
        // Each figure in a statement of its own: a guard in `println!`'s arguments lives until
        // the end of the statement, and a second lock of the same ledger would wait forever.
        let received: usize = lock(&self.received.seqs).values().map(Vec::len).sum();
        let windows = lock(&self.load.ledger.windows).len();
        let dragged = lock(&self.load.ledger.moves).len();
        let moves = self
            .load
            .recorder
            .between(Duration::ZERO, Duration::MAX)
            .iter()
            .filter(|o| o.stream == Stream::Move && o.error.is_none())
            .count();
        let (runs, agent_runs) = {
            let runs = lock(&self.load.ledger.runs);
            (runs.len(), runs.iter().filter(|r| r.with_agent).count())
        };
        let agents = lock(&self.load.ledger.agents).len();
        let ends = lock(&self.received.ends).clone();
        println!(
            "drills: checked {windows} windows opened, {dragged} dragged windows ({moves} moves acknowledged), {runs} runs ({agent_runs} with an agent node), {agents} agents created; \
             the events client received {received} events with {} reconnects (stream ends {ends:?}); replica logs under {}",
            self.received.reconnects.load(Ordering::Relaxed),
            self.dir.join("logs").display()
        );
        Ok(ok)
    }

    async fn baseline(&mut self, from: Duration) -> anyhow::Result<Row> {
        let to = self.load.recorder.now();
        let mut row = Row { name: "baseline (no fault, 15s)".to_owned(), target: "-".to_owned(), ..Row::default() };
        self.count(&mut row, from, to);
        self.verify(&mut row).await?;
        self.windows.push((from, self.load.recorder.now()));
        Ok(row)
    }

    fn count(&self, row: &mut Row, from: Duration, to: Duration) {
        for o in self.load.recorder.between(from, to) {
            row.requests += 1;
            if let Some(e) = o.error {
                row.failed += 1;
                *row.errors.entry(format!("{} {e}", o.stream.name())).or_default() += 1;
            }
        }
    }

    fn outside_drills(&self) -> Row {
        let mut row =
            Row { name: "between drills (checks running)".to_owned(), target: "-".to_owned(), ..Row::default() };
        let end = self.load.recorder.now();
        for o in self.load.recorder.between(Duration::ZERO, end) {
            if self.windows.iter().any(|(from, to)| o.ended >= *from && o.ended < *to) {
                continue;
            }
            row.requests += 1;
            if let Some(e) = o.error {
                row.failed += 1;
                *row.errors.entry(format!("{} {e}", o.stream.name())).or_default() += 1;
            }
        }
        row
    }

    async fn drill(&mut self, fault: Fault) -> anyhow::Result<Row> {
        let mut row = Row { name: fault.name(), ..Row::default() };
        stamp(self.epoch, &format!("{}: start", row.name));
        let t0 = self.load.recorder.now();
        row.target = self.inject(fault).await?;
        let healed = self.load.recorder.now();
        let (recovered, not_ready) = self.wait_recovered(t0, healed).await;
        row.recovered = recovered;
        row.not_ready = not_ready;
        let t_end = self.load.recorder.now();
        self.count(&mut row, t0, t_end);
        self.windows.push((t0, t_end));
        self.verify(&mut row).await?;
        if matches!(fault, Fault::Kill("desktop-state")) {
            // Only the burst's moves could be lost here (the drags were paused around the
            // kill): acknowledged by the killed replica within its coalescing interval.
            row.coalesced_lost = row.lost.take(checks::Kind::Move);
        }
        Ok(row)
    }

    /// Injects `fault` and heals it; returns what was hit.
    async fn inject(&mut self, fault: Fault) -> anyhow::Result<String> {
        match fault {
            Fault::Kill(service) => {
                let index = self.victim(service).await;
                let i = self.platform.position(service, index).context("no such replica")?;
                if service == "workflow" {
                    self.await_agent_node_running().await;
                }
                if service == "desktop-state" {
                    // The worst moment for a coalescing replica: moves it has just acknowledged
                    // and will write within its interval. The drags stay paused until the
                    // checks have read every window back, so nothing later hides a lost one.
                    self.load.pause_drags().await;
                    self.load.drag_burst().await;
                }
                self.platform.kill(i).await?;
                // As an orchestrator restarts a crashed container: not at once.
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.platform.spawn(i)?;
                Ok(format!("{service}-{index}"))
            }
            Fault::NatsNode => {
                let mut stream = self.js.get_stream("GETLOOD_WINDOW").await?;
                let leader = stream.info().await?.cluster.as_ref().and_then(|c| c.leader.clone()).unwrap_or_default();
                let i = self.nats.index_of(&leader).unwrap_or(0);
                self.nats.stop_node(i).await?;
                tokio::time::sleep(HOLD).await;
                self.nats.start_node(i)?;
                Ok(format!("{} (window stream leader)", self.nats.name(i)))
            }
            Fault::NatsCluster => {
                for i in 0..3 {
                    self.nats.stop_node(i).await?;
                }
                tokio::time::sleep(HOLD).await;
                for i in 0..3 {
                    self.nats.start_node(i)?;
                }
                Ok("n1, n2, n3".to_owned())
            }
            Fault::PostgresRestart => {
                self.postgres.stop_server().await?;
                self.postgres.start_server().await?;
                Ok("postgres (pg_ctl stop -m fast, start)".to_owned())
            }
            Fault::MindsdbRestart => {
                self.mindsdb.kill().await?;
                // As an orchestrator restarts a crashed container: not at once. The start
                // returns once MindsDB answers SQL again (its own start takes most of it).
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.mindsdb.start_server().await?;
                Ok("mindsdb (process group)".to_owned())
            }
            Fault::RedisStop => {
                self.redis.stop_server().await?;
                tokio::time::sleep(HOLD).await;
                self.redis.start_server().await?;
                Ok("redis".to_owned())
            }
        }
    }

    /// Waits (up to 10 s) until some run's agent node is executing, so the workflow replica
    /// killed next is likely in the middle of one (which of the two executes it is not known).
    async fn await_agent_node_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let path = format!("/api/v1/workflows/{}/runs?status=running&page_size=10", self.load.fixtures.agent_workflow);
        while Instant::now() < deadline {
            if let Ok((200, page)) = self.load.api.read(&path).await {
                for run in page["runs"].as_array().into_iter().flatten() {
                    let Some(id) = run["id"].as_str() else { continue };
                    if let Ok((200, run)) = self.load.api.read(&format!("/api/v1/workflows/runs/{id}")).await
                        && run["node_runs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|n| n["node_id"] == "ask" && n["status"] == "running")
                    {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The replica of `service` a drill kills: the gateway the events client is on, the
    /// dispatcher serving its subscription, else the first.
    async fn victim(&self, service: &str) -> usize {
        match service {
            "gateway" => self.received.gateway.load(Ordering::Relaxed),
            "event-dispatcher" => {
                for (i, r) in self.platform.replicas().iter().enumerate() {
                    if r.service == service
                        && self.platform.metric(i, "getlood_event_dispatcher_subscriptions").await.unwrap_or(0.0) > 0.0
                    {
                        return r.index;
                    }
                }
                0
            }
            _ => 0,
        }
    }

    /// Waits until the fault is healed, every replica is ready and every load stream has
    /// succeeded for [`QUIET`] since the last failed request and the last replica seen not
    /// ready; the time to recover runs from the fault to that last failure or unreadiness (0
    /// when the platform never noticed the fault).
    async fn wait_recovered(&mut self, t0: Duration, healed: Duration) -> (Option<Duration>, Vec<String>) {
        let recent = self.load.recorder.between(t0.saturating_sub(Duration::from_secs(60)), t0);
        // When this loop itself last found a replica not ready (the monitor samples too, but a
        // replica restarted after a kill may be back between two of its rounds).
        let mut seen_not_ready: Option<Duration> = None;
        loop {
            let now = self.load.recorder.now();
            let not_ready = self.platform.not_ready().await;
            let ready = not_ready.is_empty();
            if !ready {
                seen_not_ready = Some(now);
            }
            let last_not_ready =
                lock(&self.readiness.last_not_ready).as_ref().map(|(at, _)| *at).filter(|at| *at >= t0);
            let outcomes = self.load.recorder.between(t0, Duration::MAX);
            let last_failure = outcomes.iter().filter(|o| o.error.is_some()).map(|o| o.ended).max();
            let mark =
                [Some(t0), last_failure, last_not_ready, seen_not_ready].into_iter().flatten().max().unwrap_or(t0);
            // Every stream that was busy before the fault (the opener stops when its desktops
            // are full) must have succeeded since.
            let paused = self.load.drags_paused.load(Ordering::SeqCst);
            let active: Vec<Stream> = Stream::ALL
                .into_iter()
                .filter(|s| recent.iter().any(|o| o.stream == *s) && !(paused && *s == Stream::Move))
                .collect();
            let streams_ok = active
                .iter()
                .all(|s| outcomes.iter().any(|o| o.stream == *s && o.error.is_none() && o.started >= mark));
            if ready && now.saturating_sub(mark.max(healed)) >= QUIET && streams_ok {
                return (Some(mark.saturating_sub(t0)), Vec::new());
            }
            if now.saturating_sub(healed) > RECOVERY_LIMIT {
                let mut missing = not_ready;
                if !streams_ok {
                    missing.push("load still failing".to_owned());
                }
                return (None, missing);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The checks after a drill: writes, runs, the event stream, crashed replicas.
    async fn verify(&mut self, row: &mut Row) -> anyhow::Result<()> {
        let recovered = row.recovered.map_or_else(|| "-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
        stamp(self.epoch, &format!("{}: recovered in {recovered}; reading back acknowledged writes", row.name));
        let lost = checks::writes(&self.load).await?;
        row.lost = lost.since(&self.lost_before);
        self.lost_before = lost;
        stamp(self.epoch, &format!("{}: waiting for the acknowledged runs to finish", row.name));
        let runs =
            checks::runs(&self.load, &mut self.truth, &self.double, &mut self.settled, Duration::from_secs(90)).await?;
        stamp(self.epoch, &format!("{}: comparing the events received with the streams", row.name));
        row.twice = runs.twice;
        row.resumed = runs.resumed;
        row.stuck = runs.stuck;
        row.runs_failed = runs.failed;
        let c = events::check(&self.received, &mut self.truth, Duration::from_secs(30)).await?;
        row.continuity = Continuity {
            gaps: c.gaps.saturating_sub(self.continuity.gaps),
            duplicates: c.duplicates.saturating_sub(self.continuity.duplicates),
        };
        self.continuity = c;
        let repeats = lock(&self.received.repeats).clone();
        row.repeats = repeats.get(self.repeats_before..).unwrap_or_default().to_vec();
        self.repeats_before = repeats.len();
        for (name, status) in self.platform.exited() {
            row.crashed.push(format!("{name} ({status})"));
        }
        Ok(())
    }
}

static STOP: std::sync::OnceLock<CancellationToken> = std::sync::OnceLock::new();

fn fmt_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "-".to_owned();
    }
    errors.iter().map(|(e, n)| format!("{e} x{n}")).collect::<Vec<_>>().join(", ")
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| drill | target | requests | failed | errors clients saw | time to recover | acked writes lost (windows/moves/runs/agents) | drags lost in a killed replica's coalescer | nodes run twice | nodes resumed after a kill | runs not succeeded | event gaps / duplicates |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let recovered = match (&r.recovered, r.not_ready.is_empty()) {
            (Some(d), _) => format!("{:.1} s", d.as_secs_f64()),
            (None, true) => "-".to_owned(),
            (None, false) => format!("NOT RECOVERED ({})", r.not_ready.join("; ")),
        };
        let stuck = if r.stuck.is_empty() { String::new() } else { format!(", {} stuck", r.stuck.len()) };
        println!(
            "| {} | {} | {} | {} | {} | {} | {}/{}/{}/{} | {} | {} | {} | {}{} | {} / {} |",
            r.name,
            r.target,
            r.requests,
            r.failed,
            fmt_errors(&r.errors),
            recovered,
            r.lost.count(checks::Kind::Window),
            r.lost.count(checks::Kind::Move),
            r.lost.count(checks::Kind::Run),
            r.lost.count(checks::Kind::Agent),
            r.coalesced_lost,
            r.twice.len(),
            r.resumed,
            fmt_errors(&r.runs_failed),
            stuck,
            r.continuity.gaps,
            r.continuity.duplicates,
        );
    }
    println!();
}
