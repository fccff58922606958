//! The node types and a node's typed configuration, as the engine runs it.

use std::time::Duration;

use getlood_mindsdb::Ident;
use serde_json::{Map, Value};

use super::expr::Expr;
use super::remote::{A2aNode, McpNode};
use crate::agents::AgentRef;
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
    "a2a_agent",
    "mcp_tool",
];

/// Node types a MindsDB JOB can run.
pub(crate) const JOB_NODE_TYPES: &[&str] = &["start", "end", "sql", "agent", "integration_insert"];

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

/// A node's typed configuration. An agent node's `agent` is as saved, a registry name or id,
/// resolved when the node runs ([`crate::agents`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Start,
    End { output: Option<Value> },
    Agent { agent: AgentRef, prompt: String },
    Sql { query: SqlTemplate, params: Map<String, Value> },
    KbSearch { kb: Ident, query: String, top_k: u32 },
    Condition { expr: Expr },
    Transform { mapping: Map<String, Value> },
    IntegrationInsert { integration: Ident, table: Ident, values: Vec<(Ident, Value)> },
    HumanApproval { message: String },
    Delay { duration: Duration },
    A2aAgent(Box<A2aNode>),
    McpTool(Box<McpNode>),
}

impl NodeKind {
    /// Nodes that finish in microseconds without I/O: the engine runs them inline, in the same
    /// transaction that made them ready, instead of a round trip through the work queue.
    pub(crate) fn is_instant(&self) -> bool {
        matches!(self, Self::Start | Self::End { .. } | Self::Condition { .. } | Self::Transform { .. })
    }

    /// Whether an attempt that ran out of time may be tried again. A remote agent or tool may
    /// have acted on a call whose answer never came (sent a message, run a tool), so repeating
    /// it is left to the graph's author: their timeouts fail the node, as their other errors
    /// after the call was sent do.
    pub(crate) fn retries_timeouts(&self) -> bool {
        !matches!(self, Self::A2aAgent(_) | Self::McpTool(_))
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
    pub(super) fn templates(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        match self {
            Self::End { output: Some(v) } => collect_strings(v, &mut out),
            Self::Sql { params, .. } => params.values().for_each(|v| collect_strings(v, &mut out)),
            Self::Transform { mapping } => mapping.values().for_each(|v| collect_strings(v, &mut out)),
            Self::IntegrationInsert { values, .. } => values.iter().for_each(|(_, v)| collect_strings(v, &mut out)),
            Self::McpTool(m) => m.arguments.values().for_each(|v| collect_strings(v, &mut out)),
            _ => {}
        }
        match self {
            Self::Agent { prompt, .. } => out.push(prompt.as_str()),
            Self::KbSearch { query, .. } => out.push(query.as_str()),
            Self::HumanApproval { message } => out.push(message.as_str()),
            Self::A2aAgent(a) => out.push(a.message.as_str()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
