//! One paging rule on every REST list route (and so on every service's list method behind it):
//! `page_size` 0 is the default, above 500 is clamped, negative is a 400 naming the field; a
//! page token is only valid on the list that issued it; following tokens walks every item once.

use std::time::{Duration, Instant};

use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        crate::call_json(&self.http, method, &format!("{}{path}", self.base), &self.token, body).await
    }

    async fn created(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let (status, body) = self.call("POST", path, Some(body)).await?;
        anyhow::ensure!((200..300).contains(&status), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// `GET route` with a paging query appended.
    async fn page(&self, route: &str, query: &str) -> anyhow::Result<(u16, Value)> {
        let sep = if route.contains('?') { '&' } else { '?' };
        self.call("GET", &format!("{route}{sep}{query}"), None).await
    }
}

/// start -> end: a run that completes inside ExecuteWorkflow.
fn graph() -> Value {
    json!({
        "nodes": [{"id": "start", "type": "start", "data": {}}, {"id": "end", "type": "end", "data": {}}],
        "edges": [{"id": "e", "source": "start", "target": "end"}],
    })
}

#[tokio::test]
async fn every_list_route_pages_by_the_same_rule() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::DesktopState)
        .service(Service::Workflow)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let api = Api {
        http: reqwest::Client::new(),
        base: platform.http_url(Service::Gateway),
        // Creates skills and workflows (builder) and runs (operator) besides its own desktops
        // and windows (member).
        token: platform.token("paging", "alice", &["builder", "operator"]),
    };

    // Two items in every list that can hold them without MindsDB (agents need it: that list is
    // checked empty).
    for name in ["paging-a", "paging-b"] {
        api.created("/api/v1/skills", json!({"name": name})).await?;
    }
    let mut desktop = String::new();
    for name in ["one", "two"] {
        desktop = api.created("/api/v1/desktops", json!({"name": name})).await?["id"].as_str().unwrap_or("").to_owned();
    }
    for app in ["notes", "dashboard"] {
        api.created(&format!("/api/v1/desktops/{desktop}/windows"), json!({"app_id": app, "title": app})).await?;
    }
    let mut workflow = String::new();
    for name in ["wf-a", "wf-b"] {
        workflow = api.created("/api/v1/workflows", json!({"name": name, "graph": graph()})).await?["id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
    }
    let (status, body) =
        api.call("PUT", &format!("/api/v1/workflows/{workflow}"), Some(json!({"graph": graph()}))).await?;
    anyhow::ensure!(status == 200, "update: {status} {body}");
    for _ in 0..2 {
        api.created(&format!("/api/v1/workflows/{workflow}/execute"), json!({"input": {}})).await?;
    }

    // (route, key of the items, items it holds at least)
    let routes = [
        ("/api/v1/agents".to_owned(), "agents", 0),
        ("/api/v1/skills".to_owned(), "skills", 2),
        ("/api/v1/desktops".to_owned(), "desktops", 2),
        (format!("/api/v1/desktops/{desktop}/windows"), "windows", 2),
        ("/api/v1/workflows".to_owned(), "workflows", 2),
        (format!("/api/v1/workflows/{workflow}/versions"), "versions", 2),
        (format!("/api/v1/workflows/{workflow}/runs"), "runs", 2),
        ("/api/v1/workflows/runs".to_owned(), "runs", 2),
    ];

    // A token issued by one list, to be refused by every other.
    let (_, skills) = api.page("/api/v1/skills", "page_size=1").await?;
    let foreign = skills["next_page_token"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!foreign.is_empty(), "skills gave no next page token: {skills}");

    for (route, key, at_least) in &routes {
        // Negative: 400 naming the field.
        let (status, body) = api.page(route, "page_size=-1").await?;
        assert_eq!(status, 400, "{route} page_size=-1: {body}");
        assert_eq!(body["code"], "invalid_argument", "{route}: {body}");
        assert!(body["message"].as_str().unwrap_or("").contains("page_size"), "{route}: {body}");
        // Zero and huge sizes are served (default and clamp), whatever the list holds.
        for query in ["page_size=0", "page_size=100000"] {
            let (status, body) = api.page(route, query).await?;
            assert_eq!(status, 200, "{route} {query}: {body}");
            let items = body[key].as_array().map_or(0, Vec::len);
            assert!(items >= *at_least && items <= 500, "{route} {query}: {items} items");
        }
        // A garbage token and another list's token are 400s.
        for token in ["not-a-token", foreign.as_str()] {
            if *route == "/api/v1/skills" && token == foreign {
                continue;
            }
            let (status, body) = api.page(route, &format!("page_token={token}")).await?;
            assert_eq!(status, 400, "{route} page_token={token}: {body}");
            assert_eq!(body["code"], "invalid_argument", "{route}: {body}");
        }
        // Pages of one walk every item exactly once.
        if *at_least >= 2 {
            let (_, all) = api.page(route, "page_size=500").await?;
            let total = all[key].as_array().map_or(0, Vec::len);
            let mut seen = Vec::new();
            let mut token = String::new();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let query =
                    if token.is_empty() { "page_size=1".to_owned() } else { format!("page_size=1&page_token={token}") };
                let (status, body) = api.page(route, &query).await?;
                assert_eq!(status, 200, "{route} {query}: {body}");
                let items = body[key].as_array().cloned().unwrap_or_default();
                assert!(items.len() <= 1, "{route}: page of 1 held {}", items.len());
                seen.extend(items.iter().map(|i| i["id"].as_str().map_or_else(|| i.to_string(), str::to_owned)));
                token = body["next_page_token"].as_str().unwrap_or_default().to_owned();
                if token.is_empty() || Instant::now() > deadline {
                    break;
                }
            }
            let mut unique = seen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), seen.len(), "{route}: an item came twice: {seen:?}");
            assert_eq!(seen.len(), total, "{route}: pages of one gave {} of {total} items", seen.len());
            eprintln!("{route}: {total} items walked in pages of one");
        }
    }
    Ok(())
}
