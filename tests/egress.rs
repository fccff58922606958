//! Issue 13 through the gateway's REST routes: user-supplied URLs that would make MindsDB call
//! the platform's own network (metadata service, loopback, private ranges) are 400s naming the
//! field and the reason; a model moved to a new host needs its API key again; workflow `sql`
//! nodes read only the databases the operator allowed, never MindsDB's catalogue, a project's
//! agents or memory, nor another tenant's project; graphs over the size limit are 400s naming
//! it. None of these reach MindsDB, so none needs it running.

use std::time::Duration;

use getlood_testkit::{Platform, Service};
use serde_json::{Value, json};

use crate::desktop_ws::unique_tenant;

struct Api {
    platform: Platform,
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// Agent-registry with the built-in egress policy (no allow-list, as in production),
    /// workflow with its defaults, and the gateway.
    async fn start() -> anyhow::Result<Self> {
        let platform = Platform::builder()
            .service(Service::AgentRegistry)
            .service(Service::Workflow)
            .service(Service::Gateway)
            .app_settings(Service::AgentRegistry, json!({"egress": {"allow": []}}))
            .start()
            .await?;
        platform.wait_ready(Duration::from_secs(30)).await?;
        let base = format!("http://{}", platform.get(Service::Gateway).http_addr);
        Ok(Self { platform, http: reqwest::Client::new(), base })
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        crate::call_json(&self.http, method, &format!("{}{path}", self.base), token, body).await
    }
}

fn agent(base_url: &str) -> Value {
    json!({"name": "leaky", "model": {"provider": "openai", "model_name": "gpt-4", "base_url": base_url, "api_key": "sk-x"}})
}

#[tokio::test]
async fn egress_model_urls_into_the_platform_network_are_refused() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let token = api.platform.token(&unique_tenant("egress"), "alice", &["admin"]);
    for (url, reason) in [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://2852039166/", "169.254.169.254 is a link-local address"),
        ("http://0xa9fea9fe/v1", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:169.254.169.254]/", "169.254.169.254 is a link-local address"),
        ("http://[fe80::1]/v1", "fe80::1 is a link-local address"),
        ("http://metadata.google.internal/", "metadata.google.internal is a link-local (cloud metadata) address"),
        // The local model's address: refused by the built-in policy, allowed by `getlood dev`.
        ("http://127.0.0.1:18080/v1", "127.0.0.1 is a loopback address"),
        ("http://localhost:18080/v1", "localhost is a loopback address"),
        ("http://10.0.0.7:8000/v1", "10.0.0.7 is a private address"),
        ("http://[fd12::1]/v1", "fd12::1 is a private (unique local) address"),
        ("http://0.0.0.0:8000/", "0.0.0.0 is an unspecified address"),
        ("http://224.0.0.251/", "224.0.0.251 is a multicast address"),
    ] {
        let (status, err) = api.call("POST", "/api/v1/agents", &token, Some(agent(url))).await?;
        assert_eq!((status, err["code"].as_str()), (400, Some("invalid_argument")), "{url}: {err}");
        assert_eq!(
            err["message"].as_str().unwrap_or_default(),
            format!("agent.model.base_url: {reason}; allow it with app.egress.allow"),
            "{url}"
        );
    }
    let (status, err) = api.call("POST", "/api/v1/agents", &token, Some(agent("ftp://models.example/"))).await?;
    assert_eq!(status, 400, "{err}");
    // Nothing was created.
    let (status, list) = api.call("GET", "/api/v1/agents", &token, None).await?;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["agents"].as_array().map(Vec::len).unwrap_or(0), 0, "{list}");
    Ok(())
}

#[tokio::test]
async fn egress_a_model_moved_to_another_host_needs_its_key_again() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let tenant = unique_tenant("egress_key");
    let token = api.platform.token(&tenant, "alice", &["admin"]);
    // An agent created earlier with a key for api.openai.com. Creating it here would need
    // MindsDB; the refusal comes before the registry talks to MindsDB, so the row suffices.
    let pool = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    let id = sqlx::types::Uuid::now_v7();
    let insert = format!(
        "INSERT INTO \"{}\".agents (tenant_id, id, name, mindsdb_name, model_provider, model_name, model_base_url, \
         has_api_key, owner) VALUES ($1, $2, 'analyst', 'agent_x', 'openai', 'gpt-4', 'https://api.openai.com/v1', true, 'alice')",
        api.platform.schema("agent_registry")
    );
    sqlx::query(sqlx::AssertSqlSafe(insert)).bind(&tenant).bind(id).execute(&pool).await?;

    let put = |provider: &str, base_url: &str| json!({"name": "analyst", "model": {"provider": provider, "model_name": "gpt-4", "base_url": base_url}});
    let path = format!("/api/v1/agents/{id}");
    let (status, err) = api.call("PUT", &path, &token, Some(put("openai", "https://collector.example/v1"))).await?;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    assert_eq!(err["message"], "changing model.base_url needs the api_key again");
    let (status, err) = api.call("PUT", &path, &token, Some(put("anthropic", "https://api.openai.com/v1"))).await?;
    assert_eq!((status, err["message"].as_str()), (400, Some("changing model.provider needs the api_key again")));
    // The egress policy applies to updates as well.
    let mut moved = put("openai", "http://169.254.169.254/");
    moved["model"]["api_key"] = json!("sk-new");
    let (status, err) = api.call("PUT", &path, &token, Some(moved)).await?;
    assert_eq!(status, 400, "{err}");
    assert!(err["message"].as_str().unwrap_or_default().contains("link-local"), "{err}");
    // Untouched.
    let (status, got) = api.call("GET", &path, &token, None).await?;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["version"].as_i64(), got["model"]["base_url"].as_str()),
        (Some(1), Some("https://api.openai.com/v1"))
    );
    Ok(())
}

fn sql_graph(query: &str) -> Value {
    json!({
        "nodes": [
            {"id": "s", "type": "start", "data": {}},
            {"id": "peek", "type": "sql", "data": {"query": query}},
            {"id": "e", "type": "end", "data": {}},
        ],
        "edges": [{"id": "1", "source": "s", "target": "peek"}, {"id": "2", "source": "peek", "target": "e"}],
    })
}

#[tokio::test]
async fn egress_sql_nodes_read_only_allowed_tables_of_their_tenant() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let (tenant, other) = (unique_tenant("sqla"), unique_tenant("sqlb"));
    let token = api.platform.token(&tenant, "alice", &["builder"]);
    for (query, needle) in [
        (format!("SELECT * FROM t_{tenant}.agents"), "system database or project"),
        // Another tenant's project: refused by name, whatever MindsDB's company separation does.
        (format!("SELECT name, model FROM t_{other}.agents"), "system database or project"),
        ("SELECT * FROM agents".to_owned(), "must be named database.table"),
        ("SELECT content FROM getlood_memory WHERE user_id = 'bob'".to_owned(), "must be named database.table"),
        ("SELECT * FROM information_schema.databases".to_owned(), "system database"),
        ("SELECT * FROM log.jobs_history".to_owned(), "system database"),
        ("SELECT * FROM mindsdb.models".to_owned(), "system database"),
        ("SELECT * FROM desktop.windows".to_owned(), "not readable by sql nodes"),
        ("SELECT * FROM files.sales WHERE id IN (SELECT id FROM t_x.agents)".to_owned(), "system"),
        ("DELETE FROM files.sales".to_owned(), "only SELECT"),
        ("INSERT INTO files.sales (a) VALUES (1)".to_owned(), "only SELECT"),
    ] {
        let (status, err) = api
            .call("POST", "/api/v1/workflows", &token, Some(json!({"name": "peek", "graph": sql_graph(&query)})))
            .await?;
        assert_eq!((status, err["code"].as_str()), (400, Some("invalid_argument")), "{query}: {err}");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains("[peek]") && message.contains(needle), "{query}: {message}");
        let (status, checked) =
            api.call("POST", "/api/v1/workflows/validate", &token, Some(json!({"graph": sql_graph(&query)}))).await?;
        assert_eq!((status, &checked["valid"]), (200, &json!(false)), "{query}: {checked}");
        assert_eq!(checked["problems"][0]["field"], "graph.nodes[1].data.query", "{checked}");
    }
    // The tenant's files are allowed by default.
    let (status, created) = api
        .call(
            "POST",
            "/api/v1/workflows",
            &token,
            Some(json!({"name": "sales", "graph": sql_graph("SELECT region, SUM(amount) AS total FROM files.sales GROUP BY region")})),
        )
        .await?;
    assert_eq!(status, 201, "{created}");
    Ok(())
}

/// A chain of `n` nodes: start, transforms, end.
fn chain(n: usize) -> Value {
    let mut nodes = vec![json!({"id": "n0", "type": "start", "data": {}})];
    nodes
        .extend((1..n - 1).map(|i| json!({"id": format!("n{i}"), "type": "transform", "data": {"mapping": {"v": i}}})));
    nodes.push(json!({"id": format!("n{}", n - 1), "type": "end", "data": {}}));
    let edges: Vec<Value> = (0..n - 1)
        .map(|i| json!({"id": format!("e{i}"), "source": format!("n{i}"), "target": format!("n{}", i + 1)}))
        .collect();
    json!({"nodes": nodes, "edges": edges})
}

#[tokio::test]
async fn egress_graphs_over_the_size_limit_are_refused() -> anyhow::Result<()> {
    let api = Api::start().await?;
    let token = api.platform.token(&unique_tenant("bounds"), "alice", &["builder"]);
    let body = json!({"name": "big", "graph": chain(2_001)});
    let (status, err) = api.call("POST", "/api/v1/workflows", &token, Some(body)).await?;
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_argument")), "{err}");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the graph has 2001 nodes, more than the limit of 2000 (app.max_graph_nodes)"),
        "{message}"
    );
    // At the limit it is accepted.
    let (status, created) =
        api.call("POST", "/api/v1/workflows", &token, Some(json!({"name": "big", "graph": chain(2_000)}))).await?;
    assert_eq!(status, 201, "{created}");
    Ok(())
}

fn delay_graph(seconds: f64) -> Value {
    json!({
        "nodes": [
            {"id": "s", "type": "start", "data": {}},
            {"id": "wait", "type": "delay", "data": {"seconds": seconds}},
            {"id": "e", "type": "end", "data": {}},
        ],
        "edges": [{"id": "1", "source": "s", "target": "wait"}, {"id": "2", "source": "wait", "target": "e"}],
    })
}

/// Polls a run until `done` holds (at most 30 s).
async fn wait_run(api: &Api, token: &str, run: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = api.call("GET", &format!("/api/v1/workflows/runs/{run}"), token, None).await?;
        anyhow::ensure!(status == 200, "get run: {status} {body}");
        if done(&body) {
            return Ok(body);
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "run never reached the state: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn egress_delay_nodes_wait_without_a_worker_slot() -> anyhow::Result<()> {
    // One worker slot: a delay that held it would keep every other run's nodes waiting.
    let platform = Platform::builder()
        .service(Service::Workflow)
        .service(Service::Gateway)
        // The slow delay is parked without its message and woken by the sweeper; the quick one
        // comes back as its own message.
        .app_settings(
            Service::Workflow,
            json!({"worker_concurrency": 1, "delay_park_after": "1s", "sweep_interval": "300ms"}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(30)).await?;
    let base = format!("http://{}", platform.get(Service::Gateway).http_addr);
    let api = Api { platform, http: reqwest::Client::new(), base };
    let token = api.platform.token(&unique_tenant("delay"), "alice", &["admin"]);
    let mut runs = Vec::new();
    for (name, seconds) in [("slow", 8.0), ("quick", 0.2)] {
        let (status, wf) = api
            .call("POST", "/api/v1/workflows", &token, Some(json!({"name": name, "graph": delay_graph(seconds)})))
            .await?;
        anyhow::ensure!(status == 201, "create: {status} {wf}");
        let path = format!("/api/v1/workflows/{}/execute", wf["id"].as_str().unwrap_or_default());
        let (status, run) = api.call("POST", &path, &token, Some(json!({"input": {}}))).await?;
        anyhow::ensure!(status == 202, "execute: {status} {run}");
        runs.push(run["id"].as_str().unwrap_or_default().to_owned());
        if name == "slow" {
            // The slow delay has its worker (and, before issue 13, kept it).
            wait_run(&api, &token, &runs[0], |r| {
                r["node_runs"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n["node_id"] == "wait" && n["status"] == "running"))
            })
            .await?;
        }
    }
    let is_final = |r: &Value| ["succeeded", "failed", "cancelled"].contains(&r["status"].as_str().unwrap_or_default());
    let quick = wait_run(&api, &token, &runs[1], is_final).await?;
    assert_eq!(quick["status"], "succeeded", "{quick}");
    let (_, slow) = api.call("GET", &format!("/api/v1/workflows/runs/{}", runs[0]), &token, None).await?;
    assert_eq!(slow["status"], "running", "the quick run finished first: {slow}");
    // The slow one wakes up on time, without anything holding a worker for it meanwhile.
    let slow = wait_run(&api, &token, &runs[0], is_final).await?;
    assert_eq!(slow["status"], "succeeded", "{slow}");
    let wait = slow["node_runs"].as_array().and_then(|n| n.iter().find(|n| n["node_id"] == "wait")).cloned();
    assert_eq!(wait.as_ref().map(|w| w["output"]["waited_ms"].clone()), Some(json!(8000)), "{slow}");
    Ok(())
}
