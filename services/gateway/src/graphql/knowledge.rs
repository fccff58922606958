//! Knowledge bases over GraphQL: the tenant's own, through the REST routes' calls
//! (`crate::kb_api`) and permissions; merged into the root `Query` and `Mutation`.

use async_graphql::{Context, InputObject, Object, SimpleObject};
use getlood_auth::Permission;
use getlood_proto::event_dispatcher::v1 as dispatcher;

use super::guard::{Need, caller, gql_error, state};
use super::types::{Deleted, UPSTREAM_FIELD_COST};
use crate::RouteClass;
use crate::kb_api;

/// A knowledge base of the tenant.
#[derive(Debug, SimpleObject)]
pub(crate) struct KnowledgeBase {
    /// Name in the tenant's project; agents list it in `data.knowledge_bases`.
    pub name: String,
    /// The embedding model's name (the platform's).
    pub embedding_model: String,
    /// Metadata columns documents may carry.
    pub metadata_columns: Vec<String>,
}

impl From<dispatcher::KnowledgeBase> for KnowledgeBase {
    fn from(kb: dispatcher::KnowledgeBase) -> Self {
        Self { name: kb.name, embedding_model: kb.embedding_model, metadata_columns: kb.metadata_columns }
    }
}

/// One metadata entry of a document or hit.
#[derive(Debug, SimpleObject, InputObject)]
#[graphql(input_name = "MetadataEntryInput")]
pub(crate) struct MetadataEntry {
    pub key: String,
    pub value: String,
}

/// One chunk found by a search.
#[derive(Debug, SimpleObject)]
pub(crate) struct KnowledgeBaseHit {
    pub content: String,
    pub document_id: String,
    pub metadata: Vec<MetadataEntry>,
    /// Relevance in [0, 1], higher is better.
    pub relevance: f64,
}

/// A document to insert.
#[derive(Debug, InputObject)]
pub(crate) struct DocumentInput {
    pub id: String,
    pub content: String,
    #[graphql(default)]
    pub metadata: Vec<MetadataEntry>,
}

/// Knowledge-base reads.
#[derive(Debug, Default)]
pub(crate) struct KnowledgeQuery;

#[Object]
impl KnowledgeQuery {
    /// The tenant's knowledge bases, by name (never the platform's memory one).
    #[graphql(
        guard = "Need::to(Permission::KnowledgeBasesRead)",
        complexity = "UPSTREAM_FIELD_COST + 20 * child_complexity"
    )]
    async fn knowledge_bases(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<KnowledgeBase>> {
        let kbs = kb_api::list_knowledge_bases(state(ctx)?, caller(ctx)?).await.map_err(gql_error)?;
        Ok(kbs.into_iter().map(Into::into).collect())
    }

    /// The knowledge base `name`.
    #[graphql(
        guard = "Need::to(Permission::KnowledgeBasesRead)",
        complexity = "UPSTREAM_FIELD_COST + child_complexity"
    )]
    async fn knowledge_base(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<KnowledgeBase> {
        Ok(kb_api::get_knowledge_base(state(ctx)?, caller(ctx)?, name).await.map_err(gql_error)?.into())
    }

    /// Semantic search in `name`, best first (`top_k` 1..=50, default 5).
    #[graphql(
        guard = "Need::write(Permission::KnowledgeBasesRead, RouteClass::Search)",
        complexity = "UPSTREAM_FIELD_COST + 50 * child_complexity"
    )]
    async fn search_knowledge_base(
        &self,
        ctx: &Context<'_>,
        name: String,
        query: String,
        top_k: Option<u32>,
    ) -> async_graphql::Result<Vec<KnowledgeBaseHit>> {
        let hits =
            kb_api::search_knowledge_base(state(ctx)?, caller(ctx)?, name, query, top_k).await.map_err(gql_error)?;
        Ok(hits
            .into_iter()
            .map(|h| KnowledgeBaseHit {
                content: h.content,
                document_id: h.document_id,
                metadata: h.metadata.into_iter().map(|(key, value)| MetadataEntry { key, value }).collect(),
                relevance: h.relevance,
            })
            .collect())
    }
}

/// Knowledge-base writes.
#[derive(Debug, Default)]
pub(crate) struct KnowledgeMutation;

#[Object]
impl KnowledgeMutation {
    /// Creates a knowledge base (the platform's embedding model).
    #[graphql(guard = "Need::write(Permission::KnowledgeBasesWrite, RouteClass::Write)")]
    async fn create_knowledge_base(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default)] metadata_columns: Vec<String>,
    ) -> async_graphql::Result<KnowledgeBase> {
        let kb = kb_api::create_knowledge_base(state(ctx)?, caller(ctx)?, name, metadata_columns)
            .await
            .map_err(gql_error)?;
        Ok(kb.into())
    }

    /// Deletes the knowledge base `name` and its documents.
    #[graphql(guard = "Need::write(Permission::KnowledgeBasesWrite, RouteClass::Write)")]
    async fn delete_knowledge_base(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Deleted> {
        kb_api::delete_knowledge_base(state(ctx)?, caller(ctx)?, name.clone()).await.map_err(gql_error)?;
        Ok(Deleted { id: name, version: None })
    }

    /// Inserts or replaces documents of `name`, all or none; answers how many.
    #[graphql(guard = "Need::write(Permission::KnowledgeBasesWrite, RouteClass::Write)")]
    async fn insert_documents(
        &self,
        ctx: &Context<'_>,
        name: String,
        documents: Vec<DocumentInput>,
    ) -> async_graphql::Result<i32> {
        let documents = documents
            .into_iter()
            .map(|d| dispatcher::KnowledgeBaseDocument {
                id: d.id,
                content: d.content,
                metadata: d.metadata.into_iter().map(|m| (m.key, m.value)).collect(),
            })
            .collect();
        kb_api::insert_knowledge_documents(state(ctx)?, caller(ctx)?, name, documents).await.map_err(gql_error)
    }
}
