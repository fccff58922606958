//! The OpenAPI operations of the A2A server: the JSON-RPC bodies are A2A's (`a2a.proto` in
//! protobuf JSON), described here as schemas, registered in `crate::openapi`.

use serde_json::Value;
use utoipa::ToSchema;

/// An A2A agent card (protocol 1.0), as `GET /a2a/{agent}/.well-known/agent-card.json` answers.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: the card is built as JSON (a2a::card)")]
#[schema(as = A2aAgentCard, rename_all = "camelCase")]
pub(crate) struct AgentCard {
    /// The agent's name.
    name: String,
    description: String,
    /// `[{url, protocolBinding: "JSONRPC", protocolVersion: "1.0"}]`: where to POST requests.
    #[schema(value_type = Vec<Object>)]
    supported_interfaces: Vec<Value>,
    #[schema(value_type = Object)]
    provider: Value,
    /// The agent's registry version.
    version: String,
    documentation_url: String,
    /// `{streaming: true, pushNotifications: true, extendedAgentCard: false}`.
    #[schema(value_type = Object)]
    capabilities: Value,
    /// `{"bearer": {"httpAuthSecurityScheme": {"scheme": "Bearer", "bearerFormat": "JWT"}}}`.
    #[schema(value_type = Object)]
    security_schemes: Value,
    #[schema(value_type = Vec<Object>)]
    security_requirements: Vec<Value>,
    default_input_modes: Vec<String>,
    default_output_modes: Vec<String>,
    /// The agent's skills from the registry (`{id, name, description, tags}`).
    #[schema(value_type = Vec<Object>)]
    skills: Vec<Value>,
}

/// One A2A JSON-RPC 2.0 request: `SendMessage`, `SendStreamingMessage`, `GetTask`, `ListTasks`,
/// `CancelTask`, `SubscribeToTask`, `CreateTaskPushNotificationConfig`,
/// `GetTaskPushNotificationConfig`, `ListTaskPushNotificationConfigs`,
/// `DeleteTaskPushNotificationConfig`.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: read by a2a::protocol::parse_request")]
pub(crate) struct A2aRequest {
    /// Always `2.0`.
    jsonrpc: String,
    /// A string or an integer, echoed in the answer.
    #[schema(value_type = Value)]
    id: Value,
    method: String,
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// A JSON-RPC answer: `result` (a `Task`, `{task}`, a `ListTasksResponse`, a
/// `TaskPushNotificationConfig`, `{configs, nextPageToken}`) or `error` (`{code, message,
/// data}`: -32700, -32600, -32601, -32602, -32603, and A2A's -32001 task (or push config) not
/// found, -32002 not cancelable, -32004 unsupported operation, -32005 content type not
/// supported, -32007 no extended card, -32009 version).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: see a2a::protocol")]
pub(crate) struct A2aResponse {
    jsonrpc: String,
    #[schema(value_type = Value)]
    id: Value,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(value_type = Option<Object>)]
    error: Option<Value>,
}

/// `POST /a2a/{agent}` (handler `a2a::rpc`).
#[utoipa::path(post, path = "/a2a/{agent}", tag = "a2a",
    params(("agent" = String, Path, description = "An agent of the caller's tenant")),
    description = "One A2A 1.0 JSON-RPC request to the agent. `SendMessage` runs a chat turn with the agent (blocking unless `configuration.returnImmediately`) and answers `{task}`; `SendStreamingMessage` and `SubscribeToTask` answer Server-Sent Events, each `data:` a JSON-RPC response whose result is a `StreamResponse` (`task`, then `statusUpdate` / `artifactUpdate`, ending with a terminal or input-required status). The push-notification config methods manage a task's webhooks, which get the task (`{task}`) at each status change. Errors are JSON-RPC error objects in a 200. See docs/api/a2a.md.",
    request_body = A2aRequest,
    responses(
        (status = 200, description = "The JSON-RPC answer, or its SSE stream",
            content((A2aResponse = "application/json"), (String = "text/event-stream"))),
        (status = 404, description = "No such agent in the caller's tenant", body = getlood_common::ErrorBody),
        (status = 413, description = "The request is too large", body = A2aResponse)))]
#[allow(dead_code, reason = "the operation's description; the handler is a2a::rpc")]
pub(crate) fn a2a_rpc() {}
