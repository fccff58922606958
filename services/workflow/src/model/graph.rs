//! A validated graph with its adjacency: graph-level checks (ids, edges, start and end nodes,
//! cycles, reachability, template references) and the lookups the engine runs on.

use std::collections::{HashMap, HashSet, VecDeque};

use getlood_proto::common::v1::FieldViolation;

use super::doc::GraphDoc;
use super::node::{NODE_TYPES, NodeKind, NodeSpec};
use super::template::{references, short};
use super::validate::{Problems, parse_node};

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
}
