//! agent-registry against real Postgres, Redis, NATS and MindsDB, with the deterministic
//! OpenAI-compatible test double as the agents' LLM.

use std::time::Duration;

use futures::StreamExt as _;
use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, Payload};
use getlood_mindsdb::{AgentAdapter, MindsdbClient, MindsdbConfig, TenantContext};
use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::agent_registry::v1::*;
use getlood_proto::common::v1::{ChatMessage, Role};
use getlood_testkit::{OpenAiDouble, Platform, Service};
use tonic::transport::Channel;
use tonic::{Code, Request};

type Client = AgentRegistryServiceClient<Channel>;

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn agent(name: &str, base_url: &str, skills: &[&str]) -> Agent {
    Agent {
        name: name.to_owned(),
        description: "builds dashboards".to_owned(),
        model: Some(ModelConfig {
            provider: "openai".to_owned(),
            model_name: "gpt-test".to_owned(),
            base_url: Some(base_url.to_owned()),
            api_key: "sk-test-secret-key".to_owned(),
            has_api_key: false,
        }),
        skills: skills.iter().map(|s| (*s).to_owned()).collect(),
        prompt_template: "You are a helpful dashboard agent.".to_owned(),
        ..Default::default()
    }
}

async fn create_skill(client: &mut Client, token: &str, name: &str) {
    client
        .create_skill(authed(
            token,
            CreateSkillRequest {
                skill: Some(Skill {
                    name: name.to_owned(),
                    description: format!("the {name} skill"),
                    prompt_fragment: format!("Use {name} when asked."),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap();
}

/// Updates the `paths` of `patch` at `expected_version`; the updated agent.
async fn update(
    client: &mut Client,
    token: &str,
    patch: Agent,
    paths: &[&str],
    expected_version: i64,
) -> anyhow::Result<Agent> {
    let req = UpdateAgentRequest {
        agent: Some(patch),
        update_mask: Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() }),
        expected_version,
    };
    Ok(client.update_agent(authed(token, req)).await?.into_inner().agent.expect("updated agent"))
}

/// MindsDB's agents API with `tenant`'s context, to see and change what MindsDB holds around
/// the registry.
fn mindsdb_of(tenant: &str) -> anyhow::Result<(AgentAdapter, TenantContext)> {
    let config = MindsdbConfig { url: getlood_testkit::mindsdb_url(), ..MindsdbConfig::default() };
    Ok((AgentAdapter::new(MindsdbClient::new(&config)?), TenantContext::new(TenantId::parse(tenant).unwrap(), "test")))
}

/// Creates the `dashboard-builder` agent (with the `ui-generation` skill) on the double.
async fn create_dashboard_builder(client: &mut Client, token: &str, llm: &OpenAiDouble) -> anyhow::Result<Agent> {
    let req = CreateAgentRequest {
        agent: Some(agent("dashboard-builder", &llm.base_url(), &["ui-generation"])),
        ..Default::default()
    };
    Ok(client.create_agent(authed(token, req)).await?.into_inner().agent.expect("created agent"))
}

#[tokio::test]
async fn agent_lifecycle_is_all_or_nothing_and_tenant_scoped() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let platform = Platform::builder().service(Service::AgentRegistry).start().await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let mut client = Client::new(platform.grpc_channel(Service::AgentRegistry));
    let acme_id = format!("acme_{}", short_id());
    let acme = platform.token(&acme_id, "alice", &["admin"]);
    let globex = platform.token(&format!("globex_{}", short_id()), "bob", &["admin"]);
    // What MindsDB itself holds for acme, read around the registry.
    let (mindsdb, acme_ctx) = mindsdb_of(&acme_id)?;
    let mindsdb_agents = |ctx: TenantContext| {
        let mindsdb = mindsdb.clone();
        async move {
            mindsdb
                .list(&ctx)
                .await
                .map(|l| l.into_iter().map(|a| a.name).collect::<Vec<_>>())
                .expect("mindsdb agent list")
        }
    };

    create_skill(&mut client, &acme, "ui-generation").await;
    create_skill(&mut client, &acme, "data-analysis").await;

    // Unknown skill: refused before anything is written.
    let err = client
        .create_agent(authed(
            &acme,
            CreateAgentRequest { agent: Some(agent("dash", &llm.base_url(), &["nope"])), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "unknown skills: nope");

    // An LLM MindsDB cannot reach: MindsDB refuses the agent, and no registry row remains.
    let err = client
        .create_agent(authed(
            &acme,
            CreateAgentRequest { agent: Some(agent("broken", "http://127.0.0.1:9/v1", &[])), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    let listed = client.list_agents(authed(&acme, ListAgentsRequest::default())).await?.into_inner();
    assert!(listed.agents.is_empty(), "no half-created agent: {listed:?}");
    assert!(mindsdb_agents(acme_ctx.clone()).await.is_empty(), "no orphaned mindsdb agent");

    // Create: the key never comes back, skills are compiled in.
    let created = create_dashboard_builder(&mut client, &acme, &llm).await?;
    assert_eq!(created.version, 1);
    let model = created.model.clone().unwrap();
    assert!(model.api_key.is_empty());
    assert!(model.has_api_key);
    assert!(created.effective_prompt_template.contains("[skill ui-generation]"));
    let mindsdb_name = format!("agent_{}", created.id.replace('-', ""));
    assert_eq!(
        mindsdb_agents(acme_ctx.clone()).await,
        std::slice::from_ref(&mindsdb_name),
        "the registry row has its mindsdb agent"
    );

    // Same name again: ALREADY_EXISTS.
    let err = client
        .create_agent(authed(
            &acme,
            CreateAgentRequest { agent: Some(agent("dashboard-builder", &llm.base_url(), &[])), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);

    // Another tenant sees nothing, by id or by name, and cannot change or delete it.
    for selector in
        [get_agent_request::Selector::Id(created.id.clone()), get_agent_request::Selector::Name(created.name.clone())]
    {
        let err = client.get_agent(authed(&globex, GetAgentRequest { selector: Some(selector) })).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    let err = client
        .delete_agent(authed(&globex, DeleteAgentRequest { id: created.id.clone(), expected_version: 0 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .find_agents(authed(&globex, FindAgentsRequest { skills: vec!["ui-generation".into()], ..Default::default() }))
        .await?
        .into_inner();
    assert!(err.matches.is_empty());

    // Stale version: ABORTED, nothing changed.
    let mut patch = created.clone();
    patch.description = "new description".into();
    let err = client
        .update_agent(authed(
            &acme,
            UpdateAgentRequest {
                agent: Some(patch.clone()),
                update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
                expected_version: 7,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted);
    let updated = update(&mut client, &acme, patch, &["description", "skills"], 1).await?;
    assert_eq!(updated.version, 2);
    assert_eq!(updated.description, "new description");

    // FindAgents by skill.
    let found = client
        .find_agents(authed(&acme, FindAgentsRequest { skills: vec!["ui-generation".into()], ..Default::default() }))
        .await?
        .into_inner();
    assert_eq!(found.matches.len(), 1);
    assert_eq!(found.matches[0].matched_skills, ["ui-generation"]);

    // QueryAgent streams through MindsDB to the test double and ends with the answer.
    let mut stream = client
        .query_agent(authed(
            &acme,
            QueryAgentRequest {
                agent: Some(query_agent_request::Agent::AgentName("dashboard-builder".into())),
                messages: vec![ChatMessage {
                    role: Role::User as i32,
                    content: "Crée-moi un dashboard analytics".into(),
                    name: String::new(),
                }],
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    let mut completed = None;
    while let Some(item) = stream.next().await {
        if let Some(query_agent_response::Event::Completed(c)) = item?.event {
            completed = Some(c);
        }
    }
    let completed = completed.expect("stream ended without completion");
    assert!(!completed.answer.is_empty());
    assert_eq!(completed.agent_version, 2);

    // Delete with the right version; afterwards it is gone everywhere.
    client.delete_agent(authed(&acme, DeleteAgentRequest { id: created.id.clone(), expected_version: 2 })).await?;
    let err = client
        .get_agent(authed(
            &acme,
            GetAgentRequest { selector: Some(get_agent_request::Selector::Id(created.id.clone())) },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(mindsdb_agents(acme_ctx.clone()).await.is_empty(), "the mindsdb agent went with the row");

    // Every change left an event for acme on JetStream, in order.
    let bus = EventBus::new(async_nats::connect(getlood_testkit::nats_url()).await?, "getlood");
    let events = bus.read(&TenantId::parse(&acme_id).unwrap(), Domain::Agent, 0, 10, Duration::from_secs(2)).await?;
    let kinds: Vec<(&str, i64)> = events
        .iter()
        .filter_map(|e| match &e.envelope.payload {
            Some(Payload::AgentCreated(p)) => Some(("created", p.version)),
            Some(Payload::AgentUpdated(p)) => Some(("updated", p.version)),
            Some(Payload::AgentDeleted(p)) => Some(("deleted", p.version)),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, [("created", 1), ("updated", 2), ("deleted", 2)]);
    platform.stop().await
}

#[tokio::test]
async fn replicas_drop_stale_cache_entries_on_agent_events() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let first = Platform::builder().service(Service::AgentRegistry).start().await?;
    let second = Platform::builder().service(Service::AgentRegistry).replica_of(&first).start().await?;
    first.wait_ready(Duration::from_secs(20)).await?;
    second.wait_ready(Duration::from_secs(20)).await?;
    let mut a = Client::new(first.grpc_channel(Service::AgentRegistry));
    let mut b = Client::new(second.grpc_channel(Service::AgentRegistry));
    let token = first.token(&format!("cache_{}", short_id()), "alice", &["builder"]);

    let created = a
        .create_agent(authed(
            &token,
            CreateAgentRequest { agent: Some(agent("cached", &llm.base_url(), &[])), ..Default::default() },
        ))
        .await?
        .into_inner()
        .agent
        .unwrap();
    let by_name = || GetAgentRequest { selector: Some(get_agent_request::Selector::Name("cached".into())) };
    // Replica b reads (and caches) version 1.
    assert_eq!(b.get_agent(authed(&token, by_name())).await?.into_inner().agent.unwrap().version, 1);
    // Replica a updates it.
    let mut patch = created.clone();
    patch.description = "v2".into();
    a.update_agent(authed(
        &token,
        UpdateAgentRequest {
            agent: Some(patch),
            update_mask: Some(prost_types::FieldMask { paths: vec!["description".into()] }),
            expected_version: 1,
        },
    ))
    .await?;
    // Replica b sees version 2 as soon as the event reaches it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = b.get_agent(authed(&token, by_name())).await?.into_inner().agent.unwrap();
        if got.version == 2 {
            assert_eq!(got.description, "v2");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "replica b still serves version {}", got.version);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.delete_agent(authed(&token, DeleteAgentRequest { id: created.id, expected_version: 2 })).await?;
    second.stop().await?;
    first.stop().await
}

/// A gateway replica in this process, calling `platform`'s agent registry.
/// Asks `name` one question; the completed answer, or the status the call or stream ended with.
async fn ask(client: &mut Client, token: &str, name: &str) -> Result<QueryAgentCompleted, tonic::Status> {
    let mut stream = client
        .query_agent(authed(
            token,
            QueryAgentRequest {
                agent: Some(query_agent_request::Agent::AgentName(name.into())),
                messages: vec![ChatMessage { role: Role::User as i32, content: "hello".into(), name: String::new() }],
                ..Default::default()
            },
        ))
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        match item?.event {
            Some(query_agent_response::Event::Completed(c)) => return Ok(c),
            Some(query_agent_response::Event::Error(e)) => return Err(tonic::Status::unknown(e.message)),
            _ => {}
        }
    }
    Err(tonic::Status::unknown("stream ended without completion"))
}

#[tokio::test]
async fn agents_mindsdb_lost_are_put_back_from_the_registry() -> anyhow::Result<()> {
    // MindsDB's storage reset under a kept Postgres (a lost volume, a new MindsDB): the registry
    // still lists the agent, MindsDB no longer has it, and every question to it failed with
    // "Agent with name agent_... does not exist".
    let llm = OpenAiDouble::start().await?;
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .app_settings(
            Service::AgentRegistry,
            serde_json::json!({"egress": {"allow": ["127.0.0.0/8"]}, "key_encryption_key": "k".repeat(32)}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let mut client = Client::new(platform.grpc_channel(Service::AgentRegistry));
    let tenant = format!("lost_{}", short_id());
    let token = platform.token(&tenant, "alice", &["admin"]);
    let other = platform.token(&format!("other_{}", short_id()), "bob", &["admin"]);
    let (mindsdb, ctx) = mindsdb_of(&tenant)?;
    create_skill(&mut client, &token, "ui-generation").await;
    let created = create_dashboard_builder(&mut client, &token, &llm).await?;
    let name = getlood_mindsdb::Ident::new(&format!("agent_{}", created.id.replace('-', "")))?;

    // The registry keeps the key sealed: never in clear in its table.
    let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    let table = format!("\"{}\".agents", platform.schema("agent_registry"));
    let (kept, sealed): (Option<String>, bool) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT api_key, api_key_sealed FROM {table} WHERE id = $1::uuid")))
            .bind(&created.id)
            .fetch_one(&pool)
            .await?;
    assert!(sealed);
    assert!(kept.is_some_and(|k| !k.contains("sk-test-secret-key")));

    // MindsDB loses the agent: the next question puts it back, with its key, and is answered.
    mindsdb.delete(&ctx, &name).await?;
    let answer = ask(&mut client, &token, "dashboard-builder").await?;
    assert!(!answer.answer.is_empty());
    assert_eq!(answer.agent_id, created.id);
    let restored = mindsdb.get(&ctx, &name).await?;
    assert!(restored.has_api_key, "the restored agent has its key back: {restored:?}");
    assert!(restored.prompt_template.unwrap_or_default().contains("[skill ui-generation]"));
    // Another tenant asking for it still finds nothing.
    assert_eq!(ask(&mut client, &other, "dashboard-builder").await.unwrap_err().code(), Code::NotFound);

    // An agent whose key the registry did not keep (written before it kept keys): a precise
    // refusal, nothing created, until an update gives the key again.
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET api_key = NULL WHERE id = $1::uuid")))
        .bind(&created.id)
        .execute(&pool)
        .await?;
    mindsdb.delete(&ctx, &name).await?;
    let err = ask(&mut client, &token, "dashboard-builder").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(
        err.message(),
        "agent 'dashboard-builder' is missing from mindsdb (its storage was reset) and cannot be put back: the \
         registry did not keep its api key; update the agent with its model.api_key to provision it again"
    );
    assert!(mindsdb.list(&ctx).await?.is_empty(), "no keyless agent was created");
    let mut patch = created.clone();
    patch.model = agent("dashboard-builder", &llm.base_url(), &[]).model;
    let updated = update(&mut client, &token, patch, &["model"], 1).await?;
    assert_eq!(updated.version, 2);
    assert!(mindsdb.get(&ctx, &name).await?.has_api_key);
    assert_eq!(ask(&mut client, &token, "dashboard-builder").await?.agent_version, 2);
    pool.close().await;
    platform.stop().await
}

async fn extra_gateway(platform: &Platform) -> anyhow::Result<(String, tokio_util::sync::CancellationToken)> {
    let mut config = getlood_gateway::default_config();
    config.redis.url = getlood_testkit::redis_url();
    config.nats.url = getlood_testkit::nats_url();
    config.auth.hs256_secret = Some(secrecy::SecretString::from(getlood_testkit::TEST_SECRET));
    config.services.agent_registry = format!("http://{}", platform.get(Service::AgentRegistry).grpc_addr);
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = getlood_server::Listeners::bind(loopback, loopback, loopback).await?;
    let url = format!("http://{}", listeners.http_addr());
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(getlood_server::run_service(
        getlood_gateway::SPEC,
        config,
        None,
        listeners,
        token.clone(),
        getlood_gateway::run,
    ));
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "second gateway not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((url, token))
}

/// Reads `url` until `done` accepts the response, for at most 5 s (an event's trip).
async fn read_until(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    done: impl Fn(u16, &serde_json::Value) -> bool,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = http.get(url).bearer_auth(token).send().await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if done(status, &body) {
            return Ok((status, body));
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "still {status} {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn gateway_agent_read_cache_is_tenant_scoped_and_dropped_on_changes_from_any_replica() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let platform = Platform::builder().service(Service::AgentRegistry).service(Service::Gateway).start().await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    let (second, second_stop) = extra_gateway(&platform).await?;
    let first = platform.http_url(Service::Gateway);
    let http = reqwest::Client::new();
    let acme = platform.token(&format!("gwcache_{}", short_id()), "alice", &["admin"]);
    let globex = platform.token(&format!("gwother_{}", short_id()), "bob", &["admin"]);

    let created: serde_json::Value = http
        .post(format!("{first}/api/v1/agents"))
        .bearer_auth(&acme)
        .json(&serde_json::json!({"name": "cached", "description": "v1",
            "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-test"}}))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "{created}");
    let on_second = format!("{second}/api/v1/agents/{id}");

    // The second replica reads (and caches) version 1; a conditional read of it is a 304.
    let r = http.get(&on_second).bearer_auth(&acme).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"], "\"1\"");
    let r = http.get(&on_second).bearer_auth(&acme).header("if-none-match", "\"1\"").send().await?;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], "\"1\"");
    // Another tenant asking the same replica for the cached id: 404, as if it did not exist.
    let r = http.get(&on_second).bearer_auth(&globex).send().await?;
    assert_eq!(r.status(), 404);

    // The first replica updates it; the second drops its entry when the event arrives.
    let r = http
        .put(format!("{first}/api/v1/agents/{id}"))
        .bearer_auth(&acme)
        .header("if-match", "\"1\"")
        .json(&serde_json::json!({"name": "cached", "description": "v2",
            "model": {"provider": "openai", "model_name": "gpt-test", "base_url": llm.base_url(), "api_key": "sk-test"}}))
        .send()
        .await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let (_, body) = read_until(&http, &on_second, &acme, |s, b| s == 200 && b["version"] == 2).await?;
    assert_eq!(body["description"], "v2");
    // The writer's own replica never serves the old version, even before the event.
    let body: serde_json::Value =
        http.get(format!("{first}/api/v1/agents/{id}")).bearer_auth(&acme).send().await?.json().await?;
    assert_eq!(body["version"], 2);

    // Deleted through the first replica: the second answers 404 once the event is in.
    let r = http.delete(format!("{first}/api/v1/agents/{id}")).bearer_auth(&acme).send().await?;
    assert_eq!(r.status(), 200);
    read_until(&http, &on_second, &acme, |s, _| s == 404).await?;
    second_stop.cancel();
    platform.stop().await
}

fn short_id() -> String {
    uuid_like()
}

fn uuid_like() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{nanos:08x}")
}
