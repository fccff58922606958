//! Chat rate limits per (tenant, user) and per tenant, kept in Redis so every gateway replica
//! enforces the same budget.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, as in `governor`/`tower_governor`),
//! run as one Lua script: each limit is a single key holding its "theoretical arrival time", so
//! a decision is O(1) in time and memory whatever the limit, exact (no fixed-window edge
//! bursts, no approximation as in a two-window sliding counter, no sorted set of timestamps per
//! user as in a sliding log), and `Retry-After` falls out exactly. The script reads Redis'
//! clock (`TIME`), so the replicas' clocks never need to agree, and it checks both limits before
//! updating either: a refused request consumes nothing.
//!
//! When Redis cannot answer within `rate_limit_store_timeout`, the policy decides: `allow` (the
//! default) fails open, because the limit protects capacity and fairness, not security (every
//! request is still authenticated and tenant-scoped), and a cache outage must not become a chat
//! outage; `deny` fails closed with 503 for deployments that prefer the opposite trade.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use getlood_auth::Principal;
use getlood_common::{ApiError, ErrorCode};
use getlood_server::RedisHandle;
use serde::{Deserialize, Serialize};

use crate::{AppState, Error, GatewaySettings, Result};

/// The length of the window the per-minute limits are expressed in.
const PERIOD: Duration = Duration::from_secs(60);

/// GCRA over one or more keys, all-or-nothing. `KEYS[i]` has limit `ARGV[i + 1]` per `ARGV[1]`
/// microseconds. Returns `{allowed, binding index (1-based), remaining, reset_us,
/// retry_after_us}`, where the binding limit is the one with the fewest requests left (the one
/// that refused, when refused).
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local allowed = 1
local retry = 0
local tats = {}
for i = 1, #KEYS do
  local interval = period / tonumber(ARGV[i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - period
  if allow_at > now then
    allowed = 0
    if allow_at - now > retry then retry = allow_at - now end
  end
  tats[i] = {tat, new_tat, interval}
end
local binding = 1
local best_remaining = nil
local best_reset = 0
for i = 1, #KEYS do
  local tat, new_tat, interval = tats[i][1], tats[i][2], tats[i][3]
  local effective = tat
  if allowed == 1 then
    effective = new_tat
    redis.call('SET', KEYS[i], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
  end
  local remaining = math.floor((now + period - effective) / interval)
  if allowed == 0 and (effective + interval - period) > now then remaining = 0 end
  if remaining < 0 then remaining = 0 end
  if best_remaining == nil or remaining < best_remaining then
    best_remaining = remaining
    binding = i
    best_reset = effective - now
  end
end
return {allowed, binding, best_remaining, math.ceil(best_reset), math.ceil(retry)}
";

/// What a limited route does when the rate-limit store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreErrorPolicy {
    /// Fail open: serve the request without a limit (logged and counted).
    Allow,
    /// Fail closed: refuse with 503 and `Retry-After`.
    Deny,
}

/// The outcome of one rate-limit check, with what the `X-RateLimit-*` headers report: the
/// limit with the fewest requests left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The binding limit (requests per minute).
    pub limit: u32,
    /// Requests left under the binding limit after this one.
    pub remaining: u32,
    /// Seconds until the binding limit is fully replenished.
    pub reset_secs: u64,
    /// Seconds to wait before retrying (0 when allowed).
    pub retry_after_secs: u64,
}

/// Checks and counts chat requests against the shared limits.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Option<RedisHandle>,
    prefix: Arc<str>,
    settings: Arc<GatewaySettings>,
    script: Arc<redis::Script>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter keeping its counters under `<key_prefix>:ratelimit:` in `redis`.
    pub fn new(redis: Option<RedisHandle>, key_prefix: &str, settings: Arc<GatewaySettings>) -> Self {
        Self { redis, prefix: Arc::from(key_prefix), settings, script: Arc::new(redis::Script::new(GCRA_SCRIPT)) }
    }

    /// The tenant-wide limit of `tenant`, if any.
    fn tenant_limit(&self, tenant: &str) -> Option<u32> {
        let limit = self
            .settings
            .tenant_rate_limit_overrides
            .get(tenant)
            .copied()
            .unwrap_or(self.settings.tenant_rate_limit_per_minute);
        (limit > 0).then_some(limit)
    }

    /// Counts one chat request of `principal` against its user and tenant limits.
    pub async fn check_chat(&self, principal: &Principal) -> Result<Decision> {
        let redis = self.redis.as_ref().ok_or(Error::RateLimitStoreMissing)?;
        let tenant = principal.tenant.as_str();
        // The `{tenant}` hash tag keeps both keys in one Redis Cluster slot, as a multi-key
        // script requires; the user id comes last, so any character in it is unambiguous.
        let mut limits = vec![(
            format!("{}:ratelimit:{{{tenant}}}:chat:user:{}", self.prefix, principal.user),
            self.settings.chat_rate_limit_per_minute,
        )];
        if let Some(limit) = self.tenant_limit(tenant) {
            limits.push((format!("{}:ratelimit:{{{tenant}}}:chat:tenant", self.prefix), limit));
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(u64::try_from(PERIOD.as_micros()).unwrap_or(u64::MAX));
        for (key, limit) in &limits {
            invocation.key(key).arg(*limit);
        }
        let call = async {
            let mut conn = redis.connection().await?;
            invocation.invoke_async::<(i64, i64, i64, i64, i64)>(&mut conn).await
        };
        let (allowed, binding, remaining, reset_us, retry_us) =
            tokio::time::timeout(self.settings.rate_limit_store_timeout, call)
                .await
                .map_err(|_| Error::RateLimitStoreTimeout)??;
        let limit = usize::try_from(binding - 1)
            .ok()
            .and_then(|i| limits.get(i))
            .map_or(self.settings.chat_rate_limit_per_minute, |(_, l)| *l);
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset_secs: micros_to_secs_ceil(reset_us),
            // Never tell a refused client to retry "now".
            retry_after_secs: micros_to_secs_ceil(retry_us).max(u64::from(allowed == 0)),
        })
    }

    /// The policy to apply when the store fails.
    pub fn on_store_error(&self) -> StoreErrorPolicy {
        self.settings.rate_limit_on_store_error
    }
}

fn micros_to_secs_ceil(us: i64) -> u64 {
    u64::try_from(us.max(0)).unwrap_or(0).div_ceil(1_000_000)
}

/// What a route should do after consulting the limiter.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Proceed; `Some` carries the headers to report, `None` means the store failed open.
    Proceed(Option<Decision>),
    /// Refuse with this error (429, or 503 when failing closed).
    Refuse(ApiError, Option<Decision>),
}

/// Applies the chat limits and the store-error policy for `principal`.
pub(crate) async fn verdict(limiter: &RateLimiter, principal: &Principal) -> Verdict {
    match limiter.check_chat(principal).await {
        Ok(decision) if decision.allowed => Verdict::Proceed(Some(decision)),
        Ok(decision) => {
            tracing::info!(
                tenant = %principal.tenant,
                user = %principal.user,
                limit = decision.limit,
                retry_after_secs = decision.retry_after_secs,
                "chat request rate limited"
            );
            Verdict::Refuse(
                ApiError::new(
                    ErrorCode::ResourceExhausted,
                    format!(
                        "rate limit of {} chat requests per minute exceeded, retry in {} s",
                        decision.limit, decision.retry_after_secs
                    ),
                ),
                Some(decision),
            )
        }
        Err(err) => match limiter.on_store_error() {
            StoreErrorPolicy::Allow => {
                tracing::warn!(error = %err, "rate-limit store unavailable, failing open");
                metrics::counter!("getlood_gateway_rate_limit_store_errors_total", "policy" => "allow").increment(1);
                Verdict::Proceed(None)
            }
            StoreErrorPolicy::Deny => {
                tracing::warn!(error = %err, "rate-limit store unavailable, failing closed");
                metrics::counter!("getlood_gateway_rate_limit_store_errors_total", "policy" => "deny").increment(1);
                Verdict::Refuse(ApiError::from(err), None)
            }
        },
    }
}

/// Writes `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (seconds until
/// the limit is whole again), plus `Retry-After` on a refusal.
pub(crate) fn write_headers(headers: &mut http::HeaderMap, decision: &Decision) {
    headers.insert("x-ratelimit-limit", decision.limit.into());
    headers.insert("x-ratelimit-remaining", decision.remaining.into());
    headers.insert("x-ratelimit-reset", decision.reset_secs.into());
    if !decision.allowed {
        headers.insert(http::header::RETRY_AFTER, decision.retry_after_secs.into());
    }
}

/// Middleware of the chat routes: counts the request, refuses it with 429 (OpenAI-style JSON
/// error) when over a limit, and reports the budget on every response, streaming or not.
pub(crate) async fn limit_chat(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Auth runs first and always inserts the principal; without one there is nothing to count.
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    match verdict(&state.limiter, &principal).await {
        Verdict::Proceed(decision) => {
            let mut response = next.run(req).await;
            if let Some(decision) = decision {
                write_headers(response.headers_mut(), &decision);
            }
            response
        }
        Verdict::Refuse(err, decision) => {
            let mut response = crate::openai::error_response(&err).into_response();
            match decision {
                Some(decision) => write_headers(response.headers_mut(), &decision),
                // Failing closed: the store is down, suggest a short back-off.
                None => {
                    response.headers_mut().insert(http::header::RETRY_AFTER, 1u32.into());
                }
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_up_to_whole_seconds() {
        assert_eq!(micros_to_secs_ceil(0), 0);
        assert_eq!(micros_to_secs_ceil(-5), 0);
        assert_eq!(micros_to_secs_ceil(1), 1);
        assert_eq!(micros_to_secs_ceil(12_000_000), 12);
        assert_eq!(micros_to_secs_ceil(12_000_001), 13);
    }

    #[test]
    fn headers_report_the_budget() {
        let mut headers = http::HeaderMap::new();
        let decision = Decision { allowed: false, limit: 5, remaining: 0, reset_secs: 60, retry_after_secs: 12 };
        write_headers(&mut headers, &decision);
        assert_eq!(headers["x-ratelimit-limit"], "5");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert_eq!(headers["x-ratelimit-reset"], "60");
        assert_eq!(headers["retry-after"], "12");
    }

    #[test]
    fn policy_is_snake_case_in_config() {
        let p: StoreErrorPolicy = serde_json::from_str("\"deny\"").unwrap();
        assert_eq!(p, StoreErrorPolicy::Deny);
    }
}
