//! A validated graph with its adjacency: graph-level checks (ids, edges, start and end nodes,
//! cycles, reachability, template references) and the lookups the engine runs on.

use std::collections::{HashMap, HashSet, VecDeque};

use getlood_proto::common::v1::FieldViolation;

use super::doc::GraphDoc;
use super::node::{NODE_TYPES, NodeKind, NodeSpec};
use super::template::{references, short};
use super::validate::{Problems, parse_node};
use crate::sqlnode::SqlPolicy;

/// What a graph is validated against: its size limits and what `sql` nodes may read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Limits {
    /// Nodes a graph may have (`app.max_graph_nodes`); `None` for stored graphs, which were
    /// checked when saved and must keep loading if the limit is lowered.
    pub max_nodes: Option<usize>,
    /// Edges a graph may have (`app.max_graph_edges`), like `max_nodes`.
    pub max_edges: Option<usize>,
    /// The `sql` nodes' policy; `None` for stored graphs (the node runner applies it).
    pub sql: Option<SqlPolicy>,
    /// Which hosts remote nodes (`a2a_agent`, `mcp_tool`) may call; `None` for stored graphs
    /// (the node checks again when it runs, resolved addresses included).
    pub egress: Option<getlood_common::egress::EgressPolicy>,
}

/// Work done by the template-reference check, in 64-bit words touched: the measure the
/// linear-bounds test asserts on.
#[cfg(test)]
static REFERENCE_WORK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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
    /// Validates `doc` against `limits`; on success the runnable graph, otherwise every
    /// problem found (only the size problem when the graph is over a size limit).
    pub(crate) fn build(doc: GraphDoc, limits: &Limits) -> Result<Self, Vec<FieldViolation>> {
        let mut problems = Problems::default();
        // Before anything else: everything below is linear in the graph's size, but a graph
        // over the limit is refused without spending that much.
        for (field, count, limit, key) in [
            ("graph.nodes", doc.nodes.len(), limits.max_nodes, "app.max_graph_nodes"),
            ("graph.edges", doc.edges.len(), limits.max_edges, "app.max_graph_edges"),
        ] {
            if let Some(limit) = limit
                && count > limit
            {
                problems.add(
                    field,
                    "",
                    &format!("the graph has {count} {}, more than the limit of {limit} ({key})", &field[6..]),
                );
            }
        }
        if !problems.0.is_empty() {
            return Err(problems.0);
        }
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
            specs.push(parse_node(n, &field, limits, &mut problems));
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
            let mut sorted = vec![false; doc.nodes.len()];
            topo.iter().for_each(|&i| sorted[i] = true);
            for (i, n) in doc.nodes.iter().enumerate() {
                if indegree[i] > 0 && !sorted[i] {
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
            let ancestors = Ancestors::of_referenced(&doc, &index, &specs, &topo, &targets);
            for (i, spec) in specs.iter().enumerate() {
                let Some(spec) = spec else { continue };
                for template in spec.kind.templates() {
                    for reference in references(template) {
                        let head = reference.split('.').next().unwrap_or_default();
                        if head == "input" {
                            continue;
                        }
                        match index.get(head) {
                            Some(&j) if ancestors.is_ancestor(j, i) => {}
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
pub(crate) fn validate(doc: &GraphDoc, limits: &Limits) -> Vec<FieldViolation> {
    Graph::build(doc.clone(), limits).err().unwrap_or_default()
}

/// "Does node `j` run before node `i`", for the nodes templates refer to.
///
/// One pass in topological order, each node carrying a bitset over the *referenced* nodes
/// only (`R` of them) that are its ancestors: `O((V + E) * ceil(R / 64))` time and
/// `O(V * ceil(R / 64))` words. Templates usually refer to a handful of nodes, which makes it
/// linear; with every node referenced it is bounded by the graph limits (2 000 nodes: 32 words
/// a node). The former version cloned a hash set of all ancestors per edge, quadratic in
/// memory and time for any graph.
struct Ancestors {
    /// Bit position of each referenced node, by node index.
    slot: Vec<Option<usize>>,
    words: usize,
    bits: Vec<u64>,
}

impl Ancestors {
    fn of_referenced(
        doc: &GraphDoc,
        index: &HashMap<String, usize>,
        specs: &[Option<NodeSpec>],
        topo: &[usize],
        targets: &dyn Fn(usize) -> Vec<usize>,
    ) -> Self {
        let mut slot = vec![None; doc.nodes.len()];
        let mut referenced = 0usize;
        for spec in specs.iter().flatten() {
            for template in spec.kind.templates() {
                for reference in references(template) {
                    let head = reference.split('.').next().unwrap_or_default();
                    if let Some(&j) = index.get(head)
                        && slot[j].is_none()
                    {
                        slot[j] = Some(referenced);
                        referenced += 1;
                    }
                }
            }
        }
        let words = referenced.div_ceil(64);
        let mut bits = vec![0u64; words * doc.nodes.len()];
        if words > 0 {
            for &i in topo {
                // Node i's ancestors, plus i itself, become ancestors of each of its targets.
                let mut own = bits[i * words..(i + 1) * words].to_vec();
                if let Some(b) = slot[i] {
                    own[b / 64] |= 1 << (b % 64);
                }
                for t in targets(i) {
                    for (w, o) in bits[t * words..(t + 1) * words].iter_mut().zip(&own) {
                        *w |= o;
                    }
                    #[cfg(test)]
                    REFERENCE_WORK.fetch_add(words, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        Self { slot, words, bits }
    }

    fn is_ancestor(&self, j: usize, i: usize) -> bool {
        match self.slot.get(j).copied().flatten() {
            Some(b) => self.bits.get(i * self.words + b / 64).is_some_and(|w| w & (1 << (b % 64)) != 0),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::doc::{EdgeDoc, NodeDoc};

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
        let g = Graph::build(doc, &Limits::default()).unwrap();
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
        let problems = Graph::build(doc, &Limits::default()).unwrap_err();
        let text: Vec<String> = problems.iter().map(|p| format!("{} {}", p.subject, p.description)).collect();
        let has = |subject: &str, needle: &str| {
            assert!(
                problems.iter().any(|p| p.subject == subject && p.description.contains(needle)),
                "missing {subject}: {needle} in {text:#?}"
            )
        };
        has("s2", "second start");
        has("a", "prompt_template");
        has("a", "must name one of the tenant's agents");
        has("x", "unknown node type");
        has("orphan", "seconds");
        has("4", "unknown target");
        has("", "end node");
        has("l1", "cycle");
    }

    /// A chain of `n` nodes (start, `n - 2` transforms, end) where every transform refers to
    /// the input and to one of `distinct` early nodes.
    fn chain(n: usize, distinct: usize) -> GraphDoc {
        let mut nodes = vec![node("n0", "start", json!({}))];
        for i in 1..n - 1 {
            let target = if i > distinct { format!("n{}", 1 + i % distinct) } else { format!("n{}", i - 1) };
            let mapping =
                if i == 1 { json!({"x": "{{input.a}}"}) } else { json!({"x": format!("{{{{{target}.x}}}}")}) };
            nodes.push(node(&format!("n{i}"), "transform", json!({"mapping": mapping})));
        }
        nodes.push(node(&format!("n{}", n - 1), "end", json!({})));
        let edges = (0..n - 1).map(|i| edge(&format!("e{i}"), &format!("n{i}"), &format!("n{}", i + 1), "")).collect();
        GraphDoc { nodes, edges, editor_state: Value::Null }
    }

    #[test]
    fn ten_thousand_nodes_validate_in_linear_work() {
        use std::sync::atomic::Ordering;
        let unbounded = Limits::default();
        let before = REFERENCE_WORK.load(Ordering::Relaxed);
        let g = Graph::build(chain(10_000, 8), &unbounded).unwrap();
        let work = REFERENCE_WORK.load(Ordering::Relaxed) - before;
        // One word per edge: 8 referenced nodes fit one bitset word (tests run in parallel, so
        // other graphs may add a little).
        assert_eq!(g.nodes.len(), 10_000);
        assert!((9_999..2 * 10_000).contains(&work), "{work} words for 10 000 nodes");
        // Every node referenced, at the node limit: bounded by V * ceil(V / 64) words.
        let before = REFERENCE_WORK.load(Ordering::Relaxed);
        Graph::build(chain(2_000, 2_000), &unbounded).unwrap();
        let work = REFERENCE_WORK.load(Ordering::Relaxed) - before;
        assert!(work <= 2_000 * 32 + 20_000, "{work}");
    }

    #[test]
    fn references_must_run_before() {
        let mut doc = chain(6, 6);
        // n2 refers to n4, which runs after it.
        doc.nodes[2].data = json!({"mapping": {"x": "{{n4.x}}"}});
        let problems = Graph::build(doc, &Limits::default()).unwrap_err();
        assert!(problems.iter().any(|p| p.subject == "n2" && p.description.contains("does not run before")));
    }

    #[test]
    fn size_limits_are_named() {
        let limits = Limits { max_nodes: Some(2_000), max_edges: Some(10_000), ..Limits::default() };
        let problems = Graph::build(chain(2_001, 4), &limits).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "graph.nodes");
        assert_eq!(
            problems[0].description,
            "the graph has 2001 nodes, more than the limit of 2000 (app.max_graph_nodes)"
        );
        let mut doc = chain(100, 4);
        let extra = doc.edges[0].clone();
        doc.edges.extend((0..10_000).map(|k| EdgeDoc { id: format!("x{k}"), ..extra.clone() }));
        let problems = Graph::build(doc, &limits).unwrap_err();
        assert!(problems[0].description.contains("more than the limit of 10000 (app.max_graph_edges)"));
        Graph::build(chain(2_000, 4), &limits).unwrap();
    }

    #[test]
    fn sql_nodes_follow_the_policy_when_saved() {
        let policy = SqlPolicy::new(&["files".to_owned()]).unwrap();
        let limits = Limits { sql: Some(policy), ..Limits::default() };
        let doc = |q: &str| GraphDoc {
            nodes: vec![
                node("s", "start", json!({})),
                node("q", "sql", json!({"query": q})),
                node("e", "end", json!({})),
            ],
            edges: vec![edge("1", "s", "q", ""), edge("2", "q", "e", "")],
            editor_state: Value::Null,
        };
        Graph::build(doc("SELECT * FROM files.sales"), &limits).unwrap();
        let problems = Graph::build(doc("SELECT * FROM t_acme.agents"), &limits).unwrap_err();
        assert_eq!((problems[0].field.as_str(), problems[0].subject.as_str()), ("graph.nodes[1].data.query", "q"));
        // Stored graphs load whatever their SQL: the runner refuses it instead.
        Graph::build(doc("SELECT * FROM t_acme.agents"), &Limits::default()).unwrap();
    }
}
