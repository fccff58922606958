use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument as _;

use getlood_common::{TenantId, error_chain};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tokio::sync::RwLock;

use crate::config::MindsdbConfig;
use crate::error::{MindsdbError, Result};
use crate::fair::{FairLimiter, Limits, Permit};
use crate::sql::{Ident, Sql};

/// Histogram of one MindsDB operation, retries included, labelled `op`.
pub const METRIC_DURATION: &str = "getlood_mindsdb_request_duration_seconds";
/// Counter of failed MindsDB operations, labelled `code` (the common error code).
pub const METRIC_ERRORS: &str = "getlood_mindsdb_errors_total";

/// Who a MindsDB request is made for. Built from the *verified* token, never from client input:
/// it selects the MindsDB company (`company-id` header) and project (`t_<tenant>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantContext {
    /// The tenant; also the MindsDB `company-id`, which is where MindsDB really separates
    /// tenants (projects are only namespaces: a query may name another project's tables).
    pub tenant: TenantId,
    /// The acting user, for our logs. It is NOT sent as MindsDB's `user-id`: MindsDB 26.1
    /// scopes projects and agents by (company-id, user-id), so per-user ids would split one
    /// tenant's agents across its users (seen here: `GET /api/projects/` lists a project only
    /// for the user-id that created it). Every request uses [`TENANT_USER_ID`] instead.
    pub user: String,
}

impl TenantContext {
    /// A context for `user` of `tenant`.
    pub fn new(tenant: TenantId, user: impl Into<String>) -> Self {
        Self { tenant, user: user.into() }
    }

    /// The tenant's MindsDB project, `t_<tenant>`.
    pub fn project(&self) -> Ident {
        // A TenantId is 1-48 chars of [a-z0-9_], so `t_` + it always matches the identifier
        // pattern; the error arm is unreachable but kept total.
        Ident::new(&format!("t_{}", self.tenant.as_str()))
            .unwrap_or_else(|_| Ident::new("t_invalid_tenant").unwrap_or_else(|_| unreachable!()))
    }
}

/// The answer of a SQL statement.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryOutput {
    /// Rows, for `SELECT`, `SHOW`, `DESCRIBE` and some `CREATE`s.
    Table(Table),
    /// A statement without rows.
    Ok {
        /// MindsDB's count; unreliable (26.1 answers `0` for a row inserted into a files table).
        affected_rows: Option<i64>,
    },
}

impl QueryOutput {
    /// The rows; an `ok` answer is an empty table.
    pub fn into_table(self) -> Table {
        match self {
            Self::Table(t) => t,
            Self::Ok { .. } => Table::default(),
        }
    }
}

/// Rows as MindsDB returns them: column names plus rows of JSON scalars.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows; each has one cell per column.
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    /// Index of `name`, case-insensitively (MindsDB mixes `NAME` and `name` by table).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.eq_ignore_ascii_case(name))
    }

    /// Cell `name` of `row`.
    pub fn cell<'a>(&self, row: &'a [Value], name: &str) -> Option<&'a Value> {
        self.column(name).and_then(|i| row.get(i))
    }

    /// Cell `name` of `row` as text (`None` for a missing column or NULL).
    pub fn text(&self, row: &[Value], name: &str) -> Option<String> {
        match self.cell(row, name)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

/// A REST path built from fixed segments and validated identifiers only.
#[derive(Debug, Clone)]
pub(crate) struct RestPath(String);

impl RestPath {
    pub(crate) fn new(fixed: &'static str) -> Self {
        Self(fixed.to_owned())
    }

    pub(crate) fn id(mut self, id: &Ident) -> Self {
        self.0.push('/');
        self.0.push_str(id.as_str());
        self
    }

    pub(crate) fn fixed(mut self, fixed: &'static str) -> Self {
        self.0.push_str(fixed);
        self
    }
}

/// Whether repeating a request is harmless if the first attempt may have reached MindsDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads, `IF [NOT] EXISTS` DDL: repeating changes nothing.
    Idempotent,
    /// Inserts, creates, agent questions: repeated only when it surely never arrived.
    OnlyIfUnsent,
}

struct Call<'a> {
    op: &'static str,
    method: Method,
    path: &'a str,
    body: Option<&'a Value>,
    retry: Retry,
    timeout: Duration,
}

/// A failed attempt, and whether the request may have reached MindsDB.
struct Failed {
    err: MindsdbError,
    maybe_sent: bool,
}

/// Pooled, rate-limited client of MindsDB's HTTP API.
///
/// Cheap to clone; clones share the connection pool, the concurrency limit and the login.
#[derive(Clone)]
pub struct MindsdbClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    cfg: MindsdbConfig,
    permits: Arc<FairLimiter>,
    /// Set once the load probe runs (started by the first request, inside the runtime).
    probing: AtomicBool,
    token: RwLock<Option<String>>,
}

impl std::fmt::Debug for MindsdbClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MindsdbClient").field("url", &self.inner.base).finish_non_exhaustive()
    }
}

impl MindsdbClient {
    /// A client for `cfg` (validate it first). Opens no connection yet.
    pub fn new(cfg: &MindsdbConfig) -> Result<Self> {
        let http = getlood_tls::http_client_builder(cfg.ca_file.as_deref())
            .map_err(|e| MindsdbError::Internal(format!("mindsdb.ca_file: {e}")))?
            .connect_timeout(cfg.connect_timeout)
            // Keep-alive pool: a new connection costs more than MindsDB's 10-20 ms SELECT 1.
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(cfg.max_concurrency)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| MindsdbError::Internal(format!("cannot build http client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: cfg.url.trim_end_matches('/').to_owned(),
                cfg: cfg.clone(),
                permits: FairLimiter::new(Limits {
                    max: cfg.max_concurrency,
                    per_tenant_max: cfg.max_concurrency_per_tenant,
                    linger: cfg.tenant_linger,
                    congested_above: cfg.congested_above,
                    adaptive: cfg.adaptive_concurrency,
                }),
                probing: AtomicBool::new(false),
                token: RwLock::new(None),
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &MindsdbConfig {
        &self.inner.cfg
    }

    /// `GET /api/util/ping`: true when MindsDB's HTTP server answers (no SQL involved).
    pub async fn ping(&self) -> Result<()> {
        let url = format!("{}/api/util/ping", self.inner.base);
        let resp = self
            .inner
            .http
            .get(url)
            .timeout(self.inner.cfg.request_timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(&e).err)?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(MindsdbError::Unavailable(format!("ping answered {}", resp.status())))
        }
    }

    /// Runs one statement in the tenant's project (`context.db = t_<tenant>`).
    ///
    /// `op` names the operation in metrics and logs. Only statements made by
    /// [`crate::sql::SqlBuilder`] can be passed, so values always travel as `params`.
    pub async fn query(&self, ctx: &TenantContext, op: &'static str, sql: &Sql) -> Result<QueryOutput> {
        self.query_with(ctx, op, sql, Retry::OnlyIfUnsent).await
    }

    /// Like [`MindsdbClient::query`], for a read or an idempotent statement that may be retried
    /// after a transient failure.
    pub async fn query_idempotent(&self, ctx: &TenantContext, op: &'static str, sql: &Sql) -> Result<QueryOutput> {
        self.query_with(ctx, op, sql, Retry::Idempotent).await
    }

    pub(crate) async fn query_with(
        &self,
        ctx: &TenantContext,
        op: &'static str,
        sql: &Sql,
        retry: Retry,
    ) -> Result<QueryOutput> {
        let body = json!({
            "query": sql.text(),
            "params": sql.params(),
            "context": {"db": ctx.project().as_str()},
        });
        self.query_body(ctx, op, &body, retry).await
    }

    /// Sends a pre-rendered `/api/sql/query` body; used for statements whose values cannot be
    /// bound (see [`Sql::to_inline`]).
    pub(crate) async fn query_body(
        &self,
        ctx: &TenantContext,
        op: &'static str,
        body: &Value,
        retry: Retry,
    ) -> Result<QueryOutput> {
        let call = Call {
            op,
            method: Method::POST,
            path: "/api/sql/query",
            body: Some(body),
            retry,
            timeout: self.inner.cfg.request_timeout,
        };
        let value = self.send(ctx, &call, classify_sql).await?;
        parse_sql_answer(value)
    }

    /// Calls one of MindsDB's REST routes with a JSON body; returns the JSON answer (`Null`
    /// for an empty body).
    pub(crate) async fn rest(
        &self,
        ctx: &TenantContext,
        op: &'static str,
        method: Method,
        path: &RestPath,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Value> {
        let call = Call { op, method, path: &path.0, body, retry, timeout: self.inner.cfg.request_timeout };
        self.send(ctx, &call, classify_rest).await
    }

    /// Opens a streaming POST (agent answers). The returned permit must live as long as the
    /// stream: a streaming answer occupies one of MindsDB's workers until it ends.
    pub(crate) async fn open_stream(
        &self,
        ctx: &TenantContext,
        op: &'static str,
        path: &RestPath,
        body: &Value,
    ) -> Result<(Permit, reqwest::Response)> {
        let started = Instant::now();
        let span = tracing::info_span!("mindsdb.request", op, tenant = %ctx.tenant, otel.kind = "client");
        let result = self.open_stream_inner(ctx, path, body).instrument(span).await;
        record(op, started, result.as_ref().err());
        result
    }

    async fn open_stream_inner(
        &self,
        ctx: &TenantContext,
        path: &RestPath,
        body: &Value,
    ) -> Result<(Permit, reqwest::Response)> {
        let headers = tenant_headers(ctx)?;
        let mut attempt = 0;
        let mut relogged = false;
        loop {
            let permit = self.acquire(&ctx.tenant).await?;
            self.ensure_login().await?;
            let req = self.request(Method::POST, &path.0, &headers, self.inner.cfg.stream_timeout).await.json(body);
            match req.send().await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && self.login_enabled() && !relogged => {
                    relogged = true;
                    self.relogin().await?;
                }
                Ok(resp) if resp.status().is_success() => return Ok((permit, resp)),
                Ok(resp) => {
                    let status = resp.status();
                    let value = read_json(resp).await.unwrap_or(Value::Null);
                    return Err(http_error(status, &value));
                }
                Err(e) => {
                    let failed = self.transport_error(&e);
                    // An agent question is not idempotent: retry only what never left.
                    if failed.maybe_sent || attempt >= self.inner.cfg.retries {
                        return Err(failed.err);
                    }
                    drop(permit);
                    self.backoff(attempt).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn send(
        &self,
        ctx: &TenantContext,
        call: &Call<'_>,
        classify: fn(StatusCode, Value) -> Result<Value>,
    ) -> Result<Value> {
        let started = Instant::now();
        let span = tracing::info_span!("mindsdb.request", op = call.op, tenant = %ctx.tenant, otel.kind = "client");
        let result = self.send_inner(ctx, call, classify).instrument(span).await;
        record(call.op, started, result.as_ref().err());
        result
    }

    async fn send_inner(
        &self,
        ctx: &TenantContext,
        call: &Call<'_>,
        classify: fn(StatusCode, Value) -> Result<Value>,
    ) -> Result<Value> {
        let headers = tenant_headers(ctx)?;
        let mut attempt = 0;
        let mut relogged = false;
        loop {
            let outcome = self.attempt(&ctx.tenant, call, &headers).await;
            let failed = match outcome {
                Ok((StatusCode::UNAUTHORIZED, _)) if self.login_enabled() && !relogged => {
                    // The token expired or MindsDB restarted: log in once more, then give up.
                    relogged = true;
                    self.relogin().await?;
                    continue;
                }
                Ok((status, value)) => match classify(status, value) {
                    Ok(v) => return Ok(v),
                    // An error answer means the request was processed (or refused) by MindsDB.
                    Err(err) => Failed { err, maybe_sent: true },
                },
                Err(failed) => failed,
            };
            let retryable = failed.err.is_transient()
                && attempt < self.inner.cfg.retries
                && (!failed.maybe_sent || call.retry == Retry::Idempotent);
            if !retryable {
                return Err(failed.err);
            }
            tracing::warn!(op = call.op, attempt, error = %failed.err, "retrying mindsdb request");
            self.backoff(attempt).await;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        tenant: &TenantId,
        call: &Call<'_>,
        headers: &HeaderMap,
    ) -> std::result::Result<(StatusCode, Value), Failed> {
        let _permit = self.acquire(tenant).await.map_err(|err| Failed { err, maybe_sent: false })?;
        self.ensure_login().await.map_err(|err| Failed { err, maybe_sent: false })?;
        let mut req = self.request(call.method.clone(), call.path, headers, call.timeout).await;
        if let Some(body) = call.body {
            req = req.json(body);
        }
        tracing::debug!(op = call.op, path = call.path, "mindsdb request");
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let value = read_json(resp).await.map_err(|e| self.transport_error(&e))?;
        Ok((status, value))
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut req = self
            .inner
            .http
            .request(method, format!("{}{}", self.inner.base, path))
            .headers(headers.clone())
            .timeout(timeout);
        if let Some(token) = self.inner.token.read().await.as_deref() {
            req = req.bearer_auth(token);
        }
        req
    }

    async fn acquire(&self, tenant: &TenantId) -> Result<Permit> {
        if self.inner.cfg.adaptive_concurrency && !self.inner.probing.swap(true, Ordering::Relaxed) {
            // Not on the service's TaskTracker: the probe writes nothing, holds only a weak
            // reference to the client and ends within one interval of the client's drop, so
            // there is nothing for a shutdown to wait for.
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(probe_loop(Arc::downgrade(&self.inner)));
        }
        self.inner.permits.acquire(tenant).await
    }

    fn login_enabled(&self) -> bool {
        self.inner.cfg.username.is_some()
    }

    async fn ensure_login(&self) -> Result<()> {
        if !self.login_enabled() || self.inner.token.read().await.is_some() {
            return Ok(());
        }
        self.relogin().await
    }

    /// `POST /api/login` → `{"token": "pat_..."}`, used as a bearer token from then on.
    async fn relogin(&self) -> Result<()> {
        let cfg = &self.inner.cfg;
        let (Some(user), Some(password)) = (&cfg.username, &cfg.password) else {
            return Ok(());
        };
        let mut slot = self.inner.token.write().await;
        let resp = self
            .inner
            .http
            .post(format!("{}/api/login", self.inner.base))
            .timeout(cfg.request_timeout)
            .json(&json!({"username": user, "password": password.expose_secret()}))
            .send()
            .await
            .map_err(|e| self.transport_error(&e).err)?;
        let status = resp.status();
        let value = read_json(resp).await.map_err(|e| self.transport_error(&e).err)?;
        if !status.is_success() {
            *slot = None;
            return Err(MindsdbError::Auth(format!("login answered {status}")));
        }
        let token = value
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| MindsdbError::Auth("login answer has no token".to_owned()))?;
        *slot = Some(token.to_owned());
        tracing::info!("logged in to mindsdb");
        Ok(())
    }

    async fn backoff(&self, attempt: u32) {
        let base = self.inner.cfg.retry_backoff.saturating_mul(1 << attempt.min(10));
        // Up to +25 % jitter so replicas that failed together do not retry together.
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let jitter = base.mul_f64(f64::from(nanos % 250) / 1000.0);
        tokio::time::sleep((base + jitter).min(Duration::from_secs(5))).await;
    }

    fn transport_error(&self, e: &reqwest::Error) -> Failed {
        if e.is_timeout() {
            return Failed { err: MindsdbError::Timeout(self.inner.cfg.request_timeout), maybe_sent: true };
        }
        // A connect error means nothing reached MindsDB, so even a non-idempotent request may
        // be retried.
        let maybe_sent = !e.is_connect();
        Failed { err: MindsdbError::Unavailable(error_chain(e)), maybe_sent }
    }
}

/// Times `GET /api/status` every `probe_interval` while the client has requests in flight and
/// moves the concurrency limit by it (see the `fair` module). The route needs MindsDB's worker
/// pool and interpreter like any request, so its latency is what a new request would wait.
async fn probe_loop(inner: Weak<Inner>) {
    // Longer than any "congested" threshold: a probe this slow counts as congested anyway.
    const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
    loop {
        let interval = match inner.upgrade() {
            Some(inner) => inner.cfg.probe_interval,
            None => return,
        };
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else { return };
        if !inner.permits.busy() {
            continue;
        }
        let started = Instant::now();
        let answered = inner.http.get(format!("{}/api/status", inner.base)).timeout(PROBE_TIMEOUT).send().await;
        inner.permits.observe_probe(answered.is_ok().then(|| started.elapsed()));
    }
}

fn record(op: &'static str, started: Instant, err: Option<&MindsdbError>) {
    metrics::histogram!(METRIC_DURATION, "op" => op).record(started.elapsed().as_secs_f64());
    if let Some(err) = err {
        metrics::counter!(METRIC_ERRORS, "code" => err.code().as_str()).increment(1);
        tracing::debug!(op, error = %err, "mindsdb operation failed");
    }
}

/// The `user-id` every GETLOOD request sends: one MindsDB namespace per tenant, shared by all
/// of the tenant's users (see [`TenantContext::user`]).
pub const TENANT_USER_ID: &str = "getlood";

fn tenant_headers(ctx: &TenantContext) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    // TenantId's pattern is always a valid header value.
    let company = HeaderValue::from_str(ctx.tenant.as_str())
        .map_err(|_| MindsdbError::InvalidArgument("tenant id is not a valid header value".to_owned()))?;
    headers.insert("company-id", company);
    headers.insert("user-id", HeaderValue::from_static(TENANT_USER_ID));
    // Called inside the `mindsdb.request` span: MindsDB's request joins the caller's trace.
    getlood_telemetry::inject_context(&mut getlood_telemetry::HeaderInjector(&mut headers));
    Ok(headers)
}

async fn read_json(resp: reqwest::Response) -> std::result::Result<Value, reqwest::Error> {
    let bytes = resp.bytes().await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    // Non-JSON answers (an HTML redirect page, a proxy's error page) are kept as text so the
    // classifier can still read them.
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// `/api/sql/query` answers SQL-level outcomes with 200; anything else is an HTTP failure.
fn classify_sql(status: StatusCode, value: Value) -> Result<Value> {
    if status != StatusCode::OK {
        return Err(http_error(status, &value));
    }
    if value.get("type").and_then(Value::as_str) == Some("error") {
        let message = value.get("error_message").and_then(Value::as_str).unwrap_or("unknown mindsdb error");
        return Err(MindsdbError::from_message(message));
    }
    Ok(value)
}

fn classify_rest(status: StatusCode, value: Value) -> Result<Value> {
    if status.is_success() { Ok(value) } else { Err(http_error(status, &value)) }
}

/// Maps an HTTP-level failure (problem+json `{"title","detail"}`) onto an error.
pub(crate) fn http_error(status: StatusCode, value: &Value) -> MindsdbError {
    let detail = ["detail", "message", "title", "error_message"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
        .or_else(|| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let by_text = MindsdbError::from_message(&detail);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => MindsdbError::Auth(format!("http {status}")),
        StatusCode::NOT_FOUND => match by_text {
            MindsdbError::NotFound(m) => MindsdbError::NotFound(m),
            _ => MindsdbError::NotFound(format!("http 404: {}", first(&detail))),
        },
        StatusCode::CONFLICT => MindsdbError::AlreadyExists(first(&detail)),
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            MindsdbError::Unavailable(format!("http {status}"))
        }
        StatusCode::BAD_REQUEST => match by_text {
            MindsdbError::Internal(m) => MindsdbError::InvalidArgument(m),
            other => other,
        },
        _ => match by_text {
            MindsdbError::Internal(m) => MindsdbError::Internal(format!("http {status}: {m}")),
            other => other,
        },
    }
}

fn first(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

fn parse_sql_answer(value: Value) -> Result<QueryOutput> {
    match value.get("type").and_then(Value::as_str) {
        Some("table") => {
            let columns = value
                .get("column_names")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|c| c.as_str().unwrap_or_default().to_owned()).collect())
                .unwrap_or_default();
            let rows = match value.get("data") {
                Some(Value::Array(rows)) => rows
                    .iter()
                    .map(|r| match r {
                        Value::Array(cells) => cells.clone(),
                        other => vec![other.clone()],
                    })
                    .collect(),
                _ => Vec::new(),
            };
            Ok(QueryOutput::Table(Table { columns, rows }))
        }
        Some("ok") => Ok(QueryOutput::Ok { affected_rows: value.get("affected_rows").and_then(Value::as_i64) }),
        _ => Err(MindsdbError::Internal("unexpected answer shape from /api/sql/query".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_name_follows_tenant() {
        let ctx = TenantContext::new(TenantId::parse("acme_1").unwrap(), "u");
        assert_eq!(ctx.project().as_str(), "t_acme_1");
        let long = TenantId::parse(&"a".repeat(48)).unwrap();
        assert_eq!(TenantContext::new(long, "u").project().as_str().len(), 50);
    }

    #[test]
    fn sql_answers_are_parsed() {
        let t = parse_sql_answer(json!({"type":"table","data":[[1,"a"]],"column_names":["ID","name"]})).unwrap();
        let t = t.into_table();
        assert_eq!(t.text(&t.rows[0], "id").as_deref(), Some("1"));
        assert_eq!(t.text(&t.rows[0], "NAME").as_deref(), Some("a"));
        let err = classify_sql(
            StatusCode::OK,
            json!({"type":"error","error_code":0,"error_message":"Project already exists: p"}),
        )
        .unwrap_err();
        assert!(matches!(err, MindsdbError::AlreadyExists(_)));
        let err = classify_sql(StatusCode::INTERNAL_SERVER_ERROR, json!({"title":"KeyError","detail":"'query'"}))
            .unwrap_err();
        assert!(matches!(err, MindsdbError::Internal(_)));
        let err = classify_sql(StatusCode::SERVICE_UNAVAILABLE, Value::Null).unwrap_err();
        assert!(err.is_transient());
    }

    #[test]
    fn rest_errors_map_by_status() {
        let e = http_error(
            StatusCode::NOT_FOUND,
            &json!({"title":"Agent not found","detail":"Agent with name x does not exist"}),
        );
        assert!(matches!(e, MindsdbError::NotFound(_)));
        let e = http_error(StatusCode::CONFLICT, &json!({"detail":"Agent with name x already exists"}));
        assert!(matches!(e, MindsdbError::AlreadyExists(_)));
        let e = http_error(StatusCode::BAD_REQUEST, &json!({"detail":"Integration with name 'e' already exists"}));
        assert!(matches!(e, MindsdbError::AlreadyExists(_)));
        let e = http_error(StatusCode::UNAUTHORIZED, &json!({"title":"Unauthorized"}));
        assert!(matches!(e, MindsdbError::Auth(_)));
    }

    #[test]
    fn headers_carry_the_tenant_and_the_shared_user() {
        // The acting user never reaches a header, so even a hostile one cannot break it.
        let ctx = TenantContext::new(TenantId::parse("acme").unwrap(), "bad\nuser");
        assert_eq!(tenant_headers(&ctx).unwrap()["user-id"], TENANT_USER_ID);
        let ctx = TenantContext::new(TenantId::parse("acme").unwrap(), "user@example.com");
        let h = tenant_headers(&ctx).unwrap();
        assert_eq!(h["company-id"], "acme");
        assert_eq!(h["user-id"], TENANT_USER_ID);
    }
}
