//! Coalescing of geometry updates sent without a version (window dragging): the latest update
//! of each window wins, is acknowledged at once, and is written with one `window.moved` event
//! per window per flush. Flushes run every `interval` (well under the 500 ms promise), before
//! any other operation on the same window or desktop (so operations apply in the order they
//! were acknowledged), and one last time on shutdown, after which updates are written
//! synchronously: nothing acknowledged is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt as _;
use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, Outbox, Payload, new_envelope};
use getlood_proto::desktop_state::v1::Window;
use getlood_proto::events::v1::WindowMoved;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::error::Result;
use crate::store;

// Part of this module's public API; the type lives in `model` so `store` need not import us.
pub use crate::model::GeometryPatch;

/// Metric: geometry updates, labelled `mode` (`coalesced` or `direct`).
pub const METRIC_UPDATES: &str = "getlood_desktop_state_geometry_updates_total";
/// Metric: rows written by coalescer flushes.
pub const METRIC_FLUSHED: &str = "getlood_desktop_state_coalesced_writes_total";

/// Flushes write this many desktops concurrently (distinct windows, so no ordering between them).
const FLUSH_CONCURRENCY: usize = 8;

/// A window's acknowledged, not yet written geometry.
#[derive(Debug, Clone)]
pub struct Pending {
    pub tenant: TenantId,
    pub owner: String,
    /// Who sent the latest update (the event's actor).
    pub actor: String,
    pub desktop_id: Uuid,
    /// The window as acknowledged: stored state plus the patch, with the version the flush
    /// will give it.
    pub window: Window,
    pub patch: GeometryPatch,
}

/// What [`Coalescer::merge`] did.
#[derive(Debug)]
pub enum Merged {
    /// Queued; the window as acknowledged.
    Queued(Box<Window>),
    /// No queued update of this window yet: the caller reads the window and calls
    /// [`Coalescer::queue`].
    Absent,
    /// Shutting down: the caller writes the update itself.
    Closed,
}

#[derive(Default)]
struct State {
    pending: HashMap<Uuid, Pending>,
    closed: bool,
}

/// The coalescer of one replica.
#[derive(Clone)]
pub struct Coalescer {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    // Held while entries are taken and written, so two flushes never write one window's older
    // geometry after its newer one.
    flush: tokio::sync::Mutex<()>,
    pool: PgPool,
    outbox: Outbox,
    /// `app.durable_coalesced_writes`.
    durable: bool,
}

impl Coalescer {
    /// A coalescer writing through `pool` and publishing through `outbox`; `durable` makes its
    /// commits wait for the WAL flush.
    pub fn new(pool: PgPool, outbox: Outbox, durable: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                flush: tokio::sync::Mutex::new(()),
                pool,
                outbox,
                durable,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain data behind; keep serving with it.
        self.inner.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Merges `patch` into the queued update of `window_id`, if the caller may see it.
    pub fn merge(&self, tenant: &TenantId, owner: &str, actor: &str, window_id: Uuid, patch: GeometryPatch) -> Merged {
        let mut state = self.state();
        if state.closed {
            return Merged::Closed;
        }
        match state.pending.get_mut(&window_id) {
            Some(p) if &p.tenant == tenant && p.owner == owner => {
                p.patch = p.patch.merge(patch);
                patch.apply_to(&mut p.window);
                actor.clone_into(&mut p.actor);
                Merged::Queued(Box::new(p.window.clone()))
            }
            _ => Merged::Absent,
        }
    }

    /// Queues `pending` (built from the stored window); merges with an entry queued meanwhile.
    pub fn queue(&self, pending: Pending) -> Merged {
        let mut state = self.state();
        if state.closed {
            return Merged::Closed;
        }
        let id = pending.window.id.parse::<Uuid>().unwrap_or_default();
        let entry = state
            .pending
            .entry(id)
            .and_modify(|p| {
                p.patch = p.patch.merge(pending.patch);
                pending.patch.apply_to(&mut p.window);
                p.actor.clone_from(&pending.actor);
            })
            .or_insert(pending);
        Merged::Queued(Box::new(entry.window.clone()))
    }

    /// Writes the queued updates of one window.
    pub async fn flush_window(&self, window_id: Uuid) -> Result<()> {
        self.flush_matching(|id, _| *id == window_id).await
    }

    /// Writes the queued updates of every window of one desktop.
    pub async fn flush_desktop(&self, desktop_id: Uuid) -> Result<()> {
        self.flush_matching(|_, p| p.desktop_id == desktop_id).await
    }

    /// Writes every queued update.
    pub async fn flush_all(&self) -> Result<()> {
        self.flush_matching(|_, _| true).await
    }

    async fn flush_matching(&self, wanted: impl Fn(&Uuid, &Pending) -> bool) -> Result<()> {
        let _flushing = self.inner.flush.lock().await;
        let taken: Vec<Pending> = {
            let mut state = self.state();
            if !state.pending.iter().any(|(id, p)| wanted(id, p)) {
                return Ok(());
            }
            let ids: Vec<Uuid> = state.pending.iter().filter(|(id, p)| wanted(id, p)).map(|(id, _)| *id).collect();
            ids.iter().filter_map(|id| state.pending.remove(id)).collect()
        };
        // One transaction per desktop: every writer locks the desktop row first, so its
        // windows' writes would queue on that lock anyway; together they cost one lock, one
        // touch of the desktop and one commit.
        let mut groups: HashMap<(TenantId, Uuid), Vec<Pending>> = HashMap::new();
        for p in taken {
            groups.entry((p.tenant.clone(), p.desktop_id)).or_default().push(p);
        }
        let results: Vec<(Vec<Pending>, Result<()>)> = futures::stream::iter(groups.into_values())
            .map(|group| async move {
                let r = self.write(&group).await;
                (group, r)
            })
            .buffer_unordered(FLUSH_CONCURRENCY)
            .collect()
            .await;
        let mut first_err = None;
        let mut state = self.state();
        for (group, r) in results {
            let Err(err) = r else { continue };
            tracing::warn!(windows = group.len(), error = %err, "coalesced geometry write failed, will retry");
            for p in group {
                // Put it back under anything queued since: newer fields still win.
                let id = p.window.id.parse::<Uuid>().unwrap_or_default();
                match state.pending.remove(&id) {
                    Some(newer) => {
                        let mut merged = p;
                        merged.patch = merged.patch.merge(newer.patch);
                        merged.window = newer.window;
                        merged.actor = newer.actor;
                        state.pending.insert(id, merged);
                    }
                    None => {
                        state.pending.insert(id, p);
                    }
                }
            }
            first_err.get_or_insert(err);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes the geometry of windows of one desktop (`group`, not empty), each with its
    /// `window.moved` event, in one transaction.
    async fn write(&self, group: &[Pending]) -> Result<()> {
        let Some(first) = group.first() else { return Ok(()) };
        let (tenant, desktop_id) = (&first.tenant, first.desktop_id);
        // See `durable_coalesced_writes`.
        let mut tx = getlood_events::begin(&self.inner.pool, self.inner.durable).await?;
        // Desktop first: the locking rule every writer follows.
        if !store::lock_desktop_any_owner(&mut tx, tenant, desktop_id).await? {
            return Ok(()); // deleted meanwhile: nothing left to move
        }
        let mut moved = Vec::with_capacity(group.len());
        for p in group {
            let window_id = p.window.id.parse::<Uuid>().unwrap_or_default();
            // None: closed meanwhile.
            if let Some(row) = store::apply_geometry(&mut tx, tenant, desktop_id, window_id, &p.patch).await? {
                moved.push((p, row));
            }
        }
        if moved.is_empty() {
            return Ok(());
        }
        let desktop =
            sqlx::query_as::<_, (Vec<Uuid>,)>("SELECT focus_stack FROM desktops WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(desktop_id)
                .fetch_one(&mut *tx)
                .await?;
        store::touch_desktop(&mut tx, tenant, desktop_id, &desktop.0, None).await?;
        let desktop_id = desktop_id.to_string();
        for (p, row) in &moved {
            let event = new_envelope(
                tenant,
                &p.actor,
                &desktop_id,
                "window.moved",
                Payload::WindowMoved(WindowMoved {
                    desktop_id: desktop_id.clone(),
                    window_id: row.id.to_string(),
                    geometry: Some(row.geometry()),
                    version: row.version,
                }),
            );
            self.inner.outbox.enqueue(&mut tx, Domain::Window, &event).await?;
        }
        tx.commit().await?;
        self.inner.outbox.notify();
        metrics::counter!(METRIC_FLUSHED).increment(moved.len() as u64);
        Ok(())
    }

    /// Flushes every `interval` until `shutdown`; then closes the coalescer (later updates are
    /// written synchronously), writes what is left and relays the resulting events, so a
    /// SIGTERM loses nothing that was acknowledged.
    pub fn spawn(&self, interval: Duration, bus: EventBus, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = self.clone();
        tracker.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if let Err(err) = this.flush_all().await {
                    tracing::warn!(error = %err, "coalescer flush failed");
                }
            }
            let left = {
                let _flushing = this.inner.flush.lock().await;
                let mut state = this.state();
                state.closed = true;
                state.pending.len()
            };
            // Retry a few times: the database may be briefly unreachable during a rollout.
            for attempt in 0..3 {
                match this.flush_all().await {
                    Ok(()) => break,
                    Err(err) => {
                        tracing::error!(error = %err, attempt, pending = this.state().pending.len(), "coalescer flush on shutdown failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            tracing::info!(windows = left, "coalescer flushed on shutdown");
            // The outbox relay may already have made its last pass; publish what we just wrote.
            loop {
                match this.inner.outbox.relay_batch(&bus).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "outbox relay after the final flush failed; events stay queued for the next start");
                        break;
                    }
                }
            }
        });
    }
}
