//! The `mcp_tool` node: one tool call on a remote MCP server over streamable HTTP, through the
//! official SDK's client (rmcp) on the remote nodes' egress-checked HTTP client.
//!
//! The node initializes a session, lists the server's tools (so a tool that does not exist
//! fails with the names the server does offer), calls the tool, and closes the session. A
//! result with `isError` fails the node with the tool's own text; otherwise the text content
//! and the structured content are the output. Every answer is read within the SDK's bounds,
//! set here well below its defaults.

use std::collections::HashMap;
use std::time::Duration;

use rmcp::ServiceExt as _;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ContentBlock, Implementation, PaginatedRequestParams,
};
use rmcp::service::ServiceError;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Map, Value, json};

use super::{MAX_OUTPUT_BYTES, Remote, Scrub, cut, shown_url};
use crate::model::McpNode;
use crate::nodes::NodeError;

/// Largest JSON answer and SSE event read from the server.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest error body kept for a message.
const MAX_ERROR_BYTES: usize = 4 * 1024;
/// Largest rendered `arguments`, JSON text.
pub(crate) const MAX_ARGUMENTS_BYTES: usize = 64 * 1024;
/// Pages of `tools/list` read looking for the tool, and names shown when it is missing.
const MAX_TOOL_PAGES: usize = 10;
const MAX_NAMES_SHOWN: usize = 20;
/// How long closing the session may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the node with its rendered `arguments`.
pub(crate) async fn run(remote: &Remote, node: &McpNode, arguments: Map<String, Value>) -> Result<Value, NodeError> {
    let size = Value::Object(arguments.clone()).to_string().len();
    if size > MAX_ARGUMENTS_BYTES {
        return Err(NodeError::Permanent(format!(
            "the rendered arguments are {size} bytes of JSON, more than {MAX_ARGUMENTS_BYTES}"
        )));
    }
    remote.check_url("'server_url'", &node.server_url)?;
    let scrub = Scrub::new(&node.credentials);
    let url = shown_url(&node.server_url);

    let mut headers = HashMap::new();
    for (name, value) in super::credential_headers(&crate::model::Credentials {
        bearer: None,
        headers: node.credentials.headers.clone(),
    })? {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }
    let mut config = StreamableHttpClientTransportConfig::with_uri(node.server_url.as_str())
        .custom_headers(headers)
        .max_json_response_size(MAX_MESSAGE_BYTES)
        .max_sse_event_size(MAX_MESSAGE_BYTES)
        .max_error_response_size(MAX_ERROR_BYTES);
    if let Some(token) = &node.credentials.bearer {
        config = config.auth_header(token.clone());
    }
    let transport = StreamableHttpClientTransport::with_client(remote.http.clone(), config);
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("getlood-workflow", env!("CARGO_PKG_VERSION")),
    );
    let client = info.serve(transport).await.map_err(|e| {
        let text = scrub.summary(&e.to_string());
        tracing::info!(url = %url, error = %text, "mcp session not opened");
        // Nothing was called yet: the server may be back on the next attempt.
        NodeError::Transient(format!("cannot open an MCP session with {url}: {}", first_line(&text)))
    })?;

    let outcome = call(&client, node, arguments, &scrub, &url).await;
    // Closing ends the session on the server; a server that does not answer is left to expire.
    if tokio::time::timeout(CLOSE_TIMEOUT, client.cancel()).await.is_err() {
        tracing::info!(url = %url, "mcp session close timed out");
    }
    outcome
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// An SDK error of a call after the session opened, as the node's error.
fn service_failed(what: &str, err: ServiceError, scrub: &Scrub) -> NodeError {
    match err {
        ServiceError::McpError(e) => {
            NodeError::Permanent(format!("{what}: {} (code {})", scrub.summary(&e.message), e.code.0))
        }
        ServiceError::Timeout { .. } => NodeError::Permanent(format!("{what}: the server did not answer in time")),
        other => {
            tracing::info!(error = %scrub.summary(&other.to_string()), "mcp call failed");
            NodeError::Permanent(format!("{what}: the connection to the server failed"))
        }
    }
}

async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
    node: &McpNode,
    arguments: Map<String, Value>,
    scrub: &Scrub,
    url: &str,
) -> Result<Value, NodeError> {
    // The tool must exist: a clear refusal naming what the server offers, rather than whatever
    // a server answers for an unknown name.
    let mut names: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut found = false;
    for _ in 0..MAX_TOOL_PAGES {
        let params = cursor.take().map(|c| PaginatedRequestParams::default().with_cursor(Some(c)));
        let page = client
            .list_tools(params)
            .await
            .map_err(|e| service_failed(&format!("listing the tools of {url}"), e, scrub))?;
        found |= page.tools.iter().any(|t| t.name == node.tool.as_str());
        names.extend(page.tools.iter().map(|t| t.name.to_string()));
        cursor = page.next_cursor;
        if found || cursor.is_none() {
            break;
        }
    }
    if !found {
        let mut shown: Vec<String> = names.iter().take(MAX_NAMES_SHOWN).map(|n| scrub.summary(n)).collect();
        if names.len() > MAX_NAMES_SHOWN {
            shown.push(format!("and {} more", names.len() - MAX_NAMES_SHOWN));
        }
        let offers = if shown.is_empty() { "no tools".to_owned() } else { shown.join(", ") };
        return Err(NodeError::Permanent(format!(
            "the MCP server at {url} has no tool '{}' (it offers: {offers})",
            node.tool
        )));
    }

    let what = format!("tool '{}'", node.tool);
    let params = CallToolRequestParams::new(node.tool.clone()).with_arguments(arguments);
    let result = client.call_tool(params).await.map_err(|e| service_failed(&what, e, scrub))?;
    let text: Vec<String> = result.content.iter().filter_map(ContentBlock::as_text).map(|t| t.text.clone()).collect();
    let text = text.join("\n");
    if result.is_error == Some(true) {
        let said = scrub.summary(&text);
        let said = if said.is_empty() { "no message".to_owned() } else { said };
        return Err(NodeError::Permanent(format!("{what} failed: {said}")));
    }
    let (text, mut truncated) = cut(scrub.text(&text), MAX_OUTPUT_BYTES);
    let structured = match result.structured_content.map(|v| scrub.value(v)) {
        Some(v) if v.to_string().len() > MAX_OUTPUT_BYTES => {
            truncated = true;
            Value::Null
        }
        Some(v) => v,
        None => Value::Null,
    };
    let mut out = json!({"text": text, "structured": structured, "tool": node.tool});
    if truncated && let Some(o) = out.as_object_mut() {
        o.insert("truncated".to_owned(), Value::Bool(true));
    }
    Ok(out)
}
