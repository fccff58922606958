//! `Mutation`: the REST writes, each through the same core function or upstream call as its
//! route, guarded by the same permission and counted against the same rate-limit class.

use async_graphql::{Context, InputObject, Object};
use getlood_auth::Permission;
use getlood_common::ApiError;
use getlood_proto::agent_registry::v1::{CreateSkillRequest, DeleteSkillRequest};
use getlood_proto::desktop_state::v1::{CreateDesktopRequest, DeleteDesktopRequest, RestoreDesktopRequest};
use getlood_proto::workflow::v1::{
    ApproveNodeRequest, CancelRunRequest, DeleteWorkflowRequest, ValidateWorkflowRequest,
};
use serde_json::Value;

use super::guard::{Need, caller, gql_error, state};
use super::types::{Agent, Deleted, Desktop, RestoredDesktop, Run, Skill, Validation, Workflow};
use super::{DESKTOP_STATE, REGISTRY, WORKFLOW};
use crate::caller::unary;
use crate::desktop_api::{self, GeometryBody, OpenBody, WindowCommand};
use crate::rate_limit::RouteClass;
use crate::registry_api;
use crate::workflow_api::{self, CreateBody, ExecuteBody, GraphBody, UpdateBody};
use getlood_proto::agent_registry::v1 as registry;

/// The root of GraphQL writes.
#[derive(Debug, Default)]
pub(crate) struct Mutation;

/// A window to open.
#[derive(Debug, InputObject)]
pub(crate) struct OpenWindowInput {
    pub app_id: String,
    #[graphql(default)]
    pub title: String,
    pub x: Option<i32>,
    pub y: Option<i32>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// `normal`, `minimized` or `maximized`.
    pub state: Option<String>,
    pub props: Option<Value>,
    #[graphql(default)]
    pub expected_desktop_version: i64,
    /// Idempotency key: a retry with the same key returns the first window.
    #[graphql(default)]
    pub request_id: String,
}

/// The writable fields of an agent (REST's agent body).
#[derive(Debug, InputObject)]
pub(crate) struct AgentInput {
    #[graphql(default)]
    pub name: String,
    #[graphql(default)]
    pub description: String,
    pub model: Option<ModelInput>,
    #[graphql(default)]
    pub skills: Vec<String>,
    #[graphql(default)]
    pub prompt_template: String,
    pub data: Option<AgentDataInput>,
    #[graphql(default)]
    pub metadata: std::collections::HashMap<String, String>,
}

/// The model of an agent write; the API key is stored, never returned.
#[derive(Debug, InputObject)]
pub(crate) struct ModelInput {
    pub provider: String,
    pub model_name: String,
    pub base_url: Option<String>,
    #[graphql(default)]
    pub api_key: String,
}

/// The data of an agent write.
#[derive(Debug, InputObject)]
pub(crate) struct AgentDataInput {
    #[graphql(default)]
    pub tables: Vec<String>,
    #[graphql(default)]
    pub knowledge_bases: Vec<String>,
}

impl AgentInput {
    fn into_agent(self, id: String) -> registry::Agent {
        registry::Agent {
            id,
            name: self.name,
            description: self.description,
            model: self.model.map(|m| registry::ModelConfig {
                provider: m.provider,
                model_name: m.model_name,
                base_url: m.base_url,
                api_key: m.api_key,
                has_api_key: false,
            }),
            skills: self.skills,
            prompt_template: self.prompt_template,
            data: self.data.map(|d| registry::AgentData { tables: d.tables, knowledge_bases: d.knowledge_bases }),
            metadata: self.metadata,
            ..registry::Agent::default()
        }
    }
}

/// The writable fields of a skill.
#[derive(Debug, InputObject)]
pub(crate) struct SkillInput {
    pub name: String,
    #[graphql(default)]
    pub description: String,
    #[graphql(default)]
    pub tables: Vec<String>,
    #[graphql(default)]
    pub knowledge_bases: Vec<String>,
    #[graphql(default)]
    pub prompt_fragment: String,
}

/// A React Flow graph given as `JSON`, read as the REST body's `graph` is.
fn graph(raw: Value) -> async_graphql::Result<GraphBody> {
    serde_json::from_value(raw).map_err(|e| gql_error(ApiError::invalid_argument(format!("graph: {e}"))))
}

/// Runs a window command through the function REST and the desktop socket use; its answer is
/// theirs (`window`, and `desktop_version` / `focus_stack` when the command changed them).
async fn window_command(ctx: &Context<'_>, cmd: WindowCommand) -> async_graphql::Result<Value> {
    let result = desktop_api::execute(state(ctx)?, caller(ctx)?, cmd).await.map_err(gql_error)?;
    serde_json::to_value(result).map_err(|e| gql_error(ApiError::internal(&e)))
}

#[Object(name = "GatewayMutation")]
impl Mutation {
    /// Creates an agent (MindsDB checks its model first); `idempotencyKey` makes a retry safe.
    #[graphql(guard = "Need::write(Permission::AgentsWrite, RouteClass::AgentWrite)")]
    async fn create_agent(
        &self,
        ctx: &Context<'_>,
        input: AgentInput,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Agent> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let agent = Some(input.into_agent(String::new()));
        let req = registry::CreateAgentRequest { agent, request_id: idempotency_key.unwrap_or_default() };
        let resp = unary(REGISTRY, state.upstreams.agent_registry_writes().create_agent(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.agent.unwrap_or_default().into())
    }

    /// Replaces every mutable field of agent `id`; a stale `expectedVersion` is `aborted`.
    #[graphql(guard = "Need::write(Permission::AgentsWrite, RouteClass::AgentWrite)")]
    async fn update_agent(
        &self,
        ctx: &Context<'_>,
        id: String,
        input: AgentInput,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Agent> {
        let agent =
            registry_api::replace_agent(state(ctx)?, caller(ctx)?, input.into_agent(id), expected_version.unwrap_or(0))
                .await
                .map_err(gql_error)?;
        Ok(agent.into())
    }

    /// Deletes agent `id`.
    #[graphql(guard = "Need::write(Permission::AgentsWrite, RouteClass::Write)")]
    async fn delete_agent(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Deleted> {
        let resp = registry_api::remove_agent(state(ctx)?, caller(ctx)?, id, expected_version.unwrap_or(0))
            .await
            .map_err(gql_error)?;
        Ok(Deleted { id: resp.id, version: Some(resp.version) })
    }

    /// Creates a skill.
    #[graphql(guard = "Need::write(Permission::SkillsWrite, RouteClass::Write)")]
    async fn create_skill(&self, ctx: &Context<'_>, input: SkillInput) -> async_graphql::Result<Skill> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let skill = registry::Skill {
            name: input.name,
            description: input.description,
            tables: input.tables,
            knowledge_bases: input.knowledge_bases,
            prompt_fragment: input.prompt_fragment,
            ..registry::Skill::default()
        };
        let req = CreateSkillRequest { skill: Some(skill) };
        let resp = unary(REGISTRY, state.upstreams.agent_registry().create_skill(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.skill.unwrap_or_default().into())
    }

    /// Deletes skill `name`.
    #[graphql(guard = "Need::write(Permission::SkillsWrite, RouteClass::Write)")]
    async fn delete_skill(
        &self,
        ctx: &Context<'_>,
        name: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Deleted> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = DeleteSkillRequest { name, expected_version: expected_version.unwrap_or(0) };
        let resp = unary(REGISTRY, state.upstreams.agent_registry().delete_skill(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Deleted { id: resp.name, version: None })
    }

    /// Creates a desktop for the caller; `requestId` makes a retry safe.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn create_desktop(
        &self,
        ctx: &Context<'_>,
        name: String,
        request_id: Option<String>,
    ) -> async_graphql::Result<Desktop> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = CreateDesktopRequest { name, request_id: request_id.unwrap_or_default() };
        let resp = unary(DESKTOP_STATE, state.upstreams.desktop_state().create_desktop(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.desktop.unwrap_or_default().into())
    }

    /// Deletes desktop `id` and its windows.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn delete_desktop(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Deleted> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = DeleteDesktopRequest { desktop_id: id, expected_version: expected_version.unwrap_or(0) };
        let resp = unary(DESKTOP_STATE, state.upstreams.desktop_state().delete_desktop(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Deleted { id: resp.desktop_id, version: None })
    }

    /// Makes desktop `id`'s last saved snapshot current again.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn restore_desktop(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<RestoredDesktop> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = RestoreDesktopRequest { desktop_id: id, expected_version: expected_version.unwrap_or(0) };
        let resp = unary(DESKTOP_STATE, state.upstreams.desktop_state().restore_desktop(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.into())
    }

    /// Opens a window on desktop `desktopId`; every socket of the desktop sees `window.opened`.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn open_window(
        &self,
        ctx: &Context<'_>,
        desktop_id: String,
        input: OpenWindowInput,
    ) -> async_graphql::Result<Value> {
        let body = OpenBody {
            app_id: input.app_id,
            title: input.title,
            x: input.x,
            y: input.y,
            width: input.width,
            height: input.height,
            state: input.state,
            props: input.props,
            expected_desktop_version: input.expected_desktop_version,
            request_id: input.request_id,
        };
        window_command(ctx, WindowCommand::Open { desktop_id, body }).await
    }

    /// Moves and/or resizes window `id`.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    #[allow(clippy::too_many_arguments, reason = "one argument per GraphQL argument")]
    async fn move_window(
        &self,
        ctx: &Context<'_>,
        id: String,
        x: Option<i32>,
        y: Option<i32>,
        width: Option<i32>,
        height: Option<i32>,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let body = GeometryBody { x, y, width, height, expected_version: expected_version.unwrap_or(0) };
        window_command(ctx, WindowCommand::Move { window_id: id, body }).await
    }

    /// Brings window `id` to the front.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn focus_window(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let expected_version = expected_version.unwrap_or(0);
        window_command(ctx, WindowCommand::Focus { window_id: id, expected_version }).await
    }

    /// Minimizes window `id`.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn minimize_window(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let expected_version = expected_version.unwrap_or(0);
        window_command(ctx, WindowCommand::Minimize { window_id: id, expected_version }).await
    }

    /// Maximizes window `id`.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn maximize_window(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let expected_version = expected_version.unwrap_or(0);
        window_command(ctx, WindowCommand::Maximize { window_id: id, expected_version }).await
    }

    /// Restores window `id` to its normal state.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn restore_window(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let expected_version = expected_version.unwrap_or(0);
        window_command(ctx, WindowCommand::Restore { window_id: id, expected_version }).await
    }

    /// Closes window `id`.
    #[graphql(guard = "Need::write(Permission::DesktopsWrite, RouteClass::Write)")]
    async fn close_window(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Value> {
        let expected_version = expected_version.unwrap_or(0);
        window_command(ctx, WindowCommand::Close { window_id: id, expected_version }).await
    }

    /// Creates a workflow (version 1) from a React Flow `graph`; an invalid graph is
    /// `invalid_argument` listing every problem.
    #[graphql(guard = "Need::write(Permission::WorkflowsWrite, RouteClass::Write)")]
    async fn create_workflow(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default)] description: String,
        graph: Value,
        #[graphql(default)] version_comment: String,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Workflow> {
        let body = CreateBody { name, description, graph: Some(self::graph(graph)?), version_comment };
        let workflow = workflow_api::create(state(ctx)?, caller(ctx)?, body, idempotency_key.unwrap_or_default())
            .await
            .map_err(gql_error)?;
        Ok(workflow.into())
    }

    /// Saves a new version of workflow `id`; absent `name` and `description` stay.
    #[graphql(guard = "Need::write(Permission::WorkflowsWrite, RouteClass::Write)")]
    #[allow(clippy::too_many_arguments, reason = "one argument per GraphQL argument")]
    async fn update_workflow(
        &self,
        ctx: &Context<'_>,
        id: String,
        name: Option<String>,
        description: Option<String>,
        graph: Value,
        #[graphql(default)] version_comment: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Workflow> {
        let body =
            UpdateBody { name, description, graph: Some(self::graph(graph)?), version_comment, expected_version };
        let workflow = workflow_api::update(state(ctx)?, caller(ctx)?, id, body, expected_version.unwrap_or(0))
            .await
            .map_err(gql_error)?;
        Ok(workflow.into())
    }

    /// Deletes workflow `id`; started runs finish and stay readable.
    #[graphql(guard = "Need::write(Permission::WorkflowsWrite, RouteClass::Write)")]
    async fn delete_workflow(
        &self,
        ctx: &Context<'_>,
        id: String,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Deleted> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = DeleteWorkflowRequest { workflow_id: id, expected_version: expected_version.unwrap_or(0) };
        let resp = unary(WORKFLOW, state.upstreams.workflow().delete_workflow(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Deleted { id: resp.workflow_id, version: None })
    }

    /// Checks a graph for the editor: an invalid graph is an answer (`valid: false` and every
    /// problem), not an error.
    #[graphql(guard = "Need::write(Permission::WorkflowsRead, RouteClass::WorkflowValidate)")]
    async fn validate_workflow(&self, ctx: &Context<'_>, graph: Value) -> async_graphql::Result<Validation> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let graph = workflow_api::required_graph(Some(self::graph(graph)?)).map_err(gql_error)?;
        let req = ValidateWorkflowRequest { graph: Some(graph) };
        let resp = unary(WORKFLOW, state.upstreams.workflow().validate_workflow(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Validation { valid: resp.valid, problems: resp.problems.iter().map(workflow_api::violation_json).collect() })
    }

    /// Starts a run of workflow `id` (`mode`: `engine` or `mindsdb_job`); follow it with
    /// `run(id)` or the `runEvents` subscription.
    #[graphql(guard = "Need::write(Permission::RunsExecute, RouteClass::WorkflowExecute)")]
    #[allow(clippy::too_many_arguments, reason = "one argument per GraphQL argument")]
    async fn execute_workflow(
        &self,
        ctx: &Context<'_>,
        id: String,
        input: Option<Value>,
        #[graphql(default)] version: i64,
        mode: Option<String>,
        timeout_ms: Option<u64>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Run> {
        let body = ExecuteBody { input, version, mode, timeout_ms, request_id: idempotency_key.unwrap_or_default() };
        let run = workflow_api::execute(state(ctx)?, caller(ctx)?, id, body, String::new()).await.map_err(gql_error)?;
        Ok(Run::with_timeline(run))
    }

    /// Cancels run `id`; a finished run is `failed_precondition`.
    #[graphql(guard = "Need::write(Permission::RunsExecute, RouteClass::Write)")]
    async fn cancel_run(&self, ctx: &Context<'_>, id: String, reason: Option<String>) -> async_graphql::Result<Run> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = CancelRunRequest { run_id: id, reason: reason.unwrap_or_default() };
        let resp =
            unary(WORKFLOW, state.upstreams.workflow().cancel_run(caller.request(req))).await.map_err(gql_error)?;
        Ok(Run::with_timeline(resp.run.unwrap_or_default()))
    }

    /// Decides the waiting human_approval node `nodeId` of run `runId`. Refused to the run's
    /// starter unless the workflow service allows self-approval.
    #[graphql(guard = "Need::write(Permission::RunsApprove, RouteClass::Write)")]
    async fn approve_node(
        &self,
        ctx: &Context<'_>,
        run_id: String,
        node_id: String,
        approved: bool,
        #[graphql(default)] comment: String,
    ) -> async_graphql::Result<Run> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = ApproveNodeRequest { run_id, node_id, approved, comment };
        let resp =
            unary(WORKFLOW, state.upstreams.workflow().approve_node(caller.request(req))).await.map_err(gql_error)?;
        Ok(Run::with_timeline(resp.run.unwrap_or_default()))
    }
}
