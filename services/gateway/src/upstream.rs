//! Channels to the internal services the gateway calls (the runtime's one [`Upstream`] client),
//! and the metadata every call carries.

use getlood_auth::Principal;
use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::desktop_state::v1::desktop_state_service_client::DesktopStateServiceClient;
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_client::EventDispatcherServiceClient;
use getlood_proto::pipeline::v1::pipeline_service_client::PipelineServiceClient;
use getlood_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use getlood_server::{Runtime, Upstream, UpstreamChannel, UpstreamTimeouts};

/// One lazily connected channel per upstream, made once at start and cloned per request.
#[derive(Clone, Debug)]
pub struct Upstreams {
    pipeline: Upstream,
    agent_registry: Upstream,
    /// The registry again, under the longer deadline of agent writes (`app.agent_write_timeout`).
    agent_registry_writes: Upstream,
    desktop_state: Upstream,
    event_dispatcher: Upstream,
    workflow: Upstream,
}

impl Upstreams {
    /// Builds the channels without dialing: the gateway starts even when an upstream is down,
    /// and a call to a down upstream fails fast with UNAVAILABLE (503) instead of hanging.
    pub fn connect_lazy(
        runtime: &Runtime,
        agent_registry_url: &str,
        agent_writes: UpstreamTimeouts,
    ) -> getlood_server::Result<Self> {
        Ok(Self {
            pipeline: runtime.upstream("pipeline")?,
            agent_registry: runtime.upstream("agent-registry")?,
            // Its own name: a `dns://` upstream's endpoint gauges and call counts are per channel.
            agent_registry_writes: Upstream::connect_lazy("agent-registry-writes", agent_registry_url, agent_writes)?,
            desktop_state: runtime.upstream("desktop-state")?,
            event_dispatcher: runtime.upstream("event-dispatcher")?,
            workflow: runtime.upstream("workflow")?,
        })
    }

    /// A pipeline client.
    pub fn pipeline(&self) -> PipelineServiceClient<UpstreamChannel> {
        self.pipeline.client(PipelineServiceClient::new)
    }

    /// An agent-registry client.
    pub fn agent_registry(&self) -> AgentRegistryServiceClient<UpstreamChannel> {
        self.agent_registry.client(AgentRegistryServiceClient::new)
    }

    /// An agent-registry client for agent writes (create, update, delete), whose MindsDB side
    /// makes a live model call.
    pub fn agent_registry_writes(&self) -> AgentRegistryServiceClient<UpstreamChannel> {
        self.agent_registry_writes.client(AgentRegistryServiceClient::new)
    }

    /// A desktop-state client.
    pub fn desktop_state(&self) -> DesktopStateServiceClient<UpstreamChannel> {
        self.desktop_state.client(DesktopStateServiceClient::new)
    }

    /// An event-dispatcher client.
    pub fn event_dispatcher(&self) -> EventDispatcherServiceClient<UpstreamChannel> {
        self.event_dispatcher.client(EventDispatcherServiceClient::new)
    }

    /// A workflow client.
    pub fn workflow(&self) -> WorkflowServiceClient<UpstreamChannel> {
        self.workflow.client(WorkflowServiceClient::new)
    }
}

/// Wraps `message` for an upstream call on behalf of `principal` (the server's one
/// [`getlood_server::upstream_request`]): the
/// caller's own bearer token (each service re-verifies it, so the gateway never vouches for a
/// tenant), the W3C trace context, and the request id when there is one. The channel's
/// deadline (time to the response headers) applies; a stream's body has the route's own
/// deadlines.
pub(crate) fn request<T>(principal: &Principal, request_id: Option<&str>, message: T) -> tonic::Request<T> {
    getlood_server::upstream_request(principal, request_id, None, message, None)
}
