//! The GraphQL object types: the platform's protobuf messages as GraphQL sees them. Enums keep
//! the REST spelling (lowercase proto names without prefix, e.g. `waiting_approval`), times are
//! RFC 3339 strings, and free-form data (graphs, inputs, outputs, props) is the `JSON` scalar in
//! the shape REST returns. API keys never appear: a model says only whether it has one.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, OutputType, SimpleObject};
use getlood_auth::Permission;
use getlood_proto::agent_registry::v1 as registry;
use getlood_proto::common::v1::PageResponse;
use getlood_proto::desktop_state::v1 as desktop;
use getlood_proto::workflow::v1 as wf;
use serde_json::Value;

use super::guard::{Need, caller, gql_error, state};
use super::loader::{RunLoader, RunLogs};
use crate::proto_json::{enum_name, opt_struct_to_json, proto_struct_to_json};
use crate::workflow_api;

/// Most items one list field may ask for (`pageSize`), so complexity can be computed up front.
pub(crate) const MAX_PAGE_SIZE: i32 = 100;
/// The page size complexity assumes when a list field names none (the services' default).
const DEFAULT_PAGE_COST: usize = 50;
/// Extra complexity of a field that costs one upstream call per parent (a run's nodes or logs).
pub(crate) const UPSTREAM_FIELD_COST: usize = 5;

/// Complexity of a list field: each of the page's items costs what its selection costs.
pub(crate) fn page_cost(page_size: Option<i32>, child_complexity: usize) -> usize {
    let items = page_size.map_or(DEFAULT_PAGE_COST, |n| usize::try_from(n.clamp(1, MAX_PAGE_SIZE)).unwrap_or(1));
    items.saturating_mul(child_complexity).saturating_add(1)
}

/// The proto paging request of a list field; a size outside 1..=[`MAX_PAGE_SIZE`] is refused.
pub(crate) fn page(
    page_size: Option<i32>,
    page_token: Option<String>,
) -> async_graphql::Result<Option<getlood_proto::common::v1::PageRequest>> {
    let size = page_size.unwrap_or(0);
    if page_size.is_some() && !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(gql_error(getlood_common::ApiError::invalid_argument(format!(
            "pageSize must be between 1 and {MAX_PAGE_SIZE}, not {size}"
        ))));
    }
    Ok(Some(getlood_proto::common::v1::PageRequest { page_size: size, page_token: page_token.unwrap_or_default() }))
}

fn ts(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.map(ToString::to_string)
}

/// One page of a list: its items, the token of the next page (empty on the last) and the total
/// when the service counted it.
#[derive(Debug, SimpleObject)]
#[graphql(concrete(name = "AgentPage", params(Agent)))]
#[graphql(concrete(name = "SkillPage", params(Skill)))]
#[graphql(concrete(name = "DesktopPage", params(Desktop)))]
#[graphql(concrete(name = "WindowPage", params(Window)))]
#[graphql(concrete(name = "WorkflowPage", params(Workflow)))]
#[graphql(concrete(name = "WorkflowVersionPage", params(WorkflowVersion)))]
#[graphql(concrete(name = "RunPage", params(Run)))]
pub(crate) struct Page<T: OutputType> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Token of the next page; empty on the last page.
    pub next_page_token: String,
    /// Total count, when the service counted it.
    pub total_size: Option<i64>,
}

impl<T: OutputType> Page<T> {
    pub(crate) fn new<P>(items: impl IntoIterator<Item = P>, page: Option<PageResponse>) -> Self
    where
        T: From<P>,
    {
        let page = page.unwrap_or_default();
        Self {
            items: items.into_iter().map(T::from).collect(),
            next_page_token: page.next_page_token,
            // -1 is the proto's "not counted".
            total_size: (page.total_size >= 0).then_some(page.total_size),
        }
    }
}

/// The caller as the gateway sees it, from the verified token only.
#[derive(Debug, SimpleObject)]
pub(crate) struct Me {
    pub tenant: String,
    pub user: String,
    pub roles: Vec<String>,
    /// Token expiry, seconds since the epoch.
    pub expires_at: u64,
}

/// The model behind an agent; the API key is never returned, only whether one is stored.
#[derive(Debug, SimpleObject)]
#[graphql(name = "AgentModel")]
pub(crate) struct Model {
    pub provider: String,
    pub model_name: String,
    pub base_url: Option<String>,
    pub has_api_key: bool,
}

/// The tables and knowledge bases an agent reads.
#[derive(Debug, SimpleObject)]
pub(crate) struct AgentData {
    pub tables: Vec<String>,
    pub knowledge_bases: Vec<String>,
}

impl From<Option<&registry::AgentData>> for AgentData {
    fn from(d: Option<&registry::AgentData>) -> Self {
        let d = d.cloned().unwrap_or_default();
        Self { tables: d.tables, knowledge_bases: d.knowledge_bases }
    }
}

/// An agent of the tenant.
#[derive(Debug, SimpleObject)]
pub(crate) struct Agent {
    pub id: String,
    pub name: String,
    pub description: String,
    pub model: Option<Model>,
    pub skills: Vec<String>,
    pub prompt_template: String,
    pub data: AgentData,
    pub metadata: HashMap<String, String>,
    pub version: i64,
    pub owner: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The data the agent reads, its skills' included.
    pub effective_data: AgentData,
    /// The prompt the agent runs with, its skills' fragments included.
    pub effective_prompt_template: String,
}

impl From<registry::Agent> for Agent {
    fn from(a: registry::Agent) -> Self {
        Self {
            model: a.model.map(|m| Model {
                provider: m.provider,
                model_name: m.model_name,
                base_url: m.base_url,
                has_api_key: m.has_api_key,
            }),
            data: AgentData::from(a.data.as_ref()),
            effective_data: AgentData::from(a.effective_data.as_ref()),
            created_at: ts(a.created_at.as_ref()),
            updated_at: ts(a.updated_at.as_ref()),
            id: a.id,
            name: a.name,
            description: a.description,
            skills: a.skills,
            prompt_template: a.prompt_template,
            metadata: a.metadata,
            version: a.version,
            owner: a.owner,
            effective_prompt_template: a.effective_prompt_template,
        }
    }
}

/// A skill of the tenant's catalogue.
#[derive(Debug, SimpleObject)]
pub(crate) struct Skill {
    pub name: String,
    pub description: String,
    pub tables: Vec<String>,
    pub knowledge_bases: Vec<String>,
    pub prompt_fragment: String,
    pub version: i64,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<registry::Skill> for Skill {
    fn from(s: registry::Skill) -> Self {
        Self {
            created_at: ts(s.created_at.as_ref()),
            updated_at: ts(s.updated_at.as_ref()),
            name: s.name,
            description: s.description,
            tables: s.tables,
            knowledge_bases: s.knowledge_bases,
            prompt_fragment: s.prompt_fragment,
            version: s.version,
        }
    }
}

/// A deleted object: its id (or name) and the version it had, when the service says.
#[derive(Debug, SimpleObject)]
pub(crate) struct Deleted {
    pub id: String,
    pub version: Option<i64>,
}

/// A window: `normal`, `minimized` or `maximized`, at a position and size, with the app's props.
#[derive(Debug, SimpleObject)]
pub(crate) struct Window {
    pub id: String,
    pub desktop_id: String,
    pub app_id: String,
    pub title: String,
    pub x: i32,
    pub y: i32,
    pub width: i32,
    pub height: i32,
    pub z_index: i32,
    pub state: String,
    pub props: Value,
    pub version: i64,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<desktop::Window> for Window {
    fn from(w: desktop::Window) -> Self {
        Self {
            state: enum_name(
                desktop::WindowState::try_from(w.state).unwrap_or(desktop::WindowState::Normal).as_str_name(),
                "WINDOW_STATE_",
            ),
            props: opt_struct_to_json(w.props.as_ref()),
            created_at: ts(w.created_at.as_ref()),
            updated_at: ts(w.updated_at.as_ref()),
            id: w.id,
            desktop_id: w.desktop_id,
            app_id: w.app_id,
            title: w.title,
            x: w.x,
            y: w.y,
            width: w.width,
            height: w.height,
            z_index: w.z_index,
            version: w.version,
        }
    }
}

/// A desktop with its windows (z-order, bottom first) and focus stack.
#[derive(Debug, SimpleObject)]
pub(crate) struct Desktop {
    pub id: String,
    pub owner_user_id: String,
    pub name: String,
    /// The windows; in a list only when the query selects them (they are fetched with it).
    pub windows: Vec<Window>,
    pub focus_stack: Vec<String>,
    pub version: i64,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub saved_at: Option<String>,
}

impl From<desktop::Desktop> for Desktop {
    fn from(d: desktop::Desktop) -> Self {
        Self {
            created_at: ts(d.created_at.as_ref()),
            updated_at: ts(d.updated_at.as_ref()),
            saved_at: ts(d.saved_at.as_ref()),
            windows: d.windows.into_iter().map(Window::from).collect(),
            id: d.id,
            owner_user_id: d.owner_user_id,
            name: d.name,
            focus_stack: d.focus_stack,
            version: d.version,
        }
    }
}

/// A desktop made current again from its last save.
#[derive(Debug, SimpleObject)]
pub(crate) struct RestoredDesktop {
    pub desktop: Option<Desktop>,
    pub saved_at: Option<String>,
}

impl From<desktop::RestoreDesktopResponse> for RestoredDesktop {
    fn from(r: desktop::RestoreDesktopResponse) -> Self {
        Self { saved_at: ts(r.saved_at.as_ref()), desktop: r.desktop.map(Desktop::from) }
    }
}

/// A version of a workflow. The graph is React Flow's shape (`nodes`, `edges`, `viewport`).
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub(crate) struct Workflow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub version: i64,
    pub graph: Option<Value>,
    pub owner: String,
    pub version_author: String,
    pub version_comment: String,
    /// The schedule, as REST returns it, when the workflow has one.
    pub schedule: Option<Value>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<wf::Workflow> for Workflow {
    fn from(w: wf::Workflow) -> Self {
        Self {
            graph: w.graph.as_ref().map(workflow_api::graph_json),
            schedule: w.schedule.as_ref().map(workflow_api::schedule_json),
            created_at: ts(w.created_at.as_ref()),
            updated_at: ts(w.updated_at.as_ref()),
            id: w.id,
            name: w.name,
            description: w.description,
            version: w.version,
            owner: w.owner,
            version_author: w.version_author,
            version_comment: w.version_comment,
        }
    }
}

#[ComplexObject]
impl Workflow {
    /// The workflow's versions, newest first.
    #[graphql(
        guard = "Need::to(Permission::WorkflowsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<WorkflowVersion>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = wf::ListWorkflowVersionsRequest { workflow_id: self.id.clone(), page: page(page_size, page_token)? };
        let resp =
            crate::caller::unary("workflow", state.upstreams.workflow().list_workflow_versions(caller.request(req)))
                .await
                .map_err(gql_error)?;
        Ok(Page::new(resp.versions, resp.page))
    }

    /// The workflow's runs, newest first, filtered by `statuses` (e.g. `["running"]`).
    #[graphql(
        guard = "Need::to(Permission::RunsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        statuses: Option<Vec<String>>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Run>> {
        super::query::runs_page(ctx, self.id.clone(), statuses, page_size, page_token).await
    }
}

/// One saved version of a workflow.
#[derive(Debug, SimpleObject)]
pub(crate) struct WorkflowVersion {
    pub workflow_id: String,
    pub version: i64,
    pub author: String,
    pub comment: String,
    pub node_count: i32,
    pub created_at: Option<String>,
}

impl From<wf::WorkflowVersion> for WorkflowVersion {
    fn from(v: wf::WorkflowVersion) -> Self {
        Self {
            created_at: ts(v.created_at.as_ref()),
            workflow_id: v.workflow_id,
            version: v.version,
            author: v.author,
            comment: v.comment,
            node_count: v.node_count,
        }
    }
}

/// The editor's check of a graph: `valid`, and every problem with its node or edge.
#[derive(Debug, SimpleObject)]
pub(crate) struct Validation {
    pub valid: bool,
    /// `{field, subject, description}` of each problem.
    pub problems: Vec<Value>,
}

/// One entry of a run's node timeline.
#[derive(Debug, Clone, SimpleObject)]
pub(crate) struct NodeRun {
    pub node_id: String,
    pub node_type: String,
    pub status: String,
    pub attempt: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: i64,
    pub output_summary: String,
    pub output: Option<Value>,
    pub error: String,
    pub next_retry_at: Option<String>,
    pub decided_by: String,
    pub decision_comment: String,
}

impl From<&wf::NodeRun> for NodeRun {
    fn from(n: &wf::NodeRun) -> Self {
        Self {
            node_id: n.node_id.clone(),
            node_type: n.node_type.clone(),
            status: enum_name(
                wf::NodeRunStatus::try_from(n.status).unwrap_or(wf::NodeRunStatus::Unspecified).as_str_name(),
                "NODE_RUN_STATUS_",
            ),
            attempt: n.attempt,
            started_at: ts(n.started_at.as_ref()),
            finished_at: ts(n.finished_at.as_ref()),
            duration_ms: n.duration_ms,
            output_summary: n.output_summary.clone(),
            output: n.output.as_ref().map(proto_struct_to_json),
            error: n.error.clone(),
            next_retry_at: ts(n.next_retry_at.as_ref()),
            decided_by: n.decided_by.clone(),
            decision_comment: n.decision_comment.clone(),
        }
    }
}

/// A persisted log line of a run.
#[derive(Debug, Clone, SimpleObject)]
pub(crate) struct LogEntry {
    pub logged_at: Option<String>,
    pub node_id: String,
    pub attempt: i32,
    pub level: String,
    pub message: String,
    pub fields: Value,
}

impl From<&wf::LogEntry> for LogEntry {
    fn from(l: &wf::LogEntry) -> Self {
        Self {
            logged_at: ts(l.logged_at.as_ref()),
            node_id: l.node_id.clone(),
            attempt: l.attempt,
            level: enum_name(
                wf::LogLevel::try_from(l.level).unwrap_or(wf::LogLevel::Unspecified).as_str_name(),
                "LOG_LEVEL_",
            ),
            message: l.message.clone(),
            fields: opt_struct_to_json(l.fields.as_ref()),
        }
    }
}

/// A workflow run. Its node timeline (`nodes`) comes with the run when it was read alone; for
/// runs of a list it is loaded for the whole list at once (see `loader`).
#[derive(Debug, SimpleObject)]
#[graphql(complex)]
pub(crate) struct Run {
    pub id: String,
    pub workflow_id: String,
    pub workflow_version: i64,
    pub status: String,
    pub mode: String,
    pub trigger: String,
    pub triggered_by: String,
    pub input: Value,
    pub result: Option<Value>,
    /// `{code, message, field_violations}` of a failed run.
    pub error: Option<Value>,
    pub job_name: String,
    pub cancel_reason: String,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: i64,
    pub last_sequence: i64,
    /// The node timeline when the run was read with it (GetRun, a decision, a cancel).
    #[graphql(skip)]
    pub timeline: Option<Arc<Vec<wf::NodeRun>>>,
}

impl Run {
    /// A run whose `node_runs` are its whole timeline (GetRun and the write calls answer so).
    pub(crate) fn with_timeline(run: wf::Run) -> Self {
        let timeline = Arc::new(run.node_runs.clone());
        Self { timeline: Some(timeline), ..Self::from(run) }
    }
}

impl From<wf::Run> for Run {
    /// A run of a list: ListRuns leaves the timeline out.
    fn from(r: wf::Run) -> Self {
        Self {
            status: workflow_api::run_status_name(r.status),
            mode: workflow_api::mode_name(r.mode),
            trigger: enum_name(
                wf::RunTrigger::try_from(r.trigger).unwrap_or(wf::RunTrigger::Unspecified).as_str_name(),
                "RUN_TRIGGER_",
            ),
            input: opt_struct_to_json(r.input.as_ref()),
            result: r.result.as_ref().map(proto_struct_to_json),
            error: r.error.as_ref().map(workflow_api::error_detail_json),
            created_at: ts(r.created_at.as_ref()),
            started_at: ts(r.started_at.as_ref()),
            finished_at: ts(r.finished_at.as_ref()),
            id: r.id,
            workflow_id: r.workflow_id,
            workflow_version: r.workflow_version,
            triggered_by: r.triggered_by,
            job_name: r.job_name,
            cancel_reason: r.cancel_reason,
            duration_ms: r.duration_ms,
            last_sequence: r.last_sequence,
            timeline: None,
        }
    }
}

#[ComplexObject]
impl Run {
    /// The node timeline, outputs included, in execution order.
    #[graphql(complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<NodeRun>> {
        if let Some(timeline) = &self.timeline {
            return Ok(timeline.iter().map(NodeRun::from).collect());
        }
        let loader = ctx.data::<DataLoader<RunLoader>>()?;
        match loader.load_one(self.id.clone()).await {
            Ok(Some(Ok(run))) => Ok(run.node_runs.iter().map(NodeRun::from).collect()),
            Ok(Some(Err(err))) => Err(gql_error(err)),
            Ok(None) | Err(_) => {
                Err(gql_error(getlood_common::ApiError::not_found(format!("run {} not found", self.id))))
            }
        }
    }

    /// The run's persisted log lines, in order.
    #[graphql(complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn logs(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<LogEntry>> {
        let loader = ctx.data::<DataLoader<RunLoader>>()?;
        match loader.load_one(RunLogs(self.id.clone())).await {
            Ok(Some(Ok(logs))) => Ok(logs.iter().map(LogEntry::from).collect()),
            Ok(Some(Err(err))) => Err(gql_error(err)),
            Ok(None) | Err(_) => {
                Err(gql_error(getlood_common::ApiError::not_found(format!("run {} not found", self.id))))
            }
        }
    }
}

/// An event of the tenant's stream, as the SSE and WebSocket routes deliver it.
#[derive(Debug, SimpleObject)]
pub(crate) struct Event {
    /// Resume after this event with `after: <cursor>`.
    pub cursor: String,
    /// `window.opened`, `node.completed`, ...
    #[graphql(name = "type")]
    pub kind: String,
    /// The event as REST's SSE `data` (`id`, `type`, `entity_id`, `occurred_at`, `actor`, `data`).
    pub event: Value,
}
