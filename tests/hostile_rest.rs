//! Hostile input through the gateway's REST fields: more than 200 payloads (injection strings,
//! quotes and backslashes, control characters, unicode tricks, very long strings) in every
//! string field of the skill, desktop, window and workflow writes, the memory search query and
//! the path ids. Each answer is a 4xx with a JSON error or a success whose stored value reads
//! back byte for byte; never a 5xx; and another tenant's canary objects are unchanged.
//!
//! Agent writes have their own test: each valid one makes MindsDB create the agent and call its
//! model (the OpenAI double here), so they run four at a time, every payload in the agent's
//! text fields (description, prompt template, metadata, model name).

use std::time::Duration;

use futures::StreamExt as _;
use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::call_json;

/// More than 200 hostile strings: fragments alone and wrapped, classic payloads, long strings.
fn corpus() -> Vec<String> {
    let fragments = [
        "'",
        "''",
        "\"",
        "`",
        "\\",
        "\\'",
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
        "..",
        "%00",
        "%2e%2e",
        "\u{1}",
        "\u{1b}[31m",
        "\u{d7ff}",
        "\u{10ffff}",
        "{}",
        "[]",
        "null",
    ];
    let payloads = [
        "x' OR '1'='1",
        "'; DROP TABLE skills; --",
        "\"; DROP SCHEMA agent_registry CASCADE; --",
        "1); DELETE FROM windows; --",
        "') UNION SELECT * FROM pg_user --",
        "{{input}}",
        "{{secrets.api_key}}",
        "../../../../etc/passwd",
        "<script>alert(1)</script>",
        "${jndi:ldap://127.0.0.1/x}",
        "' || pg_sleep(5) || '",
        "admin'--",
        "line1\nline2\r\nline3",
        "null\0byte",
        "trailing backslash \\",
        "'leading quote",
        "mixed \"double\" and 'single' and `back`",
        "emoji 👩‍👩‍👧 family",
        "zalgo z̷̢͎a̸l̵g̷o̴",
        "rtl \u{202e}txet desrever",
        "json {\"a\": [1, 2, {\"b\": null}]}",
        "http://169.254.169.254/latest/meta-data/",
        "getlood.acme.desktop.window.opened",
        "*.>",
        "t_other_tenant.agents",
    ];
    let mut out: Vec<String> = Vec::new();
    for f in fragments {
        out.push(f.to_owned());
        out.push(format!("a{f}b"));
        out.push(format!("{f}{f}{f}"));
    }
    out.extend(payloads.iter().map(|p| (*p).to_owned()));
    out.push("'\\".repeat(2_000));
    out.push("漢字🦀é".repeat(2_000));
    out.push("x".repeat(70_000));
    out
}

/// Every string the caller sent must come back as sent when the write succeeded.
fn assert_round_trip(route: &str, sent: &str, got: Option<&Value>) {
    assert_eq!(got.and_then(Value::as_str), Some(sent), "{route}: stored value differs from the one sent");
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        call_json(&self.http, method, &format!("{}{path}", self.base), token, body).await
    }

    /// Sends the request and checks the rule: a 4xx with a JSON error code, or a success.
    async fn hostile(
        &self,
        route: &str,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Option<Value>> {
        let sent: String =
            format!("{path} {}", body.as_ref().map(Value::to_string).unwrap_or_default()).chars().take(160).collect();
        let (status, resp) = self.call(method, path, token, body).await?;
        assert!(status < 500, "{route}: {status} {resp} for {sent}");
        if status >= 400 {
            // A precise error: a JSON body with a code (a path the router cannot match is axum's 404).
            assert!(resp.get("code").is_some() || status == 404 || status == 405, "{route}: {status} {resp}");
            return Ok(None);
        }
        Ok(Some(resp))
    }
}

#[tokio::test]
async fn hostile_rest_fields_are_refused_or_round_trip_and_never_reach_another_tenant() -> anyhow::Result<()> {
    let platform = Platform::builder()
        .service(Service::DesktopState)
        .service(Service::AgentRegistry)
        .service(Service::Workflow)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        // The corpus is a few thousand writes from one user in a few seconds.
        .app_settings(
            Service::Gateway,
            json!({"rate_limits": {
                "write": {"per_user_per_minute": 0, "per_tenant_per_minute": 0},
                "agent_write": {"per_user_per_minute": 0, "per_tenant_per_minute": 0},
                "workflow_validate": {"per_user_per_minute": 0, "per_tenant_per_minute": 0},
                "search": {"per_user_per_minute": 0, "per_tenant_per_minute": 0},
            }}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let pid = std::process::id();
    let (tenant, other) = (format!("hostile_{pid}"), format!("canary_{pid}"));
    let token = platform.token(&tenant, "alice", &["admin"]);
    let canary_token = platform.token(&other, "carol", &["admin"]);
    let api = Api { http: reqwest::Client::new(), base: platform.http_url(Service::Gateway) };

    // The other tenant's canaries.
    let (s, _) =
        api.call("POST", "/api/v1/skills", &canary_token, Some(json!({"name": "canary", "description": "c"}))).await?;
    assert_eq!(s, 201);
    let (s, canary_desktop) =
        api.call("POST", "/api/v1/desktops", &canary_token, Some(json!({"name": "canary"}))).await?;
    assert_eq!(s, 201, "{canary_desktop}");
    let canary_desktop = canary_desktop["id"].as_str().unwrap().to_owned();
    let canary_before = api.call("GET", &format!("/api/v1/desktops/{canary_desktop}"), &canary_token, None).await?.1;
    let skills_before = api.call("GET", "/api/v1/skills", &canary_token, None).await?.1;

    let (s, desktop) = api.call("POST", "/api/v1/desktops", &token, Some(json!({"name": "main"}))).await?;
    assert_eq!(s, 201, "{desktop}");
    let desktop = desktop["id"].as_str().unwrap().to_owned();
    let (s, window) = api
        .call(
            "POST",
            &format!("/api/v1/desktops/{desktop}/windows"),
            &token,
            Some(json!({"app_id": "notes", "title": "w"})),
        )
        .await?;
    assert_eq!(s, 201, "{window}");
    let window = window["window"]["id"].as_str().unwrap().to_owned();
    let graph = json!({
        "nodes": [{"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}},
                  {"id": "end", "type": "end", "data": {}, "position": {"x": 1, "y": 0}}],
        "edges": [{"id": "e1", "source": "start", "target": "end"}],
    });

    let corpus = corpus();
    assert!(corpus.len() >= 200, "corpus of {}", corpus.len());
    // Path segments and query values longer than this are not sent: the client refuses URLs
    // of that size before they leave (the bodies carry the long strings).
    let enc = |s: &str| url_escape(&s.chars().take(1000).collect::<String>());
    let mut requests = 0usize;
    for v in &corpus {
        // Skills: name (a pattern), description and prompt fragment (free text).
        api.hostile("skill name", "POST", "/api/v1/skills", &token, Some(json!({"name": v, "description": "d"})))
            .await?;
        if let Some(created) = api
            .hostile(
                "skill text",
                "POST",
                "/api/v1/skills",
                &token,
                Some(json!({"name": format!("s{requests}"), "description": v, "prompt_fragment": v})),
            )
            .await?
        {
            assert_round_trip("skill description", v, created.get("description"));
            assert_round_trip("skill prompt_fragment", v, created.get("prompt_fragment"));
        }
        api.hostile("skill path", "GET", &format!("/api/v1/skills/{}", enc(v)), &token, None).await?;
        // Agents: the name is refused before MindsDB is asked anything.
        api.hostile(
            "agent name",
            "POST",
            "/api/v1/agents",
            &token,
            Some(json!({"name": v, "model": {"provider": "openai", "model_name": "m"}})),
        )
        .await?;
        api.hostile("agent path", "GET", &format!("/api/v1/agents/{}", enc(v)), &token, None).await?;
        // Desktops and windows.
        if let Some(created) =
            api.hostile("desktop name", "POST", "/api/v1/desktops", &token, Some(json!({"name": v}))).await?
        {
            assert_round_trip("desktop name", v, created.get("name"));
        }
        if let Some(created) = api
            .hostile(
                "window",
                "POST",
                &format!("/api/v1/desktops/{desktop}/windows"),
                &token,
                Some(json!({"app_id": v, "title": v})),
            )
            .await?
        {
            assert_round_trip("window title", v, created.get("window").unwrap_or(&created).get("title"));
        }
        if let Some(patched) = api
            .hostile("window patch", "PATCH", &format!("/api/v1/windows/{window}"), &token, Some(json!({"title": v})))
            .await?
        {
            assert_round_trip("window title patch", v, patched.get("window").unwrap_or(&patched).get("title"));
        }
        api.hostile("window path", "GET", &format!("/api/v1/windows/{}", enc(v)), &token, None).await?;
        // Workflows: name and description stored, graph validated.
        if let Some(created) = api
            .hostile(
                "workflow",
                "POST",
                "/api/v1/workflows",
                &token,
                Some(json!({"name": v, "description": v, "graph": graph})),
            )
            .await?
        {
            assert_round_trip("workflow name", v, created.get("name"));
        }
        api.hostile(
            "workflow node id",
            "POST",
            "/api/v1/workflows/validate",
            &token,
            Some(json!({"graph": {"nodes": [{"id": v, "type": "start", "data": {}}], "edges": []}})),
        )
        .await?;
        api.hostile("workflow path", "GET", &format!("/api/v1/workflows/{}", enc(v)), &token, None).await?;
        api.hostile("run path", "GET", &format!("/api/v1/workflows/runs/{}", enc(v)), &token, None).await?;
        // Memory search: the query is the caller's own and bounded.
        api.hostile("memory q", "GET", &format!("/api/v1/memory/search?q={}", enc(v)), &token, None).await?;
        requests += 14;
    }

    // Nothing of the other tenant changed.
    let canary_after = api.call("GET", &format!("/api/v1/desktops/{canary_desktop}"), &canary_token, None).await?.1;
    assert_eq!(canary_before, canary_after, "the other tenant's desktop changed");
    let skills_after = api.call("GET", "/api/v1/skills", &canary_token, None).await?.1;
    assert_eq!(skills_before, skills_after, "the other tenant's skills changed");
    eprintln!("hostile REST corpus: {} payloads, {requests} requests, no 5xx", corpus.len());
    platform.stop().await
}

#[tokio::test]
async fn hostile_agent_text_fields_are_refused_or_round_trip() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::Gateway)
        .app_settings(
            Service::Gateway,
            json!({"rate_limits": {"agent_write": {"per_user_per_minute": 0, "per_tenant_per_minute": 0}}}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let pid = std::process::id();
    let token = platform.token(&format!("hostile_agents_{pid}"), "alice", &["admin"]);
    let canary_token = platform.token(&format!("canary_agents_{pid}"), "carol", &["admin"]);
    let api = Api { http: reqwest::Client::new(), base: platform.http_url(Service::Gateway) };
    let model =
        |name: &str| json!({"provider": "openai", "model_name": name, "base_url": llm.base_url(), "api_key": "sk-t"});
    let (s, canary) =
        api.call("POST", "/api/v1/agents", &canary_token, Some(json!({"name": "canary", "model": model("m")}))).await?;
    assert_eq!(s, 201, "{canary}");
    let canary_before = api.call("GET", "/api/v1/agents", &canary_token, None).await?.1;

    let corpus = corpus();
    let api = &api;
    let (token, model) = (&token, &model);
    let results: Vec<anyhow::Result<usize>> = futures::stream::iter(corpus.iter().enumerate())
        .map(|(i, v)| async move {
            let mut metadata = serde_json::Map::new();
            metadata.insert("note".to_owned(), json!(v));
            let body = json!({"name": format!("a{i}"), "description": v, "prompt_template": v,
                              "metadata": metadata, "model": model("m")});
            let mut ok = 0;
            if let Some(created) = api.hostile("agent text", "POST", "/api/v1/agents", token, Some(body)).await? {
                assert_round_trip("agent description", v, created.get("description"));
                assert_round_trip("agent prompt_template", v, created.get("prompt_template"));
                assert_round_trip("agent metadata", v, created.pointer("/metadata/note"));
                ok += 1;
            }
            let mut key = serde_json::Map::new();
            key.insert(v.clone(), json!("x"));
            let body = json!({"name": format!("k{i}"), "metadata": key, "model": model(v)});
            ok += usize::from(
                api.hostile("agent model name", "POST", "/api/v1/agents", token, Some(body)).await?.is_some(),
            );
            Ok(ok)
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut created = 0;
    for r in results {
        created += r?;
    }
    let canary_after = api.call("GET", "/api/v1/agents", &canary_token, None).await?.1;
    assert_eq!(canary_before, canary_after, "the other tenant's agents changed");
    eprintln!(
        "hostile agent fields: {} payloads, {} requests, {created} agents created, no 5xx",
        corpus.len(),
        corpus.len() * 2
    );
    platform.stop().await
}

/// Percent-encodes every byte outside the unreserved set, so the payload reaches the route as
/// the path segment or query value itself.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
