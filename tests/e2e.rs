//! The seed's flow 1 end to end through the public API: REST to set up a skill and an agent,
//! then "Crée-moi un dashboard analytics" over the OpenAI-compatible chat endpoint (our SSE
//! client and the official `openai` Python client), with the real gateway, pipeline and agent
//! registry, real MindsDB, and the deterministic OpenAI double as every LLM.

use std::time::Duration;

use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

const SEED_PROMPT: &str = "Crée-moi un dashboard analytics";

struct World {
    platform: Platform,
    llm: OpenAiDouble,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let llm = OpenAiDouble::start().await?;
        let platform = Platform::builder()
            .service(Service::AgentRegistry)
            .service(Service::Pipeline)
            .service(Service::Gateway)
            .app_settings(
                Service::Pipeline,
                json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-test-intent"}}),
            )
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let tenant = format!("e2e_{}", std::process::id());
        let token = platform.token(&tenant, "alice", &["admin"]);
        let base = platform.http_url(Service::Gateway);
        Ok(Self { platform, llm, http: reqwest::Client::new(), base, token })
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self.http.post(format!("{}{path}", self.base)).bearer_auth(&self.token).json(&body).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {body}");
        Ok(body)
    }

    /// The tenant's catalogue: a `ui-generation` skill and a dashboard agent that has it, plus a
    /// generalist without it, so the choice is made by skill.
    async fn seed_agents(&self) -> anyhow::Result<()> {
        self.post(
            "/api/v1/skills",
            json!({"name": "ui-generation", "description": "builds UIs", "prompt_fragment": "Propose windows."}),
        )
        .await?;
        for (name, skills) in [("generalist", json!([])), ("dashboard-builder", json!(["ui-generation"]))] {
            self.post(
                "/api/v1/agents",
                json!({
                    "name": name,
                    "model": {"provider": "openai", "model_name": "gpt-test", "base_url": self.llm.base_url(), "api_key": "sk-agent"},
                    "skills": skills,
                    "prompt_template": "You are a helpful agent."
                }),
            )
            .await?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn flow1_chat_to_dashboard_action_over_sse() -> anyhow::Result<()> {
    let world = World::start().await?;
    world.seed_agents().await?;
    world.llm.reply_when(SEED_PROMPT, "Voici votre dashboard analytics.");

    let resp = world
        .http
        .post(format!("{}/v1/chat/completions", world.base))
        .bearer_auth(&world.token)
        .json(&json!({
            "model": "getlood",
            "stream": true,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": SEED_PROMPT}]
        }))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str()?.starts_with("text/event-stream"));
    let body = tokio::time::timeout(Duration::from_secs(60), resp.text()).await??;

    let data: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let chunks: Vec<Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d)).collect::<Result<_, _>>()?;
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let answer: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect::<Vec<_>>().concat();
    assert!(answer.contains("Voici votre dashboard analytics."), "{answer}");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));

    // GETLOOD's extras: the intent with its confidence, the agent chosen by skill, the action.
    let extras = chunks.iter().find_map(|c| c.get("getlood")).expect("a chunk with the getlood extras");
    assert_eq!(extras["intent"], "GENERATE_UI");
    assert!(extras["confidence"].as_f64().unwrap_or(0.0) >= 0.5, "{extras}");
    assert_eq!(extras["agent"]["name"], "dashboard-builder");
    let action = &extras["ui_actions"][0];
    assert_eq!(action["type"], "open_window");
    assert_eq!(action["params"]["app_id"], "dashboard");
    let stages: Vec<&str> =
        extras["stage_timings"].as_array().unwrap().iter().filter_map(|t| t["stage"].as_str()).collect();
    assert_eq!(stages.len(), 5, "{stages:?}");
    world.platform.stop().await
}

#[tokio::test]
async fn flow1_with_the_official_openai_python_client() -> anyhow::Result<()> {
    if std::process::Command::new("python3").arg("--version").output().is_err() {
        eprintln!("SKIPPED: python3 is not installed");
        return Ok(());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let python = crate::gateway_chat::scripts_python(&root).await?;
    let world = World::start().await?;
    world.seed_agents().await?;
    world.llm.reply_when(SEED_PROMPT, "Voici votre dashboard analytics.");
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&python)
            .arg(root.join("scripts/openai_client_check.py"))
            .args(["--base-url", &format!("{}/v1", world.base), "--api-key", &world.token])
            .args(["--expect", "Voici votre dashboard analytics."])
            .output(),
    )
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openai client check failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("openai client check: ok"), "{stdout}");
    world.platform.stop().await
}

/// Flow 1 to the end: the chat's `open_window` action becomes a window `POST`, desktop-state
/// persists it, and both WebSocket clients of that desktop receive it; another tenant's
/// client receives nothing.
#[tokio::test]
async fn flow1_chat_action_opens_a_window_every_client_of_the_desktop_sees() -> anyhow::Result<()> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let llm = OpenAiDouble::start().await?;
    llm.reply_when(SEED_PROMPT, "Voici votre dashboard analytics.");
    let platform = Platform::builder()
        .service(Service::AgentRegistry)
        .service(Service::Pipeline)
        .service(Service::DesktopState)
        .service(Service::EventDispatcher)
        .service(Service::Gateway)
        .app_settings(
            Service::Pipeline,
            json!({"intent_model": {"base_url": llm.base_url(), "api_key": "sk-test-intent"}}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let tenant = format!("flow1_{}", std::process::id());
    let world = World {
        base: platform.http_url(Service::Gateway),
        token: platform.token(&tenant, "alice", &["admin"]),
        http: reqwest::Client::new(),
        llm,
        platform,
    };
    world.seed_agents().await?;
    let other = world.platform.token(&format!("other_{}", std::process::id()), "mallory", &["admin"]);

    let desktop: Value = world.post("/api/v1/desktops", json!({"name": "main"})).await?;
    let desktop = desktop["id"].as_str().unwrap_or_default().to_owned();
    let ws_base = world.base.replace("http://", "ws://");
    let connect = |token: String, desktop: String| {
        let url = format!("{ws_base}/ws/desktop/{desktop}");
        async move {
            let mut req = url.into_client_request()?;
            req.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
            anyhow::Ok(tokio_tungstenite::connect_async(req).await?.0)
        }
    };
    let mut clients = vec![
        connect(world.token.clone(), desktop.clone()).await?,
        connect(world.token.clone(), desktop.clone()).await?,
    ];
    for ws in &mut clients {
        let state = crate::desktop_ws::recv(ws, Duration::from_secs(10)).await.expect("state frame");
        assert_eq!(state["type"], "state");
    }
    // Another tenant cannot even open this desktop's socket.
    assert!(connect(other.clone(), desktop.clone()).await.is_err());

    // The chat turn proposes the window.
    let turn = world
        .post(
            "/v1/chat/completions",
            json!({"model": "getlood", "messages": [{"role": "user", "content": SEED_PROMPT}]}),
        )
        .await?;
    let action = turn["getlood"]["ui_actions"][0].clone();
    assert_eq!(action["type"], "open_window", "{turn}");
    let app_id = action["params"]["app_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(app_id, "dashboard");

    // The client carries the action out; every client of the desktop sees the window.
    let opened = world
        .post(&format!("/api/v1/desktops/{desktop}/windows"), json!({"app_id": app_id, "title": "Dashboard"}))
        .await?;
    let window_id = opened["window"]["id"].as_str().unwrap_or_default().to_owned();
    for ws in &mut clients {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let event = loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let frame = crate::desktop_ws::recv(ws, left).await.expect("window.opened");
            if frame["type"] == "event" {
                break frame;
            }
        };
        assert_eq!(event["event"]["type"], "window.opened");
        assert_eq!(event["event"]["data"]["window"]["id"], window_id.as_str());
        assert_eq!(event["event"]["data"]["window"]["app_id"], "dashboard");
    }
    // Persisted: the desktop's state holds the window.
    let state: Value = world
        .http
        .get(format!("{}/api/v1/desktop/state/{desktop}", world.base))
        .bearer_auth(&world.token)
        .send()
        .await?
        .json()
        .await?;
    assert!(state.to_string().contains(&window_id), "{state}");
    world.platform.stop().await
}
