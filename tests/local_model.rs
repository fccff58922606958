//! The platform on its own default model, no double: the README's first conversation and the
//! agent lifecycle through real MindsDB agents on the local SmolLM2 server (`scripts/llm.sh
//! start`, behind the adapter in deploy/local-model), and memory recall across conversations.
//!
//! Skipped (with a note) when the local model is not running, unless
//! `GETLOOD_TEST_REQUIRE_LLM=1` (set by `make test` and CI) makes that a failure. Answers of a
//! 135M model are weak: the tests assert that the model's answer arrives through MindsDB's agent
//! and the platform's structure around it, never its wording.

use std::time::{Duration, Instant};

use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::call_json;

const CHAT_URL: &str = "http://127.0.0.1:18080/v1";
const EMBED_URL: &str = "http://127.0.0.1:18081/v1";

/// Whether the local chat and embedding servers answer; a failure when CI requires them.
async fn local_model_running() -> bool {
    getlood_tls::install_crypto_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    let chat = http.get(format!("{CHAT_URL}/models")).send().await.is_ok_and(|r| r.status().is_success());
    let embed = http
        .post(format!("{EMBED_URL}/embeddings"))
        .json(&json!({"input": ["ping"], "model": "e5"}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if chat && embed {
        return true;
    }
    assert!(
        std::env::var_os("GETLOOD_TEST_REQUIRE_LLM").is_none(),
        "local model not reachable at {CHAT_URL} / {EMBED_URL}: run scripts/llm.sh start"
    );
    eprintln!("SKIPPED: local model not reachable at {CHAT_URL} / {EMBED_URL} (scripts/llm.sh start)");
    false
}

/// A streamed chat completion: its `data:` payloads (without `[DONE]`), after checking it ended.
async fn chat_stream(http: &reqwest::Client, base: &str, token: &str, body: Value) -> anyhow::Result<Vec<Value>> {
    let resp = http.post(format!("{base}/v1/chat/completions")).bearer_auth(token).json(&body).send().await?;
    anyhow::ensure!(resp.status() == 200, "chat answered {}: {}", resp.status(), resp.text().await?);
    let text = tokio::time::timeout(Duration::from_secs(280), resp.text()).await??;
    let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    anyhow::ensure!(data.last() == Some(&"[DONE]"), "stream did not end with [DONE]:\n{text}");
    Ok(data[..data.len() - 1].iter().map(|d| serde_json::from_str(d)).collect::<Result<_, _>>()?)
}

fn answer_of(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat()
}

async fn platform(services: &[Service], pipeline: Value) -> anyhow::Result<Platform> {
    let mut builder = Platform::builder();
    for s in services {
        builder = builder.service(*s);
    }
    let platform = builder.app_settings(Service::Pipeline, pipeline).start().await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    Ok(platform)
}

/// The README's first conversation, verbatim: a skill, the `dashboard-builder` agent on the
/// local model, and "Crée-moi un dashboard analytics" streamed through the gateway. The answer
/// is the local model's, through MindsDB's agent (no double anywhere: the intent model is the
/// default local one too).
#[tokio::test]
async fn readme_first_conversation_on_the_local_model() -> anyhow::Result<()> {
    if !local_model_running().await {
        return Ok(());
    }
    let platform =
        platform(&[Service::AgentRegistry, Service::Pipeline, Service::Gateway], json!({"memory": {"enabled": false}}))
            .await?;
    let base = platform.http_url(Service::Gateway);
    let token = platform.token(&format!("readme_{}", std::process::id()), "alice", &["admin"]);
    let http = reqwest::Client::new();

    let (status, skill) = call_json(
        &http,
        "POST",
        &format!("{base}/api/v1/skills"),
        &token,
        Some(json!({"name": "ui-generation", "description": "builds UIs"})),
    )
    .await?;
    assert_eq!(status, 201, "{skill}");

    let started = Instant::now();
    let (status, agent) = call_json(
        &http,
        "POST",
        &format!("{base}/api/v1/agents"),
        &token,
        Some(json!({"name": "dashboard-builder", "skills": ["ui-generation"],
                    "model": {"provider": "openai", "model_name": "gpt-4", "base_url": CHAT_URL, "api_key": "sk-local"}})),
    )
    .await?;
    let created_in = started.elapsed();
    assert_eq!(status, 201, "{agent}");
    assert!(created_in < Duration::from_secs(5), "agent created in {created_in:?}, over 5 s");

    let started = Instant::now();
    let chunks = chat_stream(
        &http,
        &base,
        &token,
        json!({"model": "getlood", "stream": true,
               "messages": [{"role": "user", "content": "Crée-moi un dashboard analytics"}]}),
    )
    .await?;
    let answered_in = started.elapsed();
    let answer = answer_of(&chunks);
    assert!(!answer.trim().is_empty(), "no answer text: {chunks:?}");
    assert!(chunks.iter().all(|c| c.get("error").is_none()), "an error in the stream: {chunks:?}");
    let extras = chunks.iter().find_map(|c| c.get("getlood")).expect("a chunk with the getlood extras");
    assert_eq!(extras["agent"]["name"], "dashboard-builder", "{extras}");
    let action = &extras["ui_actions"][0];
    assert_eq!(action["type"], "open_window", "{extras}");
    assert_eq!(action["params"]["app_id"], "dashboard", "{extras}");
    eprintln!(
        "readme conversation on the local model: agent created in {created_in:?}, answered in {answered_in:?}: {}",
        answer.chars().take(200).collect::<String>()
    );
    platform.stop().await
}

/// Create, streamed query, update (PUT), query again and delete of an agent on the local model; and
/// an agent whose model endpoint does not answer is refused, naming the endpoint, with nothing
/// left behind.
#[tokio::test]
async fn agent_lifecycle_on_the_local_model() -> anyhow::Result<()> {
    if !local_model_running().await {
        return Ok(());
    }
    let platform =
        platform(&[Service::AgentRegistry, Service::Pipeline, Service::Gateway], json!({"memory": {"enabled": false}}))
            .await?;
    let base = platform.http_url(Service::Gateway);
    let token = platform.token(&format!("lifecycle_{}", std::process::id()), "alice", &["admin"]);
    let http = reqwest::Client::new();
    let agents = format!("{base}/api/v1/agents");
    let model = json!({"provider": "openai", "model_name": "smollm2-135m-instruct", "base_url": CHAT_URL, "api_key": "sk-local"});

    let (status, agent) = call_json(
        &http,
        "POST",
        &agents,
        &token,
        Some(json!({"name": "helper", "model": model, "prompt_template": "You answer briefly."})),
    )
    .await?;
    assert_eq!(status, 201, "{agent}");
    let id = agent["id"].as_str().unwrap().to_owned();

    let ask =
        |content: &str| json!({"model": "helper", "stream": true, "messages": [{"role": "user", "content": content}]});
    let chunks = chat_stream(&http, &base, &token, ask("What is the capital of France?")).await?;
    assert!(!answer_of(&chunks).trim().is_empty(), "no answer: {chunks:?}");

    let (status, updated) = call_json(
        &http,
        "PUT",
        &format!("{agents}/{id}"),
        &token,
        Some(json!({"name": "helper", "model": model, "prompt_template": "You answer in one short sentence."})),
    )
    .await?;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["version"], 2, "{updated}");
    let chunks = chat_stream(&http, &base, &token, ask("Name a colour.")).await?;
    assert!(!answer_of(&chunks).trim().is_empty(), "no answer after the update: {chunks:?}");

    let (status, body) = call_json(&http, "DELETE", &format!("{agents}/{id}"), &token, None).await?;
    assert!(status == 200 || status == 204, "{status} {body}");
    let (status, _) = call_json(&http, "GET", &format!("{agents}/{id}"), &token, None).await?;
    assert_eq!(status, 404);

    // A model endpoint that does not answer: 400 naming it (never the key), nothing created.
    let (status, err) = call_json(
        &http,
        "POST",
        &agents,
        &token,
        Some(json!({"name": "unreachable", "model": {"provider": "openai", "model_name": "gpt-4",
                     "base_url": "http://127.0.0.1:1/v1", "api_key": "sk-never-shown"}})),
    )
    .await?;
    assert_eq!(status, 400, "{err}");
    let text = err.to_string();
    assert!(text.contains("http://127.0.0.1:1/v1") && text.contains("could not be reached"), "{text}");
    assert!(!text.contains("sk-never-shown"), "{text}");
    let (_, list) = call_json(&http, "GET", &agents, &token, None).await?;
    assert!(!list.to_string().contains("unreachable"), "a half-created agent is listed: {list}");
    platform.stop().await
}

/// A fact from one conversation reaches the agent in a later conversation of the same user,
/// and never in another user's of the same tenant; the memory search route finds only the
/// caller's own turns. Real MindsDB knowledge base on the local embedding server; the agent's
/// model is the double, because what is checked is what the agent was *given*.
#[tokio::test]
async fn memory_is_recalled_for_the_same_user_only() -> anyhow::Result<()> {
    if !local_model_running().await {
        return Ok(());
    }
    let llm = OpenAiDouble::start().await?;
    let tenant = format!("memory_{}", std::process::id());
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::Pipeline)
        .service(Service::Gateway)
        .service(Service::EventDispatcher)
        .app_settings(Service::Pipeline, json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-test-intent"}}))
        // Memory on the default local embedding server, with a consumer of this tenant's turns
        // only (the kit turns memory off: the consumer is shared by every dispatcher of a server).
        .app_settings(
            Service::EventDispatcher,
            json!({"memory": {"enabled": true, "consumer_name": format!("memtest_{tenant}"),
                              "filter_subject": format!("getlood.{tenant}.turn.turn.completed"), "backoff": ["200ms"]}}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let base = platform.http_url(Service::Gateway);
    let alice = platform.token(&tenant, "alice", &["admin"]);
    let bob = platform.token(&tenant, "bob", &["admin"]);
    let http = reqwest::Client::new();
    let (status, agent) = call_json(
        &http,
        "POST",
        &format!("{base}/api/v1/agents"),
        &alice,
        Some(json!({"name": "memo", "model": {"provider": "openai", "model_name": "gpt-test",
                     "base_url": llm.base_url(), "api_key": "sk-agent"}})),
    )
    .await?;
    assert_eq!(status, 201, "{agent}");
    const FACT: &str = "PELICAN-42";
    let turn =
        |content: &str| json!({"model": "memo", "stream": true, "messages": [{"role": "user", "content": content}]});
    chat_stream(&http, &base, &alice, turn(&format!("Remember that my project codename is {FACT}."))).await?;

    // Ingestion is asynchronous (outbox -> JetStream -> knowledge base): wait for the turn.
    let search = |token: &str| {
        let req = http.get(format!("{base}/api/v1/memory/search?q=project%20codename")).bearer_auth(token);
        async move { anyhow::Ok(req.send().await?.json::<Value>().await?) }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let hits = search(&alice).await?;
        if hits.to_string().contains(FACT) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "alice's turn never reached memory: {hits}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let hits = search(&bob).await?;
    assert!(hits["hits"].is_array(), "{hits}");
    assert!(!hits.to_string().contains(FACT), "bob found alice's turn: {hits}");

    let calls_with_fact =
        || llm.calls_to("/v1/chat/completions").iter().filter(|c| c.body.to_string().contains(FACT)).count();
    let before = calls_with_fact();
    chat_stream(&http, &base, &alice, turn("What is my project codename?")).await?;
    let after_alice = calls_with_fact();
    assert!(after_alice > before, "alice's later conversation was not given her earlier turn");
    chat_stream(&http, &base, &bob, turn("What is my project codename?")).await?;
    assert_eq!(calls_with_fact(), after_alice, "bob's conversation was given alice's turn");
    platform.stop().await
}
