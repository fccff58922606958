//! Agent adapter: MindsDB agents in the tenant's project. Owned by agent-registry.
//!
//! Settings travel as JSON through MindsDB's REST routes (`/api/projects/{p}/agents`), because
//! `CREATE AGENT ... USING` cannot bind values (the parser refuses `:name` in `USING`).
//! Questions always use the streaming route: the non-streaming one answers 500 in 26.1 on every
//! successful answer (`KeyError 'trace_id'`).

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::client::{MindsdbClient, RestPath, Retry, TenantContext};
use crate::error::{MindsdbError, Result};
use crate::fair::Permit;
use crate::mask::mask_secrets;
use crate::sql::Ident;

/// Which LLM an agent (or knowledge base embedding) calls, in MindsDB's agent `model` shape.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// MindsDB provider: `openai`, `anthropic`, `google`, `ollama`, `nvidia_nim`, `litellm`,
    /// `vllm` (26.1 accepts these; `writer`, `bedrock` and `mindsdb` raise).
    pub provider: String,
    /// The provider's model name.
    pub model_name: String,
    /// Provider key; never returned by any adapter.
    pub api_key: Option<SecretString>,
    /// OpenAI-compatible base URL (`http://127.0.0.1:18080/v1` for the local model).
    pub base_url: Option<String>,
}

impl LlmSettings {
    fn to_json(&self) -> Result<Value> {
        const PROVIDERS: [&str; 7] = ["openai", "anthropic", "google", "ollama", "nvidia_nim", "litellm", "vllm"];
        if !PROVIDERS.contains(&self.provider.as_str()) {
            return Err(MindsdbError::InvalidArgument(format!("unknown llm provider; one of {PROVIDERS:?}")));
        }
        let mut m = Map::new();
        m.insert("provider".into(), self.provider.clone().into());
        m.insert("model_name".into(), self.model_name.clone().into());
        if let Some(k) = &self.api_key {
            m.insert("api_key".into(), k.expose_secret().into());
        }
        if let Some(u) = &self.base_url {
            m.insert("base_url".into(), u.clone().into());
        }
        Ok(Value::Object(m))
    }
}

/// How the agent answers: free text, or SQL only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// Text answers (MindsDB's default).
    #[default]
    Text,
    /// Answers are SQL results.
    Sql,
}

/// Everything needed to create or replace an agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// Agent name in the tenant's project.
    pub name: Ident,
    /// The LLM it uses.
    pub model: LlmSettings,
    /// Tables it may read, as `(database, table)`; must exist in the tenant's company.
    pub tables: Vec<(Ident, Ident)>,
    /// Knowledge bases of the tenant's project it may search.
    pub knowledge_bases: Vec<Ident>,
    /// System prompt (skills compiled by the registry end up here).
    pub prompt_template: Option<String>,
    /// Answer mode.
    pub mode: AgentMode,
    /// Seconds MindsDB allows for one answer.
    pub timeout_secs: Option<u32>,
}

impl AgentSpec {
    fn to_json(&self, project: &Ident, with_name: bool) -> Result<Value> {
        let tables: Vec<String> = self.tables.iter().map(|(d, t)| format!("{d}.{t}")).collect();
        let kbs: Vec<String> = self.knowledge_bases.iter().map(|k| format!("{project}.{k}")).collect();
        let mut params = Map::new();
        params.insert("mode".into(), json!(self.mode));
        if let Some(t) = self.timeout_secs {
            params.insert("timeout".into(), t.into());
        }
        let mut agent = Map::new();
        if with_name {
            agent.insert("name".into(), self.name.as_str().into());
        }
        agent.insert("model".into(), self.model.to_json()?);
        agent.insert("data".into(), json!({"tables": tables, "knowledge_bases": kbs}));
        if let Some(p) = &self.prompt_template {
            agent.insert("prompt_template".into(), p.clone().into());
        }
        agent.insert("params".into(), Value::Object(params));
        Ok(json!({ "agent": agent }))
    }
}

/// An agent as listed: settings with the API key reduced to whether one is set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInfo {
    /// Agent name.
    pub name: String,
    /// Provider of its LLM.
    pub provider: Option<String>,
    /// Model name of its LLM.
    pub model_name: Option<String>,
    /// Base URL of its LLM.
    pub base_url: Option<String>,
    /// Whether an API key is stored (the key itself never leaves MindsDB through us).
    pub has_api_key: bool,
    /// Tables it may read.
    pub tables: Vec<String>,
    /// Knowledge bases it may search.
    pub knowledge_bases: Vec<String>,
    /// Its system prompt.
    pub prompt_template: Option<String>,
    /// Remaining parameters (mode, timeout), secrets masked.
    pub params: Value,
}

impl AgentInfo {
    fn from_json(v: &Value) -> Self {
        let model = v.get("model").cloned().unwrap_or(Value::Null);
        let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        let list = |k: &str| -> Vec<String> {
            v.get("data")
                .and_then(|d| d.get(k))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let has_api_key = ["api_key", "openai_api_key"].iter().any(|k| model.get(*k).is_some_and(|x| !x.is_null()));
        let mut params = v.get("params").cloned().unwrap_or(Value::Null);
        mask_secrets(&mut params);
        Self {
            name: s(v, "name").unwrap_or_default(),
            provider: s(&model, "provider"),
            model_name: s(&model, "model_name"),
            base_url: s(&model, "base_url").or_else(|| s(&model, "openai_api_base")),
            has_api_key,
            tables: list("tables"),
            knowledge_bases: list("knowledge_bases"),
            prompt_template: s(v, "prompt_template").or_else(|| {
                v.get("params").and_then(|p| p.get("prompt_template")).and_then(Value::as_str).map(str::to_owned)
            }),
            params,
        }
    }
}

/// One message of the conversation sent to an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentMessage {
    /// `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

impl AgentMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user", content: content.into() }
    }

    /// An earlier assistant answer.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self { role: "assistant", content: content.into() }
    }
}

/// One event of an agent's answer stream.
///
/// MindsDB sends progress lines, then the whole answer in one event (no tokens), then `end`
/// twice (26.1 sends `{"type": "end", ...}` and then a bare `{"type": "end"}`); the stream yields
/// the first `End` and stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A progress line, e.g. "Generating Data Catalog...".
    Status(String),
    /// The answer: text, or a markdown table when the agent answered with a SQL query.
    Answer(String),
    /// The answer is complete.
    End,
}

/// The typed answer stream of one agent question. Holds one concurrency permit until dropped.
pub type AgentStream = Pin<Box<dyn Stream<Item = Result<AgentEvent>> + Send>>;

/// Creates, reads, updates, deletes, lists and questions the tenant's agents.
#[derive(Debug, Clone)]
pub struct AgentAdapter {
    client: MindsdbClient,
}

impl AgentAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    fn base(ctx: &TenantContext) -> RestPath {
        RestPath::new("/api/projects").id(&ctx.project()).fixed("/agents")
    }

    /// Creates an agent. MindsDB calls its LLM once while creating it, so the LLM must answer.
    pub async fn create(&self, ctx: &TenantContext, spec: &AgentSpec) -> Result<AgentInfo> {
        let body = spec.to_json(&ctx.project(), true)?;
        let v = self
            .client
            .rest(ctx, "agent.create", Method::POST, &Self::base(ctx), Some(&body), Retry::OnlyIfUnsent)
            .await?;
        Ok(AgentInfo::from_json(&v))
    }

    /// One agent.
    pub async fn get(&self, ctx: &TenantContext, name: &Ident) -> Result<AgentInfo> {
        let path = Self::base(ctx).id(name);
        let v = self.client.rest(ctx, "agent.get", Method::GET, &path, None, Retry::Idempotent).await?;
        Ok(AgentInfo::from_json(&v))
    }

    /// Replaces the agent's settings (the name in `spec` must be the agent's).
    pub async fn update(&self, ctx: &TenantContext, spec: &AgentSpec) -> Result<AgentInfo> {
        let body = spec.to_json(&ctx.project(), false)?;
        let path = Self::base(ctx).id(&spec.name);
        // Setting the same values twice gives the same agent.
        let v = self.client.rest(ctx, "agent.update", Method::PUT, &path, Some(&body), Retry::Idempotent).await?;
        Ok(AgentInfo::from_json(&v))
    }

    /// Deletes the agent; `NotFound` if it does not exist.
    pub async fn delete(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let path = Self::base(ctx).id(name);
        self.client.rest(ctx, "agent.delete", Method::DELETE, &path, None, Retry::OnlyIfUnsent).await?;
        Ok(())
    }

    /// All agents of the tenant's project.
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<AgentInfo>> {
        let v = self.client.rest(ctx, "agent.list", Method::GET, &Self::base(ctx), None, Retry::Idempotent).await?;
        Ok(v.as_array().map(|a| a.iter().map(AgentInfo::from_json).collect()).unwrap_or_default())
    }

    /// Asks the agent; the answer arrives as a typed stream of [`AgentEvent`]s.
    pub async fn query(&self, ctx: &TenantContext, name: &Ident, messages: &[AgentMessage]) -> Result<AgentStream> {
        if messages.is_empty() {
            return Err(MindsdbError::InvalidArgument("at least one message is needed".to_owned()));
        }
        let path = Self::base(ctx).id(name).fixed("/completions/stream");
        let body = json!({ "messages": messages });
        let (permit, resp) = self.client.open_stream(ctx, "agent.query", &path, &body).await?;
        Ok(sse_events(permit, resp.bytes_stream()))
    }

    /// Asks the agent and waits for the whole answer.
    pub async fn ask(&self, ctx: &TenantContext, name: &Ident, question: &str) -> Result<String> {
        let mut stream = self.query(ctx, name, &[AgentMessage::user(question)]).await?;
        let mut answer = None;
        while let Some(ev) = stream.next().await {
            match ev? {
                AgentEvent::Answer(a) => answer = Some(a),
                AgentEvent::Status(_) => {}
                AgentEvent::End => break,
            }
        }
        answer.ok_or_else(|| MindsdbError::Upstream("agent ended without an answer".to_owned()))
    }
}

struct SseState<S> {
    body: Pin<Box<S>>,
    parser: SseParser,
    pending: VecDeque<Result<AgentEvent>>,
    done: bool,
    _permit: Permit,
}

fn sse_events<S>(permit: Permit, body: S) -> AgentStream
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
{
    let state = SseState {
        body: Box::pin(body),
        parser: SseParser::default(),
        pending: VecDeque::new(),
        done: false,
        _permit: permit,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                if matches!(ev, Ok(AgentEvent::End) | Err(_)) {
                    // Stop at the first end or error: MindsDB repeats `end`, and nothing useful
                    // follows an error.
                    st.done = true;
                    st.pending.clear();
                }
                return Some((ev, st));
            }
            if st.done {
                return None;
            }
            match st.body.next().await {
                Some(Ok(chunk)) => st.pending.extend(st.parser.push(&chunk)),
                Some(Err(e)) => {
                    st.done = true;
                    let err = if e.is_timeout() {
                        MindsdbError::Unavailable("agent stream timed out".to_owned())
                    } else {
                        MindsdbError::Unavailable(format!("agent stream broke: {e}"))
                    };
                    return Some((Err(err), st));
                }
                None => {
                    st.done = true;
                    st.pending.extend(st.parser.finish());
                    if st.pending.is_empty() {
                        return Some((
                            Err(MindsdbError::Unavailable("agent stream ended without an end event".to_owned())),
                            st,
                        ));
                    }
                }
            }
        }
    }))
}

/// Incremental parser of MindsDB's `text/event-stream`: events separated by a blank line,
/// each made of `data:` lines holding one JSON object.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Result<AgentEvent>> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_blank_line(&self.buf) {
            let block: Vec<u8> = self.buf.drain(..end + sep).collect();
            if let Some(ev) = parse_block(&block[..end]) {
                out.push(ev);
            }
        }
        out
    }

    pub(crate) fn finish(&mut self) -> Vec<Result<AgentEvent>> {
        let block = std::mem::take(&mut self.buf);
        parse_block(&block).into_iter().collect()
    }
}

fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_block(block: &[u8]) -> Option<Result<AgentEvent>> {
    let text = String::from_utf8_lossy(block);
    let data: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
    if data.is_empty() {
        // Comments (heartbeats) and blocks without data.
        return None;
    }
    let payload = data.join("\n");
    let v: Value = match serde_json::from_str(&payload) {
        Ok(v) => v,
        Err(_) => return Some(Err(MindsdbError::Internal("agent stream sent an event that is not JSON".to_owned()))),
    };
    if let Some(err) = v.get("error") {
        let msg = err.as_str().map(str::to_owned).unwrap_or_else(|| err.to_string());
        return Some(Err(MindsdbError::Upstream(msg)));
    }
    let text_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match v.get("type").and_then(Value::as_str) {
        Some("context") | Some("status") => Some(Ok(AgentEvent::Status(text_of("content").unwrap_or_default()))),
        Some("data") => {
            Some(Ok(AgentEvent::Answer(text_of("text").or_else(|| text_of("content")).unwrap_or_default())))
        }
        Some("end") => Some(Ok(AgentEvent::End)),
        // Unknown event kinds from a newer MindsDB are skipped rather than failing the answer.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBSERVED: &str = "data: {\"type\": \"context\", \"content\": \"Generating Data Catalog...\"}\n\n\
data: {\"type\": \"context\", \"content\": \"Proposed Execution Plan:\\nFAKE value\\n\\nEstimated steps: 1\\n\\n\"}\n\n\
data: {\"type\": \"data\", \"text\": \"FAKE-AGENT-ANSWER: hello agent\", \"trace_id\": \"\"}\n\n\
data: {\"type\": \"end\", \"trace_id\": \"\"}\n\n\
data: {\"type\": \"end\"}\n\n";

    #[test]
    fn parses_observed_stream_in_any_chunking() {
        for size in [1, 3, 7, 64, OBSERVED.len()] {
            let mut p = SseParser::default();
            let mut events = Vec::new();
            for chunk in OBSERVED.as_bytes().chunks(size) {
                events.extend(p.push(chunk).into_iter().map(|e| e.unwrap()));
            }
            assert_eq!(events.len(), 5, "chunk size {size}");
            assert_eq!(events[0], AgentEvent::Status("Generating Data Catalog...".into()));
            assert!(matches!(&events[1], AgentEvent::Status(s) if s.contains("Estimated steps")));
            assert_eq!(events[2], AgentEvent::Answer("FAKE-AGENT-ANSWER: hello agent".into()));
            assert_eq!(events[3], AgentEvent::End);
        }
    }

    #[test]
    fn table_answers_and_errors() {
        let mut p = SseParser::default();
        let ev = p
            .push(b"data: {\"type\": \"data\", \"content\": \"| id |\\n| 2 |\", \"trace_id\": \"\"}\r\n\r\n: ping\n\n");
        assert_eq!(ev.len(), 1);
        assert_eq!(*ev[0].as_ref().unwrap(), AgentEvent::Answer("| id |\n| 2 |".into()));
        let ev = p.push(b"data: {\"error\": \"Error in completion event generator\"}\n\n");
        assert!(matches!(ev[0], Err(MindsdbError::Upstream(_))));
    }

    #[test]
    fn listing_never_shows_the_key() {
        let v = json!({"name":"a","model":{"provider":"openai","model_name":"gpt-4","api_key":"sk-secret","base_url":"http://x/v1"},
                       "data":{"tables":["files.t1"],"knowledge_bases":[]},"prompt_template":"p","params":{"mode":"text","api_key":"sk-2"}});
        let info = AgentInfo::from_json(&v);
        assert!(info.has_api_key);
        let text = serde_json::to_string(&info).unwrap();
        assert!(!text.contains("sk-secret") && !text.contains("sk-2"), "{text}");
        assert_eq!(info.tables, vec!["files.t1".to_owned()]);
    }
}
