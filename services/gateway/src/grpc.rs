//! The gateway's public gRPC API (`getlood.gateway.v1.GatewayService`), authenticated like REST.

use std::pin::Pin;
use std::sync::Arc;

use getlood_auth::{Principal, Verifier};
use getlood_proto::gateway::v1::gateway_service_server::{GatewayService, GatewayServiceServer};
use getlood_proto::gateway::v1::{
    ChatCompletionRequest, ChatCompletionResponse, ListModelsRequest, ListModelsResponse,
    WhoAmIRequest, WhoAmIResponse,
};
use tonic::{Request, Response, Status};

/// The gRPC routes of the gateway: `GatewayService` behind bearer verification.
pub(crate) fn routes(verifier: Arc<Verifier>) -> tonic::service::Routes {
    let issuer = verifier.issuer().to_owned();
    let interceptor = move |mut req: Request<()>| {
        let principal = verifier.verify_metadata(req.metadata())?;
        req.extensions_mut().insert(principal);
        Ok(req)
    };
    tonic::service::Routes::new(GatewayServiceServer::with_interceptor(
        Gateway { issuer },
        interceptor,
    ))
}

struct Gateway {
    issuer: String,
}

fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    // The interceptor always inserts it; its absence would be a wiring bug, not a client error.
    req.extensions()
        .get::<Principal>()
        .ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

type ChatStream =
    Pin<Box<dyn futures::Stream<Item = Result<ChatCompletionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayService for Gateway {
    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let p = principal(&req)?;
        Ok(Response::new(WhoAmIResponse {
            tenant_id: p.tenant.to_string(),
            user_id: p.user.clone(),
            roles: p.roles.clone(),
            issuer: self.issuer.clone(),
            expires_at: Some(prost_types::Timestamp {
                seconds: i64::try_from(p.expires_at).unwrap_or(i64::MAX),
                nanos: 0,
            }),
            project: format!("t_{}", p.tenant),
        }))
    }

    type ChatCompletionStream = ChatStream;

    async fn chat_completion(
        &self,
        req: Request<ChatCompletionRequest>,
    ) -> Result<Response<Self::ChatCompletionStream>, Status> {
        principal(&req)?;
        Err(Status::unimplemented(
            "chat completion is not available in this release: the pipeline service has no Execute yet",
        ))
    }

    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        principal(&req)?;
        Err(Status::unimplemented(
            "model listing is not available in this release: the agent registry has no API yet",
        ))
    }
}
