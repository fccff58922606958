//! What a workflow `agent` node's agent is: the tenant's agent as users know it (its registry
//! name, e.g. `dashboard-builder`, or its id), turned into the MindsDB agent the registry made
//! for it (`agent_<id without dashes>`).
//!
//! # Why a read model
//!
//! A run has no caller token for most of its life: it resumes after a crash on another
//! replica, waits days for an approval, fires from a schedule. Asking agent-registry's gRPC at
//! that point would need a service credential the platform does not have (every call between
//! services carries the caller's own token, and the services only verify tokens), and pinning
//! the MindsDB name when the run starts would run an agent the tenant renamed or deleted since.
//! So this service keeps its own read model of the tenants' agents (`agent_directory`: id,
//! name, version, deleted), in its own schema:
//!
//! * **fed by the registry's events**: every replica follows the `agent.*` stream of JetStream
//!   (`agent.created`, `agent.updated`, `agent.deleted` carry the id, name and version) from
//!   the sequence it applied last, stored with the model. Applying an event is idempotent and
//!   order-free: a row changes only for a higher version (or its deletion), and a deleted agent
//!   stays as a tombstone;
//! * **backfilled from the registry** wherever a caller's token exists (validate, save,
//!   execute, schedule): a name or id the model does not know — an agent older than the
//!   stream's retention, or created a moment ago — is asked of agent-registry's `GetAgent`
//!   with that token, and the answer is recorded.
//!
//! Runs resolve through the model only, with no token: a name no live agent has any more
//! (deleted, or renamed after the workflow was saved) fails the node with a message saying so,
//! never MindsDB's "Agent with name agent_… does not exist". MindsDB-job mode must write the
//! MindsDB name into the job's SQL, so it pins the names when the job is compiled (with the
//! caller's token); a job that outlives its agent fails in MindsDB's job history.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt as _;
use getlood_auth::{Principal, TenantId};
use getlood_events::{Domain, EventBus, EventEnvelope, EventError, Payload, StartAt};
use getlood_mindsdb::Ident;
use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::agent_registry::v1::{GetAgentRequest, get_agent_request};
use getlood_proto::common::v1::FieldViolation;
use getlood_server::Upstream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{GraphDoc, NodeKind, NodeSpec};

/// How an `agent` node names its agent, as saved in the graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AgentRef {
    /// The agent's registry id: a UUID, or the MindsDB name `agent_<32 hex digits>` the
    /// registry derives from it (what graphs carried before names resolved).
    Id(Uuid),
    /// The agent's registry name: 1-63 characters of `[a-z0-9_-]`, starting with a letter.
    Name(String),
}

impl AgentRef {
    /// Reads a node's `agent` field; the error says what is accepted.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        if let Ok(id) = Uuid::parse_str(s) {
            return Ok(Self::Id(id));
        }
        if let Some(hex) = s.strip_prefix("agent_")
            && hex.len() == 32
            && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && let Ok(id) = Uuid::parse_str(hex)
        {
            return Ok(Self::Id(id));
        }
        let mut bytes = s.bytes();
        let valid = bytes.next().is_some_and(|b| b.is_ascii_lowercase())
            && s.len() <= 63
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self::Name(s.to_owned()))
        } else {
            Err("'agent' must name one of the tenant's agents: its name ([a-z0-9_-], starting with a letter, \
                 at most 63 characters) or its id"
                .to_owned())
        }
    }

    /// The MindsDB agent the registry keeps for agent `id` (agent-registry's `mindsdb_name`).
    pub(crate) fn mindsdb_name(id: &Uuid) -> Ident {
        // 6 + 32 characters of [a-z0-9_]: always a valid identifier.
        Ident::new(&format!("agent_{}", id.simple())).unwrap_or_else(|_| unreachable!("agent_<hex> is an identifier"))
    }
}

impl std::fmt::Display for AgentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Name(n) => f.write_str(n),
        }
    }
}

/// What the read model knows of a reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lookup {
    /// A live agent: its id and current name.
    Found { id: Uuid, name: String },
    /// The agent was deleted (its last name).
    Deleted { name: String },
    /// Nothing of that name or id.
    Unknown,
}

/// The read model of the tenants' agents (module documentation).
#[derive(Clone, Debug)]
pub(crate) struct AgentDirectory {
    pool: PgPool,
    /// agent-registry, asked with a caller's token for what the model does not know; `None`
    /// in unit tests.
    registry: Option<Upstream>,
    timeout: Duration,
}

impl AgentDirectory {
    pub(crate) fn new(pool: PgPool, registry: Option<Upstream>) -> Self {
        Self { pool, registry, timeout: Duration::from_secs(10) }
    }

    /// What the model knows of `r` in `tenant`. A name matches exactly or, when no live agent
    /// has it, with `-` and `_` taken as the same (users write `dashboard_builder` for
    /// `dashboard-builder`) if exactly one live agent matches that way.
    pub(crate) async fn lookup(&self, tenant: &TenantId, r: &AgentRef) -> Result<Lookup> {
        match r {
            AgentRef::Id(id) => {
                let row: Option<(String, bool)> =
                    sqlx::query_as("SELECT name, deleted FROM agent_directory WHERE tenant_id = $1 AND agent_id = $2")
                        .bind(tenant.as_str())
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(match row {
                    Some((name, false)) => Lookup::Found { id: *id, name },
                    Some((name, true)) => Lookup::Deleted { name },
                    None => Lookup::Unknown,
                })
            }
            AgentRef::Name(name) => {
                let exact: Option<(Uuid, String)> = sqlx::query_as(
                    "SELECT agent_id, name FROM agent_directory WHERE tenant_id = $1 AND name = $2 AND NOT deleted \
                     ORDER BY changed_at DESC LIMIT 1",
                )
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                if let Some((id, name)) = exact {
                    return Ok(Lookup::Found { id, name });
                }
                let similar: Vec<(Uuid, String)> = sqlx::query_as(
                    "SELECT agent_id, name FROM agent_directory WHERE tenant_id = $1 AND NOT deleted \
                     AND replace(name, '-', '_') = replace($2, '-', '_') LIMIT 2",
                )
                .bind(tenant.as_str())
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
                if let [(id, name)] = similar.as_slice() {
                    return Ok(Lookup::Found { id: *id, name: name.clone() });
                }
                let deleted: Option<(String,)> = sqlx::query_as(
                    "SELECT name FROM agent_directory WHERE tenant_id = $1 AND deleted \
                     AND replace(name, '-', '_') = replace($2, '-', '_') LIMIT 1",
                )
                .bind(tenant.as_str())
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
                Ok(deleted.map_or(Lookup::Unknown, |(name,)| Lookup::Deleted { name }))
            }
        }
    }

    /// The MindsDB agent a running node asks, from the model alone (a run has no token). The
    /// error is the node's, permanent: the graph names an agent the tenant does not have.
    pub(crate) async fn for_run(&self, tenant: &TenantId, r: &AgentRef) -> Result<Ident, String> {
        let lookup = self.lookup(tenant, r).await.map_err(|e| {
            tracing::warn!(error = %e, "agent directory read failed");
            "the agent directory could not be read".to_owned()
        })?;
        match (lookup, r) {
            (Lookup::Found { id, .. }, _) => Ok(AgentRef::mindsdb_name(&id)),
            (Lookup::Deleted { name }, _) => {
                Err(format!("agent '{r}' was deleted after the workflow was saved (its last name was '{name}')"))
            }
            // An id whose events this replica has not seen: the registry's MindsDB name
            // derives from the id, and a missing agent is reported by `missing_in_mindsdb`.
            (Lookup::Unknown, AgentRef::Id(id)) => Ok(AgentRef::mindsdb_name(id)),
            (Lookup::Unknown, AgentRef::Name(_)) => Err(format!(
                "agent '{r}' does not exist: no agent of the tenant has that name (was it renamed or deleted \
                 after the workflow was saved? GET /api/v1/agents lists the agents)"
            )),
        }
    }

    /// What `r` is, with `p`'s token to ask the registry what the model does not know; the
    /// answer is recorded. `None` when the registry cannot be asked (unreachable, or no
    /// registry configured).
    pub(crate) async fn check(&self, p: &Principal, r: &AgentRef) -> Result<Option<Lookup>> {
        let known = self.lookup(&p.tenant, r).await?;
        if !matches!(known, Lookup::Unknown) {
            return Ok(Some(known));
        }
        let Some(registry) = &self.registry else { return Ok(None) };
        let selectors = match r {
            AgentRef::Id(id) => vec![get_agent_request::Selector::Id(id.to_string())],
            AgentRef::Name(n) => {
                let mut names = vec![n.clone(), n.replace('_', "-"), n.replace('-', "_")];
                names.dedup();
                names.into_iter().map(get_agent_request::Selector::Name).collect()
            }
        };
        for selector in selectors {
            let mut client = registry.client(AgentRegistryServiceClient::new);
            let req = getlood_server::upstream_request(
                p,
                None,
                None,
                GetAgentRequest { selector: Some(selector) },
                Some(self.timeout),
            );
            match tokio::time::timeout(self.timeout, client.get_agent(req)).await {
                Ok(Ok(resp)) => {
                    let Some(agent) = resp.into_inner().agent else { continue };
                    let Ok(id) = Uuid::parse_str(&agent.id) else { continue };
                    self.record(&p.tenant, id, &agent.name, agent.version, false).await?;
                    return Ok(Some(Lookup::Found { id, name: agent.name }));
                }
                Ok(Err(status)) if status.code() == tonic::Code::NotFound => {}
                Ok(Err(status)) => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "agent registry lookup failed");
                    return Ok(None);
                }
                Err(_) => {
                    tracing::warn!("agent registry lookup timed out");
                    return Ok(None);
                }
            }
        }
        Ok(Some(Lookup::Unknown))
    }

    /// The agent nodes of `doc` whose agent the tenant does not have, as problems on those
    /// nodes (`graph.nodes[i].data.agent`). An agent that cannot be checked (registry
    /// unreachable and unknown here) is not a problem of the graph: the run checks again.
    pub(crate) async fn problems(&self, p: &Principal, doc: &GraphDoc) -> Result<Vec<FieldViolation>> {
        let mut problems = Vec::new();
        let mut seen: HashMap<AgentRef, Option<Lookup>> = HashMap::new();
        for (i, n) in doc.nodes.iter().enumerate() {
            if n.kind != "agent" {
                continue;
            }
            // A missing or malformed name is the graph validation's problem.
            let Some(r) = n.data.get("agent").and_then(|a| a.as_str()).and_then(|a| AgentRef::parse(a).ok()) else {
                continue;
            };
            let lookup = match seen.get(&r) {
                Some(l) => l.clone(),
                None => {
                    let l = self.check(p, &r).await?;
                    seen.insert(r.clone(), l.clone());
                    l
                }
            };
            let description = match lookup {
                Some(Lookup::Unknown) => {
                    format!("unknown agent '{r}': the tenant has no agent of that name or id (GET /api/v1/agents)")
                }
                Some(Lookup::Deleted { name }) => format!("agent '{r}' was deleted (its last name was '{name}')"),
                Some(Lookup::Found { .. }) | None => continue,
            };
            problems.push(FieldViolation {
                field: format!("graph.nodes[{i}].data.agent"),
                subject: n.id.clone(),
                description,
            });
        }
        Ok(problems)
    }

    /// The MindsDB agent of every `agent` node of `nodes`, for compiling a MindsDB job (its
    /// SQL names them); checked with `p`'s token. A node whose agent is not found is an error
    /// naming the node.
    pub(crate) async fn pin(&self, p: &Principal, nodes: &[NodeSpec]) -> Result<HashMap<AgentRef, Ident>> {
        let mut pinned = HashMap::new();
        for node in nodes {
            let (node_id, NodeKind::Agent { agent, .. }) = (&node.id, &node.kind) else { continue };
            if pinned.contains_key(agent) {
                continue;
            }
            let ident = match (self.check(p, agent).await?, agent) {
                (Some(Lookup::Found { id, .. }), _) | (None, &AgentRef::Id(id)) => AgentRef::mindsdb_name(&id),
                (None, AgentRef::Name(_)) => {
                    return Err(Error::Api(getlood_common::ApiError::new(
                        getlood_common::ErrorCode::Unavailable,
                        format!("node '{node_id}': agent '{agent}' could not be looked up in the agent registry"),
                    )));
                }
                (Some(_), _) => {
                    return Err(Error::FailedPrecondition(format!(
                        "node '{node_id}': the tenant has no agent '{agent}'"
                    )));
                }
            };
            pinned.insert(agent.clone(), ident);
        }
        Ok(pinned)
    }

    /// Records agent `id` of `tenant` at `version`: a newer version replaces what is known, a
    /// deletion is final, anything older or repeated changes nothing.
    pub(crate) async fn record(
        &self,
        tenant: &TenantId,
        id: Uuid,
        name: &str,
        version: i64,
        deleted: bool,
    ) -> Result<()> {
        record(&self.pool, tenant.as_str(), id, name, version, deleted).await?;
        Ok(())
    }

    /// Follows the registry's `agent.*` events of every tenant into the model until
    /// `shutdown`, from the sequence applied last; reconnects after failures.
    pub(crate) fn spawn_feed(&self, bus: EventBus, tracker: &TaskTracker, shutdown: CancellationToken) {
        let this = self.clone();
        tracker.spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let outcome = tokio::select! {
                    r = this.follow(&bus) => r,
                    () = shutdown.cancelled() => return,
                };
                match outcome {
                    Ok(()) => tracing::info!("agent event feed ended, following again"),
                    Err(e) => tracing::warn!(error = %e, "agent event feed failed, retrying"),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        });
    }

    async fn follow(&self, bus: &EventBus) -> Result<(), String> {
        let applied: Option<i64> = sqlx::query_scalar("SELECT sequence FROM agent_directory_cursor WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let applied = applied.unwrap_or(0).max(0) as u64;
        let follow = match bus.follow_all(Domain::Agent, StartAt::After(applied)).await {
            Err(EventError::Expired { requested, first_available }) => {
                // Events between were removed by the stream's retention: the agents they named
                // are looked up in the registry when a caller's token next meets them.
                tracing::info!(
                    applied = requested,
                    first = first_available,
                    "agent events before the stream's first sequence are gone"
                );
                bus.follow_all(Domain::Agent, StartAt::After(first_available - 1)).await
            }
            other => other,
        };
        let mut events = follow.map_err(|e| e.to_string())?.events;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| e.to_string())?;
            match event.decode() {
                Ok(envelope) => self.apply(&envelope, event.sequence).await.map_err(|e| e.to_string())?,
                Err(e) => tracing::debug!(subject = %event.subject, error = %e, "skipping undecodable agent event"),
            }
        }
        Ok(())
    }

    /// Applies one agent event and moves the cursor past it, together.
    async fn apply(&self, envelope: &EventEnvelope, sequence: u64) -> Result<(), sqlx::Error> {
        let change = match &envelope.payload {
            Some(Payload::AgentCreated(e)) => Some((&e.agent_id, &e.name, e.version, false)),
            Some(Payload::AgentUpdated(e)) => Some((&e.agent_id, &e.name, e.version, false)),
            Some(Payload::AgentDeleted(e)) => Some((&e.agent_id, &e.name, e.version, true)),
            _ => None,
        };
        let mut tx = self.pool.begin().await?;
        if let Some((id, name, version, deleted)) = change
            && let Ok(id) = Uuid::parse_str(id)
            && TenantId::parse(&envelope.tenant_id).is_ok()
        {
            record(&mut *tx, &envelope.tenant_id, id, name, version, deleted).await?;
        }
        sqlx::query(
            "INSERT INTO agent_directory_cursor (id, sequence) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET sequence = GREATEST(agent_directory_cursor.sequence, EXCLUDED.sequence)",
        )
        .bind(sequence as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }
}

async fn record<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    tenant: &str,
    id: Uuid,
    name: &str,
    version: i64,
    deleted: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agent_directory (tenant_id, agent_id, name, version, deleted) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, agent_id) DO UPDATE \
         SET name = EXCLUDED.name, version = EXCLUDED.version, deleted = EXCLUDED.deleted, changed_at = now() \
         WHERE NOT agent_directory.deleted AND (agent_directory.version < EXCLUDED.version \
               OR (agent_directory.version = EXCLUDED.version AND EXCLUDED.deleted))",
    )
    .bind(tenant)
    .bind(id)
    .bind(name)
    .bind(version)
    .bind(deleted)
    .execute(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_names_ids_or_the_registrys_mindsdb_names() {
        let id = Uuid::parse_str("01a24c19-0000-7000-8000-00000000abcd").unwrap();
        assert_eq!(AgentRef::parse("dashboard-builder"), Ok(AgentRef::Name("dashboard-builder".into())));
        assert_eq!(AgentRef::parse("data_analyzer"), Ok(AgentRef::Name("data_analyzer".into())));
        assert_eq!(AgentRef::parse(&id.to_string()), Ok(AgentRef::Id(id)));
        assert_eq!(AgentRef::parse(&format!("agent_{}", id.simple())), Ok(AgentRef::Id(id)));
        assert_eq!(AgentRef::mindsdb_name(&id).as_str(), format!("agent_{}", id.simple()));
        for bad in ["Not A Name", "", "1abc", "a.b", "agent;drop", &"a".repeat(64)] {
            assert!(AgentRef::parse(bad).is_err(), "{bad}");
        }
        // Not 32 hex digits: an ordinary name.
        assert_eq!(AgentRef::parse("agent_1"), Ok(AgentRef::Name("agent_1".into())));
    }
}
