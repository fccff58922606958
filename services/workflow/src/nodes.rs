//! Executors of the nodes that do I/O: agent, sql, kb_search and integration_insert against
//! the tenant's MindsDB, a2a_agent and mcp_tool against remote agents and tools
//! ([`crate::remote`]); delay nodes wait without a worker, in the engine.
//!
//! Agent nodes ask the tenant's MindsDB agent directly through the `AgentAdapter` rather than
//! the agent-registry's QueryAgent: a run outlives the request that started it (it resumes
//! after a crash, waits for approvals, fires from schedules) and so has no caller token to
//! forward, and MindsDB-job mode must name the same MindsDB agent in SQL anyway. The node names
//! the agent as users know it; [`AgentDirectory`], this service's read model of the registry's
//! agents, says which MindsDB agent that is. The tenant still comes only from the run row,
//! which was written from the verified token.

use getlood_mindsdb::{AgentAdapter, KnowledgeBaseAdapter, MindsdbClient, MindsdbError, SqlBuilder, TenantContext};
use serde_json::{Map, Value, json};

use crate::agents::AgentDirectory;
use crate::model::{NodeKind, NodeSpec, Scope, render_text, render_value};
use crate::remote::{Progress, Remote};
use crate::sqlnode::SqlPolicy;

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeError {
    /// May succeed if tried again (MindsDB or the model provider unavailable, a timeout).
    Transient(String),
    /// Will fail again (bad template, unknown table, rejected SQL).
    Permanent(String),
}

impl NodeError {
    /// The message stored and published.
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Permanent(m) => m,
        }
    }
}

impl From<MindsdbError> for NodeError {
    fn from(e: MindsdbError) -> Self {
        let transient = e.is_transient() || matches!(e, MindsdbError::Timeout(_) | MindsdbError::Upstream(_));
        // Run logs and node events reach the tenant's users: they get the public message (a
        // missing table or a bad name as MindsDB said it; generated SQL, provider answers and
        // internals never), and the whole text goes to our log, once, here.
        tracing::warn!(error = %e, "workflow node's mindsdb call failed");
        let message = e.public_message().chars().take(500).collect();
        if transient { Self::Transient(message) } else { Self::Permanent(message) }
    }
}

/// Runs I/O nodes against the tenant's MindsDB.
#[derive(Clone, Debug)]
pub(crate) struct NodeRunner {
    client: MindsdbClient,
    agents: AgentAdapter,
    /// What an agent node's name or id stands for.
    directory: AgentDirectory,
    kbs: KnowledgeBaseAdapter,
    /// What `sql` nodes may read: a graph saved before the policy changed is held to it here.
    sql: SqlPolicy,
    /// The client of the remote nodes, with the egress policy they are held to when they run.
    remote: Remote,
}

impl NodeRunner {
    pub(crate) fn new(client: MindsdbClient, directory: AgentDirectory, sql: SqlPolicy, remote: Remote) -> Self {
        Self {
            agents: AgentAdapter::new(client.clone()),
            directory,
            kbs: KnowledgeBaseAdapter::new(client.clone()),
            client,
            sql,
            remote,
        }
    }

    /// Which hosts remote nodes may call.
    pub(crate) fn egress(&self) -> &getlood_common::egress::EgressPolicy {
        self.remote.egress()
    }

    /// What `sql` nodes may read.
    pub(crate) fn sql_policy(&self) -> &SqlPolicy {
        &self.sql
    }

    /// Runs one attempt of `spec`; remote nodes report their progress to `progress`.
    pub(crate) async fn run<P: Progress>(
        &self,
        ctx: &TenantContext,
        spec: &NodeSpec,
        scope: &Scope,
        progress: &P,
    ) -> Result<Value, NodeError> {
        // Template errors (a missing output, the size limit) name the node.
        let permanent = |e: String| NodeError::Permanent(format!("node '{}': {e}", spec.id));
        match &spec.kind {
            NodeKind::Agent { agent, prompt } => {
                let question = render_text(prompt, scope).map_err(permanent)?;
                let mindsdb = self.directory.for_run(&ctx.tenant, agent).await.map_err(permanent)?;
                let answer = match self.agents.ask(ctx, &mindsdb, &question).await {
                    Ok(a) => a,
                    // The directory has not heard of the deletion yet (or never heard of the
                    // id): say so in the tenant's words, not MindsDB's.
                    Err(e) if e.code() == getlood_common::ErrorCode::NotFound && missing_agent(&e, &mindsdb) => {
                        return Err(permanent(format!("agent '{agent}' does not exist any more (deleted)")));
                    }
                    Err(e) => return Err(e.into()),
                };
                Ok(json!({"answer": answer, "question": question}))
            }
            NodeKind::Sql { query, params } => {
                let params = match render_value(&Value::Object(params.clone()), scope).map_err(permanent)? {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                self.sql.check(query).map_err(permanent)?;
                let sql = query.build(&params).map_err(NodeError::Permanent)?;
                let table = self.client.query(ctx, "workflow.sql", &sql).await?.into_table();
                let rows: Vec<Value> = table
                    .rows
                    .iter()
                    .map(|r| Value::Object(table.columns.iter().cloned().zip(r.iter().cloned()).collect()))
                    .collect();
                Ok(json!({"row_count": rows.len(), "columns": table.columns, "rows": rows}))
            }
            NodeKind::KbSearch { kb, query, top_k } => {
                let q = render_text(query, scope).map_err(permanent)?;
                let hits = self.kbs.search(ctx, kb, &q, *top_k).await?;
                Ok(json!({"hits": hits, "count": hits.len()}))
            }
            NodeKind::IntegrationInsert { integration, table, values } => {
                let columns: Vec<_> = values.iter().map(|(c, _)| c.clone()).collect();
                let mut b = insert_head(integration, table, &columns);
                let mut row = Map::new();
                for (n, (c, tpl)) in values.iter().enumerate() {
                    let v = render_value(tpl, scope).map_err(permanent)?;
                    // Integration tables take scalars; objects travel as their JSON text.
                    let v = match v {
                        Value::Object(_) | Value::Array(_) => Value::String(v.to_string()),
                        other => other,
                    };
                    if n > 0 {
                        b = b.kw(",");
                    }
                    b = b.value(v.clone());
                    row.insert(c.as_str().to_owned(), v);
                }
                let sql = b.kw(")").build();
                self.client.query(ctx, "workflow.integration_insert", &sql).await?;
                Ok(json!({"inserted": 1, "table": format!("{integration}.{table}"), "values": row}))
            }
            NodeKind::A2aAgent(node) => {
                let message = render_text(&node.message, scope).map_err(permanent)?;
                crate::remote::a2a::run(&self.remote, node, message, progress).await
            }
            NodeKind::McpTool(node) => {
                let arguments = match render_value(&Value::Object(node.arguments.clone()), scope).map_err(permanent)? {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                crate::remote::mcp::run(&self.remote, node, arguments).await
            }
            // The engine runs these inline, and parks delays without a worker (engine.rs);
            // reaching here is a bug, not worth a retry.
            NodeKind::Start
            | NodeKind::End { .. }
            | NodeKind::Condition { .. }
            | NodeKind::Transform { .. }
            | NodeKind::HumanApproval { .. }
            | NodeKind::Delay { .. } => {
                Err(NodeError::Permanent(format!("{} nodes do not run on workers", spec.kind_name)))
            }
        }
    }
}

/// Whether MindsDB's `e` says that its agent `mindsdb` does not exist (rather than a table or
/// knowledge base the agent reads).
fn missing_agent(e: &MindsdbError, mindsdb: &getlood_mindsdb::Ident) -> bool {
    let text = e.to_string();
    text.contains(mindsdb.as_str()) && text.to_ascii_lowercase().contains("agent")
}

/// `INSERT INTO <db>.<table> (<columns>) VALUES (`, with the column names unquoted.
///
/// MindsDB 26.1 forwards backtick-quoted INSERT column names to the integration verbatim
/// (Postgres answers `column "`body`" of relation "send" does not exist`), while the shared
/// builder always backtick-quotes identifiers. The names are `Ident`s (`[a-z_][a-z0-9_]*`),
/// which cannot break out of the statement unquoted; the builder only takes fixed text as
/// `&'static str`, so each distinct name is interned once (bounded). A proper
/// `SqlBuilder::bare_ident` in libs/mindsdb would replace this.
pub(crate) fn insert_head(
    integration: &getlood_mindsdb::Ident,
    table: &getlood_mindsdb::Ident,
    columns: &[getlood_mindsdb::Ident],
) -> SqlBuilder {
    let mut b = SqlBuilder::new().kw("INSERT INTO").qualified(integration, table).kw("(");
    for (n, c) in columns.iter().enumerate() {
        if n > 0 {
            b = b.kw(",");
        }
        b = match intern(c.as_str()) {
            Some(name) => b.kw(name),
            // Past the interner's bound: quoted, which some integrations refuse, never unsafe.
            None => b.ident(c),
        };
    }
    b.kw(") VALUES (")
}

fn intern(name: &str) -> Option<&'static str> {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names =
        NAMES.get_or_init(|| Mutex::new(HashSet::new())).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = names.get(name) {
        return Some(n);
    }
    if names.len() >= 10_000 {
        return None;
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    Some(leaked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_errors_carry_the_public_message_not_mindsdb_internals() {
        let err = NodeError::from(MindsdbError::from_message(
            "The SQL statement cannot be parsed - SELECT secret FROM t_acme.agents: Syntax error",
        ));
        assert_eq!(err.message(), "the statement was rejected by mindsdb");
        let err = NodeError::from(MindsdbError::from_message("Table 'sales' not found in database: files"));
        assert_eq!(err.message(), "Table 'sales' not found in database: files");
        let err = NodeError::from(MindsdbError::from_message("Traceback (most recent call last): File x"));
        assert_eq!(err.message(), "internal error");
    }
}
