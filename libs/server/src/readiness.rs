use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Infra, Needs};

/// The latest readiness verdict, per dependency.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReadinessReport {
    /// True when every dependency the service cannot serve without answered the last probe.
    pub ready: bool,
    /// `ok` or the reason each dependency failed.
    pub checks: BTreeMap<&'static str, String>,
}

/// A cheap handle on the readiness verdict, updated by the probe task.
#[derive(Clone, Debug)]
pub struct Readiness {
    rx: watch::Receiver<ReadinessReport>,
}

impl Readiness {
    /// The current verdict.
    pub fn report(&self) -> ReadinessReport {
        self.rx.borrow().clone()
    }

    /// Waits for the next change of verdict.
    pub async fn changed(&mut self) -> ReadinessReport {
        let _ = self.rx.changed().await;
        self.rx.borrow_and_update().clone()
    }

    /// Probes `infra` every `interval` until `shutdown`. The first probe runs at once so a
    /// healthy service is ready within milliseconds. A failed check of a dependency in
    /// `ready_without` is reported but leaves the service ready.
    pub(crate) fn spawn(
        service: &'static str,
        infra: Infra,
        ready_without: Needs,
        interval: Duration,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = watch::channel(ReadinessReport::default());
        tracker.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let report = probe(&infra, ready_without, interval.min(Duration::from_secs(2))).await;
                let flipped = tx.borrow().ready != report.ready || tx.borrow().checks.is_empty();
                if flipped {
                    if report.ready {
                        tracing::info!(service, "service ready");
                    } else {
                        tracing::warn!(service, checks = ?report.checks, "service not ready");
                    }
                }
                tx.send_if_modified(|current| {
                    let changed = *current != report;
                    *current = report;
                    changed
                });
            }
            // Draining: tell load balancers to stop sending new work.
            tx.send_modify(|r| r.ready = false);
        });
        Self { rx }
    }
}

async fn probe(infra: &Infra, ready_without: Needs, timeout: Duration) -> ReadinessReport {
    let mut checks = BTreeMap::new();
    if let Some(pool) = &infra.postgres {
        let check = tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await;
        checks.insert("postgres", verdict(check.map(|r| r.map(|_| ()).map_err(|e| e.to_string()))));
    }
    if let Some(redis) = &infra.redis {
        let check = tokio::time::timeout(timeout, async {
            let mut conn = redis.connection().await.map_err(|e| e.to_string())?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(())
        })
        .await;
        checks.insert("redis", verdict(check));
    }
    if let Some(nats) = &infra.nats {
        let state = nats.connection_state();
        let check = if state == async_nats::connection::State::Connected {
            // The state flips only after a ping timeout; a flush proves the socket still works.
            tokio::time::timeout(timeout, nats.flush()).await.map(|r| r.map_err(|e| e.to_string()))
        } else {
            Ok(Err(format!("connection {state}")))
        };
        checks.insert("nats", verdict(check));
    }
    ReadinessReport { ready: verdict_of(&checks, ready_without), checks }
}

/// Ready when every check passed except, possibly, those of the dependencies the service
/// serves without.
fn verdict_of(checks: &BTreeMap<&'static str, String>, ready_without: Needs) -> bool {
    checks.iter().all(|(dependency, result)| {
        let optional = match *dependency {
            "postgres" => ready_without.postgres,
            "redis" => ready_without.redis,
            "nats" => ready_without.nats,
            _ => false,
        };
        optional || result == "ok"
    })
}

fn verdict<E>(check: Result<Result<(), String>, E>) -> String {
    match check {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(reason)) => reason,
        Err(_) => "timed out".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(redis: &str, nats: &str) -> BTreeMap<&'static str, String> {
        BTreeMap::from([("postgres", "ok".to_owned()), ("redis", redis.to_owned()), ("nats", nats.to_owned())])
    }

    #[test]
    fn a_failed_dependency_makes_the_service_unready_unless_it_serves_without_it() {
        let all_needed = Needs::default();
        assert!(verdict_of(&checks("ok", "ok"), all_needed));
        assert!(!verdict_of(&checks("connection refused", "ok"), all_needed));
        let without_redis = Needs { redis: true, ..Needs::default() };
        assert!(verdict_of(&checks("connection refused", "ok"), without_redis));
        // Only the named dependency is optional.
        assert!(!verdict_of(&checks("connection refused", "timed out"), without_redis));
    }
}
