//! Client of the agent registry. Every call forwards the caller's own bearer token (the
//! registry re-verifies it and scopes everything to its tenant) and carries a deadline.

use std::time::Duration;

use getlood_proto::agent_registry::v1::agent_registry_service_client::AgentRegistryServiceClient;
use getlood_proto::agent_registry::v1::{
    Agent, AgentMatch, FindAgentsRequest, GetAgentRequest, ListAgentsRequest, QueryAgentRequest, QueryAgentResponse,
    SkillMatchMode, get_agent_request, query_agent_request,
};
use getlood_proto::common::v1::{ChatMessage, PageRequest};
use getlood_server::{Caller, Upstream, UpstreamChannel};
use tonic::Streaming;

use crate::error::{Error, Result};

/// The registry's channel (the runtime's [`Upstream`]) with the pipeline's deadline.
#[derive(Clone, Debug)]
pub(crate) struct RegistryClient {
    upstream: Upstream,
    timeout: Duration,
}

impl RegistryClient {
    /// A client over `upstream` whose lookups must answer within `timeout`.
    pub(crate) fn new(upstream: Upstream, timeout: Duration) -> Self {
        Self { upstream, timeout }
    }

    fn client(&self) -> AgentRegistryServiceClient<UpstreamChannel> {
        self.upstream.client(AgentRegistryServiceClient::new)
    }

    /// Runs a unary call under the deadline, client side too: `grpc-timeout` alone does not
    /// cover a connection that never completes.
    async fn unary<T, F>(&self, what: &'static str, call: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.unary_within(what, self.timeout, call).await
    }

    async fn unary_within<T, F>(&self, what: &'static str, timeout: Duration, call: F) -> Result<T>
    where
        F: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(Error::Registry(status)),
            Err(_) => Err(Error::Timeout { what, after: timeout }),
        }
    }

    /// Agents having `skill`, in the registry's deterministic order (most matched skills, then
    /// name).
    pub(crate) async fn find(&self, p: &Caller, skill: &str) -> Result<Vec<AgentMatch>> {
        let req =
            FindAgentsRequest { skills: vec![skill.to_owned()], match_mode: SkillMatchMode::Any as i32, limit: 10 };
        let mut client = self.client();
        let resp =
            self.unary("agent registry FindAgents", client.find_agents(p.request(req, Some(self.timeout)))).await?;
        Ok(resp.matches)
    }

    /// One agent of the caller's tenant by name; `NotFound` when the tenant has none.
    pub(crate) async fn get_by_name(&self, p: &Caller, name: &str) -> Result<Agent> {
        let req = GetAgentRequest { selector: Some(get_agent_request::Selector::Name(name.to_owned())) };
        let mut client = self.client();
        match self.unary("agent registry GetAgent", client.get_agent(p.request(req, Some(self.timeout)))).await {
            Ok(resp) => resp.agent.ok_or_else(|| Error::NotFound(format!("agent '{name}' not found"))),
            Err(Error::Registry(s)) if s.code() == tonic::Code::NotFound => {
                Err(Error::NotFound(format!("agent '{}' not found", name.chars().take(64).collect::<String>())))
            }
            Err(e) => Err(e),
        }
    }

    /// The tenant's default agent: the first by name with metadata `default=true`, else the
    /// configured name when the tenant has it.
    pub(crate) async fn default_agent(&self, p: &Caller, configured: Option<&str>) -> Result<Option<Agent>> {
        let req = ListAgentsRequest {
            page: Some(PageRequest { page_size: 1, page_token: String::new() }),
            owner: String::new(),
            metadata_filter: [("default".to_owned(), "true".to_owned())].into(),
        };
        let mut client = self.client();
        let listed =
            self.unary("agent registry ListAgents", client.list_agents(p.request(req, Some(self.timeout)))).await?;
        if let Some(agent) = listed.agents.into_iter().next() {
            return Ok(Some(agent));
        }
        match configured {
            Some(name) => match self.get_by_name(p, name).await {
                Ok(agent) => Ok(Some(agent)),
                Err(Error::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    /// Starts the agent's answer stream (the stream's own deadlines are the caller's).
    pub(crate) async fn query(
        &self,
        p: &Caller,
        agent_id: &str,
        messages: &[ChatMessage],
        conversation_id: &str,
        heartbeat: Duration,
        start_timeout: Duration,
    ) -> Result<Streaming<QueryAgentResponse>> {
        let req = QueryAgentRequest {
            agent: Some(query_agent_request::Agent::AgentId(agent_id.to_owned())),
            messages: messages.to_vec(),
            conversation_id: conversation_id.to_owned(),
            heartbeat_interval_ms: i32::try_from(heartbeat.as_millis()).unwrap_or(5000),
        };
        let mut client = self.client();
        // No grpc-timeout: it would cut a long but healthy answer; the stage watches the
        // stream's idle time and total duration instead.
        // The registry answers once MindsDB has started the agent's stream, which can take longer
        // than a plain lookup: that wait has the agent's deadline.
        self.unary_within("agent registry QueryAgent", start_timeout, client.query_agent(p.request(req, None))).await
    }
}
