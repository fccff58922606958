//! The MindsDB side of an agent, through the Agent and Project adapters.

use std::collections::HashSet;
use std::sync::Arc;

use futures::{Stream, StreamExt as _};
use getlood_auth::{Principal, TenantId};
use getlood_common::{ApiError, ErrorCode};
use getlood_mindsdb::{
    AgentAdapter, AgentEvent, AgentMessage, AgentMode, Ident, LlmSettings, MindsdbClient, MindsdbError, ProjectAdapter,
    TenantContext,
};
use getlood_proto::common::v1::{ChatMessage, Role, Usage};
use secrecy::SecretString;
use tokio::sync::Mutex;

/// What the registry asks MindsDB to hold for one agent (skills already compiled in).
#[derive(Debug, Clone)]
pub(crate) struct AgentSpec {
    pub provider: String,
    pub model_name: String,
    pub base_url: Option<String>,
    /// Only when the client sent one; MindsDB keeps the previous key otherwise.
    pub api_key: Option<String>,
    pub prompt_template: String,
    pub tables: Vec<String>,
    pub knowledge_bases: Vec<String>,
}

/// One event of an agent's answer.
#[derive(Debug, Clone)]
pub(crate) enum QueryEvent {
    Status { kind: String, message: String },
    Chunk(String),
    Done { answer: String, usage: Option<Usage> },
}

/// MindsDB agents of every tenant, one project per tenant.
#[derive(Clone)]
pub(crate) struct Backend {
    agents: AgentAdapter,
    projects: ProjectAdapter,
    /// Tenants whose project is known to exist, so creation does not ask MindsDB every time.
    ensured: Arc<Mutex<HashSet<TenantId>>>,
}

fn ctx(p: &Principal) -> TenantContext {
    TenantContext::new(p.tenant.clone(), p.user.clone())
}

fn ident(name: &str) -> Result<Ident, ApiError> {
    Ident::new(name).map_err(ApiError::from)
}

/// MindsDB checks an agent's model with a live call when the agent is written; a model that
/// fails it is the caller's setting, so the error says which endpoint failed and how — never
/// the provider's raw text (it can echo the key) nor the key.
fn model_check_error(err: MindsdbError, model: &LlmSettings) -> ApiError {
    let MindsdbError::Upstream(detail) = &err else { return ApiError::from(err) };
    tracing::warn!(provider = %model.provider, error = %err, "agent model check failed");
    let d = detail.to_ascii_lowercase();
    let how = if d.contains("connection error") || d.contains("apiconnectionerror") {
        "could not be reached".to_owned()
    } else if let Some(code) = d.split("status_code:").nth(1).and_then(|r| r.split(',').next()) {
        format!("answered HTTP {}", code.trim())
    } else if d.contains("output validation") {
        "did not answer in the shape MindsDB's agent asks for (a required tool call)".to_owned()
    } else if d.contains("api key") || d.contains("authentication") {
        "refused the API key".to_owned()
    } else {
        "failed the check call".to_owned()
    };
    let endpoint = model.base_url.as_deref().map_or_else(|| "its default endpoint".to_owned(), public_endpoint);
    ApiError::invalid_argument(format!(
        "the agent's model '{}' ({}) at {endpoint} {how}; nothing was written",
        model.model_name, model.provider
    ))
}

/// A base URL as it may be shown: without credentials (`user:pass@`), query or fragment.
fn public_endpoint(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else { return "an unparsable base_url".to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = if path.is_empty() { String::new() } else { format!("/{path}") };
    format!("{scheme}://{host}{path}").chars().take(200).collect()
}

impl Backend {
    pub(crate) fn new(client: MindsdbClient) -> Self {
        Self {
            agents: AgentAdapter::new(client.clone()),
            projects: ProjectAdapter::new(client),
            ensured: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    fn to_spec(name: &str, spec: &AgentSpec) -> Result<getlood_mindsdb::AgentSpec, ApiError> {
        let tables = spec
            .tables
            .iter()
            .map(|t| {
                let (db, table) = t
                    .split_once('.')
                    .ok_or_else(|| ApiError::invalid_argument(format!("table '{t}' must be database.table")))?;
                Ok((ident(db)?, ident(table)?))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(getlood_mindsdb::AgentSpec {
            name: ident(name)?,
            model: LlmSettings {
                provider: spec.provider.clone(),
                model_name: spec.model_name.clone(),
                api_key: spec.api_key.clone().map(SecretString::from),
                base_url: spec.base_url.clone(),
            },
            tables,
            knowledge_bases: spec.knowledge_bases.iter().map(|k| ident(k)).collect::<Result<_, _>>()?,
            prompt_template: Some(spec.prompt_template.clone()).filter(|p| !p.is_empty()),
            mode: AgentMode::Text,
            timeout_secs: None,
        })
    }

    async fn ensure_project(&self, p: &Principal) -> Result<(), ApiError> {
        if self.ensured.lock().await.contains(&p.tenant) {
            return Ok(());
        }
        self.projects.ensure(&ctx(p)).await?;
        self.ensured.lock().await.insert(p.tenant.clone());
        Ok(())
    }

    /// Creates again an agent MindsDB lost (its storage reset under a kept Postgres). Its project
    /// may have gone with it, so the project is checked again; an agent a concurrent request
    /// already put back counts as created.
    pub(crate) async fn recreate(&self, p: &Principal, name: &str, spec: &AgentSpec) -> Result<(), ApiError> {
        self.ensured.lock().await.remove(&p.tenant);
        match self.create(p, name, spec).await {
            Err(err) if err.code != ErrorCode::AlreadyExists => Err(err),
            _ => Ok(()),
        }
    }

    /// Creates the caller's tenant project if absent (a new tenant's sign-up); returns its name.
    pub(crate) async fn provision(&self, p: &Principal) -> Result<String, ApiError> {
        self.ensure_project(p).await?;
        Ok(ctx(p).project().as_str().to_owned())
    }

    pub(crate) async fn create(&self, p: &Principal, name: &str, spec: &AgentSpec) -> Result<(), ApiError> {
        let spec = Self::to_spec(name, spec)?;
        self.ensure_project(p).await?;
        self.agents.create(&ctx(p), &spec).await.map_err(|e| model_check_error(e, &spec.model))?;
        Ok(())
    }

    pub(crate) async fn update(&self, p: &Principal, name: &str, spec: &AgentSpec) -> Result<(), ApiError> {
        let spec = Self::to_spec(name, spec)?;
        self.agents.update(&ctx(p), &spec).await.map_err(|e| model_check_error(e, &spec.model))?;
        Ok(())
    }

    /// Deletes the MindsDB agent; one that is already gone counts as deleted.
    pub(crate) async fn delete(&self, p: &Principal, name: &str) -> Result<(), ApiError> {
        match self.agents.delete(&ctx(p), &ident(name)?).await {
            Ok(()) => Ok(()),
            Err(err) if err.code() == ErrorCode::NotFound => Ok(()),
            Err(err) => Err(ApiError::from(err)),
        }
    }

    /// Asks the agent; MindsDB streams progress lines, then the whole answer in one event.
    pub(crate) async fn query(
        &self,
        p: &Principal,
        name: &str,
        messages: &[ChatMessage],
    ) -> Result<impl Stream<Item = Result<QueryEvent, ApiError>> + Send + 'static, ApiError> {
        // MindsDB agents take user/assistant turns; the agent's own prompt plays the system role.
        let turns: Vec<AgentMessage> = messages
            .iter()
            .filter_map(|m| match Role::try_from(m.role) {
                Ok(Role::Assistant) => Some(AgentMessage::assistant(m.content.clone())),
                Ok(Role::User) => Some(AgentMessage::user(m.content.clone())),
                _ => None,
            })
            .collect();
        if !turns.iter().any(|t| t.role == "user") {
            return Err(ApiError::invalid_argument("messages must contain at least one user message"));
        }
        let stream = self.agents.query(&ctx(p), &ident(name)?, &turns).await.map_err(ApiError::from)?;
        let mut answer = String::new();
        Ok(stream.map(move |event| match event {
            Ok(AgentEvent::Status(message)) => Ok(QueryEvent::Status { kind: "status".to_owned(), message }),
            Ok(AgentEvent::Answer(text)) => {
                answer.push_str(&text);
                Ok(QueryEvent::Chunk(text))
            }
            Ok(AgentEvent::End) => Ok(QueryEvent::Done { answer: std::mem::take(&mut answer), usage: None }),
            Err(err) => Err(ApiError::from(err)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_shown_without_credentials_or_query() {
        assert_eq!(public_endpoint("https://u:sk-1@llm.example:8443/v1?key=sk-2#x"), "https://llm.example:8443/v1");
        assert_eq!(public_endpoint("http://127.0.0.1:18080"), "http://127.0.0.1:18080");
        assert_eq!(public_endpoint("no scheme"), "an unparsable base_url");
    }

    #[test]
    fn model_check_failures_name_the_endpoint_and_not_the_key() {
        let model = LlmSettings {
            provider: "openai".into(),
            model_name: "gpt-4".into(),
            api_key: Some(SecretString::from("sk-secret")),
            base_url: Some("http://k:sk-secret@127.0.0.1:1/v1".into()),
        };
        let err = model_check_error(MindsdbError::from_message("Connection error."), &model);
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert_eq!(
            err.message,
            "the agent's model 'gpt-4' (openai) at http://127.0.0.1:1/v1 could not be reached; nothing was written"
        );
        let err =
            model_check_error(MindsdbError::from_message("status_code: 405, model_name: gpt-4, body: <html>"), &model);
        assert!(err.message.contains("answered HTTP 405"), "{}", err.message);
        assert!(!err.message.contains("sk-secret"));
        let err = model_check_error(MindsdbError::Timeout(std::time::Duration::from_secs(1)), &model);
        assert_eq!(err.code, ErrorCode::DeadlineExceeded);
    }
}
