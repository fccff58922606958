//! Postgres persistence of agents and skills. Every statement filters on `tenant_id`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use getlood_auth::TenantId;
use getlood_common::{ApiError, ErrorCode};
use getlood_proto::agent_registry::v1::{Agent, AgentData, ModelConfig, Skill};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::keys::StoredKey;
use crate::model::metadata_json;

/// Maps a database failure to the client: a unique violation is a conflict the client caused;
/// anything else is internal and logged here, once.
pub(crate) fn db_err(err: sqlx::Error) -> ApiError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        return ApiError::new(ErrorCode::AlreadyExists, "an object with this name already exists");
    }
    if let Some(message) = getlood_server::database_message(&err) {
        return ApiError::invalid_argument(message);
    }
    ApiError::internal(&err)
}

/// Names the object in a unique-violation error: `agent 'x' already exists`.
fn named_conflict(err: ApiError, kind: &str, name: &str) -> ApiError {
    if err.code == ErrorCode::AlreadyExists {
        ApiError::new(ErrorCode::AlreadyExists, format!("{kind} '{name}' already exists"))
    } else {
        err
    }
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    name: String,
    description: String,
    mindsdb_name: String,
    model_provider: String,
    model_name: String,
    model_base_url: Option<String>,
    has_api_key: bool,
    skills: Vec<String>,
    prompt_template: String,
    data_tables: Vec<String>,
    data_kbs: Vec<String>,
    metadata: serde_json::Value,
    version: i64,
    owner: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// An agent as stored, with the name of its MindsDB counterpart.
#[derive(Debug, Clone)]
pub(crate) struct StoredAgent {
    pub agent: Agent,
    pub mindsdb_name: String,
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

/// The MindsDB agent name of registry agent `id`: derived, so renames never touch MindsDB names.
pub(crate) fn mindsdb_name(id: &Uuid) -> String {
    format!("agent_{}", id.simple())
}

impl StoredAgent {
    /// Rebuilds the stored form from a cached message (the MindsDB name derives from the id).
    pub(crate) fn from_agent(agent: Agent) -> Option<Self> {
        let id = Uuid::parse_str(&agent.id).ok()?;
        Some(Self { mindsdb_name: mindsdb_name(&id), agent })
    }
}

impl From<AgentRow> for StoredAgent {
    fn from(r: AgentRow) -> Self {
        let metadata: HashMap<String, String> = r
            .metadata
            .as_object()
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect())
            .unwrap_or_default();
        let agent = Agent {
            id: r.id.to_string(),
            name: r.name,
            description: r.description,
            model: Some(ModelConfig {
                provider: r.model_provider,
                model_name: r.model_name,
                base_url: r.model_base_url,
                api_key: String::new(),
                has_api_key: r.has_api_key,
            }),
            skills: r.skills,
            prompt_template: r.prompt_template,
            data: Some(AgentData { tables: r.data_tables, knowledge_bases: r.data_kbs }),
            metadata,
            version: r.version,
            owner: r.owner,
            created_at: Some(ts(r.created_at)),
            updated_at: Some(ts(r.updated_at)),
            effective_data: None,
            effective_prompt_template: String::new(),
        };
        Self { agent, mindsdb_name: r.mindsdb_name }
    }
}

#[derive(sqlx::FromRow)]
struct SkillRow {
    name: String,
    description: String,
    tables: Vec<String>,
    knowledge_bases: Vec<String>,
    prompt_fragment: String,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SkillRow> for Skill {
    fn from(r: SkillRow) -> Self {
        Skill {
            name: r.name,
            description: r.description,
            tables: r.tables,
            knowledge_bases: r.knowledge_bases,
            prompt_fragment: r.prompt_fragment,
            version: r.version,
            created_at: Some(ts(r.created_at)),
            updated_at: Some(ts(r.updated_at)),
        }
    }
}

const AGENT_COLUMNS: &str = "id, name, description, mindsdb_name, model_provider, model_name, model_base_url, \
     has_api_key, skills, prompt_template, data_tables, data_kbs, metadata, version, owner, created_at, updated_at";

/// How an agent is looked up.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// By id.
    Id(Uuid),
    /// By name.
    Name(String),
}

/// The agent and skill tables.
#[derive(Clone)]
pub(crate) struct Store {
    pool: PgPool,
}

impl Store {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Postgres>, ApiError> {
        self.pool.begin().await.map_err(db_err)
    }

    pub(crate) async fn insert_agent(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        agent: &Agent,
        id: Uuid,
        owner: &str,
        api_key: Option<&StoredKey>,
    ) -> Result<StoredAgent, ApiError> {
        let model = agent.model.clone().unwrap_or_default();
        let data = agent.data.clone().unwrap_or_default();
        let sql = format!(
            "INSERT INTO agents (tenant_id, id, name, description, mindsdb_name, model_provider, model_name, \
             model_base_url, has_api_key, skills, prompt_template, data_tables, data_kbs, metadata, owner, \
             api_key, api_key_sealed) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17) RETURNING {AGENT_COLUMNS}"
        );
        let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id)
            .bind(&agent.name)
            .bind(&agent.description)
            .bind(mindsdb_name(&id))
            .bind(&model.provider)
            .bind(&model.model_name)
            .bind(&model.base_url)
            .bind(!model.api_key.is_empty())
            .bind(&agent.skills)
            .bind(&agent.prompt_template)
            .bind(&data.tables)
            .bind(&data.knowledge_bases)
            .bind(metadata_json(&agent.metadata))
            .bind(owner)
            .bind(api_key.map(|k| &k.value))
            .bind(api_key.is_some_and(|k| k.sealed))
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| named_conflict(db_err(e), "agent", &agent.name))?;
        Ok(row.into())
    }

    /// Reads one agent.
    pub(crate) async fn get_agent(
        &self,
        tenant: &TenantId,
        selector: &Selector,
    ) -> Result<Option<StoredAgent>, ApiError> {
        let row = match selector {
            Selector::Id(id) => {
                let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND id = $2");
                sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(*id)
                    .fetch_optional(&self.pool)
                    .await
            }
            Selector::Name(name) => {
                let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND name = $2");
                sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(sql))
                    .bind(tenant.as_str())
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
            }
        };
        Ok(row.map_err(db_err)?.map(StoredAgent::from))
    }

    /// Reads and locks one agent inside `tx`, so concurrent writers of it serialize.
    pub(crate) async fn lock_agent(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<Option<StoredAgent>, ApiError> {
        let sql = format!("SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND id = $2 FOR UPDATE");
        let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(row.map(StoredAgent::from))
    }

    pub(crate) async fn update_agent(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        agent: &Agent,
        api_key: Option<&StoredKey>,
    ) -> Result<StoredAgent, ApiError> {
        let model = agent.model.clone().unwrap_or_default();
        let data = agent.data.clone().unwrap_or_default();
        let id = Uuid::parse_str(&agent.id).map_err(|_| ApiError::invalid_argument("agent.id is not a uuid"))?;
        let sql = format!(
            "UPDATE agents SET name = $3, description = $4, model_provider = $5, model_name = $6, model_base_url = $7, \
             has_api_key = has_api_key OR $8, skills = $9, prompt_template = $10, data_tables = $11, data_kbs = $12, \
             metadata = $13, api_key = COALESCE($14, api_key), \
             api_key_sealed = CASE WHEN $14 IS NULL THEN api_key_sealed ELSE $15 END, \
             version = version + 1, updated_at = now() \
             WHERE tenant_id = $1 AND id = $2 RETURNING {AGENT_COLUMNS}"
        );
        let row: AgentRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(id)
            .bind(&agent.name)
            .bind(&agent.description)
            .bind(&model.provider)
            .bind(&model.model_name)
            .bind(&model.base_url)
            .bind(api_key.is_some())
            .bind(&agent.skills)
            .bind(&agent.prompt_template)
            .bind(&data.tables)
            .bind(&data.knowledge_bases)
            .bind(metadata_json(&agent.metadata))
            .bind(api_key.map(|k| &k.value))
            .bind(api_key.is_some_and(|k| k.sealed))
            .fetch_one(&mut **tx)
            .await
            .map_err(|e| named_conflict(db_err(e), "agent", &agent.name))?;
        Ok(row.into())
    }

    /// The API key stored for agent `id`, read apart from the agent so that it never reaches
    /// the cache: `None` when it has none, or was written before keys were kept here.
    pub(crate) async fn api_key(&self, tenant: &TenantId, id: Uuid) -> Result<Option<StoredKey>, ApiError> {
        let row: Option<(Option<String>, bool)> =
            sqlx::query_as("SELECT api_key, api_key_sealed FROM agents WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(row.and_then(|(value, sealed)| value.map(|value| StoredKey { value, sealed })))
    }

    pub(crate) async fn delete_agent(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        tenant: &TenantId,
        id: Uuid,
    ) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// A page of agents ordered by name, after `after_name`.
    pub(crate) async fn list_agents(
        &self,
        tenant: &TenantId,
        after_name: &str,
        limit: i64,
        owner: &str,
        metadata_filter: &HashMap<String, String>,
    ) -> Result<Vec<StoredAgent>, ApiError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 AND name > $2 \
             AND ($3 = '' OR owner = $3) AND metadata @> $4 ORDER BY name LIMIT $5"
        );
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(after_name)
            .bind(owner)
            .bind(metadata_json(metadata_filter))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(StoredAgent::from).collect())
    }

    /// Agents having any (or all) of `skills`, most matched skills first, then by name: the
    /// deterministic order the pipeline's agent selection relies on.
    pub(crate) async fn find_agents(
        &self,
        tenant: &TenantId,
        skills: &[String],
        all: bool,
        limit: i64,
    ) -> Result<Vec<StoredAgent>, ApiError> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 \
             AND (CASE WHEN $2 THEN skills @> $3 ELSE skills && $3 END) \
             ORDER BY cardinality(ARRAY(SELECT unnest(skills) INTERSECT SELECT unnest($3::text[]))) DESC, name \
             LIMIT $4"
        );
        let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.as_str())
            .bind(all)
            .bind(skills)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(StoredAgent::from).collect())
    }

    pub(crate) async fn insert_skill(&self, tenant: &TenantId, skill: &Skill) -> Result<Skill, ApiError> {
        let row: SkillRow = sqlx::query_as(
            "INSERT INTO skills (tenant_id, name, description, tables, knowledge_bases, prompt_fragment) \
             VALUES ($1,$2,$3,$4,$5,$6) \
             RETURNING name, description, tables, knowledge_bases, prompt_fragment, version, created_at, updated_at",
        )
        .bind(tenant.as_str())
        .bind(&skill.name)
        .bind(&skill.description)
        .bind(&skill.tables)
        .bind(&skill.knowledge_bases)
        .bind(&skill.prompt_fragment)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| named_conflict(db_err(e), "skill", &skill.name))?;
        Ok(row.into())
    }

    pub(crate) async fn skills(&self, tenant: &TenantId, names: &[String]) -> Result<Vec<Skill>, ApiError> {
        let rows: Vec<SkillRow> = sqlx::query_as(
            "SELECT name, description, tables, knowledge_bases, prompt_fragment, version, created_at, updated_at \
             FROM skills WHERE tenant_id = $1 AND name = ANY($2) ORDER BY name",
        )
        .bind(tenant.as_str())
        .bind(names)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Skill::from).collect())
    }

    pub(crate) async fn list_skills(&self, tenant: &TenantId, after: &str, limit: i64) -> Result<Vec<Skill>, ApiError> {
        let rows: Vec<SkillRow> = sqlx::query_as(
            "SELECT name, description, tables, knowledge_bases, prompt_fragment, version, created_at, updated_at \
             FROM skills WHERE tenant_id = $1 AND name > $2 ORDER BY name LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(Skill::from).collect())
    }

    /// Deletes a skill no agent uses; returns the names of the agents that still use it instead.
    pub(crate) async fn delete_skill(
        &self,
        tenant: &TenantId,
        name: &str,
        expected_version: i64,
    ) -> Result<Result<bool, Vec<String>>, ApiError> {
        let mut tx = self.begin().await?;
        let users: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM agents WHERE tenant_id = $1 AND $2 = ANY(skills) ORDER BY name LIMIT 20")
                .bind(tenant.as_str())
                .bind(name)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        if !users.is_empty() {
            return Ok(Err(users.into_iter().map(|(n,)| n).collect()));
        }
        let deleted = sqlx::query("DELETE FROM skills WHERE tenant_id = $1 AND name = $2 AND ($3 = 0 OR version = $3)")
            .bind(tenant.as_str())
            .bind(name)
            .bind(expected_version)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(Ok(deleted == 1))
    }
}
