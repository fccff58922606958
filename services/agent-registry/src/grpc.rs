//! `getlood.agent_registry.v1.AgentRegistryService`.

use std::collections::HashSet;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt as _};
use getlood_auth::{Principal, TenantId};
use getlood_common::paging::{decode_page_token, encode_page_token, page_size};
use getlood_common::{ApiError, ErrorCode};
use getlood_events::{Domain, Outbox, Payload, new_envelope};
use getlood_proto::agent_registry::v1::agent_registry_service_server::AgentRegistryService;
use getlood_proto::agent_registry::v1::*;
use getlood_proto::common::v1::{PageResponse, Usage};
use getlood_proto::events::v1::{AgentCreated, AgentDeleted, AgentUpdated};
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::backend::{AgentSpec, Backend, QueryEvent};
use crate::cache::{AgentCache, key_by_id, key_by_name};
use crate::keys::KeyVault;
use crate::model::{check_agent, check_model_change, check_name, check_skill, compile, redact};
use crate::store::{Selector, Store, StoredAgent, mindsdb_name};

/// The registry behind the gRPC API.
#[derive(Clone)]
pub(crate) struct Registry {
    pub store: Store,
    pub cache: AgentCache,
    pub outbox: Outbox,
    pub backend: Backend,
    pub heartbeat: Duration,
    /// Which hosts a model's `base_url` may name (`app.egress`).
    pub egress: getlood_common::egress::EgressPolicy,
    /// Agent writes run on it, detached from the request (see [`Registry::detached`]).
    pub tracker: TaskTracker,
    /// Seals the API keys the registry keeps to put lost MindsDB agents back.
    pub keys: KeyVault,
}

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    getlood_server::principal(req).cloned()
}

/// Page-token kinds: a token of one list is refused by the other.
const PAGE_KIND: &str = "agents";
const SKILL_PAGE_KIND: &str = "skills";

fn parse_id(id: &str) -> Result<Uuid, Status> {
    // A malformed id cannot name an agent of this tenant: NOT_FOUND, like any other unknown id.
    Uuid::parse_str(id)
        .map_err(|_| Status::not_found(format!("agent '{}' not found", id.chars().take(64).collect::<String>())))
}

fn not_found(what: &str) -> Status {
    Status::not_found(format!("agent '{what}' not found"))
}

fn stale(current: i64, expected: i64) -> Status {
    ApiError::new(
        ErrorCode::Aborted,
        format!("agent changed: its version is {current}, the request expected {expected}; re-read and retry"),
    )
    .into()
}

impl Registry {
    /// Looks up an agent through the cache, compiled with its skills.
    pub(crate) async fn load(&self, tenant: &TenantId, selector: &Selector) -> Result<StoredAgent, Status> {
        let key = match selector {
            Selector::Id(id) => key_by_id(tenant, &id.to_string()),
            Selector::Name(name) => key_by_name(tenant, name),
        };
        if let Some(hit) = self.cache.get(&key).await {
            return Ok((*hit).clone());
        }
        let mut stored = self.store.get_agent(tenant, selector).await?.ok_or_else(|| match selector {
            Selector::Id(id) => not_found(&id.to_string()),
            Selector::Name(name) => not_found(name),
        })?;
        let skills = self.store.skills(tenant, &stored.agent.skills).await?;
        compile(&mut stored.agent, &skills);
        self.cache.put(tenant, &stored).await;
        Ok(stored)
    }

    /// The skills `names` must all exist in the tenant's catalogue.
    async fn resolve_skills(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<Skill>, Status> {
        let unique: Vec<String> = names.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
        let found = self.store.skills(tenant, &unique).await?;
        let known: HashSet<&str> = found.iter().map(|s| s.name.as_str()).collect();
        let mut unknown: Vec<&str> = unique.iter().map(String::as_str).filter(|n| !known.contains(n)).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(Status::invalid_argument(format!("unknown skills: {}", unknown.join(", "))));
        }
        Ok(found)
    }

    /// Writes `event` to the outbox in `tx` and commits: the change and its event, or neither.
    async fn commit_with_event(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        event: &getlood_events::EventEnvelope,
    ) -> Result<(), ApiError> {
        self.outbox.enqueue(&mut tx, Domain::Agent, event).await.map_err(crate::store::db_err)?;
        tx.commit().await.map_err(crate::store::db_err)
    }

    /// `agent` compiled with its skills as they are now, for putting MindsDB back after a
    /// failed commit (best effort: a skills read failure compiles without them).
    async fn recompiled(&self, tenant: &TenantId, agent: &Agent) -> Agent {
        let mut agent = agent.clone();
        let skills = self.store.skills(tenant, &agent.skills).await.unwrap_or_default();
        compile(&mut agent, &skills);
        agent
    }

    /// Runs an agent write to its end even if the caller goes away or its deadline passes.
    ///
    /// A write changes MindsDB (a live model check that can take seconds) and then commits the
    /// registry row, undoing the MindsDB change if the commit fails. Dropped half way — tonic
    /// drops a handler whose client cancelled — it would leave a MindsDB agent without a row or
    /// a row without its agent; on the tracker it finishes, and shutdown waits for it.
    async fn detached<T, F>(&self, write: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Status>> + Send + 'static,
    {
        self.tracker.spawn(write).await.map_err(|err| {
            tracing::error!(error = %err, "agent write task failed");
            Status::internal("internal error")
        })?
    }

    /// The API key to give MindsDB when the registry puts `agent` back: none when it has none;
    /// a precise `FAILED_PRECONDITION` when it has one the registry did not keep (an agent
    /// written before keys were kept) or cannot open (another key-encryption key).
    async fn kept_key(&self, tenant: &TenantId, agent: &Agent) -> Result<Option<String>, Status> {
        if !agent.model.as_ref().is_some_and(|m| m.has_api_key) {
            return Ok(None);
        }
        let id = parse_id(&agent.id)?;
        let lost = |why: &str| {
            Status::failed_precondition(format!(
                "agent '{}' is missing from mindsdb (its storage was reset) and cannot be put back: {why}; \
                 update the agent with its model.api_key to provision it again",
                agent.name
            ))
        };
        let stored =
            self.store.api_key(tenant, id).await?.ok_or_else(|| lost("the registry did not keep its api key"))?;
        self.keys.open(tenant.as_str(), &id, &stored).map(Some).map_err(|why| {
            tracing::warn!(tenant = %tenant, agent_id = %id, error = %why, "kept api key does not open");
            lost(&why)
        })
    }

    /// Puts back the MindsDB agent of a registry agent MindsDB no longer has: its storage was
    /// reset under a kept Postgres (a new volume, a new MindsDB), so every question to it would
    /// fail. Rebuilt from the registry's row and skills under the row's lock, so it cannot race
    /// an update or a delete.
    async fn restore(&self, p: &Principal, id: Uuid) -> Result<(), Status> {
        let mut tx = self.store.begin().await?;
        let current = self.store.lock_agent(&mut tx, &p.tenant, id).await?.ok_or_else(|| not_found(&id.to_string()))?;
        let api_key = self.kept_key(&p.tenant, &current.agent).await?;
        let agent = self.recompiled(&p.tenant, &current.agent).await;
        self.backend.recreate(p, &current.mindsdb_name, &Self::spec(&agent, api_key)).await?;
        tx.commit().await.map_err(crate::store::db_err)?;
        tracing::warn!(tenant = %p.tenant, agent_id = %id, "mindsdb agent was missing: restored from the registry");
        Ok(())
    }

    async fn create(&self, req: Request<CreateAgentRequest>) -> Result<Response<CreateAgentResponse>, Status> {
        let p = principal(&req)?;
        let agent = req.into_inner().agent.ok_or_else(|| Status::invalid_argument("agent is required"))?;
        check_agent(&agent, &self.egress)?;
        let skills = self.resolve_skills(&p.tenant, &agent.skills).await?;
        let api_key = agent.model.as_ref().map(|m| m.api_key.clone()).filter(|k| !k.is_empty());

        let id = Uuid::now_v7();
        let name = mindsdb_name(&id);
        let kept_key = api_key.as_deref().map(|k| self.keys.store(p.tenant.as_str(), &id, k)).transpose()?;
        let mut tx = self.store.begin().await?;
        let mut stored = self.store.insert_agent(&mut tx, &p.tenant, &agent, id, &p.user, kept_key.as_ref()).await?;
        compile(&mut stored.agent, &skills);
        // MindsDB first, inside our transaction: if it refuses, the row is rolled back with it.
        self.backend.create(&p, &name, &Self::spec(&stored.agent, api_key)).await?;
        let event = new_envelope(
            &p.tenant,
            &p.user,
            &stored.agent.id,
            "agent.created",
            Payload::AgentCreated(AgentCreated {
                agent_id: stored.agent.id.clone(),
                name: stored.agent.name.clone(),
                version: stored.agent.version,
                skills: stored.agent.skills.clone(),
            }),
        );
        let committed = self.commit_with_event(tx, &event).await;
        if let Err(err) = committed {
            // No registry row: the MindsDB agent must not outlive it.
            if let Err(undo) = self.backend.delete(&p, &name).await {
                tracing::error!(agent_id = %id, error = %undo, "orphaned mindsdb agent after failed commit");
            }
            return Err(err.into());
        }
        self.outbox.notify();
        self.cache.put(&p.tenant, &stored).await;
        tracing::info!(tenant = %p.tenant, agent_id = %id, name = %stored.agent.name, "agent created");
        Ok(Response::new(CreateAgentResponse { agent: Some(redact(stored.agent)) }))
    }
    async fn update(&self, req: Request<UpdateAgentRequest>) -> Result<Response<UpdateAgentResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let patch = req.agent.ok_or_else(|| Status::invalid_argument("agent is required"))?;
        let id = parse_id(&patch.id)?;
        let mut tx = self.store.begin().await?;
        let current = self.store.lock_agent(&mut tx, &p.tenant, id).await?.ok_or_else(|| not_found(&patch.id))?;
        if req.expected_version != 0 && req.expected_version != current.agent.version {
            return Err(stale(current.agent.version, req.expected_version));
        }
        let paths: Vec<String> = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let mut merged = current.agent.clone();
        let all = paths.is_empty();
        let has = |f: &str| all || paths.iter().any(|p| p == f);
        for path in &paths {
            if !["name", "description", "model", "skills", "prompt_template", "data", "metadata"]
                .contains(&path.as_str())
            {
                return Err(Status::invalid_argument(format!("update_mask path '{path}' is not updatable")));
            }
        }
        if has("name") {
            merged.name = patch.name.clone();
        }
        if has("description") {
            merged.description = patch.description.clone();
        }
        if has("model") {
            merged.model = patch.model.clone();
        }
        if has("skills") {
            merged.skills = patch.skills.clone();
        }
        if has("prompt_template") {
            merged.prompt_template = patch.prompt_template.clone();
        }
        if has("data") {
            merged.data = patch.data.clone();
        }
        if has("metadata") {
            merged.metadata = patch.metadata.clone();
        }
        check_agent(&merged, &self.egress)?;
        let api_key = patch.model.as_ref().map(|m| m.api_key.clone()).filter(|k| !k.is_empty() && has("model"));
        // A stored key never goes to a host it was not given for.
        check_model_change(current.agent.model.as_ref(), merged.model.as_ref(), api_key.is_some())?;
        let skills = self.resolve_skills(&p.tenant, &merged.skills).await?;
        let kept_key = api_key.as_deref().map(|k| self.keys.store(p.tenant.as_str(), &id, k)).transpose()?;
        let mut updated = self.store.update_agent(&mut tx, &p.tenant, &merged, kept_key.as_ref()).await?;
        compile(&mut updated.agent, &skills);
        let spec = Self::spec(&updated.agent, api_key.clone());
        match self.backend.update(&p, &updated.mindsdb_name, &spec).await {
            Ok(()) => {}
            // MindsDB lost the agent (its storage was reset): the update provisions it again,
            // with the key just given or the one the registry kept.
            Err(err) if err.code == ErrorCode::NotFound => {
                let api_key = match api_key {
                    Some(key) => Some(key),
                    None => self.kept_key(&p.tenant, &updated.agent).await?,
                };
                self.backend.recreate(&p, &updated.mindsdb_name, &Self::spec(&updated.agent, api_key)).await?;
                tracing::warn!(tenant = %p.tenant, agent_id = %id, "mindsdb agent was missing: created again by an update");
            }
            Err(err) => return Err(err.into()),
        }
        let event = new_envelope(
            &p.tenant,
            &p.user,
            &updated.agent.id,
            "agent.updated",
            Payload::AgentUpdated(AgentUpdated {
                agent_id: updated.agent.id.clone(),
                name: updated.agent.name.clone(),
                version: updated.agent.version,
                changed_fields: if all { vec!["*".to_owned()] } else { paths.clone() },
                skills: updated.agent.skills.clone(),
            }),
        );
        let committed = self.commit_with_event(tx, &event).await;
        if let Err(err) = committed {
            // Put MindsDB back to the definition the registry still holds.
            let previous = self.recompiled(&p.tenant, &current.agent).await;
            if let Err(undo) = self.backend.update(&p, &current.mindsdb_name, &Self::spec(&previous, None)).await {
                tracing::error!(agent_id = %id, error = %undo, "mindsdb agent diverged after failed commit");
            }
            return Err(err.into());
        }
        self.outbox.notify();
        // The old name's key must go too if the agent was renamed.
        self.cache.invalidate(&p.tenant, &current.agent.id, &current.agent.name).await;
        self.cache.invalidate(&p.tenant, &updated.agent.id, &updated.agent.name).await;
        Ok(Response::new(UpdateAgentResponse { agent: Some(redact(updated.agent)) }))
    }
    async fn delete(&self, req: Request<DeleteAgentRequest>) -> Result<Response<DeleteAgentResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let id = parse_id(&req.id)?;
        let mut tx = self.store.begin().await?;
        let current = self.store.lock_agent(&mut tx, &p.tenant, id).await?.ok_or_else(|| not_found(&req.id))?;
        if req.expected_version != 0 && req.expected_version != current.agent.version {
            return Err(stale(current.agent.version, req.expected_version));
        }
        self.store.delete_agent(&mut tx, &p.tenant, id).await?;
        self.backend.delete(&p, &current.mindsdb_name).await?;
        let event = new_envelope(
            &p.tenant,
            &p.user,
            &current.agent.id,
            "agent.deleted",
            Payload::AgentDeleted(AgentDeleted {
                agent_id: current.agent.id.clone(),
                name: current.agent.name.clone(),
                version: current.agent.version,
            }),
        );
        let committed = self.commit_with_event(tx, &event).await;
        if let Err(err) = committed {
            // The row survives, so its MindsDB agent must come back.
            let previous = self.recompiled(&p.tenant, &current.agent).await;
            if let Err(undo) = self.backend.create(&p, &current.mindsdb_name, &Self::spec(&previous, None)).await {
                tracing::error!(agent_id = %id, error = %undo, "registry row without mindsdb agent after failed commit");
            }
            return Err(err.into());
        }
        self.outbox.notify();
        self.cache.invalidate(&p.tenant, &current.agent.id, &current.agent.name).await;
        Ok(Response::new(DeleteAgentResponse { id: current.agent.id, version: current.agent.version }))
    }
    fn spec(agent: &Agent, api_key: Option<String>) -> AgentSpec {
        let model = agent.model.clone().unwrap_or_default();
        let data = agent.effective_data.clone().unwrap_or_default();
        AgentSpec {
            provider: model.provider,
            model_name: model.model_name,
            base_url: model.base_url,
            api_key,
            prompt_template: agent.effective_prompt_template.clone(),
            tables: data.tables,
            knowledge_bases: data.knowledge_bases,
        }
    }
}

type QueryStream = Pin<Box<dyn Stream<Item = Result<QueryAgentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentRegistryService for Registry {
    async fn create_agent(&self, req: Request<CreateAgentRequest>) -> Result<Response<CreateAgentResponse>, Status> {
        let this = self.clone();
        self.detached(async move { this.create(req).await }).await
    }

    async fn update_agent(&self, req: Request<UpdateAgentRequest>) -> Result<Response<UpdateAgentResponse>, Status> {
        let this = self.clone();
        self.detached(async move { this.update(req).await }).await
    }

    async fn delete_agent(&self, req: Request<DeleteAgentRequest>) -> Result<Response<DeleteAgentResponse>, Status> {
        let this = self.clone();
        self.detached(async move { this.delete(req).await }).await
    }

    async fn get_agent(&self, req: Request<GetAgentRequest>) -> Result<Response<GetAgentResponse>, Status> {
        let p = principal(&req)?;
        let selector = match req.into_inner().selector {
            Some(get_agent_request::Selector::Id(id)) => Selector::Id(parse_id(&id)?),
            Some(get_agent_request::Selector::Name(name)) => Selector::Name(name),
            None => return Err(Status::invalid_argument("id or name is required")),
        };
        let stored = self.load(&p.tenant, &selector).await?;
        Ok(Response::new(GetAgentResponse { agent: Some(redact(stored.agent)) }))
    }

    async fn list_agents(&self, req: Request<ListAgentsRequest>) -> Result<Response<ListAgentsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let page_req = req.page.unwrap_or_default();
        let limit = page_size(page_req.page_size)?;
        let after = decode_page_token(PAGE_KIND, &page_req.page_token)?.unwrap_or_default();
        let rows = self.store.list_agents(&p.tenant, &after, limit + 1, &req.owner, &req.metadata_filter).await?;
        let more = rows.len() as i64 > limit;
        let mut agents: Vec<Agent> = rows.into_iter().take(limit as usize).map(|s| s.agent).collect();
        let skill_names: Vec<String> = agents.iter().flat_map(|a| a.skills.clone()).collect();
        let skills = self.store.skills(&p.tenant, &skill_names).await?;
        for agent in &mut agents {
            let own: Vec<Skill> = skills.iter().filter(|s| agent.skills.contains(&s.name)).cloned().collect();
            compile(agent, &own);
        }
        let next = if more {
            agents.last().map(|a| encode_page_token(PAGE_KIND, &a.name)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListAgentsResponse {
            agents: agents.into_iter().map(redact).collect(),
            page: Some(PageResponse { next_page_token: next, ..Default::default() }),
        }))
    }

    async fn find_agents(&self, req: Request<FindAgentsRequest>) -> Result<Response<FindAgentsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        if req.skills.is_empty() {
            return Err(Status::invalid_argument("skills must name at least one skill"));
        }
        for s in &req.skills {
            check_name("skill", s)?;
        }
        let all = req.match_mode == SkillMatchMode::All as i32;
        let limit = if req.limit <= 0 { 10 } else { i64::from(req.limit.min(100)) };
        let rows = self.store.find_agents(&p.tenant, &req.skills, all, limit).await?;
        let matches = rows
            .into_iter()
            .map(|s| {
                let matched = s.agent.skills.iter().filter(|k| req.skills.contains(k)).cloned().collect();
                AgentMatch { agent: Some(redact(s.agent)), matched_skills: matched }
            })
            .collect();
        Ok(Response::new(FindAgentsResponse { matches }))
    }

    type QueryAgentStream = QueryStream;

    async fn query_agent(&self, req: Request<QueryAgentRequest>) -> Result<Response<Self::QueryAgentStream>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        let selector = match req.agent {
            Some(query_agent_request::Agent::AgentId(id)) => Selector::Id(parse_id(&id)?),
            Some(query_agent_request::Agent::AgentName(name)) => Selector::Name(name),
            None => return Err(Status::invalid_argument("agent_id or agent_name is required")),
        };
        if req.messages.is_empty() {
            return Err(Status::invalid_argument("messages must not be empty"));
        }
        let stored = self.load(&p.tenant, &selector).await?;
        let heartbeat = match req.heartbeat_interval_ms {
            ms if ms > 0 => Duration::from_millis(u64::try_from(ms.max(100)).unwrap_or(1000)),
            _ => self.heartbeat,
        };
        let started = Instant::now();
        let events = match self.backend.query(&p, &stored.mindsdb_name, &req.messages).await {
            Err(err) if err.code == ErrorCode::NotFound => {
                self.restore(&p, parse_id(&stored.agent.id)?).await?;
                self.backend.query(&p, &stored.mindsdb_name, &req.messages).await?
            }
            events => events?,
        };
        let agent = stored.agent;
        let stream = async_stream::stream! {
            let mut events = std::pin::pin!(events);
            let mut first_chunk_ms = None;
            let mut ticker = tokio::time::interval(heartbeat);
            ticker.tick().await;
            loop {
                let next = tokio::select! {
                    next = events.next() => next,
                    _ = ticker.tick() => {
                        yield Ok(QueryAgentResponse { event: Some(query_agent_response::Event::Heartbeat(Heartbeat {
                            sent_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                        })) });
                        continue;
                    }
                };
                match next {
                    Some(Ok(QueryEvent::Status { kind, message })) => {
                        yield Ok(QueryAgentResponse { event: Some(query_agent_response::Event::Status(AgentStatus { kind, message })) });
                    }
                    Some(Ok(QueryEvent::Chunk(delta))) => {
                        first_chunk_ms.get_or_insert(started.elapsed().as_millis() as i64);
                        yield Ok(QueryAgentResponse { event: Some(query_agent_response::Event::Chunk(AnswerChunk { delta })) });
                    }
                    Some(Ok(QueryEvent::Done { answer, usage })) => {
                        yield Ok(QueryAgentResponse { event: Some(query_agent_response::Event::Completed(QueryAgentCompleted {
                            answer,
                            finish_reason: "stop".to_owned(),
                            usage: Some(usage.unwrap_or(Usage { estimated: true, ..Default::default() })),
                            time_to_first_chunk_ms: first_chunk_ms.unwrap_or(started.elapsed().as_millis() as i64),
                            duration_ms: started.elapsed().as_millis() as i64,
                            agent_id: agent.id.clone(),
                            agent_name: agent.name.clone(),
                            agent_version: agent.version,
                        })) });
                        break;
                    }
                    Some(Err(err)) => {
                        let api: ApiError = err;
                        yield Ok(QueryAgentResponse { event: Some(query_agent_response::Event::Error(getlood_proto::common::v1::ErrorDetail {
                            code: error_code(api.code) as i32,
                            message: api.message,
                            ..Default::default()
                        })) });
                        break;
                    }
                    None => {
                        yield Err(Status::unavailable("mindsdb ended the agent stream without an answer"));
                        break;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create_skill(&self, req: Request<CreateSkillRequest>) -> Result<Response<CreateSkillResponse>, Status> {
        let p = principal(&req)?;
        let skill = req.into_inner().skill.ok_or_else(|| Status::invalid_argument("skill is required"))?;
        check_skill(&skill)?;
        let skill = self.store.insert_skill(&p.tenant, &skill).await?;
        Ok(Response::new(CreateSkillResponse { skill: Some(skill) }))
    }

    async fn get_skill(&self, req: Request<GetSkillRequest>) -> Result<Response<GetSkillResponse>, Status> {
        let p = principal(&req)?;
        let name = req.into_inner().name;
        let skill = self.store.skills(&p.tenant, std::slice::from_ref(&name)).await?.pop().ok_or_else(|| {
            Status::not_found(format!("skill '{}' not found", name.chars().take(64).collect::<String>()))
        })?;
        Ok(Response::new(GetSkillResponse { skill: Some(skill) }))
    }

    async fn list_skills(&self, req: Request<ListSkillsRequest>) -> Result<Response<ListSkillsResponse>, Status> {
        let p = principal(&req)?;
        let page_req = req.into_inner().page.unwrap_or_default();
        let limit = page_size(page_req.page_size)?;
        let after = decode_page_token(SKILL_PAGE_KIND, &page_req.page_token)?.unwrap_or_default();
        let mut skills = self.store.list_skills(&p.tenant, &after, limit + 1).await?;
        let more = skills.len() as i64 > limit;
        skills.truncate(limit as usize);
        let next = if more {
            skills.last().map(|s| encode_page_token(SKILL_PAGE_KIND, &s.name)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListSkillsResponse {
            skills,
            page: Some(PageResponse { next_page_token: next, ..Default::default() }),
        }))
    }

    async fn provision_tenant(
        &self,
        req: Request<ProvisionTenantRequest>,
    ) -> Result<Response<ProvisionTenantResponse>, Status> {
        let p = principal(&req)?;
        let project = self.backend.provision(&p).await?;
        tracing::info!(tenant = %p.tenant, project, "tenant project provisioned");
        Ok(Response::new(ProvisionTenantResponse { project }))
    }

    async fn delete_skill(&self, req: Request<DeleteSkillRequest>) -> Result<Response<DeleteSkillResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        match self.store.delete_skill(&p.tenant, &req.name, req.expected_version).await? {
            Ok(true) => Ok(Response::new(DeleteSkillResponse { name: req.name })),
            Ok(false) => {
                Err(Status::not_found(format!("skill '{}' not found", req.name.chars().take(64).collect::<String>())))
            }
            Err(users) => Err(Status::failed_precondition(format!(
                "skill '{}' is used by agents: {}",
                req.name,
                users.join(", ")
            ))),
        }
    }
}

fn error_code(code: ErrorCode) -> getlood_proto::common::v1::ErrorCode {
    use getlood_proto::common::v1::ErrorCode as P;
    match code {
        ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge => P::InvalidArgument,
        ErrorCode::Unauthenticated => P::Unauthenticated,
        ErrorCode::PermissionDenied => P::PermissionDenied,
        ErrorCode::NotFound => P::NotFound,
        ErrorCode::AlreadyExists => P::AlreadyExists,
        ErrorCode::Aborted => P::VersionConflict,
        ErrorCode::FailedPrecondition => P::FailedPrecondition,
        ErrorCode::ResourceExhausted => P::RateLimited,
        ErrorCode::Unavailable => P::Unavailable,
        ErrorCode::DeadlineExceeded => P::DeadlineExceeded,
        ErrorCode::Unimplemented | ErrorCode::Internal => P::Internal,
    }
}
