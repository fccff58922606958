//! The OpenAI chat-completion wire format: request parsing and validation, response, chunk and
//! error bodies, and the `getlood` extra field built from the pipeline's turn.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::response::{IntoResponse, Response};
use getlood_common::{ApiError, ErrorCode};
use getlood_proto::common::v1::{ChatMessage, Role, Usage};
use getlood_proto::pipeline::v1::{Clarification, Intent, IntentSource, Mode, Stage, StageStatus, Turn, TurnOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::proto_json::{enum_name, proto_struct_to_json, timestamp};

/// Model names that let the pipeline choose the agent.
pub(crate) const AUTO_MODELS: [&str; 2] = ["getlood", "auto"];

/// The body of `POST /v1/chat/completions`. Unknown OpenAI fields (temperature, tools, ...) are
/// accepted and ignored, as the agents own their sampling settings.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ChatCompletionInput)]
pub(crate) struct ChatCompletionRequest {
    /// An agent name of `GET /v1/models`, or `getlood` (or `auto`) for automatic selection.
    #[schema(required = true)]
    model: Option<String>,
    /// At least one; the last must be a user message.
    #[schema(value_type = Vec<ChatMessageInput>, required = true, min_items = 1)]
    messages: Option<Vec<Value>>,
    /// Answer as Server-Sent Events of `chat.completion.chunk` objects, ending with `[DONE]`.
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    /// Must be 1 when given.
    #[schema(minimum = 1, maximum = 1)]
    n: Option<u32>,
    /// GETLOOD extension: the conversation to continue.
    conversation_id: Option<String>,
    /// GETLOOD extension: the desktop UI actions target.
    desktop_id: Option<String>,
}

/// Options of a streamed completion.
#[derive(Debug, Deserialize, ToSchema)]
struct StreamOptions {
    /// Send a last chunk with the token `usage` (every other chunk carries `"usage": null`).
    include_usage: Option<bool>,
}

/// One message of a chat completion request, as the handler parses it (`parse_message`).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "the schema of the request's messages, which are parsed by hand for precise errors")]
pub(crate) struct ChatMessageInput {
    role: ChatRoleInput,
    /// A string, or an array of text parts joined in order; may be empty except on user messages.
    content: Option<ChatContentInput>,
    name: Option<String>,
}

/// The roles a message may have (`developer` is read as `system`).
#[derive(Debug, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code, reason = "schema only, see ChatMessageInput")]
pub(crate) enum ChatRoleInput {
    System,
    Developer,
    User,
    Assistant,
    Tool,
}

/// Message content: text, or text parts.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "schema only, see ChatMessageInput")]
pub(crate) enum ChatContentInput {
    Text(String),
    Parts(Vec<TextPartInput>),
}

/// A text part of a message (other part types are refused).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only, see ChatMessageInput")]
pub(crate) struct TextPartInput {
    /// Always `text`.
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    kind: String,
    text: String,
}

/// Which agent answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModelChoice {
    /// The pipeline selects by intent and skill.
    Auto,
    /// This agent of the caller's tenant.
    Agent(String),
}

/// A validated chat request, shared by the HTTP and gRPC routes.
#[derive(Debug, Clone)]
pub(crate) struct ChatInput {
    /// The model as the client named it, echoed in responses.
    pub model_label: String,
    pub model: ModelChoice,
    pub messages: Vec<ChatMessage>,
    pub stream: bool,
    pub include_usage: bool,
    pub conversation_id: String,
    pub desktop_id: String,
    pub client_request_id: String,
}

/// Resolves a model name: empty or an automatic name means the pipeline chooses.
pub(crate) fn model_choice(model: &str) -> ModelChoice {
    if model.is_empty() || AUTO_MODELS.contains(&model) {
        ModelChoice::Auto
    } else {
        ModelChoice::Agent(model.to_owned())
    }
}

impl ChatCompletionRequest {
    /// Checks the request and converts it; every message names the offending field.
    pub(crate) fn validate(self) -> Result<ChatInput, ApiError> {
        let model = self.model.filter(|m| !m.trim().is_empty()).ok_or_else(|| {
            ApiError::invalid_argument("'model' is required: an agent name, or 'getlood' for automatic selection")
        })?;
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid_argument("'n' must be 1: one choice per completion is supported"));
        }
        let raw = self.messages.unwrap_or_default();
        if raw.is_empty() {
            return Err(ApiError::invalid_argument("'messages' must contain at least one message"));
        }
        let messages = raw.iter().enumerate().map(|(i, m)| parse_message(i, m)).collect::<Result<Vec<_>, _>>()?;
        check_messages(&messages)?;
        let stream = self.stream.unwrap_or(false);
        Ok(ChatInput {
            model: model_choice(&model),
            model_label: model,
            messages,
            stream,
            include_usage: stream && self.stream_options.and_then(|o| o.include_usage).unwrap_or(false),
            conversation_id: self.conversation_id.unwrap_or_default(),
            desktop_id: self.desktop_id.unwrap_or_default(),
            client_request_id: String::new(),
        })
    }
}

/// The pipeline's rules on a message list, checked here so the client gets a 400 naming the
/// message rather than an upstream error.
pub(crate) fn check_messages(messages: &[ChatMessage]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_argument("'messages' must contain at least one message"));
    }
    for (i, m) in messages.iter().enumerate() {
        if m.role == Role::Unspecified as i32 || Role::try_from(m.role).is_err() {
            return Err(ApiError::invalid_argument(format!("messages[{i}].role is not set")));
        }
        if m.role == Role::User as i32 && m.content.trim().is_empty() {
            return Err(ApiError::invalid_argument(format!(
                "messages[{i}].content must not be empty for a user message"
            )));
        }
    }
    if messages.last().is_some_and(|m| m.role != Role::User as i32) {
        return Err(ApiError::invalid_argument("the last message must be a user message"));
    }
    Ok(())
}

fn parse_message(i: usize, value: &Value) -> Result<ChatMessage, ApiError> {
    let obj =
        value.as_object().ok_or_else(|| ApiError::invalid_argument(format!("messages[{i}] must be an object")))?;
    let role = match obj.get("role").and_then(Value::as_str) {
        Some("system" | "developer") => Role::System,
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some("tool") => Role::Tool,
        Some(other) => {
            return Err(ApiError::invalid_argument(format!(
                "messages[{i}].role '{other}' is invalid: expected one of system, developer, user, assistant, tool"
            )));
        }
        None => {
            return Err(ApiError::invalid_argument(format!("messages[{i}].role is required")));
        }
    };
    let content = match obj.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        // Content parts: only text is supported; the parts are joined in order.
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(ApiError::invalid_argument(format!(
                            "messages[{i}].content[{j}] is not supported: only text parts are"
                        )));
                    }
                }
            }
            text
        }
        Some(_) => {
            return Err(ApiError::invalid_argument(format!(
                "messages[{i}].content must be a string or an array of text parts"
            )));
        }
    };
    let name = obj.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(ChatMessage { role: role as i32, content, name })
}

/// Seconds since the epoch, for `created`.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A new completion id, shared by every chunk of one completion.
pub(crate) fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

/// OpenAI's token counts of a completion.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChatUsage)]
pub(crate) struct UsageJson {
    completion_tokens: i64,
    prompt_tokens: i64,
    total_tokens: i64,
}

/// OpenAI `usage` from the pipeline's counts.
pub(crate) fn usage_json(usage: Option<&Usage>) -> UsageJson {
    let u = usage.cloned().unwrap_or_default();
    UsageJson { completion_tokens: u.completion_tokens, prompt_tokens: u.prompt_tokens, total_tokens: u.total_tokens }
}

/// The assistant's message of a completion.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AssistantMessage {
    content: String,
    /// Always `null`.
    #[schema(value_type = Option<String>)]
    refusal: (),
    /// Always `assistant`.
    role: &'static str,
}

/// The one choice of a completion.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatChoice {
    /// Always `stop`.
    finish_reason: &'static str,
    /// Always 0.
    index: u32,
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    logprobs: (),
    message: AssistantMessage,
}

/// The non-streaming `chat.completion` object, with the GETLOOD extras.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ChatCompletion {
    /// Exactly one.
    choices: Vec<ChatChoice>,
    /// Seconds since the epoch.
    created: u64,
    getlood: Extras,
    /// `chatcmpl-...`
    id: String,
    /// The model as the request named it.
    model: String,
    /// Always `chat.completion`.
    object: &'static str,
    usage: UsageJson,
}

/// The non-streaming `chat.completion` object.
pub(crate) fn completion_json(
    id: &str,
    created: u64,
    model: &str,
    content: &str,
    turn: &Turn,
    clarification: Option<&Clarification>,
) -> ChatCompletion {
    ChatCompletion {
        choices: vec![ChatChoice {
            finish_reason: "stop",
            index: 0,
            logprobs: (),
            message: AssistantMessage { content: content.to_owned(), refusal: (), role: "assistant" },
        }],
        created,
        getlood: extras_json(turn, clarification),
        id: id.to_owned(),
        model: model.to_owned(),
        object: "chat.completion",
        usage: usage_json(turn.usage.as_ref()),
    }
}

/// One `chat.completion.chunk` with a single choice.
pub(crate) fn chunk_json(id: &str, created: u64, model: &str, delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
    })
}

/// The usage-only chunk OpenAI sends last when `stream_options.include_usage` is set.
pub(crate) fn usage_chunk_json(id: &str, created: u64, model: &str, usage: Option<&Usage>) -> Value {
    json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": usage_json(usage),
    })
}

/// OpenAI's error `type` for a platform error code.
fn error_type(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::Unauthenticated => "authentication_error",
        ErrorCode::PermissionDenied => "permission_error",
        ErrorCode::ResourceExhausted => "rate_limit_error",
        ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::Unimplemented => {
            "server_error"
        }
        _ => "invalid_request_error",
    }
}

/// The `error` object OpenAI clients read.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorObject {
    /// The platform's error code.
    code: ErrorCode,
    message: String,
    /// Always `null`.
    #[schema(value_type = Option<String>)]
    param: (),
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The `error` object OpenAI clients read.
pub(crate) fn error_object(err: &ApiError) -> OpenAiErrorObject {
    OpenAiErrorObject { code: err.code, message: err.message.clone(), param: (), kind: error_type(err.code) }
}

/// The error body of the `/v1` routes: the platform's `{"code","message"}` plus the `error`
/// object the OpenAI clients parse.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OpenAiErrorBody {
    code: ErrorCode,
    error: OpenAiErrorObject,
    message: String,
}

/// An error response of the `/v1` routes: the platform's `{"code","message"}` plus the
/// `error` object the OpenAI clients parse, so both kinds of client read it.
pub(crate) fn error_response(err: &ApiError) -> Response {
    let body = OpenAiErrorBody { code: err.code, error: error_object(err), message: err.message.clone() };
    (err.code.http_status(), Json(body)).into_response()
}

/// The intent name without its prefix, in the spelling (`GENERATE_UI`).
pub(crate) fn intent_name(intent: i32) -> String {
    Intent::try_from(intent).map_or("UNSPECIFIED", |i| i.as_str_name()).trim_start_matches("INTENT_").to_owned()
}

/// The agent that answered a turn.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentRefJson {
    id: String,
    name: String,
    version: i64,
}

/// A UI action the answer asks the desktop to perform.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UiActionJson {
    id: String,
    label: String,
    /// The action's parameters; their fields depend on `type`.
    #[schema(value_type = Object)]
    params: Value,
    /// e.g. `open_window`.
    #[serde(rename = "type")]
    kind: String,
}

/// A hint at what the user intends next.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserIntentHintJson {
    confidence: f64,
    description: String,
    kind: String,
    /// The rule that produced the hint.
    rule: String,
}

/// How long a pipeline stage took.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StageTimingJson {
    duration_ms: i64,
    /// e.g. `intent`, `select`, `agent`, `ui`.
    stage: String,
    #[schema(format = DateTime)]
    started_at: Option<String>,
    /// e.g. `ok`, `skipped`, `failed`.
    status: String,
}

/// The question the pipeline asks when the intent is unclear.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClarificationJson {
    /// The intent the pipeline leans to, e.g. `GENERATE_UI`.
    candidate_intent: String,
    confidence: f64,
    question: String,
    suggestions: Vec<String>,
}

/// The GETLOOD extras of a completion (`getlood`; on the last chunk of a stream).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ChatExtras)]
pub(crate) struct Extras {
    agent: Option<AgentRefJson>,
    /// Only when the pipeline asked a question.
    #[serde(skip_serializing_if = "Option::is_none")]
    clarification: Option<ClarificationJson>,
    /// Confidence of the intent, 0..=1.
    confidence: f64,
    conversation_id: String,
    duration_ms: i64,
    /// e.g. `GENERATE_UI`, `QUERY_DATA`.
    intent: String,
    /// How the intent was found, e.g. `rules`, `model`.
    intent_source: String,
    mode: String,
    /// e.g. `answered`, `clarification`.
    outcome: String,
    stage_timings: Vec<StageTimingJson>,
    turn_id: String,
    ui_actions: Vec<UiActionJson>,
    user_intent_hints: Vec<UserIntentHintJson>,
}

/// The GETLOOD extras of a turn: intent and confidence, the agent, UI actions, user-intent
/// hints, stage timings and the outcome, plus the clarification when one was asked.
pub(crate) fn extras_json(turn: &Turn, clarification: Option<&Clarification>) -> Extras {
    Extras {
        agent: turn.agent.as_ref().map(|a| AgentRefJson { id: a.id.clone(), name: a.name.clone(), version: a.version }),
        clarification: clarification.map(|c| ClarificationJson {
            candidate_intent: intent_name(c.candidate_intent),
            confidence: c.confidence,
            question: c.question.clone(),
            suggestions: c.suggestions.clone(),
        }),
        confidence: turn.confidence,
        conversation_id: turn.conversation_id.clone(),
        duration_ms: turn.duration_ms,
        intent: intent_name(turn.intent),
        intent_source: enum_name(
            IntentSource::try_from(turn.intent_source).map_or("", |s| s.as_str_name()),
            "INTENT_SOURCE_",
        ),
        mode: enum_name(Mode::try_from(turn.mode).map_or("", |m| m.as_str_name()), "MODE_"),
        outcome: enum_name(TurnOutcome::try_from(turn.outcome).map_or("", |o| o.as_str_name()), "TURN_OUTCOME_"),
        stage_timings: turn
            .stage_timings
            .iter()
            .map(|t| StageTimingJson {
                duration_ms: t.duration_ms,
                stage: enum_name(Stage::try_from(t.stage).map_or("", |s| s.as_str_name()), "STAGE_"),
                started_at: timestamp(t.started_at.as_ref()),
                status: enum_name(StageStatus::try_from(t.status).map_or("", |s| s.as_str_name()), "STAGE_STATUS_"),
            })
            .collect(),
        turn_id: turn.id.clone(),
        ui_actions: turn
            .ui_actions
            .iter()
            .map(|a| UiActionJson {
                id: a.id.clone(),
                label: a.label.clone(),
                params: a.params.as_ref().map_or_else(|| json!({}), proto_struct_to_json),
                kind: a.r#type.clone(),
            })
            .collect(),
        user_intent_hints: turn
            .user_intent_hints
            .iter()
            .map(|h| UserIntentHintJson {
                confidence: h.confidence,
                description: h.description.clone(),
                kind: h.kind.clone(),
                rule: h.rule.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<ChatInput, ApiError> {
        serde_json::from_value::<ChatCompletionRequest>(body)
            .map_err(|e| ApiError::invalid_argument(e.to_string()))?
            .validate()
    }

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced.
    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        use getlood_proto::pipeline::v1::{AgentRef, StageTiming, UiAction, UserIntentHint};
        let turn = Turn {
            id: "t".into(),
            agent: Some(AgentRef { id: "a".into(), name: "n".into(), version: 1 }),
            ui_actions: vec![UiAction { id: "u".into(), ..UiAction::default() }],
            user_intent_hints: vec![UserIntentHint::default()],
            stage_timings: vec![StageTiming::default()],
            ..Turn::default()
        };
        let clarification = Clarification { question: "q".into(), ..Clarification::default() };
        let completion = completion_json("id", 1, "getlood", "hi", &turn, Some(&clarification));
        crate::rest::assert_sorted_keys(&completion);
        let value = serde_json::to_value(&completion).unwrap();
        assert_eq!(
            value["choices"],
            json!([{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": null},
                "logprobs": null, "finish_reason": "stop"}])
        );
        assert_eq!(value["getlood"]["clarification"]["question"], "q");
        let without = serde_json::to_value(extras_json(&turn, None)).unwrap();
        assert!(without.get("clarification").is_none());
        let err = ApiError::invalid_argument("bad");
        let body = OpenAiErrorBody { code: err.code, error: error_object(&err), message: err.message.clone() };
        let old = json!({"code": "invalid_argument", "message": "bad", "error": {
            "message": "bad", "type": "invalid_request_error", "code": "invalid_argument", "param": null}});
        assert_eq!(serde_json::to_string(&body).unwrap(), old.to_string());
    }

    #[test]
    fn auto_models_and_agents() {
        for auto in ["getlood", "auto", ""] {
            assert_eq!(model_choice(auto), ModelChoice::Auto);
        }
        assert_eq!(model_choice("analyst"), ModelChoice::Agent("analyst".to_owned()));
    }

    #[test]
    fn content_parts_and_roles() {
        let input = parse(json!({
            "model": "getlood",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
        }))
        .unwrap();
        assert_eq!(input.messages[0].role, Role::System as i32);
        assert_eq!(input.messages[1].content, "ab");
        assert!(input.stream && input.include_usage);
        let err = parse(json!({"model": "getlood", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        ]}))
        .unwrap_err();
        assert!(err.message.contains("only text parts"), "{}", err.message);
        let err =
            parse(json!({"model": "getlood", "n": 2, "messages": [{"role": "user", "content": "x"}]})).unwrap_err();
        assert!(err.message.contains("'n' must be 1"));
    }

    #[test]
    fn include_usage_needs_stream() {
        let input = parse(json!({
            "model": "getlood",
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}],
        }))
        .unwrap();
        assert!(!input.include_usage);
    }

    #[test]
    fn struct_params_become_json() {
        use prost_types::value::Kind;
        let s = prost_types::Struct {
            fields: [
                ("app_id".to_owned(), prost_types::Value { kind: Some(Kind::StringValue("dashboard".to_owned())) }),
                ("n".to_owned(), prost_types::Value { kind: Some(Kind::NumberValue(2.0)) }),
            ]
            .into_iter()
            .collect(),
        };
        assert_eq!(proto_struct_to_json(&s), json!({"app_id": "dashboard", "n": 2}));
    }
}
