//! Workflow `agent` nodes name the tenant's agents as users know them (issue 16): the name given
//! at `POST /api/v1/agents` (also spelt with `_` for `-`) or the agent's id, never the MindsDB
//! name `agent_<id>` the registry keeps it under. Driven through the gateway's REST routes, with
//! a real MindsDB agent on the OpenAI double. Also: an unknown name is a problem on its node at
//! validate and save time, and an agent renamed or deleted after the workflow was saved fails
//! its node with a message saying so, not MindsDB's.

use std::time::{Duration, Instant};

use getlood_testkit::{OpenAiDouble, Platform, Service};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;

const QUESTION: &str = "Summarise the quarter for the board";
const ANSWER: &str = "The quarter closed 12 percent up.";

struct World {
    platform: Platform,
    llm: OpenAiDouble,
    http: reqwest::Client,
    base: String,
    /// Writes agents and workflows, runs them.
    builder: String,
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let llm = OpenAiDouble::start().await?;
        llm.reply_when(QUESTION, ANSWER);
        let platform = Platform::builder()
            .service(Service::AgentRegistry)
            .service(Service::Workflow)
            .service(Service::EventDispatcher)
            .service(Service::Gateway)
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let tenant = unique_tenant("wfa");
        let base = platform.http_url(Service::Gateway);
        Ok(Self {
            builder: platform.token(&tenant, "bob", &["builder", "operator"]),
            platform,
            llm,
            http: reqwest::Client::new(),
            base,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        crate::call_json(&self.http, method, &format!("{}{path}", self.base), &self.builder, body).await
    }

    fn agent_body(&self, name: &str) -> Value {
        json!({
            "name": name,
            "description": "builds dashboards",
            "model": {"provider": "openai", "model_name": "gpt-test", "base_url": self.llm.base_url(), "api_key": "sk-agent"},
            "prompt_template": "You are a helpful dashboard agent."
        })
    }

    /// Creates agent `name` through the gateway; its id.
    async fn create_agent(&self, name: &str) -> anyhow::Result<String> {
        let (status, body) = self.call("POST", "/api/v1/agents", Some(self.agent_body(name))).await?;
        anyhow::ensure!(status == 201, "agent: {status} {body}");
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }

    async fn create_workflow(&self, name: &str, graph: Value) -> anyhow::Result<String> {
        let (status, body) =
            self.call("POST", "/api/v1/workflows", Some(json!({"name": name, "graph": graph}))).await?;
        anyhow::ensure!(status == 201, "create: {status} {body}");
        Ok(body["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Executes workflow `id` and waits for the run to finish; the run.
    async fn run(&self, id: &str) -> anyhow::Result<Value> {
        let (status, body) =
            self.call("POST", &format!("/api/v1/workflows/{id}/execute"), Some(json!({"input": {}}))).await?;
        anyhow::ensure!(status == 202, "execute: {status} {body}");
        let run = body["id"].as_str().unwrap_or_default().to_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (status, body) = self.call("GET", &format!("/api/v1/workflows/runs/{run}"), None).await?;
            anyhow::ensure!(status == 200, "get run: {status} {body}");
            if ["succeeded", "failed", "cancelled"].contains(&body["status"].as_str().unwrap_or("")) {
                return Ok(body);
            }
            anyhow::ensure!(Instant::now() < deadline, "run never finished: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `POST /api/v1/workflows/validate` of `graph`: its problems.
    async fn problems(&self, graph: &Value) -> anyhow::Result<Vec<Value>> {
        let (status, body) = self.call("POST", "/api/v1/workflows/validate", Some(json!({"graph": graph}))).await?;
        anyhow::ensure!(status == 200, "validate: {status} {body}");
        Ok(body["problems"].as_array().cloned().unwrap_or_default())
    }
}

/// start -> one agent node per reference, in a chain -> end with every answer.
fn asking(agents: &[&str]) -> Value {
    let mut nodes = vec![json!({"id": "start", "type": "start", "data": {}, "position": {"x": 0, "y": 0}})];
    let mut edges = Vec::new();
    let mut previous = "start".to_owned();
    let mut output = serde_json::Map::new();
    for (i, agent) in agents.iter().enumerate() {
        let id = format!("ask{i}");
        nodes.push(json!({"id": id, "type": "agent", "position": {"x": 200 * (i + 1), "y": 0},
                          "data": {"agent": agent, "prompt_template": QUESTION}}));
        edges.push(json!({"id": format!("e{i}"), "source": previous, "target": id}));
        output.insert(id.clone(), json!(format!("{{{{{id}.answer}}}}")));
        previous = id;
    }
    nodes.push(json!({"id": "end", "type": "end", "data": {"output": output}, "position": {"x": 1000, "y": 0}}));
    edges.push(json!({"id": "last", "source": previous, "target": "end"}));
    json!({"nodes": nodes, "edges": edges})
}

fn node<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["node_runs"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == id)).unwrap_or(&Value::Null)
}

/// The agent created through the gateway runs from a workflow that names it by its name, by
/// the `_` spelling of its name and by its id; renamed, the node naming its old name fails
/// saying so; deleted, the node naming its id fails saying so.
#[tokio::test]
async fn workflow_agent_nodes_name_registry_agents() -> anyhow::Result<()> {
    let w = World::start().await?;
    let id = w.create_agent("dashboard-builder").await?;

    let by_name = w.create_workflow("by name", asking(&["dashboard-builder", "dashboard_builder", &id])).await?;
    let run = w.run(&by_name).await?;
    assert_eq!(run["status"], "succeeded", "{run}");
    for n in ["ask0", "ask1", "ask2"] {
        assert_eq!(node(&run, n)["output"]["answer"], ANSWER, "{n}: {run}");
        assert_eq!(run["result"][n], ANSWER, "{run}");
    }

    // Renamed after the workflow was saved: the service hears of it from the registry's event;
    // validation says so once it has.
    let (status, body) = w.call("PUT", &format!("/api/v1/agents/{id}"), Some(w.agent_body("board-reporter"))).await?;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while w.problems(&asking(&["dashboard-builder"])).await?.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the rename never reached the workflow service");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let run = w.run(&by_name).await?;
    assert_eq!(run["status"], "failed", "{run}");
    let error = node(&run, "ask0")["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("agent 'dashboard-builder' does not exist"), "{run}");
    assert!(!error.contains("agent_"), "MindsDB's name leaked: {error}");

    // By id, the renamed agent still answers; deleted, the node says it was deleted.
    let by_id = w.create_workflow("by id", asking(&[&id])).await?;
    assert_eq!(w.run(&by_id).await?["status"], "succeeded");
    let (status, body) = w.call("DELETE", &format!("/api/v1/agents/{id}"), None).await?;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        let run = w.run(&by_id).await?;
        if run["status"] == "failed" {
            break run;
        }
        anyhow::ensure!(Instant::now() < deadline, "the deleted agent still answers: {run}");
    };
    let error = node(&run, "ask0")["error"].as_str().unwrap_or_default();
    assert!(error.contains("was deleted") || error.contains("does not exist any more"), "{run}");
    assert!(!error.contains("Agent with name"), "MindsDB's message: {error}");

    w.platform.stop().await
}

/// An agent the tenant does not have is a problem on its node at validate and save time.
#[tokio::test]
async fn workflow_unknown_agent_is_a_problem_on_its_node() -> anyhow::Result<()> {
    let w = World::start().await?;
    w.create_agent("analyst").await?;
    let graph = asking(&["analyst", "no-such-agent"]);

    let problems = w.problems(&graph).await?;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0]["subject"], "ask1", "{problems:#?}");
    assert_eq!(problems[0]["field"], "graph.nodes[2].data.agent", "{problems:#?}");
    assert!(problems[0]["description"].as_str().unwrap_or_default().contains("unknown agent 'no-such-agent'"));

    let (status, body) =
        w.call("POST", "/api/v1/workflows", Some(json!({"name": "unknown agent", "graph": graph}))).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("unknown agent 'no-such-agent'"), "{body}");
    assert!(body.to_string().contains("ask1"), "{body}");

    // Another tenant's agent is as unknown as one that never existed.
    let other = w.platform.token(&unique_tenant("wfo"), "eve", &["builder"]);
    let (status, body) = crate::call_json(
        &w.http,
        "POST",
        &format!("{}/api/v1/workflows/validate", w.base),
        &other,
        Some(json!({"graph": asking(&["analyst"])})),
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], false, "{body}");

    w.platform.stop().await
}
