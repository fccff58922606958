//! `getlood.event_dispatcher.v1.EventDispatcherService`.

use getlood_proto::event_dispatcher::v1::event_dispatcher_service_server::EventDispatcherService;
use getlood_proto::event_dispatcher::v1::{
    CreateKnowledgeBaseRequest, CreateKnowledgeBaseResponse, DeleteKnowledgeBaseRequest, DeleteKnowledgeBaseResponse,
    GetKnowledgeBaseRequest, GetKnowledgeBaseResponse, InsertDocumentsRequest, InsertDocumentsResponse,
    ListAuditRequest, ListAuditResponse, ListKnowledgeBasesRequest, ListKnowledgeBasesResponse,
    SearchKnowledgeBaseRequest, SearchKnowledgeBaseResponse, SearchRequest, SearchResponse, SubscribeRequest,
};
use tonic::{Request, Response, Status};

use crate::kb::KnowledgeBases;
use crate::memory::Memory;
use crate::subscribe::{SubscribeStream, Subscriptions};

/// The service behind the gRPC API.
pub(crate) struct Dispatcher {
    pub subscriptions: Subscriptions,
    pub memory: Memory,
    pub knowledge_bases: KnowledgeBases,
}

#[tonic::async_trait]
impl EventDispatcherService for Dispatcher {
    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, req: Request<SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = getlood_server::caller(&req)?.clone();
        let stream = self.subscriptions.subscribe(&caller, req.into_inner()).await?;
        tracing::debug!(tenant = %caller.principal.tenant, user = %caller.principal.user, "subscription opened");
        Ok(Response::new(stream))
    }

    async fn search(&self, req: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        let principal = getlood_server::principal(&req)?.clone();
        let hits = self.memory.search(&principal, req.get_ref()).await?;
        Ok(Response::new(SearchResponse { hits }))
    }

    async fn list_audit(&self, req: Request<ListAuditRequest>) -> Result<Response<ListAuditResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        let page = crate::audit::list(&self.subscriptions.bus, principal, req.get_ref()).await?;
        Ok(Response::new(page))
    }

    async fn create_knowledge_base(
        &self,
        req: Request<CreateKnowledgeBaseRequest>,
    ) -> Result<Response<CreateKnowledgeBaseResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        let r = req.get_ref();
        let kb = self.knowledge_bases.create(principal, &r.name, &r.metadata_columns).await?;
        Ok(Response::new(CreateKnowledgeBaseResponse { knowledge_base: Some(kb) }))
    }

    async fn list_knowledge_bases(
        &self,
        req: Request<ListKnowledgeBasesRequest>,
    ) -> Result<Response<ListKnowledgeBasesResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        let knowledge_bases = self.knowledge_bases.list(principal).await?;
        Ok(Response::new(ListKnowledgeBasesResponse { knowledge_bases }))
    }

    async fn get_knowledge_base(
        &self,
        req: Request<GetKnowledgeBaseRequest>,
    ) -> Result<Response<GetKnowledgeBaseResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        let kb = self.knowledge_bases.get(principal, &req.get_ref().name).await?;
        Ok(Response::new(GetKnowledgeBaseResponse { knowledge_base: Some(kb) }))
    }

    async fn delete_knowledge_base(
        &self,
        req: Request<DeleteKnowledgeBaseRequest>,
    ) -> Result<Response<DeleteKnowledgeBaseResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        self.knowledge_bases.delete(principal, &req.get_ref().name).await?;
        Ok(Response::new(DeleteKnowledgeBaseResponse {}))
    }

    async fn insert_documents(
        &self,
        req: Request<InsertDocumentsRequest>,
    ) -> Result<Response<InsertDocumentsResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        let inserted = self.knowledge_bases.insert(principal, req.get_ref()).await?;
        Ok(Response::new(InsertDocumentsResponse { inserted: i32::try_from(inserted).unwrap_or(i32::MAX) }))
    }

    async fn search_knowledge_base(
        &self,
        req: Request<SearchKnowledgeBaseRequest>,
    ) -> Result<Response<SearchKnowledgeBaseResponse>, Status> {
        let principal = getlood_server::principal(&req)?;
        let hits = self.knowledge_bases.search(principal, req.get_ref()).await?;
        Ok(Response::new(SearchKnowledgeBaseResponse { hits }))
    }
}
