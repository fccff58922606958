//! The A2A v1.0 wire format the server speaks: JSON-RPC 2.0 envelopes, the spec's error codes,
//! and the protobuf-JSON shapes of `Message`, `Part`, `Task`, `TaskStatus`, `Artifact` and the
//! stream events (`a2a.proto`: camelCase fields, enums by their full names such as
//! `TASK_STATE_COMPLETED`, `ROLE_AGENT`). Incoming messages are read by hand so every refusal
//! names the field at fault.

use serde_json::{Map, Value, json};

/// JSON-RPC 2.0: the text is not JSON.
pub(crate) const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0: not a valid request object.
pub(crate) const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC 2.0: no such method.
pub(crate) const METHOD_NOT_FOUND: i32 = -32601;
/// JSON-RPC 2.0: the params are invalid.
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// JSON-RPC 2.0: the server failed.
pub(crate) const INTERNAL_ERROR: i32 = -32603;
/// A2A: no such task (also another tenant's or user's).
pub(crate) const TASK_NOT_FOUND: i32 = -32001;
/// A2A: the task is in a terminal state.
pub(crate) const TASK_NOT_CANCELABLE: i32 = -32002;
/// A2A: push notifications are not supported (the reason's name; this server supports them).
const PUSH_NOT_SUPPORTED: i32 = -32003;
/// A2A: the operation is not supported.
pub(crate) const UNSUPPORTED_OPERATION: i32 = -32004;
/// A2A: a part's media type (or the accepted output modes) cannot be served.
pub(crate) const CONTENT_TYPE_NOT_SUPPORTED: i32 = -32005;
/// A2A: the protocol version the client asked for is not served.
pub(crate) const VERSION_NOT_SUPPORTED: i32 = -32009;

/// The protocol version this server speaks (`A2A-Version`, the card's interface).
pub(crate) const PROTOCOL_VERSION: &str = "1.0";

/// Longest text of one message (all its parts together), in bytes: the MCP tool's bound.
pub(crate) const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// Most parts in one message.
pub(crate) const MAX_PARTS: usize = 16;
/// Longest id (messageId, contextId, taskId, page token), in bytes.
pub(crate) const MAX_ID_BYTES: usize = 128;
/// Most messages a task's history holds (each continuation adds two).
pub(crate) const MAX_HISTORY: usize = 64;
/// Largest `metadata` object of a message or request, serialized.
pub(crate) const MAX_METADATA_BYTES: usize = 8 * 1024;

/// A2A task states (`TaskState`).
pub(crate) mod state {
    pub(crate) const SUBMITTED: &str = "TASK_STATE_SUBMITTED";
    pub(crate) const WORKING: &str = "TASK_STATE_WORKING";
    pub(crate) const COMPLETED: &str = "TASK_STATE_COMPLETED";
    pub(crate) const FAILED: &str = "TASK_STATE_FAILED";
    pub(crate) const CANCELED: &str = "TASK_STATE_CANCELED";
    pub(crate) const INPUT_REQUIRED: &str = "TASK_STATE_INPUT_REQUIRED";
    pub(crate) const REJECTED: &str = "TASK_STATE_REJECTED";
    pub(crate) const AUTH_REQUIRED: &str = "TASK_STATE_AUTH_REQUIRED";

    /// Every state name a client may filter on.
    pub(crate) const ALL: &[&str] =
        &[SUBMITTED, WORKING, COMPLETED, FAILED, CANCELED, INPUT_REQUIRED, REJECTED, AUTH_REQUIRED];

    /// Whether nothing more happens to a task in `state`.
    pub(crate) fn is_terminal(state: &str) -> bool {
        matches!(state, COMPLETED | FAILED | CANCELED | REJECTED)
    }

    /// Whether a task in `state` is being answered right now.
    pub(crate) fn is_running(state: &str) -> bool {
        matches!(state, SUBMITTED | WORKING)
    }
}

/// A refused JSON-RPC request: the spec's code, a message that says what is wrong, and the
/// A2A reason the client maps back to its error class (`google.rpc.ErrorInfo` in `data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RpcError {
    pub code: i32,
    pub message: String,
}

impl RpcError {
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub(crate) fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub(crate) fn task_not_found(id: &str) -> Self {
        let shown: String = id.chars().take(MAX_ID_BYTES).collect();
        Self::new(TASK_NOT_FOUND, format!("task '{shown}' not found"))
    }

    /// The A2A reason of the code (`a2a.utils.errors`' mapping).
    fn reason(&self) -> &'static str {
        match self.code {
            TASK_NOT_FOUND => "TASK_NOT_FOUND",
            TASK_NOT_CANCELABLE => "TASK_NOT_CANCELABLE",
            PUSH_NOT_SUPPORTED => "PUSH_NOTIFICATION_NOT_SUPPORTED",
            UNSUPPORTED_OPERATION => "UNSUPPORTED_OPERATION",
            CONTENT_TYPE_NOT_SUPPORTED => "CONTENT_TYPE_NOT_SUPPORTED",
            VERSION_NOT_SUPPORTED => "VERSION_NOT_SUPPORTED",
            INVALID_PARAMS => "INVALID_PARAMS",
            INVALID_REQUEST | PARSE_ERROR => "INVALID_REQUEST",
            METHOD_NOT_FOUND => "METHOD_NOT_FOUND",
            _ => "INTERNAL_ERROR",
        }
    }

    /// The JSON-RPC error response to request `id`.
    pub(crate) fn response(&self, id: &Value) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": self.code,
                "message": self.message,
                "data": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.reason(),
                    "domain": "a2a-protocol.org",
                    "metadata": {},
                }],
            },
        })
    }
}

/// The success response to request `id`.
pub(crate) fn result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// One JSON-RPC request: its id (echoed), method and params.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
}

/// Reads a JSON-RPC request; a refusal carries the id when it could be read (`null` otherwise).
pub(crate) fn parse_request(body: &[u8]) -> Result<Request, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| (Value::Null, RpcError::new(PARSE_ERROR, format!("parse error: the body is not JSON ({e})"))))?;
    let Value::Object(mut obj) = value else {
        let message = if value.is_array() {
            "invalid request: JSON-RPC batches are not supported; send one request per POST"
        } else {
            "invalid request: the body must be a JSON-RPC request object"
        };
        return Err((Value::Null, RpcError::new(INVALID_REQUEST, message)));
    };
    let id = match obj.remove("id") {
        Some(id @ Value::String(_)) => id,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n),
        None => {
            return Err((
                Value::Null,
                RpcError::new(INVALID_REQUEST, "invalid request: 'id' is required (notifications are not served)"),
            ));
        }
        Some(_) => {
            return Err((
                Value::Null,
                RpcError::new(INVALID_REQUEST, "invalid request: 'id' must be a string or an integer"),
            ));
        }
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((id, RpcError::new(INVALID_REQUEST, "invalid request: 'jsonrpc' must be \"2.0\"")));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) if !m.is_empty() && m.len() <= 128 => m,
        _ => {
            return Err((
                id,
                RpcError::new(INVALID_REQUEST, "invalid request: 'method' must be a string of 1-128 characters"),
            ));
        }
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => return Err((id, RpcError::invalid_params("invalid params: 'params' must be an object"))),
    };
    Ok(Request { id, method, params })
}

/// The methods of A2A 0.3, with their 1.0 names: answered with a version error that names the
/// 1.0 method, since their 0.3 result shapes (`kind`, lower-case states) are not produced.
pub(crate) fn v03_method(method: &str) -> Option<&'static str> {
    Some(match method {
        "message/send" => "SendMessage",
        "message/stream" => "SendStreamingMessage",
        "tasks/get" => "GetTask",
        "tasks/list" => "ListTasks",
        "tasks/cancel" => "CancelTask",
        "tasks/resubscribe" => "SubscribeToTask",
        "tasks/pushNotificationConfig/set" => "CreateTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/get" => "GetTaskPushNotificationConfig",
        "tasks/pushNotificationConfig/list" => "ListTaskPushNotificationConfigs",
        "tasks/pushNotificationConfig/delete" => "DeleteTaskPushNotificationConfig",
        "agent/getAuthenticatedExtendedCard" => "GetExtendedAgentCard",
        _ => return None,
    })
}

/// Refuses params the method does not take, so a typo is an error rather than ignored.
pub(crate) fn only_params(params: &Map<String, Value>, known: &[&str]) -> Result<(), RpcError> {
    match params.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(RpcError::invalid_params(format!(
            "unknown param '{}': this method takes {}",
            unknown.chars().take(64).collect::<String>(),
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// An optional string param of at most `max` bytes (`""` counts as absent).
pub(crate) fn string_param(obj: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, RpcError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => {
            Err(RpcError::invalid_params(format!("'{name}' is longer than {max} bytes")))
        }
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RpcError::invalid_params(format!("'{name}' must be a string"))),
    }
}

/// A required, non-empty id param.
pub(crate) fn id_param(obj: &Map<String, Value>, name: &str) -> Result<String, RpcError> {
    string_param(obj, name, MAX_ID_BYTES)?.ok_or_else(|| RpcError::invalid_params(format!("'{name}' is required")))
}

/// An optional integer param within `0..=max`.
pub(crate) fn int_param(obj: &Map<String, Value>, name: &str, max: i64) -> Result<Option<i64>, RpcError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if (0..=max).contains(&n) => Ok(Some(n)),
            _ => Err(RpcError::invalid_params(format!("'{name}' must be an integer from 0 to {max}"))),
        },
    }
}

/// An optional `metadata` object, bounded.
pub(crate) fn metadata_param(obj: &Map<String, Value>, name: &str) -> Result<Option<Value>, RpcError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Object(_)) if v.to_string().len() > MAX_METADATA_BYTES => {
            Err(RpcError::invalid_params(format!("'{name}' is larger than {MAX_METADATA_BYTES} bytes")))
        }
        Some(v @ Value::Object(_)) => Ok(Some(v.clone())),
        Some(_) => Err(RpcError::invalid_params(format!("'{name}' must be an object"))),
    }
}

/// A user's message as the server accepted it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Incoming {
    pub message_id: String,
    pub context_id: Option<String>,
    pub task_id: Option<String>,
    /// What the agent is asked: the text parts, and the data parts as JSON, joined by blank lines.
    pub text: String,
    /// The message as it goes into the task's history (the client's parts and metadata).
    pub parts: Vec<Value>,
    pub metadata: Option<Value>,
}

/// Reads `params.message` of `SendMessage`: a user message with 1 to [`MAX_PARTS`] text or data
/// parts of at most [`MAX_MESSAGE_BYTES`] together. File parts (`raw`, `url`) are refused with
/// the content-type error: the agents answer text.
pub(crate) fn incoming_message(value: Option<&Value>) -> Result<Incoming, RpcError> {
    let Some(Value::Object(msg)) = value else {
        return Err(RpcError::invalid_params("'message' is required and must be an object"));
    };
    only_params(
        msg,
        &["messageId", "contextId", "taskId", "role", "parts", "metadata", "extensions", "referenceTaskIds", "kind"],
    )
    .map_err(|e| RpcError::invalid_params(format!("message: {}", e.message)))?;
    let message_id = id_param(msg, "messageId")
        .map_err(|e| RpcError::invalid_params(format!("message.{}", e.message.trim_start_matches('\''))))?;
    let context_id = string_param(msg, "contextId", MAX_ID_BYTES)?;
    let task_id = string_param(msg, "taskId", MAX_ID_BYTES)?;
    match msg.get("role").and_then(Value::as_str) {
        // 0.3 spelled it `user`.
        Some("ROLE_USER" | "user") => {}
        Some(_) => {
            return Err(RpcError::invalid_params("'message.role' must be ROLE_USER: a client sends user messages"));
        }
        None => return Err(RpcError::invalid_params("'message.role' is required (ROLE_USER)")),
    }
    if msg.get("extensions").and_then(Value::as_array).is_some_and(|e| !e.is_empty()) {
        return Err(RpcError::invalid_params("'message.extensions': this agent supports no extensions"));
    }
    let parts = match msg.get("parts") {
        Some(Value::Array(parts)) if parts.is_empty() => {
            return Err(RpcError::invalid_params("'message.parts' must hold at least one part"));
        }
        Some(Value::Array(parts)) if parts.len() > MAX_PARTS => {
            return Err(RpcError::invalid_params(format!("'message.parts' holds more than {MAX_PARTS} parts")));
        }
        Some(Value::Array(parts)) => parts,
        _ => return Err(RpcError::invalid_params("'message.parts' is required and must be an array")),
    };
    let mut texts = Vec::with_capacity(parts.len());
    let mut kept = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let Value::Object(p) = part else {
            return Err(RpcError::invalid_params(format!("'message.parts[{i}]' must be an object")));
        };
        if p.contains_key("raw") || p.contains_key("url") || p.contains_key("file") {
            return Err(RpcError::new(
                CONTENT_TYPE_NOT_SUPPORTED,
                format!("'message.parts[{i}]' is a file: this agent reads text and data parts only"),
            ));
        }
        match (p.get("text"), p.get("data")) {
            (Some(Value::String(t)), None) => texts.push(t.clone()),
            (None, Some(data)) => texts.push(data.to_string()),
            _ => {
                return Err(RpcError::invalid_params(format!(
                    "'message.parts[{i}]' must have exactly one of 'text' (a string) or 'data'"
                )));
            }
        }
        if let Some(media) = p.get("mediaType").and_then(Value::as_str)
            && !(media.is_empty() || media.starts_with("text/") || media == "application/json")
        {
            return Err(RpcError::new(
                CONTENT_TYPE_NOT_SUPPORTED,
                format!("'message.parts[{i}].mediaType' {media:?}: this agent reads text and JSON"),
            ));
        }
        let mut clean = p.clone();
        // 0.3's discriminator is not a 1.0 field.
        clean.remove("kind");
        kept.push(Value::Object(clean));
    }
    let text = texts.join("\n\n");
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(RpcError::invalid_params(format!("the message's parts are larger than {MAX_MESSAGE_BYTES} bytes")));
    }
    if text.trim().is_empty() {
        return Err(RpcError::invalid_params("the message has no text: its parts are empty"));
    }
    let metadata = metadata_param(msg, "metadata")?;
    Ok(Incoming { message_id, context_id, task_id, text, parts: kept, metadata })
}

/// `params.configuration` of `SendMessage`, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SendConfiguration {
    /// `returnImmediately` (or 0.3's `blocking: false`).
    pub immediately: bool,
    /// `historyLength`.
    pub history_length: Option<i64>,
    /// `taskPushNotificationConfig` (0.3: `pushNotificationConfig`), read by `push::config`.
    pub push: Option<Map<String, Value>>,
}

/// Checks `params.configuration` of `SendMessage`: `returnImmediately`, the history length, and
/// the push-notification config as an object (its fields are checked where it is stored).
/// Accepted output modes that exclude text are refused.
pub(crate) fn send_configuration(params: &Map<String, Value>) -> Result<SendConfiguration, RpcError> {
    let config = match params.get("configuration") {
        None | Some(Value::Null) => return Ok(SendConfiguration::default()),
        Some(Value::Object(c)) => c,
        Some(_) => return Err(RpcError::invalid_params("'configuration' must be an object")),
    };
    only_params(
        config,
        &[
            "acceptedOutputModes",
            "taskPushNotificationConfig",
            "historyLength",
            "returnImmediately",
            "blocking",
            "pushNotificationConfig",
        ],
    )?;
    let push = match config.get("taskPushNotificationConfig").or_else(|| config.get("pushNotificationConfig")) {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => Some(p.clone()),
        Some(_) => {
            return Err(RpcError::invalid_params("'configuration.taskPushNotificationConfig' must be an object"));
        }
    };
    if let Some(modes) = config.get("acceptedOutputModes") {
        let Some(modes) = modes.as_array().filter(|m| m.len() <= 32) else {
            return Err(RpcError::invalid_params(
                "'configuration.acceptedOutputModes' must be an array of at most 32 media types",
            ));
        };
        let accepts_text = modes.is_empty()
            || modes.iter().filter_map(Value::as_str).any(|m| matches!(m, "text/plain" | "text/*" | "*/*" | "text"));
        if !accepts_text {
            return Err(RpcError::new(
                CONTENT_TYPE_NOT_SUPPORTED,
                "the agent answers text/plain, which 'configuration.acceptedOutputModes' does not accept",
            ));
        }
    }
    let immediately = match config.get("returnImmediately") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(RpcError::invalid_params("'configuration.returnImmediately' must be a boolean")),
    };
    // 0.3's `blocking: false` is 1.0's `returnImmediately: true`.
    let immediately = immediately || config.get("blocking") == Some(&Value::Bool(false));
    let history_length = int_param(config, "historyLength", i64::try_from(MAX_HISTORY).unwrap_or(i64::MAX))?;
    Ok(SendConfiguration { immediately, history_length, push })
}

/// A message of the history: the client's own parts, or the agent's text.
pub(crate) fn message_json(
    message_id: &str,
    context_id: &str,
    task_id: &str,
    role: &str,
    parts: Vec<Value>,
    metadata: Option<Value>,
) -> Value {
    let mut m = json!({
        "messageId": message_id,
        "contextId": context_id,
        "taskId": task_id,
        "role": role,
        "parts": parts,
    });
    if let (Some(meta), Some(obj)) = (metadata, m.as_object_mut()) {
        obj.insert("metadata".to_owned(), meta);
    }
    m
}

/// The agent's message with `text`.
pub(crate) fn agent_message(context_id: &str, task_id: &str, text: &str) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    message_json(&id, context_id, task_id, "ROLE_AGENT", vec![json!({"text": text})], None)
}

/// The id of the answer's artifact of a task: stable, so chunks and the stored artifact match.
pub(crate) fn answer_artifact_id(task_id: &str) -> String {
    format!("{task_id}-answer")
}

/// The answer artifact holding `text`, with the turn's extras as metadata when there are any.
pub(crate) fn answer_artifact(task_id: &str, text: &str, extras: Option<Value>) -> Value {
    let mut a = json!({
        "artifactId": answer_artifact_id(task_id),
        "name": "answer",
        "parts": [{"text": text, "mediaType": "text/plain"}],
    });
    if let (Some(extras), Some(obj)) = (extras, a.as_object_mut()) {
        obj.insert("metadata".to_owned(), json!({"getlood": extras}));
    }
    a
}

/// A `TaskStatus`.
pub(crate) fn status_json(state: &str, message: Option<&Value>, timestamp: &str) -> Value {
    let mut s = json!({"state": state, "timestamp": timestamp});
    if let (Some(m), Some(obj)) = (message, s.as_object_mut()) {
        obj.insert("message".to_owned(), m.clone());
    }
    s
}

/// A `statusUpdate` stream event.
pub(crate) fn status_update(task_id: &str, context_id: &str, status: Value) -> Value {
    json!({"statusUpdate": {"taskId": task_id, "contextId": context_id, "status": status}})
}

/// An `artifactUpdate` stream event carrying `text` of the answer artifact.
pub(crate) fn artifact_update(task_id: &str, context_id: &str, text: &str, append: bool, last: bool) -> Value {
    json!({"artifactUpdate": {
        "taskId": task_id,
        "contextId": context_id,
        "artifact": {"artifactId": answer_artifact_id(task_id), "name": "answer", "parts": [{"text": text, "mediaType": "text/plain"}]},
        "append": append,
        "lastChunk": last,
    }})
}

/// The last `n` messages of `history` (`None`: all).
pub(crate) fn trim_history(history: &[Value], n: Option<i64>) -> Vec<Value> {
    let keep = n.map_or(history.len(), |n| usize::try_from(n).unwrap_or(0).min(history.len()));
    history[history.len() - keep..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> i32 {
        parse_request(body.as_bytes()).unwrap_err().1.code
    }

    #[test]
    fn broken_envelopes_get_the_json_rpc_codes() {
        assert_eq!(code("{oops"), PARSE_ERROR);
        assert_eq!(code("[]"), INVALID_REQUEST);
        assert_eq!(code("7"), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","method":"GetTask"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"GetTask"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1.5,"method":"GetTask"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":5}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"GetTask","params":[1]}"#), INVALID_PARAMS);
        let (id, _) = parse_request(br#"{"jsonrpc":"1.0","id":"r-1","method":"x"}"#).unwrap_err();
        assert_eq!(id, json!("r-1"));
    }

    #[test]
    fn messages_are_checked_part_by_part() {
        let ok = json!({"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hi"}, {"data": {"a": 1}}]});
        let msg = incoming_message(Some(&ok)).unwrap();
        assert_eq!(msg.text, "hi\n\n{\"a\":1}");
        let v03 =
            json!({"messageId": "m1", "role": "user", "kind": "message", "parts": [{"kind": "text", "text": "hi"}]});
        assert_eq!(incoming_message(Some(&v03)).unwrap().parts, vec![json!({"text": "hi"})]);
        let file = json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"url": "http://x/y.png"}]});
        assert_eq!(incoming_message(Some(&file)).unwrap_err().code, CONTENT_TYPE_NOT_SUPPORTED);
        let agent = json!({"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": "x"}]});
        assert_eq!(incoming_message(Some(&agent)).unwrap_err().code, INVALID_PARAMS);
        let many = json!({"messageId": "m", "role": "ROLE_USER", "parts": vec![json!({"text": "x"}); MAX_PARTS + 1]});
        assert_eq!(incoming_message(Some(&many)).unwrap_err().code, INVALID_PARAMS);
        let big =
            json!({"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x".repeat(MAX_MESSAGE_BYTES + 1)}]});
        assert_eq!(incoming_message(Some(&big)).unwrap_err().code, INVALID_PARAMS);
        let no_id = json!({"role": "ROLE_USER", "parts": [{"text": "x"}]});
        assert!(incoming_message(Some(&no_id)).unwrap_err().message.contains("messageId"));
        assert_eq!(incoming_message(None).unwrap_err().code, INVALID_PARAMS);
    }

    #[test]
    fn configuration_carries_push_and_refuses_non_text_outputs() {
        let push = json!({"configuration": {"taskPushNotificationConfig": {"url": "https://x"}}});
        let config = send_configuration(push.as_object().unwrap()).unwrap();
        assert_eq!(config.push.unwrap()["url"], "https://x");
        let bad = json!({"configuration": {"taskPushNotificationConfig": "https://x"}});
        assert_eq!(send_configuration(bad.as_object().unwrap()).unwrap_err().code, INVALID_PARAMS);
        let png = json!({"configuration": {"acceptedOutputModes": ["image/png"]}});
        assert_eq!(send_configuration(png.as_object().unwrap()).unwrap_err().code, CONTENT_TYPE_NOT_SUPPORTED);
        let ok = json!({"configuration": {"acceptedOutputModes": ["text/plain"], "returnImmediately": true, "historyLength": 2}});
        let config = send_configuration(ok.as_object().unwrap()).unwrap();
        assert_eq!((config.immediately, config.history_length, config.push), (true, Some(2), None));
    }

    #[test]
    fn errors_carry_the_a2a_reason() {
        let body = RpcError::task_not_found("t1").response(&json!(3));
        assert_eq!(body["error"]["code"], TASK_NOT_FOUND);
        assert_eq!(body["error"]["data"][0]["reason"], "TASK_NOT_FOUND");
        assert_eq!(body["id"], 3);
        assert_eq!(v03_method("tasks/resubscribe"), Some("SubscribeToTask"));
        assert!(state::is_terminal(state::CANCELED) && !state::is_terminal(state::INPUT_REQUIRED));
        assert_eq!(trim_history(&[json!(1), json!(2), json!(3)], Some(2)), vec![json!(2), json!(3)]);
        assert_eq!(trim_history(&[json!(1)], None).len(), 1);
    }
}
