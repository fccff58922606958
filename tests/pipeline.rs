//! The 5-stage pipeline against real Postgres, NATS JetStream, MindsDB and the agent registry,
//! with the deterministic OpenAI-compatible double as the LLM of both the intent model and the
//! agents. The pipeline is started here with its own settings (the double as intent LLM, short
//! deadlines); the registry comes from the test kit.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use getlood_events::{Domain, EventBus, Payload};
use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::agent_registry::v1::{Agent, CreateAgentRequest, CreateSkillRequest, ModelConfig, Skill};
use getlood_proto::common::v1::{ChatMessage, ErrorCode as ProtoErrorCode, Role};
use getlood_proto::pipeline::v1::pipeline_service_client::PipelineServiceClient;
use getlood_proto::pipeline::v1::{
    ExecuteRequest, ExecuteResponse, GetTurnRequest, Intent, IntentSource, ListTurnsRequest, Mode, SelectionReason,
    Stage, StageStatus, Turn, TurnOutcome, execute_response::Event,
};
use getlood_testkit::{OpenAiDouble, Platform, Service, TEST_SECRET};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request};

type Registry = AgentRegistryServiceClient<Channel>;
type Pipeline = PipelineServiceClient<Channel>;

/// Marker the pipeline's intent prompt starts with (kept in step with services/pipeline/src/intent.rs).
const INTENT_PROMPT: &str = "GETLOOD intent classifier.";

fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{}{}{}", nanos % 1_000_000_000, std::process::id() % 10_000, N.fetch_add(1, Ordering::Relaxed))
}

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn user(content: &str) -> ChatMessage {
    ChatMessage { role: Role::User as i32, content: content.to_owned(), name: String::new() }
}

/// A pipeline started in-process with test settings, on its own Postgres schema.
struct TestPipeline {
    grpc: SocketAddr,
    schema: String,
    shutdown: CancellationToken,
    task: JoinHandle<getlood_server::Result<()>>,
}

impl TestPipeline {
    async fn start(
        registry_url: &str,
        llm_base_url: Option<String>,
        registry_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut config = getlood_pipeline::default_config();
        let schema = format!("pipeline_t{}", unique());
        config.postgres.url = getlood_testkit::postgres_url();
        config.postgres.schema = schema.clone();
        config.postgres.max_connections = 4;
        config.nats.url = getlood_testkit::nats_url();
        config.mindsdb.url = getlood_testkit::mindsdb_url();
        config.auth.hs256_secret = Some(secrecy::SecretString::from(TEST_SECRET));
        config.services.agent_registry = registry_url.to_owned();
        config.readiness_interval = Duration::from_millis(100);
        config.shutdown_timeout = Duration::from_secs(5);
        config.app.intent_model.base_url = llm_base_url;
        config.app.intent_model.api_key = Some(secrecy::SecretString::from("sk-test-intent"));
        config.app.heartbeat = Duration::from_millis(300);
        config.app.registry_timeout = registry_timeout;
        config.app.agent_timeout = Duration::from_secs(60);
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = getlood_server::Listeners::bind(loopback, loopback, loopback).await?;
        let grpc = listeners.grpc_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(getlood_server::run_service(
            getlood_pipeline::SPEC,
            config,
            Some(&getlood_pipeline::MIGRATOR),
            listeners,
            shutdown.clone(),
            getlood_pipeline::run,
        ));
        Ok(Self { grpc, schema, shutdown, task })
    }

    fn client(&self) -> Pipeline {
        let channel = Channel::from_shared(format!("http://{}", self.grpc)).unwrap().connect_lazy();
        PipelineServiceClient::new(channel)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
        // The name is ours: pipeline_t followed by digits.
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema)))
            .execute(&pool)
            .await?;
        Ok(())
    }
}

/// Runs one turn and collects every item; fails the test if the stream does not end in time.
async fn execute(client: &mut Pipeline, token: &str, req: ExecuteRequest) -> anyhow::Result<Vec<ExecuteResponse>> {
    let mut stream = client.execute(authed(token, req)).await?.into_inner();
    let collect = async {
        let mut items = Vec::new();
        while let Some(item) = stream.message().await? {
            items.push(item);
        }
        anyhow::Ok(items)
    };
    let items = tokio::time::timeout(Duration::from_secs(60), collect).await??;
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item.index, i as i64 + 1, "items are numbered from 1 without gaps");
    }
    Ok(items)
}

fn events(items: &[ExecuteResponse]) -> Vec<&Event> {
    items.iter().filter_map(|i| i.event.as_ref()).collect()
}

fn result(items: &[ExecuteResponse]) -> Turn {
    match items.last().and_then(|i| i.event.clone()) {
        Some(Event::Result(turn)) => turn,
        other => panic!("the stream must end with a result, got {other:?}"),
    }
}

fn answer_text(items: &[ExecuteResponse]) -> String {
    events(items)
        .into_iter()
        .filter_map(|e| if let Event::AnswerChunk(c) = e { Some(c.delta.as_str()) } else { None })
        .collect()
}

async fn create_skill(registry: &mut Registry, token: &str, name: &str) -> anyhow::Result<()> {
    let skill = Skill { name: name.to_owned(), description: format!("the {name} skill"), ..Default::default() };
    registry.create_skill(authed(token, CreateSkillRequest { skill: Some(skill) })).await?;
    Ok(())
}

async fn create_agent(
    registry: &mut Registry,
    token: &str,
    llm: &OpenAiDouble,
    name: &str,
    skills: &[&str],
    default: bool,
) -> anyhow::Result<Agent> {
    let agent = Agent {
        name: name.to_owned(),
        description: format!("{name} agent"),
        model: Some(ModelConfig {
            provider: "openai".to_owned(),
            model_name: "gpt-4".to_owned(),
            base_url: Some(llm.base_url()),
            api_key: "sk-test-agent".to_owned(),
            has_api_key: false,
        }),
        skills: skills.iter().map(|s| (*s).to_owned()).collect(),
        prompt_template: format!("You are the {name} agent."),
        metadata: if default { [("default".to_owned(), "true".to_owned())].into() } else { Default::default() },
        ..Default::default()
    };
    let created =
        registry.create_agent(authed(token, CreateAgentRequest { agent: Some(agent), ..Default::default() })).await?;
    Ok(created.into_inner().agent.expect("created agent"))
}

/// A registry with two agents in a fresh tenant: `ui-builder` (ui-generation) and `generalist`
/// (chat, marked default).
struct World {
    llm: OpenAiDouble,
    platform: Platform,
    pipeline: TestPipeline,
    tenant: String,
    token: String,
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let llm = OpenAiDouble::start().await?;
        let platform = Platform::builder().service(Service::AgentRegistry).start().await?;
        platform.wait_ready(Duration::from_secs(20)).await?;
        let registry_url = format!("http://{}", platform.get(Service::AgentRegistry).grpc_addr);
        let pipeline = TestPipeline::start(&registry_url, Some(llm.base_url()), Duration::from_secs(5)).await?;
        let tenant = format!("pl_{}", unique());
        let token = platform.token(&tenant, "alice", &["member", "builder"]);
        let mut registry = Registry::new(platform.grpc_channel(Service::AgentRegistry));
        for skill in ["ui-generation", "chat", "data-analysis"] {
            create_skill(&mut registry, &token, skill).await?;
        }
        create_agent(&mut registry, &token, &llm, "ui-builder", &["ui-generation"], false).await?;
        create_agent(&mut registry, &token, &llm, "generalist", &["chat"], true).await?;
        Ok(Self { llm, platform, pipeline, tenant, token })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.pipeline.stop().await?;
        self.platform.stop().await
    }

    /// Chat calls whose messages contain `needle`.
    fn llm_calls_with(&self, needle: &str) -> usize {
        self.llm.calls_to("/v1/chat/completions").iter().filter(|c| c.body.to_string().contains(needle)).count()
    }
}

async fn turn_completed_events(
    tenant: &str,
    turn_id: &str,
) -> anyhow::Result<Vec<getlood_proto::events::v1::TurnCompleted>> {
    let nats = async_nats::connect(getlood_testkit::nats_url()).await?;
    let bus = EventBus::new(nats, "getlood");
    let tenant = getlood_auth::TenantId::parse(tenant).map_err(|t| anyhow::anyhow!("bad tenant {t}"))?;
    // The outbox relay publishes after commit; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let read = bus.read(&tenant, Domain::Turn, 0, 100, Duration::from_millis(300)).await.unwrap_or_default();
        let found: Vec<_> = read
            .into_iter()
            .filter_map(|e| match e.envelope.payload {
                Some(Payload::TurnCompleted(t)) if t.turn_id == turn_id => Some(t),
                _ => None,
            })
            .collect();
        if !found.is_empty() || Instant::now() > deadline {
            return Ok(found);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn pipeline_seed_dashboard_turn_end_to_end() -> anyhow::Result<()> {
    let world = World::start().await?;
    const REPLY: &str = "Voici votre dashboard analytics : ventes, trafic et conversions.";
    world.llm.reply_when("dashboard analytics", REPLY);
    let mut client = world.pipeline.client();

    let items = execute(
        &mut client,
        &world.token,
        ExecuteRequest { messages: vec![user("Crée-moi un dashboard analytics")], ..Default::default() },
    )
    .await?;
    let evs = events(&items);

    // Stage 1: the keyword rules were sure, so the LLM classifier was not asked.
    let detected =
        evs.iter().find_map(|e| if let Event::IntentDetected(d) = e { Some(d.clone()) } else { None }).unwrap();
    assert_eq!(detected.intent, Intent::GenerateUi as i32);
    assert!(detected.confidence >= 0.85 && detected.confidence <= 1.0, "{detected:?}");
    assert_eq!(detected.source, IntentSource::Rules as i32);
    assert_eq!(world.llm_calls_with(INTENT_PROMPT), 0);
    // Stage 2 and 3: routed to UI, agent chosen by skill.
    let route = evs.iter().find_map(|e| if let Event::RouteSelected(r) = e { Some(r.clone()) } else { None }).unwrap();
    assert_eq!((route.mode, route.required_skill.as_str()), (Mode::Ui as i32, "ui-generation"));
    let selected =
        evs.iter().find_map(|e| if let Event::AgentSelected(a) = e { Some(a.clone()) } else { None }).unwrap();
    assert_eq!(selected.agent.as_ref().unwrap().name, "ui-builder");
    assert_eq!(selected.reason, SelectionReason::SkillMatch as i32);
    assert_eq!(selected.matched_skills, ["ui-generation"]);
    // Stage 4: the answer arrived as chunks before the result.
    assert_eq!(answer_text(&items), REPLY);
    // Stage 5: the enhanced result.
    let turn = result(&items);
    assert_eq!(turn.outcome, TurnOutcome::Answered as i32);
    assert_eq!(turn.answer, REPLY);
    assert_eq!(turn.intent, Intent::GenerateUi as i32);
    assert_eq!(turn.agent.as_ref().unwrap().name, "ui-builder");
    assert_eq!(turn.ui_actions.len(), 1);
    let action = &turn.ui_actions[0];
    assert_eq!(action.r#type, "open_window");
    let app_id = action.params.as_ref().and_then(|p| p.fields.get("app_id")).and_then(|v| v.kind.clone());
    assert_eq!(app_id, Some(prost_types::value::Kind::StringValue("dashboard".to_owned())));
    assert_eq!(action.label, "Ouvrir le dashboard");
    let hints: Vec<&str> = turn.user_intent_hints.iter().map(|h| h.kind.as_str()).collect();
    assert!(hints.contains(&"wants_quick_action") && hints.contains(&"prefers_french"), "{hints:?}");
    let stages: Vec<(i32, i32)> = turn.stage_timings.iter().map(|t| (t.stage, t.status)).collect();
    let ok = StageStatus::Ok as i32;
    assert_eq!(
        stages,
        [
            (Stage::IntentDetection as i32, ok),
            (Stage::Routing as i32, ok),
            (Stage::AgentSelection as i32, ok),
            (Stage::Execution as i32, ok),
            (Stage::Enhancement as i32, ok)
        ]
    );
    assert!(turn.duration_ms >= turn.stage_timings.iter().map(|t| t.duration_ms).sum::<i64>());

    // Persisted and readable; listed in its conversation.
    let got = client.get_turn(authed(&world.token, GetTurnRequest { turn_id: turn.id.clone() })).await?.into_inner();
    assert_eq!(got.turn.as_ref(), Some(&turn));
    let listed = client
        .list_turns(authed(
            &world.token,
            ListTurnsRequest { conversation_id: turn.conversation_id.clone(), page: None },
        ))
        .await?
        .into_inner();
    assert_eq!(listed.turns, std::slice::from_ref(&turn));

    // turn.completed reached JetStream through the outbox.
    let published = turn_completed_events(&world.tenant, &turn.id).await?;
    assert_eq!(published.len(), 1, "one turn.completed event");
    assert_eq!(published[0].agent_name, "ui-builder");
    assert_eq!(published[0].ui_action_types, ["open_window"]);
    assert_eq!(published[0].user_message, "Crée-moi un dashboard analytics");

    // Isolation: another tenant, and another user of the same tenant, see nothing.
    let other_tenant = world.platform.token(&format!("pl_{}", unique()), "mallory", &["admin"]);
    let other_user = world.platform.token(&world.tenant, "bob", &["member"]);
    for tok in [&other_tenant, &other_user] {
        let err = client.get_turn(authed(tok, GetTurnRequest { turn_id: turn.id.clone() })).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = client
            .list_turns(authed(tok, ListTurnsRequest { conversation_id: turn.conversation_id.clone(), page: None }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    // An admin of the tenant may read it.
    let admin = world.platform.token(&world.tenant, "root", &["admin"]);
    client.get_turn(authed(&admin, GetTurnRequest { turn_id: turn.id.clone() })).await?;

    // A retry with the same idempotency key replays the stored turn.
    let keyed = ExecuteRequest {
        messages: vec![user("Crée-moi un dashboard analytics")],
        client_request_id: "req-1".to_owned(),
        ..Default::default()
    };
    let first = result(&execute(&mut client, &world.token, keyed.clone()).await?);
    let replay = execute(&mut client, &world.token, keyed).await?;
    assert_eq!(replay.len(), 1);
    assert_eq!(result(&replay), first);

    // An explicit agent overrides selection; an unknown one is NOT_FOUND before the stream.
    let items = execute(
        &mut client,
        &world.token,
        ExecuteRequest {
            messages: vec![user("Crée-moi un dashboard analytics")],
            agent_name: Some("generalist".to_owned()),
            conversation_id: turn.conversation_id.clone(),
            ..Default::default()
        },
    )
    .await?;
    let overridden = result(&items);
    assert_eq!(overridden.agent.as_ref().unwrap().name, "generalist");
    assert_eq!(overridden.conversation_id, turn.conversation_id);
    assert_eq!(overridden.stage_timings[2].status, StageStatus::Skipped as i32);
    let err = client
        .execute(authed(
            &world.token,
            ExecuteRequest { messages: vec![user("hi")], agent_name: Some("nobody".to_owned()), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Bad input: INVALID_ARGUMENT with a message naming the problem.
    let bad: [(ExecuteRequest, &str); 4] = [
        (ExecuteRequest::default(), "messages must contain at least one message"),
        (
            ExecuteRequest {
                messages: vec![ChatMessage { role: 0, content: "x".into(), name: String::new() }],
                ..Default::default()
            },
            "messages[0].role is invalid",
        ),
        (
            ExecuteRequest { messages: vec![user(&"x".repeat(40_000))], ..Default::default() },
            "messages[0].content is 40000 characters",
        ),
        (ExecuteRequest { messages: vec![user("   ")], ..Default::default() }, "messages[0].content must not be empty"),
    ];
    for (req, expected) in bad {
        let err = client.execute(authed(&world.token, req)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(expected), "{} vs {expected}", err.message());
    }
    world.stop().await
}

#[tokio::test]
async fn pipeline_llm_classifier_low_confidence_and_garbage_json() -> anyhow::Result<()> {
    let world = World::start().await?;
    let mut client = world.pipeline.client();
    world.llm.reply_when("User message: Something vague about penguins", r#"{"intent": "CHAT", "confidence": 0.2}"#);
    world.llm.reply_when("User message: Tell me about the weather on Mars", "this is definitely not json");
    world.llm.reply_when("User message: What should I cook tonight", r#"{"intent": "QUERY_DATA", "confidence": 0.9}"#);
    world.llm.reply_when("weather on Mars", "Cold and dusty.");
    world.llm.reply_when("cook tonight", "Pasta.");

    // Low confidence from the LLM: a clarification question, no agent called.
    let items = execute(
        &mut client,
        &world.token,
        ExecuteRequest { messages: vec![user("Something vague about penguins")], ..Default::default() },
    )
    .await?;
    let evs = events(&items);
    let detected =
        evs.iter().find_map(|e| if let Event::IntentDetected(d) = e { Some(d.clone()) } else { None }).unwrap();
    assert_eq!((detected.intent, detected.source), (Intent::Chat as i32, IntentSource::Llm as i32));
    assert!((detected.confidence - 0.2).abs() < 1e-9);
    let clarification =
        evs.iter().find_map(|e| if let Event::Clarification(c) = e { Some(c.clone()) } else { None }).unwrap();
    assert!(!clarification.question.is_empty() && !clarification.suggestions.is_empty());
    let turn = result(&items);
    assert_eq!(turn.outcome, TurnOutcome::ClarificationNeeded as i32);
    assert_eq!(turn.answer, clarification.question);
    assert!(turn.agent.is_none() && turn.ui_actions.is_empty());
    let statuses: Vec<i32> = turn.stage_timings.iter().map(|t| t.status).collect();
    let skipped = StageStatus::Skipped as i32;
    assert_eq!(statuses, [StageStatus::Ok as i32, skipped, skipped, skipped, skipped]);
    assert_eq!(world.llm_calls_with("Something vague about penguins"), 1, "only the intent model was asked");
    let prompt = world
        .llm
        .calls_to("/v1/chat/completions")
        .into_iter()
        .find(|c| c.body.to_string().contains("penguins"))
        .unwrap();
    assert!(prompt.body.to_string().contains("GENERATE_UI"), "the prompt lists the closed set");

    // Garbage JSON: the turn goes on with the configured fallback, and says why.
    let items = execute(
        &mut client,
        &world.token,
        ExecuteRequest { messages: vec![user("Tell me about the weather on Mars")], ..Default::default() },
    )
    .await?;
    let evs = events(&items);
    let reason = evs
        .iter()
        .find_map(|e| if let Event::IntentDetected(d) = e { Some(d.fallback_reason.clone()) } else { None })
        .expect("an intent event");
    assert!(reason.contains("valid JSON"), "{reason}");
    let turn = result(&items);
    assert_eq!((turn.outcome, turn.intent), (TurnOutcome::Answered as i32, Intent::Chat as i32));
    assert_eq!(turn.intent_source, IntentSource::Unspecified as i32);
    assert_eq!(turn.agent.as_ref().unwrap().name, "generalist");
    assert_eq!(turn.answer, "Cold and dusty.");

    // A valid LLM answer whose skill no agent has: the tenant's default agent answers.
    let items = execute(
        &mut client,
        &world.token,
        ExecuteRequest { messages: vec![user("What should I cook tonight")], ..Default::default() },
    )
    .await?;
    let selected = events(&items)
        .into_iter()
        .find_map(|e| if let Event::AgentSelected(a) = e { Some(a.clone()) } else { None })
        .unwrap();
    assert_eq!(selected.reason, SelectionReason::DefaultAgent as i32);
    let turn = result(&items);
    assert_eq!((turn.intent, turn.intent_source), (Intent::QueryData as i32, IntentSource::Llm as i32));
    assert_eq!(turn.agent.as_ref().unwrap().name, "generalist");
    assert_eq!(turn.answer, "Pasta.");
    world.stop().await
}

#[tokio::test]
async fn pipeline_registry_down_ends_with_an_error_item_not_a_hang() -> anyhow::Result<()> {
    // A registry that accepts connections and never answers, then one that refuses them.
    let blackhole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hole_addr = blackhole.local_addr()?;
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = blackhole.accept().await {
            conns.push(c);
        }
    });
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let token = getlood_auth::dev_token(
        TEST_SECRET,
        "getlood",
        "getlood",
        &format!("pl_{}", unique()),
        "alice",
        &["member"],
        3600,
    )?;
    for (addr, codes) in [
        (hole_addr, [ProtoErrorCode::DeadlineExceeded, ProtoErrorCode::Unavailable]),
        (refused, [ProtoErrorCode::Unavailable, ProtoErrorCode::DeadlineExceeded]),
    ] {
        let pipeline = TestPipeline::start(&format!("http://{addr}"), None, Duration::from_secs(1)).await?;
        let mut client = pipeline.client();
        let started = Instant::now();
        let items = execute(
            &mut client,
            &token,
            ExecuteRequest { messages: vec![user("Crée-moi un dashboard analytics")], ..Default::default() },
        )
        .await?;
        assert!(started.elapsed() < Duration::from_secs(10), "{addr}: took {:?}", started.elapsed());
        let evs = events(&items);
        let failed = evs.iter().any(|e| {
            matches!(e, Event::StageCompleted(s) if s.stage == Stage::AgentSelection as i32 && s.status == StageStatus::Failed as i32)
        });
        assert!(failed, "{addr}: stage 3 reported failed: {evs:?}");
        match items.last().and_then(|i| i.event.clone()) {
            Some(Event::Error(detail)) => {
                assert!(codes.iter().any(|c| *c as i32 == detail.code), "{addr}: {detail:?}");
                assert!(detail.message.contains("agent registry"), "{}", detail.message);
            }
            other => panic!("{addr}: expected a final error item, got {other:?}"),
        }
        pipeline.stop().await?;
    }
    held.abort();
    Ok(())
}
