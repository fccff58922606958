//! `/v1/models` and the REST `/api/v1/agents` and `/api/v1/skills` routes: thin JSON mappings
//! onto the agent registry's gRPC API, called with the caller's own token.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use getlood_auth::Principal;
use getlood_common::ApiError;
use getlood_proto::agent_registry::v1::{
    Agent, AgentData, CreateAgentRequest, CreateSkillRequest, DeleteAgentRequest, DeleteSkillRequest, GetAgentRequest,
    GetSkillRequest, ListAgentsRequest, ListSkillsRequest, ModelConfig, Skill, UpdateAgentRequest, get_agent_request,
};
use getlood_proto::common::v1::PageRequest;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent_cache::CachedAgent;
use crate::caller::{Caller, unary};
use crate::extract::ApiJson;
use crate::proto_json::timestamp_json;
use crate::rest::{IdempotencyKey, IfMatch, PageQuery, VersionQuery, list_json, with_etag};
use crate::{AppState, openai, upstream};

const SERVICE: &str = "agent-registry";

/// Most agents `/v1/models` walks through (pages of 500), so one request stays bounded.
const MAX_MODEL_PAGES: usize = 10;

fn data_json(data: Option<&AgentData>) -> Value {
    let d = data.cloned().unwrap_or_default();
    json!({"tables": d.tables, "knowledge_bases": d.knowledge_bases})
}

/// An agent as REST returns it (the API key never leaves the registry).
pub(crate) fn agent_json(a: &Agent) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "description": a.description,
        "model": a.model.as_ref().map(|m| json!({
            "provider": m.provider,
            "model_name": m.model_name,
            "base_url": m.base_url,
            "has_api_key": m.has_api_key,
        })),
        "skills": a.skills,
        "prompt_template": a.prompt_template,
        "data": data_json(a.data.as_ref()),
        "metadata": a.metadata,
        "version": a.version,
        "owner": a.owner,
        "created_at": timestamp_json(a.created_at.as_ref()),
        "updated_at": timestamp_json(a.updated_at.as_ref()),
        "effective_data": data_json(a.effective_data.as_ref()),
        "effective_prompt_template": a.effective_prompt_template,
    })
}

fn skill_json(s: &Skill) -> Value {
    json!({
        "name": s.name,
        "description": s.description,
        "tables": s.tables,
        "knowledge_bases": s.knowledge_bases,
        "prompt_fragment": s.prompt_fragment,
        "version": s.version,
        "created_at": timestamp_json(s.created_at.as_ref()),
        "updated_at": timestamp_json(s.updated_at.as_ref()),
    })
}

/// The writable fields of an agent; output-only fields a client echoes back are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct AgentBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    model: Option<ModelBody>,
    #[serde(default)]
    skills: Vec<String>,
    #[serde(default)]
    prompt_template: String,
    data: Option<DataBody>,
    #[serde(default)]
    metadata: HashMap<String, String>,
    /// Optimistic concurrency for PUT, when not given as `If-Match`.
    expected_version: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ModelBody {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model_name: String,
    base_url: Option<String>,
    #[serde(default)]
    api_key: String,
}

#[derive(Debug, Default, Deserialize)]
struct DataBody {
    #[serde(default)]
    tables: Vec<String>,
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
pub(crate) async fn list_models(State(state): State<AppState>, caller: Caller) -> Response {
    match models(&state, caller.principal(), caller.request_id()).await {
        Ok(agents) => {
            let mut data = vec![json!({"id": "getlood", "object": "model", "created": 0, "owned_by": "getlood"})];
            data.extend(agents.iter().map(|a| {
                json!({
                    "id": a.name,
                    "object": "model",
                    "created": a.created_at.as_ref().map_or(0, |t| t.seconds),
                    "owned_by": if a.owner.is_empty() { "getlood" } else { a.owner.as_str() },
                    "description": a.description,
                })
            }));
            Json(json!({"object": "list", "data": data})).into_response()
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
#[derive(Debug, Serialize)]
pub(crate) struct AgentDeleted {
    deleted: bool,
    id: String,
    version: i64,
}

/// `DELETE /api/v1/skills/{name}` answer.
#[derive(Debug, Serialize)]
pub(crate) struct SkillDeleted {
    deleted: bool,
    name: String,
}

/// `GET /api/v1/agents`.
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let req = ListAgentsRequest { page: query.page(), ..ListAgentsRequest::default() };
    let resp = unary(SERVICE, state.upstreams.agent_registry().list_agents(caller.request(req))).await?;
    Ok(list_json("agents", resp.agents.iter().map(agent_json).collect(), resp.page))
}

/// `POST /api/v1/agents`: 201 with the agent and its `ETag`.
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
    let value = CachedAgent { version: agent.version, body: Bytes::from(agent_json(&agent).to_string()) };
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
pub(crate) async fn update_agent(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<Response, ApiError> {
    let expected_version = if_match.or(body.expected_version)?;
    // Empty mask: every mutable field, which is what PUT means.
    let req = UpdateAgentRequest { agent: Some(body.into_agent(id)), update_mask: None, expected_version };
    let resp = unary(SERVICE, state.upstreams.agent_registry_writes().update_agent(caller.request(req))).await?;
    let agent = resp.agent.unwrap_or_default();
    // Read-your-writes on this replica without waiting for the event.
    state.agents.invalidate(&caller.principal().tenant, &agent.id);
    Ok(with_etag(StatusCode::OK, agent.version, agent_json(&agent)))
}

/// `DELETE /api/v1/agents/{id}`, with `If-Match` or `?expected_version=`.
pub(crate) async fn delete_agent(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<AgentDeleted>, ApiError> {
    let req = DeleteAgentRequest { id: id.clone(), expected_version: if_match.or(query.expected_version)? };
    let resp = unary(SERVICE, state.upstreams.agent_registry_writes().delete_agent(caller.request(req))).await?;
    state.agents.invalidate(&caller.principal().tenant, &id);
    Ok(Json(AgentDeleted { deleted: true, id: resp.id, version: resp.version }))
}

/// The writable fields of a skill.
#[derive(Debug, Deserialize)]
pub(crate) struct SkillBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    knowledge_bases: Vec<String>,
    #[serde(default)]
    prompt_fragment: String,
}

/// `GET /api/v1/skills`.
pub(crate) async fn list_skills(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let req = ListSkillsRequest { page: query.page() };
    let resp = unary(SERVICE, state.upstreams.agent_registry().list_skills(caller.request(req))).await?;
    Ok(list_json("skills", resp.skills.iter().map(skill_json).collect(), resp.page))
}

/// `POST /api/v1/skills`: 201 with the skill.
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
pub(crate) async fn delete_skill(
    State(state): State<AppState>,
    caller: Caller,
    if_match: IfMatch,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<SkillDeleted>, ApiError> {
    let req = DeleteSkillRequest { name, expected_version: if_match.or(query.expected_version)? };
    let resp = unary(SERVICE, state.upstreams.agent_registry().delete_skill(caller.request(req))).await?;
    Ok(Json(SkillDeleted { deleted: true, name: resp.name }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced.
    #[test]
    fn typed_bodies_are_written_as_the_json_objects_were() {
        let deleted = AgentDeleted { deleted: true, id: "a".to_owned(), version: 3 };
        let old = json!({"id": "a", "version": 3, "deleted": true});
        assert_eq!(serde_json::to_string(&deleted).unwrap(), old.to_string());
        let deleted = SkillDeleted { deleted: true, name: "s".to_owned() };
        let old = json!({"name": "s", "deleted": true});
        assert_eq!(serde_json::to_string(&deleted).unwrap(), old.to_string());
    }
}
