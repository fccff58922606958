//! The JSON-RPC envelope of one `POST /mcp` body, checked before the SDK sees it: the SDK answers
//! a body it cannot read with a plain-text 415, where JSON-RPC and MCP ask for a parse error
//! (-32700) or an invalid request (-32600) the client can read. Only the envelope is checked
//! here; methods and their params are the SDK's (an unknown method is its -32601).

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::model::{ClientJsonRpcMessage, ClientRequest};
use serde_json::{Value, json};

/// JSON-RPC 2.0: the text is not JSON.
pub(crate) const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0: the JSON is not a valid request object.
pub(crate) const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC 2.0: the method's params are invalid.
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// JSON-RPC 2.0: the server failed.
pub(crate) const INTERNAL_ERROR: i32 = -32603;
/// Implementation-defined server error (JSON-RPC reserves -32000..-32099): a limit was reached.
pub(crate) const LIMIT_REACHED: i32 = -32000;
/// Implementation-defined server error: the `Mcp-Session-Id` names no session of the caller.
pub(crate) const SESSION_NOT_FOUND: i32 = -32001;

/// What one accepted body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Message {
    /// A request: it expects an answer.
    Request {
        /// `method`.
        method: String,
        /// `params.name` of a `tools/call` (or `prompts/get`): the tool called.
        name: Option<String>,
    },
    /// A notification, or the client's answer to a server request: no answer expected.
    Other,
}

impl Message {
    /// Whether this is the `initialize` request that opens a session.
    pub(crate) fn is_initialize(&self) -> bool {
        matches!(self, Self::Request { method, .. } if method == "initialize")
    }

    /// The tool of a `tools/call` request.
    pub(crate) fn tool(&self) -> Option<&str> {
        match self {
            Self::Request { method, name } if method == "tools/call" => name.as_deref(),
            _ => None,
        }
    }
}

/// A body refused before the SDK: a JSON-RPC error object with the request's id when it could
/// be read (`null` otherwise), sent with an HTTP status.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub status: StatusCode,
    pub code: i32,
    pub message: String,
    pub id: Value,
    /// The platform's error code (`getlood_common::ErrorCode` spelling), as `error.data.code`.
    pub platform_code: &'static str,
}

impl Refused {
    /// A refusal of a body that is not what JSON-RPC allows.
    fn invalid(code: i32, message: impl Into<String>, id: Value) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code, message: message.into(), id, platform_code: "invalid_argument" }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message, "data": {"code": self.platform_code}},
        });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Checks the envelope of `body` and says what it holds.
pub(crate) fn inspect(body: &[u8]) -> Result<Message, Refused> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refused::invalid(PARSE_ERROR, format!("parse error: the body is not JSON ({e})"), Value::Null))?;
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err(Refused::invalid(
                INVALID_REQUEST,
                "invalid request: JSON-RPC batches are not supported (MCP 2025-06-18 removed them); send one message per request",
                Value::Null,
            ));
        }
        _ => {
            return Err(Refused::invalid(
                INVALID_REQUEST,
                "invalid request: the body must be a JSON-RPC object",
                Value::Null,
            ));
        }
    };
    // The id is echoed only when it is one JSON-RPC allows.
    let id = match obj.get("id") {
        None => None,
        Some(id @ Value::String(_)) => Some(id.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => obj.get("id").cloned(),
        Some(_) => {
            return Err(Refused::invalid(
                INVALID_REQUEST,
                "invalid request: 'id' must be a string or an integer",
                Value::Null,
            ));
        }
    };
    let echo = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Refused::invalid(INVALID_REQUEST, "invalid request: 'jsonrpc' must be \"2.0\"", echo));
    }
    let message = match (obj.get("method"), &id) {
        (Some(Value::String(method)), _) if method.is_empty() || method.len() > 128 => {
            return Err(Refused::invalid(INVALID_REQUEST, "invalid request: 'method' must be 1-128 characters", echo));
        }
        (Some(Value::String(method)), Some(_)) => {
            let name = obj.get("params").and_then(|p| p.get("name")).and_then(Value::as_str).map(str::to_owned);
            Message::Request { method: method.clone(), name }
        }
        (Some(Value::String(_)), None) => Message::Other,
        (Some(_), _) => {
            return Err(Refused::invalid(INVALID_REQUEST, "invalid request: 'method' must be a string", echo));
        }
        // A client's answer to a server request.
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => Message::Other,
        (None, _) => {
            return Err(Refused::invalid(
                INVALID_REQUEST,
                "invalid request: a message needs a 'method' (request or notification) or a 'result' or 'error' (response)",
                echo,
            ));
        }
    };
    if obj.get("params").is_some_and(|p| !p.is_object()) {
        return Err(Refused::invalid(INVALID_PARAMS, "invalid params: 'params' must be an object", echo));
    }
    // The SDK reads known methods into typed params. Params of the wrong shape are either its
    // plain-text 415 or, since an unreadable request falls back to its custom-request variant,
    // a -32601 naming a method that exists: both are the request's -32602 here. Unknown
    // methods pass (the SDK's -32601).
    let invalid_params = |detail: String| {
        let what = match &message {
            Message::Request { method, .. } => format!("invalid params for '{method}'"),
            Message::Other => "invalid message".to_owned(),
        };
        Refused::invalid(INVALID_PARAMS, format!("{what}{detail}"), echo.clone())
    };
    match serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        Err(e) => return Err(invalid_params(format!(": {e}"))),
        Ok(ClientJsonRpcMessage::Request(req)) if matches!(&req.request, ClientRequest::CustomRequest(c) if TYPED_METHODS.contains(&c.method.as_str())) =>
        {
            return Err(invalid_params(String::new()));
        }
        Ok(_) => {}
    }
    Ok(message)
}

/// The client requests the SDK reads into typed params (`rmcp::model::ClientRequest`).
const TYPED_METHODS: &[&str] = &[
    "completion/complete",
    "initialize",
    "logging/setLevel",
    "ping",
    "prompts/get",
    "prompts/list",
    "resources/directory/read",
    "resources/list",
    "resources/read",
    "resources/subscribe",
    "resources/templates/list",
    "resources/unsubscribe",
    "server/discover",
    "skills/get",
    "skills/list",
    "subscriptions/listen",
    "tasks/cancel",
    "tasks/get",
    "tasks/update",
    "tools/call",
    "tools/list",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> i32 {
        inspect(body.as_bytes()).unwrap_err().code
    }

    #[test]
    fn broken_envelopes_get_the_json_rpc_codes() {
        assert_eq!(code("{not json"), PARSE_ERROR);
        assert_eq!(code(""), PARSE_ERROR);
        assert_eq!(code("[]"), INVALID_REQUEST);
        assert_eq!(code("42"), INVALID_REQUEST);
        assert_eq!(code(r#"{"id":1,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":7}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1}"#), INVALID_REQUEST);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#), INVALID_PARAMS);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":5}}"#), INVALID_PARAMS);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":[1]}}"#), INVALID_PARAMS);
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#), INVALID_PARAMS);
    }

    #[test]
    fn the_id_is_echoed_when_it_could_be_read() {
        let refused = inspect(br#"{"jsonrpc":"1.0","id":"r-1","method":"ping"}"#).unwrap_err();
        assert_eq!(refused.id, json!("r-1"));
        assert_eq!(inspect(b"{oops").unwrap_err().id, Value::Null);
    }

    #[test]
    fn requests_notifications_and_unknown_methods_pass() {
        let call =
            inspect(br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_run","arguments":{}}}"#)
                .unwrap();
        assert_eq!(call.tool(), Some("read_run"));
        let init = inspect(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        )
        .unwrap();
        assert!(init.is_initialize());
        assert_eq!(inspect(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap(), Message::Other);
        let unknown = inspect(br#"{"jsonrpc":"2.0","id":9,"method":"no/such"}"#).unwrap();
        assert_eq!(unknown, Message::Request { method: "no/such".into(), name: None });
    }
}
