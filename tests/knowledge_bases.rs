//! The tenants' knowledge bases through the gateway (`/api/v1/knowledge-bases`), served by the
//! event dispatcher's Knowledge-base adapter on the real MindsDB 26.1, embedded by the OpenAI
//! double (deterministic bag-of-words vectors). Needs MindsDB (`scripts/mindsdb.sh start`), as
//! the other MindsDB tests do.

use std::time::Duration;

use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::call_json;
use crate::desktop_ws::unique_tenant;

struct Kb {
    platform: Platform,
    http: reqwest::Client,
    base: String,
}

impl Kb {
    async fn start(double: &OpenAiDouble, max_per_tenant: usize) -> anyhow::Result<Self> {
        let platform = Platform::builder()
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .app_settings(
                Service::EventDispatcher,
                json!({
                    "memory": {
                        "enabled": false,
                        "embedding": {"provider": "openai", "model_name": "double-embed", "base_url": double.base_url(), "api_key": "sk-test"},
                    },
                    "knowledge_bases": {"max_per_tenant": max_per_tenant, "max_documents_per_insert": 5},
                }),
            )
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let base = format!("{}/api/v1/knowledge-bases", platform.http_url(Service::Gateway));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        Ok(Self { platform, http, base })
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        call_json(&self.http, method, &format!("{}{path}", self.base), token, body).await
    }
}

/// `(status, code, message)` of an error answer.
fn error_of(answer: &(u16, Value)) -> (u16, String, String) {
    let (status, body) = answer;
    (
        *status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn doc(id: &str, content: &str, topic: Option<&str>) -> Value {
    match topic {
        Some(t) => json!({"id": id, "content": content, "metadata": {"topic": t}}),
        None => json!({"id": id, "content": content}),
    }
}

#[tokio::test]
async fn knowledge_bases_lifecycle_search_and_refusals() -> anyhow::Result<()> {
    let double = OpenAiDouble::start().await?;
    let kb = Kb::start(&double, 20).await?;
    let tenant = unique_tenant("kb");
    let builder = kb.platform.token(&tenant, "bianca", &["builder"]);
    let viewer = kb.platform.token(&tenant, "victor", &["viewer"]);
    let member = kb.platform.token(&tenant, "mia", &["member"]);
    let other = kb.platform.token(&unique_tenant("kbx"), "mallory", &["admin"]);

    // Nothing yet: an empty list, not an error, before the tenant's project exists.
    let (status, list) = kb.call("GET", "", &viewer, None).await?;
    assert_eq!((status, list["knowledge_bases"].as_array().map(Vec::len)), (200, Some(0)), "{list}");

    // Bad names and columns: 400 naming the problem, nothing created.
    for (body, want) in [
        (json!({"name": "Bad Name"}), "name 'Bad Name' is invalid"),
        (json!({"name": "getlood_memory"}), "name 'getlood_memory' is reserved"),
        (json!({"name": "getlood_notes"}), "reserved"),
        (json!({"name": "models"}), "MindsDB project table"),
        (
            json!({"name": "docs", "metadata_columns": ["content"]}),
            "metadata_columns[0] 'content' is a column every knowledge base already has",
        ),
        (json!({"name": "docs", "metadata_columns": ["topic", "topic"]}), "listed twice"),
        (json!({"name": "docs", "extra": 1}), "unknown field `extra`"),
    ] {
        let (status, code, message) = error_of(&kb.call("POST", "", &builder, Some(body.clone())).await?);
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{body}: {message}");
        assert!(message.contains(want), "{body}: {message}");
    }
    // Roles: a viewer and a member may not create one.
    for token in [&viewer, &member] {
        let (status, code, message) = error_of(&kb.call("POST", "", token, Some(json!({"name": "docs"}))).await?);
        assert_eq!((status, code.as_str()), (403, "permission_denied"), "{message}");
        assert_eq!(message, "knowledge_bases.write needs role admin or builder");
    }
    let (_, list) = kb.call("GET", "", &builder, None).await?;
    assert_eq!(list["knowledge_bases"], json!([]), "a refused create wrote nothing");

    // Create.
    let (status, created) =
        kb.call("POST", "", &builder, Some(json!({"name": "docs", "metadata_columns": ["topic"]}))).await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created, json!({"name": "docs", "embedding_model": "double-embed", "metadata_columns": ["topic"]}));
    assert!(!created.to_string().contains("sk-test") && !created.to_string().contains(&double.base_url()));
    let (status, again) = kb.call("POST", "", &builder, Some(json!({"name": "docs"}))).await?;
    assert_eq!((status, again["code"].as_str()), (409, Some("already_exists")), "{again}");
    let (status, got) = kb.call("GET", "/docs", &viewer, None).await?;
    assert_eq!((status, got["name"].as_str()), (200, Some("docs")), "{got}");
    let (_, list) = kb.call("GET", "", &viewer, None).await?;
    assert_eq!(list["knowledge_bases"].as_array().map(Vec::len), Some(1), "{list}");

    // Insert: checked whole, nothing written when one document is bad.
    let bad_batches = [
        (
            json!({"documents": [doc("ok1", "first good document", None), doc("bad id", "x", None)]}),
            "documents[1].id is invalid",
        ),
        (
            json!({"documents": [doc("ok1", "first good document", None), doc("e1", "   ", None)]}),
            "documents[1].content is empty",
        ),
        (
            json!({"documents": [doc("ok1", "first good document", Some("pets")), json!({"id": "m1", "content": "x", "metadata": {"colour": "red"}})]}),
            "documents[1].metadata key 'colour' is not a metadata column of 'docs' (topic)",
        ),
        (json!({"documents": []}), "documents is empty"),
        (
            json!({"documents": (0..6).map(|i| doc(&format!("d{i}"), "x", None)).collect::<Vec<_>>()}),
            "more than the 5 allowed",
        ),
        (json!({"documents": [doc("ok1", &"word ".repeat(7000), None)]}), "more than 32000"),
        (json!({"documents": [doc("ok1", "a", None), doc("ok1", "b", None)]}), "repeats documents[0]"),
    ];
    for (body, want) in bad_batches {
        let (status, code, message) =
            error_of(&kb.call("POST", "/docs/documents", &builder, Some(body.clone())).await?);
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{message}");
        assert!(message.contains(want), "{message}");
    }
    let (status, _) =
        kb.call("POST", "/docs/documents", &member, Some(json!({"documents": [doc("a", "b", None)]}))).await?;
    assert_eq!(status, 403, "a member may not write documents");
    let (status, hits) = kb.call("GET", "/docs/search?q=first%20good%20document", &viewer, None).await?;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits["hits"], json!([]), "refused inserts wrote nothing");

    let (status, inserted) = kb
        .call(
            "POST",
            "/docs/documents",
            &builder,
            Some(json!({"documents": [
                doc("cat", "my cat sleeps all day on the sofa", Some("pets")),
                doc("bank", "the central bank raised interest rates", Some("finance")),
                doc("rust", "rust has a borrow checker", None),
            ]})),
        )
        .await?;
    assert_eq!((status, inserted), (200, json!({"inserted": 3})));

    // Search: best first, metadata without MindsDB's bookkeeping; readable by a viewer.
    let (status, found) =
        kb.call("GET", "/docs/search?q=cat%20sleeps%20on%20the%20sofa&top_k=2", &viewer, None).await?;
    assert_eq!(status, 200, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{found}");
    assert_eq!(hits[0]["document_id"], "cat", "{found}");
    assert_eq!(hits[0]["content"], "my cat sleeps all day on the sofa");
    assert_eq!(hits[0]["metadata"], json!({"topic": "pets"}));
    let relevance = hits[0]["relevance"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&relevance) && relevance >= hits[1]["relevance"].as_f64().unwrap(), "{found}");
    // A replaced document (same id) is searchable with its new text.
    let (status, _) = kb
        .call(
            "POST",
            "/docs/documents",
            &builder,
            Some(json!({"documents": [doc("rust", "rust compiles fearless concurrency", None)]})),
        )
        .await?;
    assert_eq!(status, 200);
    let (_, found) = kb.call("GET", "/docs/search?q=fearless%20concurrency&top_k=1", &viewer, None).await?;
    assert_eq!(found["hits"][0]["content"], "rust compiles fearless concurrency", "{found}");

    // Bad searches.
    for (query, want) in [
        ("", "query is required"),
        ("?q=x&top_k=0", "top_k must be between 1 and 50"),
        ("?q=x&top_k=51", "top_k must be between 1 and 50"),
        ("?q=x&top_k=many", "invalid query string"),
        ("?q=x&colour=red", "invalid query string"),
    ] {
        let (status, code, message) = error_of(&kb.call("GET", &format!("/docs/search{query}"), &viewer, None).await?);
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{query}: {message}");
        assert!(message.contains(want), "{query}: {message}");
    }
    let long = "x".repeat(4001);
    let (status, body) = kb.call("GET", &format!("/docs/search?q={long}"), &viewer, None).await?;
    assert_eq!(status, 400, "{body}");
    let (status, _) = kb.call("GET", "/nope/search?q=x", &viewer, None).await?;
    assert_eq!(status, 404);

    // The platform's memory knowledge base is never reachable here, whatever the role.
    let admin = kb.platform.token(&tenant, "root", &["admin"]);
    for (method, path, body) in [
        ("GET", "/getlood_memory", None),
        ("DELETE", "/getlood_memory", None),
        ("GET", "/getlood_memory/search?q=turns", None),
        ("POST", "/getlood_memory/documents", Some(json!({"documents": [doc("x", "y", None)]}))),
    ] {
        let (status, code, message) = error_of(&kb.call(method, path, &admin, body).await?);
        assert_eq!((status, code.as_str()), (400, "invalid_argument"), "{method} {path}: {message}");
        assert!(message.contains("reserved for the platform"), "{message}");
    }

    // Another tenant sees none of it, even as admin.
    let (_, list) = kb.call("GET", "", &other, None).await?;
    assert_eq!(list["knowledge_bases"], json!([]));
    for (method, path, body) in [
        ("GET", "/docs", None),
        ("GET", "/docs/search?q=cat", None),
        ("POST", "/docs/documents", Some(json!({"documents": [doc("evil", "overwrite", None)]}))),
        ("DELETE", "/docs", None),
    ] {
        let (status, code, _) = error_of(&kb.call(method, path, &other, body).await?);
        assert_eq!((status, code.as_str()), (404, "not_found"), "{method} {path}");
    }
    let (status, got) = kb.call("GET", "/docs", &builder, None).await?;
    assert_eq!(status, 200, "the other tenant's delete left it: {got}");

    // Delete: a viewer may not; the builder may; then it is gone.
    let (status, _) = kb.call("DELETE", "/docs", &viewer, None).await?;
    assert_eq!(status, 403);
    let (status, deleted) = kb.call("DELETE", "/docs", &builder, None).await?;
    assert_eq!((status, deleted), (200, json!({"deleted": true, "id": "docs"})));
    let (status, _) = kb.call("GET", "/docs", &builder, None).await?;
    assert_eq!(status, 404);
    let (status, _) = kb.call("DELETE", "/docs", &builder, None).await?;
    assert_eq!(status, 404);
    kb.platform.stop().await
}

#[tokio::test]
async fn knowledge_bases_per_tenant_quota() -> anyhow::Result<()> {
    let double = OpenAiDouble::start().await?;
    let kb = Kb::start(&double, 2).await?;
    let tenant = unique_tenant("kbq");
    let builder = kb.platform.token(&tenant, "bianca", &["builder"]);
    for name in ["one", "two"] {
        let (status, body) = kb.call("POST", "", &builder, Some(json!({"name": name}))).await?;
        assert_eq!(status, 201, "{body}");
    }
    let (status, code, message) = error_of(&kb.call("POST", "", &builder, Some(json!({"name": "three"}))).await?);
    assert_eq!((status, code.as_str()), (429, "resource_exhausted"), "{message}");
    assert_eq!(message, "the tenant already has 2 knowledge bases, the most allowed");
    // Another tenant has its own quota.
    let other = kb.platform.token(&unique_tenant("kbq"), "olga", &["builder"]);
    let (status, body) = kb.call("POST", "", &other, Some(json!({"name": "one"}))).await?;
    assert_eq!(status, 201, "{body}");
    for (token, name) in [(&builder, "one"), (&builder, "two"), (&other, "one")] {
        let (status, _) = kb.call("DELETE", &format!("/{name}"), token, None).await?;
        assert_eq!(status, 200);
    }
    kb.platform.stop().await
}

/// `POST /graphql` as `token`: the `data`, or the first error's code.
async fn gql(kb: &Kb, token: &str, query: &str, variables: Value) -> anyhow::Result<Result<Value, String>> {
    let url = format!("{}/graphql", kb.platform.http_url(Service::Gateway));
    let (status, body) =
        call_json(&kb.http, "POST", &url, token, Some(json!({"query": query, "variables": variables}))).await?;
    anyhow::ensure!(status == 200, "graphql answered {status}: {body}");
    Ok(match body["errors"].as_array().and_then(|e| e.first()) {
        Some(err) => Err(err["extensions"]["code"].as_str().unwrap_or("no code").to_owned()),
        None => Ok(body["data"].clone()),
    })
}

#[tokio::test]
async fn knowledge_bases_over_graphql_with_the_rest_rules() -> anyhow::Result<()> {
    let double = OpenAiDouble::start().await?;
    let kb = Kb::start(&double, 20).await?;
    let tenant = unique_tenant("kbgql");
    let builder = kb.platform.token(&tenant, "bianca", &["builder"]);
    let viewer = kb.platform.token(&tenant, "victor", &["viewer"]);
    let other = kb.platform.token(&unique_tenant("kbgqlx"), "mallory", &["admin"]);

    let create = "mutation($n: String!) { createKnowledgeBase(name: $n, metadataColumns: [\"topic\"]) { name embeddingModel metadataColumns } }";
    assert_eq!(gql(&kb, &viewer, create, json!({"n": "notes"})).await?, Err("permission_denied".to_owned()));
    let created = gql(&kb, &builder, create, json!({"n": "notes"})).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(
        created["createKnowledgeBase"],
        json!({"name": "notes", "embeddingModel": "double-embed", "metadataColumns": ["topic"]})
    );
    // The dispatcher's own checks, as GraphQL errors with their code.
    assert_eq!(gql(&kb, &builder, create, json!({"n": "getlood_memory"})).await?, Err("invalid_argument".to_owned()));

    let insert = "mutation($d: [DocumentInput!]!) { insertDocuments(name: \"notes\", documents: $d) }";
    let docs = json!([{"id": "d1", "content": "the quarterly revenue grew in europe", "metadata": [{"key": "topic", "value": "sales"}]},
                      {"id": "d2", "content": "the office cat sleeps on the keyboard"}]);
    let inserted = gql(&kb, &builder, insert, json!({"d": docs})).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(inserted["insertDocuments"], 2);

    let search = "{ searchKnowledgeBase(name: \"notes\", query: \"revenue in europe\", topK: 1) { documentId content relevance metadata { key value } } knowledgeBases { name } }";
    let found = gql(&kb, &viewer, search, json!({})).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(found["searchKnowledgeBase"][0]["documentId"], "d1", "{found}");
    assert_eq!(found["searchKnowledgeBase"][0]["metadata"], json!([{"key": "topic", "value": "sales"}]), "{found}");
    assert_eq!(found["knowledgeBases"], json!([{"name": "notes"}]));

    // Another tenant: not found, and its list is empty.
    let get = "{ knowledgeBase(name: \"notes\") { name } }";
    assert_eq!(gql(&kb, &other, get, json!({})).await?, Err("not_found".to_owned()));
    let theirs = gql(&kb, &other, "{ knowledgeBases { name } }", json!({})).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(theirs["knowledgeBases"], json!([]));

    let delete = "mutation { deleteKnowledgeBase(name: \"notes\") { id } }";
    assert_eq!(gql(&kb, &other, delete, json!({})).await?, Err("not_found".to_owned()));
    let deleted = gql(&kb, &builder, delete, json!({})).await?.map_err(anyhow::Error::msg)?;
    assert_eq!(deleted["deleteKnowledgeBase"]["id"], "notes");
    assert_eq!(gql(&kb, &viewer, get, json!({})).await?, Err("not_found".to_owned()));
    kb.platform.stop().await
}
