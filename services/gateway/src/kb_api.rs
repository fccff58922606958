//! `/api/v1/knowledge-bases`: the tenant's own knowledge bases (the event dispatcher's
//! Knowledge-base adapter), as thin JSON mappings onto its gRPC API called with the caller's
//! token. The dispatcher checks names, bounds and the reserved names (the platform's memory
//! knowledge base is never reachable here); the gateway only shapes JSON.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use getlood_common::ApiError;
use getlood_proto::event_dispatcher::v1::{
    CreateKnowledgeBaseRequest, DeleteKnowledgeBaseRequest, GetKnowledgeBaseRequest, InsertDocumentsRequest,
    KnowledgeBase, KnowledgeBaseDocument, KnowledgeBaseHit, ListKnowledgeBasesRequest, SearchKnowledgeBaseRequest,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::ApiJson;
use crate::rest::{Deleted, created};

const SERVICE: &str = "event-dispatcher";

/// A knowledge base as REST shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KnowledgeBase)]
pub(crate) struct KnowledgeBaseJson {
    /// The embedding model's name (the platform's).
    embedding_model: String,
    /// Metadata columns documents may carry.
    metadata_columns: Vec<String>,
    /// Name in the tenant's project; agents list it in `data.knowledge_bases`.
    name: String,
}

/// `GET /api/v1/knowledge-bases` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct KnowledgeBaseList {
    /// By name.
    knowledge_bases: Vec<KnowledgeBaseJson>,
}

/// `POST /api/v1/knowledge-bases/{name}/documents` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Inserted {
    /// Documents inserted or replaced.
    inserted: i32,
}

/// One chunk found by a search.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KnowledgeBaseHit)]
pub(crate) struct KbHitJson {
    /// The chunk's text.
    content: String,
    /// The document it belongs to.
    document_id: String,
    /// The document's metadata.
    metadata: BTreeMap<String, String>,
    /// Relevance in [0, 1], higher is better.
    relevance: f64,
}

/// `GET /api/v1/knowledge-bases/{name}/search` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = KnowledgeBaseHits)]
pub(crate) struct KbHits {
    /// Best first.
    hits: Vec<KbHitJson>,
}

/// A knowledge base as REST (and the MCP resource) shows it.
pub(crate) fn kb_json(kb: KnowledgeBase) -> KnowledgeBaseJson {
    KnowledgeBaseJson { embedding_model: kb.embedding_model, metadata_columns: kb.metadata_columns, name: kb.name }
}

/// A search's hits as REST (and the MCP tool) answers them.
pub(crate) fn hits_json(hits: Vec<KnowledgeBaseHit>) -> KbHits {
    let hits = hits
        .into_iter()
        .map(|h| KbHitJson {
            content: h.content,
            document_id: h.document_id,
            metadata: h.metadata.into_iter().collect(),
            relevance: h.relevance,
        })
        .collect();
    KbHits { hits }
}

/// `POST /api/v1/knowledge-bases` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateKnowledgeBaseInput)]
pub(crate) struct CreateBody {
    name: String,
    #[serde(default)]
    metadata_columns: Vec<String>,
}

/// One document of `POST /api/v1/knowledge-bases/{name}/documents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KnowledgeBaseDocumentInput)]
pub(crate) struct DocumentBody {
    id: String,
    content: String,
    #[serde(default)]
    metadata: HashMap<String, String>,
}

/// `POST /api/v1/knowledge-bases/{name}/documents` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = InsertDocumentsInput)]
pub(crate) struct InsertBody {
    documents: Vec<DocumentBody>,
}

/// Query of `GET /api/v1/knowledge-bases/{name}/search`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// What to look for (required, at most 4000 characters).
    q: Option<String>,
    /// Hits wanted, 1..=50 (default 5).
    top_k: Option<u32>,
}

/// A query string that does not parse (a `top_k` that is not a number, an unknown field) as a
/// JSON 400 naming the problem.
pub(crate) fn bad_query(rejection: &QueryRejection) -> ApiError {
    ApiError::invalid_argument(format!("invalid query string: {}", rejection.body_text()))
}

fn missing_kb() -> ApiError {
    ApiError::unavailable("the event dispatcher answered without the knowledge base")
}

// The calls, shared by REST and GraphQL (`crate::graphql`).

/// The caller's tenant's knowledge bases, by name.
pub(crate) async fn list_knowledge_bases(state: &AppState, caller: &Caller) -> Result<Vec<KnowledgeBase>, ApiError> {
    let req = caller.request(ListKnowledgeBasesRequest {});
    Ok(unary(SERVICE, state.upstreams.event_dispatcher().list_knowledge_bases(req)).await?.knowledge_bases)
}

/// Creates the knowledge base `name`.
pub(crate) async fn create_knowledge_base(
    state: &AppState,
    caller: &Caller,
    name: String,
    metadata_columns: Vec<String>,
) -> Result<KnowledgeBase, ApiError> {
    let req = caller.request(CreateKnowledgeBaseRequest { name, metadata_columns });
    unary(SERVICE, state.upstreams.event_dispatcher().create_knowledge_base(req))
        .await?
        .knowledge_base
        .ok_or_else(missing_kb)
}

/// The knowledge base `name`.
pub(crate) async fn get_knowledge_base(
    state: &AppState,
    caller: &Caller,
    name: String,
) -> Result<KnowledgeBase, ApiError> {
    let req = caller.request(GetKnowledgeBaseRequest { name });
    unary(SERVICE, state.upstreams.event_dispatcher().get_knowledge_base(req))
        .await?
        .knowledge_base
        .ok_or_else(missing_kb)
}

/// Deletes the knowledge base `name` and its documents.
pub(crate) async fn delete_knowledge_base(state: &AppState, caller: &Caller, name: String) -> Result<(), ApiError> {
    let req = caller.request(DeleteKnowledgeBaseRequest { name });
    unary(SERVICE, state.upstreams.event_dispatcher().delete_knowledge_base(req)).await?;
    Ok(())
}

/// Inserts or replaces `documents` of `name`, all or none; how many.
pub(crate) async fn insert_knowledge_documents(
    state: &AppState,
    caller: &Caller,
    name: String,
    documents: Vec<KnowledgeBaseDocument>,
) -> Result<i32, ApiError> {
    let req = caller.request(InsertDocumentsRequest { name, documents });
    Ok(unary(SERVICE, state.upstreams.event_dispatcher().insert_documents(req)).await?.inserted)
}

/// Semantic search of `query` in `name`, best first; `top_k` 1..=50 (the service's default
/// when absent).
pub(crate) async fn search_knowledge_base(
    state: &AppState,
    caller: &Caller,
    name: String,
    query: String,
    top_k: Option<u32>,
) -> Result<Vec<KnowledgeBaseHit>, ApiError> {
    let top_k = match top_k {
        None => 0,
        Some(k) => match i32::try_from(k) {
            Ok(k) if k > 0 => k,
            _ => return Err(ApiError::invalid_argument("top_k must be between 1 and 50")),
        },
    };
    let req = caller.request(SearchKnowledgeBaseRequest { name, query, top_k });
    Ok(unary(SERVICE, state.upstreams.event_dispatcher().search_knowledge_base(req)).await?.hits)
}

/// `GET /api/v1/knowledge-bases`: the tenant's knowledge bases, by name.
#[utoipa::path(get, path = "/api/v1/knowledge-bases", operation_id = "list_knowledge_bases", tag = "knowledge-bases",
    responses((status = 200, description = "The tenant's knowledge bases, by name", body = KnowledgeBaseList)))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<KnowledgeBaseList>, ApiError> {
    let kbs = list_knowledge_bases(&state, &caller).await?;
    Ok(Json(KnowledgeBaseList { knowledge_bases: kbs.into_iter().map(kb_json).collect() }))
}

/// `POST /api/v1/knowledge-bases`: creates one (201).
#[utoipa::path(post, path = "/api/v1/knowledge-bases", operation_id = "create_knowledge_base", tag = "knowledge-bases", request_body = CreateBody,
    responses((status = 201, description = "The new knowledge base", body = KnowledgeBaseJson)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    Ok(created(kb_json(create_knowledge_base(&state, &caller, body.name, body.metadata_columns).await?)))
}

/// `GET /api/v1/knowledge-bases/{name}`.
#[utoipa::path(get, path = "/api/v1/knowledge-bases/{name}", operation_id = "get_knowledge_base", tag = "knowledge-bases", params(("name" = String, Path, description = "The knowledge base's name")),
    responses((status = 200, description = "The knowledge base", body = KnowledgeBaseJson)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<KnowledgeBaseJson>, ApiError> {
    Ok(Json(kb_json(get_knowledge_base(&state, &caller, name).await?)))
}

/// `DELETE /api/v1/knowledge-bases/{name}`: the knowledge base and its documents.
#[utoipa::path(delete, path = "/api/v1/knowledge-bases/{name}", operation_id = "delete_knowledge_base", tag = "knowledge-bases", params(("name" = String, Path, description = "The knowledge base's name")),
    responses((status = 200, description = "The knowledge base and its documents are deleted (`id` is its name)", body = Deleted)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    delete_knowledge_base(&state, &caller, name.clone()).await?;
    Ok(Json(Deleted::id(name)))
}

/// `POST /api/v1/knowledge-bases/{name}/documents`: inserts or replaces documents, all or none.
#[utoipa::path(post, path = "/api/v1/knowledge-bases/{name}/documents", operation_id = "insert_documents", tag = "knowledge-bases", params(("name" = String, Path, description = "The knowledge base's name")), request_body = InsertBody,
    responses((status = 200, description = "The documents are inserted or replaced, all or none", body = Inserted)))]
pub(crate) async fn insert_documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<InsertBody>,
) -> Result<Json<Inserted>, ApiError> {
    let documents = body
        .documents
        .into_iter()
        .map(|d| KnowledgeBaseDocument { id: d.id, content: d.content, metadata: d.metadata })
        .collect();
    Ok(Json(Inserted { inserted: insert_knowledge_documents(&state, &caller, name, documents).await? }))
}

/// `GET /api/v1/knowledge-bases/{name}/search?q=...&top_k=...`: semantic search, best first.
#[utoipa::path(get, path = "/api/v1/knowledge-bases/{name}/search", operation_id = "search_knowledge_base", tag = "knowledge-bases", params(("name" = String, Path, description = "The knowledge base's name"), SearchQuery),
    responses((status = 200, description = "The most relevant chunks, best first", body = KbHits)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Json<KbHits>, ApiError> {
    let Query(query) = query.map_err(|r| bad_query(&r))?;
    let hits = search_knowledge_base(&state, &caller, name, query.q.unwrap_or_default(), query.top_k).await?;
    Ok(Json(hits_json(hits)))
}
