use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Infra;

/// The latest readiness verdict, per dependency.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ReadinessReport {
    /// True when every dependency answered the last probe.
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
    /// healthy service is ready within milliseconds.
    pub(crate) fn spawn(
        service: &'static str,
        infra: Infra,
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
                let report = probe(&infra, interval.min(Duration::from_secs(2))).await;
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

async fn probe(infra: &Infra, timeout: Duration) -> ReadinessReport {
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
    let ready = checks.values().all(|v| v == "ok");
    ReadinessReport { ready, checks }
}

fn verdict<E>(check: Result<Result<(), String>, E>) -> String {
    match check {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(reason)) => reason,
        Err(_) => "timed out".to_owned(),
    }
}
