//! The A2A server (issue 15; protocol v1.0, JSON-RPC binding): every agent of the caller's
//! tenant is an A2A agent under its own base path `/a2a/{agent}`.
//!
//! - `GET /a2a/{agent}/.well-known/agent-card.json`: the agent's card (its skills from the
//!   registry, streaming and push notifications on, a bearer security scheme); an agent that
//!   does not exist in the caller's tenant is a 404.
//! - `POST /a2a/{agent}`: JSON-RPC `SendMessage`, `SendStreamingMessage` (SSE), `GetTask`,
//!   `ListTasks`, `CancelTask`, `SubscribeToTask` (SSE), and `Create`/`Get`/`List`/
//!   `DeleteTaskPushNotificationConfig` ([`push`]); the 0.3 method names answer a version error
//!   naming their 1.0 method. Each method needs its permission of
//!   `crate::permissions::a2a_method_permission`.
//!
//! A message is one chat turn with that agent through the 5-stage pipeline (`chat::start` with
//! `ModelChoice::Agent`, in the chat rate-limit class and the tenant's concurrent-turn cap).
//! Tasks are stored in the gateway's own Postgres schema ([`store`]) and belong to their
//! sender: another user's or tenant's task id is "task not found" (-32001), the same answer
//! as an id that never existed. Errors are JSON-RPC error objects in a 200 answer, as the spec
//! and its SDK clients expect; the HTTP layer's own refusals (401, 403, 413) stay HTTP.

pub(crate) mod openapi;
mod protocol;
mod push;
mod store;
mod tasks;

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt as _};
use getlood_common::ApiError;
use getlood_proto::agent_registry::v1::{Agent, GetAgentRequest, GetSkillRequest, get_agent_request};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use self::protocol::{RpcError, state};
pub use self::push::{METRIC_DELIVERED as METRIC_PUSH_DELIVERED, METRIC_FAILED as METRIC_PUSH_FAILED};
pub(crate) use self::push::{PushSettings, Pusher};
pub(crate) use self::store::Store;
use self::store::{ListFilter, PushConfigRow, PutConfig, Scope, TaskRow};
pub(crate) use self::tasks::{Leases, Tasks};
use crate::AppState;
use crate::audit::Described;
use crate::caller::Caller;
use crate::rate_limit::{RouteClass, Verdict, class_verdict};

/// Default and largest `ListTasks` page (the SDK's own bounds).
const DEFAULT_PAGE_SIZE: i64 = 50;
const MAX_PAGE_SIZE: i64 = 100;
/// Skills of one agent described in its card (the registry's per-agent bound is lower).
const MAX_CARD_SKILLS: usize = 64;
/// How often a subscriber of a task running on another replica reads its state.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// A2A: the extended card is not configured.
const EXTENDED_CARD_NOT_CONFIGURED: i32 = -32007;

/// The agent `name` of the caller's tenant; another tenant's is just as unknown.
async fn agent(state: &AppState, caller: &Caller, name: &str) -> Result<Agent, ApiError> {
    let unknown =
        || ApiError::not_found(format!("no agent '{}' in this tenant", name.chars().take(64).collect::<String>()));
    if name.is_empty() || name.len() > 63 {
        return Err(unknown());
    }
    let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Name(name.to_owned())) };
    match state.upstreams.agent_registry().get_agent(caller.request(req)).await {
        Ok(resp) => resp.into_inner().agent.ok_or_else(unknown),
        Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => Err(unknown()),
        Err(status) => Err(crate::chat::upstream_error("agent-registry", status)),
    }
}

/// The public URL of the agent's base path, from the request's `Host` (and the scheme a proxy
/// in front says it served).
fn base_url(headers: &HeaderMap, agent: &str) -> String {
    let scheme = match headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) {
        Some("https") => "https",
        _ => "http",
    };
    let host = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}/a2a/{agent}")
}

/// `GET /a2a/{agent}/.well-known/agent-card.json`.
#[utoipa::path(get, path = "/a2a/{agent}/.well-known/agent-card.json", tag = "a2a",
    params(("agent" = String, Path, description = "An agent of the caller's tenant")),
    description = "The agent's A2A agent card (protocol 1.0): its JSON-RPC interface at `/a2a/{agent}`, its skills from the registry, streaming and push notifications on, the bearer security scheme. See docs/api/a2a.md.",
    responses(
        (status = 200, description = "The agent card", body = openapi::AgentCard),
        (status = 404, description = "No such agent in the caller's tenant", body = getlood_common::ErrorBody)))]
pub(crate) async fn card(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let agent = agent(&state, &caller, &name).await?;
    let mut skills = Vec::new();
    for skill in agent.skills.iter().take(MAX_CARD_SKILLS) {
        let req = GetSkillRequest { name: skill.clone() };
        match state.upstreams.agent_registry().get_skill(caller.request(req)).await {
            Ok(resp) => {
                let s = resp.into_inner().skill.unwrap_or_default();
                let description =
                    if s.description.is_empty() { format!("The {} skill", s.name) } else { s.description };
                skills.push(json!({"id": s.name, "name": s.name, "description": description, "tags": ["skill"]}));
            }
            // A skill deleted after the agent named it is not described.
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(crate::chat::upstream_error("agent-registry", status)),
        }
    }
    let about = if agent.description.trim().is_empty() {
        format!("The GETLOOD agent '{}'", agent.name)
    } else {
        agent.description.trim().to_owned()
    };
    if skills.is_empty() {
        // An agent without catalogue skills still answers questions: that is its one skill.
        skills.push(json!({"id": "ask", "name": "ask", "description": about, "tags": ["chat"]}));
    }
    let url = base_url(&headers, &agent.name);
    let origin = url.split("/a2a/").next().unwrap_or_default().to_owned();
    let card = json!({
        "name": agent.name,
        "description": about,
        "supportedInterfaces": [{"url": url, "protocolBinding": "JSONRPC", "protocolVersion": protocol::PROTOCOL_VERSION}],
        "provider": {"organization": "GETLOOD", "url": origin},
        "version": agent.version.to_string(),
        "documentationUrl": format!("{origin}/openapi.json"),
        "capabilities": {"streaming": true, "pushNotifications": true, "extendedAgentCard": false},
        "securitySchemes": {"bearer": {"httpAuthSecurityScheme": {
            "scheme": "Bearer", "bearerFormat": "JWT",
            "description": "The GETLOOD access token of a user of the agent's tenant",
        }}},
        "securityRequirements": [{"schemes": {"bearer": {"list": []}}}],
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain"],
        "skills": skills,
    });
    Ok(axum::Json(card).into_response())
}

/// One request of `class` from the caller's budget, as the REST route of the same operation.
async fn spend(state: &AppState, caller: &Caller, class: RouteClass) -> Result<(), ApiError> {
    match class_verdict(&state.limiter, class, caller.principal()).await {
        Verdict::Proceed(_) => Ok(()),
        Verdict::Refuse(err, _) => Err(err),
    }
}

/// A platform error of a message's turn as the closest JSON-RPC error.
fn rpc_error(err: &ApiError) -> RpcError {
    use getlood_common::ErrorCode as C;
    let code = match err.code {
        C::InvalidArgument | C::PayloadTooLarge => protocol::INVALID_PARAMS,
        C::NotFound => protocol::TASK_NOT_FOUND,
        C::Unimplemented => protocol::UNSUPPORTED_OPERATION,
        _ => protocol::INTERNAL_ERROR,
    };
    RpcError::new(code, format!("{}: {}", err.code.as_str(), err.message))
}

fn store_failed(err: &sqlx::Error) -> RpcError {
    tracing::error!(error = %err, "a2a task store failed");
    RpcError::new(protocol::INTERNAL_ERROR, "the task store is unavailable, retry shortly")
}

/// The HTTP status REST would have answered for `err`, for the audit log.
fn audit_status(err: &RpcError) -> StatusCode {
    match err.code {
        protocol::TASK_NOT_FOUND | protocol::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        protocol::INTERNAL_ERROR => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// What one answered request did, for the audit log: messages, cancels and push-config changes
/// are writes.
fn described(method: &str, outcome: Result<(), &RpcError>) -> Described {
    let action = match method {
        "SendMessage" | "SendStreamingMessage" => "a2a.send_message",
        "CancelTask" => "a2a.cancel_task",
        "CreateTaskPushNotificationConfig" => "a2a.create_push_config",
        "DeleteTaskPushNotificationConfig" => "a2a.delete_push_config",
        _ => return Described::Read,
    };
    match outcome {
        Ok(()) => Described::Write { action: action.to_owned(), status: StatusCode::OK, reason: String::new() },
        Err(err) => {
            Described::Write { action: action.to_owned(), status: audit_status(err), reason: err.message.clone() }
        }
    }
}

/// A JSON-RPC answer in a 200 (the spec's and the SDK clients' expectation for errors too).
fn json_answer(body: Value, audit: Described) -> Response {
    let mut response = axum::Json(body).into_response();
    response.extensions_mut().insert(audit);
    response
}

/// `POST /a2a/{agent}`: one JSON-RPC request.
pub(crate) async fn rpc(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let limit = state.settings.max_body_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        let err = RpcError::new(protocol::INVALID_REQUEST, format!("the request is larger than {limit} bytes"));
        return (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(err.response(&Value::Null))).into_response();
    };
    let request = match protocol::parse_request(&bytes) {
        Ok(request) => request,
        Err((id, err)) => return json_answer(err.response(&id), Described::Read),
    };
    // The client says which protocol it speaks; only 1.0 is served.
    if let Some(version) = parts.headers.get("a2a-version").and_then(|v| v.to_str().ok())
        && !matches!(version.trim(), "1.0" | "1" | "")
    {
        let err = RpcError::new(
            protocol::VERSION_NOT_SUPPORTED,
            format!(
                "A2A version {:?} is not supported: this server speaks {}",
                version.chars().take(16).collect::<String>(),
                protocol::PROTOCOL_VERSION
            ),
        );
        return json_answer(err.response(&request.id), Described::Read);
    }
    // The method's own permission (the route's, chat, let the caller this far).
    if let Some(permission) = crate::permissions::a2a_method_permission(&request.method)
        && let Err(err) = getlood_auth::require(&caller.principal().roles, permission)
    {
        let mut response = err.into_response();
        response.extensions_mut().insert(crate::audit::Refusal(format!("needs {permission}")));
        return response;
    }
    let agent = match agent(&state, &caller, &name).await {
        Ok(agent) => agent,
        Err(err) => return err.into_response(),
    };
    let scope = Scope {
        tenant: caller.principal().tenant.to_string(),
        user: caller.principal().user.clone(),
        agent: agent.name,
    };
    let method = request.method.clone();
    let id = request.id.clone();
    let outcome = dispatch(&state, &caller, &scope, request).await;
    match outcome {
        Ok(Answer::Json(result)) => json_answer(protocol::result(&id, result), described(&method, Ok(()))),
        Ok(Answer::Stream(events)) => {
            let mut response = sse(&state, &caller, id, events);
            response.extensions_mut().insert(described(&method, Ok(())));
            response
        }
        Err(err) => {
            let audit = described(&method, Err(&err));
            json_answer(err.response(&id), audit)
        }
    }
}

/// A stream of `StreamResponse` results.
type Events = std::pin::Pin<Box<dyn Stream<Item = Value> + Send>>;

enum Answer {
    Json(Value),
    Stream(Events),
}

/// The SSE answer: each event a JSON-RPC response to `id`, keep-alive comments while quiet,
/// ended at the token's expiry like every stream of the gateway.
fn sse(state: &AppState, caller: &Caller, id: Value, events: Events) -> Response {
    let deadline = crate::ws::token_deadline(caller.principal());
    let stream = events
        .map(move |event| Ok::<_, Infallible>(Event::default().data(protocol::result(&id, event).to_string())))
        .take_until(tokio::time::sleep_until(deadline));
    Sse::new(stream).keep_alive(KeepAlive::new().interval(state.settings.sse_heartbeat_interval)).into_response()
}

async fn dispatch(
    state: &AppState,
    caller: &Caller,
    scope: &Scope,
    request: protocol::Request,
) -> Result<Answer, RpcError> {
    let params = request.params;
    if let Some(tenant) = protocol::string_param(&params, "tenant", protocol::MAX_ID_BYTES)?
        && tenant != scope.tenant
    {
        return Err(RpcError::invalid_params("'tenant' is taken from the access token; leave it out"));
    }
    match request.method.as_str() {
        "SendMessage" => send(state, caller, scope, &params, false).await,
        "SendStreamingMessage" => send(state, caller, scope, &params, true).await,
        "GetTask" => get_task(state, scope, &params).await.map(Answer::Json),
        "ListTasks" => list_tasks(state, scope, &params).await.map(Answer::Json),
        "CancelTask" => cancel_task(state, scope, &params).await.map(Answer::Json),
        "SubscribeToTask" => subscribe(state, scope, &params).await.map(Answer::Stream),
        "CreateTaskPushNotificationConfig" => create_push_config(state, scope, &params).await.map(Answer::Json),
        "GetTaskPushNotificationConfig" => get_push_config(state, scope, &params).await.map(Answer::Json),
        "ListTaskPushNotificationConfigs" => list_push_configs(state, scope, &params).await.map(Answer::Json),
        "DeleteTaskPushNotificationConfig" => delete_push_config(state, scope, &params).await.map(Answer::Json),
        "GetExtendedAgentCard" => Err(RpcError::new(
            EXTENDED_CARD_NOT_CONFIGURED,
            "this agent has no extended card: its card at .well-known/agent-card.json is the whole card",
        )),
        other => match protocol::v03_method(other) {
            Some(v1) => Err(RpcError::new(
                protocol::VERSION_NOT_SUPPORTED,
                format!("'{other}' is A2A 0.3: this server speaks A2A 1.0, call '{v1}'"),
            )),
            None => Err(RpcError::new(
                protocol::METHOD_NOT_FOUND,
                format!("method '{}' not found", other.chars().take(128).collect::<String>()),
            )),
        },
    }
}

/// A task id param: an id that is not a UUID names no task.
fn task_id(params: &Map<String, Value>) -> Result<Uuid, RpcError> {
    let id = protocol::id_param(params, "id")?;
    Uuid::parse_str(&id).map_err(|_| RpcError::task_not_found(&id))
}

/// The caller's task, after failing it if its turn can no longer be running (the replica that
/// ran it stopped).
async fn load(state: &AppState, scope: &Scope, id: Uuid) -> Result<TaskRow, RpcError> {
    let store = state.a2a.store()?;
    state.a2a.reap(Some(scope)).await.map_err(|e| store_failed(&e))?;
    store.get(scope, id).await.map_err(|e| store_failed(&e))?.ok_or_else(|| RpcError::task_not_found(&id.to_string()))
}

/// Stores `config` for the caller's task `task` (a task's configs are bounded).
async fn attach_push_config(
    state: &AppState,
    scope: &Scope,
    task: Uuid,
    config: &PushConfigRow,
) -> Result<(), RpcError> {
    let store = state.a2a.store()?;
    match store.put_push_config(scope, task, config, push::MAX_CONFIGS_PER_TASK).await.map_err(|e| store_failed(&e))? {
        PutConfig::Stored => Ok(()),
        PutConfig::NoTask => Err(RpcError::task_not_found(&task.to_string())),
        PutConfig::Full => Err(RpcError::invalid_params(format!(
            "task {task} holds {} push notification configs already: delete one first",
            push::MAX_CONFIGS_PER_TASK
        ))),
    }
}

async fn send(
    state: &AppState,
    caller: &Caller,
    scope: &Scope,
    params: &Map<String, Value>,
    streaming: bool,
) -> Result<Answer, RpcError> {
    protocol::only_params(params, &["message", "configuration", "metadata", "tenant"])?;
    let incoming = protocol::incoming_message(params.get("message"))?;
    let configuration = protocol::send_configuration(params)?;
    let (immediately, history_length) = (configuration.immediately, configuration.history_length);
    let push_config = match &configuration.push {
        None => None,
        Some(p) => {
            // The config is for the message's task: naming another one is a mistake.
            let named = protocol::string_param(p, "taskId", protocol::MAX_ID_BYTES)?;
            if named.is_some() && named != incoming.task_id {
                return Err(RpcError::invalid_params(
                    "'configuration.taskPushNotificationConfig.taskId' is not the message's taskId: leave it out",
                ));
            }
            Some(push::config(p, &["taskId", "tenant"], state.a2a.egress())?)
        }
    };
    let metadata = protocol::metadata_param(params, "metadata")?.unwrap_or_else(|| json!({}));
    let store = state.a2a.store()?;
    spend(state, caller, RouteClass::Chat).await.map_err(|e| rpc_error(&e))?;
    let permit = state.limiter.admit_chat(&caller.principal().tenant).map_err(|e| rpc_error(&e))?;
    let row = match &incoming.task_id {
        // A follow-up: the answer to the agent's clarifying question, in the same task.
        Some(task) => {
            let id = Uuid::parse_str(task).map_err(|_| RpcError::task_not_found(task))?;
            let mut row = load(state, scope, id).await?;
            if incoming.context_id.as_ref().is_some_and(|c| *c != row.context_id) {
                return Err(RpcError::invalid_params("'message.contextId' is not the task's contextId"));
            }
            if row.state != state::INPUT_REQUIRED {
                let why = if state::is_terminal(&row.state) { "is finished" } else { "is still working" };
                return Err(RpcError::new(
                    protocol::UNSUPPORTED_OPERATION,
                    format!("task {id} {why} ({}): send a new message without taskId", row.state),
                ));
            }
            let mut history = row.history.as_array().cloned().unwrap_or_default();
            if history.len() + 2 > protocol::MAX_HISTORY {
                return Err(RpcError::invalid_params(format!(
                    "task {id} holds {} messages already: start a new task in the same contextId",
                    history.len()
                )));
            }
            // Before the task moves: a refused config leaves the task waiting for input.
            if let Some(config) = &push_config {
                attach_push_config(state, scope, id, config).await?;
            }
            history.push(protocol::message_json(
                &incoming.message_id,
                &row.context_id,
                &id.to_string(),
                "ROLE_USER",
                incoming.parts.clone(),
                incoming.metadata.clone(),
            ));
            let history = Value::Array(history);
            let moved = store
                .transition(scope, id, Some(state::INPUT_REQUIRED), state::SUBMITTED, None, Some(&history))
                .await
                .map_err(|e| store_failed(&e))?;
            if !moved {
                return Err(RpcError::new(
                    protocol::UNSUPPORTED_OPERATION,
                    format!("task {id} changed meanwhile: read it again"),
                ));
            }
            row.state = state::SUBMITTED.to_owned();
            row.status_message = None;
            row.history = history;
            row.updated_at = Utc::now();
            row
        }
        None => {
            let id = Uuid::new_v4();
            let context_id = incoming.context_id.clone().unwrap_or_else(|| Uuid::new_v4().to_string());
            // A known context continues its conversation with the agent.
            let conversation_id =
                store.conversation_of(scope, &context_id).await.map_err(|e| store_failed(&e))?.unwrap_or_default();
            let message = protocol::message_json(
                &incoming.message_id,
                &context_id,
                &id.to_string(),
                "ROLE_USER",
                incoming.parts.clone(),
                incoming.metadata.clone(),
            );
            let row = TaskRow {
                id,
                context_id,
                conversation_id,
                turn_id: String::new(),
                state: state::SUBMITTED.to_owned(),
                status_message: None,
                history: json!([message]),
                artifacts: json!([]),
                metadata,
                updated_at: Utc::now(),
            };
            store.insert(scope, &row).await.map_err(|e| store_failed(&e))?;
            if let Some(config) = &push_config {
                attach_push_config(state, scope, id, config).await?;
            }
            row
        }
    };
    state.a2a.publish(scope, &row, "").await;
    let submitted = row.to_json(history_length, true);
    let turn = tasks::Turn {
        scope: scope.clone(),
        principal: caller.principal().clone(),
        request_id: caller.request_id().map(str::to_owned),
        row: row.clone(),
        question: incoming.text,
        permit,
    };
    let mut events = state.a2a.start(state.clone(), turn);
    if streaming {
        let first = futures::stream::once(async move { json!({"task": submitted}) });
        return Ok(Answer::Stream(Box::pin(first.chain(until_final(events)))));
    }
    if !immediately {
        // Blocking: wait for the turn to end (it is bounded by the chat deadlines).
        let wait = state.settings.chat_total_timeout + Duration::from_secs(5);
        let _ = tokio::time::timeout(wait, async {
            loop {
                match events.recv().await {
                    Ok(event) if tasks::is_final(&event) => break,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        })
        .await;
        let row = load(state, scope, row.id).await?;
        return Ok(Answer::Json(json!({"task": row.to_json(history_length, true)})));
    }
    Ok(Answer::Json(json!({"task": submitted})))
}

/// A running task's events until (and with) the one that ends its stream.
fn until_final(rx: tokio::sync::broadcast::Receiver<Value>) -> Events {
    Box::pin(futures::stream::unfold((rx, false), |(mut rx, done)| async move {
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let last = tasks::is_final(&event);
                    return Some((event, (rx, last)));
                }
                // A subscriber that fell behind misses chunks; the stored task tells the end.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(missed = n, "a2a subscriber fell behind");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    }))
}

async fn get_task(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    protocol::only_params(params, &["id", "historyLength", "tenant"])?;
    let id = task_id(params)?;
    let history =
        protocol::int_param(params, "historyLength", i64::try_from(protocol::MAX_HISTORY).unwrap_or(i64::MAX))?;
    Ok(load(state, scope, id).await?.to_json(history, true))
}

/// `ListTasks` page token: the last task's `updated_at` (microseconds) and id.
fn page_token(row: &TaskRow) -> String {
    format!("{}.{}", row.updated_at.timestamp_micros(), row.id)
}

fn parse_page_token(token: &str) -> Result<(DateTime<Utc>, Uuid), RpcError> {
    let bad = || RpcError::invalid_params("'pageToken' is not a token this server gave");
    let (micros, id) = token.split_once('.').ok_or_else(bad)?;
    let at = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

async fn list_tasks(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    protocol::only_params(
        params,
        &[
            "contextId",
            "status",
            "pageSize",
            "pageToken",
            "historyLength",
            "statusTimestampAfter",
            "includeArtifacts",
            "tenant",
        ],
    )?;
    let context_id = protocol::string_param(params, "contextId", protocol::MAX_ID_BYTES)?;
    let status = match protocol::string_param(params, "status", 64)? {
        Some(s) if s == "TASK_STATE_UNSPECIFIED" => None,
        Some(s) if state::ALL.contains(&s.as_str()) => Some(s),
        Some(_) => return Err(RpcError::invalid_params(format!("'status' must be one of {}", state::ALL.join(", ")))),
        None => None,
    };
    let page_size = match protocol::int_param(params, "pageSize", MAX_PAGE_SIZE)? {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(n) => n,
    };
    let after = protocol::string_param(params, "pageToken", 128)?.as_deref().map(parse_page_token).transpose()?;
    let history =
        protocol::int_param(params, "historyLength", i64::try_from(protocol::MAX_HISTORY).unwrap_or(i64::MAX))?;
    let updated_after = match protocol::string_param(params, "statusTimestampAfter", 64)? {
        None => None,
        Some(t) => Some(
            DateTime::parse_from_rfc3339(&t)
                .map_err(|_| RpcError::invalid_params("'statusTimestampAfter' must be an RFC 3339 timestamp"))?
                .with_timezone(&Utc),
        ),
    };
    let include_artifacts = match params.get("includeArtifacts") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(RpcError::invalid_params("'includeArtifacts' must be a boolean")),
    };
    state.a2a.reap(Some(scope)).await.map_err(|e| store_failed(&e))?;
    let filter = ListFilter { context_id, state: status, updated_after, after, page_size };
    let (rows, total) = state.a2a.store()?.list(scope, &filter).await.map_err(|e| store_failed(&e))?;
    let next =
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) == page_size { rows.last().map(page_token) } else { None };
    let tasks: Vec<Value> = rows.iter().map(|r| r.to_json(history, include_artifacts)).collect();
    Ok(json!({
        "tasks": tasks,
        "nextPageToken": next.unwrap_or_default(),
        "pageSize": page_size,
        "totalSize": total,
    }))
}

async fn cancel_task(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    protocol::only_params(params, &["id", "metadata", "tenant"])?;
    let id = task_id(params)?;
    protocol::metadata_param(params, "metadata")?;
    let row = load(state, scope, id).await?;
    let not_cancelable = |state: &str| {
        RpcError::new(protocol::TASK_NOT_CANCELABLE, format!("task {id} cannot be canceled: it is {state}"))
    };
    if state::is_terminal(&row.state) {
        return Err(not_cancelable(&row.state));
    }
    let message = protocol::agent_message(&row.context_id, &id.to_string(), "canceled by the client");
    let store = state.a2a.store()?;
    let moved =
        store.transition(scope, id, None, state::CANCELED, Some(&message), None).await.map_err(|e| store_failed(&e))?;
    let row = load(state, scope, id).await?;
    if !moved {
        return Err(not_cancelable(&row.state));
    }
    state.a2a.cancel_local(id);
    state.a2a.publish(scope, &row, "canceled by the client").await;
    Ok(row.to_json(None, true))
}

/// The `taskId` of a push-config method: a task of the caller (another's is not found).
async fn push_task(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Uuid, RpcError> {
    let id = protocol::id_param(params, "taskId")?;
    let task = Uuid::parse_str(&id).map_err(|_| RpcError::task_not_found(&id))?;
    if state.a2a.store()?.exists(scope, task).await.map_err(|e| store_failed(&e))? {
        Ok(task)
    } else {
        Err(RpcError::task_not_found(&id))
    }
}

/// `CreateTaskPushNotificationConfig`: stores (or replaces, by id) a webhook of the task.
async fn create_push_config(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let config = push::config(params, &["tenant", "taskId"], state.a2a.egress())?;
    let id = protocol::id_param(params, "taskId")?;
    let task = Uuid::parse_str(&id).map_err(|_| RpcError::task_not_found(&id))?;
    attach_push_config(state, scope, task, &config).await?;
    Ok(push::config_json(task, &config))
}

/// `GetTaskPushNotificationConfig`: one config of the task; an unknown one is "not found".
async fn get_push_config(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    protocol::only_params(params, &["tenant", "taskId", "id"])?;
    let task = push_task(state, scope, params).await?;
    let id = protocol::id_param(params, "id")?;
    let configs = state.a2a.store()?.push_configs(scope, task).await.map_err(|e| store_failed(&e))?;
    configs.iter().find(|c| c.id == id).map(|c| push::config_json(task, c)).ok_or_else(|| {
        RpcError::new(
            protocol::TASK_NOT_FOUND,
            format!("task {task} has no push notification config '{}'", id.chars().take(128).collect::<String>()),
        )
    })
}

/// `ListTaskPushNotificationConfigs`: every config of the task, oldest first, in one page (a
/// task holds few).
async fn list_push_configs(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    protocol::only_params(params, &["tenant", "taskId", "pageSize", "pageToken"])?;
    protocol::int_param(params, "pageSize", MAX_PAGE_SIZE)?;
    if protocol::string_param(params, "pageToken", 128)?.is_some() {
        return Err(RpcError::invalid_params(
            "'pageToken' is not a token this server gave: the first page is the whole list",
        ));
    }
    let task = push_task(state, scope, params).await?;
    let configs = state.a2a.store()?.push_configs(scope, task).await.map_err(|e| store_failed(&e))?;
    let configs: Vec<Value> = configs.iter().map(|c| push::config_json(task, c)).collect();
    Ok(json!({"configs": configs, "nextPageToken": ""}))
}

/// `DeleteTaskPushNotificationConfig`: removes a config; deleting it again is no error.
async fn delete_push_config(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Value, RpcError> {
    protocol::only_params(params, &["tenant", "taskId", "id"])?;
    let task = push_task(state, scope, params).await?;
    let id = protocol::id_param(params, "id")?;
    state.a2a.store()?.delete_push_config(scope, task, &id).await.map_err(|e| store_failed(&e))?;
    Ok(json!({}))
}

async fn subscribe(state: &AppState, scope: &Scope, params: &Map<String, Value>) -> Result<Events, RpcError> {
    protocol::only_params(params, &["id", "tenant"])?;
    let id = task_id(params)?;
    let row = load(state, scope, id).await?;
    if !state::is_running(&row.state) {
        return Err(RpcError::new(
            protocol::UNSUPPORTED_OPERATION,
            format!("task {id} is {}: there is nothing more to stream; read it with GetTask", row.state),
        ));
    }
    if let Some(joined) = state.a2a.join(id) {
        let first = futures::stream::once(async move { json!({"task": joined.task}) });
        return Ok(Box::pin(first.chain(until_final(joined.events))));
    }
    Ok(follow_stored(state.clone(), scope.clone(), row))
}

/// A task running on another replica (or orphaned by one that stopped), followed through the
/// store: the task, then a status update at each change of state; at the end the answer
/// artifact whole, then the final status.
fn follow_stored(state: AppState, scope: Scope, row: TaskRow) -> Events {
    let first = json!({"task": row.to_json(None, true)});
    let rest = futures::stream::unfold(Some(row), move |last| {
        let state = state.clone();
        let scope = scope.clone();
        async move {
            let last = last?;
            loop {
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                let Ok(now) = load(&state, &scope, last.id).await else { return None };
                if now.state == last.state {
                    continue;
                }
                let id = now.id.to_string();
                let status =
                    protocol::status_json(&now.state, now.status_message.as_ref(), &store::timestamp(now.updated_at));
                let mut out = Vec::new();
                if !state::is_running(&now.state) {
                    if let Some(artifact) = now.artifacts.as_array().and_then(|a| a.first()) {
                        out.push(json!({"artifactUpdate": {"taskId": id, "contextId": now.context_id, "artifact": artifact, "append": false, "lastChunk": true}}));
                    }
                    out.push(protocol::status_update(&id, &now.context_id, status));
                    return Some((futures::stream::iter(out), None));
                }
                out.push(protocol::status_update(&id, &now.context_id, status));
                return Some((futures::stream::iter(out), Some(now)));
            }
        }
    });
    Box::pin(futures::stream::once(async move { first }).chain(rest.flatten()))
}
