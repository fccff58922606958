//! The events check: one client of `GET /api/v1/events` (SSE) follows the tenant's agent, turn,
//! window and workflow events through whatever gateway answers, and resumes with
//! `Last-Event-ID` whenever its stream ends (a gateway killed, NATS away). What it received is
//! compared with the streams themselves, read straight from JetStream: every event between the
//! first and the last one received must have been received once, in order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_common::TenantId;
use getlood_events::{Domain, EventBus, Payload};
use tokio_util::sync::CancellationToken;

use crate::load::lock;

/// The domains followed.
pub const DOMAINS: [Domain; 4] = [Domain::Agent, Domain::Turn, Domain::Window, Domain::Workflow];

/// The domain of an event type, as the dispatcher files them.
fn domain_of(kind: &str) -> Option<Domain> {
    let head = kind.split('.').next()?;
    Some(match head {
        "agent" => Domain::Agent,
        "turn" | "a2a_task" => Domain::Turn,
        "window" | "desktop" => Domain::Window,
        "run" | "node" => Domain::Workflow,
        _ => return None,
    })
}

/// The sequence of `domain` in a cursor (`agent:7,window:42`).
fn position(cursor: &str, domain: Domain) -> Option<u64> {
    cursor.split(',').find_map(|part| {
        let (d, seq) = part.split_once(':')?;
        (d == domain.token()).then(|| seq.parse().ok()).flatten()
    })
}

/// What the SSE client saw.
#[derive(Debug, Default)]
pub struct Received {
    /// Stream sequences received, per domain, in arrival order.
    pub seqs: Mutex<HashMap<&'static str, Vec<u64>>>,
    /// Streams opened after the first.
    pub reconnects: AtomicU64,
    /// Ends other than a cut connection (`resync`, `error`, `expired`), by kind.
    pub ends: Mutex<BTreeMap<String, u64>>,
    /// The gateway (index) the current stream is on.
    pub gateway: AtomicUsize,
    /// Whether a stream is open now.
    pub connected: std::sync::atomic::AtomicBool,
    /// Every event received again or out of order, as it arrived: the domain and sequence, the
    /// highest sequence of that domain received before, and the stream it came on (its number
    /// and the cursor it resumed from), so a failure can be traced in the replicas' logs.
    pub repeats: Mutex<Vec<String>>,
}

/// Follows the events until `stop`.
pub async fn follow(
    http: reqwest::Client,
    gateways: Vec<String>,
    token: String,
    received: std::sync::Arc<Received>,
    stop: CancellationToken,
) {
    let mut cursor: Option<String> = None;
    let mut attempt = 0usize;
    let mut opened = 0u64;
    while !stop.is_cancelled() {
        let g = attempt % gateways.len();
        attempt += 1;
        let mut req =
            http.get(format!("{}/api/v1/events?topics=agent,turn,window,workflow", gateways[g])).bearer_auth(&token);
        if let Some(c) = &cursor {
            req = req.header("last-event-id", c);
        }
        let resp = tokio::select! {
            r = req.send() => r,
            () = stop.cancelled() => return,
        };
        match resp {
            Ok(r) if r.status().is_success() => {
                received.gateway.store(g, Ordering::Relaxed);
                received.connected.store(true, Ordering::Relaxed);
                opened += 1;
                let resumed_from = cursor.clone().unwrap_or_else(|| "-".to_owned());
                if attempt > 1 {
                    received.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                let mut body = r.bytes_stream();
                let mut buf = String::new();
                let mut event = SseEvent::default();
                'stream: loop {
                    let chunk = tokio::select! {
                        c = body.next() => c,
                        () = stop.cancelled() => return,
                    };
                    let Some(Ok(chunk)) = chunk else { break };
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find('\n') {
                        let line = buf[..end].trim_end_matches('\r').to_owned();
                        buf.drain(..=end);
                        if line.is_empty() {
                            let done = std::mem::take(&mut event);
                            match done.kind.as_str() {
                                "" => {}
                                "resync" | "error" | "expired" => {
                                    *lock(&received.ends).entry(done.kind).or_default() += 1;
                                    break 'stream;
                                }
                                kind => {
                                    if let (Some(domain), Some(id)) = (domain_of(kind), done.id.as_deref())
                                        && let Some(seq) = position(id, domain)
                                    {
                                        let mut seqs = lock(&received.seqs);
                                        let got = seqs.entry(domain.token()).or_default();
                                        if let Some(max) = got.iter().max().copied().filter(|max| seq <= *max) {
                                            lock(&received.repeats).push(format!(
                                                "{}:{seq} after {max} on stream {opened} (gateway {g}, resumed from {resumed_from})",
                                                domain.token()
                                            ));
                                        }
                                        got.push(seq);
                                    }
                                    if done.id.is_some() {
                                        cursor = done.id;
                                    }
                                }
                            }
                        } else if let Some(v) = line.strip_prefix("id:") {
                            event.id = Some(v.trim_start().to_owned());
                        } else if let Some(v) = line.strip_prefix("event:") {
                            v.trim_start().clone_into(&mut event.kind);
                        }
                    }
                }
                received.connected.store(false, Ordering::Relaxed);
            }
            _ => {}
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = stop.cancelled() => return,
        }
    }
}

#[derive(Debug, Default)]
struct SseEvent {
    id: Option<String>,
    kind: String,
}

/// The tenant's events as JetStream stores them, read incrementally.
#[derive(Debug)]
pub struct Truth {
    bus: EventBus,
    js: async_nats::jetstream::Context,
    tenant: TenantId,
    /// Sequences per domain.
    pub seqs: HashMap<&'static str, BTreeSet<u64>>,
    /// Per run: node id → (starts, completions), from the workflow stream.
    pub nodes: HashMap<String, HashMap<String, (u32, u32)>>,
}

impl Truth {
    pub fn new(nats: async_nats::Client, tenant: TenantId) -> Self {
        let bus = EventBus::new(nats.clone(), "getlood");
        Self { bus, js: async_nats::jetstream::new(nats), tenant, seqs: HashMap::new(), nodes: HashMap::new() }
    }

    /// Reads what was added to every followed stream since the last call, up to each stream's
    /// last sequence as it is now (the load keeps adding: reading "until quiet" never ends).
    /// Every message of these streams is the drill tenant's: the NATS cluster is the drills' own.
    pub async fn refresh(&mut self) -> anyhow::Result<()> {
        for domain in DOMAINS {
            let mut stream = self.js.get_stream(self.bus.stream_name(domain)).await?;
            let last = stream.info().await?.state.last_sequence;
            loop {
                let after = self.seqs.get(domain.token()).and_then(|s| s.last().copied()).unwrap_or(0);
                if after >= last {
                    break;
                }
                let want = usize::try_from((last - after).min(5000)).unwrap_or(5000);
                let batch = self.bus.read(&self.tenant, domain, after, want, Duration::from_secs(2)).await?;
                if batch.is_empty() {
                    break;
                }
                for event in batch {
                    self.seqs.entry(domain.token()).or_default().insert(event.sequence);
                    match event.envelope.payload {
                        Some(Payload::NodeStarted(s)) => {
                            self.nodes.entry(s.run_id).or_default().entry(s.node_id).or_default().0 += 1;
                        }
                        Some(Payload::NodeCompleted(c)) => {
                            self.nodes.entry(c.run_id).or_default().entry(c.node_id).or_default().1 += 1;
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// Gaps and duplicates of the SSE client against the streams.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Continuity {
    /// Events stored between the first and last received that were never received, plus
    /// stored events past the last received that did not arrive within the wait.
    pub gaps: u64,
    /// Events received again or out of order.
    pub duplicates: u64,
}

/// Waits (up to `wait`) for the client to catch up with the streams as they are now, then
/// counts gaps and duplicates over everything received so far.
pub async fn check(received: &Received, truth: &mut Truth, wait: Duration) -> anyhow::Result<Continuity> {
    truth.refresh().await?;
    let deadline = Instant::now() + wait;
    loop {
        let behind = DOMAINS.iter().any(|d| {
            let stored = truth.seqs.get(d.token()).and_then(|s| s.last().copied()).unwrap_or(0);
            let got = lock(&received.seqs).get(d.token()).and_then(|s| s.iter().max().copied()).unwrap_or(0);
            got < stored
        });
        if !behind || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut out = Continuity::default();
    let seqs = lock(&received.seqs);
    for domain in DOMAINS {
        let stored = truth.seqs.get(domain.token()).cloned().unwrap_or_default();
        let got = seqs.get(domain.token()).cloned().unwrap_or_default();
        let Some(first) = got.first().copied() else {
            // Nothing received of a domain that has events: all of them are missing.
            out.gaps += stored.len() as u64;
            continue;
        };
        let mut seen = BTreeSet::new();
        let mut last = 0u64;
        for s in &got {
            if *s <= last || !seen.insert(*s) {
                out.duplicates += 1;
            }
            last = last.max(*s);
        }
        // Only what was stored after the client first connected can be expected of it.
        out.gaps += stored.range(first..).filter(|s| !seen.contains(s)).count() as u64;
    }
    Ok(out)
}
