//! `getlood.event_dispatcher.v1.EventDispatcherService`.

use getlood_proto::event_dispatcher::v1::event_dispatcher_service_server::EventDispatcherService;
use getlood_proto::event_dispatcher::v1::{
    ListAuditRequest, ListAuditResponse, SearchRequest, SearchResponse, SubscribeRequest,
};
use tonic::{Request, Response, Status};

use crate::memory::Memory;
use crate::subscribe::{SubscribeStream, Subscriptions};

/// The service behind the gRPC API.
pub(crate) struct Dispatcher {
    pub subscriptions: Subscriptions,
    pub memory: Memory,
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
}
