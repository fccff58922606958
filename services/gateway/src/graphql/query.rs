//! `Query`: reads over agents, skills, desktops and windows, workflows, runs and their node
//! timelines, each through the same upstream call (and caller token) as its REST route, and
//! guarded by the same permission.

use crate::proto_json::parse_enum;
use async_graphql::{Context, Object};
use getlood_auth::Permission;
use getlood_proto::agent_registry::v1::{
    GetAgentRequest, GetSkillRequest, ListAgentsRequest, ListSkillsRequest, get_agent_request,
};
use getlood_proto::desktop_state::v1::{GetWindowRequest, ListDesktopsRequest, ListWindowsRequest, WindowState};
use getlood_proto::workflow::v1::{GetWorkflowRequest, ListWorkflowsRequest};

use super::guard::{Need, caller, gql_error, state};
use super::types::{Agent, Desktop, Me, Page, Run, Skill, UPSTREAM_FIELD_COST, Window, Workflow, page, page_cost};
use super::{DESKTOP_STATE, REGISTRY, WORKFLOW};
use crate::caller::unary;
use crate::{desktop_api, workflow_api};

/// The root of GraphQL reads.
#[derive(Debug, Default)]
pub(crate) struct Query;

/// A page of runs of `workflow_id` (every run of the tenant when empty), shared by `runs` and
/// `Workflow.runs`: the REST run lists' call, statuses spelled as REST spells them.
pub(crate) async fn runs_page(
    ctx: &Context<'_>,
    workflow_id: String,
    statuses: Option<Vec<String>>,
    page_size: Option<i32>,
    page_token: Option<String>,
) -> async_graphql::Result<Page<Run>> {
    let (state, caller) = (state(ctx)?, caller(ctx)?);
    let statuses = statuses.unwrap_or_default();
    let resp = workflow_api::runs_page(state, caller, workflow_id, &statuses, page(page_size, page_token)?)
        .await
        .map_err(gql_error)?;
    Ok(Page::new(resp.runs, resp.page))
}

#[Object(name = "GatewayQuery")]
impl Query {
    /// The caller, from the verified token only.
    #[graphql(guard = "Need::to(Permission::ProfileRead)")]
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Me> {
        let p = caller(ctx)?.principal();
        Ok(Me { tenant: p.tenant.to_string(), user: p.user.clone(), roles: p.roles.clone(), expires_at: p.expires_at })
    }

    /// A page of the tenant's agents, by name.
    #[graphql(
        guard = "Need::to(Permission::AgentsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn agents(
        &self,
        ctx: &Context<'_>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Agent>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = ListAgentsRequest { page: page(page_size, page_token)?, ..ListAgentsRequest::default() };
        let resp = unary(REGISTRY, state.upstreams.agent_registry().list_agents(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Page::new(resp.agents, resp.page))
    }

    /// The agent `id`; another tenant's is `not_found` like a missing one.
    #[graphql(guard = "Need::to(Permission::AgentsRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn agent(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Agent> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Id(id)) };
        let resp = unary(REGISTRY, state.upstreams.agent_registry().get_agent(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.agent.unwrap_or_default().into())
    }

    /// A page of the tenant's skills.
    #[graphql(
        guard = "Need::to(Permission::SkillsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn skills(
        &self,
        ctx: &Context<'_>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Skill>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = ListSkillsRequest { page: page(page_size, page_token)? };
        let resp = unary(REGISTRY, state.upstreams.agent_registry().list_skills(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Page::new(resp.skills, resp.page))
    }

    /// The skill `name`.
    #[graphql(guard = "Need::to(Permission::SkillsRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn skill(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Skill> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = GetSkillRequest { name };
        let resp = unary(REGISTRY, state.upstreams.agent_registry().get_skill(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.skill.unwrap_or_default().into())
    }

    /// A page of the caller's desktops, newest first. Their windows are read with the list
    /// (one call) when the query selects `windows`.
    #[graphql(
        guard = "Need::to(Permission::DesktopsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn desktops(
        &self,
        ctx: &Context<'_>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Desktop>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let include_windows = ctx.look_ahead().field("items").field("windows").exists();
        let req = ListDesktopsRequest { page: page(page_size, page_token)?, include_windows };
        let resp = unary(DESKTOP_STATE, state.upstreams.desktop_state().list_desktops(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Page::new(resp.desktops, resp.page))
    }

    /// The caller's desktop `id` with its windows; another user's or tenant's is `not_found`.
    #[graphql(guard = "Need::to(Permission::DesktopsRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn desktop(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Desktop> {
        let desktop = desktop_api::get_desktop(state(ctx)?, caller(ctx)?, &id).await.map_err(gql_error)?;
        Ok(desktop.into())
    }

    /// A page of a desktop's windows in z-order, optionally only those in `state`
    /// (`normal`, `minimized`, `maximized`).
    #[graphql(
        guard = "Need::to(Permission::DesktopsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn windows(
        &self,
        ctx: &Context<'_>,
        desktop_id: String,
        #[graphql(name = "state")] window_state: Option<String>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Window>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = ListWindowsRequest {
            desktop_id,
            page: page(page_size, page_token)?,
            state: match window_state.as_deref() {
                None | Some("") => WindowState::Unspecified as i32,
                Some(raw) => parse_enum(
                    raw,
                    "WINDOW_STATE_",
                    WindowState::from_str_name,
                    "state",
                    "normal, minimized, maximized",
                )
                .map_err(gql_error)? as i32,
            },
        };
        let resp = unary(DESKTOP_STATE, state.upstreams.desktop_state().list_windows(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(Page::new(resp.windows, resp.page))
    }

    /// The window `id`.
    #[graphql(guard = "Need::to(Permission::DesktopsRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn window(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Window> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = GetWindowRequest { window_id: id };
        let resp = unary(DESKTOP_STATE, state.upstreams.desktop_state().get_window(caller.request(req)))
            .await
            .map_err(gql_error)?;
        Ok(resp.window.unwrap_or_default().into())
    }

    /// A page of the tenant's workflows (latest versions) by name. Graphs are read only when the
    /// query selects `graph`.
    #[graphql(
        guard = "Need::to(Permission::WorkflowsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Workflow>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let omit_graph = !ctx.look_ahead().field("items").field("graph").exists();
        let req = ListWorkflowsRequest { page: page(page_size, page_token)?, omit_graph };
        let resp =
            unary(WORKFLOW, state.upstreams.workflow().list_workflows(caller.request(req))).await.map_err(gql_error)?;
        Ok(Page::new(resp.workflows, resp.page))
    }

    /// The workflow `id`: its latest version, or `version`.
    #[graphql(guard = "Need::to(Permission::WorkflowsRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn workflow(&self, ctx: &Context<'_>, id: String, version: Option<i64>) -> async_graphql::Result<Workflow> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let req = GetWorkflowRequest { workflow_id: id, version: version.unwrap_or(0) };
        let resp =
            unary(WORKFLOW, state.upstreams.workflow().get_workflow(caller.request(req))).await.map_err(gql_error)?;
        Ok(resp.workflow.unwrap_or_default().into())
    }

    /// A page of the tenant's runs (of `workflowId` only, when given), newest first, filtered by
    /// `statuses` (`pending`, `running`, `waiting_approval`, `succeeded`, `failed`,
    /// `cancelled`). Their `nodes` are loaded for the whole page in one batch.
    #[graphql(
        guard = "Need::to(Permission::RunsRead)",
        complexity = "page_cost(page_size, child_complexity) + UPSTREAM_FIELD_COST"
    )]
    async fn runs(
        &self,
        ctx: &Context<'_>,
        workflow_id: Option<String>,
        statuses: Option<Vec<String>>,
        page_size: Option<i32>,
        page_token: Option<String>,
    ) -> async_graphql::Result<Page<Run>> {
        runs_page(ctx, workflow_id.unwrap_or_default(), statuses, page_size, page_token).await
    }

    /// The run `id` with its node timeline; another tenant's is `not_found`.
    #[graphql(guard = "Need::to(Permission::RunsRead)", complexity = "UPSTREAM_FIELD_COST + child_complexity")]
    async fn run(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<Run> {
        let (run, _) = workflow_api::fetch_run(state(ctx)?, caller(ctx)?, id, false).await.map_err(gql_error)?;
        Ok(Run::with_timeline(run))
    }
}
