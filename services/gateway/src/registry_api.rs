//! `/v1/models` and the REST `/api/v1/agents` and `/api/v1/skills` routes: thin JSON mappings
//! onto the agent registry's gRPC API, called with the caller's own token.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
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
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent_cache::CachedAgent;
use crate::chat::upstream_error;
use crate::extract::ApiJson;
use crate::proto_json::timestamp_json;
use crate::rest::{PageQuery, VersionQuery, idempotency_key, if_match, list_json, request_id, with_etag};
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
pub(crate) async fn list_models(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Response {
    match models(&state, &principal, request_id(&headers)).await {
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
        let resp = state
            .upstreams
            .agent_registry()
            .list_agents(upstream::request(principal, request_id, req))
            .await
            .map_err(|s| upstream_error(SERVICE, s))?
            .into_inner();
        agents.extend(resp.agents);
        token = resp.page.map(|p| p.next_page_token).unwrap_or_default();
        if token.is_empty() {
            break;
        }
    }
    Ok(agents)
}

/// `GET /api/v1/agents`.
pub(crate) async fn list_agents(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let req = ListAgentsRequest { page: query.page(), ..ListAgentsRequest::default() };
    let resp = state
        .upstreams
        .agent_registry()
        .list_agents(upstream::request(&principal, request_id(&headers), req))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner();
    Ok(list_json("agents", resp.agents.iter().map(agent_json).collect(), resp.page))
}

/// `POST /api/v1/agents`: 201 with the agent and its `ETag`.
pub(crate) async fn create_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<Response, ApiError> {
    let req = CreateAgentRequest { agent: Some(body.into_agent(String::new())), request_id: idempotency_key(&headers) };
    let agent = state
        .upstreams
        .agent_registry()
        .create_agent(upstream::request(&principal, request_id(&headers), req))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner()
        .agent
        .unwrap_or_default();
    Ok(with_etag(StatusCode::CREATED, agent.version, agent_json(&agent)))
}

/// `GET /api/v1/agents/{id}`: another tenant's agent is 404 like a missing one. Served from the
/// replica's response cache when it can be (see `agent_cache`), with `If-None-Match` answered by
/// 304.
pub(crate) async fn get_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let cached = match state.agents.get(&principal.tenant, &id) {
        Some(hit) => hit,
        None => {
            let generation = state.agents.generation();
            let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Id(id.clone())) };
            let agent = state
                .upstreams
                .agent_registry()
                .get_agent(upstream::request(&principal, request_id(&headers), req))
                .await
                .map_err(|s| upstream_error(SERVICE, s))?
                .into_inner()
                .agent
                .unwrap_or_default();
            let value = CachedAgent { version: agent.version, body: Bytes::from(agent_json(&agent).to_string()) };
            let response = cached_response(&headers, &value);
            // Only under the canonical id, the one invalidation events carry.
            if agent.id == id {
                state.agents.fill(generation, &principal.tenant, &id, value);
            }
            return Ok(response);
        }
    };
    Ok(cached_response(&headers, &cached))
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
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> Result<Response, ApiError> {
    let expected_version = if_match(&headers)?.or(body.expected_version).unwrap_or(0);
    let req = UpdateAgentRequest {
        agent: Some(body.into_agent(id)),
        // Empty mask: every mutable field, which is what PUT means.
        update_mask: None,
        expected_version,
    };
    let agent = state
        .upstreams
        .agent_registry()
        .update_agent(upstream::request(&principal, request_id(&headers), req))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner()
        .agent
        .unwrap_or_default();
    // Read-your-writes on this replica without waiting for the event.
    state.agents.invalidate(&principal.tenant, &agent.id);
    Ok(with_etag(StatusCode::OK, agent.version, agent_json(&agent)))
}

/// `DELETE /api/v1/agents/{id}`, with `If-Match` or `?expected_version=`.
pub(crate) async fn delete_agent(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let expected_version = if_match(&headers)?.or(query.expected_version).unwrap_or(0);
    let resp = state
        .upstreams
        .agent_registry()
        .delete_agent(upstream::request(
            &principal,
            request_id(&headers),
            DeleteAgentRequest { id: id.clone(), expected_version },
        ))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner();
    state.agents.invalidate(&principal.tenant, &id);
    Ok(Json(json!({"id": resp.id, "version": resp.version, "deleted": true})))
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
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let resp = state
        .upstreams
        .agent_registry()
        .list_skills(upstream::request(&principal, request_id(&headers), ListSkillsRequest { page: query.page() }))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner();
    Ok(list_json("skills", resp.skills.iter().map(skill_json).collect(), resp.page))
}

/// `POST /api/v1/skills`: 201 with the skill.
pub(crate) async fn create_skill(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
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
    let skill = state
        .upstreams
        .agent_registry()
        .create_skill(upstream::request(&principal, request_id(&headers), CreateSkillRequest { skill: Some(skill) }))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner()
        .skill
        .unwrap_or_default();
    Ok(with_etag(StatusCode::CREATED, skill.version, skill_json(&skill)))
}

/// `GET /api/v1/skills/{name}`.
pub(crate) async fn get_skill(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let skill = state
        .upstreams
        .agent_registry()
        .get_skill(upstream::request(&principal, request_id(&headers), GetSkillRequest { name }))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner()
        .skill
        .unwrap_or_default();
    Ok(with_etag(StatusCode::OK, skill.version, skill_json(&skill)))
}

/// `DELETE /api/v1/skills/{name}`, with `If-Match` or `?expected_version=`.
pub(crate) async fn delete_skill(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let expected_version = if_match(&headers)?.or(query.expected_version).unwrap_or(0);
    let resp = state
        .upstreams
        .agent_registry()
        .delete_skill(upstream::request(
            &principal,
            request_id(&headers),
            DeleteSkillRequest { name, expected_version },
        ))
        .await
        .map_err(|s| upstream_error(SERVICE, s))?
        .into_inner();
    Ok(Json(json!({"name": resp.name, "deleted": true})))
}
