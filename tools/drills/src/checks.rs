//! What is verified after each drill: every acknowledged write is readable (windows, the last
//! acknowledged position of each dragged window, runs, agents), and every run finishes without
//! a node executed more often than its attempts say.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::events::Truth;
use crate::load::{Load, lock};

/// What kind of acknowledged write was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Window,
    /// A dragged window not where its last acknowledged move put it.
    Move,
    Run,
    Agent,
}

/// Acknowledged writes not readable any more, each with what was found.
#[derive(Debug, Default, Clone)]
pub struct Lost {
    pub found: Vec<(Kind, String)>,
}

impl Lost {
    pub fn count(&self, kind: Kind) -> u64 {
        self.found.iter().filter(|(k, _)| *k == kind).count() as u64
    }

    pub fn total(&self) -> u64 {
        self.found.len() as u64
    }

    /// What this check found that `before` (the previous check) had not: a lost window, run
    /// or agent stays lost, and a lost move names the position acknowledged, which later
    /// moves of the same window replace.
    pub fn since(&self, before: &Lost) -> Lost {
        Lost { found: self.found.iter().filter(|f| !before.found.contains(f)).cloned().collect() }
    }

    /// Removes and counts the losses of `kind`.
    pub fn take(&mut self, kind: Kind) -> u64 {
        let n = self.count(kind);
        self.found.retain(|(k, _)| *k != kind);
        n
    }

    pub fn details(&self) -> Vec<&str> {
        self.found.iter().map(|(_, d)| d.as_str()).collect()
    }
}

/// Every id of a paged list (`items` is the answer's array key).
async fn list_ids(load: &Load, path: &str, items: &str) -> anyhow::Result<HashSet<String>> {
    let mut ids = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut url = format!("{path}{sep}page_size=500");
        if let Some(t) = &token {
            url.push_str("&page_token=");
            url.push_str(t);
        }
        let (status, page) = load.api.read(&url).await?;
        anyhow::ensure!(status == 200, "GET {path}: {status} {page}");
        for item in page[items].as_array().into_iter().flatten() {
            if let Some(id) = item["id"].as_str() {
                ids.insert(id.to_owned());
            }
        }
        match page["next_page_token"].as_str() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(ids),
        }
    }
}

/// Whether `path` answers 404 (a list that missed an item while it changed under the paging is
/// double-checked with a read of the item itself).
async fn gone(load: &Load, path: &str) -> anyhow::Result<bool> {
    Ok(load.api.read(path).await?.0 == 404)
}

/// Reads back every acknowledged window, dragged position, run and agent.
pub async fn writes(load: &Load) -> anyhow::Result<Lost> {
    let mut lost = Lost::default();
    let windows = lock(&load.ledger.windows).clone();
    let mut by_desktop: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in windows {
        by_desktop.entry(w.desktop).or_default().push(w.id);
    }
    for (desktop, acked) in by_desktop {
        let stored = list_ids(load, &format!("/api/v1/desktops/{desktop}/windows"), "windows").await?;
        for id in acked.iter().filter(|id| !stored.contains(*id)) {
            if !gone(load, &format!("/api/v1/windows/{id}")).await? {
                continue;
            }
            lost.found.push((Kind::Window, format!("window {id} (desktop {desktop}) acknowledged but not listed")));
        }
    }
    // With the drags paused and flushed, each dragged window must be where its last
    // acknowledged move put it.
    load.pause_drags().await;
    let moves = lock(&load.ledger.moves).clone();
    let mut dragged = Vec::new();
    for (window, state) in moves {
        let Some(acked) = state.last_acked else { continue };
        match load.api.read(&format!("/api/v1/windows/{window}")).await {
            Ok((status, body)) => dragged.push((window, acked, status, body["x"].as_i64())),
            Err(e) => {
                load.resume_drags();
                return Err(e);
            }
        }
    }
    load.resume_drags();
    for (window, acked, status, stored) in dragged {
        if status != 200 || stored.is_none_or(|x| x < acked) {
            lost.found.push((
                Kind::Move,
                format!("move of window {window}: x={acked} acknowledged, stored {status} x={stored:?}"),
            ));
        }
    }
    let agents = lock(&load.ledger.agents).clone();
    if !agents.is_empty() {
        let stored = list_ids(load, "/api/v1/agents", "agents").await?;
        for id in agents.iter().filter(|id| !stored.contains(*id)) {
            if !gone(load, &format!("/api/v1/agents/{id}")).await? {
                continue;
            }
            lost.found.push((Kind::Agent, format!("agent {id} acknowledged but not listed")));
        }
    }
    let runs = lock(&load.ledger.runs).clone();
    let mut stored = HashSet::new();
    for wf in [&load.fixtures.delay_workflow, &load.fixtures.agent_workflow] {
        stored.extend(list_ids(load, &format!("/api/v1/workflows/{wf}/runs"), "runs").await?);
    }
    for run in runs.iter().filter(|r| !stored.contains(&r.id)) {
        if !gone(load, &format!("/api/v1/workflows/runs/{}", run.id)).await? {
            continue;
        }
        lost.found.push((Kind::Run, format!("run {} acknowledged but not listed", run.id)));
    }
    Ok(lost)
}

/// How the runs acknowledged so far ended.
#[derive(Debug, Default, Clone)]
pub struct Runs {
    /// Runs that finished in this check.
    pub settled: u64,
    /// Of them, not succeeded, by status and error code.
    pub failed: BTreeMap<String, u64>,
    /// Still not final at the deadline.
    pub stuck: Vec<String>,
    /// Nodes completed more than once, or executed more often than their attempts and
    /// resumptions account for.
    pub twice: Vec<String>,
    /// Nodes whose worker was killed mid-execution and that another worker resumed (the
    /// engine's at-least-once for a node in flight; reported, not a failure).
    pub resumed: u64,
}

/// The planning prompt of MindsDB 26.1's agent, sent before it answers (sometimes more than
/// once): not an execution of the question.
const AGENT_PLANNING_PROMPT: &str = "create a plan for how to solve the question";

/// Waits for every acknowledged run not settled yet to finish (up to `wait`), then checks each
/// one's node executions: the workflow stream's node events, the run's attempts and resume
/// logs, and the questions the double answered for its agent node.
pub async fn runs(
    load: &Load,
    truth: &mut Truth,
    double: &getlood_testkit::OpenAiDouble,
    settled: &mut HashSet<String>,
    wait: Duration,
) -> anyhow::Result<Runs> {
    let mut out = Runs::default();
    let pending: Vec<_> = lock(&load.ledger.runs).iter().filter(|r| !settled.contains(&r.id)).cloned().collect();
    let deadline = Instant::now() + wait;
    let mut finals: Vec<(crate::load::AckedRun, Value)> = Vec::new();
    let mut left = pending;
    while !left.is_empty() {
        let mut still = Vec::new();
        for run in left {
            let (status, body) = load.api.read(&format!("/api/v1/workflows/runs/{}", run.id)).await?;
            let state = body["status"].as_str().unwrap_or_default();
            if status == 200 && ["succeeded", "failed", "cancelled"].contains(&state) {
                finals.push((run, body));
            } else {
                still.push(run);
            }
        }
        left = still;
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out.stuck = left.iter().map(|r| r.id.clone()).collect();
    truth.refresh().await?;
    let answers = agent_answers(double);
    for (run, body) in finals {
        settled.insert(run.id.clone());
        out.settled += 1;
        let status = body["status"].as_str().unwrap_or_default();
        if status != "succeeded" {
            let code = body["error"]["code"].as_str().unwrap_or("-");
            *out.failed.entry(format!("{status} {code}")).or_default() += 1;
        }
        let mut resumes: HashMap<String, u32> = HashMap::new();
        for log in body["logs"].as_array().into_iter().flatten() {
            if log["message"].as_str().is_some_and(|m| m.starts_with("resuming node")) {
                *resumes.entry(log["node_id"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
        out.resumed += u64::from(resumes.values().sum::<u32>());
        let events = truth.nodes.get(&run.id).cloned().unwrap_or_default();
        for node in body["node_runs"].as_array().into_iter().flatten() {
            let id = node["node_id"].as_str().unwrap_or_default();
            let attempts = u32::try_from(node["attempt"].as_i64().unwrap_or(0)).unwrap_or(0);
            let (starts, completions) = events.get(id).copied().unwrap_or((0, 0));
            if completions > 1 {
                out.twice.push(format!("run {} node {id}: completed {completions} times", run.id));
            }
            if starts > attempts {
                out.twice
                    .push(format!("run {} node {id}: {starts} node.started events for {attempts} attempts", run.id));
            }
            if id == "ask" && run.with_agent {
                let asked = answers.get(&run.marker).copied().unwrap_or(0);
                let allowed = attempts + resumes.get(id).copied().unwrap_or(0);
                if asked > allowed {
                    out.twice.push(format!(
                        "run {} node ask: the agent answered its question {asked} times for {attempts} attempts and {} resumptions",
                        run.id,
                        allowed - attempts
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Questions the double answered per run marker (`[r12]` in the agent node's prompt).
fn agent_answers(double: &getlood_testkit::OpenAiDouble) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for call in double.calls_to("/v1/chat/completions") {
        let body = call.body.to_string();
        if body.contains(AGENT_PLANNING_PROMPT) {
            continue;
        }
        // The prompt is `drill run [<marker>]: ...`; a body may quote it more than once.
        if let Some(start) = body.find("drill run [") {
            let rest = &body[start + "drill run [".len()..];
            if let Some(end) = rest.find(']') {
                *out.entry(rest[..end].to_owned()).or_default() += 1;
            }
        }
    }
    out
}
