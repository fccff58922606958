//! The gateway's OpenAI-compatible chat, `/v1/models` and the agent/skill REST routes, against
//! scripted in-test doubles of the pipeline and the agent registry (tonic servers on
//! `127.0.0.1:0`), with the real Redis and NATS of the machine.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::Stream;
use getlood_proto::agent_registry::v1 as reg;
use getlood_proto::agent_registry::v1::agent_registry_service_server::{
    AgentRegistryService, AgentRegistryServiceServer,
};
use getlood_proto::common::v1::{ErrorCode as ProtoErrorCode, ErrorDetail, PageResponse, Usage};
use getlood_proto::pipeline::v1 as pl;
use getlood_proto::pipeline::v1::pipeline_service_server::{PipelineService, PipelineServiceServer};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A unique Redis key prefix, so concurrent tests never share counters.
pub(crate) fn unique_prefix(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("gwtest_{tag}_{}_{nanos}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A token the test gateways accept (they are given the test kit's secret).
pub(crate) fn token(tenant: &str, user: &str) -> String {
    getlood_auth::dev_token(getlood_testkit::TEST_SECRET, "getlood", "getlood", tenant, user, &["member"], 3600)
        .expect("sign token")
}

/// A gateway started in-process with its own settings.
pub(crate) struct TestGateway {
    pub http: String,
    pub grpc: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<getlood_server::Result<()>>,
}

impl TestGateway {
    /// Starts a gateway whose Redis keys live under `prefix`, calling `upstreams` for the
    /// pipeline and agent registry, after `configure` has adjusted its config.
    pub(crate) async fn start(
        prefix: &str,
        upstreams: &Doubles,
        configure: impl FnOnce(&mut getlood_gateway::Config),
    ) -> anyhow::Result<Self> {
        getlood_testkit::init_test_logging();
        let mut config = getlood_gateway::default_config();
        config.redis.url = getlood_testkit::redis_url();
        config.redis.key_prefix = prefix.to_owned();
        config.nats.url = getlood_testkit::nats_url();
        config.readiness_interval = Duration::from_millis(100);
        config.shutdown_timeout = Duration::from_secs(2);
        config.services.pipeline = format!("http://{}", upstreams.pipeline);
        config.services.agent_registry = format!("http://{}", upstreams.registry);
        config.app.sse_heartbeat_interval = Duration::from_millis(200);
        config.auth.hs256_secret = Some(secrecy::SecretString::from(getlood_testkit::TEST_SECRET));
        configure(&mut config);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = getlood_server::Listeners::bind(loopback, loopback, loopback).await?;
        let (http, grpc) = (listeners.http_addr(), listeners.grpc_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(getlood_server::run_service(
            getlood_gateway::SPEC,
            config,
            None,
            listeners,
            shutdown.clone(),
            getlood_gateway::run,
        ));
        Ok(Self { http: format!("http://{http}"), grpc, shutdown, task })
    }

    pub(crate) fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.http)
    }

    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

/// The scripted upstream doubles.
pub(crate) struct Doubles {
    pub pipeline: SocketAddr,
    pub registry: SocketAddr,
    pub seen: Arc<Seen>,
    shutdown: CancellationToken,
}

/// What the doubles received, for assertions on forwarding.
#[derive(Default)]
pub(crate) struct Seen {
    pub authorization: Mutex<Vec<String>>,
    pub agent_names: Mutex<Vec<Option<String>>>,
}

impl Doubles {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let seen = Arc::new(Seen::default());
        let shutdown = CancellationToken::new();
        let pipeline = serve(
            tonic::service::Routes::new(PipelineServiceServer::new(FakePipeline { seen: seen.clone() })),
            shutdown.clone(),
        )
        .await?;
        let registry =
            serve(tonic::service::Routes::new(AgentRegistryServiceServer::new(FakeRegistry::new())), shutdown.clone())
                .await?;
        Ok(Self { pipeline, registry, seen, shutdown })
    }
}

impl Drop for Doubles {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn serve(routes: tonic::service::Routes, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(tonic::transport::Server::builder().add_routes(routes).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        shutdown.cancelled_owned(),
    ));
    Ok(addr)
}

/// The tenant named by a bearer token (the doubles trust the gateway-verified token).
fn tenant_of<T>(req: &Request<T>) -> Result<String, Status> {
    let raw = req
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| Status::unauthenticated("missing bearer token"))?;
    let payload = raw.split('.').nth(1).ok_or_else(|| Status::unauthenticated("bad token"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Status::unauthenticated("bad token"))?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| Status::unauthenticated("bad token"))?;
    Ok(claims["tenant"].as_str().unwrap_or_default().to_owned())
}

// ---------------------------------------------------------------------------------------------
// Pipeline double: the last user message picks a script
// ---------------------------------------------------------------------------------------------

pub(crate) const ANSWER: [&str; 3] = ["Voici ", "votre ", "dashboard."];
pub(crate) const QUESTION: &str = "Voulez-vous un dashboard ou un rapport ?";

struct FakePipeline {
    seen: Arc<Seen>,
}

type ExecStream = Pin<Box<dyn Stream<Item = Result<pl::ExecuteResponse, Status>> + Send>>;

fn item(event: pl::execute_response::Event) -> Result<pl::ExecuteResponse, Status> {
    Ok(pl::ExecuteResponse { index: 0, event: Some(event) })
}

fn turn(answer: &str, outcome: pl::TurnOutcome) -> pl::Turn {
    let params = prost_types::Struct {
        fields: [(
            "app_id".to_owned(),
            prost_types::Value { kind: Some(prost_types::value::Kind::StringValue("dashboard".to_owned())) },
        )]
        .into_iter()
        .collect(),
    };
    pl::Turn {
        id: "turn-1".to_owned(),
        conversation_id: "conv-1".to_owned(),
        answer: answer.to_owned(),
        outcome: outcome as i32,
        intent: pl::Intent::GenerateUi as i32,
        confidence: 0.93,
        intent_source: pl::IntentSource::Rules as i32,
        mode: pl::Mode::Ui as i32,
        agent: Some(pl::AgentRef { id: "agent-1".to_owned(), name: "analyst".to_owned(), version: 1 }),
        ui_actions: vec![pl::UiAction {
            id: "a1".to_owned(),
            r#type: "open_window".to_owned(),
            params: Some(params),
            label: "Ouvrir le dashboard".to_owned(),
        }],
        stage_timings: (1..=5)
            .map(|stage| pl::StageTiming {
                stage,
                status: pl::StageStatus::Ok as i32,
                started_at: None,
                duration_ms: 3,
            })
            .collect(),
        usage: Some(Usage { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8, estimated: true }),
        ..pl::Turn::default()
    }
}

fn chunk(delta: &str) -> Result<pl::ExecuteResponse, Status> {
    item(pl::execute_response::Event::AnswerChunk(pl::AnswerChunk { delta: delta.to_owned() }))
}

#[tonic::async_trait]
impl PipelineService for FakePipeline {
    type ExecuteStream = ExecStream;

    async fn execute(&self, req: Request<pl::ExecuteRequest>) -> Result<Response<ExecStream>, Status> {
        if let Some(auth) = req.metadata().get("authorization").and_then(|v| v.to_str().ok()) {
            self.seen.authorization.lock().expect("double state").push(auth.to_owned());
        }
        let req = req.into_inner();
        self.seen.agent_names.lock().expect("double state").push(req.agent_name.clone());
        let script = req.messages.last().map(|m| m.content.clone()).unwrap_or_default();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let stage =
                |s: pl::Stage| item(pl::execute_response::Event::StageStarted(pl::StageStarted { stage: s as i32 }));
            let _ = tx.send(stage(pl::Stage::IntentDetection)).await;
            match script.as_str() {
                "slow" => {
                    tokio::time::sleep(Duration::from_millis(900)).await;
                }
                "break" => {
                    let _ = tx.send(chunk("partial ")).await;
                    let _ = tx.send(Err(Status::internal("mindsdb exploded"))).await;
                    return;
                }
                "error-item" => {
                    let _ = tx.send(chunk("partial ")).await;
                    let _ = tx
                        .send(item(pl::execute_response::Event::Error(ErrorDetail {
                            code: ProtoErrorCode::UpstreamFailure as i32,
                            message: "the agent's model failed".to_owned(),
                            ..ErrorDetail::default()
                        })))
                        .await;
                    return;
                }
                "truncate" => {
                    let _ = tx.send(chunk("partial ")).await;
                    return;
                }
                "hang" => {
                    let _ = tx.send(chunk("partial ")).await;
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    return;
                }
                "clarify" => {
                    let _ = tx
                        .send(item(pl::execute_response::Event::Clarification(pl::Clarification {
                            question: QUESTION.to_owned(),
                            suggestions: vec!["dashboard".to_owned(), "rapport".to_owned()],
                            candidate_intent: pl::Intent::GenerateUi as i32,
                            confidence: 0.4,
                        })))
                        .await;
                    let _ = tx
                        .send(item(pl::execute_response::Event::Result(turn(
                            QUESTION,
                            pl::TurnOutcome::ClarificationNeeded,
                        ))))
                        .await;
                    return;
                }
                _ => {}
            }
            for part in ANSWER {
                let _ = tx.send(chunk(part)).await;
            }
            let _ = tx
                .send(item(pl::execute_response::Event::Result(turn(&ANSWER.concat(), pl::TurnOutcome::Answered))))
                .await;
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn get_turn(&self, _: Request<pl::GetTurnRequest>) -> Result<Response<pl::GetTurnResponse>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn list_turns(&self, _: Request<pl::ListTurnsRequest>) -> Result<Response<pl::ListTurnsResponse>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn list_models(&self, _: Request<pl::ListModelsRequest>) -> Result<Response<pl::ListModelsResponse>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn ask_model(&self, _: Request<pl::AskModelRequest>) -> Result<Response<pl::AskModelResponse>, Status> {
        Err(Status::unimplemented("not in the double"))
    }
}

// ---------------------------------------------------------------------------------------------
// Agent-registry double: per-tenant agents and skills in memory
// ---------------------------------------------------------------------------------------------

struct FakeRegistry {
    agents: Mutex<Vec<(String, reg::Agent)>>,
    skills: Mutex<Vec<(String, reg::Skill)>>,
    next_id: AtomicU64,
}

impl FakeRegistry {
    fn new() -> Self {
        let analyst = reg::Agent {
            id: "agent-1".to_owned(),
            name: "analyst".to_owned(),
            description: "answers from the tenant's data".to_owned(),
            version: 1,
            owner: "alice".to_owned(),
            ..reg::Agent::default()
        };
        Self {
            agents: Mutex::new(vec![("acme".to_owned(), analyst)]),
            skills: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(2),
        }
    }
}

type QueryStream = Pin<Box<dyn Stream<Item = Result<reg::QueryAgentResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AgentRegistryService for FakeRegistry {
    async fn create_agent(
        &self,
        req: Request<reg::CreateAgentRequest>,
    ) -> Result<Response<reg::CreateAgentResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let mut agent = req.into_inner().agent.unwrap_or_default();
        let mut agents = self.agents.lock().expect("double state");
        if agents.iter().any(|(t, a)| *t == tenant && a.name == agent.name) {
            return Err(Status::already_exists("agent name taken"));
        }
        agent.id = format!("agent-{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        agent.version = 1;
        agents.push((tenant, agent.clone()));
        Ok(Response::new(reg::CreateAgentResponse { agent: Some(agent) }))
    }

    async fn get_agent(&self, req: Request<reg::GetAgentRequest>) -> Result<Response<reg::GetAgentResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let agents = self.agents.lock().expect("double state");
        let found = agents.iter().find(|(t, a)| {
            *t == tenant
                && match &req.get_ref().selector {
                    Some(reg::get_agent_request::Selector::Id(id)) => a.id == *id,
                    Some(reg::get_agent_request::Selector::Name(n)) => a.name == *n,
                    None => false,
                }
        });
        match found {
            Some((_, a)) => Ok(Response::new(reg::GetAgentResponse { agent: Some(a.clone()) })),
            None => Err(Status::not_found("agent not found")),
        }
    }

    async fn update_agent(
        &self,
        req: Request<reg::UpdateAgentRequest>,
    ) -> Result<Response<reg::UpdateAgentResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let body = req.into_inner();
        let new = body.agent.unwrap_or_default();
        let mut agents = self.agents.lock().expect("double state");
        let (_, agent) = agents
            .iter_mut()
            .find(|(t, a)| *t == tenant && a.id == new.id)
            .ok_or_else(|| Status::not_found("agent not found"))?;
        if body.expected_version != 0 && body.expected_version != agent.version {
            return Err(Status::aborted(format!("agent version is {}, not {}", agent.version, body.expected_version)));
        }
        agent.description = new.description;
        agent.prompt_template = new.prompt_template;
        agent.skills = new.skills;
        agent.version += 1;
        Ok(Response::new(reg::UpdateAgentResponse { agent: Some(agent.clone()) }))
    }

    async fn delete_agent(
        &self,
        req: Request<reg::DeleteAgentRequest>,
    ) -> Result<Response<reg::DeleteAgentResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let body = req.into_inner();
        let mut agents = self.agents.lock().expect("double state");
        let pos = agents
            .iter()
            .position(|(t, a)| *t == tenant && a.id == body.id)
            .ok_or_else(|| Status::not_found("agent not found"))?;
        let (_, agent) = agents.remove(pos);
        Ok(Response::new(reg::DeleteAgentResponse { id: agent.id, version: agent.version }))
    }

    async fn list_agents(
        &self,
        req: Request<reg::ListAgentsRequest>,
    ) -> Result<Response<reg::ListAgentsResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let agents: Vec<_> = self
            .agents
            .lock()
            .expect("double state")
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, a)| a.clone())
            .collect();
        let total = i64::try_from(agents.len()).unwrap_or(0);
        Ok(Response::new(reg::ListAgentsResponse {
            agents,
            page: Some(PageResponse { next_page_token: String::new(), total_size: total }),
        }))
    }

    async fn find_agents(
        &self,
        _: Request<reg::FindAgentsRequest>,
    ) -> Result<Response<reg::FindAgentsResponse>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    type QueryAgentStream = QueryStream;

    async fn query_agent(&self, _: Request<reg::QueryAgentRequest>) -> Result<Response<QueryStream>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn provision_tenant(
        &self,
        _: Request<reg::ProvisionTenantRequest>,
    ) -> Result<Response<reg::ProvisionTenantResponse>, Status> {
        Err(Status::unimplemented("not in the double"))
    }

    async fn create_skill(
        &self,
        req: Request<reg::CreateSkillRequest>,
    ) -> Result<Response<reg::CreateSkillResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let mut skill = req.into_inner().skill.unwrap_or_default();
        skill.version = 1;
        self.skills.lock().expect("double state").push((tenant, skill.clone()));
        Ok(Response::new(reg::CreateSkillResponse { skill: Some(skill) }))
    }

    async fn get_skill(&self, req: Request<reg::GetSkillRequest>) -> Result<Response<reg::GetSkillResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let skills = self.skills.lock().expect("double state");
        skills
            .iter()
            .find(|(t, s)| *t == tenant && s.name == req.get_ref().name)
            .map(|(_, s)| Response::new(reg::GetSkillResponse { skill: Some(s.clone()) }))
            .ok_or_else(|| Status::not_found("skill not found"))
    }

    async fn list_skills(
        &self,
        req: Request<reg::ListSkillsRequest>,
    ) -> Result<Response<reg::ListSkillsResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let skills = self
            .skills
            .lock()
            .expect("double state")
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, s)| s.clone())
            .collect();
        Ok(Response::new(reg::ListSkillsResponse { skills, page: None }))
    }

    async fn delete_skill(
        &self,
        req: Request<reg::DeleteSkillRequest>,
    ) -> Result<Response<reg::DeleteSkillResponse>, Status> {
        let tenant = tenant_of(&req)?;
        let name = req.get_ref().name.clone();
        let mut skills = self.skills.lock().expect("double state");
        let pos = skills
            .iter()
            .position(|(t, s)| *t == tenant && s.name == name)
            .ok_or_else(|| Status::not_found("skill not found"))?;
        skills.remove(pos);
        Ok(Response::new(reg::DeleteSkillResponse { name }))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

pub(crate) fn chat_body(model: &str, content: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    })
}

/// The SSE events of a body: `data` payloads and comment lines, in order; asserts the framing
/// (every line is `data: `, a `:` comment, or the blank line ending an event).
pub(crate) fn sse_events(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in body.split('\n') {
        if line.is_empty() {
            continue;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            out.push(data.to_owned());
        } else if line.starts_with(':') {
            out.push(line.to_owned());
        } else {
            panic!("unexpected SSE line {line:?} in {body}");
        }
    }
    out
}

fn data_json(events: &[String]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| !e.starts_with(':') && *e != "[DONE]")
        .map(|e| serde_json::from_str(e).expect("chunk is JSON"))
        .collect()
}

async fn stream_body(
    http: &reqwest::Client,
    gw: &TestGateway,
    tok: &str,
    body: &Value,
) -> anyhow::Result<(reqwest::StatusCode, reqwest::header::HeaderMap, String)> {
    let resp = http.post(gw.chat_url()).bearer_auth(tok).json(body).send().await?;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let text = tokio::time::timeout(Duration::from_secs(15), resp.text()).await??;
    Ok((status, headers, text))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn chat_non_streaming_maps_the_turn_and_forwards_the_token() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("nonstream"), &doubles, |_| {}).await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let resp = http.post(gw.chat_url()).bearer_auth(&tok).json(&chat_body("getlood", "hello", false)).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-limit"], "100");
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "99");
    assert!(resp.headers().contains_key("x-ratelimit-reset"));
    let body: Value = resp.json().await?;
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap_or_default().starts_with("chatcmpl-"));
    assert_eq!(body["model"], "getlood");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER.concat());
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 8);
    let extras = &body["getlood"];
    assert_eq!(extras["intent"], "GENERATE_UI");
    assert_eq!(extras["confidence"], 0.93);
    assert_eq!(extras["agent"]["name"], "analyst");
    assert_eq!(extras["ui_actions"][0]["type"], "open_window");
    assert_eq!(extras["ui_actions"][0]["params"]["app_id"], "dashboard");
    assert_eq!(extras["stage_timings"].as_array().map(Vec::len), Some(5));
    assert_eq!(extras["stage_timings"][0]["stage"], "intent_detection");
    assert_eq!(extras["outcome"], "answered");
    // The caller's own token reached the pipeline; "getlood" means no agent override.
    assert_eq!(doubles.seen.authorization.lock().expect("double state").last().cloned(), Some(format!("Bearer {tok}")));
    assert_eq!(doubles.seen.agent_names.lock().expect("double state").last().cloned(), Some(None));

    // A named agent of the tenant is passed as the override.
    let resp = http.post(gw.chat_url()).bearer_auth(&tok).json(&chat_body("analyst", "hello", false)).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await?["model"], "analyst");
    assert_eq!(
        doubles.seen.agent_names.lock().expect("double state").last().cloned(),
        Some(Some("analyst".to_owned()))
    );
    gw.stop().await
}

#[tokio::test]
async fn chat_streaming_sse_framing_usage_and_extras() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("sse"), &doubles, |_| {}).await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");

    // With include_usage: role chunk, content chunks, finish chunk, usage chunk, [DONE].
    let mut body = chat_body("getlood", "hello", true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, headers, text) = stream_body(&http, &gw, &tok, &body).await?;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str()?.starts_with("text/event-stream"));
    assert_eq!(headers["x-ratelimit-limit"], "100");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events = sse_events(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let chunks = data_json(&events);
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let id = chunks[0]["id"].clone();
    assert!(chunks.iter().all(|c| c["id"] == id), "one id per completion");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(content, ANSWER.concat());
    let (last, before) = (&chunks[chunks.len() - 1], &chunks[chunks.len() - 2]);
    assert_eq!(before["choices"][0]["finish_reason"], "stop");
    assert_eq!(before["usage"], Value::Null);
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 5);
    assert_eq!(last["getlood"]["intent"], "GENERATE_UI");
    assert_eq!(last["getlood"]["ui_actions"][0]["params"]["app_id"], "dashboard");
    // Extras only once, on the last chunk.
    assert_eq!(chunks.iter().filter(|c| c.get("getlood").is_some()).count(), 1);

    // Without include_usage: no usage field at all, extras on the finish chunk.
    let (_, _, text) = stream_body(&http, &gw, &tok, &chat_body("getlood", "hello", true)).await?;
    let chunks = data_json(&sse_events(&text));
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["getlood"]["agent"]["name"], "analyst");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    gw.stop().await
}

#[tokio::test]
async fn chat_stream_sends_heartbeats_while_the_pipeline_works() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    // The chat route is outside the plain-request timeout: a 300 ms limit does not cut it.
    let gw = TestGateway::start(&unique_prefix("heartbeat"), &doubles, |c| {
        c.app.http_request_timeout = Duration::from_millis(300);
    })
    .await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let (status, _, text) = stream_body(&http, &gw, &tok, &chat_body("getlood", "slow", true)).await?;
    assert_eq!(status, 200);
    let events = sse_events(&text);
    let first_content = events.iter().position(|e| e.contains("\"content\":\"Voici \"")).expect("content arrives");
    let heartbeats = events[..first_content].iter().filter(|e| *e == ": keep-alive").count();
    assert!(heartbeats >= 2, "expected keep-alive comments while waiting: {text}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Non-streaming waits as long as the answer takes, also past the plain timeout.
    let resp = http.post(gw.chat_url()).bearer_auth(&tok).json(&chat_body("getlood", "slow", false)).send().await?;
    assert_eq!(resp.status(), 200);
    // A plain route still has its deadline configured (it answers well within it here).
    let me = http.get(format!("{}/api/v1/me", gw.http)).bearer_auth(&tok).send().await?;
    assert_eq!(me.status(), 200);
    gw.stop().await
}

#[tokio::test]
async fn chat_stream_failures_end_with_an_error_chunk_never_a_hang() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("failures"), &doubles, |c| {
        c.app.chat_idle_timeout = Duration::from_secs(1);
    })
    .await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    for (script, code) in [
        ("break", "unavailable"),
        ("error-item", "unavailable"),
        ("truncate", "unavailable"),
        ("hang", "deadline_exceeded"),
    ] {
        let started = Instant::now();
        let (status, _, text) = stream_body(&http, &gw, &tok, &chat_body("getlood", script, true)).await?;
        assert!(started.elapsed() < Duration::from_secs(8), "{script} took too long");
        assert_eq!(status, 200, "{script}");
        let events = sse_events(&text);
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{script}");
        let error: Value = serde_json::from_str(&events[events.len() - 2])?;
        assert_eq!(error["error"]["code"], code, "{script}: {text}");
        assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(!text.contains("mindsdb exploded"), "internal message leaked");
        // The partial answer was streamed before the error.
        assert!(text.contains("partial "), "{script}");
    }
    assert!(
        String::from_utf8_lossy(
            &http
                .post(gw.chat_url())
                .bearer_auth(&tok)
                .json(&chat_body("getlood", "error-item", true))
                .send()
                .await?
                .bytes()
                .await?
        )
        .contains("the agent's model failed"),
        "the pipeline's safe message is relayed"
    );
    // Non-streaming: the same failure is a JSON error status.
    let resp = http.post(gw.chat_url()).bearer_auth(&tok).json(&chat_body("getlood", "break", false)).send().await?;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await?;
    assert_eq!(body["code"], "unavailable");
    assert_eq!(body["error"]["type"], "server_error");
    gw.stop().await
}

#[tokio::test]
async fn chat_clarification_is_an_assistant_message() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("clarify"), &doubles, |_| {}).await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let body: Value = http
        .post(gw.chat_url())
        .bearer_auth(&tok)
        .json(&chat_body("getlood", "clarify", false))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body["choices"][0]["message"]["content"], QUESTION);
    assert_eq!(body["getlood"]["outcome"], "clarification_needed");
    assert_eq!(body["getlood"]["clarification"]["suggestions"][0], "dashboard");
    let (_, _, text) = stream_body(&http, &gw, &tok, &chat_body("getlood", "clarify", true)).await?;
    let content: String = data_json(&sse_events(&text))
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(content, QUESTION, "the question is sent once");
    gw.stop().await
}

#[tokio::test]
async fn chat_validation_matrix() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("validation"), &doubles, |c| {
        c.app.max_body_bytes = 4096;
    })
    .await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let user = |content: &str| json!([{"role": "user", "content": content}]);
    let big = "x".repeat(8192);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            "unknown model",
            http.post(gw.chat_url()).json(&json!({"model": "nope", "messages": user("hi")})),
            400,
            "invalid_argument",
            "model 'nope' does not exist",
        ),
        (
            "another tenant's agent is an unknown model",
            http.post(gw.chat_url())
                .json(&json!({"model": "analyst", "messages": user("hi")}))
                .bearer_auth(token("globex", "mallory")),
            400,
            "invalid_argument",
            "model 'analyst' does not exist",
        ),
        (
            "missing model",
            http.post(gw.chat_url()).json(&json!({"messages": user("hi")})),
            400,
            "invalid_argument",
            "'model' is required",
        ),
        (
            "empty messages",
            http.post(gw.chat_url()).json(&json!({"model": "getlood", "messages": []})),
            400,
            "invalid_argument",
            "'messages' must contain at least one message",
        ),
        (
            "missing messages",
            http.post(gw.chat_url()).json(&json!({"model": "getlood"})),
            400,
            "invalid_argument",
            "'messages' must contain at least one message",
        ),
        (
            "invalid role",
            http.post(gw.chat_url()).json(&json!({"model": "getlood", "messages": [{"role": "robot", "content": "hi"}]})),
            400,
            "invalid_argument",
            "messages[0].role 'robot' is invalid",
        ),
        (
            "last message not from the user",
            http.post(gw.chat_url()).json(&json!({"model": "getlood", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})),
            400,
            "invalid_argument",
            "the last message must be a user message",
        ),
        (
            "empty user content",
            http.post(gw.chat_url()).json(&json!({"model": "getlood", "messages": user("  ")})),
            400,
            "invalid_argument",
            "messages[0].content must not be empty",
        ),
        (
            "messages of the wrong type",
            http.post(gw.chat_url()).json(&json!({"model": "getlood", "messages": "hi"})),
            400,
            "invalid_argument",
            "invalid request body",
        ),
        (
            "malformed JSON",
            http.post(gw.chat_url())
                .header("content-type", "application/json")
                .body("{\"model\": \"getlood\", \"messages\": ["),
            400,
            "invalid_argument",
            "malformed JSON",
        ),
        (
            "not JSON",
            http.post(gw.chat_url()).body("model=getlood"),
            400,
            "invalid_argument",
            "request body must be JSON",
        ),
        (
            "oversized body",
            http.post(gw.chat_url()).json(&json!({"model": "getlood", "messages": user(&big)})),
            413,
            "payload_too_large",
            "request body is too large",
        ),
    ];
    for (name, req, status, code, message) in cases {
        let req = req.build()?;
        let req = if req.headers().contains_key("authorization") {
            req
        } else {
            let mut req = req;
            req.headers_mut().insert("authorization", format!("Bearer {tok}").parse()?);
            req
        };
        let resp = http.execute(req).await?;
        assert_eq!(resp.status().as_u16(), status, "{name}");
        assert!(resp.headers()["content-type"].to_str()?.starts_with("application/json"), "{name}: JSON body");
        let body: Value = resp.json().await?;
        assert_eq!(body["code"], code, "{name}: {body}");
        let text = body["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{name}: {text}");
        assert_eq!(body["error"]["message"], body["message"], "{name}: OpenAI shape");
    }
    // Nothing invalid reached the pipeline.
    assert!(doubles.seen.agent_names.lock().expect("double state").is_empty());
    gw.stop().await
}

#[tokio::test]
async fn models_agents_and_skills_map_the_registry() -> anyhow::Result<()> {
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("registry"), &doubles, |_| {}).await?;
    let http = reqwest::Client::new();
    // Agent and skill writes need the builder role; the other tenant is a builder too, so only
    // tenant isolation stands between it and acme's agents.
    let builder = |tenant: &str, user: &str| {
        getlood_auth::dev_token(getlood_testkit::TEST_SECRET, "getlood", "getlood", tenant, user, &["builder"], 3600)
    };
    let acme = builder("acme", "alice")?;
    let globex = builder("globex", "mallory")?;

    let models: Value = http.get(format!("{}/v1/models", gw.http)).bearer_auth(&acme).send().await?.json().await?;
    assert_eq!(models["object"], "list");
    let ids: Vec<_> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ids, ["getlood", "analyst"]);
    assert_eq!(models["data"][1]["object"], "model");
    assert_eq!(models["data"][1]["owned_by"], "alice");
    let other: Value = http.get(format!("{}/v1/models", gw.http)).bearer_auth(&globex).send().await?.json().await?;
    assert_eq!(other["data"].as_array().map(Vec::len), Some(1), "tenants do not see each other's agents");

    // Create, read, update with optimistic concurrency, delete.
    let agents = format!("{}/api/v1/agents", gw.http);
    let resp = http
        .post(&agents)
        .bearer_auth(&acme)
        .json(&json!({"name": "designer", "description": "makes UIs", "skills": ["ui-generation"],
                      "model": {"provider": "openai", "model_name": "smollm2", "api_key": "sk-secret"}}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let created: Value = resp.json().await?;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["skills"], json!(["ui-generation"]));
    assert!(!created.to_string().contains("sk-secret"), "api keys are never returned");
    let one = format!("{agents}/{id}");
    let got = http.get(&one).bearer_auth(&acme).send().await?;
    assert_eq!(got.status(), 200);
    assert_eq!(got.json::<Value>().await?["name"], "designer");
    let list: Value = http.get(&agents).bearer_auth(&acme).send().await?.json().await?;
    assert_eq!(list["agents"].as_array().map(Vec::len), Some(2));

    let stale = http
        .put(&one)
        .bearer_auth(&acme)
        .header("if-match", "\"7\"")
        .json(&json!({"name": "designer", "description": "v2"}))
        .send()
        .await?;
    assert_eq!(stale.status(), 409);
    assert_eq!(stale.json::<Value>().await?["code"], "aborted");
    let updated = http
        .put(&one)
        .bearer_auth(&acme)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "designer", "description": "v2"}))
        .send()
        .await?;
    assert_eq!(updated.status(), 200);
    assert_eq!(updated.headers()["etag"], "\"2\"");
    let stale_body = http
        .put(&one)
        .bearer_auth(&acme)
        .json(&json!({"name": "designer", "description": "v3", "expected_version": 1}))
        .send()
        .await?;
    assert_eq!(stale_body.status(), 409);

    // Another tenant: 404 for read, update and delete, existence not revealed.
    for resp in [
        http.get(&one).bearer_auth(&globex).send().await?,
        http.put(&one).bearer_auth(&globex).json(&json!({"name": "designer"})).send().await?,
        http.delete(&one).bearer_auth(&globex).send().await?,
    ] {
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.json::<Value>().await?["code"], "not_found");
    }
    let deleted = http.delete(&one).bearer_auth(&acme).send().await?;
    assert_eq!(deleted.status(), 200);
    assert_eq!(http.get(&one).bearer_auth(&acme).send().await?.status(), 404);

    // Skills.
    let skills = format!("{}/api/v1/skills", gw.http);
    let resp = http
        .post(&skills)
        .bearer_auth(&acme)
        .json(&json!({"name": "ui-generation", "description": "builds UIs", "prompt_fragment": "Answer with a UI."}))
        .send()
        .await?;
    assert_eq!(resp.status(), 201);
    let list: Value = http.get(&skills).bearer_auth(&acme).send().await?.json().await?;
    assert_eq!(list["skills"][0]["name"], "ui-generation");
    let one_skill = format!("{skills}/ui-generation");
    let got: Value = http.get(&one_skill).bearer_auth(&acme).send().await?.json().await?;
    assert_eq!(got["prompt_fragment"], "Answer with a UI.");
    assert_eq!(http.get(&one_skill).bearer_auth(&globex).send().await?.status(), 404);
    assert_eq!(http.delete(&one_skill).bearer_auth(&acme).send().await?.status(), 200);
    assert_eq!(http.get(&one_skill).bearer_auth(&acme).send().await?.status(), 404);

    // Malformed JSON on a REST route is a JSON 400 too.
    let resp =
        http.post(&agents).bearer_auth(&acme).header("content-type", "application/json").body("{").send().await?;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await?["code"], "invalid_argument");
    gw.stop().await
}

#[tokio::test]
async fn upstream_down_is_a_prompt_503() -> anyhow::Result<()> {
    // Doubles whose ports are closed again right away: nothing listens there.
    let doubles = Doubles::start().await?;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let gw = TestGateway::start(&unique_prefix("down"), &doubles, |c| {
        c.services.pipeline = format!("http://{closed}");
        c.services.agent_registry = format!("http://{closed}");
    })
    .await?;
    let http = reqwest::Client::new();
    let tok = token("acme", "alice");
    let started = Instant::now();
    for req in [
        http.post(gw.chat_url()).json(&chat_body("getlood", "hello", false)),
        http.post(gw.chat_url()).json(&chat_body("getlood", "hello", true)),
        http.post(gw.chat_url()).json(&chat_body("analyst", "hello", false)),
        http.get(format!("{}/v1/models", gw.http)),
        http.get(format!("{}/api/v1/agents", gw.http)),
        http.get(format!("{}/api/v1/skills/x", gw.http)),
    ] {
        let resp = req.bearer_auth(&tok).send().await?;
        assert_eq!(resp.status(), 503);
        let body: Value = resp.json().await?;
        assert_eq!(body["code"], "unavailable");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("service is unavailable"), "{message}");
        assert!(!message.contains("tcp"), "transport details stay internal: {message}");
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    gw.stop().await
}

#[tokio::test]
async fn grpc_chat_completion_and_list_models() -> anyhow::Result<()> {
    use futures::StreamExt as _;
    use getlood_proto::common::v1::{ChatMessage, Role};
    use getlood_proto::gateway::v1 as gw_pb;
    use getlood_proto::gateway::v1::gateway_service_client::GatewayServiceClient;

    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("grpc"), &doubles, |_| {}).await?;
    let tok = token("acme", "alice");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gw.grpc))?.connect_lazy();
    let mut client = GatewayServiceClient::new(channel);
    fn with_token<T>(tok: &str, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut().insert("authorization", format!("Bearer {tok}").parse().expect("metadata"));
        req
    }
    let mut stream = client
        .chat_completion(with_token(
            &tok,
            gw_pb::ChatCompletionRequest {
                model: "getlood".to_owned(),
                messages: vec![ChatMessage {
                    role: Role::User as i32,
                    content: "hello".to_owned(),
                    name: String::new(),
                }],
                ..gw_pb::ChatCompletionRequest::default()
            },
        ))
        .await?
        .into_inner();
    let mut text = String::new();
    let mut last = None;
    while let Some(item) = stream.next().await {
        if let Some(gw_pb::chat_completion_response::Item::Chunk(c)) = item?.item {
            text.push_str(&c.delta);
            last = Some(c);
        }
    }
    assert_eq!(text, ANSWER.concat());
    let last = last.expect("a chunk");
    assert_eq!(last.finish_reason, "stop");
    let extras = last.getlood.expect("extras");
    assert_eq!(extras.intent, pl::Intent::GenerateUi as i32);
    assert_eq!(extras.ui_actions[0].r#type, "open_window");

    let status = client
        .chat_completion(with_token(
            &tok,
            gw_pb::ChatCompletionRequest { model: "getlood".to_owned(), ..gw_pb::ChatCompletionRequest::default() },
        ))
        .await
        .expect_err("empty messages");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let models = client.list_models(with_token(&tok, gw_pb::ListModelsRequest {})).await?.into_inner();
    let ids: Vec<_> = models.models.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["getlood", "analyst"]);
    gw.stop().await
}

/// The official `openai` Python client, from PyPI, against the gateway: streaming and not.
#[tokio::test]
async fn openai_python_client_talks_to_the_gateway() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED openai_python_client_talks_to_the_gateway: python3 is not installed");
        return Ok(());
    }
    let python = scripts_python(&root).await?;
    let doubles = Doubles::start().await?;
    let gw = TestGateway::start(&unique_prefix("openai_py"), &doubles, |_| {}).await?;
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(root.join("scripts/openai_client_check.py"))
            .arg("--base-url")
            .arg(format!("{}/v1", gw.http))
            .arg("--api-key")
            .arg(token("acme", "alice"))
            .arg("--expect")
            .arg(ANSWER.concat())
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openai client check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("openai client check: ok"), "{stdout}");
    gw.stop().await
}

/// `.venv-test/bin/python` with the `openai` package, created on first use (PyPI is reachable
/// wherever the tests run; a failure to install fails the test, as the issue requires it).
pub(crate) async fn scripts_python(root: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _guard = LOCK.lock().await;
    let venv = root.join(".venv-test");
    let python = venv.join("bin/python");
    let has_openai = |python: &std::path::Path| {
        std::process::Command::new(python).args(["-c", "import openai"]).output().is_ok_and(|o| o.status.success())
    };
    if !has_openai(&python) {
        let status = tokio::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status().await?;
        anyhow::ensure!(status.success(), "python3 -m venv failed");
        let status = tokio::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "openai==3.57.0"])
            .status()
            .await?;
        anyhow::ensure!(status.success(), "pip install openai failed");
    }
    anyhow::ensure!(has_openai(&python), "openai is not importable in .venv-test");
    Ok(python)
}
