//! The gateway's public gRPC API: its own `getlood.gateway.v1.GatewayService`, and the
//! internal services it re-serves at the edge (`crate::edge`), each authenticated like REST.

use std::pin::Pin;

use futures::StreamExt as _;
use getlood_auth::Principal;
use getlood_common::ApiError;
use getlood_proto::agent_registry::v1::agent_registry_service_server::AgentRegistryServiceServer;
use getlood_proto::common::v1::{ErrorDetail, Role};
use getlood_proto::desktop_state::v1::desktop_state_service_server::DesktopStateServiceServer;
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_server::EventDispatcherServiceServer;
use getlood_proto::gateway::v1::gateway_service_server::{GatewayService, GatewayServiceServer};
use getlood_proto::gateway::v1::{
    ChatCompletionChunk, ChatCompletionHeartbeat, ChatCompletionRequest, ChatCompletionResponse, GetloodExtras,
    ListModelsRequest, ListModelsResponse, Model, WhoAmIRequest, WhoAmIResponse, chat_completion_response,
};
use getlood_proto::workflow::v1::workflow_service_server::WorkflowServiceServer;
use tonic::{Request, Response, Status};

use crate::chat::{self, ChatEvent};
use crate::edge::{AgentRegistryEdge, DesktopStateEdge, Edge, EventDispatcherEdge, WorkflowEdge};
use crate::openai::{self, ChatInput};
use crate::permissions::{
    GRPC_AGENT_REGISTRY_PERMISSIONS, GRPC_DESKTOP_STATE_PERMISSIONS, GRPC_EVENT_DISPATCHER_PERMISSIONS,
    GRPC_PERMISSIONS, GRPC_WORKFLOW_PERMISSIONS,
};
use crate::rate_limit::{self, Verdict};
use crate::{AppState, registry_api};

/// The gRPC routes of the gateway (`permissions::grpc_permissions` lists them): each service
/// behind bearer verification and the per-method role check of its table, its messages
/// bounded by `max_body_bytes`. The same routes serve gRPC-Web on the HTTP port.
pub(crate) fn routes(state: AppState) -> tonic::service::Routes {
    let verifier = state.verifier.clone();
    let issuer = verifier.issuer().to_owned();
    let limit = state.settings.max_body_bytes;
    let edge = Edge::new(state.clone());
    let audit = state.clone();
    let routes = tonic::service::Routes::new(getlood_server::authorize(
        verifier.clone(),
        GRPC_PERMISSIONS,
        GatewayServiceServer::new(Gateway { issuer, state }).max_decoding_message_size(limit),
    ))
    .add_service(getlood_server::authorize(
        verifier.clone(),
        GRPC_AGENT_REGISTRY_PERMISSIONS,
        AgentRegistryServiceServer::new(AgentRegistryEdge(edge.clone())).max_decoding_message_size(limit),
    ))
    .add_service(getlood_server::authorize(
        verifier.clone(),
        GRPC_DESKTOP_STATE_PERMISSIONS,
        DesktopStateServiceServer::new(DesktopStateEdge(edge.clone())).max_decoding_message_size(limit),
    ))
    .add_service(getlood_server::authorize(
        verifier.clone(),
        GRPC_WORKFLOW_PERMISSIONS,
        WorkflowServiceServer::new(WorkflowEdge(edge.clone())).max_decoding_message_size(limit),
    ))
    .add_service(getlood_server::authorize(
        verifier.clone(),
        GRPC_EVENT_DISPATCHER_PERMISSIONS,
        EventDispatcherServiceServer::new(EventDispatcherEdge(edge)).max_decoding_message_size(limit),
    ));
    // Every call goes through the audit log (writes and refusals), on both ports.
    let audited =
        routes.into_axum_router().layer(axum::middleware::from_fn_with_state(audit, crate::audit::record_grpc));
    tonic::service::Routes::from(audited)
}

struct Gateway {
    issuer: String,
    state: AppState,
}

/// The proto `ErrorCode` of an in-stream error item.
fn proto_error_code(err: &ApiError) -> i32 {
    use getlood_common::ErrorCode as C;
    use getlood_proto::common::v1::ErrorCode as P;
    let code = match err.code {
        C::InvalidArgument | C::PayloadTooLarge => P::InvalidArgument,
        C::Unauthenticated => P::Unauthenticated,
        C::PermissionDenied => P::PermissionDenied,
        C::NotFound => P::NotFound,
        C::AlreadyExists => P::AlreadyExists,
        C::Aborted => P::VersionConflict,
        C::FailedPrecondition => P::FailedPrecondition,
        C::ResourceExhausted => P::RateLimited,
        C::Unavailable => P::Unavailable,
        C::DeadlineExceeded => P::DeadlineExceeded,
        C::Unimplemented | C::Internal => P::Internal,
    };
    code as i32
}

fn timestamp_now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

fn principal<T>(req: &Request<T>) -> Result<&Principal, Status> {
    // The interceptor always inserts it; its absence would be a wiring bug, not a client error.
    req.extensions().get::<Principal>().ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

type ChatStream = Pin<Box<dyn futures::Stream<Item = Result<ChatCompletionResponse, Status>> + Send>>;

#[tonic::async_trait]
impl GatewayService for Gateway {
    async fn who_am_i(&self, req: Request<WhoAmIRequest>) -> Result<Response<WhoAmIResponse>, Status> {
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
        let p = principal(&req)?.clone();
        let body = req.into_inner();
        openai::check_messages(&body.messages).map_err(Status::from)?;
        match rate_limit::verdict(&self.state.limiter, &p).await {
            Verdict::Proceed(_) => {}
            Verdict::Refuse(err, _) => return Err(Status::from(err)),
        }
        // The same per-tenant cap of turns in flight as the REST route; held until the stream ends.
        let permit = self.state.limiter.admit_chat(&p.tenant).map_err(Status::from)?;
        let input = ChatInput {
            model: openai::model_choice(&body.model),
            model_label: if body.model.is_empty() { "getlood".to_owned() } else { body.model.clone() },
            messages: body.messages,
            stream: true,
            include_usage: true,
            conversation_id: body.conversation_id,
            desktop_id: body.desktop_id,
            client_request_id: body.request_id,
        };
        let events = chat::start(&self.state, &p, None, &input).await.map_err(Status::from)?;
        let id = openai::completion_id();
        let created = Some(timestamp_now());
        let model = input.model_label;
        let chunk = move |role: i32, delta: String| ChatCompletionChunk {
            id: id.clone(),
            created,
            model: model.clone(),
            role,
            delta,
            ..ChatCompletionChunk::default()
        };
        let first = chunk(Role::Assistant as i32, String::new());
        let rest = events.map(move |event| {
            let _turn = &permit;
            let item = match event {
                ChatEvent::Delta(text) => chat_completion_response::Item::Chunk(chunk(0, text)),
                ChatEvent::Heartbeat => chat_completion_response::Item::Heartbeat(ChatCompletionHeartbeat {
                    sent_at: Some(timestamp_now()),
                }),
                ChatEvent::Done(finished) => {
                    let turn = finished.turn;
                    let mut last = chunk(0, String::new());
                    last.finish_reason = "stop".to_owned();
                    last.usage = turn.usage;
                    last.getlood = Some(GetloodExtras {
                        turn_id: turn.id,
                        conversation_id: turn.conversation_id,
                        intent: turn.intent,
                        confidence: turn.confidence,
                        agent: turn.agent,
                        ui_actions: turn.ui_actions,
                        user_intent_hints: turn.user_intent_hints,
                        stage_timings: turn.stage_timings,
                        outcome: turn.outcome,
                    });
                    chat_completion_response::Item::Chunk(last)
                }
                ChatEvent::Failed(err) => chat_completion_response::Item::Error(ErrorDetail {
                    code: proto_error_code(&err),
                    message: err.message,
                    ..ErrorDetail::default()
                }),
            };
            Ok(ChatCompletionResponse { item: Some(item) })
        });
        let stream = futures::stream::once(async move {
            Ok(ChatCompletionResponse { item: Some(chat_completion_response::Item::Chunk(first)) })
        })
        .chain(rest);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_models(&self, req: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let p = principal(&req)?.clone();
        let agents = registry_api::models(&self.state, &p, None).await.map_err(Status::from)?;
        let mut models = vec![Model {
            id: "getlood".to_owned(),
            owned_by: "getlood".to_owned(),
            created: None,
            description: "automatic agent selection by the chat pipeline".to_owned(),
        }];
        models.extend(agents.into_iter().map(|a| Model {
            id: a.name,
            owned_by: if a.owner.is_empty() { "getlood".to_owned() } else { a.owner },
            created: a.created_at,
            description: a.description,
        }));
        Ok(Response::new(ListModelsResponse { models }))
    }
}
