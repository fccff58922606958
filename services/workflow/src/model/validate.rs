//! Reading one node's editor data into its typed configuration, collecting every problem.

use std::time::Duration;

use getlood_mindsdb::Ident;
use getlood_proto::common::v1::FieldViolation;
use serde_json::{Map, Value};

use super::doc::NodeDoc;
use super::expr::Expr;
use super::graph::Limits;
use super::node::{NODE_TYPES, NodeKind, NodeSpec, RetryPolicy};
use super::remote::{parse_a2a, parse_mcp};
use super::template::{parse_template, short};
use crate::agents::AgentRef;
use crate::sqlnode::{SqlPolicy, SqlTemplate};

/// The problems found so far, in the order found.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<FieldViolation>);

impl Problems {
    pub(super) fn add(&mut self, field: &str, subject: &str, description: &str) {
        self.0.push(FieldViolation {
            field: field.to_owned(),
            subject: short(subject),
            description: description.to_owned(),
        });
    }
}

/// The typed configuration of node `n` (at `field`), or `None` after adding its problems to `p`.
/// `limits.sql` and `limits.egress`, when given, are what `sql` nodes may read and which hosts
/// remote nodes may call.
pub(super) fn parse_node(n: &NodeDoc, field: &str, limits: &Limits, p: &mut Problems) -> Option<NodeSpec> {
    let sql: Option<&SqlPolicy> = limits.sql.as_ref();
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
            let agent = text("agent", p).and_then(|a| match AgentRef::parse(&a) {
                Ok(r) => Some(r),
                Err(e) => {
                    p.add(&f("agent"), id, &e);
                    None
                }
            });
            let prompt = text("prompt_template", p);
            check_templates(prompt.as_deref(), &f("prompt_template"), id, p);
            Some(NodeKind::Agent { agent: agent?, prompt: prompt? })
        }
        "sql" => {
            let query = text("query", p).and_then(|q| match SqlTemplate::parse(&q) {
                Ok(t) => match sql.map_or(Ok(()), |policy| policy.check(&t)) {
                    Ok(()) => Some(t),
                    Err(e) => {
                        p.add(&f("query"), id, &e);
                        None
                    }
                },
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
        "a2a_agent" => parse_a2a(data, field, id, limits.egress.as_ref(), p).map(|a| NodeKind::A2aAgent(Box::new(a))),
        "mcp_tool" => parse_mcp(data, field, id, limits.egress.as_ref(), p).map(|m| NodeKind::McpTool(Box::new(m))),
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
        Some(NodeKind::Agent { .. } | NodeKind::A2aAgent(_)) => Duration::from_secs(300),
        Some(NodeKind::McpTool(_)) => Duration::from_secs(120),
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
