//! Every adapter operation against the real MindsDB 26.1, with the deterministic OpenAI double
//! as the LLM and embedding provider so answers can be asserted exactly.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns fail loudly by design

mod common;

use std::time::Duration;

use getlood_mindsdb::mask;

use common::{OpenAiDouble, eventually, provisioned};
use futures::StreamExt as _;
use getlood_mindsdb::*;
use secrecy::SecretString;
use serde_json::{Map, json};

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn llm(double: &OpenAiDouble) -> LlmSettings {
    LlmSettings {
        provider: "openai".into(),
        model_name: "gpt-4o".into(),
        api_key: Some(SecretString::from("sk-agent-secret")),
        base_url: Some(double.base_url()),
    }
}

fn embedding(double: &OpenAiDouble) -> EmbeddingSettings {
    EmbeddingSettings {
        provider: "openai".into(),
        model_name: "double-embed".into(),
        api_key: Some(SecretString::from("sk-embed-secret")),
        base_url: Some(double.base_url()),
    }
}

fn agent_spec(double: &OpenAiDouble, name: &str) -> AgentSpec {
    AgentSpec {
        name: id(name),
        model: llm(double),
        tables: vec![],
        knowledge_bases: vec![],
        prompt_template: Some("You are a test agent".into()),
        mode: AgentMode::Text,
        timeout_secs: Some(30),
    }
}

#[tokio::test]
async fn project_ensure_list_drop() {
    let (c, ctx) = provisioned("prj").await;
    let projects = ProjectAdapter::new(c.clone());
    // ensure is idempotent
    assert_eq!(projects.ensure(&ctx).await.unwrap(), ctx.project());
    assert_eq!(projects.list(&ctx).await.unwrap(), vec![ctx.project().to_string()]);
    assert!(projects.exists(&ctx).await.unwrap());
    projects.drop(&ctx).await.unwrap();
    assert!(!projects.exists(&ctx).await.unwrap());
    projects.drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn a_new_tenants_first_requests_at_once_all_find_its_project() {
    // Seen from the web desktop: a new tenant's first page load and first agent at once, both
    // creating the project; the second got MindsDB's "UNIQUE constraint failed" as a 500.
    let c = common::client();
    let ctx = common::tenant("race");
    let projects = ProjectAdapter::new(c.clone());
    let results = futures::future::join_all((0..6).map(|_| projects.ensure(&ctx))).await;
    for r in &results {
        assert_eq!(r.as_ref().map_err(ToString::to_string), Ok(&ctx.project()));
    }
    assert_eq!(projects.list(&ctx).await.unwrap(), vec![ctx.project().to_string()]);
    projects.drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn agent_crud_and_streaming_answer() {
    let double = OpenAiDouble::start().await.unwrap();
    let (c, ctx) = provisioned("agt").await;
    let agents = AgentAdapter::new(c.clone());
    let name = id("helper");

    let created = agents.create(&ctx, &agent_spec(&double, "helper")).await.unwrap();
    assert_eq!(created.name, "helper");
    assert!(created.has_api_key);
    let err = agents.create(&ctx, &agent_spec(&double, "helper")).await.unwrap_err();
    assert_eq!(err.code(), getlood_common::ErrorCode::AlreadyExists, "{err}");

    let got = agents.get(&ctx, &name).await.unwrap();
    assert_eq!(got.prompt_template.as_deref(), Some("You are a test agent"));
    assert_eq!(got.base_url.as_deref(), Some(double.base_url().as_str()));
    let listed = agents.list(&ctx).await.unwrap();
    assert_eq!(listed.len(), 1);
    let shown = serde_json::to_string(&listed).unwrap();
    assert!(!shown.contains("sk-agent-secret"), "{shown}");

    let mut spec = agent_spec(&double, "helper");
    spec.prompt_template = Some("You are an updated agent".into());
    agents.update(&ctx, &spec).await.unwrap();
    assert_eq!(agents.get(&ctx, &name).await.unwrap().prompt_template.as_deref(), Some("You are an updated agent"));

    double.clear_calls();
    let mut stream = agents.query(&ctx, &name, &[AgentMessage::user("hello agent")]).await.unwrap();
    let mut events = Vec::new();
    while let Some(ev) = stream.next().await {
        events.push(ev.unwrap());
    }
    assert!(matches!(events.first(), Some(AgentEvent::Status(_))), "{events:?}");
    assert_eq!(events.last(), Some(&AgentEvent::End));
    let answers: Vec<_> =
        events.iter().filter_map(|e| if let AgentEvent::Answer(a) = e { Some(a.clone()) } else { None }).collect();
    assert_eq!(answers.len(), 1, "{events:?}");
    assert_eq!(answers[0], "DOUBLE-ANSWER: hello agent");
    let chat_calls = double.calls_to("/v1/chat/completions");
    assert!(chat_calls.len() >= 2, "plan + answer calls expected");
    assert!(chat_calls.iter().all(|c| c.body["tool_choice"] == "required" || c.body.get("tools").is_some()));

    let answer = agents.ask(&ctx, &name, "second question").await.unwrap();
    assert_eq!(answer, "DOUBLE-ANSWER: second question");

    agents.delete(&ctx, &name).await.unwrap();
    let err = agents.get(&ctx, &name).await.unwrap_err();
    assert_eq!(err.code(), getlood_common::ErrorCode::NotFound, "{err}");
    let err =
        agents.query(&ctx, &name, &[AgentMessage::user("x")]).await.err().expect("query of a deleted agent fails");
    assert_eq!(err.code(), getlood_common::ErrorCode::NotFound, "{err}");
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn model_engine_create_predict_list_delete() {
    let double = OpenAiDouble::start().await.unwrap();
    let (c, ctx) = provisioned("mdl").await;
    let models = ModelAdapter::new(c.clone());
    let engine = EngineSpec {
        name: id("llm"),
        handler: id("openai"),
        api_key: Some(SecretString::from("sk-engine-secret")),
        api_base: Some(double.base_url()),
    };
    models.create_engine(&ctx, &engine).await.unwrap();
    let err = models.create_engine(&ctx, &engine).await.unwrap_err();
    assert_eq!(err.code(), getlood_common::ErrorCode::AlreadyExists, "{err}");
    let engines = models.list_engines(&ctx).await.unwrap();
    assert_eq!(engines.len(), 1);
    assert_eq!(engines[0].settings["api_base"], double.base_url());
    assert!(!serde_json::to_string(&engines).unwrap().contains("sk-engine-secret"));

    let spec = ModelSpec {
        name: id("answerer"),
        engine: id("llm"),
        target: id("answer"),
        model_name: "gpt-4".into(),
        prompt_template: "Answer briefly: {{question}}".into(),
        max_tokens: Some(50),
    };
    let info = models.create(&ctx, &spec).await.unwrap();
    assert_eq!(info.status.as_deref(), Some("complete"));
    assert_eq!(info.predict.as_deref(), Some("answer"));

    let out = models
        .predict(&ctx, &id("answerer"), Map::from_iter([("question".to_owned(), json!("What is Rust?"))]))
        .await
        .unwrap();
    assert_eq!(out["answer"], "DOUBLE-ANSWER: Answer briefly: What is Rust?");
    let last = double.calls_to("/v1/chat/completions").pop().unwrap();
    assert_eq!(last.body["model"], "gpt-4");
    assert_eq!(last.last_user_message().unwrap(), "Answer briefly: What is Rust?");

    let many = models
        .predict_many(
            &ctx,
            &id("answerer"),
            vec![
                Map::from_iter([("question".to_owned(), json!("one"))]),
                Map::from_iter([("question".to_owned(), json!("two"))]),
            ],
        )
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[1]["answer"], "DOUBLE-ANSWER: Answer briefly: two");

    assert_eq!(models.list(&ctx).await.unwrap().len(), 1);
    models.delete(&ctx, &id("answerer")).await.unwrap();
    assert_eq!(models.get(&ctx, &id("answerer")).await.unwrap_err().code(), getlood_common::ErrorCode::NotFound);
    let err = models.predict(&ctx, &id("answerer"), Map::new()).await.unwrap_err();
    assert_eq!(err.code(), getlood_common::ErrorCode::NotFound, "{err}");
    models.drop_engine(&ctx, &id("llm")).await.unwrap();
    assert!(models.list_engines(&ctx).await.unwrap().is_empty());
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn model_provider_failure_is_unavailable() {
    let double = OpenAiDouble::start().await.unwrap();
    let (c, ctx) = provisioned("mdf").await;
    let models = ModelAdapter::new(c.clone());
    let engine = EngineSpec {
        name: id("llm"),
        handler: id("openai"),
        api_key: Some(SecretString::from("sk-x")),
        api_base: Some(double.base_url()),
    };
    models.create_engine(&ctx, &engine).await.unwrap();
    let spec = ModelSpec {
        name: id("m"),
        engine: id("llm"),
        target: id("answer"),
        model_name: "gpt-4".into(),
        prompt_template: "{{question}}".into(),
        max_tokens: None,
    };
    models.create(&ctx, &spec).await.unwrap();
    double.set_failing(Some(503));
    let err = models.predict(&ctx, &id("m"), Map::from_iter([("question".to_owned(), json!("q"))])).await.unwrap_err();
    assert_eq!(err.code(), getlood_common::ErrorCode::Unavailable, "{err}");
    double.set_failing(None);
    models.delete(&ctx, &id("m")).await.unwrap();
    models.drop_engine(&ctx, &id("llm")).await.unwrap();
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn knowledge_base_create_insert_search_delete() {
    let double = OpenAiDouble::start().await.unwrap();
    let (c, ctx) = provisioned("kb").await;
    let kbs = KnowledgeBaseAdapter::new(c.clone());
    let spec = KnowledgeBaseSpec {
        name: id("memory"),
        embedding: embedding(&double),
        metadata_columns: vec![id("topic")],
        chunk_size: None,
    };
    let info = kbs.create(&ctx, &spec).await.unwrap();
    assert_eq!(info.name, "memory");
    assert_eq!(info.embedding_model["api_key"], mask::MASK);
    let doc = |id: &str, content: &str, topic: &str| Document {
        id: id.into(),
        content: content.into(),
        metadata: Map::from_iter([("topic".to_owned(), json!(topic))]),
    };
    kbs.insert(
        &ctx,
        &id("memory"),
        &[
            doc("d1", "my cat sleeps all day", "pets"),
            doc("d2", "the central bank raised interest rates", "finance"),
            doc("d3", "rust has a borrow checker", "code"),
        ],
    )
    .await
    .unwrap();
    let hits = kbs.search(&ctx, &id("memory"), "cat sleeps all day", 2).await.unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(hits[0].id, "d1");
    assert_eq!(hits[0].content, "my cat sleeps all day");
    assert_eq!(hits[0].metadata["topic"], "pets");
    assert!(hits[0].relevance.unwrap() >= hits[1].relevance.unwrap());
    let top1 = kbs.search(&ctx, &id("memory"), "interest rates", 1).await.unwrap();
    assert_eq!(top1.len(), 1);
    assert_eq!(top1[0].id, "d2");
    let listed = kbs.list(&ctx).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!serde_json::to_string(&listed).unwrap().contains("sk-embed-secret"));
    assert_eq!(
        kbs.search(&ctx, &id("memory"), "x", 0).await.unwrap_err().code(),
        getlood_common::ErrorCode::InvalidArgument
    );
    kbs.delete(&ctx, &id("memory")).await.unwrap();
    let err = kbs.search(&ctx, &id("memory"), "cat", 1).await.unwrap_err();
    assert_eq!(err.code(), getlood_common::ErrorCode::NotFound, "{err}");
    assert!(kbs.list(&ctx).await.unwrap().is_empty());
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}

/// A private Postgres schema with an `items` table, attached to the tenant as database `pg`.
async fn attach_pg(c: &MindsdbClient, ctx: &TenantContext) -> (sqlx::PgPool, String) {
    let pool = common::pg().await;
    let schema = format!("mdbt_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    for stmt in [
        format!("CREATE SCHEMA {schema}"),
        format!("CREATE TABLE {schema}.items (id int primary key, title text)"),
        format!("INSERT INTO {schema}.items VALUES (1, 'alpha'), (2, 'beta')"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt)).execute(&pool).await.unwrap();
    }
    let (host, port, database, user) = common::pg_parts();
    let spec = PostgresSpec {
        name: id("pg"),
        host,
        port,
        database,
        user,
        password: Some(SecretString::from("pg-password-secret")),
        schema: Some(schema.clone()),
    };
    DatabaseAdapter::new(c.clone()).attach_postgres(ctx, &spec).await.unwrap();
    (pool, schema)
}

async fn drop_schema(pool: &sqlx::PgPool, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(pool).await.unwrap();
}

#[tokio::test]
async fn database_attach_list_sample_detach() {
    let (c, ctx) = provisioned("db").await;
    let dbs = DatabaseAdapter::new(c.clone());
    let (pool, schema) = attach_pg(&c, &ctx).await;
    let listed = dbs.list(&ctx).await.unwrap();
    let pg = listed.iter().find(|d| d.name == "pg").expect("pg listed");
    assert_eq!(pg.engine.as_deref(), Some("postgres"));
    assert_eq!(pg.parameters["password"], mask::MASK);
    assert_eq!(pg.parameters["schema"], schema.as_str());
    assert!(!serde_json::to_string(&listed).unwrap().contains("pg-password-secret"));
    let rows = dbs.sample(&ctx, &id("pg"), &id("items"), 10).await.unwrap();
    assert_eq!(rows.rows.len(), 2);
    assert_eq!(rows.columns, vec!["id", "title"]);
    let (host, port, database, user) = common::pg_parts();
    let dup = PostgresSpec { name: id("pg"), host, port, database, user, password: None, schema: None };
    assert_eq!(dbs.attach_postgres(&ctx, &dup).await.unwrap_err().code(), getlood_common::ErrorCode::AlreadyExists);
    dbs.detach(&ctx, &id("pg")).await.unwrap();
    assert!(dbs.list(&ctx).await.unwrap().iter().all(|d| d.name != "pg"));
    assert_eq!(dbs.detach(&ctx, &id("pg")).await.unwrap_err().code(), getlood_common::ErrorCode::NotFound);
    drop_schema(&pool, &schema).await;
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}

#[tokio::test]
async fn job_create_list_history_run_once_delete() {
    let (c, ctx) = provisioned("job").await;
    let jobs = JobAdapter::new(c.clone());
    let (pool, schema) = attach_pg(&c, &ctx).await;
    let items = (id("pg"), id("items"));

    let start = chrono::Utc::now().naive_utc() + chrono::Duration::days(1);
    let spec = JobSpec {
        name: id("nightly"),
        body: vec![SqlBuilder::new().kw("SELECT * FROM").qualified(&items.0, &items.1).build()],
        schedule: Some(Schedule { every: 1, unit: ScheduleUnit::Day }),
        start: Some(start),
        end: Some(start + chrono::Duration::days(30)),
    };
    let created = jobs.create(&ctx, &spec).await.unwrap();
    assert_eq!(created.schedule.as_deref(), Some("every 1 day"));
    assert_eq!(created.query, "SELECT * FROM `pg`.`items`");
    assert_eq!(jobs.create(&ctx, &spec).await.unwrap_err().code(), getlood_common::ErrorCode::AlreadyExists);
    assert_eq!(jobs.list(&ctx).await.unwrap().len(), 1);
    assert_eq!(jobs.get(&ctx, &id("nightly")).await.unwrap().name, "nightly");

    let body = vec![
        SqlBuilder::new()
            .kw("INSERT INTO")
            .qualified(&items.0, &items.1)
            .kw("(id, title) VALUES (")
            .value(3)
            .kw(",")
            .value("it's; -- \"gamma\"")
            .kw(")")
            .build(),
    ];
    let once = jobs.run_once(&ctx, &id("load"), body).await.unwrap();
    let runs = eventually(Duration::from_secs(40), || async {
        let runs = jobs.history(&ctx, Some(&once)).await.unwrap();
        runs.iter().any(|r| r.run_end.is_some()).then_some(runs)
    })
    .await
    .expect("the one-off job ran within 40 s");
    assert_eq!(runs[0].name, once.as_str());
    assert_eq!(runs[0].error, None, "{runs:?}");
    let title: String =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT title FROM {schema}.items WHERE id = 3")))
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(title, "it's; -- \"gamma\"");
    assert!(!jobs.history(&ctx, None).await.unwrap().is_empty());

    jobs.delete(&ctx, &id("nightly")).await.unwrap();
    assert_eq!(jobs.delete(&ctx, &id("nightly")).await.unwrap_err().code(), getlood_common::ErrorCode::NotFound);
    assert!(jobs.list(&ctx).await.unwrap().iter().all(|j| j.name != "nightly"));
    DatabaseAdapter::new(c.clone()).detach(&ctx, &id("pg")).await.unwrap();
    drop_schema(&pool, &schema).await;
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}
