//! Workflow graphs: the React Flow document as stored, the typed node configurations the engine
//! runs, validation (every problem, by node or edge id), `{{node.field}}` templates and the
//! condition expressions.

mod doc;
mod expr;
mod graph;
mod node;
mod remote;
mod template;
mod validate;

pub(crate) use doc::GraphDoc;
pub(crate) use graph::{Graph, Limits, validate};
pub(crate) use node::{JOB_NODE_TYPES, NodeKind, NodeSpec};
pub(crate) use remote::{A2aNode, Credentials, McpNode, REDACTED};
pub(crate) use template::{MAX_RENDERED_BYTES, Scope, references, render_text, render_value, summarize};
