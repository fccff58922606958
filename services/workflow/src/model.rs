//! Workflow graphs: the React Flow document as stored, the typed node configurations the engine
//! runs, validation (every problem, by node or edge id), `{{node.field}}` templates and the
//! condition expressions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use getlood_mindsdb::Ident;
use getlood_proto::common::v1::FieldViolation;
use getlood_proto::workflow::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::convert::{json_to_struct, opt_struct_to_json};
use crate::sqlnode::SqlTemplate;

/// The node types the engine knows.
pub(crate) const NODE_TYPES: &[&str] = &[
    "start",
    "end",
    "agent",
    "sql",
    "kb_search",
    "condition",
    "transform",
    "integration_insert",
    "human_approval",
    "delay",
];

/// Node types a MindsDB JOB can run.
pub(crate) const JOB_NODE_TYPES: &[&str] = &["start", "end", "sql", "agent", "integration_insert"];

/// A node as the editor saved it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct NodeDoc {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub position: (f64, f64),
}

/// An edge as the editor saved it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct EdgeDoc {
    pub id: String,
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub source_handle: String,
    #[serde(default)]
    pub target_handle: String,
}

/// The stored graph (JSON in `workflow_versions.graph`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub(crate) struct GraphDoc {
    pub nodes: Vec<NodeDoc>,
    pub edges: Vec<EdgeDoc>,
    #[serde(default)]
    pub editor_state: Value,
}

impl GraphDoc {
    /// From the protobuf graph.
    pub(crate) fn from_proto(g: &pb::Graph) -> Self {
        Self {
            nodes: g
                .nodes
                .iter()
                .map(|n| NodeDoc {
                    id: n.id.clone(),
                    kind: n.r#type.clone(),
                    data: opt_struct_to_json(n.data.as_ref()),
                    position: n.position.map(|p| (p.x, p.y)).unwrap_or_default(),
                })
                .collect(),
            edges: g
                .edges
                .iter()
                .map(|e| EdgeDoc {
                    id: e.id.clone(),
                    source: e.source.clone(),
                    target: e.target.clone(),
                    source_handle: e.source_handle.clone(),
                    target_handle: e.target_handle.clone(),
                })
                .collect(),
            editor_state: opt_struct_to_json(g.editor_state.as_ref()),
        }
    }

    /// To the protobuf graph.
    pub(crate) fn to_proto(&self) -> pb::Graph {
        pb::Graph {
            nodes: self
                .nodes
                .iter()
                .map(|n| pb::Node {
                    id: n.id.clone(),
                    r#type: n.kind.clone(),
                    data: Some(json_to_struct(n.data.clone())),
                    position: Some(pb::Position { x: n.position.0, y: n.position.1 }),
                })
                .collect(),
            edges: self
                .edges
                .iter()
                .map(|e| pb::Edge {
                    id: e.id.clone(),
                    source: e.source.clone(),
                    target: e.target.clone(),
                    source_handle: e.source_handle.clone(),
                    target_handle: e.target_handle.clone(),
                })
                .collect(),
            editor_state: Some(json_to_struct(self.editor_state.clone())),
        }
    }
}

/// Retry policy of a node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`: doubling from the initial backoff, capped at 30 s,
    /// with "equal jitter" (half fixed, half random) so retries of many runs do not align.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let base = self.initial_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = base.min(Duration::from_secs(30));
        let half = capped / 2;
        // uuid v4 is the only randomness source already in the tree; 64 random bits suffice.
        let r = (uuid::Uuid::new_v4().as_u128() as u64) as f64 / u64::MAX as f64;
        half + half.mul_f64(r)
    }
}

/// A node's typed configuration.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Start,
    End { output: Option<Value> },
    Agent { agent: Ident, prompt: String },
    Sql { query: SqlTemplate, params: Map<String, Value> },
    KbSearch { kb: Ident, query: String, top_k: u32 },
    Condition { expr: Expr },
    Transform { mapping: Map<String, Value> },
    IntegrationInsert { integration: Ident, table: Ident, values: Vec<(Ident, Value)> },
    HumanApproval { message: String },
    Delay { duration: Duration },
}

impl NodeKind {
    /// Nodes that finish in microseconds without I/O: the engine runs them inline, in the same
    /// transaction that made them ready, instead of a round trip through the work queue.
    pub(crate) fn is_instant(&self) -> bool {
        matches!(self, Self::Start | Self::End { .. } | Self::Condition { .. } | Self::Transform { .. })
    }

    /// The handles of a branching node's outgoing edges.
    pub(crate) fn branches(&self) -> Option<&'static [&'static str]> {
        match self {
            Self::Condition { .. } => Some(&["true", "false"]),
            Self::HumanApproval { .. } => Some(&["approved", "rejected"]),
            _ => None,
        }
    }

    /// The templates of the node, for reference checks.
    fn templates(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        match self {
            Self::End { output: Some(v) } => collect_strings(v, &mut out),
            Self::Sql { params, .. } => params.values().for_each(|v| collect_strings(v, &mut out)),
            Self::Transform { mapping } => mapping.values().for_each(|v| collect_strings(v, &mut out)),
            Self::IntegrationInsert { values, .. } => values.iter().for_each(|(_, v)| collect_strings(v, &mut out)),
            _ => {}
        }
        match self {
            Self::Agent { prompt, .. } => out.push(prompt.as_str()),
            Self::KbSearch { query, .. } => out.push(query.as_str()),
            Self::HumanApproval { message } => out.push(message.as_str()),
            _ => {}
        }
        out
    }
}

fn collect_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| collect_strings(x, out)),
        _ => {}
    }
}

/// A node ready to run: its id, type name and configuration.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    pub id: String,
    pub kind_name: String,
    pub kind: NodeKind,
    pub retry: RetryPolicy,
    pub timeout: Duration,
}

/// A validated graph with its adjacency, as the engine runs it.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    pub doc: GraphDoc,
    pub nodes: Vec<NodeSpec>,
    index: HashMap<String, usize>,
    /// Edge indexes leaving each node.
    pub out_edges: Vec<Vec<usize>>,
    /// Edge indexes entering each node.
    pub in_edges: Vec<Vec<usize>>,
}

impl Graph {
    /// Validates `doc`; on success the runnable graph, otherwise every problem found.
    pub(crate) fn build(doc: GraphDoc) -> Result<Self, Vec<FieldViolation>> {
        let mut problems = Problems::default();
        let mut index = HashMap::new();
        let mut specs: Vec<Option<NodeSpec>> = Vec::new();
        for (i, n) in doc.nodes.iter().enumerate() {
            let field = format!("graph.nodes[{i}]");
            if n.id.is_empty() || n.id.len() > 128 || n.id.contains(['{', '}', '.', ' ']) {
                problems.add(
                    &format!("{field}.id"),
                    &n.id,
                    "node id must be 1-128 characters without '{', '}', '.' or spaces",
                );
            } else if index.insert(n.id.clone(), i).is_some() {
                problems.add(&format!("{field}.id"), &n.id, "duplicate node id");
            }
            specs.push(parse_node(n, &field, &mut problems));
        }
        let mut out_edges = vec![Vec::new(); doc.nodes.len()];
        let mut in_edges = vec![Vec::new(); doc.nodes.len()];
        let mut edge_ids = HashSet::new();
        for (i, e) in doc.edges.iter().enumerate() {
            let field = format!("graph.edges[{i}]");
            if e.id.is_empty() {
                problems.add(&format!("{field}.id"), "", "edge id is required");
            } else if !edge_ids.insert(e.id.clone()) {
                problems.add(&format!("{field}.id"), &e.id, "duplicate edge id");
            }
            let (s, t) = (index.get(&e.source).copied(), index.get(&e.target).copied());
            if s.is_none() {
                problems.add(&format!("{field}.source"), &e.id, &format!("unknown source node '{}'", short(&e.source)));
            }
            if t.is_none() {
                problems.add(&format!("{field}.target"), &e.id, &format!("unknown target node '{}'", short(&e.target)));
            }
            let (Some(s), Some(t)) = (s, t) else { continue };
            if s == t {
                problems.add(&field, &e.id, "an edge cannot connect a node to itself");
                continue;
            }
            if let Some(Some(src)) = specs.get(s)
                && let Some(handles) = src.kind.branches()
                && !handles.contains(&e.source_handle.as_str())
            {
                problems.add(
                    &format!("{field}.source_handle"),
                    &e.id,
                    &format!(
                        "edges leaving {} node '{}' need source_handle {}",
                        src.kind_name,
                        src.id,
                        handles.join(" or ")
                    ),
                );
            }
            out_edges[s].push(i);
            in_edges[t].push(i);
        }

        // Start, end and their edges.
        let starts: Vec<usize> =
            doc.nodes.iter().enumerate().filter(|(_, n)| n.kind == "start").map(|(i, _)| i).collect();
        match starts.len() {
            0 => problems.add("graph.nodes", "", "the graph needs exactly one start node, it has none"),
            1 => {}
            _ => {
                for &i in &starts[1..] {
                    problems.add(
                        &format!("graph.nodes[{i}].type"),
                        &doc.nodes[i].id,
                        "a second start node (exactly one is allowed)",
                    );
                }
            }
        }
        if !doc.nodes.iter().any(|n| n.kind == "end") {
            problems.add("graph.nodes", "", "the graph needs an end node, it has none");
        }
        for (i, n) in doc.nodes.iter().enumerate() {
            if n.kind == "start" && !in_edges[i].is_empty() {
                problems.add(&format!("graph.nodes[{i}]"), &n.id, "the start node cannot have incoming edges");
            }
            if n.kind == "end" && !out_edges[i].is_empty() {
                problems.add(&format!("graph.nodes[{i}]"), &n.id, "an end node cannot have outgoing edges");
            }
            if n.kind != "end" && n.kind != "start" && out_edges[i].is_empty() && NODE_TYPES.contains(&n.kind.as_str())
            {
                problems.add(
                    &format!("graph.nodes[{i}]"),
                    &n.id,
                    "node has no outgoing edge, so no end node is reachable from it",
                );
            }
        }

        // Cycles: Kahn's algorithm; whatever is left over sits on a cycle.
        let targets = |i: usize| out_edges[i].iter().map(|&e| index[&doc.edges[e].target]).collect::<Vec<_>>();
        let mut indegree: Vec<usize> = in_edges.iter().map(Vec::len).collect();
        let mut queue: VecDeque<usize> = (0..doc.nodes.len()).filter(|&i| indegree[i] == 0).collect();
        let mut topo = Vec::new();
        while let Some(i) = queue.pop_front() {
            topo.push(i);
            for t in targets(i) {
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    queue.push_back(t);
                }
            }
        }
        let acyclic = topo.len() == doc.nodes.len();
        if !acyclic {
            for (i, n) in doc.nodes.iter().enumerate() {
                if indegree[i] > 0 && !topo.contains(&i) {
                    problems.add(
                        &format!("graph.nodes[{i}]"),
                        &n.id,
                        "node is on a cycle (or only reachable through one)",
                    );
                }
            }
        }

        // Reachability from the start, and an end reachable from the start.
        // With several start nodes the first one stands in, so reachability is still reported.
        if let Some(start) = starts.first() {
            let mut seen = vec![false; doc.nodes.len()];
            let mut stack = vec![*start];
            while let Some(i) = stack.pop() {
                if std::mem::replace(&mut seen[i], true) {
                    continue;
                }
                stack.extend(targets(i));
            }
            for (i, n) in doc.nodes.iter().enumerate() {
                if !seen[i] {
                    problems.add(&format!("graph.nodes[{i}]"), &n.id, "node is not reachable from the start node");
                }
            }
            if !doc.nodes.iter().enumerate().any(|(i, n)| seen[i] && n.kind == "end")
                && doc.nodes.iter().any(|n| n.kind == "end")
            {
                problems.add("graph.nodes", &doc.nodes[*start].id, "no end node is reachable from the start node");
            }
        }

        // Template references: `input` or a node that always runs before this one.
        if acyclic && problems.0.is_empty() {
            let mut ancestors: Vec<HashSet<usize>> = vec![HashSet::new(); doc.nodes.len()];
            for &i in &topo {
                for t in targets(i) {
                    let mut a = ancestors[i].clone();
                    a.insert(i);
                    ancestors[t].extend(a);
                }
            }
            for (i, spec) in specs.iter().enumerate() {
                let Some(spec) = spec else { continue };
                for template in spec.kind.templates() {
                    for reference in references(template) {
                        let head = reference.split('.').next().unwrap_or_default();
                        if head == "input" {
                            continue;
                        }
                        match index.get(head) {
                            Some(j) if ancestors[i].contains(j) => {}
                            Some(_) => problems.add(
                                &format!("graph.nodes[{i}].data"),
                                &spec.id,
                                &format!(
                                    "template {{{{{}}}}} refers to node '{head}', which does not run before this node",
                                    short(&reference)
                                ),
                            ),
                            None => problems.add(
                                &format!("graph.nodes[{i}].data"),
                                &spec.id,
                                &format!(
                                    "template {{{{{}}}}} refers to unknown node '{}'",
                                    short(&reference),
                                    short(head)
                                ),
                            ),
                        }
                    }
                }
            }
        }

        if !problems.0.is_empty() {
            return Err(problems.0);
        }
        let nodes = specs.into_iter().flatten().collect::<Vec<_>>();
        Ok(Self { doc, nodes, index, out_edges, in_edges })
    }

    /// Index of node `id`.
    pub(crate) fn idx(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// The start node.
    pub(crate) fn start(&self) -> &NodeSpec {
        // Validation guarantees exactly one.
        self.nodes.iter().find(|n| matches!(n.kind, NodeKind::Start)).unwrap_or(&self.nodes[0])
    }

    /// Source node index of edge `e`.
    pub(crate) fn source(&self, e: usize) -> usize {
        self.index[&self.doc.edges[e].source]
    }

    /// Target node index of edge `e`.
    pub(crate) fn target(&self, e: usize) -> usize {
        self.index[&self.doc.edges[e].target]
    }

    /// Node indexes in an order where every node comes after its predecessors.
    pub(crate) fn topological(&self) -> Vec<usize> {
        let mut indegree: Vec<usize> = self.in_edges.iter().map(Vec::len).collect();
        let mut queue: VecDeque<usize> = (0..self.nodes.len()).filter(|&i| indegree[i] == 0).collect();
        let mut out = Vec::new();
        while let Some(i) = queue.pop_front() {
            out.push(i);
            for &e in &self.out_edges[i] {
                let t = self.target(e);
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    queue.push_back(t);
                }
            }
        }
        out
    }
}

/// Validates a graph and returns only the problems (empty when valid).
pub(crate) fn validate(doc: &GraphDoc) -> Vec<FieldViolation> {
    Graph::build(doc.clone()).err().unwrap_or_default()
}

#[derive(Default)]
struct Problems(Vec<FieldViolation>);

impl Problems {
    fn add(&mut self, field: &str, subject: &str, description: &str) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            subject: short(subject),
            description: description.to_owned(),
        });
    }
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_node(n: &NodeDoc, field: &str, p: &mut Problems) -> Option<NodeSpec> {
    let id = n.id.as_str();
    if !NODE_TYPES.contains(&n.kind.as_str()) {
        p.add(
            &format!("{field}.type"),
            id,
            &format!("unknown node type '{}' (known: {})", short(&n.kind), NODE_TYPES.join(", ")),
        );
        return None;
    }
    let empty = Map::new();
    let data = match &n.data {
        Value::Object(o) => o,
        Value::Null => &empty,
        _ => {
            p.add(&format!("{field}.data"), id, "node data must be an object");
            return None;
        }
    };
    let before = p.0.len();
    let f = |k: &str| format!("{field}.data.{k}");
    let text = |k: &str, p: &mut Problems| -> Option<String> {
        match data.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            _ => {
                p.add(&f(k), id, &format!("'{k}' is required and must be a non-empty string"));
                None
            }
        }
    };
    let name = |k: &str, p: &mut Problems| -> Option<Ident> {
        let s = text(k, p)?;
        match Ident::new(&s) {
            Ok(i) => Some(i),
            Err(_) => {
                p.add(&f(k), id, &format!("'{k}' must be a lower-case name matching [a-z_][a-z0-9_]*"));
                None
            }
        }
    };
    let object = |k: &str, required: bool, p: &mut Problems| -> Option<Map<String, Value>> {
        match data.get(k) {
            Some(Value::Object(o)) => Some(o.clone()),
            None if !required => Some(Map::new()),
            _ => {
                p.add(&f(k), id, &format!("'{k}' must be an object"));
                None
            }
        }
    };
    let kind = match n.kind.as_str() {
        "start" => Some(NodeKind::Start),
        "end" => Some(NodeKind::End { output: data.get("output").cloned() }),
        "agent" => {
            let agent = name("agent", p);
            let prompt = text("prompt_template", p);
            check_templates(prompt.as_deref(), &f("prompt_template"), id, p);
            Some(NodeKind::Agent { agent: agent?, prompt: prompt? })
        }
        "sql" => {
            let query = text("query", p).and_then(|q| match SqlTemplate::parse(&q) {
                Ok(t) => Some(t),
                Err(e) => {
                    p.add(&f("query"), id, &e);
                    None
                }
            });
            let params = object("params", false, p);
            if let (Some(q), Some(params)) = (&query, &params) {
                for ph in q.placeholders() {
                    if !params.contains_key(&ph) {
                        p.add(&f("params"), id, &format!("placeholder :{ph} has no value in 'params'"));
                    }
                }
            }
            Some(NodeKind::Sql { query: query?, params: params? })
        }
        "kb_search" => {
            let kb = name("knowledge_base", p);
            let query = text("query", p);
            let top_k = match data.get("top_k") {
                None => Some(5),
                Some(v) => match v.as_u64() {
                    Some(k @ 1..=100) => Some(k as u32),
                    _ => {
                        p.add(&f("top_k"), id, "'top_k' must be an integer from 1 to 100");
                        None
                    }
                },
            };
            Some(NodeKind::KbSearch { kb: kb?, query: query?, top_k: top_k? })
        }
        "condition" => {
            let expr = text("expression", p).and_then(|e| match Expr::parse(&e) {
                Ok(x) => Some(x),
                Err(err) => {
                    p.add(&f("expression"), id, &err);
                    None
                }
            });
            Some(NodeKind::Condition { expr: expr? })
        }
        "transform" => {
            let mapping = object("mapping", true, p);
            Some(NodeKind::Transform { mapping: mapping? })
        }
        "integration_insert" => {
            let integration = name("integration", p);
            let table = name("table", p);
            let values = object("values", true, p).and_then(|o| {
                if o.is_empty() {
                    p.add(&f("values"), id, "'values' must name at least one column");
                    return None;
                }
                let mut out = Vec::new();
                for (k, v) in o {
                    match Ident::new(&k) {
                        Ok(c) => out.push((c, v)),
                        Err(_) => p.add(&f("values"), id, &format!("column '{}' is not a valid name", short(&k))),
                    }
                }
                Some(out)
            });
            Some(NodeKind::IntegrationInsert { integration: integration?, table: table?, values: values? })
        }
        "human_approval" => {
            let message = data.get("message").and_then(Value::as_str).unwrap_or("approval required").to_owned();
            Some(NodeKind::HumanApproval { message })
        }
        "delay" => match data.get("seconds").and_then(Value::as_f64) {
            Some(s) if (0.0..=7.0 * 86400.0).contains(&s) => {
                Some(NodeKind::Delay { duration: Duration::from_secs_f64(s) })
            }
            _ => {
                p.add(&f("seconds"), id, "'seconds' must be a number from 0 to 604800");
                None
            }
        },
        _ => None,
    };
    // Every template must at least parse, wherever it sits.
    if let Some(k) = &kind {
        for t in k.templates() {
            check_templates(Some(t), &format!("{field}.data"), id, p);
        }
    }
    let instant = kind.as_ref().is_some_and(NodeKind::is_instant);
    let retry = match data.get("retry") {
        None => {
            Some(RetryPolicy { max_attempts: if instant { 1 } else { 3 }, initial_backoff: Duration::from_millis(500) })
        }
        Some(Value::Object(r)) => {
            let attempts = r.get("max_attempts").map_or(Some(3), |v| v.as_u64().filter(|a| (1..=10).contains(a)));
            let backoff =
                r.get("initial_backoff_ms").map_or(Some(500), |v| v.as_u64().filter(|b| (1..=600_000).contains(b)));
            if attempts.is_none() {
                p.add(&f("retry.max_attempts"), id, "'retry.max_attempts' must be an integer from 1 to 10");
            }
            if backoff.is_none() {
                p.add(
                    &f("retry.initial_backoff_ms"),
                    id,
                    "'retry.initial_backoff_ms' must be an integer from 1 to 600000",
                );
            }
            Some(RetryPolicy { max_attempts: attempts? as u32, initial_backoff: Duration::from_millis(backoff?) })
        }
        Some(_) => {
            p.add(&f("retry"), id, "'retry' must be an object");
            None
        }
    };
    let default_timeout = match &kind {
        Some(NodeKind::Delay { duration }) => *duration + Duration::from_secs(60),
        Some(NodeKind::Agent { .. }) => Duration::from_secs(300),
        _ => Duration::from_secs(60),
    };
    let timeout = match data.get("timeout_ms") {
        None => Some(default_timeout),
        Some(v) => match v.as_u64() {
            Some(ms @ 1..=86_400_000) => Some(Duration::from_millis(ms)),
            _ => {
                p.add(&f("timeout_ms"), id, "'timeout_ms' must be an integer from 1 to 86400000");
                None
            }
        },
    };
    if p.0.len() > before {
        return None;
    }
    Some(NodeSpec { id: n.id.clone(), kind_name: n.kind.clone(), kind: kind?, retry: retry?, timeout: timeout? })
}

fn check_templates(s: Option<&str>, field: &str, id: &str, p: &mut Problems) {
    if let Some(s) = s
        && let Err(e) = parse_template(s)
    {
        p.add(field, id, &e);
    }
}

/// One piece of a template string.
#[derive(Debug, Clone, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Ref(&'a str),
}

fn parse_template(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| "template has '{{' without a closing '}}'".to_owned())?;
        let reference = after[..close].trim();
        if reference.is_empty() || reference.split('.').any(str::is_empty) || reference.contains(char::is_whitespace) {
            return Err(format!("template reference '{{{{{}}}}}' is not of the form node_id.field", short(reference)));
        }
        out.push(Piece::Ref(reference));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// The `node.field` references of a template (none when it does not parse).
pub(crate) fn references(s: &str) -> Vec<String> {
    parse_template(s)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r.to_owned()),
            Piece::Text(_) => None,
        })
        .collect()
}

/// Outputs visible to a node: `input` plus every finished node's output, by node id.
pub(crate) type Scope = HashMap<String, Value>;

fn lookup<'a>(scope: &'a Scope, reference: &str) -> Result<&'a Value, String> {
    let mut parts = reference.split('.');
    let head = parts.next().unwrap_or_default();
    let mut v = scope.get(head).ok_or_else(|| format!("{{{{{reference}}}}}: node '{head}' has no output"))?;
    for part in parts {
        v = match v {
            Value::Object(o) => o.get(part),
            Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("{{{{{reference}}}}}: no field '{part}'"))?;
    }
    Ok(v)
}

/// Renders a template string: a string that is exactly one reference yields the referenced
/// value itself (keeping numbers and objects typed); otherwise the pieces are concatenated.
pub(crate) fn render_str(s: &str, scope: &Scope) -> Result<Value, String> {
    let pieces = parse_template(s)?;
    if let [Piece::Ref(r)] = pieces.as_slice() {
        return lookup(scope, r).cloned();
    }
    let mut out = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => match lookup(scope, r)? {
                Value::String(s) => out.push_str(s),
                Value::Null => {}
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(Value::String(out))
}

/// Renders a template as text.
pub(crate) fn render_text(s: &str, scope: &Scope) -> Result<String, String> {
    Ok(match render_str(s, scope)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

/// Renders every string inside `v`.
pub(crate) fn render_value(v: &Value, scope: &Scope) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => render_str(s, scope)?,
        Value::Array(a) => Value::Array(a.iter().map(|x| render_value(x, scope)).collect::<Result<_, _>>()?),
        Value::Object(o) => Value::Object(
            o.iter().map(|(k, x)| Ok((k.clone(), render_value(x, scope)?))).collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// An operand of a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Ref(String),
    Lit(Value),
}

/// A condition: one operand (truthiness) or a comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    lhs: Operand,
    op: Option<(&'static str, Operand)>,
}

const COMPARISONS: &[&str] = &["==", "!=", ">=", "<=", ">", "<", "contains"];

impl Expr {
    /// Parses `{{a.b}} > 3`, `{{a.ok}}`, `{{a.text}} contains 'urgent'`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (lhs, rest) = operand(s)?;
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(Self { lhs, op: None });
        }
        let op = COMPARISONS
            .iter()
            .copied()
            .find(|op| rest.starts_with(op))
            .ok_or_else(|| format!("expected one of {} after the first operand", COMPARISONS.join(" ")))?;
        let (rhs, tail) = operand(rest[op.len()..].trim_start())?;
        if !tail.trim().is_empty() {
            return Err("unexpected text after the expression".to_owned());
        }
        Ok(Self { lhs, op: Some((op, rhs)) })
    }

    /// Evaluates against the outputs in `scope`.
    pub(crate) fn eval(&self, scope: &Scope) -> Result<bool, String> {
        let value = |o: &Operand| -> Result<Value, String> {
            match o {
                Operand::Ref(r) => lookup(scope, r).cloned(),
                Operand::Lit(v) => Ok(v.clone()),
            }
        };
        let l = value(&self.lhs)?;
        let Some((op, rhs)) = &self.op else { return Ok(truthy(&l)) };
        let r = value(rhs)?;
        let num = |v: &Value| v.as_f64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
        Ok(match *op {
            "==" => l == r || matches!((num(&l), num(&r)), (Some(a), Some(b)) if a == b),
            "!=" => !(l == r || matches!((num(&l), num(&r)), (Some(a), Some(b)) if a == b)),
            "contains" => match (&l, &r) {
                (Value::String(a), Value::String(b)) => a.contains(b.as_str()),
                (Value::Array(a), b) => a.contains(b),
                _ => false,
            },
            cmp => {
                let ord = match (num(&l), num(&r)) {
                    (Some(a), Some(b)) => a.partial_cmp(&b),
                    _ => l.as_str().zip(r.as_str()).map(|(a, b)| a.cmp(b)),
                };
                let Some(ord) = ord else { return Ok(false) };
                match cmp {
                    ">" => ord.is_gt(),
                    ">=" => ord.is_ge(),
                    "<" => ord.is_lt(),
                    _ => ord.is_le(),
                }
            }
        })
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn operand(s: &str) -> Result<(Operand, &str), String> {
    if let Some(rest) = s.strip_prefix("{{") {
        let close = rest.find("}}").ok_or("'{{' without a closing '}}'")?;
        let r = rest[..close].trim();
        if r.is_empty() {
            return Err("empty reference".to_owned());
        }
        return Ok((Operand::Ref(r.to_owned()), &rest[close + 2..]));
    }
    for q in ['\'', '"'] {
        if let Some(rest) = s.strip_prefix(q) {
            let close = rest.find(q).ok_or("unterminated string")?;
            return Ok((Operand::Lit(json!(&rest[..close])), &rest[close + 1..]));
        }
    }
    let end = s.find(|c: char| c.is_whitespace() || "=!<>".contains(c)).unwrap_or(s.len());
    let word = &s[..end];
    let lit = match word {
        "true" => json!(true),
        "false" => json!(false),
        "null" => Value::Null,
        w => match w.parse::<f64>() {
            Ok(n) => json!(n),
            Err(_) => {
                return Err(format!("operand '{}' is not a {{{{reference}}}}, number, string or boolean", short(w)));
            }
        },
    };
    Ok((Operand::Lit(lit), &s[end..]))
}

/// A bounded, human-readable summary of an output.
pub(crate) fn summarize(v: &Value) -> String {
    let text = match v {
        Value::Object(o) if o.len() == 1 => match o.values().next() {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 200 { format!("{}…", text.chars().take(199).collect::<String>()) } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, kind: &str, data: Value) -> NodeDoc {
        NodeDoc { id: id.into(), kind: kind.into(), data, position: (0.0, 0.0) }
    }

    fn edge(id: &str, s: &str, t: &str, h: &str) -> EdgeDoc {
        EdgeDoc {
            id: id.into(),
            source: s.into(),
            target: t.into(),
            source_handle: h.into(),
            target_handle: String::new(),
        }
    }

    #[test]
    fn valid_graph_builds() {
        let doc = GraphDoc {
            nodes: vec![
                node("s", "start", json!({})),
                node("t", "transform", json!({"mapping": {"x": "{{input.a}}"}})),
                node("c", "condition", json!({"expression": "{{t.x}} > 2"})),
                node("e", "end", json!({"output": {"x": "{{t.x}}"}})),
                node("e2", "end", json!({})),
            ],
            edges: vec![
                edge("1", "s", "t", ""),
                edge("2", "t", "c", ""),
                edge("3", "c", "e", "true"),
                edge("4", "c", "e2", "false"),
            ],
            editor_state: Value::Null,
        };
        let g = Graph::build(doc).unwrap();
        assert_eq!(g.topological().len(), 5);
    }

    #[test]
    fn every_problem_is_named() {
        let doc = GraphDoc {
            nodes: vec![
                node("s", "start", json!({})),
                node("s2", "start", json!({})),
                node("a", "agent", json!({"agent": "Bad Name"})),
                node("x", "teleport", json!({})),
                node("l1", "transform", json!({"mapping": {}})),
                node("l2", "transform", json!({"mapping": {}})),
                node("orphan", "delay", json!({"seconds": -1})),
            ],
            edges: vec![
                edge("1", "s", "a", ""),
                edge("2", "l1", "l2", ""),
                edge("3", "l2", "l1", ""),
                edge("4", "a", "ghost", ""),
            ],
            editor_state: Value::Null,
        };
        let problems = Graph::build(doc).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| format!("{} {}", p.subject, p.description)).collect();
        let has = |subject: &str, needle: &str| {
            assert!(
                problems.iter().any(|p| p.subject == subject && p.description.contains(needle)),
                "missing {subject}: {needle} in {text:#?}"
            )
        };
        has("s2", "second start");
        has("a", "prompt_template");
        has("a", "lower-case name");
        has("x", "unknown node type");
        has("orphan", "seconds");
        has("4", "unknown target");
        has("", "end node");
        has("l1", "cycle");
    }

    #[test]
    fn templates_and_conditions() {
        let scope: Scope =
            [("input".to_owned(), json!({"n": 3, "name": "bob"})), ("a".to_owned(), json!({"answer": "hi"}))].into();
        assert_eq!(render_str("{{input.n}}", &scope).unwrap(), json!(3));
        assert_eq!(render_str("Hello {{input.name}}: {{a.answer}}", &scope).unwrap(), json!("Hello bob: hi"));
        assert!(render_str("{{b.x}}", &scope).is_err());
        assert!(Expr::parse("{{input.n}} >= 3").unwrap().eval(&scope).unwrap());
        assert!(!Expr::parse("{{input.name}} == 'alice'").unwrap().eval(&scope).unwrap());
        assert!(Expr::parse("{{a.answer}} contains \"h\"").unwrap().eval(&scope).unwrap());
        assert!(Expr::parse("{{input.n}} ~ 3").is_err());
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy { max_attempts: 5, initial_backoff: Duration::from_millis(100) };
        let b1 = p.backoff(1);
        assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
        let b3 = p.backoff(3);
        assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
        assert!(p.backoff(30) <= Duration::from_secs(30));
    }
}
