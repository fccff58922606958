//! Fair share of a client's MindsDB slots between tenants.
//!
//! A client has `max_concurrency` requests in flight at most (MindsDB queues beyond that). With
//! one limit for everyone, a tenant that asks many slow agent questions holds every slot and the
//! other tenants wait behind it. So each tenant also has at most `max_concurrency_per_tenant` in
//! flight: a tenant first takes one of its own permits, then one of the shared ones, so a tenant
//! waiting for its own turn never holds a shared slot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use getlood_common::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{MindsdbError, Result};

/// One request's right to run: a slot of its tenant and a shared slot, released on drop.
#[derive(Debug)]
pub struct Permit {
    // Field order is drop order: the shared slot first, so a waiter of another tenant can start
    // before this tenant's next request.
    _shared: OwnedSemaphorePermit,
    _tenant: TenantSlot,
}

/// A tenant's permit; the tenant's entry leaves the map with its last permit.
#[derive(Debug)]
struct TenantSlot {
    permit: Option<OwnedSemaphorePermit>,
    tenant: TenantId,
    limiter: Arc<FairLimiter>,
}

impl Drop for TenantSlot {
    fn drop(&mut self) {
        drop(self.permit.take());
        self.limiter.forget_if_idle(&self.tenant);
    }
}

/// The shared limit and the per-tenant ones.
#[derive(Debug)]
pub(crate) struct FairLimiter {
    shared: Arc<Semaphore>,
    per_tenant: usize,
    tenants: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

impl FairLimiter {
    pub(crate) fn new(shared: usize, per_tenant: usize) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::new(Semaphore::new(shared)),
            per_tenant: per_tenant.min(shared).max(1),
            tenants: Mutex::new(HashMap::new()),
        })
    }

    /// Waits for a slot of `tenant`, then for a shared one.
    pub(crate) async fn acquire(self: &Arc<Self>, tenant: &TenantId) -> Result<Permit> {
        let closed = |_| MindsdbError::Internal("concurrency limiter closed".to_owned());
        let own = {
            let mut map = self.tenants.lock().map_err(|_| MindsdbError::Internal("limiter poisoned".to_owned()))?;
            map.entry(tenant.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant))).clone()
        };
        let tenant_permit = TenantSlot {
            permit: Some(own.acquire_owned().await.map_err(closed)?),
            tenant: tenant.clone(),
            limiter: Arc::clone(self),
        };
        let shared = self.shared.clone().acquire_owned().await.map_err(closed)?;
        Ok(Permit { _shared: shared, _tenant: tenant_permit })
    }

    /// Drops a tenant's entry once nothing holds or waits for its slots, so the map holds only
    /// active tenants.
    fn forget_if_idle(&self, tenant: &TenantId) {
        if let Ok(mut map) = self.tenants.lock()
            && let Some(sem) = map.get(tenant)
            // Only the map holds it, and every slot is back: nobody holds or waits.
            && Arc::strong_count(sem) == 1
            && sem.available_permits() == self.per_tenant
        {
            map.remove(tenant);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.tenants.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[tokio::test]
    async fn a_busy_tenant_leaves_shared_slots_to_the_others() {
        let limiter = FairLimiter::new(4, 2);
        let a1 = limiter.acquire(&t("acme")).await.unwrap();
        let a2 = limiter.acquire(&t("acme")).await.unwrap();
        // acme's third request waits for acme's own slot, not a shared one...
        let third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(&t("acme"))).await;
        assert!(third.is_err(), "a tenant got more than its share");
        // ...so globex still gets two at once.
        let g1 = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(&t("globex"))).await;
        let g2 = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(&t("globex"))).await;
        assert!(g1.is_ok() && g2.is_ok(), "another tenant was starved");
        drop((a1, a2, g1, g2));
        assert_eq!(limiter.tracked(), 0, "idle tenants stay in the map");
    }

    #[tokio::test]
    async fn the_shared_limit_still_holds() {
        let limiter = FairLimiter::new(2, 2);
        let _a = limiter.acquire(&t("acme")).await.unwrap();
        let _b = limiter.acquire(&t("globex")).await.unwrap();
        let c = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(&t("initech"))).await;
        assert!(c.is_err(), "more than the shared limit in flight");
    }
}
