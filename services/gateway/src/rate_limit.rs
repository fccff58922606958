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
//! Besides chat, every write and every expensive route has a limit per user and per tenant, by
//! route class ([`RouteClass`], `app.rate_limits.<class>`): workflow execute and validate, agent
//! create/update (MindsDB checks the model), memory search (an embedding and a vector search),
//! WebSocket commands, and every other write. Each class counts separately.
//!
//! When Redis cannot answer within `rate_limit_store_timeout`, chat follows
//! `rate_limit_on_store_error`: `allow` (the default) fails open, because a cache outage must not
//! become a chat outage; `deny` fails closed. The other classes follow `rate_limit_fail_open`,
//! false by default: they fail closed (503 with `Retry-After`), because writes and expensive
//! calls are where an unlimited burst hurts the other tenants, and a Redis outage is short.
//!
//! Chat turns in flight are also capped per tenant on each replica
//! (`tenant_max_concurrent_chats`, 429 beyond it): the per-minute limits bound how often a
//! tenant starts turns, this bounds how many of its long turns hold the pipeline at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::MatchedPath;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use futures::StreamExt as _;
use getlood_auth::{Principal, TenantId};
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

/// A class of limited routes; each has its own per-user and per-tenant budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteClass {
    /// `POST /v1/chat/completions` (and gRPC `ChatCompletion`): `chat_rate_limit_per_minute`.
    Chat,
    /// `POST /api/v1/workflows/{id}/execute`.
    WorkflowExecute,
    /// `POST /api/v1/workflows/validate`.
    WorkflowValidate,
    /// `POST /api/v1/agents`, `PUT /api/v1/agents/{id}` (the model is checked through MindsDB).
    AgentWrite,
    /// `GET /api/v1/memory/search` (embedding plus vector search).
    Search,
    /// A command frame on a desktop WebSocket.
    WsCommand,
    /// Every other `POST`, `PUT`, `PATCH` or `DELETE` under `/api/v1`.
    Write,
}

impl RouteClass {
    fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::WorkflowExecute => "workflow_execute",
            Self::WorkflowValidate => "workflow_validate",
            Self::AgentWrite => "agent_write",
            Self::Search => "search",
            Self::WsCommand => "ws_command",
            Self::Write => "write",
        }
    }

    /// The class of a plain route, by method and route template; `None` for unlimited reads.
    pub(crate) fn of(method: &http::Method, route: &str) -> Option<Self> {
        use http::Method;
        match (method, route) {
            (&Method::POST, "/api/v1/workflows/{id}/execute") => Some(Self::WorkflowExecute),
            (&Method::POST, "/api/v1/workflows/validate") => Some(Self::WorkflowValidate),
            (&Method::POST, "/api/v1/agents") | (&Method::PUT, "/api/v1/agents/{id}") => Some(Self::AgentWrite),
            (&Method::GET, "/api/v1/memory/search") => Some(Self::Search),
            // An embedding and a vector search, like the memory search.
            (&Method::GET, "/api/v1/knowledge-bases/{name}/search") => Some(Self::Search),
            // Reads that reach the tenant's own database through MindsDB.
            (&Method::GET, "/api/v1/data-sources/{name}/tables" | "/api/v1/data-sources/{name}/tables/{table}")
            | (&Method::GET, "/api/v1/data-sources/{name}/tables/{table}/rows") => Some(Self::Search),
            // One LLM completion: counted in the chat budget.
            (&Method::POST, "/api/v1/models/{name}/ask") => Some(Self::Chat),
            (&Method::POST | &Method::PUT | &Method::PATCH | &Method::DELETE, r) if r.starts_with("/api/v1/") => {
                Some(Self::Write)
            }
            _ => None,
        }
    }
}

/// The per-minute budget of one route class (`app.rate_limits.<class>`); 0 disables a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassLimit {
    /// Requests a minute one user of one tenant may make in this class.
    pub per_user_per_minute: u32,
    /// Requests a minute a whole tenant may make in this class.
    pub per_tenant_per_minute: u32,
}

/// The default budgets of the classes other than chat (which keeps its own settings).
pub fn default_class_limits() -> BTreeMap<RouteClass, ClassLimit> {
    let limit = |user, tenant| ClassLimit { per_user_per_minute: user, per_tenant_per_minute: tenant };
    BTreeMap::from([
        (RouteClass::WorkflowExecute, limit(30, 300)),
        (RouteClass::WorkflowValidate, limit(120, 1200)),
        (RouteClass::AgentWrite, limit(20, 200)),
        (RouteClass::Search, limit(120, 1200)),
        (RouteClass::WsCommand, limit(600, 6000)),
        (RouteClass::Write, limit(300, 3000)),
    ])
}

/// Checks and counts requests against the shared limits, and holds the per-tenant chat
/// concurrency of this replica.
#[derive(Clone)]
pub struct RateLimiter {
    redis: Option<RedisHandle>,
    prefix: Arc<str>,
    settings: Arc<GatewaySettings>,
    script: Arc<redis::Script>,
    chats_in_flight: Arc<Mutex<HashMap<TenantId, usize>>>,
    /// Counter keys the store refused, with when it said a slot frees: until then this replica
    /// refuses them itself, without a Redis round trip (a refused request counts nothing, so the
    /// store's answer holds until that time). A client hammering past its limit then costs the
    /// other tenants no Redis call per request.
    refused_until: Arc<Mutex<HashMap<String, std::time::Instant>>>,
}

/// Entries of `refused_until` above which expired ones are swept.
const REFUSED_SWEEP_AT: usize = 10_000;

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter keeping its counters under `<key_prefix>:ratelimit:` in `redis`.
    pub fn new(redis: Option<RedisHandle>, key_prefix: &str, settings: Arc<GatewaySettings>) -> Self {
        Self {
            redis,
            prefix: Arc::from(key_prefix),
            settings,
            script: Arc::new(redis::Script::new(GCRA_SCRIPT)),
            chats_in_flight: Arc::new(Mutex::new(HashMap::new())),
            refused_until: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Counts one more chat turn of `tenant` in flight on this replica, or refuses it at
    /// `tenant_max_concurrent_chats` (0: no cap). The permit ends the turn when dropped.
    pub(crate) fn start_chat(&self, tenant: &TenantId) -> Option<ChatPermit> {
        let max = self.settings.tenant_max_concurrent_chats;
        let mut inflight = self.chats_in_flight.lock().ok()?;
        let n = inflight.entry(tenant.clone()).or_insert(0);
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(ChatPermit { inflight: self.chats_in_flight.clone(), tenant: tenant.clone() })
    }

    /// [`Self::start_chat`], or the 429 error (logged and counted) of a tenant at its cap: the
    /// one admission of a chat turn, for REST and gRPC alike.
    pub(crate) fn admit_chat(&self, tenant: &TenantId) -> std::result::Result<ChatPermit, ApiError> {
        self.start_chat(tenant).ok_or_else(|| {
            let max = self.settings.tenant_max_concurrent_chats;
            tracing::info!(tenant = %tenant, max, "chat refused, tenant at its concurrent turns");
            metrics::counter!("getlood_gateway_rate_limited_total", "class" => "chat_concurrency").increment(1);
            ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("the tenant already has {max} chat turns in flight, retry when one ends"),
            )
        })
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
        self.check(RouteClass::Chat, principal).await
    }

    /// The (user, tenant) limits of `class` for `tenant`; a 0 disables that limit.
    fn limits_of(&self, class: RouteClass, tenant: &str) -> (u32, Option<u32>) {
        match class {
            RouteClass::Chat => (self.settings.chat_rate_limit_per_minute, self.tenant_limit(tenant)),
            _ => {
                let l = self
                    .settings
                    .rate_limits
                    .get(&class)
                    .copied()
                    .unwrap_or(ClassLimit { per_user_per_minute: 0, per_tenant_per_minute: 0 });
                (l.per_user_per_minute, (l.per_tenant_per_minute > 0).then_some(l.per_tenant_per_minute))
            }
        }
    }

    /// Counts one request of `principal` in `class` against its user and tenant limits.
    /// `Ok(None)`: the class has no limit at all.
    async fn check(&self, class: RouteClass, principal: &Principal) -> Result<Decision> {
        let tenant = principal.tenant.as_str();
        let (user_limit, tenant_limit) = self.limits_of(class, tenant);
        let class_name = class.as_str();
        // The `{tenant}` hash tag keeps both keys in one Redis Cluster slot, as a multi-key
        // script requires; the user id comes last, so any character in it is unambiguous.
        let mut limits = Vec::new();
        if user_limit > 0 {
            limits.push((
                format!("{}:ratelimit:{{{tenant}}}:{class_name}:user:{}", self.prefix, principal.user),
                user_limit,
            ));
        }
        if let Some(limit) = tenant_limit {
            limits.push((format!("{}:ratelimit:{{{tenant}}}:{class_name}:tenant", self.prefix), limit));
        }
        self.check_limits(limits, user_limit).await
    }

    /// Counts one request against each of `limits` (`<scope>:<key>`, requests a minute), all or
    /// nothing: limits that are not a tenant's or a user's, such as the sign-in attempts of a
    /// client address and of an email. The keys share the `{class}` hash tag, so one script call
    /// holds them in Redis Cluster.
    pub(crate) async fn check_keyed(&self, class: &str, limits: Vec<(String, u32)>) -> Result<Decision> {
        let first = limits.first().map_or(0, |(_, l)| *l);
        let limits = limits
            .into_iter()
            .filter(|(_, limit)| *limit > 0)
            .map(|(key, limit)| (format!("{}:ratelimit:{{{class}}}:{key}", self.prefix), limit))
            .collect();
        self.check_limits(limits, first).await
    }

    /// Counts one request against `limits` (full keys); `fallback_limit` is reported when the
    /// store names no binding limit.
    async fn check_limits(&self, limits: Vec<(String, u32)>, fallback_limit: u32) -> Result<Decision> {
        let user_limit = fallback_limit;
        if limits.is_empty() {
            return Ok(Decision { allowed: true, limit: 0, remaining: 0, reset_secs: 0, retry_after_secs: 0 });
        }
        let now = std::time::Instant::now();
        if let Ok(refused) = self.refused_until.lock()
            && let Some(((_, limit), until)) =
                limits.iter().find_map(|l| refused.get(&l.0).filter(|u| **u > now).map(|u| (l, *u)))
        {
            let secs = micros_to_secs_ceil(i64::try_from((until - now).as_micros()).unwrap_or(i64::MAX));
            return Ok(Decision {
                allowed: false,
                limit: *limit,
                remaining: 0,
                reset_secs: secs,
                retry_after_secs: secs.max(1),
            });
        }
        let redis = self.redis.as_ref().ok_or(Error::RateLimitStoreMissing)?;
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
        let limit = usize::try_from(binding - 1).ok().and_then(|i| limits.get(i)).map_or(user_limit, |(_, l)| *l);
        if allowed == 0
            && retry_us > 0
            && let Some((key, _)) = usize::try_from(binding - 1).ok().and_then(|i| limits.get(i))
            && let Ok(mut refused) = self.refused_until.lock()
        {
            if refused.len() >= REFUSED_SWEEP_AT {
                refused.retain(|_, until| *until > now);
            }
            let retry = Duration::from_micros(u64::try_from(retry_us).unwrap_or(0));
            refused.insert(key.clone(), now + retry);
        }
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
            reset_secs: micros_to_secs_ceil(reset_us),
            // Never tell a refused client to retry "now".
            retry_after_secs: micros_to_secs_ceil(retry_us).max(u64::from(allowed == 0)),
        })
    }

    /// The policy to apply when the store fails on a request of `class`.
    pub fn on_store_error(&self, class: RouteClass) -> StoreErrorPolicy {
        match class {
            RouteClass::Chat => self.settings.rate_limit_on_store_error,
            _ if self.settings.rate_limit_fail_open => StoreErrorPolicy::Allow,
            _ => StoreErrorPolicy::Deny,
        }
    }
}

/// One chat turn in flight for a tenant ([`RateLimiter::start_chat`]).
pub(crate) struct ChatPermit {
    inflight: Arc<Mutex<HashMap<TenantId, usize>>>,
    tenant: TenantId,
}

impl Drop for ChatPermit {
    fn drop(&mut self) {
        if let Ok(mut inflight) = self.inflight.lock()
            && let Some(n) = inflight.get_mut(&self.tenant)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inflight.remove(&self.tenant);
            }
        }
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
    class_verdict(limiter, RouteClass::Chat, principal).await
}

/// Applies the limits of `class` and its store-error policy for `principal`.
pub(crate) async fn class_verdict(limiter: &RateLimiter, class: RouteClass, principal: &Principal) -> Verdict {
    let what = match class {
        RouteClass::Chat => "chat requests",
        RouteClass::WsCommand => "websocket commands",
        _ => "requests of this kind",
    };
    match limiter.check(class, principal).await {
        Ok(decision) if decision.allowed && decision.limit == 0 => Verdict::Proceed(None),
        Ok(decision) if decision.allowed => Verdict::Proceed(Some(decision)),
        Ok(decision) => {
            tracing::info!(
                tenant = %principal.tenant,
                user = %principal.user,
                class = class.as_str(),
                limit = decision.limit,
                retry_after_secs = decision.retry_after_secs,
                "request rate limited"
            );
            metrics::counter!("getlood_gateway_rate_limited_total", "class" => class.as_str()).increment(1);
            Verdict::Refuse(
                ApiError::new(
                    ErrorCode::ResourceExhausted,
                    format!(
                        "rate limit of {} {what} per minute exceeded, retry in {} s",
                        decision.limit, decision.retry_after_secs
                    ),
                ),
                Some(decision),
            )
        }
        Err(err) => match limiter.on_store_error(class) {
            StoreErrorPolicy::Allow => {
                tracing::warn!(error = %err, class = class.as_str(), "rate-limit store unavailable, failing open");
                metrics::counter!("getlood_gateway_rate_limit_store_errors_total", "policy" => "allow").increment(1);
                Verdict::Proceed(None)
            }
            StoreErrorPolicy::Deny => {
                tracing::warn!(error = %err, class = class.as_str(), "rate-limit store unavailable, failing closed");
                metrics::counter!("getlood_gateway_rate_limit_store_errors_total", "policy" => "deny").increment(1);
                Verdict::Refuse(ApiError::from(err), None)
            }
        },
    }
}

/// Applies `limits` ([`RateLimiter::check_keyed`]) under `class` (a key scope and metric label)
/// with the store-error policy of the non-chat classes; `what` names the requests in the 429.
pub(crate) async fn keyed_verdict(
    limiter: &RateLimiter,
    class: &'static str,
    what: &str,
    limits: Vec<(String, u32)>,
) -> Verdict {
    match limiter.check_keyed(class, limits).await {
        Ok(decision) if decision.allowed => Verdict::Proceed(Some(decision)),
        Ok(decision) => {
            tracing::info!(
                class,
                limit = decision.limit,
                retry_after_secs = decision.retry_after_secs,
                "request rate limited"
            );
            metrics::counter!("getlood_gateway_rate_limited_total", "class" => class).increment(1);
            let message = format!(
                "rate limit of {} {what} per minute exceeded, retry in {} s",
                decision.limit, decision.retry_after_secs
            );
            Verdict::Refuse(ApiError::new(ErrorCode::ResourceExhausted, message), Some(decision))
        }
        Err(err) => match limiter.on_store_error(RouteClass::Write) {
            StoreErrorPolicy::Allow => {
                tracing::warn!(error = %err, class, "rate-limit store unavailable, failing open");
                metrics::counter!("getlood_gateway_rate_limit_store_errors_total", "policy" => "allow").increment(1);
                Verdict::Proceed(None)
            }
            StoreErrorPolicy::Deny => {
                tracing::warn!(error = %err, class, "rate-limit store unavailable, failing closed");
                metrics::counter!("getlood_gateway_rate_limit_store_errors_total", "policy" => "deny").increment(1);
                Verdict::Refuse(ApiError::from(err), None)
            }
        },
    }
}

/// The response of a refused request: the error with the budget headers, or `Retry-After: 1`
/// when failing closed on a store outage.
pub(crate) fn refusal(mut response: Response, decision: Option<Decision>) -> Response {
    match decision {
        Some(decision) => write_headers(response.headers_mut(), &decision),
        None => {
            response.headers_mut().insert(http::header::RETRY_AFTER, 1u32.into());
        }
    }
    response
}

/// Middleware of the plain routes: limits the writes and expensive reads by [`RouteClass`]
/// (unlimited reads pass untouched), after auth, with the budget headers on every response.
pub(crate) async fn limit_routes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let class = req.extensions().get::<MatchedPath>().and_then(|p| RouteClass::of(req.method(), p.as_str()));
    let (Some(class), Some(principal)) = (class, req.extensions().get::<Principal>().cloned()) else {
        return next.run(req).await;
    };
    match class_verdict(&state.limiter, class, &principal).await {
        Verdict::Proceed(decision) => {
            let mut response = next.run(req).await;
            if let Some(decision) = decision {
                write_headers(response.headers_mut(), &decision);
            }
            response
        }
        Verdict::Refuse(err, decision) => refusal(err.into_response(), decision),
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
            let permit = match state.limiter.admit_chat(&principal.tenant) {
                Ok(permit) => permit,
                Err(err) => {
                    let mut response = crate::openai::error_response(&err).into_response();
                    response.headers_mut().insert(http::header::RETRY_AFTER, 1u32.into());
                    return response;
                }
            };
            let mut response = next.run(req).await;
            if let Some(decision) = decision {
                write_headers(response.headers_mut(), &decision);
            }
            // The turn lasts as long as its body: an SSE answer keeps the permit until its last
            // chunk is sent or the client goes away (the body is dropped either way).
            let (parts, body) = response.into_parts();
            let body = body.into_data_stream().map(move |chunk| {
                let _turn = &permit;
                chunk
            });
            Response::from_parts(parts, axum::body::Body::from_stream(body))
        }
        Verdict::Refuse(err, decision) => refusal(crate::openai::error_response(&err).into_response(), decision),
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
    fn routes_fall_in_their_class() {
        use http::Method;
        assert_eq!(RouteClass::of(&Method::POST, "/api/v1/workflows/{id}/execute"), Some(RouteClass::WorkflowExecute));
        assert_eq!(RouteClass::of(&Method::POST, "/api/v1/workflows/validate"), Some(RouteClass::WorkflowValidate));
        assert_eq!(RouteClass::of(&Method::PUT, "/api/v1/agents/{id}"), Some(RouteClass::AgentWrite));
        assert_eq!(RouteClass::of(&Method::DELETE, "/api/v1/agents/{id}"), Some(RouteClass::Write));
        assert_eq!(RouteClass::of(&Method::GET, "/api/v1/memory/search"), Some(RouteClass::Search));
        assert_eq!(RouteClass::of(&Method::GET, "/api/v1/knowledge-bases/{name}/search"), Some(RouteClass::Search));
        assert_eq!(RouteClass::of(&Method::POST, "/api/v1/models/{name}/ask"), Some(RouteClass::Chat));
        assert_eq!(RouteClass::of(&Method::POST, "/api/v1/data-sources/{name}/test"), Some(RouteClass::Write));
        assert_eq!(RouteClass::of(&Method::PATCH, "/api/v1/windows/{id}"), Some(RouteClass::Write));
        assert_eq!(RouteClass::of(&Method::GET, "/api/v1/agents"), None);
        let classes: BTreeMap<RouteClass, ClassLimit> =
            serde_json::from_str(r#"{"workflow_execute":{"per_user_per_minute":1,"per_tenant_per_minute":0}}"#)
                .unwrap();
        assert_eq!(classes[&RouteClass::WorkflowExecute].per_user_per_minute, 1);
    }

    #[test]
    fn policy_is_snake_case_in_config() {
        let p: StoreErrorPolicy = serde_json::from_str("\"deny\"").unwrap();
        assert_eq!(p, StoreErrorPolicy::Deny);
    }
}
