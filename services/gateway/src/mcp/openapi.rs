//! The OpenAPI operations of `/mcp`: described here (the bodies are MCP's JSON-RPC messages,
//! read and written by the SDK), registered in `crate::openapi`.

use serde_json::Value;
use utoipa::ToSchema;

/// One JSON-RPC 2.0 message of MCP: a request (`id` and `method`), a notification (`method`)
/// or the client's answer to a server request (`id` and `result` or `error`).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: the SDK reads and writes the messages")]
pub(crate) struct McpMessage {
    /// Always `2.0`.
    jsonrpc: String,
    /// A string or an integer.
    #[schema(value_type = Option<Value>)]
    id: Option<Value>,
    /// e.g. `initialize`, `tools/list`, `tools/call`, `resources/read`.
    method: Option<String>,
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
}

/// The `error` of a refused MCP message.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: see jsonrpc::Refused")]
pub(crate) struct McpErrorObject {
    /// -32700 parse error, -32600 invalid request, -32601 unknown method, -32602 invalid params,
    /// -32002 unknown resource, -32603 internal, -32000 a limit, -32001 no such session.
    code: i32,
    message: String,
    /// `{"code": <the platform's error code>}`.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// A JSON-RPC error answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: see jsonrpc::Refused")]
pub(crate) struct McpError {
    jsonrpc: String,
    /// The refused request's id, or `null` when it could not be read.
    #[schema(value_type = Option<Value>)]
    id: Option<Value>,
    error: McpErrorObject,
}

/// `POST /mcp` (handler `mcp::post`).
#[utoipa::path(post, path = "/mcp", tag = "mcp",
    description = "One MCP JSON-RPC message over the streamable-HTTP transport (MCP 2025-03-26 to 2026-07-28); `Accept` must list `application/json` and `text/event-stream`. A request is answered as JSON or as an SSE stream (progress notifications, then the response); a notification or response is 202. `initialize` opens a session (`Mcp-Session-Id`, bound to the caller); the 2026-07-28 revision needs none. Every tool and resource needs its REST route's permission. See docs/api/mcp.md.",
    request_body = McpMessage,
    params(("mcp-session-id" = Option<String>, Header, description = "The caller's session, from its `initialize` answer")),
    responses(
        (status = 200, description = "The answer: a JSON-RPC response, or an SSE stream of messages ending with it",
            content((McpMessage = "application/json"), (String = "text/event-stream"))),
        (status = 202, description = "A notification or response was accepted"),
        (status = 400, description = "Not a JSON-RPC message (-32700, -32600, -32602) or a transport rule broken", body = McpError),
        (status = 404, description = "No such session of the caller (-32001), or an unknown method (-32601)", body = McpError),
        (status = 406, description = "`Accept` does not list both media types", body = McpError),
        (status = 413, description = "The message is too large", body = McpError),
        (status = 415, description = "`Content-Type` is not `application/json`", body = McpError),
        (status = 429, description = "The caller holds too many sessions (-32000); `Retry-After` says when to retry", body = McpError)))]
#[allow(dead_code, reason = "the operation's description; the handler is mcp::post")]
pub(crate) fn mcp_post() {}

/// `GET /mcp` (handler `mcp::get`).
#[utoipa::path(get, path = "/mcp", tag = "mcp",
    description = "The server-to-client SSE stream of a session (`Mcp-Session-Id`), open until the session or the token ends.",
    params(("mcp-session-id" = Option<String>, Header, description = "The caller's session")),
    responses(
        (status = 200, description = "The session's stream", content((String = "text/event-stream"))),
        (status = 400, description = "No session id", body = McpError),
        (status = 404, description = "No such session of the caller", body = McpError),
        (status = 405, description = "No stream for this protocol revision", body = McpError),
        (status = 406, description = "`Accept` does not list `text/event-stream`", body = McpError)))]
#[allow(dead_code, reason = "the operation's description; the handler is mcp::get")]
pub(crate) fn mcp_get() {}

/// `DELETE /mcp` (handler `mcp::delete`).
#[utoipa::path(delete, path = "/mcp", tag = "mcp",
    description = "Ends the caller's session (`Mcp-Session-Id`).",
    params(("mcp-session-id" = Option<String>, Header, description = "The caller's session")),
    responses(
        (status = 202, description = "The session is closed"),
        (status = 400, description = "No session id", body = McpError),
        (status = 404, description = "No such session of the caller", body = McpError),
        (status = 405, description = "Sessions do not exist in this protocol revision", body = McpError)))]
#[allow(dead_code, reason = "the operation's description; the handler is mcp::delete")]
pub(crate) fn mcp_delete() {}
