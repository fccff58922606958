//! Channels to the internal services the gateway calls, and the metadata every call carries.

use getlood_auth::Principal;
use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_client::EventDispatcherServiceClient;
use getlood_proto::pipeline::v1::pipeline_service_client::PipelineServiceClient;
use getlood_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use getlood_server::ServiceUrls;
use tonic::transport::{Channel, Endpoint};

use crate::{Error, GatewaySettings, Result};

/// One lazily connected channel per upstream, made once at start and cloned per request (a
/// tonic `Channel` multiplexes HTTP/2 streams and reconnects by itself).
#[derive(Clone, Debug)]
pub struct Upstreams {
    pipeline: Channel,
    agent_registry: Channel,
    desktop_state: Channel,
    event_dispatcher: Channel,
    workflow: Channel,
}

impl Upstreams {
    /// Builds the channels without dialing: the gateway starts even when an upstream is down,
    /// and a call to a down upstream fails fast with UNAVAILABLE (503) instead of hanging.
    pub fn connect_lazy(urls: &ServiceUrls, settings: &GatewaySettings) -> Result<Self> {
        let channel = |url: &str| -> Result<Channel> {
            let endpoint = Endpoint::from_shared(url.to_owned())
                .map_err(|e| Error::UpstreamUrl { url: url.to_owned(), message: e.to_string() })?;
            Ok(endpoint
                .connect_timeout(settings.upstream_connect_timeout)
                // Time to the response headers; a stream's body has the chat deadlines instead.
                .timeout(settings.upstream_request_timeout)
                .tcp_nodelay(true)
                // Detects a silently dead peer on long chat streams.
                .http2_keep_alive_interval(std::time::Duration::from_secs(20))
                .keep_alive_while_idle(true)
                .connect_lazy())
        };
        Ok(Self {
            pipeline: channel(&urls.pipeline)?,
            agent_registry: channel(&urls.agent_registry)?,
            desktop_state: channel(&urls.desktop_state)?,
            event_dispatcher: channel(&urls.event_dispatcher)?,
            workflow: channel(&urls.workflow)?,
        })
    }

    /// A pipeline client.
    pub fn pipeline(&self) -> PipelineServiceClient<Channel> {
        PipelineServiceClient::new(self.pipeline.clone())
    }

    /// An agent-registry client.
    pub fn agent_registry(&self) -> AgentRegistryServiceClient<Channel> {
        AgentRegistryServiceClient::new(self.agent_registry.clone())
    }

    /// A desktop-state client.
    pub fn desktop_state(&self) -> DesktopStateServiceClient<Channel> {
        DesktopStateServiceClient::new(self.desktop_state.clone())
    }

    /// An event-dispatcher client.
    pub fn event_dispatcher(&self) -> EventDispatcherServiceClient<Channel> {
        EventDispatcherServiceClient::new(self.event_dispatcher.clone())
    }

    /// A workflow client.
    pub fn workflow(&self) -> WorkflowServiceClient<Channel> {
        WorkflowServiceClient::new(self.workflow.clone())
    }
}

/// Wraps `message` for an upstream call on behalf of `principal`: the caller's own bearer token
/// (each service re-verifies it, so the gateway never vouches for a tenant), the W3C trace
/// context, and the request id when there is one.
pub(crate) fn request<T>(principal: &Principal, request_id: Option<&str>, message: T) -> tonic::Request<T> {
    let mut headers = http::HeaderMap::new();
    getlood_telemetry::inject_context(&mut getlood_telemetry::HeaderInjector(&mut headers));
    if let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {}", principal.token)) {
        headers.insert(http::header::AUTHORIZATION, value);
    }
    if let Some(value) = request_id.and_then(|id| http::HeaderValue::from_str(id).ok()) {
        headers.insert("x-request-id", value);
    }
    let mut req = tonic::Request::new(message);
    *req.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
    req
}
