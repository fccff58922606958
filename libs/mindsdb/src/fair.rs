//! Fair share of a client's MindsDB slots between tenants, under a limit that follows MindsDB's
//! load.
//!
//! MindsDB 26.1 runs its agents in one Python process: when it is busy computing, every request
//! in flight shares the same core (processor sharing), so a request's latency grows with the
//! number of requests in flight, whoever sent them. A fixed per-tenant cap does not make that
//! fair: with four of tenant A's agent answers in flight, tenant B's one answer gets a fifth of
//! MindsDB and takes five times as long (the fairness bench measured 7x at the old defaults). Two
//! things make it fair here:
//!
//! - **The limit follows MindsDB.** A probe (`GET /api/status`, which needs MindsDB's worker pool
//!   and its interpreter like any request) is timed while this client has work in flight. A slow
//!   probe means MindsDB is saturated, and more in flight only queues there: the limit shrinks by
//!   a quarter. A fast probe while requests wait here means MindsDB has room: the limit grows by
//!   one. Agent answers that wait on a remote model leave MindsDB idle, so with a real model the
//!   limit climbs back to `max_concurrency`; with a model that answers at once (the local model,
//!   the test double) MindsDB is the bottleneck and the limit settles near its core count.
//! - **Slots are shared out per active tenant.** Each tenant may hold `limit / active tenants`
//!   slots (at least one, at most `max_concurrency_per_tenant`), and a freed slot goes to the
//!   waiting tenant under its share that has the fewest requests in flight and was served
//!   longest ago, not to whoever asked first: a tenant that just had its turn waits behind the
//!   others. A tenant stays active for `tenant_linger` after its last request ends, so a user
//!   who sends the next question a moment after the last answer finds its share still reserved
//!   instead of taken by the busy tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use getlood_common::TenantId;
use tokio::sync::oneshot;

use crate::error::{MindsdbError, Result};

/// Gauge: this client's current limit of requests in flight.
pub const METRIC_LIMIT: &str = "getlood_mindsdb_concurrency_limit";
/// Gauge: requests waiting for a slot in this client.
pub const METRIC_WAITING: &str = "getlood_mindsdb_waiting_requests";
/// Histogram: latency of MindsDB's load probe.
pub const METRIC_PROBE: &str = "getlood_mindsdb_probe_seconds";

/// The limiter's settings (from [`crate::MindsdbConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Upper bound of the limit.
    pub max: usize,
    /// Upper bound of one tenant's share.
    pub per_tenant_max: usize,
    /// How long a tenant keeps its share after its last request ended.
    pub linger: Duration,
    /// A probe slower than this means MindsDB is saturated.
    pub congested_above: Duration,
    /// Whether probes move the limit (off: the limit stays at `max`).
    pub adaptive: bool,
}

/// One request's right to run; its slot goes back (to the next tenant in turn) on drop.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<FairLimiter>,
    tenant: TenantId,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(&self.tenant);
    }
}

/// The shared limit and each tenant's share of it.
#[derive(Debug)]
pub(crate) struct FairLimiter {
    limits: Limits,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limit: usize,
    in_flight: usize,
    waiting: usize,
    /// Tenants in flight, waiting, or within their linger; the others leave the map.
    tenants: HashMap<TenantId, Tenant>,
    /// Tenants with waiters (the order breaks ties only: see `dispatch`).
    ring: VecDeque<TenantId>,
    next_id: u64,
}

#[derive(Debug, Default)]
struct Tenant {
    in_flight: usize,
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    last_release: Option<Instant>,
    /// When this tenant was last given a slot: the tenant served longest ago goes first.
    last_grant: Option<Instant>,
}

impl Tenant {
    fn active(&self, now: Instant, linger: Duration) -> bool {
        self.in_flight > 0 || !self.waiters.is_empty() || self.last_release.is_some_and(|t| now - t < linger)
    }
}

impl State {
    /// A tenant's share now: the limit split between the active tenants.
    fn share(&self, limits: &Limits, now: Instant) -> usize {
        let active = self.tenants.values().filter(|t| t.active(now, limits.linger)).count().max(1);
        (self.limit / active).clamp(1, limits.per_tenant_max)
    }

    /// Hands free slots to waiters. Each slot goes to the waiting tenant under its share with
    /// the fewest requests in flight, and among those to the one whose last slot was granted
    /// longest ago: a tenant that just had its turn comes after every other tenant waiting, so
    /// a light tenant's request takes the very next free slot instead of queueing behind a
    /// busy tenant that is first in line (which, at a limit of one or two, doubled its wait).
    fn dispatch(&mut self, limits: &Limits, now: Instant) {
        let share = self.share(limits, now);
        let tenants = &self.tenants;
        self.ring.retain(|id| tenants.get(id).is_some_and(|t| !t.waiters.is_empty()));
        while self.in_flight < self.limit {
            let next = self
                .ring
                .iter()
                .enumerate()
                .filter_map(|(pos, id)| {
                    let t = self.tenants.get(id)?;
                    (!t.waiters.is_empty() && t.in_flight < share).then_some((t.in_flight, t.last_grant, pos))
                })
                .min();
            let Some((_, _, pos)) = next else { break };
            let Some(id) = self.ring.remove(pos) else { break };
            let Some(tenant) = self.tenants.get_mut(&id) else { continue };
            let Some((_, tx)) = tenant.waiters.pop_front() else { continue };
            self.waiting -= 1;
            // The waiter's guard removes it under this lock before its receiver goes, so a
            // waiter still queued can always be woken.
            if tx.send(()).is_ok() {
                self.in_flight += 1;
                tenant.in_flight += 1;
                tenant.last_grant = Some(now);
            }
            if !tenant.waiters.is_empty() {
                self.ring.push_back(id);
            }
        }
        metrics::gauge!(METRIC_WAITING).set(self.waiting as f64);
    }

    fn forget_idle(&mut self, limits: &Limits, now: Instant) {
        self.tenants.retain(|_, t| t.active(now, limits.linger));
    }
}

impl FairLimiter {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        let limits = Limits {
            max: limits.max.max(1),
            per_tenant_max: limits.per_tenant_max.clamp(1, limits.max.max(1)),
            ..limits
        };
        metrics::gauge!(METRIC_LIMIT).set(limits.max as f64);
        Arc::new(Self {
            limits,
            state: Mutex::new(State {
                limit: limits.max,
                in_flight: 0,
                waiting: 0,
                tenants: HashMap::new(),
                ring: VecDeque::new(),
                next_id: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a slot for `tenant`.
    pub(crate) async fn acquire(self: &Arc<Self>, tenant: &TenantId) -> Result<Permit> {
        let (id, rx) = {
            let now = Instant::now();
            let mut state = self.lock();
            let share = state.share(&self.limits, now);
            let under_limit = state.in_flight < state.limit;
            let id = state.next_id;
            state.next_id += 1;
            let entry = state.tenants.entry(tenant.clone()).or_default();
            if entry.waiters.is_empty() && entry.in_flight < share && under_limit {
                entry.last_grant = Some(now);
                entry.in_flight += 1;
                state.in_flight += 1;
                return Ok(Permit { limiter: Arc::clone(self), tenant: tenant.clone() });
            }
            let (tx, rx) = oneshot::channel();
            let first = entry.waiters.is_empty();
            entry.waiters.push_back((id, tx));
            if first {
                state.ring.push_back(tenant.clone());
            }
            state.waiting += 1;
            metrics::gauge!(METRIC_WAITING).set(state.waiting as f64);
            (id, rx)
        };
        let mut guard = Waiting { limiter: self, tenant, id, rx, done: false };
        let granted = (&mut guard.rx).await;
        guard.done = true;
        granted.map_err(|_| MindsdbError::Internal("concurrency limiter dropped a waiter".to_owned()))?;
        Ok(Permit { limiter: Arc::clone(self), tenant: tenant.clone() })
    }

    fn release(&self, tenant: &TenantId) {
        let now = Instant::now();
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(t) = state.tenants.get_mut(tenant) {
            t.in_flight = t.in_flight.saturating_sub(1);
            t.last_release = Some(now);
        }
        state.dispatch(&self.limits, now);
        state.forget_idle(&self.limits, now);
    }

    /// Whether this client has work in flight or waiting (only then is MindsDB probed).
    pub(crate) fn busy(&self) -> bool {
        let state = self.lock();
        state.in_flight > 0 || state.waiting > 0
    }

    /// Moves the limit by one probe of MindsDB: `None` when the probe failed or timed out.
    pub(crate) fn observe_probe(&self, latency: Option<Duration>) {
        if let Some(l) = latency {
            metrics::histogram!(METRIC_PROBE).record(l.as_secs_f64());
        }
        if !self.limits.adaptive {
            return;
        }
        let mut state = self.lock();
        let congested = latency.is_none_or(|l| l > self.limits.congested_above);
        let before = state.limit;
        if congested {
            state.limit = (state.limit - state.limit.div_ceil(4)).max(1);
        } else if state.waiting > 0 && state.in_flight >= state.limit {
            state.limit = (state.limit + 1).min(self.limits.max);
        }
        if state.limit != before {
            tracing::debug!(limit = state.limit, ?latency, "mindsdb concurrency limit moved");
            metrics::gauge!(METRIC_LIMIT).set(state.limit as f64);
            state.dispatch(&self.limits, Instant::now());
        }
    }

    #[cfg(test)]
    fn snapshot(&self) -> (usize, usize, usize, usize) {
        let s = self.lock();
        (s.limit, s.in_flight, s.waiting, s.tenants.len())
    }
}

/// A queued request: dropped before its turn (the caller gave up), it leaves the queue; dropped
/// after being woken but before taking the slot, it gives the slot back.
struct Waiting<'a> {
    limiter: &'a Arc<FairLimiter>,
    tenant: &'a TenantId,
    id: u64,
    rx: oneshot::Receiver<()>,
    /// The slot was taken (or the limiter gave up on this waiter): nothing to undo.
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut state = self.limiter.lock();
        if self.rx.try_recv().is_ok() {
            drop(state);
            self.limiter.release(self.tenant);
            return;
        }
        if let Some(t) = state.tenants.get_mut(self.tenant)
            && let Some(pos) = t.waiters.iter().position(|(id, _)| *id == self.id)
        {
            t.waiters.remove(pos);
            state.waiting -= 1;
        }
        let now = Instant::now();
        state.forget_idle(&self.limiter.limits, now);
    }
}

#[cfg(test)]
// The tests' waiters are tasks of their own, ended by the test.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn limits(max: usize, per_tenant: usize) -> Limits {
        Limits {
            max,
            per_tenant_max: per_tenant,
            linger: Duration::from_millis(200),
            congested_above: Duration::from_millis(30),
            adaptive: true,
        }
    }

    async fn pending(limiter: &Arc<FairLimiter>, tenant: &str) -> bool {
        tokio::time::timeout(Duration::from_millis(30), limiter.acquire(&t(tenant))).await.is_err()
    }

    #[tokio::test]
    async fn a_busy_tenant_leaves_shared_slots_to_the_others() {
        let limiter = FairLimiter::new(limits(4, 2));
        let a1 = limiter.acquire(&t("acme")).await.unwrap();
        let a2 = limiter.acquire(&t("acme")).await.unwrap();
        assert!(pending(&limiter, "acme").await, "a tenant got more than its share");
        let g1 = limiter.acquire(&t("globex")).await.unwrap();
        let g2 = limiter.acquire(&t("globex")).await.unwrap();
        drop((a1, a2, g1, g2));
        tokio::time::sleep(Duration::from_millis(250)).await;
        drop(limiter.acquire(&t("initech")).await.unwrap());
        let (_, in_flight, waiting, _) = limiter.snapshot();
        assert_eq!((in_flight, waiting), (0, 0), "slots or waiters leaked");
        assert_eq!(limiter.snapshot().3, 1, "idle tenants stay in the map past their linger");
    }

    #[tokio::test]
    async fn the_limit_still_holds() {
        let limiter = FairLimiter::new(limits(2, 2));
        let _a = limiter.acquire(&t("acme")).await.unwrap();
        let _b = limiter.acquire(&t("globex")).await.unwrap();
        assert!(pending(&limiter, "initech").await, "more than the limit in flight");
    }

    type Waiter = tokio::task::JoinHandle<Result<Permit>>;

    /// Queues one request of acme, then one of globex, each in its own task.
    async fn acme_then_globex_wait(limiter: &Arc<FairLimiter>) -> (Waiter, Waiter) {
        let l = limiter.clone();
        let acme = tokio::spawn(async move { l.acquire(&t("acme")).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let l = limiter.clone();
        let globex = tokio::spawn(async move { l.acquire(&t("globex")).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        (acme, globex)
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_tenant_under_its_share_not_the_first_in_line() {
        let limiter = FairLimiter::new(limits(2, 2));
        let a1 = limiter.acquire(&t("acme")).await.unwrap();
        let _a2 = limiter.acquire(&t("acme")).await.unwrap();
        // acme queues first, then globex: the slot acme frees goes to globex, whose share
        // (2 / 2 active tenants = 1) is free, while acme is at its share.
        let (acme_next, globex) = acme_then_globex_wait(&limiter).await;
        drop(a1);
        let g = tokio::time::timeout(Duration::from_millis(200), globex).await;
        assert!(matches!(g, Ok(Ok(Ok(_)))), "globex did not get the freed slot");
        assert!(!acme_next.is_finished(), "acme went past its share");
        acme_next.abort();
    }

    #[tokio::test]
    async fn at_a_limit_of_one_the_freed_slot_goes_to_the_tenant_served_longest_ago() {
        let limiter = FairLimiter::new(limits(1, 1));
        let a1 = limiter.acquire(&t("acme")).await.unwrap();
        // acme queues first, then globex: when acme's request ends, globex (never served) goes
        // before acme's next one, though acme has been waiting longer.
        let (acme_next, globex) = acme_then_globex_wait(&limiter).await;
        drop(a1);
        let g = tokio::time::timeout(Duration::from_millis(200), globex).await;
        let Ok(Ok(Ok(g))) = g else { panic!("globex did not get the freed slot") };
        assert!(!acme_next.is_finished(), "acme was served twice in a row while globex waited");
        drop(g);
        let a = tokio::time::timeout(Duration::from_millis(200), acme_next).await;
        assert!(matches!(a, Ok(Ok(Ok(_)))), "acme did not get the slot globex freed");
    }

    #[tokio::test]
    async fn a_tenant_keeps_its_share_for_a_moment_after_its_answer() {
        let limiter = FairLimiter::new(limits(2, 2));
        let b = limiter.acquire(&t("bob")).await.unwrap();
        let _a = limiter.acquire(&t("acme")).await.unwrap();
        let l = limiter.clone();
        let acme_more = tokio::spawn(async move { l.acquire(&t("acme")).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // bob's answer ends; his next question a moment later finds his slot, not acme's.
        drop(b);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!acme_more.is_finished(), "the busy tenant took a lingering tenant's share");
        assert!(!pending(&limiter, "bob").await, "bob waited for his own share");
        acme_more.abort();
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_no_trace() {
        let limiter = FairLimiter::new(limits(1, 1));
        let a = limiter.acquire(&t("acme")).await.unwrap();
        assert!(pending(&limiter, "globex").await);
        assert_eq!(limiter.snapshot().2, 0, "a cancelled waiter stayed queued");
        drop(a);
        drop(limiter.acquire(&t("globex")).await.unwrap());
        assert_eq!(limiter.snapshot().1, 0);
    }

    #[tokio::test]
    async fn slow_probes_shrink_the_limit_and_fast_ones_under_demand_grow_it() {
        let limiter = FairLimiter::new(limits(8, 8));
        let slow = Some(Duration::from_millis(100));
        let fast = Some(Duration::from_millis(2));
        for _ in 0..10 {
            limiter.observe_probe(slow);
        }
        assert_eq!(limiter.snapshot().0, 1, "the limit did not come down to one");
        limiter.observe_probe(None);
        assert_eq!(limiter.snapshot().0, 1, "the limit went below one");
        // No demand beyond the limit: a fast probe leaves it.
        limiter.observe_probe(fast);
        assert_eq!(limiter.snapshot().0, 1);
        let _held = limiter.acquire(&t("acme")).await.unwrap();
        let l = limiter.clone();
        let waiter = tokio::spawn(async move { l.acquire(&t("acme")).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(10)).await;
        limiter.observe_probe(fast);
        assert_eq!(limiter.snapshot().0, 2, "demand and a fast probe did not raise the limit");
        assert!(tokio::time::timeout(Duration::from_millis(200), waiter).await.is_ok(), "the raise woke nobody");
    }

    #[tokio::test]
    async fn without_adaptation_probes_change_nothing() {
        let limiter = FairLimiter::new(Limits { adaptive: false, ..limits(4, 4) });
        limiter.observe_probe(None);
        assert_eq!(limiter.snapshot().0, 4);
    }
}
