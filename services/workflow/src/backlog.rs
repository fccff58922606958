//! Back-pressure from the outbox relay to ExecuteWorkflow.
//!
//! A run of instant nodes commits a dozen events in one transaction, far faster than they can be
//! published when the engine runs flat out: events then queue in the outbox and their latency
//! to subscribers grows without bound. Counting the events this replica committed and the relay
//! has not had acknowledged yet, and making new ExecuteWorkflow calls wait while that count is
//! above `relay_backlog_limit`, moves the queue to the callers, where it belongs: a saturated
//! engine answers later instead of publishing its node events later.
//!
//! The count is per replica and approximate (a relay also publishes other replicas' rows, so it
//! is clamped at zero); the wait is bounded, so a wrong count can slow a call, never stop it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// Metric: events committed by this replica and not yet acknowledged by JetStream.
pub const METRIC_BACKLOG: &str = "getlood_workflow_relay_backlog";
/// Metric: ExecuteWorkflow calls that waited for the relay.
pub const METRIC_WAITS: &str = "getlood_workflow_backlog_waits_total";

/// The relay's backlog of this replica, and the relay's wake-up.
#[derive(Debug)]
pub(crate) struct RelayBacklog {
    /// Wakes the relay after a commit that wrote events.
    pub wake: Notify,
    pending: AtomicU64,
    /// Woken whenever the relay settles a batch.
    settled: Notify,
    /// 0 disables the wait.
    limit: u64,
    /// Longest a call waits before going ahead anyway.
    max_wait: Duration,
}

impl RelayBacklog {
    pub(crate) fn new(limit: u64, max_wait: Duration) -> Self {
        Self { wake: Notify::new(), pending: AtomicU64::new(0), settled: Notify::new(), limit, max_wait }
    }

    /// `n` events were committed to the outbox: counts them and wakes the relay.
    pub(crate) fn committed(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.pending.fetch_add(n as u64, Ordering::AcqRel) + n as u64;
        metrics::gauge!(METRIC_BACKLOG).set(now as f64);
        self.wake.notify_one();
    }

    /// `n` events were acknowledged by JetStream.
    pub(crate) fn published(&self, n: usize) {
        let prev = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| Some(p.saturating_sub(n as u64)))
            .unwrap_or_default();
        metrics::gauge!(METRIC_BACKLOG).set(prev.saturating_sub(n as u64) as f64);
        self.settled.notify_waiters();
    }

    fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Returns once the backlog is under the limit, or after `max_wait`.
    pub(crate) async fn wait_below_limit(&self) {
        if self.limit == 0 || self.pending() < self.limit {
            return;
        }
        metrics::counter!(METRIC_WAITS).increment(1);
        let deadline = tokio::time::Instant::now() + self.max_wait;
        loop {
            // Registered before the check, so a settle between the two is not missed.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            if self.pending() < self.limit {
                return;
            }
            tokio::select! {
                () = &mut settled => {}
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test harness tasks end with the test
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_wait_while_the_backlog_is_full_and_go_when_it_drains() {
        let backlog = std::sync::Arc::new(RelayBacklog::new(10, Duration::from_secs(5)));
        backlog.committed(12);
        let waiter = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.wait_below_limit().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "12 pending of a limit of 10 must wait");
        backlog.published(5);
        tokio::time::timeout(Duration::from_secs(1), waiter).await.unwrap().unwrap();
        // Other replicas' rows can make the count drop below zero: it stops at zero.
        backlog.published(100);
        assert_eq!(backlog.pending(), 0);
    }

    #[tokio::test]
    async fn the_wait_is_bounded_and_zero_disables_it() {
        let stuck = RelayBacklog::new(1, Duration::from_millis(30));
        stuck.committed(5);
        tokio::time::timeout(Duration::from_secs(1), stuck.wait_below_limit()).await.unwrap();
        let off = RelayBacklog::new(0, Duration::from_secs(60));
        off.committed(1_000_000);
        tokio::time::timeout(Duration::from_millis(100), off.wait_below_limit()).await.unwrap();
    }
}
