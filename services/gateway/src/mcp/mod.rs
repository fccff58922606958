//! The MCP server at `/mcp` (issue 15), over the streamable-HTTP transport of the official Rust
//! SDK (`rmcp`): `POST` carries JSON-RPC messages, `GET` opens a session's server-to-client
//! stream, `DELETE` ends a session.
//!
//! The route is an ordinary route of the authenticated router: `require_auth`, the permission
//! table (the least permission to reach the endpoint; each tool checks its own) and the audit
//! layer run before these handlers, which then
//! - check the JSON-RPC envelope ([`jsonrpc::inspect`]): a parse error is -32700, a message
//!   that is not JSON-RPC -32600, params of the wrong shape -32602, never the SDK's plain 415;
//! - bind every `Mcp-Session-Id` to the tenant and user that opened it: another caller's (or an
//!   unknown) session id is a 404, as MCP says for an expired one, and one user holds at most
//!   [`MAX_SESSIONS_PER_USER`] sessions on a replica;
//! - tell the audit log what a `tools/call` did (`mcp.ask_agent`, `mcp.start_workflow`, ...)
//!   and whether the caller's roles allowed it ([`Described`]);
//! - hand the request, its verified principal in its extensions, to the SDK, which gives the
//!   handler ([`server::Tools`]) the HTTP parts of each request: the caller is always the one
//!   of the request being answered.
//!
//! Clients of the 2026-07-28 revision are served without sessions (every request carries its
//! own protocol metadata and token); sessions exist for the handshake revisions only, and live
//! in this replica's memory (an Ingress in front of several replicas needs session affinity on
//! `Mcp-Session-Id` for them).

mod jsonrpc;
pub(crate) mod openapi;
mod server;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use getlood_auth::{Principal, TenantId};
use http::{HeaderMap, StatusCode};
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tower::ServiceExt as _;

use crate::AppState;
use crate::audit::Described;
use crate::caller::Caller;

/// The session header of the streamable-HTTP transport.
const SESSION_HEADER: &str = "mcp-session-id";
/// Sessions one user may hold open on one replica; an `initialize` beyond is refused (429).
pub(crate) const MAX_SESSIONS_PER_USER: usize = 16;
/// Sessions one replica holds for everyone, so a crowd of users cannot exhaust its memory.
const MAX_SESSIONS: usize = 10_000;
/// A session nobody used for this long is closed (the SDK's sweep); its id is then a 404.
const SESSION_IDLE: Duration = Duration::from_secs(10 * 60);
/// Interval of the SSE keep-alive comments on open streams.
const SSE_KEEP_ALIVE: Duration = Duration::from_secs(15);

type Service = StreamableHttpService<server::Tools, LocalSessionManager>;

/// Who opened a session.
type Owner = (TenantId, String);

/// The MCP endpoint of this replica: the SDK's service, its sessions and their owners.
#[derive(Clone)]
pub(crate) struct Endpoint(Arc<Inner>);

struct Inner {
    service: Service,
    sessions: Arc<LocalSessionManager>,
    /// Session id to its owner, and the `initialize` requests under way per owner.
    owners: Mutex<Owners>,
}

#[derive(Default)]
struct Owners {
    by_session: HashMap<String, Owner>,
    pending: HashMap<Owner, usize>,
}

/// The endpoint for `state`, ended with the runtime's shutdown.
pub(crate) fn endpoint(state: &AppState) -> Endpoint {
    let mut sessions = LocalSessionManager::default();
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = Some(SESSION_IDLE);
    sessions.session_config = session_config;
    let sessions = Arc::new(sessions);
    let config = StreamableHttpServerConfig::default()
        // The Host check defends an unauthenticated server on localhost against DNS rebinding;
        // every request here carries a bearer token a rebinding page cannot have, and the
        // gateway is reached under the deployment's own host names.
        .disable_allowed_hosts()
        .with_sse_keep_alive(Some(SSE_KEEP_ALIVE))
        .with_max_request_body_bytes(state.settings.max_body_bytes)
        .with_cancellation_token(state.realtime.shutdown.child_token());
    let handler_state = state.clone();
    let service =
        StreamableHttpService::new(move || Ok(server::Tools::new(handler_state.clone())), sessions.clone(), config);
    Endpoint(Arc::new(Inner { service, sessions, owners: Mutex::new(Owners::default()) }))
}

/// The session id a request names, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

fn owner(principal: &Principal) -> Owner {
    (principal.tenant.clone(), principal.user.clone())
}

/// The answer to a session id that is not the caller's: the same 404 as an expired one, so a
/// session's existence is never revealed to another caller.
fn session_not_found(id: serde_json::Value) -> Response {
    jsonrpc::Refused {
        status: StatusCode::NOT_FOUND,
        code: jsonrpc::SESSION_NOT_FOUND,
        message: "session not found: it expired, was closed, or is not yours; send initialize again".to_owned(),
        id,
        platform_code: "not_found",
    }
    .into_response()
}

/// One `initialize` of `owner` under way, counted against the session limits until dropped.
struct Reservation {
    endpoint: Endpoint,
    owner: Owner,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut owners) = self.endpoint.0.owners.lock()
            && let Some(n) = owners.pending.get_mut(&self.owner)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                owners.pending.remove(&self.owner);
            }
        }
    }
}

impl Endpoint {
    /// Whether session `id` belongs to `owner`.
    fn owns(&self, id: &str, owner: &Owner) -> bool {
        self.0.owners.lock().is_ok_and(|owners| owners.by_session.get(id) == Some(owner))
    }

    /// Room for one more session of `owner`, after forgetting the sessions the SDK closed (idle,
    /// or ended by their client).
    async fn reserve(&self, owner: &Owner) -> Result<Reservation, &'static str> {
        let live: HashSet<String> = self.0.sessions.sessions.read().await.keys().map(ToString::to_string).collect();
        let Ok(mut owners) = self.0.owners.lock() else { return Err("the session table is unavailable") };
        owners.by_session.retain(|id, _| live.contains(id));
        let mine = owners.by_session.values().filter(|o| *o == owner).count()
            + owners.pending.get(owner).copied().unwrap_or(0);
        if mine >= MAX_SESSIONS_PER_USER {
            return Err("too many open MCP sessions for this user: close one (DELETE /mcp) or let one expire");
        }
        if owners.by_session.len() + owners.pending.values().sum::<usize>() >= MAX_SESSIONS {
            return Err("this server holds as many MCP sessions as it can: retry shortly");
        }
        *owners.pending.entry(owner.clone()).or_insert(0) += 1;
        Ok(Reservation { endpoint: self.clone(), owner: owner.clone() })
    }

    fn adopt(&self, id: String, owner: Owner) {
        if let Ok(mut owners) = self.0.owners.lock() {
            owners.by_session.insert(id, owner);
        }
    }

    fn forget(&self, id: &str) {
        if let Ok(mut owners) = self.0.owners.lock() {
            owners.by_session.remove(id);
        }
    }

    /// The SDK's answer to `req`, its plain-text refusals made JSON-RPC errors.
    async fn forward(&self, req: Request<Body>) -> Response {
        match self.0.service.clone().oneshot(req).await {
            Ok(response) => as_json_rpc_error(response.map(Body::new)).await,
            Err(never) => match never {},
        }
    }
}

/// Longest SDK refusal text carried into a JSON-RPC error message.
const MAX_REFUSAL_TEXT: usize = 4096;

/// The SDK answers transport-level refusals (no session id, a `GET` or `Accept` it does not
/// serve, an unsupported protocol version header, ...) in plain text without a content type;
/// here they become the same JSON-RPC error objects as every other refusal of `/mcp`, with the
/// same status. A 5xx keeps none of its text, which is logged instead.
async fn as_json_rpc_error(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REFUSAL_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (code, platform_code, message) = if status.is_server_error() {
        tracing::error!(status = status.as_u16(), error = %text, "mcp transport failed");
        (jsonrpc::INTERNAL_ERROR, "internal", "internal error".to_owned())
    } else {
        let platform_code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::TOO_MANY_REQUESTS => "resource_exhausted",
            StatusCode::FORBIDDEN => "permission_denied",
            _ => "invalid_argument",
        };
        let code = if status == StatusCode::NOT_FOUND { jsonrpc::SESSION_NOT_FOUND } else { jsonrpc::INVALID_REQUEST };
        let message = if text.is_empty() { status.canonical_reason().unwrap_or("refused").to_owned() } else { text };
        (code, platform_code, message)
    };
    let mut refused =
        jsonrpc::Refused { status, code, message, id: serde_json::Value::Null, platform_code }.into_response();
    // `Allow` of a 405, for instance.
    for (name, value) in &parts.headers {
        if name != http::header::CONTENT_TYPE && name != http::header::CONTENT_LENGTH {
            refused.headers_mut().insert(name.clone(), value.clone());
        }
    }
    refused
}

/// What the audit log records of a `POST /mcp` carrying `message` for `principal`: a tool call
/// is `mcp.<tool>` with the outcome of the tool's permission check; reads (listings, resources,
/// reading tools the caller may use) are recorded only when refused, as REST reads are.
fn described(message: &jsonrpc::Message, principal: &Principal) -> Described {
    let Some(kind) = message.tool().and_then(server::ToolKind::parse) else {
        return Described::Read;
    };
    match getlood_auth::require(&principal.roles, kind.permission()) {
        Ok(()) if !kind.writes() => Described::Read,
        Ok(()) => Described::Write { action: kind.action().to_owned(), status: StatusCode::OK, reason: String::new() },
        Err(_) => Described::Write {
            action: kind.action().to_owned(),
            status: StatusCode::FORBIDDEN,
            reason: format!("needs {}", kind.permission()),
        },
    }
}

/// `POST /mcp`: one JSON-RPC message.
pub(crate) async fn post(
    State(state): State<AppState>,
    Extension(endpoint): Extension<Endpoint>,
    caller: Caller,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, state.settings.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let limit = state.settings.max_body_bytes;
            return jsonrpc::Refused {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: jsonrpc::INVALID_REQUEST,
                message: format!("the message is larger than {limit} bytes"),
                id: serde_json::Value::Null,
                platform_code: "payload_too_large",
            }
            .into_response();
        }
    };
    let message = match jsonrpc::inspect(&bytes) {
        Ok(message) => message,
        Err(refused) => return refused.into_response(),
    };
    let me = owner(caller.principal());
    let mut reservation = None;
    match session_id(&parts.headers) {
        Some(id) if !endpoint.owns(&id, &me) => return session_not_found(serde_json::Value::Null),
        Some(_) => {}
        None if message.is_initialize() => match endpoint.reserve(&me).await {
            Ok(r) => reservation = Some(r),
            Err(why) => {
                tracing::info!(tenant = %me.0, "mcp session refused: {why}");
                let mut response = jsonrpc::Refused {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    code: jsonrpc::LIMIT_REACHED,
                    message: why.to_owned(),
                    id: serde_json::Value::Null,
                    platform_code: "resource_exhausted",
                }
                .into_response();
                response.headers_mut().insert(http::header::RETRY_AFTER, 5u32.into());
                return response;
            }
        },
        None => {}
    }
    let described = described(&message, caller.principal());
    let mut response = endpoint.forward(Request::from_parts(parts, Body::from(bytes))).await;
    if reservation.is_some()
        && response.status().is_success()
        && let Some(id) = session_id(response.headers())
    {
        endpoint.adopt(id, me);
    }
    drop(reservation);
    response.extensions_mut().insert(described);
    response
}

/// `GET /mcp`: the server-to-client stream of the caller's session, ended at the token's expiry
/// like every other stream of the gateway.
pub(crate) async fn get(Extension(endpoint): Extension<Endpoint>, caller: Caller, req: Request) -> Response {
    if let Some(id) = session_id(req.headers())
        && !endpoint.owns(&id, &owner(caller.principal()))
    {
        return session_not_found(serde_json::Value::Null);
    }
    let response = endpoint.forward(req).await;
    let deadline = crate::ws::token_deadline(caller.principal());
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().take_until(tokio::time::sleep_until(deadline));
    Response::from_parts(parts, Body::from_stream(body))
}

/// `DELETE /mcp`: ends the caller's session.
pub(crate) async fn delete(Extension(endpoint): Extension<Endpoint>, caller: Caller, req: Request) -> Response {
    let id = session_id(req.headers());
    if let Some(id) = &id
        && !endpoint.owns(id, &owner(caller.principal()))
    {
        return session_not_found(serde_json::Value::Null);
    }
    let response = endpoint.forward(req).await;
    if let Some(id) = id
        && response.status().is_success()
    {
        endpoint.forget(&id);
    }
    response
}
