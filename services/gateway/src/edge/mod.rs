//! The public gRPC edge: the internal services' own v1 protos, re-served on the gateway's gRPC
//! port (and as gRPC-Web on its HTTP port) so a client uses one set of stubs for the services
//! and the gateway. Each method is forwarded to its service exactly as the REST handlers call
//! it: with the caller's own verified token (the service re-verifies it and takes the tenant
//! from it; no request message of these protos carries a tenant), the request id, the trace
//! context and the caller's remaining deadline.
//!
//! What is public, and what is not:
//! * `AgentRegistryService`: agents and skills CRUD and `FindAgents` (a read of the tenant's
//!   own agents by skill). `QueryAgent` is internal to the chat pipeline (it would bypass the
//!   pipeline's turn record, memory and the chat limits): it answers UNIMPLEMENTED, pointing at
//!   `GatewayService/ChatCompletion`.
//! * `DesktopStateService`: every method (desktops and windows, and the tenant's data sources).
//! * `WorkflowService`: every method, `WatchRun` as a server stream.
//! * `EventDispatcherService`: `Subscribe` (server stream, tenant scoped by the dispatcher),
//!   `Search` (memory), `ListAudit` (admins) and the tenant's knowledge bases, as REST serves
//!   them.
//! * `PipelineService` is not served: `GatewayService/ChatCompletion` is its public form.
//!
//! Every method has a permission in its service's table (`permissions::grpc_permissions`),
//! enforced by `getlood_server::authorize` before a handler runs; writes and expensive reads
//! also count against the REST route classes' rate limits (`RouteClass`). Upstream errors keep
//! their code and public message (and the `getlood-error-bin` detail); an unreachable or slow
//! service, or an internal failure, is reported without its internals. Server streams end when
//! the caller's token expires (UNAUTHENTICATED `token expired`) or the gateway shuts down
//! (UNAVAILABLE), like the REST event streams.

mod services;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use getlood_common::{ApiError, ERROR_DETAIL_KEY};
use getlood_proto::common::v1::ErrorDetail;
use prost::Message as _;
use tonic::{Request, Response, Status, Streaming};

use crate::AppState;
use crate::rate_limit::{self, Decision, RouteClass, Verdict};
pub(crate) use services::{AgentRegistryEdge, DesktopStateEdge, EventDispatcherEdge, WorkflowEdge};

/// A server stream of the edge.
pub(crate) type EdgeStream<T> = BoxStream<'static, Result<T, Status>>;

/// What every edge service shares: the gateway's state (upstream channels, limiter, shutdown).
#[derive(Clone)]
pub(crate) struct Edge {
    state: AppState,
}

impl Edge {
    /// The edge of `state`.
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The verified caller of `req` (stored by `getlood_server::authorize`, with the request id
    /// and the `grpc-timeout` deadline) and its message, once the rate limit of `class`, if
    /// any, let it through.
    async fn admit<T>(
        &self,
        req: Request<T>,
        class: Option<RouteClass>,
    ) -> Result<(getlood_server::Caller, T), Status> {
        let caller = getlood_server::caller(&req)?.clone();
        if let Some(class) = class
            && let Verdict::Refuse(err, decision) =
                rate_limit::class_verdict(&self.state.limiter, class, &caller.principal).await
        {
            return Err(refusal(&err, decision.as_ref()));
        }
        Ok((caller, req.into_inner()))
    }

    /// `upstream` (a server stream of `service`) with its errors mapped ([`edge_status`]), ended
    /// with UNAUTHENTICATED when the caller's token expires and with UNAVAILABLE when the
    /// gateway shuts down: a stream is authorised by the token it was opened with and must not
    /// outlive it, and a draining gateway must not wait on streams that never end.
    fn bounded<T: Send + 'static>(
        &self,
        service: &'static str,
        principal: &getlood_auth::Principal,
        upstream: Streaming<T>,
    ) -> EdgeStream<T> {
        let expiry = Box::pin(tokio::time::sleep_until(crate::ws::token_deadline(principal)));
        let shutdown = self.state.realtime.shutdown.clone();
        futures::stream::unfold(Some((upstream, expiry, shutdown)), move |state| async move {
            let (mut upstream, mut expiry, shutdown) = state?;
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    let status = Status::unavailable("the gateway is shutting down: reconnect (resume from the last cursor)");
                    Some((Err(status), None))
                }
                () = &mut expiry => {
                    Some((Err(Status::unauthenticated(crate::ws::TOKEN_EXPIRED)), None))
                }
                item = upstream.message() => match item {
                    Ok(Some(item)) => Some((Ok(item), Some((upstream, expiry, shutdown)))),
                    Ok(None) => None,
                    Err(status) => Some((Err(edge_status(service, status)), None)),
                },
            }
        })
        .boxed()
    }
}

/// The answer of a unary upstream call of `service`: its message, or its status as
/// [`edge_status`] maps it. The upstream's response metadata is not passed on.
fn answer<T>(service: &'static str, result: Result<Response<T>, Status>) -> Result<Response<T>, Status> {
    result.map(|r| Response::new(r.into_inner())).map_err(|status| edge_status(service, status))
}

/// A status of `service` as the edge's caller sees it: the code and public message the service
/// chose, with its `getlood-error-bin` detail (field violations, the current version); an
/// unreachable service, a timeout or an internal failure as a message of the gateway's own, the
/// upstream's text logged and not returned (a transport error names hosts and ports).
pub(crate) fn edge_status(service: &'static str, status: Status) -> Status {
    use tonic::Code;
    match status.code() {
        Code::Unavailable => {
            tracing::warn!(service, error = %status.message(), "upstream unavailable");
            Status::unavailable(format!("the {service} service is unavailable, retry shortly"))
        }
        Code::DeadlineExceeded | Code::Cancelled => {
            Status::deadline_exceeded(format!("the {service} service did not answer in time"))
        }
        Code::Internal | Code::Unknown | Code::DataLoss => {
            tracing::warn!(service, code = ?status.code(), error = %status.message(), "upstream failed");
            Status::internal("internal error")
        }
        code => {
            let mut mapped = Status::new(code, status.message());
            if let Some(detail) = status.metadata().get_bin(ERROR_DETAIL_KEY) {
                mapped.metadata_mut().insert_bin(ERROR_DETAIL_KEY, detail.clone());
            }
            mapped
        }
    }
}

/// The RESOURCE_EXHAUSTED (or, failing closed, UNAVAILABLE) of a refused rate limit, with the
/// wait in the detail's `retry_after` and in a `retry-after` entry (seconds).
fn refusal(err: &ApiError, decision: Option<&Decision>) -> Status {
    let retry_after = decision.map_or(1, |d| d.retry_after_secs.max(1));
    let detail = ErrorDetail {
        code: err.code.to_wire() as i32,
        message: err.message.clone(),
        retry_after: Some(prost_types::Duration { seconds: i64::try_from(retry_after).unwrap_or(i64::MAX), nanos: 0 }),
        ..ErrorDetail::default()
    };
    let mut status = Status::new(err.code.grpc_code(), err.message.clone());
    status
        .metadata_mut()
        .insert_bin(ERROR_DETAIL_KEY, tonic::metadata::MetadataValue::from_bytes(&detail.encode_to_vec()));
    status.metadata_mut().insert("retry-after", retry_after.into());
    status
}

#[cfg(test)]
mod tests {
    use getlood_common::ErrorCode;

    use super::*;

    #[test]
    fn upstream_internals_never_reach_the_caller() {
        let transport = Status::unavailable("tcp connect error: 10.0.3.7:9091: Connection refused (os error 111)");
        let mapped = edge_status("workflow", transport);
        assert_eq!(mapped.code(), tonic::Code::Unavailable);
        assert_eq!(mapped.message(), "the workflow service is unavailable, retry shortly");
        let internal = edge_status("workflow", Status::internal("relation \"runs\" does not exist"));
        assert_eq!((internal.code(), internal.message()), (tonic::Code::Internal, "internal error"));
        let slow = edge_status("workflow", Status::deadline_exceeded("Timeout expired"));
        assert_eq!(slow.message(), "the workflow service did not answer in time");
    }

    #[test]
    fn public_statuses_keep_code_message_and_detail_only() {
        let mut status = Status::out_of_range("the resume position was removed by retention");
        status.metadata_mut().insert_bin(ERROR_DETAIL_KEY, tonic::metadata::MetadataValue::from_bytes(b"detail"));
        status.metadata_mut().insert("x-internal-host", "db-3".parse().unwrap());
        let mapped = edge_status("event-dispatcher", status);
        assert_eq!(mapped.code(), tonic::Code::OutOfRange);
        assert_eq!(mapped.message(), "the resume position was removed by retention");
        assert_eq!(mapped.metadata().get_bin(ERROR_DETAIL_KEY).unwrap().to_bytes().unwrap().as_ref(), b"detail");
        assert!(mapped.metadata().get("x-internal-host").is_none());
    }

    #[test]
    fn a_rate_limit_refusal_says_when_to_retry() {
        let err =
            ApiError::new(ErrorCode::ResourceExhausted, "rate limit of 5 requests of this kind per minute exceeded");
        let decision = Decision { allowed: false, limit: 5, remaining: 0, reset_secs: 60, retry_after_secs: 12 };
        let status = refusal(&err, Some(&decision));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(status.metadata().get("retry-after").unwrap(), "12");
        let bytes = status.metadata().get_bin(ERROR_DETAIL_KEY).unwrap().to_bytes().unwrap();
        let detail = ErrorDetail::decode(bytes).unwrap();
        assert_eq!(detail.retry_after.unwrap().seconds, 12);
    }
}
