//! The OpenAI chat-completion wire format: request parsing and validation, response, chunk and
//! error bodies, and the `getlood` extra field built from the pipeline's turn.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::response::{IntoResponse, Response};
use getlood_common::{ApiError, ErrorCode};
use getlood_proto::common::v1::{ChatMessage, Role, Usage};
use getlood_proto::pipeline::v1::{Clarification, Intent, IntentSource, Mode, Stage, StageStatus, Turn, TurnOutcome};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::proto_json::{enum_name, proto_struct_to_json, timestamp_json};

/// Model names that let the pipeline choose the agent.
pub(crate) const AUTO_MODELS: [&str; 2] = ["getlood", "auto"];

/// The body of `POST /v1/chat/completions`. Unknown OpenAI fields (temperature, tools, ...) are
/// accepted and ignored, as the agents own their sampling settings.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatCompletionRequest {
    model: Option<String>,
    messages: Option<Vec<Value>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
    /// GETLOOD extension: the conversation to continue.
    conversation_id: Option<String>,
    /// GETLOOD extension: the desktop UI actions target.
    desktop_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
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

/// OpenAI `usage` from the pipeline's counts.
pub(crate) fn usage_json(usage: Option<&Usage>) -> Value {
    let u = usage.cloned().unwrap_or_default();
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    })
}

/// The non-streaming `chat.completion` object.
pub(crate) fn completion_json(
    id: &str,
    created: u64,
    model: &str,
    content: &str,
    turn: &Turn,
    clarification: Option<&Clarification>,
) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": "stop",
        }],
        "usage": usage_json(turn.usage.as_ref()),
        "getlood": extras_json(turn, clarification),
    })
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
pub(crate) fn error_object(err: &ApiError) -> Value {
    json!({
        "message": err.message,
        "type": error_type(err.code),
        "code": err.code.as_str(),
        "param": null,
    })
}

/// An error response of the `/v1` routes: the platform's `{"code","message"}` plus the
/// `error` object the OpenAI clients parse, so both kinds of client read it.
pub(crate) fn error_response(err: &ApiError) -> Response {
    let body = json!({
        "code": err.code.as_str(),
        "message": err.message,
        "error": error_object(err),
    });
    (err.code.http_status(), Json(body)).into_response()
}

/// The intent name without its prefix, in the spelling (`GENERATE_UI`).
pub(crate) fn intent_name(intent: i32) -> String {
    Intent::try_from(intent).map_or("UNSPECIFIED", |i| i.as_str_name()).trim_start_matches("INTENT_").to_owned()
}

/// The GETLOOD extras of a turn: intent and confidence, the agent, UI actions, user-intent
/// hints, stage timings and the outcome, plus the clarification when one was asked.
pub(crate) fn extras_json(turn: &Turn, clarification: Option<&Clarification>) -> Value {
    let mut extras = json!({
        "turn_id": turn.id,
        "conversation_id": turn.conversation_id,
        "intent": intent_name(turn.intent),
        "confidence": turn.confidence,
        "intent_source": enum_name(IntentSource::try_from(turn.intent_source).map_or("", |s| s.as_str_name()), "INTENT_SOURCE_"),
        "mode": enum_name(Mode::try_from(turn.mode).map_or("", |m| m.as_str_name()), "MODE_"),
        "outcome": enum_name(TurnOutcome::try_from(turn.outcome).map_or("", |o| o.as_str_name()), "TURN_OUTCOME_"),
        "agent": turn.agent.as_ref().map(|a| json!({"id": a.id, "name": a.name, "version": a.version})),
        "ui_actions": turn.ui_actions.iter().map(|a| json!({
            "id": a.id,
            "type": a.r#type,
            "params": a.params.as_ref().map_or_else(|| json!({}), proto_struct_to_json),
            "label": a.label,
        })).collect::<Vec<_>>(),
        "user_intent_hints": turn.user_intent_hints.iter().map(|h| json!({
            "kind": h.kind,
            "description": h.description,
            "confidence": h.confidence,
            "rule": h.rule,
        })).collect::<Vec<_>>(),
        "stage_timings": turn.stage_timings.iter().map(|t| json!({
            "stage": enum_name(Stage::try_from(t.stage).map_or("", |s| s.as_str_name()), "STAGE_"),
            "status": enum_name(StageStatus::try_from(t.status).map_or("", |s| s.as_str_name()), "STAGE_STATUS_"),
            "started_at": timestamp_json(t.started_at.as_ref()),
            "duration_ms": t.duration_ms,
        })).collect::<Vec<_>>(),
        "duration_ms": turn.duration_ms,
    });
    if let (Some(c), Some(obj)) = (clarification, extras.as_object_mut()) {
        obj.insert(
            "clarification".to_owned(),
            json!({
                "question": c.question,
                "suggestions": c.suggestions,
                "candidate_intent": intent_name(c.candidate_intent),
                "confidence": c.confidence,
            }),
        );
    }
    extras
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: Value) -> Result<ChatInput, ApiError> {
        serde_json::from_value::<ChatCompletionRequest>(body)
            .map_err(|e| ApiError::invalid_argument(e.to_string()))?
            .validate()
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
