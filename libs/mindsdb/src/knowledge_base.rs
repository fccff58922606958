//! Knowledge-base adapter: semantic memory in the tenant's project. Owned by the
//! event-dispatcher (conversation and workflow memory).
//!
//! Creation and inserts go through MindsDB's REST routes with JSON (no SQL text carries the
//! embedding key or a document); search is a `SELECT` whose query text is bound through
//! `params`.

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::client::{MindsdbClient, RestPath, Retry, TenantContext};
use crate::error::{MindsdbError, Result};
use crate::mask::mask_secrets;
use crate::sql::{Ident, SqlBuilder};

/// The embedding model of a knowledge base. MindsDB 26.1 allows the providers `openai`,
/// `azure_openai`, `bedrock`, `gemini`, `google`, `ollama`, `snowflake` (no sentence-transformers
/// or huggingface); any OpenAI-compatible endpoint works as `openai` with a `base_url`.
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    /// Provider.
    pub provider: String,
    /// Embedding model name.
    pub model_name: String,
    /// Provider key; never returned.
    pub api_key: Option<SecretString>,
    /// OpenAI-compatible base URL (`http://127.0.0.1:18081/v1` for the local embeddings).
    pub base_url: Option<String>,
}

/// A knowledge base to create.
#[derive(Debug, Clone)]
pub struct KnowledgeBaseSpec {
    /// Name in the tenant's project.
    pub name: Ident,
    /// Embedding model.
    pub embedding: EmbeddingSettings,
    /// Extra columns stored with each document and usable as filters.
    pub metadata_columns: Vec<Ident>,
    /// Chunk size in characters; documents longer than this are split (MindsDB's default
    /// splitter when unset).
    pub chunk_size: Option<u32>,
}

/// A document to insert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// Stable id; inserting the same id again replaces the document.
    pub id: String,
    /// The text that is embedded.
    pub content: String,
    /// Values for the knowledge base's metadata columns.
    pub metadata: Map<String, Value>,
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KbHit {
    /// Document id.
    pub id: String,
    /// The matching chunk's text.
    pub content: String,
    /// Similarity, higher is closer.
    pub relevance: Option<f64>,
    /// The document's metadata.
    pub metadata: Value,
}

/// A knowledge base as listed, secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeBaseInfo {
    /// Name.
    pub name: String,
    /// Embedding model settings with the key masked.
    pub embedding_model: Value,
    /// The metadata columns it was created with.
    pub metadata_columns: Vec<String>,
}

/// Creates, fills, searches and deletes the tenant's knowledge bases.
#[derive(Debug, Clone)]
pub struct KnowledgeBaseAdapter {
    client: MindsdbClient,
}

impl KnowledgeBaseAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    fn base(ctx: &TenantContext) -> RestPath {
        RestPath::new("/api/projects").id(&ctx.project()).fixed("/knowledge_bases")
    }

    /// Creates a knowledge base; MindsDB calls the embedding endpoint once to learn the
    /// dimension, so it must answer.
    pub async fn create(&self, ctx: &TenantContext, spec: &KnowledgeBaseSpec) -> Result<KnowledgeBaseInfo> {
        let e = &spec.embedding;
        let mut model = Map::new();
        model.insert("provider".into(), e.provider.clone().into());
        model.insert("model_name".into(), e.model_name.clone().into());
        if let Some(k) = &e.api_key {
            model.insert("api_key".into(), k.expose_secret().into());
        }
        if let Some(u) = &e.base_url {
            model.insert("base_url".into(), u.clone().into());
        }
        let mut kb = Map::new();
        kb.insert("name".into(), spec.name.as_str().into());
        kb.insert("embedding_model".into(), Value::Object(model));
        if !spec.metadata_columns.is_empty() {
            kb.insert("metadata_columns".into(), json!(spec.metadata_columns));
        }
        if let Some(size) = spec.chunk_size {
            kb.insert(
                "preprocessing".into(),
                json!({"type": "text_chunking", "text_chunking_config": {"chunk_size": size, "chunk_overlap": 0}}),
            );
        }
        let body = json!({ "knowledge_base": kb });
        let v = self
            .client
            .rest(ctx, "kb.create", Method::POST, &Self::base(ctx), Some(&body), Retry::OnlyIfUnsent)
            .await?;
        Ok(info_from_json(&v))
    }

    /// Inserts (or replaces, by id) documents; synchronous: searchable when this returns.
    pub async fn insert(&self, ctx: &TenantContext, name: &Ident, docs: &[Document]) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        for d in docs {
            check_doc_id(&d.id)?;
            // MindsDB 26.1 stores whitespace-only content as an empty chunk: refuse it rather
            // than lose it silently.
            if d.content.trim().is_empty() {
                return Err(MindsdbError::InvalidArgument("document content is empty or only whitespace".to_owned()));
            }
        }
        let rows: Vec<Value> = docs
            .iter()
            .map(|d| {
                let mut row = d.metadata.clone();
                row.insert("id".into(), d.id.clone().into());
                row.insert("content".into(), d.content.clone().into());
                Value::Object(row)
            })
            .collect();
        let body = json!({ "knowledge_base": { "rows": rows } });
        // Inserting by id is an upsert, so a repeat leaves the same documents.
        self.client
            .rest(ctx, "kb.insert", Method::PUT, &Self::base(ctx).id(name), Some(&body), Retry::Idempotent)
            .await?;
        Ok(())
    }

    /// The `top_k` chunks closest to `query`.
    pub async fn search(&self, ctx: &TenantContext, name: &Ident, query: &str, top_k: u32) -> Result<Vec<KbHit>> {
        if top_k == 0 || top_k > 1000 {
            return Err(MindsdbError::InvalidArgument("top_k must be between 1 and 1000".to_owned()));
        }
        let sql = SqlBuilder::new()
            .kw("SELECT id, chunk_content, relevance, metadata FROM")
            .qualified(&ctx.project(), name)
            .kw("WHERE content =")
            .value(query)
            .kw("LIMIT")
            .int(i64::from(top_k))
            .build();
        let t = self.client.query_idempotent(ctx, "kb.search", &sql).await?.into_table();
        Ok(t.rows
            .iter()
            .map(|r| KbHit {
                id: t.text(r, "id").unwrap_or_default(),
                content: t.text(r, "chunk_content").unwrap_or_default(),
                relevance: t.cell(r, "relevance").and_then(Value::as_f64),
                metadata: parse_metadata(t.cell(r, "metadata")),
            })
            .collect())
    }

    /// The stored chunks of document `doc_id`, in chunk order (one chunk unless the document is
    /// longer than the chunk size).
    pub async fn get(&self, ctx: &TenantContext, name: &Ident, doc_id: &str) -> Result<Vec<KbHit>> {
        check_doc_id(doc_id)?;
        let sql = SqlBuilder::new()
            .kw("SELECT id, chunk_id, chunk_content, metadata FROM")
            .qualified(&ctx.project(), name)
            .kw("WHERE id =")
            .value(doc_id)
            .build();
        let t = self.client.query_idempotent(ctx, "kb.get", &sql).await?.into_table();
        let mut rows: Vec<(String, KbHit)> = t
            .rows
            .iter()
            .map(|r| {
                let hit = KbHit {
                    id: t.text(r, "id").unwrap_or_default(),
                    content: t.text(r, "chunk_content").unwrap_or_default(),
                    relevance: None,
                    metadata: parse_metadata(t.cell(r, "metadata")),
                };
                (t.text(r, "chunk_id").unwrap_or_default(), hit)
            })
            .collect();
        // chunk ids read `<id>:<column>:<n>of<total>:<start>to<end>`; order by start offset.
        rows.sort_by_key(|(chunk, _)| chunk_start(chunk));
        Ok(rows.into_iter().map(|(_, h)| h).collect())
    }

    /// The knowledge bases of the tenant's project.
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<KnowledgeBaseInfo>> {
        let v = self.client.rest(ctx, "kb.list", Method::GET, &Self::base(ctx), None, Retry::Idempotent).await?;
        Ok(v.as_array().map(|a| a.iter().map(info_from_json).collect()).unwrap_or_default())
    }

    /// One knowledge base of the tenant's project; `NotFound` if absent.
    pub async fn describe(&self, ctx: &TenantContext, name: &Ident) -> Result<KnowledgeBaseInfo> {
        let v = self
            .client
            .rest(ctx, "kb.describe", Method::GET, &Self::base(ctx).id(name), None, Retry::Idempotent)
            .await?;
        Ok(info_from_json(&v))
    }

    /// Deletes a knowledge base and its vectors; `NotFound` if absent.
    pub async fn delete(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP KNOWLEDGE_BASE").qualified(&ctx.project(), name).build();
        self.client.query(ctx, "kb.delete", &sql).await?;
        Ok(())
    }
}

/// Document ids: 1-128 characters of `[A-Za-z0-9_.:-]`.
///
/// A bound `WHERE id = :p` is safe in MindsDB's own parser, but MindsDB 26.1 then re-renders the
/// value as SQL text for the knowledge base's vector store (`duckdb_faiss`), escaping `'` as
/// `\'`, which DuckDB does not honour: a quote in an id breaks (or could steer) that inner
/// query. Ids are platform-made keys (event ids, uuids), so they are restricted instead;
/// document *content* travels as JSON and may hold anything.
pub const DOC_ID_PATTERN: &str = "^[A-Za-z0-9_.:-]{1,128}$";

fn check_doc_id(doc_id: &str) -> Result<()> {
    let ok = !doc_id.is_empty()
        && doc_id.len() <= 128
        && doc_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(MindsdbError::InvalidArgument(format!("invalid document id: must match {DOC_ID_PATTERN}")))
    }
}

fn parse_metadata(cell: Option<&Value>) -> Value {
    match cell {
        // MindsDB sends metadata as JSON text when the column is selected by name (an object in `*`).
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

fn chunk_start(chunk_id: &str) -> u64 {
    chunk_id.rsplit(':').next().and_then(|r| r.split("to").next()).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn info_from_json(v: &Value) -> KnowledgeBaseInfo {
    let mut embedding_model = v.get("embedding_model").cloned().unwrap_or(Value::Null);
    mask_secrets(&mut embedding_model);
    let metadata_columns = v
        .get("metadata_columns")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    KnowledgeBaseInfo {
        name: v.get("name").and_then(Value::as_str).unwrap_or_default().to_owned(),
        embedding_model,
        metadata_columns,
    }
}
