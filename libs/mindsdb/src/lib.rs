//! MindsDB 26.1 backbone of GETLOOD: a pooled, rate-limited HTTP client, the one safe SQL
//! builder, and the six tenant-scoped adapters of the design brief.
//!
//! * [`MindsdbClient`] talks to MindsDB's HTTP API (`POST /api/sql/query` with `params`
//!   binding, and the REST routes for objects whose settings cannot be bound as params).
//!   Every request carries `company-id`/`user-id` from a [`TenantContext`] built from the
//!   verified token.
//! * [`sql`] is the only code that writes SQL text.
//! * Adapters: [`ProjectAdapter`], [`AgentAdapter`], [`ModelAdapter`],
//!   [`KnowledgeBaseAdapter`], [`JobAdapter`], [`DatabaseAdapter`]. Each works inside the
//!   tenant's project `t_<tenant>` and returns secrets masked.
//!
//! Comments state the MindsDB 26.1 behaviour behind each choice where the choice is made.

mod agent;
mod client;
mod config;
mod database;
mod error;
mod fair;
mod job;
mod knowledge_base;
pub mod mask;
mod model;
mod project;
pub mod sql;

pub use agent::{AgentAdapter, AgentEvent, AgentInfo, AgentMessage, AgentMode, AgentSpec, AgentStream, LlmSettings};
pub use client::{METRIC_DURATION, METRIC_ERRORS, MindsdbClient, QueryOutput, TENANT_USER_ID, Table, TenantContext};
pub use config::MindsdbConfig;
pub use database::{
    ColumnInfo, ConnectionCheck, DatabaseAdapter, DatabaseEngine, DatabaseInfo, DatabaseSpec, PostgresSpec, TableInfo,
    connection_reason,
};
pub use error::{MindsdbError, Result};
pub use fair::{METRIC_LIMIT, METRIC_PROBE, METRIC_WAITING};
pub use job::{JobAdapter, JobInfo, JobRun, JobSpec, Schedule, ScheduleUnit};
pub use knowledge_base::{
    DOC_ID_PATTERN, Document, EmbeddingSettings, KbHit, KnowledgeBaseAdapter, KnowledgeBaseInfo, KnowledgeBaseSpec,
};
pub use model::{EngineInfo, EngineSpec, ModelAdapter, ModelInfo, ModelSpec};
pub use project::ProjectAdapter;
pub use sql::{Ident, Sql, SqlBuilder, check_inline_str};
