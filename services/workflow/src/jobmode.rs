//! MindsDB-job mode: the seed's `_workflow_to_sql`. A graph of sql, agent and
//! integration_insert nodes becomes the statements of one MindsDB JOB, in dependency order.
//!
//! A JOB body is SQL text that MindsDB runs later without our `params`, so every value is
//! rendered at compile time and written as a checked literal by the shared builder
//! (`JobAdapter` refuses what cannot be written exactly). Outputs cannot flow between
//! statements of a job, so templates may only use the run input (`{{input.*}}`); a graph that
//! passes node outputs along needs engine mode.

use std::collections::HashMap;

use getlood_mindsdb::{Ident, Sql, SqlBuilder};
use serde_json::{Map, Value};

use crate::agents::AgentRef;
use crate::model::{Graph, JOB_NODE_TYPES, NodeKind, Scope, references, render_text, render_value};
use crate::sqlnode::SqlPolicy;

/// Compiles `graph` with `input`; the error says why the graph cannot run as a job.
/// `sql` is what the graph's `sql` nodes may read (a stored graph was saved under the policy of
/// its day); `agents` the MindsDB agent of each agent node's reference, pinned by the caller
/// ([`crate::agents::AgentDirectory::pin`]): the job's SQL names MindsDB's agent.
pub(crate) fn compile(
    graph: &Graph,
    project: &Ident,
    input: &Value,
    sql: &SqlPolicy,
    agents: &HashMap<AgentRef, Ident>,
) -> Result<Vec<Sql>, String> {
    let mut scope = Scope::new();
    scope.insert("input".to_owned(), input.clone());
    let mut body = Vec::new();
    for i in graph.topological() {
        let node = &graph.nodes[i];
        if !JOB_NODE_TYPES.contains(&node.kind_name.as_str()) {
            return Err(format!(
                "node '{}' is of type {}; mindsdb job mode runs only {}",
                node.id,
                node.kind_name,
                JOB_NODE_TYPES.join(", ")
            ));
        }
        let refs_ok = |t: &str| references(t).iter().all(|r| r == "input" || r.starts_with("input."));
        let check = |templates: Vec<&str>| -> Result<(), String> {
            if templates.into_iter().all(refs_ok) {
                Ok(())
            } else {
                Err(format!(
                    "node '{}' uses another node's output; mindsdb job mode can only use {{{{input.*}}}}",
                    node.id
                ))
            }
        };
        match &node.kind {
            NodeKind::Start | NodeKind::End { .. } => {}
            NodeKind::Sql { query, params } => {
                sql.check(query).map_err(|e| format!("node '{}': {e}", node.id))?;
                check(params.values().filter_map(Value::as_str).collect())?;
                let params = match render_value(&Value::Object(params.clone()), &scope)? {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                body.push(query.build(&params)?);
            }
            NodeKind::Agent { agent, prompt } => {
                check(vec![prompt.as_str()])?;
                let agent = agents
                    .get(agent)
                    .ok_or_else(|| format!("node '{}': the tenant has no agent '{agent}'", node.id))?;
                let question = render_text(prompt, &scope)?;
                body.push(
                    SqlBuilder::new()
                        .kw("SELECT answer FROM")
                        .qualified(project, agent)
                        .kw("WHERE question =")
                        .value(question)
                        .build(),
                );
            }
            NodeKind::IntegrationInsert { integration, table, values } => {
                check(values.iter().filter_map(|(_, v)| v.as_str()).collect())?;
                let columns: Vec<Ident> = values.iter().map(|(c, _)| c.clone()).collect();
                let mut b = crate::nodes::insert_head(integration, table, &columns);
                for (n, (_, tpl)) in values.iter().enumerate() {
                    let v = match render_value(tpl, &scope)? {
                        v @ (Value::Object(_) | Value::Array(_)) => Value::String(v.to_string()),
                        v => v,
                    };
                    if n > 0 {
                        b = b.kw(",");
                    }
                    b = b.value(v);
                }
                body.push(b.kw(")").build());
            }
            // Excluded by the JOB_NODE_TYPES check above.
            _ => {}
        }
    }
    if body.is_empty() {
        return Err("the graph has no sql, agent or integration_insert node to run".to_owned());
    }
    Ok(body)
}

/// Prefix of every MindsDB job of workflow `id`: `wf_<uuid hex>`.
pub(crate) fn job_prefix(id: &uuid::Uuid) -> String {
    format!("wf_{}", id.simple())
}
