//! `/v1/models` and the REST `/api/v1/agents` and `/api/v1/skills` routes: thin JSON mappings
//! onto the agent registry's gRPC API, called with the caller's own token.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use getlood_auth::Principal;
use getlood_common::ApiError;
use getlood_proto::agent_registry::v1::{
    Agent, AgentData, CreateAgentRequest, CreateSkillRequest, DeleteAgentRequest, DeleteAgentResponse,
    DeleteSkillRequest, GetAgentRequest, GetSkillRequest, ListAgentsRequest, ListSkillsRequest, ModelConfig, Skill,
    UpdateAgentRequest, get_agent_request,
};
use getlood_proto::common::v1::PageRequest;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::agent_cache::CachedAgent;
use crate::caller::{Caller, unary};
use crate::extract::{ApiJson, ApiQuery};
use crate::proto_json::timestamp;
use crate::rest::{IdempotencyKey, IfMatch, PageQuery, VersionQuery, page_fields, with_etag};
use crate::{AppState, openai, upstream};

const SERVICE: &str = "agent-registry";

/// Most agents `/v1/models` walks through (pages of 500), so one request stays bounded.
const MAX_MODEL_PAGES: usize = 10;

/// The data an agent reads.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentDataJson {
    /// Knowledge bases of the tenant's project.
    knowledge_bases: Vec<String>,
    /// Tables as `<integration>.<table>`.
    tables: Vec<String>,
}

impl AgentDataJson {
    fn of(data: Option<&AgentData>) -> Self {
        let d = data.cloned().unwrap_or_default();
        Self { knowledge_bases: d.knowledge_bases, tables: d.tables }
    }
}

/// The model behind an agent; the API key is never returned, only whether one is stored.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelJson {
    /// Base URL of an OpenAI-compatible endpoint, if any.
    base_url: Option<String>,
    /// True when an API key is stored for the agent.
    has_api_key: bool,
    /// Model name at the provider.
    model_name: String,
    /// Provider name as MindsDB knows it (`openai`, `anthropic`, `ollama`, ...).
    provider: String,
}

/// An agent as REST returns it (the API key never leaves the registry).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Agent)]
pub(crate) struct AgentJson {
    /// RFC 3339 creation time.
    #[schema(format = DateTime)]
    created_at: Option<String>,
    /// Data the agent reads besides its skills'.
    data: AgentDataJson,
    description: String,
    /// The agent's own data plus its skills'.
    effective_data: AgentDataJson,
    /// The prompt template with the skills' fragments appended.
    effective_prompt_template: String,
    /// Server-assigned id (UUID).
    id: String,
    /// Free-form labels (`"default": "true"` marks the tenant's default agent).
    metadata: BTreeMap<String, String>,
    model: Option<ModelJson>,
    /// Unique within the tenant, `^[a-z][a-z0-9_]{0,62}$`; immutable.
    name: String,
    /// User id of the creator.
    owner: String,
    prompt_template: String,
    /// Skill names of the tenant's catalogue.
    skills: Vec<String>,
    /// RFC 3339 time of the last change.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// Incremented on every change; also the `ETag`.
    version: i64,
}

/// An agent as REST returns it (the API key never leaves the registry).
pub(crate) fn agent_json(a: &Agent) -> AgentJson {
    AgentJson {
        created_at: timestamp(a.created_at.as_ref()),
        data: AgentDataJson::of(a.data.as_ref()),
        description: a.description.clone(),
        effective_data: AgentDataJson::of(a.effective_data.as_ref()),
        effective_prompt_template: a.effective_prompt_template.clone(),
        id: a.id.clone(),
        metadata: a.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        model: a.model.as_ref().map(|m| ModelJson {
            base_url: m.base_url.clone(),
            has_api_key: m.has_api_key,
            model_name: m.model_name.clone(),
            provider: m.provider.clone(),
        }),
        name: a.name.clone(),
        owner: a.owner.clone(),
        prompt_template: a.prompt_template.clone(),
        skills: a.skills.clone(),
        updated_at: timestamp(a.updated_at.as_ref()),
        version: a.version,
    }
}

/// A skill of the tenant's catalogue.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Skill)]
pub(crate) struct SkillJson {
    /// RFC 3339 creation time.
    #[schema(format = DateTime)]
    created_at: Option<String>,
    description: String,
    /// Knowledge bases the skill gives an agent.
    knowledge_bases: Vec<String>,
    /// Unique within the tenant, e.g. `ui-generation`.
    name: String,
    /// Prompt text appended to the agent's prompt template.
    prompt_fragment: String,
    /// Tables the skill gives an agent.
    tables: Vec<String>,
    /// RFC 3339 time of the last change.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// Incremented on every change; also the `ETag`.
    version: i64,
}

fn skill_json(s: &Skill) -> SkillJson {
    SkillJson {
        created_at: timestamp(s.created_at.as_ref()),
        description: s.description.clone(),
        knowledge_bases: s.knowledge_bases.clone(),
        name: s.name.clone(),
        prompt_fragment: s.prompt_fragment.clone(),
        tables: s.tables.clone(),
        updated_at: timestamp(s.updated_at.as_ref()),
        version: s.version,
    }
}

/// `GET /api/v1/agents` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentList {
    agents: Vec<AgentJson>,
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
}

/// `GET /api/v1/skills` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SkillList {
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    skills: Vec<SkillJson>,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
}

/// One model of `GET /v1/models` (OpenAI's model object).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelEntry {
    /// Creation time, seconds since the epoch (0 for `getlood`).
    created: i64,
    /// The agent's description; absent on `getlood`.
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The agent name to pass as `model`, or `getlood` for automatic selection.
    id: String,
    /// Always `model`.
    object: &'static str,
    /// The agent's creator, or `getlood`.
    owned_by: String,
}

/// `GET /v1/models` answer (OpenAI's list object).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ModelList {
    data: Vec<ModelEntry>,
    /// Always `list`.
    object: &'static str,
}

/// The writable fields of an agent; output-only fields a client echoes back are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = AgentInput)]
pub(crate) struct AgentBody {
    /// Unique within the tenant, `^[a-z][a-z0-9_]{0,62}$`; immutable after creation.
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// The LLM behind the agent; required on create.
    model: Option<ModelBody>,
    /// Skill names of the tenant's catalogue.
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default)]
    prompt_template: String,
    /// Data the agent reads besides its skills'.
    data: Option<DataBody>,
    /// Free-form labels.
    #[serde(default)]
    metadata: HashMap<String, String>,
    /// Optimistic concurrency for PUT, when not given as `If-Match`.
    expected_version: Option<i64>,
}

/// The model of an agent write.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ModelInput)]
struct ModelBody {
    /// Provider name as MindsDB knows it (`openai`, `anthropic`, `ollama`, ...).
    #[serde(default)]
    provider: String,
    /// Model name at the provider.
    #[serde(default)]
    model_name: String,
    /// Base URL of an OpenAI-compatible endpoint (http or https, no private addresses).
    base_url: Option<String>,
    /// The provider API key; stored, never returned.
    #[serde(default)]
    api_key: String,
}

/// The data of an agent write.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(as = AgentDataInput)]
struct DataBody {
    /// Tables as `<integration>.<table>`.
    #[serde(default)]
    tables: Vec<String>,
    /// Knowledge bases of the tenant's project.
    #[serde(default)]
    knowledge_bases: Vec<String>,
}

impl AgentBody {
    fn into_agent(self, id: String) -> Agent {
        Agent {
            id,
            name: self.name,
            description: self.description,
            model: self.model.map(|m| ModelConfig {
                provider: m.provider,
                model_name: m.model_name,
                base_url: m.base_url,
                api_key: m.api_key,
                has_api_key: false,
            }),
            skills: self.skills,
            prompt_template: self.prompt_template,
            data: self.data.map(|d| AgentData { tables: d.tables, knowledge_bases: d.knowledge_bases }),
            metadata: self.metadata,
            ..Agent::default()
        }
    }
}

/// `GET /v1/models`: "getlood" (automatic selection) first, then the tenant's agents by name.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    description = "The models a chat completion may name: `getlood` (automatic selection) first, then the tenant's agents. Errors carry OpenAI's `error` object as well.",
    responses((status = 200, description = "OpenAI's model list", body = ModelList)))]
pub(crate) async fn list_models(State(state): State<AppState>, caller: Caller) -> Response {
    match models(&state, caller.principal(), caller.request_id()).await {
        Ok(agents) => {
            let auto = ModelEntry {
                created: 0,
                description: None,
                id: "getlood".to_owned(),
                object: "model",
                owned_by: "getlood".to_owned(),
            };
            let mut data = vec![auto];
            data.extend(agents.iter().map(|a| ModelEntry {
                created: a.created_at.as_ref().map_or(0, |t| t.seconds),
                description: Some(a.description.clone()),
                id: a.name.clone(),
                object: "model",
                owned_by: if a.owner.is_empty() { "getlood".to_owned() } else { a.owner.clone() },
            }));
            Json(ModelList { data, object: "list" }).into_response()
        }
        Err(err) => openai::error_response(&err),
    }
}

/// Every agent of the caller's tenant, page by page (bounded).
pub(crate) async fn models(
    state: &AppState,
    principal: &Principal,
    request_id: Option<&str>,
) -> Result<Vec<Agent>, ApiError> {
    let mut agents = Vec::new();
    let mut token = String::new();
    for _ in 0..MAX_MODEL_PAGES {
        let req = ListAgentsRequest {
            page: Some(PageRequest { page_size: 500, page_token: token }),
            ..ListAgentsRequest::default()
        };
        let req = upstream::request(principal, request_id, req);
        let resp = unary(SERVICE, state.upstreams.agent_registry().list_agents(req)).await?;
        agents.extend(resp.agents);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    Ok(agents)
}

/// `DELETE /api/v1/agents/{id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentDeleted {
    /// Always true.
    deleted: bool,
    id: String,
    /// The version the agent had when it was deleted.
    version: i64,
}

/// `DELETE /api/v1/skills/{name}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SkillDeleted {
    /// Always true.
    deleted: bool,
    name: String,
}

/// `GET /api/v1/agents`.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents", params(PageQuery),
    responses((status = 200, description = "A page of the tenant's agents, by name", body = AgentList)))]
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<AgentList>, ApiError> {
    let req = ListAgentsRequest { page: query.page(), ..ListAgentsRequest::default() };
    let resp = unary(SERVICE, state.upstreams.agent_registry().list_agents(caller.request(req))).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(AgentList { agents: resp.agents.iter().map(agent_json).collect(), next_page_token, total_size }))
}

/// `POST /api/v1/agents`: 201 with the agent and its `ETag`.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents", params(IdempotencyKey), request_body = AgentBody,
    responses((status = 201, description = "The created agent", body = AgentJson, headers(("ETag" = String, description = "The agent's version")))))]
pub(crate) async fn create_agent(
    State(state): State<AppState>,
    caller: Caller,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<Response, ApiError> {
    let req = CreateAgentRequest { agent: Some(body.into_agent(String::new())), request_id: key.or_empty() };
    let resp = unary(SERVICE, state.upstreams.agent_registry_writes().create_agent(caller.request(req))).await?;
    let agent = resp.agent.unwrap_or_default();
    Ok(with_etag(StatusCode::CREATED, agent.version, agent_json(&agent)))
}

/// `GET /api/v1/agents/{id}`: another tenant's agent is 404 like a missing one. Served from the
/// replica's response cache when it can be (see `agent_cache`), with `If-None-Match` answered by
/// 304.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id"),
        ("If-None-Match" = Option<String>, Header, description = "An `ETag` the client holds: 304 when it is current")),
    responses(
        (status = 200, description = "The agent", body = AgentJson, headers(("ETag" = String, description = "The agent's version"))),
        (status = 304, description = "The agent is still at the version `If-None-Match` names")))]
pub(crate) async fn get_agent(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = &caller.principal().tenant;
    if let Some(hit) = state.agents.get(tenant, &id) {
        return Ok(cached_response(&headers, &hit));
    }
    let generation = state.agents.generation();
    let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Id(id.clone())) };
    let resp = unary(SERVICE, state.upstreams.agent_registry().get_agent(caller.request(req))).await?;
    let agent = resp.agent.unwrap_or_default();
    let body = serde_json::to_vec(&agent_json(&agent)).map_err(|e| ApiError::internal(&e))?;
    let value = CachedAgent { version: agent.version, body: Bytes::from(body) };
    let response = cached_response(&headers, &value);
    // Only under the canonical id, the one invalidation events carry.
    if agent.id == id {
        state.agents.fill(generation, tenant, &id, value);
    }
    Ok(response)
}

/// The response of a cached agent read: 304 when `If-None-Match` names its version.
fn cached_response(headers: &HeaderMap, agent: &CachedAgent) -> Response {
    let etag = format!("\"{}\"", agent.version);
    let not_modified = headers
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag || t.trim() == "*"));
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, [(http::header::CONTENT_TYPE, "application/json")], agent.body.clone()).into_response()
    };
    if let Ok(value) = http::HeaderValue::from_str(&etag) {
        response.headers_mut().insert(http::header::ETAG, value);
    }
    response
}

/// `PUT /api/v1/agents/{id}`: replaces every mutable field; a stale `If-Match` (or
/// `expected_version`) is 409.
#[utoipa::path(put, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id"), IfMatch), request_body = AgentBody,
    responses((status = 200, description = "The updated agent", body = AgentJson, headers(("ETag" = String, description = "The agent's new version")))))]
pub(crate) async fn update_agent(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<Response, ApiError> {
    let expected_version = if_match.or(body.expected_version)?;
    let agent = replace_agent(&state, &caller, body.into_agent(id), expected_version).await?;
    Ok(with_etag(StatusCode::OK, agent.version, agent_json(&agent)))
}

/// Replaces every mutable field of `agent` (an empty mask, which is what PUT means), and drops
/// it from this replica's read cache: shared by REST and GraphQL.
pub(crate) async fn replace_agent(
    state: &AppState,
    caller: &Caller,
    agent: Agent,
    expected_version: i64,
) -> Result<Agent, ApiError> {
    let req = UpdateAgentRequest { agent: Some(agent), update_mask: None, expected_version };
    let resp = unary(SERVICE, state.upstreams.agent_registry_writes().update_agent(caller.request(req))).await?;
    let agent = resp.agent.unwrap_or_default();
    // Read-your-writes on this replica without waiting for the event.
    state.agents.invalidate(&caller.principal().tenant, &agent.id);
    Ok(agent)
}

/// Deletes agent `id` and drops it from this replica's read cache: shared by REST and GraphQL.
pub(crate) async fn remove_agent(
    state: &AppState,
    caller: &Caller,
    id: String,
    expected_version: i64,
) -> Result<DeleteAgentResponse, ApiError> {
    let req = DeleteAgentRequest { id: id.clone(), expected_version };
    let resp = unary(SERVICE, state.upstreams.agent_registry_writes().delete_agent(caller.request(req))).await?;
    state.agents.invalidate(&caller.principal().tenant, &id);
    Ok(resp)
}

/// `DELETE /api/v1/agents/{id}`, with `If-Match` or `?expected_version=`.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id"), IfMatch, VersionQuery),
    responses((status = 200, description = "The agent is deleted", body = AgentDeleted)))]
pub(crate) async fn delete_agent(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<AgentDeleted>, ApiError> {
    let resp = remove_agent(&state, &caller, id, if_match.or(query.expected_version)?).await?;
    Ok(Json(AgentDeleted { deleted: true, id: resp.id, version: resp.version }))
}

/// The writable fields of a skill.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = SkillInput)]
pub(crate) struct SkillBody {
    /// Unique within the tenant, e.g. `ui-generation`.
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// Tables the skill gives an agent, as `<integration>.<table>`.
    #[serde(default)]
    tables: Vec<String>,
    /// Knowledge bases the skill gives an agent.
    #[serde(default)]
    knowledge_bases: Vec<String>,
    /// Prompt text appended to the agent's prompt template.
    #[serde(default)]
    prompt_fragment: String,
}

/// `GET /api/v1/skills`.
#[utoipa::path(get, path = "/api/v1/skills", tag = "skills", params(PageQuery),
    responses((status = 200, description = "A page of the tenant's skills, by name", body = SkillList)))]
pub(crate) async fn list_skills(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<SkillList>, ApiError> {
    let req = ListSkillsRequest { page: query.page() };
    let resp = unary(SERVICE, state.upstreams.agent_registry().list_skills(caller.request(req))).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(SkillList { next_page_token, skills: resp.skills.iter().map(skill_json).collect(), total_size }))
}

/// `POST /api/v1/skills`: 201 with the skill.
#[utoipa::path(post, path = "/api/v1/skills", tag = "skills", request_body = SkillBody,
    responses((status = 201, description = "The created skill", body = SkillJson, headers(("ETag" = String, description = "The skill's version")))))]
pub(crate) async fn create_skill(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SkillBody>,
) -> Result<Response, ApiError> {
    let skill = Skill {
        name: body.name,
        description: body.description,
        tables: body.tables,
        knowledge_bases: body.knowledge_bases,
        prompt_fragment: body.prompt_fragment,
        ..Skill::default()
    };
    let req = CreateSkillRequest { skill: Some(skill) };
    let resp = unary(SERVICE, state.upstreams.agent_registry().create_skill(caller.request(req))).await?;
    Ok(skill_response(StatusCode::CREATED, resp.skill))
}

/// `GET /api/v1/skills/{name}`.
#[utoipa::path(get, path = "/api/v1/skills/{name}", tag = "skills",
    params(("name" = String, Path, description = "The skill's name")),
    responses((status = 200, description = "The skill", body = SkillJson, headers(("ETag" = String, description = "The skill's version")))))]
pub(crate) async fn get_skill(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let resp =
        unary(SERVICE, state.upstreams.agent_registry().get_skill(caller.request(GetSkillRequest { name }))).await?;
    Ok(skill_response(StatusCode::OK, resp.skill))
}

/// A skill as a response with its `ETag`.
fn skill_response(status: StatusCode, skill: Option<Skill>) -> Response {
    let skill = skill.unwrap_or_default();
    with_etag(status, skill.version, skill_json(&skill))
}

/// `DELETE /api/v1/skills/{name}`, with `If-Match` or `?expected_version=`.
#[utoipa::path(delete, path = "/api/v1/skills/{name}", tag = "skills",
    params(("name" = String, Path, description = "The skill's name"), IfMatch, VersionQuery),
    responses((status = 200, description = "The skill is deleted", body = SkillDeleted)))]
pub(crate) async fn delete_skill(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<VersionQuery>,
) -> Result<Json<SkillDeleted>, ApiError> {
    let req = DeleteSkillRequest { name, expected_version: if_match.or(query.expected_version)? };
    let resp = unary(SERVICE, state.upstreams.agent_registry().delete_skill(caller.request(req))).await?;
    Ok(Json(SkillDeleted { deleted: true, name: resp.name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    use crate::rest::assert_sorted_keys;

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced.
    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        let ts = Some(prost_types::Timestamp { seconds: 1_767_225_600, nanos: 0 });
        let agent = Agent {
            id: "a1".into(),
            name: "analyst".into(),
            description: "d".into(),
            model: Some(ModelConfig {
                provider: "openai".into(),
                model_name: "m".into(),
                base_url: None,
                api_key: "secret".into(),
                has_api_key: true,
            }),
            skills: vec!["s".into()],
            prompt_template: "p".into(),
            data: Some(AgentData { tables: vec!["files.t".into()], knowledge_bases: vec![] }),
            metadata: HashMap::from([("z".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())]),
            version: 3,
            owner: "u".into(),
            created_at: ts,
            updated_at: None,
            effective_data: None,
            effective_prompt_template: "pp".into(),
        };
        let old = json!({
            "id": "a1", "name": "analyst", "description": "d",
            "model": {"provider": "openai", "model_name": "m", "base_url": null, "has_api_key": true},
            "skills": ["s"], "prompt_template": "p",
            "data": {"tables": ["files.t"], "knowledge_bases": []},
            "metadata": {"z": "1", "a": "2"}, "version": 3, "owner": "u",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": null,
            "effective_data": {"tables": [], "knowledge_bases": []}, "effective_prompt_template": "pp",
        });
        assert_eq!(serde_json::to_string(&agent_json(&agent)).unwrap(), old.to_string());
        let skill = Skill { name: "s".into(), version: 2, created_at: ts, ..Skill::default() };
        assert_sorted_keys(&skill_json(&skill));
        assert_sorted_keys(&AgentList {
            agents: vec![agent_json(&agent)],
            next_page_token: String::new(),
            total_size: Some(1),
        });
        assert_sorted_keys(&SkillList {
            next_page_token: String::new(),
            skills: vec![skill_json(&skill)],
            total_size: None,
        });
        let auto = ModelEntry {
            created: 0,
            description: None,
            id: "getlood".to_owned(),
            object: "model",
            owned_by: "getlood".to_owned(),
        };
        let old = json!({"id": "getlood", "object": "model", "created": 0, "owned_by": "getlood"});
        assert_eq!(serde_json::to_string(&auto).unwrap(), old.to_string());
        assert_sorted_keys(&ModelList { data: vec![auto], object: "list" });
        let deleted = AgentDeleted { deleted: true, id: "a".to_owned(), version: 3 };
        let old = json!({"id": "a", "version": 3, "deleted": true});
        assert_eq!(serde_json::to_string(&deleted).unwrap(), old.to_string());
        let deleted = SkillDeleted { deleted: true, name: "s".to_owned() };
        let old = json!({"name": "s", "deleted": true});
        assert_eq!(serde_json::to_string(&deleted).unwrap(), old.to_string());
    }
}
