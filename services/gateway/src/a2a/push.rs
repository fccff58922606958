//! A2A push notifications: the task's webhooks (`TaskPushNotificationConfig`), checked when a
//! client stores one, and their delivery.
//!
//! At each status change of a task (submitted, working, and its end) the replica where the
//! change happened POSTs the task, as the spec's push payload (a `StreamResponse` holding the
//! `task`: its status with its message, its artifacts; no history), to every config of the
//! task, with `X-A2A-Notification-Token` when the config has a token and `Authorization:
//! <scheme> <credentials>` when it has authentication. Delivery never holds the task up: each
//! task has its own bounded queue and worker on this replica (so its notifications arrive in
//! order), each POST has a timeout and a bounded number of attempts with backoff, and the
//! configs are read when a notification is sent (a deleted config gets nothing more). A
//! notification that cannot be delivered is counted ([`METRIC_FAILED`]) and logged once.
//!
//! Every URL passes the gateway's egress policy (`app.egress.allow`) when it is stored and
//! again before each delivery; the gateway connects itself, so the addresses a host name
//! resolves to are checked too, redirects are not followed and no proxy is used (a proxy
//! would resolve the name where the policy cannot see it).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use getlood_common::egress::EgressPolicy;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::protocol::{self, RpcError};
use super::store::{PushConfigRow, Scope, Store, TaskRow};

/// Push-notification configs one task may hold.
pub(crate) const MAX_CONFIGS_PER_TASK: i64 = 8;
/// Longest webhook URL, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Longest notification token, in bytes.
const MAX_TOKEN_BYTES: usize = 512;
/// Longest authentication scheme name, in bytes.
const MAX_SCHEME_BYTES: usize = 64;
/// Longest authentication credentials, in bytes.
const MAX_CREDENTIALS_BYTES: usize = 4096;
/// Notifications of one task waiting for its worker; one more is dropped (and counted).
const QUEUE_PER_TASK: usize = 16;
/// Tasks with notifications under way on this replica; a further task's are dropped.
const MAX_QUEUES: usize = 10_000;
/// A task's worker with nothing to send for this long ends (the next change starts another).
const WORKER_IDLE: Duration = Duration::from_secs(30);
/// Wait before the second attempt of a POST; doubled before each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Notifications delivered (a 2xx from the webhook).
pub const METRIC_DELIVERED: &str = "getlood_gateway_a2a_push_delivered_total";
/// Notifications not delivered after every attempt, by `reason`: `status` (the webhook
/// answered an error), `transport` (no answer: connection, timeout, an address the egress
/// policy refuses), `egress` (the URL itself is refused now), `store` (the configs could not be
/// read), `queue` (the task's queue, or this replica's, was full).
pub const METRIC_FAILED: &str = "getlood_gateway_a2a_push_failed_total";

/// The header carrying a config's token.
const TOKEN_HEADER: &str = "x-a2a-notification-token";

/// A refused config field: `-32602` naming the field.
fn bad(field: &str, why: &str) -> RpcError {
    RpcError::invalid_params(format!("'{field}' {why}"))
}

/// A string field of at most `max` bytes (`""` when absent), refused when it holds characters
/// an HTTP header cannot carry (`header` fields are sent as header values).
fn text_field(obj: &Map<String, Value>, field: &str, max: usize, header: bool) -> Result<String, RpcError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) if s.len() > max => Err(bad(field, &format!("is longer than {max} bytes"))),
        Some(Value::String(s)) if header && !s.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) => {
            Err(bad(field, "must be printable ASCII (it is sent as an HTTP header)"))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(bad(field, "holds control characters")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// Reads a `TaskPushNotificationConfig` (of `CreateTaskPushNotificationConfig`, or a message's
/// `configuration.taskPushNotificationConfig`): its id (a new UUID when absent), the URL the
/// egress policy lets the gateway call, the token and the authentication. `extra` names the
/// other params the caller's method takes (`tenant`, `taskId`).
pub(crate) fn config(
    obj: &Map<String, Value>,
    extra: &[&str],
    egress: &EgressPolicy,
) -> Result<PushConfigRow, RpcError> {
    let mut known = vec!["id", "url", "token", "authentication"];
    known.extend_from_slice(extra);
    protocol::only_params(obj, &known)?;
    let id = text_field(obj, "id", protocol::MAX_ID_BYTES, false)?;
    let id = if id.is_empty() { Uuid::new_v4().to_string() } else { id };
    let url = text_field(obj, "url", MAX_URL_BYTES, false)?;
    if url.is_empty() {
        return Err(bad("url", "is required: the webhook the notifications are POSTed to"));
    }
    egress.check_url(&url).map_err(|e| bad("url", &e.to_string()))?;
    let token = text_field(obj, "token", MAX_TOKEN_BYTES, true)?;
    let (auth_scheme, auth_credentials) = match obj.get("authentication") {
        None | Some(Value::Null) => (String::new(), String::new()),
        Some(Value::Object(auth)) => {
            protocol::only_params(auth, &["scheme", "credentials"])
                .map_err(|e| RpcError::invalid_params(format!("authentication: {}", e.message)))?;
            let scheme = text_field(auth, "scheme", MAX_SCHEME_BYTES, true)?;
            // An HTTP authentication scheme is a token (RFC 9110 §11.1): no spaces.
            if scheme.is_empty() || scheme.contains(' ') {
                return Err(bad("authentication.scheme", "is required: an HTTP scheme such as Bearer or Basic"));
            }
            (scheme, text_field(auth, "credentials", MAX_CREDENTIALS_BYTES, true)?)
        }
        Some(_) => return Err(bad("authentication", "must be an object {scheme, credentials}")),
    };
    Ok(PushConfigRow { id, url, token, auth_scheme, auth_credentials })
}

/// A stored config as A2A's `TaskPushNotificationConfig`. The credentials are write-only:
/// never read back, as no secret of the platform is.
pub(crate) fn config_json(task: Uuid, config: &PushConfigRow) -> Value {
    let mut c = json!({"id": config.id, "taskId": task.to_string(), "url": config.url});
    if let Some(obj) = c.as_object_mut() {
        if !config.token.is_empty() {
            obj.insert("token".to_owned(), json!(config.token));
        }
        if !config.auth_scheme.is_empty() {
            obj.insert("authentication".to_owned(), json!({"scheme": config.auth_scheme}));
        }
    }
    c
}

/// The push payload of the task as it is in `row`: `{"task": Task}` without its history.
fn payload(row: &TaskRow) -> Value {
    json!({"task": row.to_json(Some(0), true)})
}

/// Resolves a webhook's host and refuses every address the egress policy refuses: the check
/// the policy cannot make from the URL alone (a public name resolving to a private address).
#[derive(Debug)]
struct GuardedResolver {
    egress: EgressPolicy,
}

/// An address written as a URL host, so the egress policy judges it like one.
fn url_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("http://{v4}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]/"),
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.egress.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            for addr in &addrs {
                egress.check_url(&url_of(addr.ip())).map_err(|e| format!("{host} resolves to {e}"))?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How deliveries are made.
#[derive(Debug, Clone)]
pub(crate) struct PushSettings {
    /// The egress policy every URL passes.
    pub egress: EgressPolicy,
    /// Deadline of one POST.
    pub timeout: Duration,
    /// POSTs of one notification to one config, the first included.
    pub attempts: u32,
}

/// The delivery side of push notifications on this replica.
#[derive(Clone)]
pub(crate) struct Pusher(Arc<Inner>);

struct Inner {
    store: Store,
    client: reqwest::Client,
    settings: PushSettings,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// The queue of each task with notifications under way here.
    queues: Mutex<HashMap<Uuid, mpsc::Sender<Value>>>,
}

impl Pusher {
    /// The pusher over `store`; its workers run on `tracker` and stop retrying at `shutdown`.
    pub(crate) fn new(
        store: Store,
        settings: PushSettings,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Result<Self, String> {
        let client = getlood_tls::http_client_builder(None)
            .map_err(|e| e.to_string())?
            .dns_resolver(Arc::new(GuardedResolver { egress: settings.egress.clone() }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("getlood-gateway/", env!("CARGO_PKG_VERSION"), " (a2a push)"))
            .build()
            .map_err(|e| format!("a2a push client: {e}"))?;
        Ok(Self(Arc::new(Inner { store, client, settings, tracker, shutdown, queues: Mutex::new(HashMap::new()) })))
    }

    /// Queues the notification of `row`'s current status for the task's configs; never waits.
    pub(crate) fn notify(&self, scope: &Scope, row: &TaskRow) {
        let Ok(mut queues) = self.0.queues.lock() else { return };
        if let Some(tx) = queues.get(&row.id) {
            if tx.try_send(payload(row)).is_err() {
                drop(queues);
                dropped(row.id, "the task's notification queue is full");
            }
            return;
        }
        if queues.len() >= MAX_QUEUES {
            drop(queues);
            dropped(row.id, "this replica has too many tasks with notifications under way");
            return;
        }
        let (tx, rx) = mpsc::channel(QUEUE_PER_TASK);
        // A fresh channel has room for the first notification.
        let _ = tx.try_send(payload(row));
        queues.insert(row.id, tx);
        drop(queues);
        let pusher = self.clone();
        let scope = scope.clone();
        let task = row.id;
        self.0.tracker.spawn(async move { pusher.work(scope, task, rx).await });
    }

    /// The task's worker: sends its notifications in order until it has been idle a while (at
    /// once when the task has no config: most tasks have none).
    async fn work(self, scope: Scope, task: Uuid, mut rx: mpsc::Receiver<Value>) {
        loop {
            let next = tokio::select! {
                next = rx.recv() => next,
                () = tokio::time::sleep(WORKER_IDLE) => None,
                // Shutting down: what is queued is sent once, without waiting for more.
                () = self.0.shutdown.cancelled() => rx.try_recv().ok(),
            };
            let idle = match next {
                Some(payload) => !self.deliver(&scope, task, &payload).await,
                None => true,
            };
            if idle {
                // End, unless a notification arrived meanwhile. Notifications are queued under
                // the same lock, so none can be left behind.
                let Ok(mut queues) = self.0.queues.lock() else { return };
                if rx.is_empty() {
                    queues.remove(&task);
                    return;
                }
            }
        }
    }

    /// Sends `payload` to every config the task has now; whether it has any.
    async fn deliver(&self, scope: &Scope, task: Uuid, payload: &Value) -> bool {
        let configs = match self.0.store.push_configs(scope, task).await {
            Ok(configs) => configs,
            Err(err) => {
                metrics::counter!(METRIC_FAILED, "reason" => "store").increment(1);
                tracing::warn!(task = %task, error = %err, "a2a push notification not sent: configs unreadable");
                return true;
            }
        };
        let body = payload.to_string();
        let sends = configs.iter().map(|config| self.deliver_one(task, config, &body));
        futures::future::join_all(sends).await;
        !configs.is_empty()
    }

    /// POSTs `body` to one config, retrying failures that may pass; counts and logs the outcome.
    async fn deliver_one(&self, task: Uuid, config: &PushConfigRow, body: &str) {
        // The host only: a URL's path or query may carry a secret of the receiver.
        let host =
            reqwest::Url::parse(&config.url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        // The policy may have changed since the config was stored.
        if let Err(err) = self.0.settings.egress.check_url(&config.url) {
            metrics::counter!(METRIC_FAILED, "reason" => "egress").increment(1);
            tracing::warn!(task = %task, config = %config.id, host = %host, error = %err, "a2a push notification not sent: url refused");
            return;
        }
        let attempts = self.0.settings.attempts.max(1);
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = String::new();
        let mut reason = "transport";
        for attempt in 1..=attempts {
            let mut request = self
                .0
                .client
                .post(&config.url)
                .header(http::header::CONTENT_TYPE, "application/a2a+json")
                .body(body.to_owned());
            if !config.token.is_empty() {
                request = request.header(TOKEN_HEADER, &config.token);
            }
            if !config.auth_scheme.is_empty() {
                let value = format!("{} {}", config.auth_scheme, config.auth_credentials);
                request = request.header(http::header::AUTHORIZATION, value.trim_end());
            }
            let retry = match request.send().await {
                Ok(resp) if resp.status().is_success() => {
                    metrics::counter!(METRIC_DELIVERED).increment(1);
                    tracing::debug!(task = %task, config = %config.id, attempt, "a2a push notification delivered");
                    return;
                }
                Ok(resp) => {
                    let status = resp.status();
                    reason = "status";
                    last_error = format!("the webhook answered {status}");
                    // A refusal the webhook will repeat (a bad token, a wrong path) is not retried.
                    status.is_server_error()
                        || status == http::StatusCode::TOO_MANY_REQUESTS
                        || status == http::StatusCode::REQUEST_TIMEOUT
                }
                Err(err) => {
                    reason = "transport";
                    last_error = getlood_common::error_chain(&err);
                    true
                }
            };
            if !retry || attempt == attempts {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.0.shutdown.cancelled() => {
                    last_error = format!("{last_error}; not retried: the gateway is stopping");
                    break;
                }
            }
            backoff = backoff.saturating_mul(2);
        }
        metrics::counter!(METRIC_FAILED, "reason" => reason).increment(1);
        tracing::warn!(
            task = %task, config = %config.id, host = %host, attempts, error = %last_error,
            "a2a push notification not delivered"
        );
    }
}

/// A notification that could not even be queued.
fn dropped(task: Uuid, why: &str) {
    metrics::counter!(METRIC_FAILED, "reason" => "queue").increment(1);
    tracing::warn!(task = %task, reason = why, "a2a push notification dropped");
}

#[cfg(test)]
mod tests {
    use getlood_common::egress::EgressConfig;

    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn configs_are_checked_field_by_field() {
        let open = EgressPolicy::new(&EgressConfig::default()).unwrap();
        let c = config(
            &obj(json!({"url": "https://hooks.example.com/a2a", "token": "t-1", "authentication": {"scheme": "Bearer", "credentials": "s3cret"}})),
            &["taskId"],
            &open,
        )
        .unwrap();
        assert_eq!(
            (c.url.as_str(), c.token.as_str(), c.auth_scheme.as_str()),
            ("https://hooks.example.com/a2a", "t-1", "Bearer")
        );
        assert!(Uuid::parse_str(&c.id).is_ok(), "a config without an id gets one: {}", c.id);
        let shown = config_json(Uuid::nil(), &c);
        assert_eq!(shown["authentication"], json!({"scheme": "Bearer"}));
        assert!(!shown.to_string().contains("s3cret"), "credentials are never read back: {shown}");

        for (params, want) in [
            (json!({}), "'url' is required"),
            (json!({"url": "http://169.254.169.254/latest"}), "link-local"),
            (json!({"url": "http://10.0.0.7/hook"}), "private"),
            (json!({"url": "ftp://example.com/x"}), "scheme 'ftp'"),
            (json!({"url": "https://example.com/", "token": "a\nb"}), "'token' must be printable ASCII"),
            (json!({"url": "https://example.com/", "token": "x".repeat(513)}), "longer than 512"),
            (json!({"url": "https://example.com/", "authentication": {"credentials": "x"}}), "authentication.scheme"),
            (
                json!({"url": "https://example.com/", "authentication": {"schemes": ["Bearer"]}}),
                "unknown param 'schemes'",
            ),
            (json!({"url": "https://example.com/", "authentication": "Bearer x"}), "must be an object"),
            (json!({"url": "https://example.com/", "bogus": 1}), "unknown param 'bogus'"),
            (json!({"url": format!("https://example.com/{}", "x".repeat(2048))}), "longer than 2048"),
        ] {
            let err = config(&obj(params.clone()), &["taskId"], &open).unwrap_err();
            assert_eq!(err.code, protocol::INVALID_PARAMS, "{params}");
            assert!(err.message.contains(want), "{params}: {}", err.message);
        }
        let dev = EgressPolicy::new(&EgressConfig { allow: vec!["127.0.0.0/8".to_owned()] }).unwrap();
        assert!(config(&obj(json!({"url": "http://127.0.0.1:9/hook"})), &[], &dev).is_ok());
        assert!(config(&obj(json!({"url": "http://127.0.0.1:9/hook"})), &[], &open).is_err());
    }

    #[test]
    fn resolved_addresses_are_judged_as_written_ones() {
        let open = EgressPolicy::new(&EgressConfig::default()).unwrap();
        assert!(open.check_url(&url_of("169.254.169.254".parse().unwrap())).is_err());
        assert!(open.check_url(&url_of("::1".parse().unwrap())).is_err());
        assert!(open.check_url(&url_of("::ffff:10.0.0.1".parse().unwrap())).is_err());
        assert!(open.check_url(&url_of("8.8.8.8".parse().unwrap())).is_ok());
    }
}
