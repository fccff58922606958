//! A deterministic OpenAI-compatible server for tests that must assert exact content.
//!
//! It answers what MindsDB 26.1 sends to an OpenAI endpoint (ML engines, agents, KB embeddings):
//! * `POST /v1/chat/completions`, plain and `stream: true` (SSE ending in `data: [DONE]`);
//!   when the request carries `tools` it answers with a call of the first tool whose arguments
//!   are built from that tool's JSON schema. That is how MindsDB agents (pydantic-ai, one
//!   `final_result` tool, `tool_choice: "required"`) get their plan and their answer. An answer
//!   schema with a `type` enum gets `final_query` plus the SQL when the question contains
//!   `SQL: <query>`, else `final_text`.
//! * `POST /v1/embeddings`: bag-of-words hash vectors (texts sharing words are close), as
//!   floats or, when asked, base64 (MindsDB asks for base64).
//! * `GET /v1/models` and `GET /v1/models/{id}` (404 for unknown ids, as the real API).
//!
//! Replies are scripted per prompt pattern (`reply_when`); the default reply is
//! `DOUBLE-ANSWER: <question>`. Every call is recorded for assertions.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// Embedding dimension of the double.
pub const DOUBLE_EMBEDDING_DIM: usize = 64;

/// One request the double received.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// Request path, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The JSON body (`Null` for GETs).
    pub body: Value,
}

impl RecordedCall {
    /// The `content` of the last `user` message of a chat call.
    pub fn last_user_message(&self) -> Option<String> {
        self.body
            .get("messages")?
            .as_array()?
            .iter()
            .rev()
            .find_map(|m| if m.get("role")?.as_str()? == "user" { Some(content_text(m.get("content")?)) } else { None })
    }
}

#[derive(Default)]
struct Inner {
    calls: Vec<RecordedCall>,
    scripts: Vec<(String, String)>,
    delays: Vec<(String, std::time::Duration)>,
    failing: Option<u16>,
}

/// The running double; stops when dropped.
pub struct OpenAiDouble {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for OpenAiDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiDouble").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Drop for OpenAiDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Model ids the double lists: cl100k names MindsDB's tiktoken can count offline, plus names
/// tests use for embeddings.
pub const DOUBLE_MODELS: [&str; 5] = ["gpt-4", "gpt-4o", "gpt-3.5-turbo", "text-embedding-3-small", "double-embed"];

impl OpenAiDouble {
    /// Starts the double on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/embeddings", post(embeddings))
            .route("/v1/models", get(models))
            .route("/v1/models/{id}", get(model))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, inner, task })
    }

    /// The base URL to configure as `api_base`/`base_url`: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers `reply` to every chat whose messages contain `pattern` (first match wins, in
    /// the order added; a pattern in the chat's current question wins over one only in its
    /// history, system prompt or recalled earlier turns).
    pub fn reply_when(&self, pattern: impl Into<String>, reply: impl Into<String>) {
        self.lock().scripts.push((pattern.into(), reply.into()));
    }

    /// Holds every chat whose messages contain `pattern` (matched as [`Self::reply_when`]) for
    /// `delay` before answering, so a test can act while a turn is still running (cancel it,
    /// drop and resume its stream).
    pub fn delay_when(&self, pattern: impl Into<String>, delay: std::time::Duration) {
        self.lock().delays.push((pattern.into(), delay));
    }

    /// Makes every call fail with `status` (`None` heals it): the provider is down.
    pub fn set_failing(&self, status: Option<u16>) {
        self.lock().failing = status;
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock().calls.clone()
    }

    /// Calls received on `path`.
    pub fn calls_to(&self, path: &str) -> Vec<RecordedCall> {
        self.lock().calls.iter().filter(|c| c.path == path).cloned().collect()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

type Shared = Arc<Mutex<Inner>>;

fn record(state: &Shared, path: &str, body: &Value) -> Option<u16> {
    let mut g = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    g.calls.push(RecordedCall { path: path.to_owned(), body: body.clone() });
    g.failing
}

fn failure(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({"error": {"message": "double is failing on purpose", "type": "server_error"}})))
        .into_response()
}

async fn models(State(state): State<Shared>) -> Response {
    if let Some(s) = record(&state, "/v1/models", &Value::Null) {
        return failure(s);
    }
    let data: Vec<Value> = DOUBLE_MODELS
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "double"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn model(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    if let Some(s) = record(&state, "/v1/models/{id}", &json!({"id": id})) {
        return failure(s);
    }
    if DOUBLE_MODELS.contains(&id.as_str()) {
        Json(json!({"id": id, "object": "model", "created": 0, "owned_by": "double"})).into_response()
    } else {
        (StatusCode::NOT_FOUND, Json(json!({"error": {"message": "model not found", "code": "model_not_found"}})))
            .into_response()
    }
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        // Content parts: [{"type":"text","text":"..."}]
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")
        }
        _ => String::new(),
    }
}

/// The user's question inside MindsDB's agent prompt, or the whole last user message.
fn question_of(body: &Value) -> String {
    let last = RecordedCall { path: String::new(), body: body.clone() }.last_user_message().unwrap_or_default();
    // MindsDB wraps the question in catalog/plan prompts that end with it (26.1's planning
    // prompt: "Question to answer: <q>"; answering prompt: "... to answer the question:\n<q>").
    for marker in ["to answer the question:", "Question to answer:"] {
        if let Some(i) = last.rfind(marker) {
            return last[i + marker.len()..].trim().to_owned();
        }
    }
    last.trim().to_owned()
}

/// What the pipeline's memory recall puts before the question in the last user message
/// (services/pipeline/src/memory.rs, `with_recall`): earlier turns of the same user, then
/// `\n\nQuestion: <the question>`.
const RECALL_HEADER: &str = "From this user's earlier conversations";
const RECALL_QUESTION: &str = "\n\nQuestion: ";

/// The question the chat asks now: [`question_of`] without the earlier turns a memory recall
/// put before it.
fn current_question(body: &Value) -> String {
    let q = question_of(body);
    match (q.contains(RECALL_HEADER), q.rfind(RECALL_QUESTION)) {
        (true, Some(i)) => q[i + RECALL_QUESTION.len()..].trim().to_owned(),
        _ => q,
    }
}

/// The first pattern of `patterns` the chat's current question contains, else the first its
/// messages contain anywhere (a system prompt, a skill's fragment). The question goes first:
/// a conversation's history or the user's recalled earlier turns may hold another scripted
/// question, whose reply would otherwise answer this one (issue 15's A2A flake: a recalled
/// "What does the agent to agent protocol do?" turn made the double answer a SLOW-QUESTION with
/// the other question's answer, whenever a memory-ingesting event-dispatcher ran on the NATS
/// server the tests share).
fn first_match<'a, T>(patterns: &'a [(String, T)], body: &Value) -> Option<&'a T> {
    let question = current_question(body);
    if let Some((_, v)) = patterns.iter().find(|(p, _)| question.contains(p.as_str())) {
        return Some(v);
    }
    let all = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter().map(|m| content_text(m.get("content").unwrap_or(&Value::Null))).collect::<Vec<_>>().join("\n")
        })
        .unwrap_or_default();
    patterns.iter().find(|(p, _)| all.contains(p.as_str())).map(|(_, v)| v)
}

/// The delay of the `delay_when` pattern the chat matches ([`first_match`]).
fn scripted_delay(state: &Shared, body: &Value) -> Option<std::time::Duration> {
    let g = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    first_match(&g.delays, body).copied()
}

fn scripted_reply(state: &Shared, body: &Value) -> String {
    let g = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    first_match(&g.scripts, body).cloned().unwrap_or_else(|| format!("DOUBLE-ANSWER: {}", question_of(body)))
}

/// Arguments for `tool` built from its JSON schema.
fn tool_arguments(tool: &Value, reply: &str, question: &str) -> Value {
    let params = tool.pointer("/function/parameters").cloned().unwrap_or(json!({}));
    let sql = question.split_once("SQL:").map(|(_, q)| q.trim().to_owned());
    fill(&params, reply, sql.as_deref(), "")
}

fn fill(schema: &Value, reply: &str, sql: Option<&str>, name: &str) -> Value {
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let want = if sql.is_some() { "final_query" } else { "final_text" };
        return values
            .iter()
            .find(|v| v.as_str() == Some(want))
            .or_else(|| values.first())
            .cloned()
            .unwrap_or(Value::Null);
    }
    if let Some(any) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        let first = any.iter().find(|s| s.get("type").and_then(Value::as_str) != Some("null")).unwrap_or(&Value::Null);
        return fill(first, reply, sql, name);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    out.insert(k.clone(), fill(s, reply, sql, k));
                }
            }
            Value::Object(out)
        }
        Some("integer") => json!(1),
        Some("number") => json!(1.0),
        Some("boolean") => json!(false),
        Some("array") => json!([]),
        _ => match (name, sql) {
            // MindsDB's answer schema has a free-text `type` (no enum) naming the answer kind.
            ("type", Some(_)) => json!("final_query"),
            ("type", None) => json!("final_text"),
            ("sql_query", Some(q)) => json!(q),
            ("sql_query", None) => json!(""),
            _ => json!(reply),
        },
    }
}

async fn chat(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    if let Some(s) = record(&state, "/v1/chat/completions", &body) {
        return failure(s);
    }
    if let Some(delay) = scripted_delay(&state, &body) {
        tokio::time::sleep(delay).await;
    }
    let reply = scripted_reply(&state, &body);
    let model = body.get("model").and_then(Value::as_str).unwrap_or("gpt-4").to_owned();
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let tool = body.get("tools").and_then(Value::as_array).and_then(|t| t.first()).cloned();
    let prompt_tokens = body.to_string().len() as u64 / 4;
    let completion_tokens = reply.split_whitespace().count() as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                       "total_tokens": prompt_tokens + completion_tokens});
    let tool_call = tool.map(|t| {
        let name = t.pointer("/function/name").and_then(Value::as_str).unwrap_or("final_result").to_owned();
        let args = tool_arguments(&t, &reply, &question_of(&body));
        json!({"id": "call_double_1", "type": "function", "function": {"name": name, "arguments": args.to_string()}})
    });
    if !stream {
        let message = match &tool_call {
            Some(call) => json!({"role": "assistant", "content": null, "tool_calls": [call]}),
            None => json!({"role": "assistant", "content": reply}),
        };
        let finish = if tool_call.is_some() { "tool_calls" } else { "stop" };
        return Json(json!({
            "id": "chatcmpl-double", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage,
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-double", "object": "chat.completion.chunk", "created": 0, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
    match &tool_call {
        Some(call) => {
            let mut c = call.clone();
            c["index"] = json!(0);
            events.push(chunk(json!({"tool_calls": [c]}), Value::Null));
            events.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            // Word-sized pieces so clients see several deltas; joined they are the reply.
            let mut rest = reply.as_str();
            while !rest.is_empty() {
                let cut = rest.char_indices().skip(1).find(|(_, c)| *c == ' ').map(|(i, _)| i).unwrap_or(rest.len());
                events.push(chunk(json!({"content": &rest[..cut]}), Value::Null));
                rest = &rest[cut..];
            }
            events.push(chunk(json!({}), json!("stop")));
        }
    }
    if body.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true) {
        let mut u = chunk(json!({}), Value::Null);
        u["choices"] = json!([]);
        u["usage"] = usage;
        events.push(u);
    }
    let mut out: Vec<Result<Event, std::convert::Infallible>> =
        events.into_iter().map(|e| Ok(Event::default().data(e.to_string()))).collect();
    out.push(Ok(Event::default().data("[DONE]")));
    Sse::new(futures::stream::iter(out)).into_response()
}

/// A deterministic unit vector: each lower-cased word adds 1 to a hashed dimension.
pub fn double_embedding(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DOUBLE_EMBEDDING_DIM];
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        // FNV-1a: stable across runs and platforms, unlike std's RandomState.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in word.to_lowercase().bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        v[(h % DOUBLE_EMBEDDING_DIM as u64) as usize] += 1.0;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v[0] = 1.0;
    } else {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

async fn embeddings(State(state): State<Shared>, Json(body): Json<Value>) -> Response {
    if let Some(s) = record(&state, "/v1/embeddings", &body) {
        return failure(s);
    }
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => {
            a.iter().map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).collect()
        }
        _ => Vec::new(),
    };
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let v = double_embedding(text);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(b64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let model = body.get("model").cloned().unwrap_or(json!("double-embed"));
    Json(json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}))
        .into_response()
}

/// Standard base64 with padding (what the OpenAI client decodes).
fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_and_word_based() {
        let a = double_embedding("my cat sleeps");
        assert_eq!(a, double_embedding("my cat sleeps"));
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        assert!(dot(&a, &double_embedding("a cat")) > dot(&a, &double_embedding("stock market")));
        assert_eq!(b64(b"hi"), "aGk=");
    }

    /// A chat as MindsDB's agent sends it: the answering prompt ends with the question, which
    /// the pipeline prefixed with the user's recalled earlier turns.
    fn agent_chat(question: &str) -> Value {
        json!({"messages": [
            {"role": "system", "content": "You are a helpful agent."},
            {"role": "user", "content": format!("Use the plan to answer the question:\n{question}")},
        ]})
    }

    #[test]
    fn the_current_question_wins_over_recalled_turns_and_history() {
        let state: Shared = Arc::new(Mutex::new(Inner::default()));
        {
            let mut g = state.lock().unwrap();
            g.scripts.push(("What does A2A do?".into(), "It links agents.".into()));
            g.scripts.push(("SLOW-QUESTION".into(), "That took a while.".into()));
            g.scripts.push(("helpful agent".into(), "from the system prompt".into()));
            g.delays.push(("What does A2A do?".into(), std::time::Duration::from_secs(1)));
            g.delays.push(("SLOW-QUESTION".into(), std::time::Duration::from_secs(4)));
        }
        let recalled = agent_chat(
            "From this user's earlier conversations (use them if they help):\n\
             - User: What does A2A do? / Assistant: It links agents.\n\nQuestion: SLOW-QUESTION",
        );
        assert_eq!(current_question(&recalled), "SLOW-QUESTION");
        assert_eq!(scripted_reply(&state, &recalled), "That took a while.");
        assert_eq!(scripted_delay(&state, &recalled), Some(std::time::Duration::from_secs(4)));
        // An earlier turn of the same conversation: the current question decides too.
        let mut history = agent_chat("SLOW-QUESTION");
        history["messages"].as_array_mut().unwrap().insert(1, json!({"role": "user", "content": "What does A2A do?"}));
        assert_eq!(scripted_reply(&state, &history), "That took a while.");
        // No pattern in the question: anywhere in the messages, as before.
        assert_eq!(scripted_reply(&state, &agent_chat("Anything else?")), "from the system prompt");
        assert_eq!(scripted_reply(&state, &agent_chat("What does A2A do?")), "It links agents.");
    }

    #[test]
    fn tool_arguments_follow_the_schema() {
        let tool = json!({"type": "function", "function": {"name": "final_result", "parameters": {
            "type": "object", "properties": {
                "sql_query": {"type": "string"}, "text": {"type": "string"}, "short_description": {"type": "string"},
                "type": {"type": "string"},
                "estimated_steps": {"type": "integer"}}}}});
        let args = tool_arguments(&tool, "R", "names SQL: SELECT 1");
        assert_eq!(args["type"], "final_query");
        assert_eq!(args["sql_query"], "SELECT 1");
        assert_eq!(args["estimated_steps"], 1);
        let args = tool_arguments(&tool, "R", "hello");
        assert_eq!(args["type"], "final_text");
        assert_eq!(args["text"], "R");
    }
}
