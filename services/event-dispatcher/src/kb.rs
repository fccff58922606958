//! The tenants' own knowledge bases: create, list, read, delete, insert documents and search,
//! through the Knowledge-base adapter, in the caller's tenant project only (the tenant comes from
//! the verified token; MindsDB's `company-id` is that tenant).
//!
//! Every knowledge base is embedded with the platform's embedding model (`app.memory.embedding`):
//! a tenant never gives MindsDB an endpoint or a key to call. The platform's own knowledge bases
//! (the memory one, `app.memory.knowledge_base`, holding every user's turns, and anything named
//! `getlood_*`) are neither listed nor readable, writable or deletable here; MindsDB's project
//! tables (`models`, `agents`, ...) cannot be taken as names.

use std::collections::{HashMap, HashSet};

use getlood_auth::Principal;
use getlood_mindsdb::{
    Document, EmbeddingSettings, Ident, KbHit, KnowledgeBaseAdapter, KnowledgeBaseInfo, KnowledgeBaseSpec,
    MindsdbClient, MindsdbError, ProjectAdapter, TenantContext,
};
use getlood_proto::event_dispatcher::v1::{
    InsertDocumentsRequest, KnowledgeBase, KnowledgeBaseDocument, KnowledgeBaseHit, SearchKnowledgeBaseRequest,
};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::settings::{KnowledgeBaseSettings, MemorySettings};

/// Names of MindsDB's own tables in a project, which a knowledge base would shadow.
const PROJECT_TABLES: [&str; 9] =
    ["agents", "chatbots", "jobs", "jobs_history", "knowledge_bases", "models", "skills", "triggers", "views"];

/// Columns every knowledge base has, which metadata columns cannot be named.
const KB_COLUMNS: [&str; 7] = ["id", "content", "chunk_id", "chunk_content", "distance", "relevance", "metadata"];

/// Longest search query, in characters.
const MAX_QUERY_CHARS: usize = 4000;
/// Most hits one search returns.
const MAX_TOP_K: i32 = 50;
/// Most metadata columns of one knowledge base.
const MAX_METADATA_COLUMNS: usize = 16;
/// Longest metadata value, in characters.
const MAX_METADATA_VALUE_CHARS: usize = 1024;

/// The tenants' knowledge bases.
#[derive(Clone)]
pub(crate) struct KnowledgeBases {
    kb: KnowledgeBaseAdapter,
    projects: ProjectAdapter,
    embedding: EmbeddingSettings,
    memory_name: String,
    limits: KnowledgeBaseSettings,
}

fn ctx(p: &Principal) -> TenantContext {
    TenantContext::new(p.tenant.clone(), p.user.clone())
}

/// Whether `name` is one of the platform's, never a tenant's to touch.
fn is_platform_name(name: &str, memory_name: &str) -> bool {
    name == memory_name || name.starts_with("getlood_")
}

impl KnowledgeBases {
    pub(crate) fn new(client: MindsdbClient, memory: &MemorySettings, limits: &KnowledgeBaseSettings) -> Self {
        Self {
            kb: KnowledgeBaseAdapter::new(client.clone()),
            projects: ProjectAdapter::new(client),
            embedding: EmbeddingSettings {
                provider: memory.embedding.provider.clone(),
                model_name: memory.embedding.model_name.clone(),
                api_key: memory.embedding.api_key.clone(),
                base_url: memory.embedding.base_url.clone(),
            },
            memory_name: memory.knowledge_base.clone(),
            limits: limits.clone(),
        }
    }

    /// The knowledge base `name` names, if a tenant may use that name.
    fn name(&self, field: &str, name: &str) -> Result<Ident> {
        let mut bytes = name.bytes();
        let shape = matches!(bytes.next(), Some(b'a'..=b'z'))
            && name.len() <= 63
            && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !shape {
            return Err(Error::InvalidArgument(format!(
                "{field} '{}' is invalid: use 1-63 characters of [a-z0-9_], starting with a letter",
                truncate(name)
            )));
        }
        if is_platform_name(name, &self.memory_name) {
            return Err(Error::InvalidArgument(format!(
                "{field} '{name}' is reserved for the platform's own knowledge bases"
            )));
        }
        if PROJECT_TABLES.contains(&name) {
            return Err(Error::InvalidArgument(format!("{field} '{name}' is the name of a MindsDB project table")));
        }
        Ok(Ident::new(name)?)
    }

    pub(crate) async fn create(
        &self,
        principal: &Principal,
        name: &str,
        metadata_columns: &[String],
    ) -> Result<KnowledgeBase> {
        let name = self.name("name", name)?;
        if metadata_columns.len() > MAX_METADATA_COLUMNS {
            return Err(Error::InvalidArgument(format!(
                "metadata_columns has more than {MAX_METADATA_COLUMNS} entries"
            )));
        }
        let mut columns = Vec::with_capacity(metadata_columns.len());
        let mut seen = HashSet::new();
        for (i, column) in metadata_columns.iter().enumerate() {
            let shape = column.bytes().next().is_some_and(|b| b.is_ascii_lowercase()) && Ident::new(column).is_ok();
            if !shape {
                return Err(Error::InvalidArgument(format!(
                    "metadata_columns[{i}] '{}' is invalid: use 1-63 characters of [a-z0-9_], starting with a letter",
                    truncate(column)
                )));
            }
            if KB_COLUMNS.contains(&column.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "metadata_columns[{i}] '{column}' is a column every knowledge base already has"
                )));
            }
            if !seen.insert(column.as_str()) {
                return Err(Error::InvalidArgument(format!("metadata_columns[{i}] '{column}' is listed twice")));
            }
            columns.push(Ident::new(column)?);
        }
        let ctx = ctx(principal);
        let existing = self.list_infos(&ctx).await?;
        if existing.iter().any(|kb| kb.name == name.as_str()) {
            return Err(Error::AlreadyExists(format!("knowledge base '{name}' already exists")));
        }
        if existing.len() >= self.limits.max_per_tenant {
            return Err(Error::ResourceExhausted(format!(
                "the tenant already has {} knowledge bases, the most allowed",
                self.limits.max_per_tenant
            )));
        }
        self.projects.ensure(&ctx).await?;
        let spec =
            KnowledgeBaseSpec { name, embedding: self.embedding.clone(), metadata_columns: columns, chunk_size: None };
        let info = self.kb.create(&ctx, &spec).await?;
        tracing::info!(tenant = %ctx.tenant, user = %ctx.user, kb = %spec.name, "knowledge base created");
        Ok(self.to_proto(info))
    }

    /// The tenant's own knowledge bases (an absent project is none).
    async fn list_infos(&self, ctx: &TenantContext) -> Result<Vec<KnowledgeBaseInfo>> {
        let all = match self.kb.list(ctx).await {
            Ok(all) => all,
            Err(MindsdbError::NotFound(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        let mut own: Vec<_> = all.into_iter().filter(|kb| !is_platform_name(&kb.name, &self.memory_name)).collect();
        own.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(own)
    }

    pub(crate) async fn list(&self, principal: &Principal) -> Result<Vec<KnowledgeBase>> {
        Ok(self.list_infos(&ctx(principal)).await?.into_iter().map(|i| self.to_proto(i)).collect())
    }

    async fn describe(&self, ctx: &TenantContext, name: &Ident) -> Result<KnowledgeBaseInfo> {
        match self.kb.describe(ctx, name).await {
            Ok(info) => Ok(info),
            Err(MindsdbError::NotFound(_)) => Err(not_found(name)),
            Err(err) => Err(err.into()),
        }
    }

    pub(crate) async fn get(&self, principal: &Principal, name: &str) -> Result<KnowledgeBase> {
        let name = self.name("name", name)?;
        Ok(self.to_proto(self.describe(&ctx(principal), &name).await?))
    }

    pub(crate) async fn delete(&self, principal: &Principal, name: &str) -> Result<()> {
        let name = self.name("name", name)?;
        let ctx = ctx(principal);
        // DROP's own "not found" text differs by release; asking first gives one answer.
        self.describe(&ctx, &name).await?;
        match self.kb.delete(&ctx, &name).await {
            Ok(()) => {}
            Err(MindsdbError::NotFound(_)) => return Err(not_found(&name)),
            Err(err) => return Err(err.into()),
        }
        tracing::info!(tenant = %ctx.tenant, user = %ctx.user, kb = %name, "knowledge base deleted");
        Ok(())
    }

    pub(crate) async fn insert(&self, principal: &Principal, req: &InsertDocumentsRequest) -> Result<usize> {
        let name = self.name("name", &req.name)?;
        self.check_documents(&req.documents)?;
        let ctx = ctx(principal);
        let info = self.describe(&ctx, &name).await?;
        let columns: HashSet<&str> = info.metadata_columns.iter().map(String::as_str).collect();
        let mut docs = Vec::with_capacity(req.documents.len());
        for (i, d) in req.documents.iter().enumerate() {
            let mut metadata = Map::new();
            for (k, v) in &d.metadata {
                if !columns.contains(k.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "documents[{i}].metadata key '{}' is not a metadata column of '{name}' ({})",
                        truncate(k),
                        if columns.is_empty() { "it has none".to_owned() } else { info.metadata_columns.join(", ") }
                    )));
                }
                metadata.insert(k.clone(), Value::String(v.clone()));
            }
            docs.push(Document { id: d.id.clone(), content: d.content.clone(), metadata });
        }
        match self.kb.insert(&ctx, &name, &docs).await {
            Ok(()) => {}
            Err(MindsdbError::NotFound(_)) => return Err(not_found(&name)),
            Err(err) => return Err(err.into()),
        }
        tracing::info!(tenant = %ctx.tenant, user = %ctx.user, kb = %name, documents = docs.len(), "documents inserted");
        Ok(docs.len())
    }

    /// Checks a whole insert before anything is written; the message names the first bad
    /// document by its index.
    fn check_documents(&self, documents: &[KnowledgeBaseDocument]) -> Result<()> {
        let limits = &self.limits;
        if documents.is_empty() {
            return Err(Error::InvalidArgument("documents is empty: give at least one document".to_owned()));
        }
        if documents.len() > limits.max_documents_per_insert {
            return Err(Error::InvalidArgument(format!(
                "documents has {} entries, more than the {} allowed in one request",
                documents.len(),
                limits.max_documents_per_insert
            )));
        }
        let mut total = 0usize;
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, d) in documents.iter().enumerate() {
            let id_ok = !d.id.is_empty()
                && d.id.len() <= 128
                && d.id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
            if !id_ok {
                return Err(Error::InvalidArgument(format!(
                    "documents[{i}].id is invalid: must match {}",
                    getlood_mindsdb::DOC_ID_PATTERN
                )));
            }
            if let Some(first) = ids.insert(&d.id, i) {
                return Err(Error::InvalidArgument(format!(
                    "documents[{i}].id '{}' repeats documents[{first}].id",
                    d.id
                )));
            }
            if d.content.trim().is_empty() {
                return Err(Error::InvalidArgument(format!("documents[{i}].content is empty or only whitespace")));
            }
            if d.content.contains('\0') {
                return Err(Error::InvalidArgument(format!("documents[{i}].content contains a NUL character")));
            }
            let chars = d.content.chars().count();
            if chars > limits.max_document_chars {
                return Err(Error::InvalidArgument(format!(
                    "documents[{i}].content has {chars} characters, more than {}",
                    limits.max_document_chars
                )));
            }
            if d.metadata.len() > MAX_METADATA_COLUMNS {
                return Err(Error::InvalidArgument(format!(
                    "documents[{i}].metadata has more than {MAX_METADATA_COLUMNS} entries"
                )));
            }
            for v in d.metadata.values() {
                if v.chars().count() > MAX_METADATA_VALUE_CHARS || v.contains('\0') {
                    return Err(Error::InvalidArgument(format!(
                        "documents[{i}].metadata values must be at most {MAX_METADATA_VALUE_CHARS} characters, without NUL"
                    )));
                }
            }
            total += d.content.len() + d.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        }
        if total > limits.max_insert_bytes {
            return Err(Error::InvalidArgument(format!(
                "the documents hold {total} bytes, more than the {} allowed in one request",
                limits.max_insert_bytes
            )));
        }
        Ok(())
    }

    pub(crate) async fn search(
        &self,
        principal: &Principal,
        req: &SearchKnowledgeBaseRequest,
    ) -> Result<Vec<KnowledgeBaseHit>> {
        let name = self.name("name", &req.name)?;
        let query = req.query.trim();
        if query.is_empty() {
            return Err(Error::InvalidArgument("query is required: what to search the knowledge base for".to_owned()));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(Error::InvalidArgument(format!("query is longer than {MAX_QUERY_CHARS} characters")));
        }
        let top_k = match req.top_k {
            0 => 5,
            k @ 1..=MAX_TOP_K => u32::try_from(k).unwrap_or(5),
            _ => return Err(Error::InvalidArgument(format!("top_k must be between 1 and {MAX_TOP_K}"))),
        };
        let ctx = ctx(principal);
        let hits = match self.kb.search(&ctx, &name, query, top_k).await {
            Ok(hits) => hits,
            Err(MindsdbError::NotFound(_)) => return Err(not_found(&name)),
            Err(err) => return Err(err.into()),
        };
        Ok(hits.into_iter().map(to_hit).collect())
    }

    fn to_proto(&self, info: KnowledgeBaseInfo) -> KnowledgeBase {
        let embedding_model = info
            .embedding_model
            .get("model_name")
            .and_then(Value::as_str)
            .unwrap_or(&self.embedding.model_name)
            .to_owned();
        KnowledgeBase { name: info.name, embedding_model, metadata_columns: info.metadata_columns }
    }
}

fn not_found(name: &Ident) -> Error {
    Error::NotFound(format!("knowledge base '{name}' not found"))
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect::<String>().escape_debug().to_string()
}

fn to_hit(hit: KbHit) -> KnowledgeBaseHit {
    // MindsDB adds its own bookkeeping (`_chunk_index`, `_source`, ...) to the metadata: only
    // the document's own columns are shown.
    let metadata = hit
        .metadata
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| !k.starts_with('_') && !v.is_null())
                .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect()
        })
        .unwrap_or_default();
    KnowledgeBaseHit {
        document_id: hit.id,
        content: hit.content,
        relevance: hit.relevance.unwrap_or(0.0).clamp(0.0, 1.0),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kbs() -> KnowledgeBases {
        let client = MindsdbClient::new(&getlood_mindsdb::MindsdbConfig::default()).unwrap();
        KnowledgeBases::new(client, &MemorySettings::default(), &KnowledgeBaseSettings::default())
    }

    #[test]
    fn names_are_checked_and_the_platforms_are_reserved() {
        let k = kbs();
        assert!(k.name("name", "docs_2").is_ok());
        for bad in ["", "Docs", "_x", "9a", "a-b", "a.b", &"a".repeat(64)] {
            assert!(k.name("name", bad).unwrap_err().to_string().contains("invalid"), "{bad}");
        }
        for reserved in ["getlood_memory", "getlood_anything"] {
            assert!(k.name("name", reserved).unwrap_err().to_string().contains("reserved"), "{reserved}");
        }
        assert!(k.name("name", "models").unwrap_err().to_string().contains("project table"));
    }

    #[test]
    fn inserts_are_checked_whole() {
        let k = kbs();
        let doc = |id: &str, content: &str| KnowledgeBaseDocument {
            id: id.to_owned(),
            content: content.to_owned(),
            metadata: HashMap::new(),
        };
        let msg = |docs: &[KnowledgeBaseDocument]| k.check_documents(docs).unwrap_err().to_string();
        assert!(k.check_documents(&[doc("a", "x"), doc("b:1", "y")]).is_ok());
        assert!(msg(&[]).contains("empty"));
        assert!(msg(&[doc("a", "x"), doc("a'b", "y")]).starts_with("documents[1].id is invalid"));
        assert!(msg(&[doc("a", "x"), doc("a", "y")]).contains("repeats documents[0]"));
        assert!(msg(&[doc("a", "  ")]).contains("documents[0].content is empty"));
        assert!(msg(&[doc("a", "x\0y")]).contains("NUL"));
        let many: Vec<_> = (0..101).map(|i| doc(&format!("d{i}"), "x")).collect();
        assert!(msg(&many).contains("more than the 100"));
        assert!(msg(&[doc("a", &"x".repeat(40_000))]).contains("more than 32000"));
    }

    #[test]
    fn hits_hide_mindsdb_bookkeeping() {
        let hit = KbHit {
            id: "d1".into(),
            content: "c".into(),
            relevance: Some(1.4),
            metadata: serde_json::json!({"topic": "pets", "lang": null, "_chunk_index": 0}),
        };
        let h = to_hit(hit);
        assert_eq!(h.relevance, 1.0);
        assert_eq!(h.metadata.len(), 1);
        assert_eq!(h.metadata["topic"], "pets");
    }
}
