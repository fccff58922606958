//! Chat completions: the pipeline's `Execute` stream turned into OpenAI responses, chunks and
//! SSE, with its own deadlines (the chat route sits outside the plain-request timeout).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use getlood_auth::Principal;
use getlood_common::{ApiError, ErrorCode};
use getlood_proto::agent_registry::v1::{GetAgentRequest, get_agent_request};
use getlood_proto::common::v1::ErrorDetail;
use getlood_proto::pipeline::v1::{Clarification, ExecuteRequest, ExecuteResponse, Turn, execute_response};
use serde_json::json;
use tokio::time::Instant;

use crate::caller::{Caller, unary};
use crate::extract::ApiJson;
use crate::openai::{self, ChatCompletion, ChatCompletionRequest, ChatInput, ModelChoice};
use crate::proto_json::to_json;
use crate::rest::IdempotencyKey;
use crate::{AppState, upstream};

/// What the chat routes see of a pipeline run.
#[derive(Debug)]
pub(crate) enum ChatEvent {
    /// Text to append to the answer.
    Delta(String),
    /// The pipeline is still working.
    Heartbeat,
    /// The turn finished; always the last event of a successful run.
    Done(Box<Finished>),
    /// The run failed; always the last event of a failed run.
    Failed(ApiError),
}

/// The end of a successful run.
#[derive(Debug)]
pub(crate) struct Finished {
    pub turn: Turn,
    pub clarification: Option<Clarification>,
}

/// A run's events: it always ends with exactly one `Done` or `Failed`, within the deadlines.
pub(crate) type ChatEvents = Pin<Box<dyn Stream<Item = ChatEvent> + Send>>;

/// Maps a gRPC error of `service` for the client: a transport failure becomes a plain
/// "unavailable" without the socket details.
pub(crate) fn upstream_error(service: &str, status: tonic::Status) -> ApiError {
    match status.code() {
        tonic::Code::Unavailable => {
            tracing::warn!(service, error = %status.message(), "upstream unavailable");
            ApiError::unavailable(format!("the {service} service is unavailable, retry shortly"))
        }
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            ApiError::new(ErrorCode::DeadlineExceeded, format!("the {service} service did not answer in time"))
        }
        _ => ApiError::from(status),
    }
}

/// An in-stream error item, whose message the services promise is safe to show.
fn detail_to_error(detail: &ErrorDetail) -> ApiError {
    let message =
        if detail.message.is_empty() { "the chat pipeline failed".to_owned() } else { detail.message.clone() };
    ApiError::new(ErrorCode::from_wire(detail.code), message)
}

/// Checks the model, starts `Execute` and returns its events. Errors before the stream starts
/// (unknown model, bad input, upstream down) come back as an `Err` so the route can answer with
/// a plain status code.
pub(crate) async fn start(
    state: &AppState,
    principal: &Principal,
    request_id: Option<&str>,
    input: &ChatInput,
) -> Result<ChatEvents, ApiError> {
    let agent_name = match &input.model {
        ModelChoice::Auto => None,
        ModelChoice::Agent(name) => {
            // Resolved in the caller's tenant: another tenant's agent is just as unknown.
            let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Name(name.clone())) };
            match state.upstreams.agent_registry().get_agent(upstream::request(principal, request_id, req)).await {
                Ok(_) => Some(name.clone()),
                Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                    return Err(ApiError::invalid_argument(format!(
                        "model '{name}' does not exist: use one of GET /v1/models, or 'getlood' for automatic selection"
                    )));
                }
                Err(status) => return Err(upstream_error("agent-registry", status)),
            }
        }
    };
    let req = ExecuteRequest {
        conversation_id: input.conversation_id.clone(),
        messages: input.messages.clone(),
        agent_name,
        desktop_id: input.desktop_id.clone(),
        client_request_id: input.client_request_id.clone(),
        metadata: std::collections::HashMap::from([("model".to_owned(), input.model_label.clone())]),
    };
    let stream =
        unary("pipeline", state.upstreams.pipeline().execute(upstream::request(principal, request_id, req))).await?;
    let limits = Limits {
        idle: state.settings.chat_idle_timeout,
        total: state.settings.chat_total_timeout,
        token_expiry: crate::ws::token_deadline(principal),
    };
    Ok(events(stream, limits))
}

/// What ends a chat stream that is still running.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Longest silence of the pipeline.
    idle: Duration,
    /// Longest whole turn.
    total: Duration,
    /// The caller's token expiry: like every other stream, an answer is not sent past it.
    token_expiry: Instant,
}

struct Run {
    inner: tonic::Streaming<ExecuteResponse>,
    deadline: Instant,
    limits: Limits,
    emitted_text: bool,
    clarification: Option<Clarification>,
    pending: VecDeque<ChatEvent>,
    finished: bool,
}

/// Turns the `Execute` items into chat events, ending with exactly one `Done` or `Failed`: an
/// error item, a broken or truncated stream, silence longer than `idle`, a run longer than
/// `total` or the caller's token expiring all end it with `Failed`, so a client never hangs.
fn events(inner: tonic::Streaming<ExecuteResponse>, limits: Limits) -> ChatEvents {
    let run = Run {
        inner,
        deadline: Instant::now() + limits.total,
        limits,
        emitted_text: false,
        clarification: None,
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures::stream::unfold(run, |mut run| async move {
        loop {
            if let Some(event) = run.pending.pop_front() {
                return Some((event, run));
            }
            if run.finished {
                return None;
            }
            let wake = (Instant::now() + run.limits.idle).min(run.deadline).min(run.limits.token_expiry);
            let item = match tokio::time::timeout_at(wake, run.inner.message()).await {
                Err(_) => {
                    run.finished = true;
                    let now = Instant::now();
                    if now >= run.limits.token_expiry {
                        tracing::info!("chat stream ended at the token's expiry");
                        let message = "the token expired before the answer was complete";
                        return Some((ChatEvent::Failed(ApiError::new(ErrorCode::Unauthenticated, message)), run));
                    }
                    let message = if now >= run.deadline {
                        format!("the chat completion did not finish within {:?}", run.limits.total)
                    } else {
                        format!("the chat pipeline sent nothing for {:?}", run.limits.idle)
                    };
                    tracing::warn!(%message, "chat stream timed out");
                    return Some((ChatEvent::Failed(ApiError::new(ErrorCode::DeadlineExceeded, message)), run));
                }
                Ok(Err(status)) => {
                    run.finished = true;
                    tracing::warn!(code = ?status.code(), error = %status.message(), "chat stream broke");
                    let err = match status.code() {
                        tonic::Code::Ok
                        | tonic::Code::Unknown
                        | tonic::Code::Internal
                        | tonic::Code::Unavailable
                        | tonic::Code::Cancelled => {
                            ApiError::unavailable("the chat pipeline stream broke before the answer was complete")
                        }
                        _ => ApiError::from(status),
                    };
                    return Some((ChatEvent::Failed(err), run));
                }
                Ok(Ok(None)) => {
                    run.finished = true;
                    tracing::warn!("chat stream ended without a result");
                    return Some((
                        ChatEvent::Failed(ApiError::unavailable("the chat pipeline ended the stream without a result")),
                        run,
                    ));
                }
                Ok(Ok(Some(item))) => item,
            };
            match item.event {
                Some(execute_response::Event::AnswerChunk(chunk)) if !chunk.delta.is_empty() => {
                    run.emitted_text = true;
                    return Some((ChatEvent::Delta(chunk.delta), run));
                }
                Some(execute_response::Event::Heartbeat(_)) => {
                    return Some((ChatEvent::Heartbeat, run));
                }
                Some(execute_response::Event::Clarification(c)) => {
                    // The question is the assistant's message; the result that follows repeats it.
                    let question = c.question.clone();
                    run.clarification = Some(c);
                    if !run.emitted_text && !question.is_empty() {
                        run.emitted_text = true;
                        return Some((ChatEvent::Delta(question), run));
                    }
                }
                Some(execute_response::Event::Result(turn)) => {
                    run.finished = true;
                    // A replayed turn (same idempotency key) arrives as a lone result.
                    if !run.emitted_text && !turn.answer.is_empty() {
                        run.pending.push_back(ChatEvent::Delta(turn.answer.clone()));
                    }
                    let clarification = run.clarification.take();
                    run.pending.push_back(ChatEvent::Done(Box::new(Finished { turn, clarification })));
                }
                Some(execute_response::Event::Error(detail)) => {
                    run.finished = true;
                    return Some((ChatEvent::Failed(detail_to_error(&detail)), run));
                }
                // Stage events only prove liveness; their timings come again in the result.
                _ => {}
            }
        }
    }))
}

/// `POST /v1/chat/completions`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", params(IdempotencyKey), request_body = ChatCompletionRequest,
    description = "OpenAI's chat completion, answered by the named agent or, with `getlood`, by the agent the pipeline selects. Unknown OpenAI fields are ignored. With `stream: true` the answer is Server-Sent Events: `data: <chat.completion.chunk>` lines, the GETLOOD extras on the last chunk, then `data: [DONE]`; a failure after the first chunk is a `data: {\"error\": ...}` line. Errors before the answer starts carry OpenAI's `error` object as well.",
    responses(
        (status = 200, description = "The completion (`stream` false) or its chunks (`stream` true)",
            content((ChatCompletion = "application/json"), (String = "text/event-stream")))))]
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    body: Result<ApiJson<ChatCompletionRequest>, ApiError>,
) -> Response {
    let mut input = match body.and_then(|ApiJson(req)| req.validate()) {
        Ok(input) => input,
        Err(err) => return openai::error_response(&err),
    };
    if let Some(key) = key {
        input.client_request_id = key;
    }
    let events = match start(&state, caller.principal(), caller.request_id(), &input).await {
        Ok(events) => events,
        Err(err) => return openai::error_response(&err),
    };
    let id = openai::completion_id();
    let created = openai::now_unix();
    if input.stream {
        stream_response(events, id, created, input, state.settings.sse_heartbeat_interval)
    } else {
        collect_response(events, &id, created, &input.model_label).await
    }
}

async fn collect_response(mut events: ChatEvents, id: &str, created: u64, model: &str) -> Response {
    let mut content = String::new();
    while let Some(event) = events.next().await {
        match event {
            ChatEvent::Delta(text) => content.push_str(&text),
            ChatEvent::Heartbeat => {}
            ChatEvent::Done(finished) => {
                let body = openai::completion_json(
                    id,
                    created,
                    model,
                    &content,
                    &finished.turn,
                    finished.clarification.as_ref(),
                );
                return axum::Json(body).into_response();
            }
            ChatEvent::Failed(err) => return openai::error_response(&err),
        }
    }
    // `events` always ends with Done or Failed; this is a defensive fallback.
    openai::error_response(&ApiError::unavailable("the chat pipeline ended the stream without a result"))
}

fn data(value: &serde_json::Value) -> Event {
    Event::default().data(value.to_string())
}

fn stream_response(events: ChatEvents, id: String, created: u64, input: ChatInput, heartbeat: Duration) -> Response {
    let model = input.model_label;
    let include_usage = input.include_usage;
    let with_usage_null = move |mut chunk: serde_json::Value| {
        // OpenAI: with include_usage, every chunk but the last carries `"usage": null`.
        if include_usage && let Some(obj) = chunk.as_object_mut() {
            obj.insert("usage".to_owned(), serde_json::Value::Null);
        }
        chunk
    };
    let first = data(&with_usage_null(openai::chunk_json(
        &id,
        created,
        &model,
        json!({"role": "assistant", "content": ""}),
        None,
    )));
    let rest = events.flat_map(move |event| {
        let out: Vec<Event> = match event {
            ChatEvent::Delta(text) => {
                vec![data(&with_usage_null(openai::chunk_json(&id, created, &model, json!({"content": text}), None)))]
            }
            ChatEvent::Heartbeat => vec![Event::default().comment("keep-alive")],
            ChatEvent::Done(finished) => {
                let extras = to_json(&openai::extras_json(&finished.turn, finished.clarification.as_ref()));
                let mut last = with_usage_null(openai::chunk_json(&id, created, &model, json!({}), Some("stop")));
                let mut out = Vec::new();
                if include_usage {
                    out.push(data(&last));
                    last = openai::usage_chunk_json(&id, created, &model, finished.turn.usage.as_ref());
                }
                // The GETLOOD extras ride on the last chunk only.
                if let Some(obj) = last.as_object_mut() {
                    obj.insert("getlood".to_owned(), extras);
                }
                out.push(data(&last));
                out.push(Event::default().data("[DONE]"));
                out
            }
            ChatEvent::Failed(err) => {
                vec![data(&json!({"error": openai::error_object(&err)})), Event::default().data("[DONE]")]
            }
        };
        futures::stream::iter(out)
    });
    let stream = futures::stream::once(async move { first }).chain(rest).map(Ok::<_, Infallible>);
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(heartbeat).text("keep-alive"));
    let mut response = sse.into_response();
    let headers = response.headers_mut();
    headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
    // Stops nginx-style proxies from buffering the stream.
    headers.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
    response
}
