//! The graph document as the editor saves it (JSON in `workflow_versions.graph`) and its
//! protobuf form.

use getlood_proto::workflow::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::convert::{json_to_struct, opt_struct_to_json};

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
