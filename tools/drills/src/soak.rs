//! `getlood-drills soak` (`make soak`, and the end of `make bench`): the drills' platform under
//! the drills' steady mixed load with no fault for `DRILLS_SOAK_SECONDS` (default 600, at least
//! 120), every service process's memory and CPU sampled every 10 s.
//!
//! It measures the platform the drills start: the same 14 replicas (gateway and desktop-state 3
//! each, the other four 2 each), each a `getlood <service>` process, so every figure "per
//! replica" is one process and every figure "per service" is the sum over its replicas. First
//! 15 s with no load (the idle CPU of each service: readiness loops, consumers, sweeps), then
//! the load; every 10 s each replica's `VmRSS` (`/proc/<pid>/status`) and CPU time (`utime +
//! stime` of `/proc/<pid>/stat`, in clock ticks of `AT_CLKTCK`), and the same summed over
//! MindsDB's process group (reported, not judged: it is not ours, and summed RSS counts pages
//! its processes share more than once). The throughput figures cover the window from the end of
//! the first minute (warm-up) to the end.
//!
//! Verdict: the memory of a replica is flat when the mean of its RSS samples in the last minute
//! exceeds the mean of those in the second minute by less than [`FLAT_MIB`] MiB or
//! [`FLAT_SHARE`] of it, whichever is larger (see there why). It exits 1 when a replica's memory
//! is not flat, more than [`FAILED_SHARE`] of the requests failed, or an invariant of the
//! drills' checks (run once at the end, with the load stopped) failed.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use tokio_util::sync::CancellationToken;

use crate::load::{Outcome, Stream, lock};
use crate::platform::SERVICES;
use crate::{Harness, Row, fmt_errors, stamp};

/// How often every process is sampled.
const EVERY: Duration = Duration::from_secs(10);
/// The load's first minute is warm-up (connection pools, caches, the allocator's arenas): the
/// throughput window and the growth both start after it.
const MINUTE: Duration = Duration::from_secs(60);
/// How long the platform runs without load to measure each service's idle CPU.
const IDLE: Duration = Duration::from_secs(15);

/// Growth below this many MiB is flat whatever the RSS. In the first 600 s soak here
/// (2026-12-07) every replica (20 to 36 MiB) grew by 0.0 to 0.4 MiB between the second and the
/// last minute, after 0.2 to 1.1 MiB of warm-up in the first (glibc's malloc arenas, pools,
/// caches): 8 MiB is twenty times that, so a slower or busier run does not fail on the
/// allocator's noise, and over the 8 minutes it still catches a leak of ~1.5 KiB per request at
/// a gateway or desktop-state replica (10 to 12 requests a second each under this load), ~8 KiB
/// per chat turn at a pipeline or agent-registry replica, ~50 KiB per run at a workflow one.
pub const FLAT_MIB: f64 = 8.0;
/// ... or below this share of the second minute's RSS (a process of hundreds of MiB moves by
/// more than a small one).
pub const FLAT_SHARE: f64 = 0.10;
/// With no fault, at most this share of the requests may fail (a 60 s chat turn timing out on
/// a loaded machine is not a leak; more than one in a hundred is something else).
pub const FAILED_SHARE: f64 = 0.01;

/// The soak's length: `DRILLS_SOAK_SECONDS`, default 600.
fn seconds() -> anyhow::Result<Duration> {
    let secs = match std::env::var("DRILLS_SOAK_SECONDS") {
        Ok(s) if !s.trim().is_empty() => {
            s.trim().parse::<u64>().with_context(|| format!("DRILLS_SOAK_SECONDS={s}: a number of seconds"))?
        }
        _ => 600,
    };
    ensure!(secs >= 120, "DRILLS_SOAK_SECONDS={secs}: at least 120 (a warm-up minute, then the second minute)");
    Ok(Duration::from_secs(secs))
}

/// Clock ticks per second, as the kernel gave it to this process (`AT_CLKTCK` of the auxiliary
/// vector, what `sysconf(_SC_CLK_TCK)` reads).
fn clock_ticks() -> anyhow::Result<u64> {
    const AT_CLKTCK: u64 = 17;
    let auxv = std::fs::read("/proc/self/auxv").context("/proc/self/auxv")?;
    auxv.chunks_exact(16)
        .filter_map(|pair| {
            let key = u64::from_ne_bytes(pair[..8].try_into().ok()?);
            let value = u64::from_ne_bytes(pair[8..].try_into().ok()?);
            (key == AT_CLKTCK).then_some(value)
        })
        .find(|ticks| *ticks > 0)
        .context("no AT_CLKTCK in /proc/self/auxv")
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy)]
struct Stat {
    state: char,
    ppid: i32,
    pgrp: i32,
    /// `utime + stime + cutime + cstime`: the process's own CPU time and that of the children it
    /// has reaped (MindsDB's workers).
    ticks: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
    let (_, rest) = text.rsplit_once(") ")?;
    let f: Vec<&str> = rest.split(' ').collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let ticks = field(14)? + field(15)? + field(16)? + field(17)?;
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        ticks,
    })
}

/// `VmRSS` of `/proc/<pid>/status`, in KiB.
fn rss_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
}

/// What is sampled: one replica's process, or a whole process group.
#[derive(Debug, Clone)]
struct Target {
    name: String,
    /// The service, `mindsdb` for the group.
    service: &'static str,
    pid: i32,
    group: bool,
}

/// One sample of a target: RSS in KiB and CPU in ticks; `None` when its process was gone.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_kib: u64,
    ticks: u64,
}

impl Target {
    fn sample(&self) -> Option<Usage> {
        if !self.group {
            return Some(Usage { rss_kib: rss_kib(self.pid)?, ticks: stat(self.pid)?.ticks });
        }
        let mut out = Usage::default();
        let mut any = false;
        for pid in pids() {
            if let Some(s) = stat(pid).filter(|s| s.pgrp == self.pid && s.state != 'Z') {
                any = true;
                out.ticks += s.ticks;
                out.rss_kib += rss_kib(pid).unwrap_or(0);
            }
        }
        any.then_some(out)
    }
}

/// The replicas' processes: the harness's children running `getlood <service>` (`unshare` and
/// `sh` exec'd into it, so the pid the platform started is the service's), each replica's index
/// read from its `HTTP_ADDR` (`127.0.0.(11+i)`); then MindsDB's group, from its pid file.
fn targets(h: &Harness) -> anyhow::Result<Vec<Target>> {
    let me = i32::try_from(std::process::id())?;
    let mut found: BTreeMap<(&'static str, usize), i32> = BTreeMap::new();
    for pid in pids() {
        if stat(pid).is_none_or(|s| s.ppid != me) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let Some((service, _)) = SERVICES.iter().find(|(s, _)| args.get(1).map(String::as_str) == Some(*s)) else {
            continue;
        };
        let key = format!("GETLOOD_{}_HTTP_ADDR=127.0.0.", service.to_ascii_uppercase().replace('-', "_"));
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let index = environ
            .split(|b| *b == 0)
            .filter_map(|v| std::str::from_utf8(v).ok()?.strip_prefix(key.as_str()))
            .find_map(|rest| rest.split(':').next()?.parse::<usize>().ok())
            .and_then(|octet| octet.checked_sub(11));
        if let Some(index) = index {
            found.insert((service, index), pid);
        }
    }
    let mut out = Vec::new();
    for r in h.platform.replicas() {
        let pid = *found.get(&(r.service, r.index)).with_context(|| format!("no process found for {}", r.name()))?;
        out.push(Target { name: r.name(), service: r.service, pid, group: false });
    }
    let pid_file = h.dir.join("mindsdb").join("pid");
    let pgid: i32 = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("mindsdb pid file {}", pid_file.display()))?
        .trim()
        .parse()
        .context("mindsdb pid file")?;
    out.push(Target { name: "mindsdb (process group)".to_owned(), service: "mindsdb", pid: pgid, group: true });
    Ok(out)
}

/// Every target's usage at one moment (since the load started).
#[derive(Debug, Clone)]
struct Sample {
    /// Its nominal time: since the load started (a multiple of [`EVERY`]), or in the idle phase.
    at: Duration,
    usage: Vec<Option<Usage>>,
}

/// What the services count on their `/metrics`, per replica (in [`crate::platform::Platform::replicas`]
/// order): `grpc <method>` and `http <METHOD> <route>` served (probes, gRPC health and
/// reflection left out), and `delivered` (events the dispatcher delivered to subscribers).
async fn counters(h: &Harness) -> Vec<BTreeMap<String, f64>> {
    let pages = h.platform.replicas().iter().map(|r| {
        let url = format!("{}/metrics", r.admin_url());
        let http = h.http.clone();
        async move {
            let page = match http.get(url).timeout(Duration::from_secs(5)).send().await {
                Ok(resp) => resp.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            parse_counters(&page)
        }
    });
    futures::future::join_all(pages).await
}

fn label<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{name}=\""))? + name.len() + 2;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

fn parse_counters(page: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in page.lines() {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let key = if line.starts_with("getlood_grpc_requests_total{") {
            match label(line, "method") {
                Some(m) if !m.starts_with("/grpc.") => format!("grpc {m}"),
                _ => continue,
            }
        } else if line.starts_with("getlood_http_requests_total{") {
            match (label(line, "method"), label(line, "route")) {
                (Some(_), Some("/livez" | "/readyz")) | (None, _) | (_, None) => continue,
                (Some(m), Some(r)) => format!("http {m} {r}"),
            }
        } else if line.starts_with("getlood_event_dispatcher_delivered_total") {
            "delivered".to_owned()
        } else {
            continue;
        };
        *out.entry(key).or_default() += value;
    }
    out
}

/// What reached each service of the load's requests, as the report counts them.
fn load_kinds(service: &str) -> &'static [Stream] {
    match service {
        "gateway" => &Stream::ALL,
        "desktop-state" => &[Stream::Move, Stream::Open],
        "workflow" => &[Stream::Run],
        "pipeline" => &[Stream::Chat],
        "agent-registry" => &[Stream::Chat, Stream::Agent],
        _ => &[],
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Events the SSE client has received so far.
fn received(h: &Harness) -> usize {
    lock(&h.received.seqs).values().map(Vec::len).sum()
}

/// Runs the soak on a started harness; `Ok(false)` when the verdict is not flat or a check failed.
pub async fn run(h: &mut Harness) -> anyhow::Result<bool> {
    let length = seconds()?;
    let tick = clock_ticks()? as f64;
    let targets = targets(h)?;
    stamp(
        h.epoch,
        &format!(
            "soak: {} s of load, {} replicas and mindsdb's process group sampled every {} s",
            length.as_secs(),
            targets.len() - 1,
            EVERY.as_secs()
        ),
    );
    let sample_all = |at: Duration| Sample { at, usage: targets.iter().map(Target::sample).collect() };

    // Idle: the platform with no load and no events client.
    let idle_from = sample_all(Duration::ZERO);
    tokio::time::sleep(IDLE).await;
    let idle_to = sample_all(IDLE);
    stamp(h.epoch, "soak: idle CPU measured; starting the load");

    let (stop, follower) = h.follow_events().await?;
    // The load has a token of its own: it stops at the end while the events client keeps
    // following for the checks.
    let load_stop = CancellationToken::new();
    let workers = h.load.spawn(&load_stop);
    let start = h.load.recorder.now();
    let mut samples = vec![sample_all(Duration::ZERO)];
    let mut window_from = None;
    let mut next = EVERY;
    while next <= length {
        tokio::time::sleep((start + next).saturating_sub(h.load.recorder.now())).await;
        // Filed under its nominal time, so each minute holds the six samples taken in it.
        samples.push(sample_all(next));
        if next == MINUTE {
            window_from = Some((h.load.recorder.now(), counters(h).await, received(h)));
        }
        if next.as_secs().is_multiple_of(60) {
            let so_far = h.load.recorder.between(start, Duration::MAX);
            let failed = so_far.iter().filter(|o| o.error.is_some()).count();
            let last = samples.last().map(|s| s.usage.clone()).unwrap_or_default();
            let rss: u64 =
                targets.iter().zip(&last).filter(|(t, _)| !t.group).filter_map(|(_, u)| u.map(|u| u.rss_kib)).sum();
            stamp(
                h.epoch,
                &format!(
                    "soak: minute {} of {}: {} requests, {failed} failed; the replicas' RSS together {:.0} MiB",
                    next.as_secs() / 60,
                    length.as_secs().div_ceil(60),
                    so_far.len(),
                    mib(rss as f64)
                ),
            );
        }
        next += EVERY;
    }
    let end = h.load.recorder.now();
    let window_to = (end, counters(h).await, received(h));
    let Some(window_from) = window_from else { bail!("the soak ended before its first minute") };

    load_stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    stamp(h.epoch, "soak: load stopped; checking every acknowledged write, run and event");
    let mut row = Row { name: "soak".to_owned(), target: "-".to_owned(), ..Row::default() };
    h.count(&mut row, start, Duration::MAX);
    h.verify(&mut row).await?;
    stop.cancel();
    let _ = follower.await;

    let outcomes = h.load.recorder.between(start, Duration::MAX);
    print_kinds(&outcomes, end.saturating_sub(start));
    let flat = print_memory(&targets, &samples, length);
    print_throughput(h, &targets, tick, (&idle_from, &idle_to), &samples, &outcomes, &window_from, &window_to);

    let mut ok = true;
    for name in &flat {
        ok = false;
        println!("soak: FAILED memory not flat: {name}");
    }
    let share = if row.requests == 0 { 1.0 } else { row.failed as f64 / row.requests as f64 };
    if share > FAILED_SHARE {
        ok = false;
        println!(
            "soak: FAILED {} of {} requests failed ({:.2}%, more than {:.0}%): {}",
            row.failed,
            row.requests,
            share * 100.0,
            FAILED_SHARE * 100.0,
            fmt_errors(&row.errors)
        );
    }
    for failure in row.invariant_failures() {
        ok = false;
        println!("soak: FAILED {failure}");
    }
    let runs = lock(&h.load.ledger.runs).len();
    let windows = lock(&h.load.ledger.windows).len();
    let agents = lock(&h.load.ledger.agents).len();
    println!(
        "soak: checked {windows} windows opened, {runs} runs ({} not succeeded: {}), {agents} agents, {} events received (gaps {}, duplicates {}); verdict: {}",
        row.runs_failed.values().sum::<u64>(),
        fmt_errors(&row.runs_failed),
        received(h),
        row.continuity.gaps,
        row.continuity.duplicates,
        if ok { "flat" } else { "NOT FLAT or failing" }
    );
    Ok(ok)
}

fn print_kinds(outcomes: &[Outcome], length: Duration) {
    println!();
    println!("| request | sent | failed | errors clients saw | per second | p50 | p99 |");
    println!("|---|---|---|---|---|---|---|");
    for kind in Stream::ALL {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.stream == kind).collect();
        let mut errors = BTreeMap::new();
        for e in of.iter().filter_map(|o| o.error.as_ref()) {
            *errors.entry(e.clone()).or_default() += 1;
        }
        let mut latencies: Vec<Duration> = of.iter().map(|o| o.ended.saturating_sub(o.started)).collect();
        latencies.sort();
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.0} ms | {:.0} ms |",
            kind.name(),
            of.len(),
            of.iter().filter(|o| o.error.is_some()).count(),
            fmt_errors(&errors),
            of.len() as f64 / length.as_secs_f64(),
            percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        );
    }
    println!();
}

/// The memory table; returns the replicas whose memory is not flat.
fn print_memory(targets: &[Target], samples: &[Sample], length: Duration) -> Vec<String> {
    let mean = |i: usize, from: Duration, to: Duration| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|s| s.at > from && s.at <= to)
            .filter_map(|s| s.usage[i].map(|u| u.rss_kib as f64))
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let at = |i: usize, when: Duration| {
        samples.iter().rfind(|s| s.at <= when).and_then(|s| s.usage[i]).map(|u| u.rss_kib as f64)
    };
    let last_from = length.saturating_sub(MINUTE);
    println!(
        "memory: VmRSS in MiB, sampled every {} s; the 2nd minute is the mean of the samples in ({}, {}] s, the last minute of those in ({}, {}] s{}",
        EVERY.as_secs(),
        MINUTE.as_secs(),
        2 * MINUTE.as_secs(),
        last_from.as_secs(),
        length.as_secs(),
        if last_from < 2 * MINUTE { " (they overlap: too short a soak to judge growth)" } else { "" }
    );
    println!(
        "| replica | after the 1st minute | 2nd minute | last minute | growth | at the end | max | flat (growth < {FLAT_MIB:.0} MiB or {:.0}%) |",
        FLAT_SHARE * 100.0
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut not_flat = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let first = at(i, MINUTE);
        let second = mean(i, MINUTE, 2 * MINUTE);
        let last = mean(i, last_from, length);
        let end = samples.last().and_then(|s| s.usage[i]).map(|u| u.rss_kib as f64);
        let max = samples.iter().filter_map(|s| s.usage[i]).map(|u| u.rss_kib).max().map(|k| k as f64);
        let gone = samples.iter().any(|s| s.usage[i].is_none());
        let growth = second.zip(last).map(|(a, b)| b - a);
        let flat = match (growth, second) {
            _ if gone => false,
            (Some(g), Some(base)) => mib(g) < FLAT_MIB.max(mib(base) * FLAT_SHARE),
            _ => false,
        };
        let verdict = match (t.group, flat, gone) {
            (true, _, _) => "not judged",
            (false, _, true) => "NO (process gone)",
            (false, true, false) => "yes",
            (false, false, false) => "NO",
        };
        if !t.group && !flat {
            not_flat.push(format!(
                "{}: {}",
                t.name,
                if gone {
                    "its process was gone in a sample".to_owned()
                } else {
                    format!("{:+.1} MiB", growth.map_or(f64::NAN, mib))
                }
            ));
        }
        let show = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |k| format!("{:.1}", mib(k)));
        let growth_text = match (growth, second) {
            (Some(g), Some(base)) if base > 0.0 => format!("{:+.1} ({:+.1}%)", mib(g), g / base * 100.0),
            _ => "-".to_owned(),
        };
        println!(
            "| {} | {} | {} | {} | {growth_text} | {} | {} | {verdict} |",
            t.name,
            show(first),
            show(second),
            show(last),
            show(end),
            show(max)
        );
    }
    println!();
    not_flat
}

#[allow(clippy::too_many_arguments)]
fn print_throughput(
    h: &Harness,
    targets: &[Target],
    tick: f64,
    (idle_from, idle_to): (&Sample, &Sample),
    samples: &[Sample],
    outcomes: &[Outcome],
    window_from: &(Duration, Vec<BTreeMap<String, f64>>, usize),
    window_to: &(Duration, Vec<BTreeMap<String, f64>>, usize),
) {
    let (from, counters_from, received_from) = window_from;
    let (to, counters_to, received_to) = window_to;
    let window = to.saturating_sub(*from).as_secs_f64();
    // The samples taken at the window's ends (the first minute's, and the last).
    let first = samples.iter().find(|s| s.at >= MINUTE);
    let last = samples.last();
    let cpu = |i: usize, a: Option<&Sample>, b: Option<&Sample>| -> Option<f64> {
        let (a, b) = (a?.usage[i]?, b?.usage[i]?);
        Some(b.ticks.saturating_sub(a.ticks) as f64 / tick)
    };
    let idle_secs = idle_to.at.saturating_sub(idle_from.at).as_secs_f64();
    let ok_in_window = |kinds: &[Stream]| {
        outcomes
            .iter()
            .filter(|o| o.ended >= *from && o.ended < *to && o.error.is_none() && kinds.contains(&o.stream))
            .count()
    };
    let services: Vec<&'static str> = SERVICES.iter().map(|(s, _)| *s).chain(["mindsdb"]).collect();
    println!(
        "throughput: from the end of the 1st minute to the end ({window:.0} s); CPU in seconds of CPU time (utime + stime), per core = handled / CPU seconds"
    );
    println!(
        "| service | replicas | idle CPU (cores) | CPU s | CPU (cores, mean) | load requests handled (kinds) | per core (req/s) | calls served (/metrics) | per core (calls/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut breakdown = Vec::new();
    for service in services {
        let idx: Vec<usize> =
            targets.iter().enumerate().filter(|(_, t)| t.service == service).map(|(i, _)| i).collect();
        let cpu_s: Option<f64> = idx.iter().map(|i| cpu(*i, first, last)).sum();
        let idle: Option<f64> = idx.iter().map(|i| cpu(*i, Some(idle_from), Some(idle_to))).sum();
        let (handled, kinds) = if service == "event-dispatcher" {
            (received_to.saturating_sub(*received_from), "events the SSE client received".to_owned())
        } else if service == "mindsdb" {
            (ok_in_window(&[Stream::Chat, Stream::Agent]), "chat, agent; not the runs' agent nodes".to_owned())
        } else {
            let kinds = load_kinds(service);
            (ok_in_window(kinds), kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(", "))
        };
        let mut calls: BTreeMap<String, f64> = BTreeMap::new();
        for (i, _) in h.platform.replicas().iter().enumerate().filter(|(_, r)| r.service == service) {
            let (Some(a), Some(b)) = (counters_from.get(i), counters_to.get(i)) else { continue };
            for (key, value) in b {
                let delta = (value - a.get(key).copied().unwrap_or(0.0)).max(0.0);
                if delta > 0.0 {
                    *calls.entry(key.clone()).or_default() += delta;
                }
            }
        }
        let delivered = calls.remove("delivered");
        // `+ 0.0`: an empty sum of floats is -0.0.
        let served: f64 = calls.values().sum::<f64>() + 0.0;
        let per = |n: f64| cpu_s.filter(|c| *c > 0.0).map_or_else(|| "-".to_owned(), |c| format!("{:.0}", n / c));
        let served_text = match delivered {
            Some(d) => format!("{served:.0} (+ {d:.0} events delivered)"),
            None if service == "mindsdb" => "-".to_owned(),
            None => format!("{served:.0}"),
        };
        println!(
            "| {service} | {} | {} | {} | {} | {handled} ({kinds}) | {} | {served_text} | {} |",
            if service == "mindsdb" { "1 group".to_owned() } else { idx.len().to_string() },
            idle.map_or_else(|| "-".to_owned(), |c| format!("{:.3}", c / idle_secs)),
            cpu_s.map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
            cpu_s.map_or_else(|| "-".to_owned(), |c| format!("{:.3}", c / window)),
            per(handled as f64),
            if service == "mindsdb" || served == 0.0 { "-".to_owned() } else { per(served) },
        );
        let mut top: Vec<(String, f64)> = calls.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        if !top.is_empty() {
            let list: Vec<String> = top.iter().take(6).map(|(k, v)| format!("{k} {v:.0}")).collect();
            breakdown.push(format!("{service}: {}", list.join(", ")));
        }
    }
    println!();
    println!("calls served in the window, by method or route (most first):");
    for line in breakdown {
        println!("  {line}");
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = i32::try_from(std::process::id()).unwrap();
        let s = stat(me).unwrap();
        assert!(s.ppid > 0 && s.pgrp > 0 && s.state != 'Z');
        assert!(rss_kib(me).unwrap() > 0);
        assert!(clock_ticks().unwrap() > 0);
    }

    #[test]
    fn counts_served_calls_without_probes() {
        let page = "# TYPE getlood_grpc_requests_total counter\n\
            getlood_grpc_requests_total{service=\"pipeline\",method=\"/getlood.pipeline.v1.PipelineService/Execute\",code=\"Ok\"} 7\n\
            getlood_grpc_requests_total{service=\"pipeline\",method=\"/getlood.pipeline.v1.PipelineService/Execute\",code=\"Unavailable\"} 1\n\
            getlood_grpc_requests_total{service=\"pipeline\",method=\"/grpc.health.v1.Health/Watch\",code=\"Ok\"} 4\n\
            getlood_http_requests_total{service=\"gateway\",route=\"/livez\",method=\"GET\",status=\"200\"} 9\n\
            getlood_http_requests_total{service=\"gateway\",route=\"/api/v1/windows/{id}\",method=\"PATCH\",status=\"200\"} 3\n\
            getlood_event_dispatcher_delivered_total 12\n";
        let c = parse_counters(page);
        assert_eq!(c.get("grpc /getlood.pipeline.v1.PipelineService/Execute"), Some(&8.0));
        assert_eq!(c.get("http PATCH /api/v1/windows/{id}"), Some(&3.0));
        assert_eq!(c.get("delivered"), Some(&12.0));
        assert_eq!(c.len(), 3);
    }
}
