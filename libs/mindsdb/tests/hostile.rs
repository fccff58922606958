//! A corpus of more than 200 hostile names and values through every adapter against the real
//! MindsDB: names are refused with INVALID_ARGUMENT before anything is sent; values come back
//! byte for byte (or, where MindsDB 26.1 cannot store them exactly, are refused up front); a
//! canary table attached to the same tenant is never read, changed or dropped.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns fail loudly by design

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{OpenAiDouble, eventually, provisioned};
use getlood_common::ErrorCode;
use getlood_mindsdb::*;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

/// The corpus: fragments alone and wrapped, classic injection payloads, control characters,
/// unicode tricks and very long strings. Every entry holds at least one character outside
/// `[a-z0-9_]`, so none is a valid name.
fn corpus() -> Vec<String> {
    let fragments = [
        "'",
        "''",
        "\"",
        "`",
        "``",
        "\\",
        "\\\\",
        "\\'",
        "\\\"",
        ";",
        "--",
        "/*",
        "*/",
        "#",
        "%",
        "$",
        "{{",
        "}}",
        ":p0",
        "?",
        "\0",
        "\n",
        "\r\n",
        "\t",
        "é",
        "漢字",
        "🦀",
        "\u{202e}",
        "\u{200b}",
        "ｓｅｌｅｃｔ",
        "Ω",
        "\u{7f}",
        " ",
        "\u{feff}",
        "a.b",
        "A",
        "-",
        "@",
        "(",
        ")",
        ",",
        "=",
        "<",
        ">",
        "|",
        "&",
        "!",
        "~",
        "^",
        "[",
        "]",
        "*",
        "+",
        "/",
    ];
    let payloads = [
        "x' OR '1'='1",
        "'; DROP TABLE canary.canary; --",
        "`; DROP DATABASE canary; --",
        "\"; DROP PROJECT t_x; --",
        "1); DELETE FROM canary.canary; --",
        "x\\' AND name = ' OR 1=1 -- ",
        "') UNION SELECT * FROM canary.canary --",
        "SELECT * FROM canary.canary",
        "canary.canary",
        "`canary`.`canary`",
        "{{START_DATETIME}}",
        "{{previous_start_datetime}}",
        ":p1",
        "?",
        "%s%s%s",
        "../../../../etc/passwd",
        "<script>alert(1)</script>",
        "${jndi:ldap://127.0.0.1/x}",
        "\\x27 OR 1=1",
        "0x27",
        "CHAR(39)",
        "' || (SELECT secret FROM canary.canary) || '",
        "'/**/OR/**/1=1",
        "admin'--",
        "' OR ''='",
        "\\'; DROP TABLE x; --",
        "line1\nline2\r\nline3",
        "tab\tseparated\tvalues",
        "null\0byte",
        "trailing backslash \\",
        "'leading quote",
        "trailing quote'",
        "mixed \"double\" and 'single' and `back`",
        "emoji 👩‍👩‍👧 family",
        "zalgo z̷̢͎a̸l̵g̷o̴",
        "rtl \u{202e}txet desrever",
        "NUL at end\0",
        "json {\"a\": [1, 2, {\"b\": null}]}",
        "markdown | a | b |\n|---|---|",
        "semi;colon;everywhere;",
    ];
    let mut out: Vec<String> = Vec::new();
    for f in fragments {
        out.push(f.to_owned());
        out.push(format!("a{f}b"));
        out.push(format!("{f}{f}{f}"));
    }
    out.extend(payloads.iter().map(|p| (*p).to_owned()));
    // Long strings: 10 kB of quotes and backslashes, 64 kB of mixed text, 1 MB of unicode.
    out.push("'\\".repeat(5_000));
    out.push("a'b\"c`d;e--f/*g*/h\\i{{j}}".repeat(2_500));
    out.push("漢字🦀é".repeat(40_000));
    out.retain(|s| !s.is_empty() && Ident::new(s).is_err());
    out
}

/// Whether MindsDB 26.1 can carry `s` as a SQL literal (`USING` values, JOB bodies); see
/// `getlood_mindsdb::sql::check_inline_str`.
fn inline_ok(s: &str) -> bool {
    getlood_mindsdb::sql::check_inline_str(s).is_ok() && !s.contains("{{") && !s.contains("}}")
}

#[test]
fn corpus_is_large_and_hostile() {
    let c = corpus();
    assert!(c.len() >= 200, "{}", c.len());
    assert!(c.iter().all(|s| Ident::new(s).is_err()));
}

/// A listener that counts connections and answers nothing: proves "refused before sending".
async fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test]
async fn hostile_names_are_refused_before_anything_is_sent() {
    let (url, connections) = counting_listener().await;
    let c = MindsdbClient::new(&MindsdbConfig { url, ..MindsdbConfig::default() }).unwrap();
    let ctx = common::tenant("names");
    let agents = AgentAdapter::new(c.clone());
    let models = ModelAdapter::new(c.clone());
    let kbs = KnowledgeBaseAdapter::new(c.clone());
    let jobs = JobAdapter::new(c.clone());
    let dbs = DatabaseAdapter::new(c.clone());
    let mut checked = 0;
    for raw in corpus() {
        // The path every service takes: parse the name, then call the adapter.
        let calls: Vec<Result<(), MindsdbError>> = vec![
            async { agents.get(&ctx, &Ident::new(&raw)?).await.map(|_| ()) }.await,
            async { agents.delete(&ctx, &Ident::new(&raw)?).await }.await,
            async { agents.query(&ctx, &Ident::new(&raw)?, &[AgentMessage::user("q")]).await.map(|_| ()) }.await,
            async { models.predict(&ctx, &Ident::new(&raw)?, Map::new()).await.map(|_| ()) }.await,
            async { models.delete(&ctx, &Ident::new(&raw)?).await }.await,
            async { models.drop_engine(&ctx, &Ident::new(&raw)?).await }.await,
            async { kbs.search(&ctx, &Ident::new(&raw)?, "q", 1).await.map(|_| ()) }.await,
            async { kbs.delete(&ctx, &Ident::new(&raw)?).await }.await,
            async { jobs.delete(&ctx, &Ident::new(&raw)?).await }.await,
            async { jobs.history(&ctx, Some(&Ident::new(&raw)?)).await.map(|_| ()) }.await,
            async { dbs.detach(&ctx, &Ident::new(&raw)?).await }.await,
            async { dbs.sample(&ctx, &Ident::new(&raw)?, &Ident::new("t")?, 1).await.map(|_| ()) }.await,
        ];
        for r in calls {
            let err = r.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidArgument, "{raw:?}: {err}");
            checked += 1;
        }
    }
    assert!(checked >= 2400, "{checked}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(connections.load(Ordering::SeqCst), 0, "a request left for a hostile name");
}

/// What must never change: the canary's rows, the log of reads, and the view's existence.
///
/// `canary` (what the tenant sees) is a view over a function that records every read in
/// `canary_reads` before returning the rows of `canary_data`. Statistics counters were too
/// coarse for this (autovacuum and catalog work move them); a read through the view cannot
/// happen without a row in the log. The view is not updatable, so a write or drop through
/// MindsDB fails or shows as a missing view.
#[derive(Debug, PartialEq)]
struct CanaryState {
    rows: Vec<(i32, String)>,
    reads: i64,
    view_exists: bool,
}

async fn create_canary(pool: &sqlx::PgPool, schema: &str) {
    for stmt in [
        format!("CREATE TABLE {schema}.canary_data (id int primary key, secret text)"),
        format!("INSERT INTO {schema}.canary_data VALUES (1, 'do not read'), (2, 'do not change')"),
        format!("CREATE TABLE {schema}.canary_reads (at timestamptz default now(), query text)"),
        format!(
            "CREATE FUNCTION {schema}.canary_touch() RETURNS SETOF {schema}.canary_data LANGUAGE plpgsql VOLATILE AS $$ \
             BEGIN INSERT INTO {schema}.canary_reads (query) VALUES (current_query()); \
             RETURN QUERY SELECT * FROM {schema}.canary_data; END $$"
        ),
        format!("CREATE VIEW {schema}.canary AS SELECT * FROM {schema}.canary_touch()"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt)).execute(pool).await.unwrap();
    }
}

async fn canary_state(pool: &sqlx::PgPool, schema: &str) -> CanaryState {
    let rows: Vec<(i32, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id, secret FROM {schema}.canary_data ORDER BY id")))
            .fetch_all(pool)
            .await
            .unwrap();
    let reads: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {schema}.canary_reads")))
        .fetch_one(pool)
        .await
        .unwrap();
    let view_exists: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM pg_views WHERE schemaname = '{schema}' AND viewname = 'canary')"
    )))
    .fetch_one(pool)
    .await
    .unwrap();
    CanaryState { rows, reads, view_exists }
}

#[tokio::test]
async fn hostile_values_round_trip_and_never_touch_the_canary() {
    let double = OpenAiDouble::start().await.unwrap();
    let (c, ctx) = provisioned("vals").await;
    let values = corpus();

    // Canary: a Postgres table attached to this very tenant, where an injection could reach it.
    let pool = common::pg().await;
    let schema = format!("canary_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    for stmt in
        [format!("CREATE SCHEMA {schema}"), format!("CREATE TABLE {schema}.items (id int primary key, title text)")]
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(stmt)).execute(&pool).await.unwrap();
    }
    let (host, port, database, user) = common::pg_parts();
    let dbs = DatabaseAdapter::new(c.clone());
    let pg_spec = |name: &str, password: &str| PostgresSpec {
        name: id(name),
        host: host.clone(),
        port,
        database: database.clone(),
        user: user.clone(),
        password: Some(SecretString::from(password.to_owned())),
        schema: Some(schema.clone()),
    };
    create_canary(&pool, &schema).await;
    dbs.attach_postgres(&ctx, &pg_spec("canary", "pw")).await.unwrap();
    // Two readings: the first lets late statistics of the table's creation land, so the second
    // is a settled baseline (its own read included in the next reading).
    let before = canary_state(&pool, &schema).await;

    // --- Model: every value as a prediction input, in one batch; MindsDB sends each to the LLM.
    let models = ModelAdapter::new(c.clone());
    models
        .create_engine(
            &ctx,
            &EngineSpec {
                name: id("llm"),
                handler: id("openai"),
                api_key: Some(SecretString::from("sk-x")),
                api_base: Some(double.base_url()),
            },
        )
        .await
        .unwrap();
    let spec = ModelSpec {
        name: id("echo"),
        engine: id("llm"),
        target: id("answer"),
        model_name: "gpt-4".into(),
        prompt_template: "{{question}}".into(),
        max_tokens: None,
    };
    models.create(&ctx, &spec).await.unwrap();
    double.clear_calls();
    // One prediction per value: MindsDB's openai handler drops prompts beyond the model's
    // context and, in a batch, that silently empties the whole batch.
    let mut model_mismatch = Vec::new();
    for v in &values {
        double.clear_calls();
        let input = Map::from_iter([("question".to_owned(), json!(v))]);
        let out = models.predict(&ctx, &id("echo"), input).await;
        let sent = double.calls_to("/v1/chat/completions").pop().and_then(|c| c.last_user_message());
        // Prompts beyond the model's context (gpt-4: 8k tokens) are dropped by MindsDB, not
        // altered: what is sent must be exact, and only an oversized value may be missing.
        let exact = match sent.as_deref() {
            Some(s) => s == v,
            None => v.len() > 8_000,
        };
        if !exact || out.is_err() {
            model_mismatch.push((v.chars().take(30).collect::<String>(), v.len(), out.err().map(|e| e.to_string())));
        }
    }

    // --- Model prompt templates go into `USING` as literals: exact, or refused up front.
    let mut template_checked = 0;
    for (i, v) in values.iter().enumerate().step_by(16) {
        // `{{`/`}}` are the template syntax itself, not data.
        if v.contains('{') || v.contains('}') {
            continue;
        }
        let spec = ModelSpec {
            name: id(&format!("tpl_{i}")),
            engine: id("llm"),
            target: id("answer"),
            model_name: "gpt-4".into(),
            prompt_template: format!("{v} {{{{question}}}}"),
            max_tokens: None,
        };
        match models.create(&ctx, &spec).await {
            Ok(_) => {
                assert!(inline_ok(&spec.prompt_template.replace("{{question}}", "")), "{v:?} should have been refused");
                double.clear_calls();
                models.predict(&ctx, &spec.name, Map::from_iter([("question".to_owned(), json!("Q"))])).await.unwrap();
                let got = double.calls_to("/v1/chat/completions").pop().unwrap().last_user_message().unwrap();
                assert_eq!(got, format!("{v} Q"), "template {i} did not round-trip");
                models.delete(&ctx, &spec.name).await.unwrap();
            }
            Err(e) => assert_eq!(e.code(), ErrorCode::InvalidArgument, "{v:?}: {e}"),
        }
        template_checked += 1;
    }

    // --- Knowledge base: every value as a document; read back by id, and searched for.
    let kbs = KnowledgeBaseAdapter::new(c.clone());
    let emb = EmbeddingSettings {
        provider: "openai".into(),
        model_name: "double-embed".into(),
        api_key: Some(SecretString::from("sk-e")),
        base_url: Some(double.base_url()),
    };
    kbs.create(
        &ctx,
        &KnowledgeBaseSpec { name: id("mem"), embedding: emb, metadata_columns: vec![], chunk_size: Some(2_000_000) },
    )
    .await
    .unwrap();
    let docs: Vec<Document> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Document { id: format!("v{i}"), content: v.clone(), metadata: Map::new() })
        .collect();
    // Whitespace-only documents are refused (MindsDB would store them empty); the rest go in.
    let (blank, docs): (Vec<Document>, Vec<Document>) = docs.into_iter().partition(|d| d.content.trim().is_empty());
    for d in &blank {
        let err = kbs.insert(&ctx, &id("mem"), std::slice::from_ref(d)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidArgument);
    }
    kbs.insert(&ctx, &id("mem"), &docs).await.unwrap();
    let mut kb_mismatch = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if v.trim().is_empty() {
            continue;
        }
        let chunks = kbs.get(&ctx, &id("mem"), &format!("v{i}")).await.unwrap();
        let back: String = chunks.iter().map(|c| c.content.as_str()).collect();
        if &back != v {
            kb_mismatch.push((i, v.chars().take(30).collect::<String>(), back.chars().take(30).collect::<String>()));
        }
        // Hostile document ids are refused up front (see DOC_ID_PATTERN).
        let id_ok = v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
        match kbs.get(&ctx, &id("mem"), v).await {
            Ok(found) => assert!(id_ok && found.is_empty(), "{v:?}"),
            Err(e) => assert!(!id_ok && e.code() == ErrorCode::InvalidArgument, "{v:?}: {e}"),
        }
    }
    double.clear_calls();
    for v in values.iter().step_by(4) {
        kbs.search(&ctx, &id("mem"), v, 3).await.unwrap();
    }
    let embedded: Vec<Value> = double.calls_to("/v1/embeddings").iter().map(|c| c.body["input"].clone()).collect();
    let search_mismatch: Vec<_> = values
        .iter()
        .step_by(4)
        .filter(|v| !embedded.iter().any(|i| i == &json!([v]) || i == &json!(v)))
        .map(|v| v.chars().take(30).collect::<String>())
        .collect();

    // --- Agent: values as system prompts and as questions (a sample: each costs LLM round trips).
    let agents = AgentAdapter::new(c.clone());
    let llm = LlmSettings {
        provider: "openai".into(),
        model_name: "gpt-4o".into(),
        api_key: Some(SecretString::from("sk-a")),
        base_url: Some(double.base_url()),
    };
    let mut agent_spec = AgentSpec {
        name: id("bot"),
        model: llm,
        tables: vec![],
        knowledge_bases: vec![],
        prompt_template: Some("start".into()),
        mode: AgentMode::Text,
        timeout_secs: None,
    };
    agents.create(&ctx, &agent_spec).await.unwrap();
    let mut prompt_mismatch = Vec::new();
    for v in values.iter().step_by(4) {
        agent_spec.prompt_template = Some(v.clone());
        agents.update(&ctx, &agent_spec).await.unwrap();
        let got = agents.get(&ctx, &id("bot")).await.unwrap().prompt_template;
        if got.as_deref() != Some(v.as_str()) {
            prompt_mismatch.push(v.chars().take(30).collect::<String>());
        }
    }
    let mut question_mismatch = Vec::new();
    for v in values.iter().step_by(20) {
        double.clear_calls();
        let answer = agents.ask(&ctx, &id("bot"), v).await;
        let asked = double
            .calls_to("/v1/chat/completions")
            .iter()
            .filter_map(|c| c.last_user_message())
            .any(|m| m.contains(v.as_str()));
        if answer.is_err() || !asked {
            question_mismatch.push((v.chars().take(30).collect::<String>(), answer.err().map(|e| e.to_string())));
        }
    }

    // --- Job: values inlined into a JOB body; exact in Postgres, or refused before sending.
    let jobs = JobAdapter::new(c.clone());
    let mut body = Vec::new();
    let mut refused = 0;
    for (i, v) in values.iter().enumerate() {
        let stmt = SqlBuilder::new()
            .kw("INSERT INTO")
            .qualified(&id("canary"), &id("items"))
            .kw("(id, title) VALUES (")
            .value(i as i64)
            .kw(",")
            .value(v.as_str())
            .kw(")")
            .build();
        if inline_ok(v) {
            body.push(stmt);
        } else {
            let err = jobs.run_once(&ctx, &id("bad"), vec![stmt]).await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidArgument, "{v:?}");
            refused += 1;
        }
    }
    let allowed = body.len();
    let job = jobs.run_once(&ctx, &id("load"), body).await.unwrap();
    let run = eventually(Duration::from_secs(60), || async {
        jobs.history(&ctx, Some(&job)).await.unwrap().into_iter().find(|r| r.run_end.is_some())
    })
    .await
    .expect("job ran");
    assert_eq!(run.error, None);
    let stored: Vec<(i32, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id, title FROM {schema}.items ORDER BY id")))
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), allowed);
    for (i, title) in &stored {
        assert_eq!(title, &values[*i as usize], "job value {i} changed");
    }

    // --- Database: values as passwords (never shown back) and as the agent-visible settings.
    for (i, v) in values.iter().enumerate().step_by(20) {
        let name = format!("pgv_{i}");
        let spec = pg_spec(&name, v);
        match dbs.attach_postgres(&ctx, &spec).await {
            Ok(info) => assert_eq!(info.parameters["password"], mask::MASK),
            Err(e) => assert_ne!(e.code(), ErrorCode::Internal, "{v:?}: {e}"),
        }
        let listed = serde_json::to_string(&dbs.list(&ctx).await.unwrap()).unwrap();
        assert!(!v.chars().all(|c| c.is_alphanumeric()) || !listed.contains(v.as_str()));
        let _ = dbs.detach(&ctx, &id(&name)).await;
    }

    let after = canary_state(&pool, &schema).await;
    assert_eq!(before, after, "the canary was read, changed or dropped");
    assert_eq!(after.reads, 0);
    assert!(after.view_exists);

    eprintln!(
        "corpus {} values: model inputs {} ok, templates {template_checked} checked, kb {} ok, searches ok, agent prompts {} checked, \
         questions {} checked, job {allowed} stored exactly + {refused} refused",
        values.len(),
        values.len() - model_mismatch.len(),
        values.len() - kb_mismatch.len(),
        values.len().div_ceil(4),
        values.len().div_ceil(20),
    );
    assert!(model_mismatch.is_empty(), "model inputs changed: {model_mismatch:?}");
    assert!(kb_mismatch.is_empty(), "kb documents changed: {kb_mismatch:?}");
    assert!(search_mismatch.is_empty(), "search queries changed: {search_mismatch:?}");
    assert!(prompt_mismatch.is_empty(), "agent prompts changed: {prompt_mismatch:?}");
    assert!(question_mismatch.is_empty(), "agent questions failed: {question_mismatch:?}");

    agents.delete(&ctx, &id("bot")).await.unwrap();
    kbs.delete(&ctx, &id("mem")).await.unwrap();
    models.delete(&ctx, &id("echo")).await.unwrap();
    models.drop_engine(&ctx, &id("llm")).await.unwrap();
    dbs.detach(&ctx, &id("canary")).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&pool).await.unwrap();
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}
