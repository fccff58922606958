//! What the MCP server offers a tenant: one `ask_<agent>` tool per agent of the tenant,
//! `start_workflow`, `read_run` and `search_knowledge_base`, and its workflows and knowledge
//! bases as resources. Every tool and resource goes through the code path of its REST route
//! (the chat pipeline's `chat::start`, `workflow_api::execute`, `kb_api::search_knowledge_base`,
//! ...), with the caller's own token, that route's permission and its rate-limit class.

use std::sync::Arc;

use futures::StreamExt as _;
use getlood_auth::Permission;
use getlood_common::{ApiError, ErrorCode};
use getlood_proto::agent_registry::v1::{GetAgentRequest, ListAgentsRequest, get_agent_request};
use getlood_proto::common::v1::{ChatMessage, PageRequest, Role};
use getlood_proto::workflow::v1::{GetWorkflowRequest, ListWorkflowsRequest};
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode as McpCode,
    Implementation, JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, Resource, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::chat::{self, ChatEvent};
use crate::kb_api;
use crate::openai::{ChatInput, ModelChoice};
use crate::rate_limit::{RouteClass, Verdict, class_verdict};
use crate::workflow_api::{self, ExecuteBody};

/// Prefix of the tool that asks one agent: `ask_<agent name>`.
pub(crate) const ASK_PREFIX: &str = "ask_";
/// The tool that starts a run of a workflow.
pub(crate) const START_WORKFLOW: &str = "start_workflow";
/// The tool that reads a run with its node timeline.
pub(crate) const READ_RUN: &str = "read_run";
/// The tool that searches one of the tenant's knowledge bases.
pub(crate) const SEARCH_KNOWLEDGE_BASE: &str = "search_knowledge_base";
/// URI prefix of a workflow resource: `getlood://workflows/<id>`.
const WORKFLOW_URI: &str = "getlood://workflows/";
/// URI prefix of a knowledge-base resource: `getlood://knowledge-bases/<name>`.
const KNOWLEDGE_BASE_URI: &str = "getlood://knowledge-bases/";
/// Longest search query, in bytes (the knowledge-base service refuses more than 4000
/// characters; this bounds the argument before it is sent).
const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Most hits a search may ask for (REST's `top_k` bound).
const MAX_TOP_K: u64 = 50;
/// Longest question to an agent, in bytes (a chat message of the REST route is bounded by the
/// body limit; a tool argument gets its own, smaller bound).
const MAX_QUESTION_BYTES: usize = 32 * 1024;
/// Longest id argument (workflow, run, conversation), in bytes.
const MAX_ID_BYTES: usize = 128;
/// Longest serialized workflow `input`, in bytes.
const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Agents listed as tools per `tools/list` page (the registry's page; the cursor pages on).
const AGENTS_PER_PAGE: i32 = 100;
/// Workflows listed as resources per `resources/list` page.
const WORKFLOWS_PER_PAGE: i32 = 100;

/// A tool of the server, as named in `tools/call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToolKind {
    /// `ask_<agent>`.
    Ask(String),
    /// `start_workflow`.
    StartWorkflow,
    /// `read_run`.
    ReadRun,
    /// `search_knowledge_base`.
    SearchKnowledgeBase,
}

impl ToolKind {
    /// The tool named `name`, if its name is one of the server's shapes (an `ask_` tool of an
    /// agent that does not exist is still an `Ask`: the call answers not-found).
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            START_WORKFLOW => Some(Self::StartWorkflow),
            READ_RUN => Some(Self::ReadRun),
            SEARCH_KNOWLEDGE_BASE => Some(Self::SearchKnowledgeBase),
            _ => name.strip_prefix(ASK_PREFIX).filter(|agent| agent_name_ok(agent)).map(|a| Self::Ask(a.to_owned())),
        }
    }

    /// The permission the tool's REST route needs.
    pub(crate) fn permission(&self) -> Permission {
        match self {
            Self::Ask(_) => Permission::Chat,
            Self::StartWorkflow => Permission::RunsExecute,
            Self::ReadRun => Permission::RunsRead,
            Self::SearchKnowledgeBase => Permission::KnowledgeBasesRead,
        }
    }

    /// Whether the tool changes something (a chat turn is remembered, a run is started).
    pub(crate) fn writes(&self) -> bool {
        matches!(self, Self::Ask(_) | Self::StartWorkflow)
    }

    /// The audit log's action of a call: `mcp.ask_agent`, `mcp.start_workflow`, `mcp.read_run`,
    /// `mcp.search_knowledge_base`.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Self::Ask(_) => "mcp.ask_agent",
            Self::StartWorkflow => "mcp.start_workflow",
            Self::ReadRun => "mcp.read_run",
            Self::SearchKnowledgeBase => "mcp.search_knowledge_base",
        }
    }
}

/// The registry's agent name rule (`[a-z][a-z0-9_-]{0,62}`), so every agent is a valid tool name.
fn agent_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The MCP handler of one session (or one stateless request): the gateway's state; the caller
/// is read from each request's own HTTP parts, never kept from the session's first request.
#[derive(Clone)]
pub(crate) struct Tools {
    state: AppState,
}

impl Tools {
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The caller of the HTTP request `ctx` belongs to (the SDK puts its parts in the context).
fn caller(ctx: &RequestContext<RoleServer>) -> Result<Caller, ApiError> {
    match ctx.extensions.get::<http::request::Parts>() {
        Some(parts) => Caller::from_parts(parts),
        None => Err(ApiError::new(ErrorCode::Unauthenticated, "authentication is required")),
    }
}

/// A protocol error (resources, listings) from an API error: the JSON-RPC code closest to the
/// platform's, which rides along as `error.data.code`.
fn protocol_error(err: &ApiError) -> ErrorData {
    let code = match err.code {
        ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge => McpCode::INVALID_PARAMS,
        ErrorCode::NotFound => McpCode::RESOURCE_NOT_FOUND,
        ErrorCode::Unauthenticated | ErrorCode::PermissionDenied => McpCode::INVALID_REQUEST,
        _ => McpCode::INTERNAL_ERROR,
    };
    ErrorData::new(code, err.message.clone(), Some(json!({"code": err.code.as_str()})))
}

/// A failed tool call as MCP wants it: a result with `isError`, its text the error, its
/// structured content `{"error": {"code", "message"}}`.
fn tool_error(err: &ApiError) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("{}: {}", err.code.as_str(), err.message))]);
    result.structured_content = Some(json!({"error": {"code": err.code.as_str(), "message": err.message}}));
    result
}

/// A successful tool call: `value` as structured content and as its JSON text.
fn tool_ok(value: Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// The caller's permission, or the same refusal REST gives.
fn require(caller: &Caller, permission: Permission) -> Result<(), ApiError> {
    getlood_auth::require(&caller.principal().roles, permission)
}

/// One request of `class` from the caller's budget, as the REST route of the same operation.
async fn spend(state: &AppState, caller: &Caller, class: RouteClass) -> Result<(), ApiError> {
    match class_verdict(&state.limiter, class, caller.principal()).await {
        Verdict::Proceed(_) => Ok(()),
        Verdict::Refuse(err, _) => Err(err),
    }
}

/// A string argument of at most `max` bytes; `None` when absent.
fn string_arg(args: &JsonObject, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => {
            Err(ApiError::invalid_argument(format!("'{name}' is longer than {max} bytes")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_argument(format!("'{name}' must be a string"))),
    }
}

/// A required, non-empty string argument.
fn required_arg(args: &JsonObject, name: &str, max: usize) -> Result<String, ApiError> {
    string_arg(args, name, max)?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::invalid_argument(format!("'{name}' is required")))
}

/// Refuses arguments the tool does not take, so a typo is an error rather than ignored.
fn only_args(args: &JsonObject, known: &[&str]) -> Result<(), ApiError> {
    match args.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::invalid_argument(format!(
            "unknown argument '{}': this tool takes {}",
            unknown.chars().take(64).collect::<String>(),
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(obj) => Arc::new(obj),
        _ => Arc::new(JsonObject::new()),
    }
}

fn ask_tool(name: &str, description: &str) -> Tool {
    let about = if description.trim().is_empty() { String::new() } else { format!(": {}", description.trim()) };
    Tool::new(
        format!("{ASK_PREFIX}{name}"),
        format!(
            "Ask the agent '{name}'{about}. Progress notifications carry the answer's text as it is written; the result is the whole answer."
        ),
        schema(json!({
            "type": "object",
            "properties": {
                "question": {"type": "string", "minLength": 1, "maxLength": MAX_QUESTION_BYTES, "description": "What to ask the agent"},
                "conversation_id": {"type": "string", "maxLength": MAX_ID_BYTES, "description": "A conversation to continue (from an earlier answer)"}
            },
            "required": ["question"],
            "additionalProperties": false
        })),
    )
    .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).open_world(true))
}

fn fixed_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            START_WORKFLOW,
            "Start a run of one of the tenant's workflows; the result is the run (pending or running). Read it on with read_run.",
            schema(json!({
                "type": "object",
                "properties": {
                    "workflow_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_BYTES},
                    "input": {"type": "object", "description": "The run's input"},
                    "version": {"type": "integer", "minimum": 0, "description": "0 or absent: the latest version"}
                },
                "required": ["workflow_id"],
                "additionalProperties": false
            })),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).open_world(false)),
        Tool::new(
            READ_RUN,
            "Read a workflow run: its status, input, result and node timeline (and its logs with include_logs).",
            schema(json!({
                "type": "object",
                "properties": {
                    "run_id": {"type": "string", "minLength": 1, "maxLength": MAX_ID_BYTES},
                    "include_logs": {"type": "boolean", "default": false}
                },
                "required": ["run_id"],
                "additionalProperties": false
            })),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
        Tool::new(
            SEARCH_KNOWLEDGE_BASE,
            "Semantic search in one of the tenant's knowledge bases (see the getlood://knowledge-bases/ resources): the most relevant chunks, best first, with their document id, metadata and relevance.",
            schema(json!({
                "type": "object",
                "properties": {
                    "knowledge_base": {"type": "string", "minLength": 1, "maxLength": MAX_ID_BYTES, "description": "The knowledge base's name"},
                    "query": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "What to look for"},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K, "default": 5, "description": "Hits wanted"}
                },
                "required": ["knowledge_base", "query"],
                "additionalProperties": false
            })),
        )
        .with_annotations(ToolAnnotations::new().read_only(true).open_world(false)),
    ]
}

/// The registry page a `cursor` continues (the registry's own page token).
fn page(cursor: Option<&str>, size: i32) -> Option<PageRequest> {
    Some(PageRequest { page_size: size, page_token: cursor.unwrap_or_default().to_owned() })
}

impl Tools {
    async fn list_tools_for(&self, caller: &Caller, cursor: Option<String>) -> Result<ListToolsResult, ApiError> {
        let mut tools = if cursor.is_none() { fixed_tools() } else { Vec::new() };
        let mut next = None;
        // A caller who may not read agents is shown no agent tools (the call would be refused).
        if require(caller, Permission::AgentsRead).is_ok() {
            let req =
                ListAgentsRequest { page: page(cursor.as_deref(), AGENTS_PER_PAGE), ..ListAgentsRequest::default() };
            let resp =
                unary("agent-registry", self.state.upstreams.agent_registry().list_agents(caller.request(req))).await?;
            tools.extend(
                resp.agents.iter().filter(|a| agent_name_ok(&a.name)).map(|a| ask_tool(&a.name, &a.description)),
            );
            next = resp.page.map(|p| p.next_page_token).filter(|t| !t.is_empty());
        }
        let mut result = ListToolsResult::with_all_items(tools).with_cache_scope(CacheScope::Private);
        result.next_cursor = next;
        Ok(result)
    }

    async fn call(
        &self,
        caller: &Caller,
        request: CallToolRequestParams,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let Some(kind) = ToolKind::parse(&request.name) else {
            // MCP: an unknown tool is a protocol error (-32602), not a tool result.
            let name: String = request.name.chars().take(128).collect();
            return Err(ErrorData::invalid_params(format!("unknown tool '{name}': see tools/list"), None));
        };
        let args = request.arguments.unwrap_or_default();
        let outcome = async {
            require(caller, kind.permission())?;
            match kind {
                ToolKind::Ask(agent) => self.ask(caller, agent, &args, ctx).await,
                ToolKind::StartWorkflow => self.start_workflow(caller, &args).await,
                ToolKind::ReadRun => self.read_run(caller, &args).await,
                ToolKind::SearchKnowledgeBase => self.search_knowledge_base(caller, &args).await,
            }
        }
        .await;
        Ok(outcome.unwrap_or_else(|err| {
            tracing::info!(tool = %request.name, code = err.code.as_str(), "mcp tool call failed");
            tool_error(&err)
        }))
    }

    /// `ask_<agent>`: one chat turn with that agent through the chat pipeline, each delta and
    /// heartbeat a progress notification when the client asked for them.
    async fn ask(
        &self,
        caller: &Caller,
        agent: String,
        args: &JsonObject,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ApiError> {
        only_args(args, &["question", "conversation_id"])?;
        let question = required_arg(args, "question", MAX_QUESTION_BYTES)?;
        let conversation_id = string_arg(args, "conversation_id", MAX_ID_BYTES)?.unwrap_or_default();
        // The tool exists only for the caller's tenant: another tenant's agent is not found.
        let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Name(agent.clone())) };
        match self.state.upstreams.agent_registry().get_agent(caller.request(req)).await {
            Ok(_) => {}
            Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                return Err(ApiError::not_found(format!("no agent '{agent}' in this tenant: see tools/list")));
            }
            Err(status) => return Err(chat::upstream_error("agent-registry", status)),
        }
        spend(&self.state, caller, RouteClass::Chat).await?;
        let _turn = self.state.limiter.admit_chat(&caller.principal().tenant)?;
        let input = ChatInput {
            model_label: agent.clone(),
            model: ModelChoice::Agent(agent.clone()),
            messages: vec![ChatMessage { role: Role::User as i32, content: question, name: String::new() }],
            stream: true,
            include_usage: false,
            conversation_id,
            desktop_id: String::new(),
            client_request_id: String::new(),
        };
        crate::openai::check_messages(&input.messages)?;
        let mut events = chat::start(&self.state, caller.principal(), caller.request_id(), &input).await?;
        let progress_token = ctx.meta.get_progress_token();
        let mut answer = String::new();
        let mut step = 0.0_f64;
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                // The client cancelled the request: dropping the stream ends the pipeline call.
                () = ctx.ct.cancelled() => {
                    return Err(ApiError::new(ErrorCode::DeadlineExceeded, "the request was cancelled"));
                }
            };
            let note = match event {
                Some(ChatEvent::Delta(text)) => {
                    answer.push_str(&text);
                    text
                }
                Some(ChatEvent::Heartbeat) => String::new(),
                Some(ChatEvent::Done(finished)) => {
                    let extras = crate::openai::extras_json(&finished.turn, finished.clarification.as_ref());
                    let mut result = tool_ok(json!({
                        "agent": agent,
                        "answer": answer,
                        "conversation_id": finished.turn.conversation_id,
                        "turn_id": finished.turn.id,
                        "getlood": crate::proto_json::to_json(&extras),
                    }));
                    // The text content is the answer itself, for clients that show text only.
                    result.content = vec![ContentBlock::text(answer)];
                    return Ok(result);
                }
                Some(ChatEvent::Failed(err)) => return Err(err),
                None => return Err(ApiError::unavailable("the chat pipeline ended the stream without a result")),
            };
            if let Some(token) = &progress_token {
                // Progress must increase with every notification: it counts the events.
                step += 1.0;
                let message = if note.is_empty() { "working".to_owned() } else { note };
                let param = ProgressNotificationParam::new(token.clone(), step).with_message(message);
                if let Err(err) = ctx.peer.notify_progress(param).await {
                    tracing::debug!(error = %err, "mcp progress notification not delivered");
                }
            }
        }
    }

    /// `start_workflow`: `workflow_api::execute`, as `POST /api/v1/workflows/{id}/execute`.
    async fn start_workflow(&self, caller: &Caller, args: &JsonObject) -> Result<CallToolResult, ApiError> {
        only_args(args, &["workflow_id", "input", "version"])?;
        let id = required_arg(args, "workflow_id", MAX_ID_BYTES)?;
        let input = match args.get("input") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => {
                if v.to_string().len() > MAX_INPUT_BYTES {
                    return Err(ApiError::invalid_argument(format!("'input' is larger than {MAX_INPUT_BYTES} bytes")));
                }
                Some(v.clone())
            }
            Some(_) => return Err(ApiError::invalid_argument("'input' must be an object")),
        };
        let version = match args.get("version") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .filter(|v| *v >= 0)
                .ok_or_else(|| ApiError::invalid_argument("'version' must be a non-negative integer"))?,
        };
        spend(&self.state, caller, RouteClass::WorkflowExecute).await?;
        let body = ExecuteBody { input, version, ..ExecuteBody::default() };
        let run = workflow_api::execute(&self.state, caller, id, body, String::new()).await?;
        Ok(tool_ok(crate::proto_json::to_json(&workflow_api::run_json(&run))))
    }

    /// `read_run`: `workflow_api::fetch_run`, as `GET /api/v1/workflows/runs/{run_id}`.
    async fn read_run(&self, caller: &Caller, args: &JsonObject) -> Result<CallToolResult, ApiError> {
        only_args(args, &["run_id", "include_logs"])?;
        let run_id = required_arg(args, "run_id", MAX_ID_BYTES)?;
        let include_logs = match args.get("include_logs") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid_argument("'include_logs' must be a boolean")),
        };
        let (run, logs) = workflow_api::fetch_run(&self.state, caller, run_id, include_logs).await?;
        let logs = include_logs.then_some(logs.as_slice());
        Ok(tool_ok(crate::proto_json::to_json(&workflow_api::typed_run(&run, logs))))
    }

    /// `search_knowledge_base`: `kb_api::search_knowledge_base`, as
    /// `GET /api/v1/knowledge-bases/{name}/search` (its `search` rate-limit class).
    async fn search_knowledge_base(&self, caller: &Caller, args: &JsonObject) -> Result<CallToolResult, ApiError> {
        only_args(args, &["knowledge_base", "query", "top_k"])?;
        let name = required_arg(args, "knowledge_base", MAX_ID_BYTES)?;
        let query = required_arg(args, "query", MAX_QUERY_BYTES)?;
        let top_k = match args.get("top_k") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64().filter(|k| (1..=MAX_TOP_K).contains(k)).and_then(|k| u32::try_from(k).ok()).ok_or_else(
                    || ApiError::invalid_argument(format!("'top_k' must be an integer from 1 to {MAX_TOP_K}")),
                )?,
            ),
        };
        spend(&self.state, caller, RouteClass::Search).await?;
        let hits = kb_api::search_knowledge_base(&self.state, caller, name.clone(), query, top_k).await?;
        let mut found = serde_json::to_value(kb_api::hits_json(hits)).map_err(|e| ApiError::internal(&e))?;
        if let Some(obj) = found.as_object_mut() {
            obj.insert("knowledge_base".to_owned(), Value::String(name));
        }
        Ok(tool_ok(found))
    }

    async fn list_resources_for(
        &self,
        caller: &Caller,
        cursor: Option<String>,
    ) -> Result<ListResourcesResult, ApiError> {
        let mut resources = Vec::new();
        let mut next = None;
        // The knowledge bases (a tenant has few, unpaged) come with the first page.
        if cursor.is_none() && require(caller, Permission::KnowledgeBasesRead).is_ok() {
            let kbs = kb_api::list_knowledge_bases(&self.state, caller).await?;
            resources.extend(kbs.into_iter().map(|kb| {
                let columns = if kb.metadata_columns.is_empty() {
                    "no metadata columns".to_owned()
                } else {
                    format!("metadata columns {}", kb.metadata_columns.join(", "))
                };
                Resource::new(format!("{KNOWLEDGE_BASE_URI}{}", kb.name), kb.name.clone())
                    .with_title(format!("Knowledge base {}", kb.name))
                    .with_description(format!(
                        "Embedded with {}, {columns}; search it with {SEARCH_KNOWLEDGE_BASE}",
                        kb.embedding_model
                    ))
                    .with_mime_type("application/json")
            }));
        }
        if require(caller, Permission::WorkflowsRead).is_ok() {
            let req = ListWorkflowsRequest { page: page(cursor.as_deref(), WORKFLOWS_PER_PAGE), omit_graph: true };
            let resp = unary("workflow", self.state.upstreams.workflow().list_workflows(caller.request(req))).await?;
            resources.extend(resp.workflows.iter().map(|w| {
                let mut resource = Resource::new(format!("{WORKFLOW_URI}{}", w.id), w.name.clone())
                    .with_title(format!("Workflow {}", w.name))
                    .with_mime_type("application/json");
                if !w.description.is_empty() {
                    resource = resource.with_description(w.description.clone());
                }
                resource
            }));
            next = resp.page.map(|p| p.next_page_token).filter(|t| !t.is_empty());
        }
        let mut result = ListResourcesResult::with_all_items(resources).with_cache_scope(CacheScope::Private);
        result.next_cursor = next;
        Ok(result)
    }

    async fn read(&self, caller: &Caller, uri: &str) -> Result<ReadResourceResult, ApiError> {
        if let Some(name) = uri.strip_prefix(KNOWLEDGE_BASE_URI) {
            return self.read_knowledge_base(caller, uri, name).await;
        }
        let Some(id) = uri.strip_prefix(WORKFLOW_URI) else {
            let shown: String = uri.chars().take(128).collect();
            return Err(ApiError::not_found(format!(
                "no resource '{shown}': resources are {WORKFLOW_URI}<id> and {KNOWLEDGE_BASE_URI}<name>"
            )));
        };
        if id.is_empty() || id.len() > MAX_ID_BYTES || id.contains('/') {
            return Err(ApiError::not_found("no such workflow"));
        }
        require(caller, Permission::WorkflowsRead)?;
        let req = GetWorkflowRequest { workflow_id: id.to_owned(), version: 0 };
        let resp = unary("workflow", self.state.upstreams.workflow().get_workflow(caller.request(req))).await?;
        let workflow = resp.workflow.unwrap_or_default();
        let text = crate::proto_json::to_json(&workflow_api::workflow_json(&workflow)).to_string();
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")])
            .with_cache_scope(CacheScope::Private))
    }
}

impl Tools {
    /// A knowledge base's metadata (REST's `GET /api/v1/knowledge-bases/{name}`), as JSON.
    async fn read_knowledge_base(
        &self,
        caller: &Caller,
        uri: &str,
        name: &str,
    ) -> Result<ReadResourceResult, ApiError> {
        if name.is_empty() || name.len() > MAX_ID_BYTES || name.contains('/') {
            return Err(ApiError::not_found("no such knowledge base"));
        }
        require(caller, Permission::KnowledgeBasesRead)?;
        let kb = kb_api::get_knowledge_base(&self.state, caller, name.to_owned()).await?;
        let text = serde_json::to_string(&kb_api::kb_json(kb)).map_err(|e| ApiError::internal(&e))?;
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type("application/json")])
            .with_cache_scope(CacheScope::Private))
    }
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_resources().build())
            .with_server_info(
                Implementation::new("getlood-gateway", env!("CARGO_PKG_VERSION"))
                    .with_title("GETLOOD")
                    .with_description("The GETLOOD platform's agents, workflows and knowledge bases, for one tenant"),
            )
            .with_instructions(
                "Tools: ask_<agent> asks one of your tenant's agents (progress notifications carry the answer as it \
                 is written), start_workflow starts a run, read_run reads it, search_knowledge_base searches a \
                 knowledge base. Resources: your workflows and knowledge bases, as JSON.",
            )
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&ctx).map_err(|e| protocol_error(&e))?;
        let cursor = request.and_then(|r| r.cursor);
        self.list_tools_for(&caller, cursor).await.map_err(|e| protocol_error(&e))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&ctx).map_err(|e| protocol_error(&e))?;
        self.call(&caller, request, &ctx).await.map(CallToolResponse::from)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let caller = caller(&ctx).map_err(|e| protocol_error(&e))?;
        let cursor = request.and_then(|r| r.cursor);
        self.list_resources_for(&caller, cursor).await.map_err(|e| protocol_error(&e))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let workflow = ResourceTemplate::new(format!("{WORKFLOW_URI}{{id}}"), "workflow")
            .with_description("One of your workflows (its latest version), as JSON")
            .with_mime_type("application/json");
        let knowledge_base = ResourceTemplate::new(format!("{KNOWLEDGE_BASE_URI}{{name}}"), "knowledge_base")
            .with_description("One of your knowledge bases: its name, embedding model and metadata columns, as JSON")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![workflow, knowledge_base]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let caller = caller(&ctx).map_err(|e| protocol_error(&e))?;
        self.read(&caller, &request.uri).await.map(ReadResourceResponse::from).map_err(|e| protocol_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_map_to_their_kind_and_permission() {
        assert_eq!(ToolKind::parse("ask_sales-bot"), Some(ToolKind::Ask("sales-bot".into())));
        assert_eq!(ToolKind::parse("start_workflow"), Some(ToolKind::StartWorkflow));
        assert_eq!(ToolKind::parse("read_run").map(|k| k.permission()), Some(Permission::RunsRead));
        assert_eq!(ToolKind::parse("ask_Bad"), None);
        assert_eq!(ToolKind::parse("ask_"), None);
        assert_eq!(ToolKind::parse("rm_rf"), None);
        assert_eq!(ToolKind::Ask("a".into()).permission(), Permission::Chat);
        assert!(ToolKind::StartWorkflow.writes() && !ToolKind::ReadRun.writes());
        let search = ToolKind::parse("search_knowledge_base").unwrap();
        assert_eq!((search.permission(), search.writes()), (Permission::KnowledgeBasesRead, false));
        assert_eq!(search.action(), "mcp.search_knowledge_base");
    }

    #[test]
    fn arguments_are_bounded_and_checked() {
        let args: JsonObject = serde_json::from_value(json!({"question": "x".repeat(10), "n": 1})).unwrap();
        assert_eq!(required_arg(&args, "question", 10).unwrap().len(), 10);
        assert_eq!(required_arg(&args, "question", 9).unwrap_err().code, ErrorCode::InvalidArgument);
        assert!(required_arg(&args, "missing", 9).is_err());
        assert!(string_arg(&args, "n", 9).is_err());
        assert!(only_args(&args, &["question"]).unwrap_err().message.contains("unknown argument 'n'"));
    }

    #[test]
    fn tool_errors_carry_the_platform_code() {
        let result = tool_error(&ApiError::not_found("no such run"));
        assert_eq!(result.is_error, Some(true));
        assert_eq!(result.structured_content.unwrap()["error"]["code"], "not_found");
        assert_eq!(protocol_error(&ApiError::not_found("x")).code, McpCode::RESOURCE_NOT_FOUND);
    }
}
