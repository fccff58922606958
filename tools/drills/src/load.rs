//! The steady load, through the gateways' public API as a client sees it: chat turns, window
//! moves and opens, workflow runs and agent creations, each request's outcome recorded with its
//! time, and every write the platform acknowledged (2xx) put in a ledger that the checks after
//! each drill read back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The kinds of request the load makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stream {
    Chat,
    Move,
    Open,
    Run,
    Agent,
}

impl Stream {
    pub const ALL: [Stream; 5] = [Stream::Chat, Stream::Move, Stream::Open, Stream::Run, Stream::Agent];

    pub fn name(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Move => "move",
            Self::Open => "open",
            Self::Run => "run",
            Self::Agent => "agent",
        }
    }
}

/// One request: when it started and ended (since the harness started) and, if it failed, what
/// the client saw (`503 unavailable`, `connect error`, ...).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub stream: Stream,
    pub started: Duration,
    pub ended: Duration,
    pub error: Option<String>,
}

/// Every outcome, in completion order.
#[derive(Debug)]
pub struct Recorder {
    epoch: Instant,
    outcomes: Mutex<Vec<Outcome>>,
}

impl Recorder {
    pub fn new(epoch: Instant) -> Self {
        Self { epoch, outcomes: Mutex::new(Vec::new()) }
    }

    /// Time since the harness started.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn record(&self, stream: Stream, started: Duration, error: Option<String>) {
        let ended = self.now();
        lock(&self.outcomes).push(Outcome { stream, started, ended, error });
    }

    /// The outcomes of requests that ended in `[from, to)`.
    pub fn between(&self, from: Duration, to: Duration) -> Vec<Outcome> {
        lock(&self.outcomes).iter().filter(|o| o.ended >= from && o.ended < to).cloned().collect()
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A window the platform acknowledged opening.
#[derive(Debug, Clone)]
pub struct AckedWindow {
    pub id: String,
    pub desktop: String,
}

/// The moves of one dragged window: `x` only grows, so a stored `x` below the last
/// acknowledged one is an acknowledged move lost.
#[derive(Debug, Clone, Default)]
pub struct MoveState {
    pub last_acked: Option<i64>,
}

/// A run the platform acknowledged starting (202).
#[derive(Debug, Clone)]
pub struct AckedRun {
    pub id: String,
    /// The run's input `n`, which its agent node's prompt carries (`drill run <n>`).
    pub marker: String,
    pub with_agent: bool,
}

/// Acknowledged writes.
#[derive(Debug, Default)]
pub struct Ledger {
    pub windows: Mutex<Vec<AckedWindow>>,
    pub moves: Mutex<HashMap<String, MoveState>>,
    pub runs: Mutex<Vec<AckedRun>>,
    pub agents: Mutex<Vec<String>>,
}

/// The label of a failed request's transport error.
pub fn transport_label(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "client timeout".to_owned()
    } else if e.is_connect() {
        "connect error".to_owned()
    } else if e.is_body() || e.is_decode() {
        "body cut".to_owned()
    } else {
        "connection error".to_owned()
    }
}

/// The public API through the gateways, taken in turn as a load balancer would.
#[derive(Debug)]
pub struct Api {
    pub http: reqwest::Client,
    pub gateways: Vec<String>,
    next: AtomicUsize,
    pub token: String,
}

impl Api {
    pub fn new(http: reqwest::Client, gateways: Vec<String>, token: String) -> Self {
        Self { http, gateways, next: AtomicUsize::new(0), token }
    }

    /// The next gateway's base URL.
    pub fn base(&self) -> &str {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.gateways.len();
        &self.gateways[i]
    }

    /// One request; `Err` is what a client would report: `<status> <code>` or a transport label.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        let mut req =
            self.http.request(method, format!("{}{path}", self.base())).bearer_auth(&self.token).timeout(timeout);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| transport_label(&e))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| transport_label(&e))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// [`Api::call`] where only `expected` is a success; other answers become `<status> <code>`.
    pub async fn expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
        timeout: Duration,
    ) -> Result<Value, String> {
        let (status, value) = self.call(method, path, body, timeout).await?;
        if status == expected { Ok(value) } else { Err(format!("{status} {}", value["code"].as_str().unwrap_or("-"))) }
    }

    /// A read for the checks: retried a few times, as only a definite answer counts.
    pub async fn read(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let mut last = String::new();
        for _ in 0..10 {
            match self.call(reqwest::Method::GET, path, None, Duration::from_secs(10)).await {
                Ok((status, value)) if status == 200 || status == 404 => return Ok((status, value)),
                Ok((status, value)) => last = format!("{status} {value}"),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("GET {path}: no definite answer after 10 tries, last: {last}")
    }
}

/// What the load works on, created before it starts.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// The agent chat turns are addressed to (`model`).
    pub chat_agent: String,
    /// Windows dragged by the movers, split between them.
    pub dragged: Vec<Vec<String>>,
    /// Desktops new windows are opened on, in turn as each fills up.
    pub desktops: Vec<String>,
    /// start → delay → transform → end.
    pub delay_workflow: String,
    /// start → delay → agent → end.
    pub agent_workflow: String,
    /// The double's `/v1` URL, the model of created agents.
    pub llm_url: String,
}

/// The load's shared state.
#[derive(Debug)]
pub struct Load {
    pub api: Api,
    pub recorder: Recorder,
    pub ledger: Ledger,
    pub fixtures: Fixtures,
    seq: AtomicU64,
    /// Set while the checks read the dragged windows back: a move acknowledged by one
    /// desktop-state replica is written within its coalescing interval (100 ms), and a read
    /// through another replica before that sees the previous position (not a loss).
    pub drags_paused: std::sync::atomic::AtomicBool,
    drags_in_flight: AtomicUsize,
}

/// Windows opened on one desktop at most (desktop-state allows 200).
const WINDOWS_PER_DESKTOP: usize = 180;

impl Load {
    pub fn new(api: Api, recorder: Recorder, fixtures: Fixtures) -> Self {
        Self {
            api,
            recorder,
            ledger: Ledger::default(),
            fixtures,
            seq: AtomicU64::new(1),
            drags_paused: std::sync::atomic::AtomicBool::new(false),
            drags_in_flight: AtomicUsize::new(0),
        }
    }

    /// Stops the drags and waits until none is in flight and every replica's coalescer has
    /// flushed what it acknowledged.
    pub async fn pause_drags(&self) {
        self.drags_paused.store(true, Ordering::SeqCst);
        while self.drags_in_flight.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }

    /// One move of every dragged window at once (drags paused): the moves a replica has
    /// acknowledged and not yet written when a drill kills it right after.
    pub async fn drag_burst(&self) {
        let windows: Vec<String> = self.fixtures.dragged.iter().flatten().cloned().collect();
        futures::future::join_all(windows.iter().map(|w| self.drag(w))).await;
    }

    pub fn resume_drags(&self) {
        self.drags_paused.store(false, Ordering::SeqCst);
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Starts every worker; they stop with `stop`.
    pub fn spawn(self: &std::sync::Arc<Self>, stop: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let every = |load: &std::sync::Arc<Self>,
                     pause: Duration,
                     f: fn(std::sync::Arc<Self>) -> futures::future::BoxFuture<'static, ()>| {
            let (load, stop) = (load.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.is_cancelled() {
                    f(load.clone()).await;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => {}
                    }
                }
            })
        };
        tasks.push(every(self, Duration::from_millis(200), |l| Box::pin(async move { l.chat().await })));
        for mover in 0..self.fixtures.dragged.len() {
            let (load, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut k = 0usize;
                while !stop.is_cancelled() {
                    let windows = &load.fixtures.dragged[mover];
                    load.drags_in_flight.fetch_add(1, Ordering::SeqCst);
                    if !load.drags_paused.load(Ordering::SeqCst) {
                        load.drag(&windows[k % windows.len()]).await;
                        k += 1;
                    }
                    load.drags_in_flight.fetch_sub(1, Ordering::SeqCst);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        () = stop.cancelled() => {}
                    }
                }
            }));
        }
        tasks.push(every(self, Duration::from_millis(1000), |l| Box::pin(async move { l.open().await })));
        tasks.push(every(self, Duration::from_millis(1500), |l| Box::pin(async move { l.run().await })));
        tasks.push(every(self, Duration::from_millis(4000), |l| Box::pin(async move { l.agent().await })));
        tasks
    }

    async fn chat(&self) {
        let started = self.recorder.now();
        let n = self.next();
        let body = json!({
            "model": self.fixtures.chat_agent,
            "messages": [{"role": "user", "content": format!("drill chat {n}: how are the numbers today?")}],
        });
        let result = self
            .api
            .expect(reqwest::Method::POST, "/v1/chat/completions", Some(&body), 200, Duration::from_secs(60))
            .await;
        let error = match result {
            Ok(v) if v["choices"][0]["message"]["content"].as_str().is_some_and(|c| !c.is_empty()) => None,
            Ok(v) => Some(format!("200 without an answer: {}", truncate(&v.to_string(), 80))),
            Err(e) => Some(e),
        };
        self.recorder.record(Stream::Chat, started, error);
    }

    async fn drag(&self, window: &str) {
        let started = self.recorder.now();
        let x = i64::try_from(self.next()).unwrap_or(i64::MAX);
        let body = json!({"x": x, "y": 40});
        let result = self
            .api
            .expect(
                reqwest::Method::PATCH,
                &format!("/api/v1/windows/{window}"),
                Some(&body),
                200,
                Duration::from_secs(10),
            )
            .await;
        if result.is_ok() {
            let mut moves = lock(&self.ledger.moves);
            let state = moves.entry(window.to_owned()).or_default();
            // Movers of one window are one task: acks arrive in order.
            state.last_acked = Some(state.last_acked.map_or(x, |old| old.max(x)));
        }
        self.recorder.record(Stream::Move, started, result.err());
    }

    async fn open(&self) {
        let opened = lock(&self.ledger.windows).len();
        let Some(desktop) = self.fixtures.desktops.get(opened / WINDOWS_PER_DESKTOP).cloned() else {
            return; // every desktop is full: the drills ran longer than planned
        };
        let started = self.recorder.now();
        let n = self.next();
        let body = json!({"app_id": "notes", "title": format!("drill window {n}"), "x": 10, "y": 10, "request_id": format!("drill-open-{n}")});
        let result = self
            .api
            .expect(
                reqwest::Method::POST,
                &format!("/api/v1/desktops/{desktop}/windows"),
                Some(&body),
                201,
                Duration::from_secs(10),
            )
            .await;
        let error =
            acknowledged(result, "/window/id", |id| lock(&self.ledger.windows).push(AckedWindow { id, desktop }));
        self.recorder.record(Stream::Open, started, error);
    }

    async fn run(&self) {
        let started = self.recorder.now();
        let n = self.next();
        let with_agent = n.is_multiple_of(2);
        let workflow = if with_agent { &self.fixtures.agent_workflow } else { &self.fixtures.delay_workflow };
        let marker = format!("r{n}");
        let body = json!({"input": {"n": marker}});
        let result = self
            .api
            .expect(
                reqwest::Method::POST,
                &format!("/api/v1/workflows/{workflow}/execute"),
                Some(&body),
                202,
                Duration::from_secs(15),
            )
            .await;
        let error = acknowledged(result, "/id", |id| lock(&self.ledger.runs).push(AckedRun { id, marker, with_agent }));
        self.recorder.record(Stream::Run, started, error);
    }

    async fn agent(&self) {
        let started = self.recorder.now();
        let n = self.next();
        let body = agent_body(&format!("drill-agent-{n}"), &self.fixtures.llm_url);
        let result =
            self.api.expect(reqwest::Method::POST, "/api/v1/agents", Some(&body), 201, Duration::from_secs(40)).await;
        let error = acknowledged(result, "/id", |id| lock(&self.ledger.agents).push(id));
        self.recorder.record(Stream::Agent, started, error);
    }
}

/// The error a client saw for `result`, or `None` after handing the id the answer carries at
/// `pointer` (a JSON pointer) to `ledger`: only an answer with an id is an acknowledged write.
fn acknowledged(result: Result<Value, String>, pointer: &str, ledger: impl FnOnce(String)) -> Option<String> {
    match result {
        Ok(v) => match v.pointer(pointer).and_then(Value::as_str) {
            Some(id) => {
                ledger(id.to_owned());
                None
            }
            None => Some(format!("success without {pointer}")),
        },
        Err(e) => Some(e),
    }
}

/// An agent on the double.
pub fn agent_body(name: &str, llm_url: &str) -> Value {
    json!({
        "name": name,
        "model": {"provider": "openai", "model_name": "gpt-4", "base_url": llm_url, "api_key": "sk-drill-agent"},
        "skills": [],
        "prompt_template": "You answer drill questions briefly.",
    })
}

pub fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
