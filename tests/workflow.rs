//! The workflow service against real Postgres, NATS and MindsDB, with the deterministic
//! OpenAI-compatible test double as the agents' LLM: the seed's Example 2 end to end, graph
//! validation, versions, cancellation, human approval, retries, a SIGKILL of the real binary
//! mid-run, and MindsDB-job mode.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use getlood_auth::TenantId;
use getlood_events::{Domain, EventBus, Payload};
use getlood_mindsdb::{DatabaseAdapter, Ident, MindsdbClient, MindsdbConfig, PostgresSpec, TenantContext};
use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::agent_registry::v1::{Agent, CreateAgentRequest, ModelConfig};
use getlood_proto::common::v1::ErrorDetail;
use getlood_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use getlood_proto::workflow::v1::*;
use getlood_testkit::{OpenAiDouble, Platform, Service};
use prost::Message as _;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic::{Code, Request};

type Client = WorkflowServiceClient<Channel>;

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    // Nextest runs each test in its own process: the pid keeps concurrent tests apart.
    format!(
        "{:08x}{:04x}{:02x}",
        nanos & 0xffff_ffff,
        std::process::id() & 0xffff,
        N.fetch_add(1, Ordering::Relaxed) & 0xff
    )
}

fn to_value(v: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(a) => Kind::ListValue(prost_types::ListValue { values: a.into_iter().map(to_value).collect() }),
        Value::Object(o) => Kind::StructValue(to_struct(Value::Object(o))),
    };
    prost_types::Value { kind: Some(kind) }
}

fn to_struct(v: Value) -> prost_types::Struct {
    match v {
        Value::Object(o) => prost_types::Struct { fields: o.into_iter().map(|(k, v)| (k, to_value(v))).collect() },
        _ => prost_types::Struct::default(),
    }
}

fn from_value(v: &prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => json!(b),
        // Protobuf numbers are doubles; whole ones compare as the integers they were.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 => json!(*n as i64),
        Some(Kind::NumberValue(n)) => json!(n),
        Some(Kind::StringValue(s)) => json!(s),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(from_value).collect()),
        Some(Kind::StructValue(s)) => from_struct(s),
    }
}

fn from_struct(s: &prost_types::Struct) -> Value {
    Value::Object(s.fields.iter().map(|(k, v)| (k.clone(), from_value(v))).collect())
}

fn node(id: &str, kind: &str, data: Value) -> Node {
    Node {
        id: id.into(),
        r#type: kind.into(),
        data: Some(to_struct(data)),
        position: Some(Position { x: 0.0, y: 0.0 }),
    }
}

fn edge(source: &str, target: &str) -> Edge {
    Edge { id: format!("{source}->{target}"), source: source.into(), target: target.into(), ..Default::default() }
}

fn branch(source: &str, handle: &str, target: &str) -> Edge {
    Edge { source_handle: handle.into(), ..edge(source, target) }
}

fn graph(nodes: Vec<Node>, edges: Vec<Edge>) -> Graph {
    Graph { nodes, edges, editor_state: Some(to_struct(json!({"zoom": 1}))) }
}

async fn create(client: &mut Client, token: &str, name: &str, g: Graph) -> anyhow::Result<Workflow> {
    let resp = client
        .create_workflow(authed(
            token,
            CreateWorkflowRequest { name: name.into(), graph: Some(g), ..Default::default() },
        ))
        .await?;
    Ok(resp.into_inner().workflow.unwrap())
}

async fn execute(client: &mut Client, token: &str, wf: &str, input: Value) -> anyhow::Result<Run> {
    let resp = client
        .execute_workflow(authed(
            token,
            ExecuteWorkflowRequest { workflow_id: wf.into(), input: Some(to_struct(input)), ..Default::default() },
        ))
        .await?;
    Ok(resp.into_inner().run.unwrap())
}

async fn get_run(client: &mut Client, token: &str, id: &str) -> anyhow::Result<GetRunResponse> {
    Ok(client.get_run(authed(token, GetRunRequest { run_id: id.into(), include_logs: true })).await?.into_inner())
}

/// Polls the run until `done` holds (or fails after `timeout`).
async fn wait_run(
    client: &mut Client,
    token: &str,
    id: &str,
    timeout: Duration,
    done: impl Fn(&Run) -> bool,
) -> anyhow::Result<Run> {
    let deadline = Instant::now() + timeout;
    loop {
        let run = get_run(client, token, id).await?.run.unwrap();
        if done(&run) {
            return Ok(run);
        }
        anyhow::ensure!(Instant::now() < deadline, "run did not reach the expected state in {timeout:?}: {run:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn is_final(run: &Run) -> bool {
    [RunStatus::Succeeded, RunStatus::Failed, RunStatus::Cancelled].contains(&run.status())
}

fn node_run<'a>(run: &'a Run, id: &str) -> &'a NodeRun {
    run.node_runs.iter().find(|n| n.node_id == id).unwrap_or_else(|| panic!("no node {id} in {run:#?}"))
}

/// Every WatchRun item of a run until the stream ends.
async fn watch_all(client: &mut Client, token: &str, id: &str, from: i64) -> anyhow::Result<Vec<WatchRunResponse>> {
    let mut stream =
        client.watch_run(authed(token, WatchRunRequest { run_id: id.into(), from_sequence: from })).await?.into_inner();
    let mut out = Vec::new();
    while let Some(item) = tokio::time::timeout(Duration::from_secs(120), stream.next()).await? {
        out.push(item?);
    }
    Ok(out)
}

/// The run's `run.*`/`node.*` events from JetStream, in stream order.
async fn run_events(
    tenant: &str,
    run_id: &str,
    until_type: &str,
) -> anyhow::Result<Vec<getlood_events::EventEnvelope>> {
    let nats = async_nats::connect(getlood_testkit::nats_url()).await?;
    let bus = EventBus::new(nats, "getlood");
    let tenant = TenantId::parse(tenant).map_err(|t| anyhow::anyhow!("bad tenant {t}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let read = bus.read(&tenant, Domain::Workflow, 0, 10_000, Duration::from_millis(300)).await.unwrap_or_default();
        let events: Vec<_> = read.into_iter().map(|e| e.envelope).filter(|e| e.entity_id == run_id).collect();
        if events.iter().any(|e| e.r#type == until_type) || Instant::now() > deadline {
            return Ok(events);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn error_detail(status: &tonic::Status) -> ErrorDetail {
    let bytes = status.metadata().get_bin("getlood-error-bin").expect("error detail trailer").to_bytes().unwrap();
    ErrorDetail::decode(bytes).unwrap()
}

fn mindsdb() -> MindsdbClient {
    MindsdbClient::new(&MindsdbConfig { url: getlood_testkit::mindsdb_url(), ..MindsdbConfig::default() }).unwrap()
}

/// A tenant whose registry holds the seed's two agents (on the test double) and an
/// `email_integration` database whose `send` table is a real Postgres table we read back.
struct MindsdbWorld {
    tenant: String,
    mail_schema: String,
    pg: sqlx::PgPool,
    /// The agent-registry the agents were made in; workflow services ask it with their
    /// callers' tokens ([`MindsdbWorld::registry_url`]).
    registry: Platform,
}

impl MindsdbWorld {
    async fn start(llm: &OpenAiDouble) -> anyhow::Result<Self> {
        let tenant = format!("wf_{}", unique());
        let ctx = TenantContext::new(TenantId::parse(&tenant).unwrap(), "test");
        let client = mindsdb();
        // The agents are the registry's, as users make them: nodes name them by their registry
        // names, and the registry keeps them in MindsDB as `agent_<id>`.
        let registry = Platform::builder().service(Service::AgentRegistry).start().await?;
        registry.wait_ready(Duration::from_secs(20)).await?;
        let token = registry.token(&tenant, "builder", &["builder"]);
        let mut agents = AgentRegistryServiceClient::new(registry.grpc_channel(Service::AgentRegistry));
        for (name, prompt) in
            [("data_analyzer", "You analyze sales data."), ("report_generator", "You write executive summaries.")]
        {
            let agent = Agent {
                name: name.to_owned(),
                model: Some(ModelConfig {
                    provider: "openai".into(),
                    model_name: "gpt-4o".into(),
                    base_url: Some(llm.base_url()),
                    api_key: "sk-test".into(),
                    has_api_key: false,
                }),
                prompt_template: prompt.to_owned(),
                ..Default::default()
            };
            agents
                .create_agent(authed(&token, CreateAgentRequest { agent: Some(agent), ..Default::default() }))
                .await?;
        }
        let pg = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
        let mail_schema = format!("mail_{}", unique());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {mail_schema}"))).execute(&pg).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {mail_schema}.send (recipient text, subject text, body text)"
        )))
        .execute(&pg)
        .await?;
        let url = getlood_testkit::postgres_url();
        let database = url.rsplit('/').next().unwrap_or("test").to_owned();
        DatabaseAdapter::new(client)
            .attach_postgres(
                &ctx,
                &PostgresSpec {
                    name: Ident::new("email_integration")?,
                    host: "127.0.0.1".into(),
                    port: 5432,
                    database,
                    user: "postgres".into(),
                    password: None,
                    schema: Some(mail_schema.clone()),
                },
            )
            .await?;
        Ok(Self { tenant, mail_schema, pg, registry })
    }

    async fn sent(&self) -> anyhow::Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT recipient, subject, body FROM {}.send ORDER BY body",
            self.mail_schema
        )))
        .fetch_all(&self.pg)
        .await?)
    }

    /// The gRPC URL of the world's agent-registry.
    fn registry_url(&self) -> String {
        format!("http://{}", self.registry.get(Service::AgentRegistry).grpc_addr)
    }

    /// A workflow service (as [`platform`]) whose agent-registry is the world's.
    async fn platform(&self) -> anyhow::Result<Platform> {
        platform_with(Some(self.registry_url())).await
    }

    async fn stop(self) -> anyhow::Result<()> {
        let ctx = TenantContext::new(TenantId::parse(&self.tenant).unwrap(), "test");
        let _ = DatabaseAdapter::new(mindsdb()).detach(&ctx, &Ident::new("email_integration")?).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.mail_schema)))
            .execute(&self.pg)
            .await?;
        self.registry.stop().await
    }
}

const ANALYSIS: &str = "ANALYSIS: March sales grew 12 percent";
const REPORT: &str = "REPORT: Q1 is up 12 percent, driven by March";

/// The seed's Example 2: [Start] → [Analyze data] → [Generate report] → [Send email] → [End].
fn example2(extra_delay: Option<f64>) -> Graph {
    let mut nodes = vec![
        node(
            "start",
            "start",
            json!({"input_schema": {"required": ["month", "recipient"], "properties": {"month": {"type": "string"}}}}),
        ),
        node(
            "analyze_data",
            "agent",
            json!({"agent": "data_analyzer", "prompt_template": "Analyze sales data from {{input.month}}"}),
        ),
        node(
            "generate_report",
            "agent",
            json!({"agent": "report_generator", "prompt_template": "Create an executive summary of: {{analyze_data.answer}}"}),
        ),
        node(
            "send_email",
            "integration_insert",
            json!({"integration": "email_integration", "table": "send",
                   "values": {"recipient": "{{input.recipient}}", "subject": "Monthly Report", "body": "{{generate_report.answer}}"}}),
        ),
        node(
            "end",
            "end",
            json!({"output": {"report": "{{generate_report.answer}}", "emailed_to": "{{send_email.values.recipient}}"}}),
        ),
    ];
    let mut edges =
        vec![edge("start", "analyze_data"), edge("generate_report", "send_email"), edge("send_email", "end")];
    match extra_delay {
        Some(s) => {
            nodes.push(node("wait", "delay", json!({"seconds": s})));
            edges.push(edge("analyze_data", "wait"));
            edges.push(edge("wait", "generate_report"));
        }
        None => edges.push(edge("analyze_data", "generate_report")),
    }
    graph(nodes, edges)
}

fn script_llm(llm: &OpenAiDouble) {
    llm.reply_when("Analyze sales data from", ANALYSIS);
    llm.reply_when("Create an executive summary of", REPORT);
}

fn llm_calls_with(llm: &OpenAiDouble, needle: &str) -> usize {
    llm.calls_to("/v1/chat/completions").iter().filter(|c| c.body.to_string().contains(needle)).count()
}

/// The planning prompt of MindsDB 26.1's agent, sent before it answers; the agent may send it more
/// than once for one question (seen after a restart), so it does not count questions.
const AGENT_PLANNING_PROMPT: &str = "create a plan for how to solve the question";

/// Questions MindsDB's agent answered whose prompt contains `needle`: its answering calls, one per
/// question, without the planning calls.
fn agent_answers_with(llm: &OpenAiDouble, needle: &str) -> usize {
    llm.calls_to("/v1/chat/completions")
        .iter()
        .map(|c| c.body.to_string())
        .filter(|b| b.contains(needle) && !b.contains(AGENT_PLANNING_PROMPT))
        .count()
}

async fn platform() -> anyhow::Result<Platform> {
    platform_with(None).await
}

/// The workflow service alone, asking the agent-registry at `registry` when given.
async fn platform_with(registry: Option<String>) -> anyhow::Result<Platform> {
    let mut builder = Platform::builder();
    if let Some(url) = registry {
        builder = builder.service_url(Service::AgentRegistry, url);
    }
    let platform = builder
        .service(Service::Workflow)
        // The runs' starter approves them here; the default refusal is tests/permissions.rs'.
        .app_settings(
            Service::Workflow,
            json!({"node_lease": "2s", "sweep_interval": "300ms", "approval_self_allowed": true}),
        )
        .start()
        .await?;
    platform.wait_ready(Duration::from_secs(20)).await?;
    Ok(platform)
}

#[tokio::test]
async fn workflow_seed_example2_end_to_end() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    script_llm(&llm);
    let world = MindsdbWorld::start(&llm).await?;
    let platform = world.platform().await?;
    let mut client = Client::new(platform.grpc_channel(Service::Workflow));
    let token = platform.token(&world.tenant, "alice", &["builder", "operator"]);

    let wf = create(&mut client, &token, "monthly report", example2(None)).await?;
    assert_eq!(wf.version, 1);
    // The start node's input schema is enforced.
    let err = execute(&mut client, &token, &wf.id, json!({"month": "March"})).await.unwrap_err();
    assert_eq!(err.downcast_ref::<tonic::Status>().unwrap().code(), Code::InvalidArgument);

    let started =
        execute(&mut client, &token, &wf.id, json!({"month": "March", "recipient": "exec@company.com"})).await?;
    assert!(matches!(started.status(), RunStatus::Pending | RunStatus::Running), "{started:?}");
    assert_eq!(started.workflow_version, 1);

    // WatchRun from the start: a snapshot, then every change in order until the run ends.
    let items = watch_all(&mut client, &token, &started.id, 1).await?;
    let snapshot = watch_all(&mut client, &token, &started.id, 0).await?;
    assert!(matches!(snapshot[0].event, Some(watch_run_response::Event::Snapshot(_))), "{snapshot:?}");
    assert_eq!(snapshot.len(), 1, "a finished run: only its snapshot");
    if items
        .iter()
        .any(|i| matches!(&i.event, Some(watch_run_response::Event::RunUpdated(r)) if r.status() == RunStatus::Failed))
    {
        panic!("run failed: {:#?}", get_run(&mut client, &token, &started.id).await?);
    }
    let seqs: Vec<i64> = items.iter().map(|i| i.sequence).filter(|s| *s > 0).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "gapless sequences: {seqs:?}");
    let completed: Vec<NodeRun> = items
        .iter()
        .filter_map(|i| match &i.event {
            Some(watch_run_response::Event::NodeUpdated(n)) if n.status() == NodeRunStatus::Succeeded => {
                Some(n.clone())
            }
            _ => None,
        })
        .collect();
    let order: Vec<&str> = completed.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(order, ["start", "analyze_data", "generate_report", "send_email", "end"]);
    for n in &completed[1..4] {
        assert!(n.duration_ms > 0, "{} took no time: {n:?}", n.node_id);
    }
    assert!(completed[1].output_summary.contains("March sales grew"), "{:?}", completed[1]);

    // The final result, the timeline and the persisted logs.
    let got = get_run(&mut client, &token, &started.id).await?;
    let run = got.run.unwrap();
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:#?}");
    let result = from_struct(run.result.as_ref().unwrap());
    assert_eq!(result["report"], json!(REPORT));
    assert_eq!(result["emailed_to"], json!("exec@company.com"));
    assert_eq!(run.node_runs.len(), 5);
    assert!(run.node_runs.iter().all(|n| n.status() == NodeRunStatus::Succeeded && n.attempt == 1));
    let analysis = from_struct(node_run(&run, "analyze_data").output.as_ref().unwrap());
    assert_eq!(analysis["answer"], json!(ANALYSIS));
    assert!(got.logs.iter().any(|l| l.message == "run completed"));
    assert_eq!(got.logs.iter().filter(|l| l.message == "node completed").count(), 5);

    // The email really went through MindsDB into the integration table.
    assert_eq!(
        world.sent().await?,
        vec![("exec@company.com".to_owned(), "Monthly Report".to_owned(), REPORT.to_owned())]
    );

    // Domain events on JetStream, in order, with durations.
    let events = run_events(&world.tenant, &started.id, "run.completed").await?;
    let types: Vec<&str> = events.iter().map(|e| e.r#type.as_str()).collect();
    let mut expected = vec!["run.started"];
    for _ in 0..5 {
        expected.extend(["node.started", "node.completed"]);
    }
    expected.push("run.completed");
    assert_eq!(types, expected);
    let durations: HashMap<String, i64> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::NodeCompleted(c)) => Some((c.node_id.clone(), c.duration_ms)),
            _ => None,
        })
        .collect();
    assert!(durations["analyze_data"] > 0 && durations["generate_report"] > 0, "{durations:?}");

    // Resuming the watch mid-way repeats nothing and loses nothing.
    let tail = watch_all(&mut client, &token, &started.id, 5).await?;
    assert_eq!(tail.first().map(|i| i.sequence), Some(5));
    assert_eq!(tail.last().map(|i| i.sequence), items.last().map(|i| i.sequence));
    let err = client
        .watch_run(authed(&token, WatchRunRequest { run_id: started.id.clone(), from_sequence: 10_000 }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);

    // Another tenant sees nothing of it.
    let other = platform.token(&format!("wf_{}", unique()), "mallory", &["admin"]);
    for code in [
        client
            .get_run(authed(&other, GetRunRequest { run_id: started.id.clone(), include_logs: true }))
            .await
            .unwrap_err()
            .code(),
        client
            .watch_run(authed(&other, WatchRunRequest { run_id: started.id.clone(), from_sequence: 0 }))
            .await
            .unwrap_err()
            .code(),
        client
            .get_workflow(authed(&other, GetWorkflowRequest { workflow_id: wf.id.clone(), version: 0 }))
            .await
            .unwrap_err()
            .code(),
        client
            .cancel_run(authed(&other, CancelRunRequest { run_id: started.id.clone(), reason: String::new() }))
            .await
            .unwrap_err()
            .code(),
    ] {
        assert_eq!(code, Code::NotFound);
    }
    let listed = client.list_runs(authed(&other, ListRunsRequest::default())).await?.into_inner();
    assert!(listed.runs.is_empty());

    platform.stop().await?;
    world.stop().await
}

#[tokio::test]
async fn workflow_invalid_graphs_versions_and_deletion() -> anyhow::Result<()> {
    let platform = platform().await?;
    let mut client = Client::new(platform.grpc_channel(Service::Workflow));
    let tenant = format!("wf_{}", unique());
    let token = platform.token(&tenant, "alice", &["builder", "operator"]);

    let bad = graph(
        vec![
            node("s1", "start", json!({})),
            node("s2", "start", json!({})),
            node("ask", "agent", json!({"agent": "Not A Name"})),
            node("q", "sql", json!({"query": "SELECT * FROM t WHERE a = :a; DROP TABLE t"})),
            node("x", "teleport", json!({})),
            node("loop_a", "transform", json!({"mapping": {"v": "{{loop_b.v}}"}})),
            node("loop_b", "transform", json!({"mapping": {"v": 1}})),
            node("late", "transform", json!({"mapping": {"v": "{{nowhere.v}}"}})),
        ],
        vec![
            edge("s1", "ask"),
            edge("ask", "q"),
            edge("loop_a", "loop_b"),
            edge("loop_b", "loop_a"),
            edge("q", "ghost"),
        ],
    );
    let err = client
        .create_workflow(authed(
            &token,
            CreateWorkflowRequest { name: "broken".into(), graph: Some(bad.clone()), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let detail = error_detail(&err);
    let has = |subject: &str, needle: &str| {
        assert!(
            detail.field_violations.iter().any(|v| v.subject == subject && v.description.contains(needle)),
            "no problem for {subject} containing '{needle}': {:#?}",
            detail.field_violations
        );
        assert!(err.message().contains(&format!("[{subject}]")) || subject.is_empty(), "{}", err.message());
    };
    has("s2", "second start");
    has("ask", "prompt_template");
    has("ask", "must name one of the tenant's agents");
    has("q", "one statement");
    has("x", "unknown node type");
    has("loop_a", "cycle");
    has("loop_b", "cycle");
    has("late", "not reachable");
    has("q->ghost", "unknown target");
    has("", "end node");
    // ValidateWorkflow reports the same problems without failing.
    let validated =
        client.validate_workflow(authed(&token, ValidateWorkflowRequest { graph: Some(bad) })).await?.into_inner();
    assert!(!validated.valid);
    assert_eq!(validated.problems.len(), detail.field_violations.len());

    // Versions are immutable; a run pins the version it started with.
    let v1 = graph(
        vec![
            node("s", "start", json!({})),
            node("t", "transform", json!({"mapping": {"v": 1}})),
            node("e", "end", json!({})),
        ],
        vec![edge("s", "t"), edge("t", "e")],
    );
    let wf = create(&mut client, &token, "versions", v1).await?;
    let dup = client
        .create_workflow(authed(
            &token,
            CreateWorkflowRequest { name: "versions".into(), graph: wf.graph.clone(), ..Default::default() },
        ))
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let run1 = execute(&mut client, &token, &wf.id, json!({})).await?;
    let v2 = graph(
        vec![
            node("s", "start", json!({})),
            node("t", "transform", json!({"mapping": {"v": 2}})),
            node("e", "end", json!({})),
        ],
        vec![edge("s", "t"), edge("t", "e")],
    );
    let updated = client
        .update_workflow(authed(
            &token,
            UpdateWorkflowRequest {
                workflow_id: wf.id.clone(),
                expected_version: 1,
                graph: Some(v2.clone()),
                version_comment: "v=2".into(),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .workflow
        .unwrap();
    assert_eq!(updated.version, 2);
    let stale = client
        .update_workflow(authed(
            &token,
            UpdateWorkflowRequest {
                workflow_id: wf.id.clone(),
                expected_version: 1,
                graph: Some(v2),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert_eq!(error_detail(&stale).current_version, 2);
    let run2 = execute(&mut client, &token, &wf.id, json!({})).await?;
    let r1 = wait_run(&mut client, &token, &run1.id, Duration::from_secs(20), is_final).await?;
    let r2 = wait_run(&mut client, &token, &run2.id, Duration::from_secs(20), is_final).await?;
    assert_eq!((r1.workflow_version, from_struct(r1.result.as_ref().unwrap())), (1, json!({"v": 1})));
    assert_eq!((r2.workflow_version, from_struct(r2.result.as_ref().unwrap())), (2, json!({"v": 2})));
    let old = client
        .get_workflow(authed(&token, GetWorkflowRequest { workflow_id: wf.id.clone(), version: 1 }))
        .await?
        .into_inner();
    assert_eq!(old.workflow.unwrap().version, 1);
    let versions = client
        .list_workflow_versions(authed(&token, ListWorkflowVersionsRequest { workflow_id: wf.id.clone(), page: None }))
        .await?
        .into_inner();
    assert_eq!(versions.versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(versions.versions[0].comment, "v=2");

    // Deleted: executing it is NOT_FOUND, its runs stay readable.
    client
        .delete_workflow(authed(&token, DeleteWorkflowRequest { workflow_id: wf.id.clone(), expected_version: 0 }))
        .await?;
    let err = execute(&mut client, &token, &wf.id, json!({})).await.unwrap_err();
    assert_eq!(err.downcast_ref::<tonic::Status>().unwrap().code(), Code::NotFound);
    assert_eq!(get_run(&mut client, &token, &run1.id).await?.run.unwrap().status(), RunStatus::Succeeded);
    let err = execute(&mut client, &token, "not-a-uuid", json!({})).await.unwrap_err();
    assert_eq!(err.downcast_ref::<tonic::Status>().unwrap().code(), Code::NotFound);

    platform.stop().await
}

#[tokio::test]
async fn workflow_cancel_and_schedule() -> anyhow::Result<()> {
    let platform = platform().await?;
    let mut client = Client::new(platform.grpc_channel(Service::Workflow));
    let tenant = format!("wf_{}", unique());
    let token = platform.token(&tenant, "alice", &["builder", "operator"]);
    let g = graph(
        vec![node("s", "start", json!({})), node("nap", "delay", json!({"seconds": 60})), node("e", "end", json!({}))],
        vec![edge("s", "nap"), edge("nap", "e")],
    );
    let wf = create(&mut client, &token, "slow", g).await?;
    let run = execute(&mut client, &token, &wf.id, json!({})).await?;
    wait_run(&mut client, &token, &run.id, Duration::from_secs(20), |r| {
        r.node_runs.iter().any(|n| n.node_id == "nap" && n.status() == NodeRunStatus::Running)
    })
    .await?;
    let cancelled = client
        .cancel_run(authed(&token, CancelRunRequest { run_id: run.id.clone(), reason: "changed my mind".into() }))
        .await?
        .into_inner()
        .run
        .unwrap();
    assert_eq!(cancelled.status(), RunStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason, "changed my mind");
    assert_eq!(node_run(&cancelled, "nap").status(), NodeRunStatus::Cancelled);
    assert_eq!(node_run(&cancelled, "e").status(), NodeRunStatus::Cancelled);
    let again = client
        .cancel_run(authed(&token, CancelRunRequest { run_id: run.id.clone(), reason: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    let events = run_events(&tenant, &run.id, "run.cancelled").await?;
    let last = events.last().unwrap();
    assert_eq!(last.r#type, "run.cancelled");
    assert_eq!(last.actor, "alice");
    // The interrupted node never completes afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = get_run(&mut client, &token, &run.id).await?.run.unwrap();
    assert_eq!(after.status(), RunStatus::Cancelled);

    // A run timeout fails the run with DEADLINE_EXCEEDED.
    let timed = client
        .execute_workflow(authed(
            &token,
            ExecuteWorkflowRequest {
                workflow_id: wf.id.clone(),
                timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .run
        .unwrap();
    let timed = wait_run(&mut client, &token, &timed.id, Duration::from_secs(20), is_final).await?;
    assert_eq!(timed.status(), RunStatus::Failed);
    assert_eq!(timed.error.unwrap().code, getlood_proto::common::v1::ErrorCode::DeadlineExceeded as i32);

    // Engine-mode schedule: fires from the service's scheduler, once per due time.
    let quick = graph(vec![node("s", "start", json!({})), node("e", "end", json!({}))], vec![edge("s", "e")]);
    let quick = create(&mut client, &token, "scheduled", quick).await?;
    let schedule = client
        .schedule_workflow(authed(
            &token,
            ScheduleWorkflowRequest {
                workflow_id: quick.id.clone(),
                schedule: Some(Schedule {
                    every_count: 1,
                    unit: ScheduleUnit::Hour as i32,
                    input: Some(to_struct(json!({"from": "cron"}))),
                    ..Default::default()
                }),
            },
        ))
        .await?
        .into_inner()
        .schedule
        .unwrap();
    assert!(schedule.next_run_at.is_some());
    let deadline = Instant::now() + Duration::from_secs(20);
    let runs = loop {
        let runs = client
            .list_runs(authed(&token, ListRunsRequest { workflow_id: quick.id.clone(), ..Default::default() }))
            .await?
            .into_inner()
            .runs;
        if runs.iter().any(is_final) || Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(runs.len(), 1, "fired once: {runs:#?}");
    assert_eq!(runs[0].trigger(), RunTrigger::Schedule);
    assert_eq!(from_struct(runs[0].input.as_ref().unwrap()), json!({"from": "cron"}));
    let got = client
        .get_workflow(authed(&token, GetWorkflowRequest { workflow_id: quick.id.clone(), version: 0 }))
        .await?
        .into_inner();
    assert!(got.workflow.unwrap().schedule.unwrap().next_run_at.unwrap().seconds > chrono_now() + 3000);
    client.unschedule_workflow(authed(&token, UnscheduleWorkflowRequest { workflow_id: quick.id.clone() })).await?;
    let err = client
        .unschedule_workflow(authed(&token, UnscheduleWorkflowRequest { workflow_id: quick.id.clone() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let bad = client
        .schedule_workflow(authed(
            &token,
            ScheduleWorkflowRequest {
                workflow_id: quick.id.clone(),
                schedule: Some(Schedule { every_count: 0, ..Default::default() }),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    platform.stop().await
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[tokio::test]
async fn workflow_human_approval_and_branches() -> anyhow::Result<()> {
    let platform = platform().await?;
    let mut client = Client::new(platform.grpc_channel(Service::Workflow));
    let tenant = format!("wf_{}", unique());
    let token = platform.token(&tenant, "alice", &["builder", "operator"]);
    let with_rejected = graph(
        vec![
            node("s", "start", json!({})),
            node("check", "condition", json!({"expression": "{{input.amount}} > 100"})),
            node("approve", "human_approval", json!({"message": "Approve a payment of {{input.amount}}?"})),
            node("pay", "transform", json!({"mapping": {"paid": "{{input.amount}}", "by": "{{approve.decided_by}}"}})),
            node("auto", "transform", json!({"mapping": {"paid": "{{input.amount}}", "by": "auto"}})),
            node("done", "end", json!({})),
            node("refused", "end", json!({"output": {"paid": 0, "comment": "{{approve.comment}}"}})),
        ],
        vec![
            edge("s", "check"),
            branch("check", "true", "approve"),
            branch("check", "false", "auto"),
            branch("approve", "approved", "pay"),
            branch("approve", "rejected", "refused"),
            edge("pay", "done"),
            edge("auto", "done"),
        ],
    );
    let wf = create(&mut client, &token, "payments", with_rejected).await?;

    // Small amounts take the other branch: the approval node is skipped.
    let small = execute(&mut client, &token, &wf.id, json!({"amount": 20})).await?;
    let small = wait_run(&mut client, &token, &small.id, Duration::from_secs(20), is_final).await?;
    assert_eq!(from_struct(small.result.as_ref().unwrap()), json!({"paid": 20, "by": "auto"}));
    assert_eq!(node_run(&small, "approve").status(), NodeRunStatus::Skipped);
    // Approving a run that is not waiting is FAILED_PRECONDITION.
    let err = client
        .approve_node(authed(
            &token,
            ApproveNodeRequest {
                run_id: small.id.clone(),
                node_id: "approve".into(),
                approved: true,
                comment: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // Approve.
    let big = execute(&mut client, &token, &wf.id, json!({"amount": 500})).await?;
    let waiting =
        wait_run(&mut client, &token, &big.id, Duration::from_secs(20), |r| r.status() == RunStatus::WaitingApproval)
            .await?;
    assert_eq!(node_run(&waiting, "approve").status(), NodeRunStatus::WaitingApproval);
    let events = run_events(&tenant, &big.id, "run.waiting_approval").await?;
    let msg = events.iter().find_map(|e| match &e.payload {
        Some(Payload::RunWaitingApproval(w)) => Some(w.message.clone()),
        _ => None,
    });
    assert_eq!(msg.as_deref(), Some("Approve a payment of 500?"));
    let err = client
        .approve_node(authed(
            &token,
            ApproveNodeRequest {
                run_id: big.id.clone(),
                node_id: "pay".into(),
                approved: true,
                comment: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    client
        .approve_node(authed(
            &token,
            ApproveNodeRequest {
                run_id: big.id.clone(),
                node_id: "approve".into(),
                approved: true,
                comment: "ok".into(),
            },
        ))
        .await?;
    let big = wait_run(&mut client, &token, &big.id, Duration::from_secs(20), is_final).await?;
    assert_eq!(from_struct(big.result.as_ref().unwrap()), json!({"paid": 500, "by": "alice"}));
    assert_eq!(node_run(&big, "approve").decided_by, "alice");

    // Reject: follows the "rejected" handle.
    let run = execute(&mut client, &token, &wf.id, json!({"amount": 900})).await?;
    wait_run(&mut client, &token, &run.id, Duration::from_secs(20), |r| r.status() == RunStatus::WaitingApproval)
        .await?;
    client
        .approve_node(authed(
            &token,
            ApproveNodeRequest {
                run_id: run.id.clone(),
                node_id: "approve".into(),
                approved: false,
                comment: "too much".into(),
            },
        ))
        .await?;
    let run = wait_run(&mut client, &token, &run.id, Duration::from_secs(20), is_final).await?;
    assert_eq!(run.status(), RunStatus::Succeeded);
    assert_eq!(from_struct(run.result.as_ref().unwrap()), json!({"paid": 0, "comment": "too much"}));
    assert_eq!(node_run(&run, "pay").status(), NodeRunStatus::Skipped);

    // Reject without a "rejected" edge: the run fails.
    let strict = graph(
        vec![node("s", "start", json!({})), node("ok", "human_approval", json!({})), node("e", "end", json!({}))],
        vec![edge("s", "ok"), branch("ok", "approved", "e")],
    );
    let strict = create(&mut client, &token, "strict", strict).await?;
    let run = execute(&mut client, &token, &strict.id, json!({})).await?;
    wait_run(&mut client, &token, &run.id, Duration::from_secs(20), |r| r.status() == RunStatus::WaitingApproval)
        .await?;
    let rejected = client
        .approve_node(authed(
            &token,
            ApproveNodeRequest { run_id: run.id.clone(), node_id: "ok".into(), approved: false, comment: "no".into() },
        ))
        .await?
        .into_inner()
        .run
        .unwrap();
    assert_eq!(rejected.status(), RunStatus::Failed);
    assert_eq!(node_run(&rejected, "ok").status(), NodeRunStatus::Failed);

    platform.stop().await
}

#[tokio::test]
async fn workflow_retries_transient_failures_with_backoff() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    script_llm(&llm);
    let world = MindsdbWorld::start(&llm).await?;
    let platform = world.platform().await?;
    let mut client = Client::new(platform.grpc_channel(Service::Workflow));
    let token = platform.token(&world.tenant, "alice", &["builder", "operator"]);
    let g = graph(
        vec![
            node("s", "start", json!({})),
            node(
                "analyze_data",
                "agent",
                json!({"agent": "data_analyzer", "prompt_template": "Analyze sales data from {{input.month}}", "retry": {"max_attempts": 4, "initial_backoff_ms": 300}}),
            ),
            node(
                "broken_sql",
                "sql",
                json!({"query": "SELECT * FROM files.no_such_table_at_all WHERE a = :a", "params": {"a": "{{input.month}}"}}),
            ),
            node("e", "end", json!({})),
        ],
        vec![edge("s", "analyze_data"), edge("analyze_data", "broken_sql"), edge("broken_sql", "e")],
    );
    let wf = create(&mut client, &token, "flaky", g).await?;
    // The LLM is down for the first attempts: transient, retried with backoff.
    llm.set_failing(Some(503));
    let run = execute(&mut client, &token, &wf.id, json!({"month": "April"})).await?;
    wait_run(&mut client, &token, &run.id, Duration::from_secs(60), |r| {
        r.node_runs.iter().any(|n| n.node_id == "analyze_data" && n.attempt >= 2)
    })
    .await?;
    llm.set_failing(None);
    let run = wait_run(&mut client, &token, &run.id, Duration::from_secs(90), is_final).await?;
    let analyze = node_run(&run, "analyze_data");
    assert_eq!(analyze.status(), NodeRunStatus::Succeeded, "{run:#?}");
    assert!(analyze.attempt >= 2);
    // A missing table is not transient: one attempt, and the run fails naming the node.
    assert_eq!(run.status(), RunStatus::Failed);
    let sql = node_run(&run, "broken_sql");
    assert_eq!((sql.status(), sql.attempt), (NodeRunStatus::Failed, 1));
    let events = run_events(&world.tenant, &run.id, "run.failed").await?;
    let failures: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::NodeFailed(f)) => Some(f.clone()),
            _ => None,
        })
        .collect();
    assert!(
        failures
            .iter()
            .any(|f| f.node_id == "analyze_data" && f.will_retry && f.next_retry_at.is_some() && f.attempt == 1)
    );
    assert!(failures.iter().any(|f| f.node_id == "broken_sql" && !f.will_retry));
    let Some(Payload::RunFailed(failed)) = &events.last().unwrap().payload else {
        panic!("last event is not run.failed")
    };
    assert_eq!(failed.failed_node_id, "broken_sql");

    platform.stop().await?;
    world.stop().await
}

/// A workflow binary started as its own process, so the test can SIGKILL it.
struct Binary {
    child: tokio::process::Child,
    grpc: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Binary {
    fn start(schema: &str, registry_url: &str) -> anyhow::Result<Self> {
        let (http, grpc) = (free_port(), free_port());
        let child = tokio::process::Command::from(getlood_testkit::service_command("workflow")?)
            .env("GETLOOD_WORKFLOW_HTTP_ADDR", format!("127.0.0.1:{http}"))
            .env("GETLOOD_WORKFLOW_GRPC_ADDR", format!("127.0.0.1:{grpc}"))
            .env("GETLOOD_WORKFLOW_ADMIN_ADDR", "127.0.0.1:0")
            .env("GETLOOD_WORKFLOW_POSTGRES__URL", getlood_testkit::postgres_url())
            .env("GETLOOD_WORKFLOW_POSTGRES__SCHEMA", schema)
            .env("GETLOOD_WORKFLOW_POSTGRES__MAX_CONNECTIONS", "4")
            .env("GETLOOD_WORKFLOW_NATS__URL", getlood_testkit::nats_url())
            .env("GETLOOD_WORKFLOW_MINDSDB__URL", getlood_testkit::mindsdb_url())
            .env("GETLOOD_WORKFLOW_SERVICES__AGENT_REGISTRY", registry_url)
            .env("GETLOOD_WORKFLOW_AUTH__HS256_SECRET", getlood_testkit::TEST_SECRET)
            .env("GETLOOD_WORKFLOW_APP__NODE_LEASE", "2s")
            .env("GETLOOD_WORKFLOW_APP__SWEEP_INTERVAL", "300ms")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child, grpc: format!("http://127.0.0.1:{grpc}") })
    }

    async fn client(&self) -> anyhow::Result<Client> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(channel) = Channel::from_shared(self.grpc.clone())?.connect().await {
                let serving = serving(channel.clone());
                if serving.await.is_ok() {
                    return Ok(Client::new(channel));
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "workflow binary did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn sigkill(&mut self) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
}

/// Resolves once the server answers a gRPC call (health or the API itself).
async fn serving(channel: Channel) -> anyhow::Result<()> {
    let mut client = Client::new(channel);
    // Unauthenticated: any status other than UNAVAILABLE proves the server is serving.
    match client.validate_workflow(ValidateWorkflowRequest::default()).await {
        Err(s) if s.code() == Code::Unavailable => anyhow::bail!("not up"),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn workflow_sigkill_mid_run_resumes_without_repeating_nodes() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    script_llm(&llm);
    let world = MindsdbWorld::start(&llm).await?;
    let schema = format!("workflow_crash_{}", unique());
    let token = getlood_auth::dev_token(
        getlood_testkit::TEST_SECRET,
        "getlood",
        "getlood",
        &world.tenant,
        "alice",
        &["builder", "operator"],
        3600,
    )?;

    let mut first = Binary::start(&schema, &world.registry_url())?;
    let mut client = first.client().await?;
    let wf = create(&mut client, &token, "crash me", example2(Some(4.0))).await?;
    let run = execute(&mut client, &token, &wf.id, json!({"month": "May", "recipient": "ceo@company.com"})).await?;
    // Kill it while the delay node runs: analyze_data is done, generate_report not started.
    let mid = wait_run(&mut client, &token, &run.id, Duration::from_secs(60), |r| {
        r.node_runs.iter().any(|n| n.node_id == "wait" && n.status() == NodeRunStatus::Running)
    })
    .await?;
    assert_eq!(node_run(&mid, "analyze_data").status(), NodeRunStatus::Succeeded);
    first.sigkill();
    first.child.wait().await?;
    let analyze_calls = llm_calls_with(&llm, "Analyze sales data from May");
    assert!(analyze_calls > 0);
    assert_eq!(llm_calls_with(&llm, "Create an executive summary of"), 0);

    // Restart on the same schema: the run finishes, nothing completed runs again.
    let second = Binary::start(&schema, &world.registry_url())?;
    let mut client = second.client().await?;
    let done = wait_run(&mut client, &token, &run.id, Duration::from_secs(90), is_final).await?;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:#?}");
    assert_eq!(from_struct(done.result.as_ref().unwrap())["report"], json!(REPORT));
    assert_eq!(llm_calls_with(&llm, "Analyze sales data from May"), analyze_calls, "analyze_data ran again");
    // generate_report ran exactly once: MindsDB's agent answered one question for it (how many
    // planning calls the agent makes first is MindsDB's business).
    assert_eq!(agent_answers_with(&llm, "Analyze sales data from May"), 1, "analyze_data answered twice");
    assert_eq!(agent_answers_with(&llm, "Create an executive summary of"), 1, "generate_report answered twice");
    assert!(done.node_runs.iter().all(|n| n.attempt == 1), "{done:#?}");
    assert_eq!(world.sent().await?.len(), 1, "exactly one email");
    let events = run_events(&world.tenant, &run.id, "run.completed").await?;
    let completions: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::NodeCompleted(c)) => Some(c.node_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(completions, ["start", "analyze_data", "wait", "generate_report", "send_email", "end"]);
    // The delay node holds no worker while it waits (its lease is its wake-up time), so the
    // restart had nothing to resume: it completed once, on its first attempt (checked above).
    let wait = node_run(&done, "wait");
    assert_eq!((wait.status(), wait.attempt), (NodeRunStatus::Succeeded, 1), "{wait:?}");

    drop(second);
    let pg = sqlx::PgPool::connect(&getlood_testkit::postgres_url()).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))).execute(&pg).await?;
    world.stop().await
}

#[tokio::test]
async fn workflow_mindsdb_job_mode_runs_in_mindsdb() -> anyhow::Result<()> {
    let llm = OpenAiDouble::start().await?;
    let world = MindsdbWorld::start(&llm).await?;
    let platform = world.platform().await?;
    let mut client = Client::new(platform.grpc_channel(Service::Workflow));
    let token = platform.token(&world.tenant, "alice", &["builder", "operator"]);
    let g = graph(
        vec![
            node("s", "start", json!({})),
            node("probe", "sql", json!({"query": "SELECT 1 AS one", "params": {}})),
            node(
                "notify",
                "integration_insert",
                json!({"integration": "email_integration", "table": "send",
                       "values": {"recipient": "{{input.to}}", "subject": "job mode", "body": "it's sent from a MindsDB JOB"}}),
            ),
            node("e", "end", json!({})),
        ],
        vec![edge("s", "probe"), edge("probe", "notify"), edge("notify", "e")],
    );
    let wf = create(&mut client, &token, "in mindsdb", g).await?;
    // No job yet: no history.
    let err = client
        .get_job_history(authed(&token, GetJobHistoryRequest { workflow_id: wf.id.clone(), page: None }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let run = client
        .execute_workflow(authed(
            &token,
            ExecuteWorkflowRequest {
                workflow_id: wf.id.clone(),
                mode: ExecutionMode::MindsdbJob as i32,
                input: Some(to_struct(json!({"to": "ops@company.com"}))),
                ..Default::default()
            },
        ))
        .await?
        .into_inner()
        .run
        .unwrap();
    assert_eq!(run.mode(), ExecutionMode::MindsdbJob);
    assert!(run.job_name.starts_with("wf_"), "{run:?}");
    let done = wait_run(&mut client, &token, &run.id, Duration::from_secs(90), is_final).await?;
    assert_eq!(done.status(), RunStatus::Succeeded, "{done:#?}");
    assert_eq!(
        world.sent().await?,
        vec![("ops@company.com".to_owned(), "job mode".to_owned(), "it's sent from a MindsDB JOB".to_owned())]
    );
    let history = client
        .get_job_history(authed(&token, GetJobHistoryRequest { workflow_id: wf.id.clone(), page: None }))
        .await?
        .into_inner();
    let entry = history.entries.iter().find(|e| e.job_name == run.job_name).expect("history row of the job");
    assert_eq!(entry.run_id, run.id);
    assert!(entry.run_end.is_some() && entry.error.is_empty(), "{entry:?}");
    // The job's SQL is an internal: an admin sees it, a builder or operator does not.
    assert!(entry.query.is_empty(), "{entry:?}");
    let admin = platform.token(&world.tenant, "root", &["admin"]);
    let history = client
        .get_job_history(authed(&admin, GetJobHistoryRequest { workflow_id: wf.id.clone(), page: None }))
        .await?
        .into_inner();
    let entry = history.entries.iter().find(|e| e.job_name == run.job_name).expect("history row of the job");
    assert!(entry.query.contains("INSERT INTO"), "{entry:?}");

    // Node types MindsDB cannot run are refused for job mode.
    let engine_only = graph(
        vec![
            node("s", "start", json!({})),
            node("t", "transform", json!({"mapping": {}})),
            node("e", "end", json!({})),
        ],
        vec![edge("s", "t"), edge("t", "e")],
    );
    let engine_only = create(&mut client, &token, "engine only", engine_only).await?;
    let err = client
        .execute_workflow(authed(
            &token,
            ExecuteWorkflowRequest {
                workflow_id: engine_only.id.clone(),
                mode: ExecutionMode::MindsdbJob as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    platform.stop().await?;
    world.stop().await
}
