//! The tenant's MindsDB models through the gateway (`/api/v1/models`), served by the pipeline's
//! Model adapter on the real MindsDB 26.1, the model's LLM being the OpenAI double. The model is
//! made in the tenant's project with the adapter itself, as the pipeline makes its intent model.
//! Needs MindsDB (`scripts/mindsdb.sh start`).

use std::time::Duration;

use getlood_auth::TenantId;
use getlood_mindsdb::{
    EngineSpec, Ident, MindsdbClient, MindsdbConfig, ModelAdapter, ModelSpec, ProjectAdapter, TenantContext,
};
use getlood_testkit::{OpenAiDouble, Platform, Service};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::call_json;
use crate::desktop_ws::unique_tenant;

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

#[tokio::test]
async fn models_are_listed_and_asked_within_the_tenant() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    llm.reply_when("What is Rust?", "A language with a borrow checker.");
    let tenant = unique_tenant("mdl");
    let ctx = TenantContext::new(TenantId::parse(&tenant).map_err(anyhow::Error::msg)?, "setup");
    let client =
        MindsdbClient::new(&MindsdbConfig { url: getlood_testkit::mindsdb_url(), ..MindsdbConfig::default() })?;
    ProjectAdapter::new(client.clone()).ensure(&ctx).await?;
    let models = ModelAdapter::new(client);
    let engine = EngineSpec {
        name: id("llm"),
        handler: id("openai"),
        api_key: Some(SecretString::from("sk-engine-secret")),
        api_base: Some(llm.base_url()),
    };
    models.create_engine(&ctx, &engine).await?;
    let spec = ModelSpec {
        name: id("answerer"),
        engine: id("llm"),
        target: id("answer"),
        model_name: "gpt-4".into(),
        prompt_template: "Answer briefly: {{question}}".into(),
        max_tokens: Some(50),
    };
    models.create(&ctx, &spec).await?;

    let platform = Platform::builder().service(Service::Pipeline).service(Service::Gateway).start().await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let base = format!("{}/api/v1/models", platform.http_url(Service::Gateway));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let call = |method: &'static str, path: &str, token: String, body: Option<Value>| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move { call_json(&http, method, &url, &token, body).await }
    };
    let viewer = platform.token(&tenant, "victor", &["viewer"]);
    let member = platform.token(&tenant, "mia", &["member"]);
    let other = platform.token(&unique_tenant("mdlx"), "mallory", &["admin"]);

    let (status, list) = call("GET", "", viewer.clone(), None).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        list["models"],
        json!([{"engine": "openai", "name": "answerer", "predict": "answer", "status": "complete"}])
    );
    assert!(!list.to_string().contains("sk-engine-secret"));

    // One completion, as a member (asking a model is a chat permission).
    let (status, answer) =
        call("POST", "/answerer/ask", member.clone(), Some(json!({"question": "What is Rust?"}))).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answer"], "A language with a borrow checker.");
    assert_eq!(answer["outputs"]["answer"], "A language with a borrow checker.");
    let sent = llm.calls_to("/v1/chat/completions").last().and_then(|c| c.last_user_message()).unwrap_or_default();
    assert_eq!(sent, "Answer briefly: What is Rust?");
    let (status, answer) =
        call("POST", "/answerer/ask", member.clone(), Some(json!({"inputs": {"question": "What is Rust?"}}))).await?;
    assert_eq!((status, answer["answer"].as_str()), (200, Some("A language with a borrow checker.")));

    // Role: a viewer reads the list but may not ask.
    let (status, body) = call("POST", "/answerer/ask", viewer.clone(), Some(json!({"question": "q"}))).await?;
    assert_eq!((status, body["code"].as_str()), (403, Some("permission_denied")), "{body}");
    assert_eq!(body["message"], "chat needs role admin, builder, operator or member");

    // Bad input: 400 naming the problem, and no LLM call made.
    llm.clear_calls();
    for (path, body, want) in [
        ("/Answerer/ask", json!({"question": "q"}), "model name 'Answerer' is invalid"),
        ("/answerer/ask", json!({}), "inputs is empty"),
        ("/answerer/ask", json!({"inputs": {"Question": "q"}}), "input name 'Question' is invalid"),
        ("/answerer/ask", json!({"question": "a", "inputs": {"question": "b"}}), "not both"),
        ("/answerer/ask", json!({"question": "q", "temperature": 2}), "unknown field `temperature`"),
        ("/answerer/ask", json!({"inputs": {"question": "x".repeat(17 * 1024)}}), "more than the 16384 allowed"),
    ] {
        let (status, answer) = call("POST", path, member.clone(), Some(body.clone())).await?;
        assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_argument")), "{body}: {answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains(want), "{body}: {answer}");
    }
    assert!(llm.calls_to("/v1/chat/completions").is_empty(), "a refused question reached the model");
    let (status, _) = call("POST", "/nope/ask", member.clone(), Some(json!({"question": "q"}))).await?;
    assert_eq!(status, 404);

    // Another tenant neither lists nor asks it.
    let (status, list) = call("GET", "", other.clone(), None).await?;
    assert_eq!((status, list["models"].clone()), (200, json!([])));
    let (status, body) = call("POST", "/answerer/ask", other, Some(json!({"question": "What is Rust?"}))).await?;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");

    platform.stop().await?;
    models.delete(&ctx, &id("answerer")).await?;
    models.drop_engine(&ctx, &id("llm")).await?;
    Ok(())
}
