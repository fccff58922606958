//! The `a2a_agent` node: one message to a remote A2A 1.0 agent over its JSON-RPC binding.
//!
//! It reads the agent card, picks the card's JSON-RPC interface of protocol 1.0, and sends the
//! message with `SendStreamingMessage` when the card says the agent streams (each status update
//! relayed as node progress), or `SendMessage` with `returnImmediately` and `GetTask` polling
//! when it does not (each change of state relayed). A stream that ends before the task does is
//! followed with `GetTask` too. The answer is the task's artifacts' text (or, without any, its
//! final status message); a task that ends failed, rejected, canceled or waiting for input
//! fails the node with the agent's words.
//!
//! While the remote task may still be running, a guard holds its id: when the node stops before
//! the task ended (the run is cancelled or timed out, the node failed), the guard sends
//! `CancelTask`, best effort, on the runtime's tracker.
//!
//! The node's credentials go only to the card's origin: an interface URL on another origin is
//! refused when the node has credentials, so a card cannot redirect the token elsewhere.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    MAX_OUTPUT_BYTES, MAX_RELAYED_PROGRESS, Progress, ProgressUpdate, Remote, Scrub, credential_headers, cut,
    read_bounded, send_failed, shown_url, status_failed,
};
use crate::model::A2aNode;
use crate::nodes::NodeError;

/// The protocol version spoken (`A2A-Version`, the interface chosen from the card).
const PROTOCOL_VERSION: &str = "1.0";
/// Largest agent card read.
const MAX_CARD_BYTES: usize = 64 * 1024;
/// Largest JSON-RPC answer read (a task with its artifacts).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Largest single event of a stream.
const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Most bytes, and events, one stream may carry.
const MAX_STREAM_BYTES: usize = 8 * 1024 * 1024;
const MAX_STREAM_EVENTS: usize = 4096;
/// Longest rendered message sent, in bytes (the platform's own A2A server takes as much).
pub(crate) const MAX_MESSAGE_BYTES: usize = 32 * 1024;
/// GetTask polling: first and longest interval.
const POLL_FIRST: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(2);
/// How long a best-effort CancelTask may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

const COMPLETED: &str = "TASK_STATE_COMPLETED";

/// Whether nothing more happens to a task in `state` without a new message.
fn is_final(state: &str) -> bool {
    !matches!(state, "TASK_STATE_SUBMITTED" | "TASK_STATE_WORKING" | "" | "TASK_STATE_UNSPECIFIED")
}

/// Whether a task in `state` is over (a task waiting for input is not, and may be canceled).
fn is_terminal(state: &str) -> bool {
    matches!(state, COMPLETED | "TASK_STATE_FAILED" | "TASK_STATE_CANCELED" | "TASK_STATE_REJECTED")
}

/// The JSON-RPC endpoint the card names, and whether the agent streams.
#[derive(Debug, Clone, PartialEq)]
struct Card {
    name: String,
    url: String,
    streaming: bool,
}

/// Where the card is: the URL itself when it names a `.json` document, otherwise the
/// well-known path under the agent's base URL.
fn card_location(card_url: &str) -> String {
    let path_end = card_url.find(['?', '#']).unwrap_or(card_url.len());
    if card_url[..path_end].ends_with(".json") {
        card_url.to_owned()
    } else {
        format!("{}/.well-known/agent-card.json{}", card_url[..path_end].trim_end_matches('/'), &card_url[path_end..])
    }
}

/// `scheme://host:port` of a URL, for the same-origin rule.
fn origin(raw: &str) -> Option<String> {
    let u = url::Url::parse(raw).ok()?;
    Some(format!("{}://{}:{}", u.scheme(), u.host_str()?, u.port_or_known_default()?))
}

/// Reads the card: its JSON-RPC interface of protocol 1.x, whether it streams.
fn parse_card(card: &Value, scrub: &Scrub) -> Result<Card, NodeError> {
    let name = scrub.summary(card.get("name").and_then(Value::as_str).unwrap_or_default());
    let interfaces = card.get("supportedInterfaces").and_then(Value::as_array).cloned().unwrap_or_default();
    let chosen = interfaces.iter().find(|i| {
        let binding = i.get("protocolBinding").and_then(Value::as_str).unwrap_or_default();
        let version = i.get("protocolVersion").and_then(Value::as_str).unwrap_or_default();
        binding.eq_ignore_ascii_case("JSONRPC") && (version == "1" || version.starts_with("1."))
    });
    let Some(url) = chosen.and_then(|i| i.get("url")).and_then(Value::as_str) else {
        // A 0.3 card names its endpoint at the top level, with its version.
        if let Some(v) = card.get("protocolVersion").and_then(Value::as_str) {
            return Err(NodeError::Permanent(format!(
                "the agent card describes an A2A {} agent; this node speaks A2A {PROTOCOL_VERSION} (JSON-RPC)",
                scrub.summary(v)
            )));
        }
        return Err(NodeError::Permanent(format!(
            "the agent card names no JSON-RPC interface of A2A {PROTOCOL_VERSION} in 'supportedInterfaces'"
        )));
    };
    let streaming = card.pointer("/capabilities/streaming").and_then(Value::as_bool).unwrap_or(false);
    Ok(Card { name, url: url.to_owned(), streaming })
}

/// The text of a message's or artifact's parts: text parts as they are, data parts as JSON.
fn parts_text(parts: Option<&Value>) -> String {
    let mut texts = Vec::new();
    for part in parts.and_then(Value::as_array).into_iter().flatten() {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            texts.push(t.to_owned());
        } else if let Some(d) = part.get("data") {
            texts.push(d.to_string());
        }
    }
    texts.join("\n")
}

/// What is known of the remote task so far.
#[derive(Debug, Default)]
struct TaskView {
    id: String,
    context_id: String,
    state: String,
    /// The text of the last status message.
    status_text: String,
    /// Artifacts by id, in the order first seen.
    artifacts: Vec<(String, String)>,
    /// A direct answer (a `message` instead of a task).
    message: Option<String>,
    /// The last agent message of the task's history.
    last_agent: String,
}

impl TaskView {
    /// Takes in a whole `Task`.
    fn task(&mut self, task: &Value) {
        if let Some(id) = task.get("id").and_then(Value::as_str) {
            self.id = id.chars().take(256).collect();
        }
        if let Some(c) = task.get("contextId").and_then(Value::as_str) {
            self.context_id = c.chars().take(256).collect();
        }
        if let Some(status) = task.get("status") {
            self.status(status);
        }
        if let Some(artifacts) = task.get("artifacts").and_then(Value::as_array)
            && !artifacts.is_empty()
        {
            self.artifacts = artifacts
                .iter()
                .map(|a| {
                    let id = a.get("artifactId").and_then(Value::as_str).unwrap_or_default().to_owned();
                    (id, parts_text(a.get("parts")))
                })
                .collect();
        }
        if let Some(history) = task.get("history").and_then(Value::as_array)
            && let Some(last) =
                history.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("ROLE_AGENT"))
        {
            self.last_agent = parts_text(last.get("parts"));
        }
    }

    fn status(&mut self, status: &Value) {
        if let Some(s) = status.get("state").and_then(Value::as_str) {
            self.state = s.chars().take(64).collect();
        }
        self.status_text = parts_text(status.pointer("/message/parts"));
    }

    /// Takes in an `artifactUpdate`: appended to the artifact of the same id, or replacing it.
    fn artifact_update(&mut self, update: &Value) {
        let Some(artifact) = update.get("artifact") else { return };
        let id = artifact.get("artifactId").and_then(Value::as_str).unwrap_or_default().to_owned();
        let text = parts_text(artifact.get("parts"));
        let append = update.get("append").and_then(Value::as_bool).unwrap_or(false);
        match self.artifacts.iter_mut().find(|(a, _)| *a == id) {
            Some((_, existing)) if append => {
                // Bounded: a stream may append without end; the output is cut anyway.
                if existing.len() <= MAX_OUTPUT_BYTES {
                    existing.push_str(&text);
                }
            }
            Some((_, existing)) => *existing = text,
            None => self.artifacts.push((id, text)),
        }
    }

    /// The answer: the artifacts' text, else a direct message, else the final status message,
    /// else the last agent message of the history.
    fn answer(&self) -> String {
        let artifacts: Vec<&str> =
            self.artifacts.iter().map(|(_, t)| t.as_str()).filter(|t| !t.trim().is_empty()).collect();
        if !artifacts.is_empty() {
            return artifacts.join("\n\n");
        }
        if let Some(m) = &self.message {
            return m.clone();
        }
        if !self.status_text.trim().is_empty() {
            return self.status_text.clone();
        }
        self.last_agent.clone()
    }
}

/// Sends `CancelTask` for a remote task that may still be running when the node stops.
struct CancelGuard {
    remote: Remote,
    url: String,
    headers: reqwest::header::HeaderMap,
    task_id: Option<String>,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let Some(id) = self.task_id.take() else { return };
        let (http, url, headers) = (self.remote.http.clone(), self.url.clone(), self.headers.clone());
        self.remote.tracker.spawn(async move {
            let body = rpc_body("CancelTask", json!({"id": id}));
            let sent = tokio::time::timeout(
                CANCEL_TIMEOUT,
                http.post(&url).headers(headers).header("a2a-version", PROTOCOL_VERSION).json(&body).send(),
            )
            .await;
            match sent {
                Ok(Ok(resp)) => tracing::info!(task = %id, status = resp.status().as_u16(), "remote a2a task canceled"),
                Ok(Err(e)) => tracing::info!(task = %id, error = %e.without_url(), "remote a2a task cancel failed"),
                Err(_) => tracing::info!(task = %id, "remote a2a task cancel timed out"),
            }
        });
    }
}

fn rpc_body(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": Uuid::new_v4().to_string(), "method": method, "params": params})
}

/// The `result` of a JSON-RPC answer, or the node error of its `error`.
fn rpc_result(method: &str, answer: Value, scrub: &Scrub) -> Result<Value, NodeError> {
    if let Some(err) = answer.get("error") {
        let code = err.get("code").and_then(Value::as_i64).unwrap_or_default();
        let message = scrub.summary(err.get("message").and_then(Value::as_str).unwrap_or("no message"));
        return Err(NodeError::Permanent(format!("the remote agent refused {method}: {message} (code {code})")));
    }
    answer.get("result").cloned().ok_or_else(|| {
        NodeError::Permanent(format!("the remote agent's answer to {method} is not a JSON-RPC response"))
    })
}

/// Relays state changes as node progress, at most [`MAX_RELAYED_PROGRESS`] per attempt.
struct Relay<'a, P: Progress> {
    progress: &'a P,
    scrub: &'a Scrub,
    sent: usize,
    last: (String, String),
}

impl<P: Progress> Relay<'_, P> {
    async fn relay(&mut self, view: &TaskView) {
        let now = (view.state.clone(), view.status_text.clone());
        if view.state.is_empty() || now == self.last || self.sent >= MAX_RELAYED_PROGRESS {
            return;
        }
        self.last = now;
        self.sent += 1;
        let message = self.scrub.summary(&view.status_text);
        self.progress.report(ProgressUpdate { state: view.state.clone(), message, remote_id: view.id.clone() }).await;
    }
}

/// Runs the node: `message` is its rendered text.
pub(crate) async fn run<P: Progress>(
    remote: &Remote,
    node: &A2aNode,
    message: String,
    progress: &P,
) -> Result<Value, NodeError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(NodeError::Permanent(format!(
            "the rendered message is {} bytes, more than {MAX_MESSAGE_BYTES}",
            message.len()
        )));
    }
    let scrub = Scrub::new(&node.credentials);
    let headers = credential_headers(&node.credentials)?;
    let has_credentials = !headers.is_empty();

    // The card.
    let card_url = card_location(&node.card_url);
    remote.check_url("'card_url'", &card_url)?;
    let resp = remote
        .http
        .get(&card_url)
        .headers(headers.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| send_failed("agent card", &card_url, &e))?;
    if !resp.status().is_success() {
        return Err(status_failed("agent card", &card_url, resp.status()));
    }
    let body = read_bounded("agent card", &card_url, resp, MAX_CARD_BYTES).await?;
    let card: Value = serde_json::from_slice(&body)
        .map_err(|_| NodeError::Permanent(format!("the agent card at {} is not JSON", shown_url(&card_url))))?;
    let card = parse_card(&card, &scrub)?;
    remote.check_url("the agent card's interface url", &card.url)?;
    if has_credentials && origin(&card.url) != origin(&card_url) {
        return Err(NodeError::Permanent(format!(
            "the agent card's interface url {} is on another origin than the card; the node's credentials go only to the card's origin",
            shown_url(&card.url)
        )));
    }

    let mut guard =
        CancelGuard { remote: remote.clone(), url: card.url.clone(), headers: headers.clone(), task_id: None };
    let mut relay = Relay { progress, scrub: &scrub, sent: 0, last: Default::default() };
    let mut view = TaskView::default();
    let sent_message = json!({
        "messageId": Uuid::new_v4().to_string(),
        "role": "ROLE_USER",
        "parts": [{"text": message}],
    });
    let modes = json!(["text/plain", "application/json"]);
    let call = Call { remote, url: &card.url, headers: &headers, scrub: &scrub };

    if card.streaming {
        let params = json!({"message": sent_message, "configuration": {"acceptedOutputModes": modes}});
        call.stream(params, &mut view, &mut guard, &mut relay).await?;
    } else {
        let params = json!({"message": sent_message, "configuration": {"acceptedOutputModes": modes, "returnImmediately": true}});
        let result = call.json("SendMessage", params).await?;
        take_send_result(&result, &mut view, &mut guard);
        relay.relay(&view).await;
    }
    // Not over yet (no streaming, or a stream that ended early): follow the task.
    if view.message.is_none() && !is_final(&view.state) {
        call.poll(&mut view, &mut relay).await?;
    }
    if is_terminal(&view.state) || view.message.is_some() {
        guard.task_id = None;
    }
    finish(view, &card.name, &scrub)
}

/// Takes in a `SendMessage` result: a task (its id armed in the guard) or a direct message.
fn take_send_result(result: &Value, view: &mut TaskView, guard: &mut CancelGuard) {
    if let Some(task) = result.get("task") {
        view.task(task);
        if !view.id.is_empty() && !is_terminal(&view.state) {
            guard.task_id = Some(view.id.clone());
        }
    } else if let Some(m) = result.get("message") {
        view.message = Some(parts_text(m.get("parts")));
        view.state = COMPLETED.to_owned();
        if let Some(c) = m.get("contextId").and_then(Value::as_str) {
            view.context_id = c.chars().take(256).collect();
        }
    }
}

/// The node's output for a task that ended, or its error.
fn finish(view: TaskView, agent: &str, scrub: &Scrub) -> Result<Value, NodeError> {
    let said = scrub.summary(&view.answer());
    let said = if said.is_empty() { "no reason given".to_owned() } else { said };
    match view.state.as_str() {
        COMPLETED => {
            let (answer, truncated) = cut(scrub.text(&view.answer()), MAX_OUTPUT_BYTES);
            let mut out = json!({
                "answer": answer,
                "task_id": view.id,
                "context_id": view.context_id,
                "state": view.state,
                "agent": agent,
            });
            if truncated && let Some(o) = out.as_object_mut() {
                o.insert("truncated".to_owned(), Value::Bool(true));
            }
            Ok(out)
        }
        "TASK_STATE_FAILED" => Err(NodeError::Permanent(format!("the remote agent's task failed: {said}"))),
        "TASK_STATE_REJECTED" => Err(NodeError::Permanent(format!("the remote agent rejected the task: {said}"))),
        "TASK_STATE_CANCELED" => Err(NodeError::Permanent(format!("the remote agent's task was canceled: {said}"))),
        "TASK_STATE_INPUT_REQUIRED" | "TASK_STATE_AUTH_REQUIRED" => Err(NodeError::Permanent(format!(
            "the remote agent asks for more input ({}), which a workflow node cannot give: {said}",
            view.state
        ))),
        other => {
            Err(NodeError::Permanent(format!("the remote agent's task ended in state '{}'", scrub.summary(other))))
        }
    }
}

/// JSON-RPC calls to the agent's interface.
struct Call<'a> {
    remote: &'a Remote,
    url: &'a str,
    headers: &'a reqwest::header::HeaderMap,
    scrub: &'a Scrub,
}

impl Call<'_> {
    async fn post(&self, method: &str, params: Value, accept: &str) -> Result<reqwest::Response, NodeError> {
        let resp = self
            .remote
            .http
            .post(self.url)
            .headers(self.headers.clone())
            .header("a2a-version", PROTOCOL_VERSION)
            .header("accept", accept)
            .json(&rpc_body(method, params))
            .send()
            .await
            .map_err(|e| send_failed(method, self.url, &e))?;
        if !resp.status().is_success() {
            return Err(status_failed(method, self.url, resp.status()));
        }
        Ok(resp)
    }

    /// A unary call: its `result`.
    async fn json(&self, method: &str, params: Value) -> Result<Value, NodeError> {
        let resp = self.post(method, params, "application/json").await?;
        let body = read_bounded(method, self.url, resp, MAX_RESPONSE_BYTES).await?;
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|_| NodeError::Permanent(format!("the remote agent's answer to {method} is not JSON")))?;
        rpc_result(method, answer, self.scrub)
    }

    /// `SendStreamingMessage`: reads the stream until the task is final or the stream ends.
    async fn stream<P: Progress>(
        &self,
        params: Value,
        view: &mut TaskView,
        guard: &mut CancelGuard,
        relay: &mut Relay<'_, P>,
    ) -> Result<(), NodeError> {
        const METHOD: &str = "SendStreamingMessage";
        let resp = self.post(METHOD, params, "text/event-stream").await?;
        let sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !sse {
            // An error (or an agent that answers at once) comes as one JSON-RPC response.
            let body = read_bounded(METHOD, self.url, resp, MAX_RESPONSE_BYTES).await?;
            let answer: Value = serde_json::from_slice(&body)
                .map_err(|_| NodeError::Permanent(format!("the remote agent's answer to {METHOD} is not JSON")))?;
            let result = rpc_result(METHOD, answer, self.scrub)?;
            take_send_result(&result, view, guard);
            relay.relay(view).await;
            return Ok(());
        }
        let mut events = SseEvents::new(resp);
        while let Some(data) = events.next(self.url).await? {
            let Ok(answer) = serde_json::from_str::<Value>(&data) else { continue };
            let result = rpc_result(METHOD, answer, self.scrub)?;
            if let Some(update) = result.get("statusUpdate") {
                if view.id.is_empty()
                    && let Some(id) = update.get("taskId").and_then(Value::as_str)
                {
                    view.id = id.chars().take(256).collect();
                }
                if let Some(status) = update.get("status") {
                    view.status(status);
                }
            } else if let Some(update) = result.get("artifactUpdate") {
                view.artifact_update(update);
                continue;
            } else {
                take_send_result(&result, view, guard);
            }
            if !view.id.is_empty() && guard.task_id.is_none() && !is_terminal(&view.state) {
                guard.task_id = Some(view.id.clone());
            }
            relay.relay(view).await;
            if view.message.is_some() || is_final(&view.state) {
                break;
            }
        }
        Ok(())
    }

    /// Follows the task with `GetTask` until it is final (the node's timeout bounds it).
    async fn poll<P: Progress>(&self, view: &mut TaskView, relay: &mut Relay<'_, P>) -> Result<(), NodeError> {
        if view.id.is_empty() {
            return Err(NodeError::Permanent(
                "the remote agent ended its answer before naming its task or finishing it".to_owned(),
            ));
        }
        let mut wait = POLL_FIRST;
        while !is_final(&view.state) {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(POLL_MAX);
            let task = self.json("GetTask", json!({"id": view.id, "historyLength": 1})).await?;
            view.task(&task);
            relay.relay(view).await;
        }
        Ok(())
    }
}

/// The `data` of each event of an SSE answer, bounded in size and count.
struct SseEvents {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
    data: String,
    total: usize,
    events: usize,
    done: bool,
}

impl SseEvents {
    fn new(resp: reqwest::Response) -> Self {
        Self {
            body: resp.bytes_stream().boxed(),
            buffer: Vec::new(),
            data: String::new(),
            total: 0,
            events: 0,
            done: false,
        }
    }

    /// The next event's data; `None` at the end of the stream.
    async fn next(&mut self, url: &str) -> Result<Option<String>, NodeError> {
        loop {
            // Complete lines first.
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let line = line.trim_end_matches(['\n', '\r']);
                if line.is_empty() {
                    if !self.data.is_empty() {
                        self.events += 1;
                        if self.events > MAX_STREAM_EVENTS {
                            return Err(NodeError::Permanent(format!(
                                "the remote agent's stream sent more than {MAX_STREAM_EVENTS} events"
                            )));
                        }
                        return Ok(Some(std::mem::take(&mut self.data)));
                    }
                } else if let Some(d) = line.strip_prefix("data:") {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    if self.data.len() > MAX_EVENT_BYTES {
                        return Err(NodeError::Permanent(format!(
                            "an event of the remote agent's stream is larger than {MAX_EVENT_BYTES} bytes"
                        )));
                    }
                }
                // Comments (keep-alives), `event:`, `id:` and `retry:` lines carry nothing here.
            }
            if self.buffer.len() > MAX_EVENT_BYTES {
                return Err(NodeError::Permanent(format!(
                    "a line of the remote agent's stream is longer than {MAX_EVENT_BYTES} bytes"
                )));
            }
            if self.done {
                // A last event without its blank line still counts.
                return Ok((!self.data.is_empty()).then(|| std::mem::take(&mut self.data)));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => {
                    self.total += chunk.len();
                    if self.total > MAX_STREAM_BYTES {
                        return Err(NodeError::Permanent(format!(
                            "the remote agent's stream is larger than {MAX_STREAM_BYTES} bytes"
                        )));
                    }
                    self.buffer.extend_from_slice(&chunk);
                }
                Some(Err(e)) => return Err(send_failed("SendStreamingMessage", url, &e)),
                None => {
                    self.done = true;
                    if !self.buffer.is_empty() {
                        self.buffer.push(b'\n');
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_are_found_under_the_base_url() {
        assert_eq!(
            card_location("https://a.example/a2a/helper"),
            "https://a.example/a2a/helper/.well-known/agent-card.json"
        );
        assert_eq!(
            card_location("https://a.example/a2a/helper/"),
            "https://a.example/a2a/helper/.well-known/agent-card.json"
        );
        assert_eq!(card_location("https://a.example/card.json?v=1"), "https://a.example/card.json?v=1");
        assert_eq!(origin("http://a.example/x"), origin("http://a.example:80/y"));
        assert_ne!(origin("http://a.example/x"), origin("https://a.example/x"));
    }

    #[test]
    fn cards_name_a_json_rpc_interface_of_1_0() {
        let scrub = Scrub::default();
        let card = json!({
            "name": "helper",
            "supportedInterfaces": [
                {"url": "https://a.example/grpc", "protocolBinding": "GRPC", "protocolVersion": "1.0"},
                {"url": "https://a.example/a2a/helper", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"},
            ],
            "capabilities": {"streaming": true},
        });
        assert_eq!(
            parse_card(&card, &scrub).unwrap(),
            Card { name: "helper".into(), url: "https://a.example/a2a/helper".into(), streaming: true }
        );
        let old = json!({"name": "x", "url": "https://a.example/", "protocolVersion": "0.3.0"});
        let err = parse_card(&old, &scrub).unwrap_err();
        assert!(err.message().contains("A2A 0.3.0 agent"), "{err:?}");
        let none = json!({"name": "x", "supportedInterfaces": [{"url": "u", "protocolBinding": "HTTP+JSON", "protocolVersion": "1.0"}]});
        assert!(parse_card(&none, &scrub).unwrap_err().message().contains("no JSON-RPC interface"));
    }

    #[test]
    fn answers_come_from_artifacts_then_messages() {
        let mut view = TaskView::default();
        view.task(&json!({"id": "t1", "contextId": "c1", "status": {"state": "TASK_STATE_WORKING"}}));
        view.artifact_update(&json!({"artifact": {"artifactId": "a", "parts": [{"text": "Hel"}]}, "append": false}));
        view.artifact_update(&json!({"artifact": {"artifactId": "a", "parts": [{"text": "lo"}]}, "append": true}));
        view.status(&json!({"state": COMPLETED}));
        let out = finish(view, "helper", &Scrub::default()).unwrap();
        assert_eq!(
            out,
            json!({"answer": "Hello", "task_id": "t1", "context_id": "c1", "state": COMPLETED, "agent": "helper"})
        );

        let mut failed = TaskView::default();
        failed.status(
            &json!({"state": "TASK_STATE_FAILED", "message": {"parts": [{"text": "model down: key sk-secret-1"}]}}),
        );
        let scrub = Scrub::new(&crate::model::Credentials { bearer: Some("sk-secret-1".into()), headers: vec![] });
        let err = finish(failed, "x", &scrub).unwrap_err();
        assert_eq!(err, NodeError::Permanent("the remote agent's task failed: model down: key [redacted]".into()));

        let mut asks = TaskView::default();
        asks.status(&json!({"state": "TASK_STATE_INPUT_REQUIRED", "message": {"parts": [{"text": "Which year?"}]}}));
        let err = finish(asks, "x", &Scrub::default()).unwrap_err();
        assert!(err.message().contains("cannot give: Which year?"), "{err:?}");
        assert!(is_final("TASK_STATE_INPUT_REQUIRED") && !is_terminal("TASK_STATE_INPUT_REQUIRED"));
    }

    #[test]
    fn json_rpc_errors_are_summarized() {
        let answer = json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32602, "message": "bad\nparams"}});
        let err = rpc_result("SendMessage", answer, &Scrub::default()).unwrap_err();
        assert_eq!(err.message(), "the remote agent refused SendMessage: bad params (code -32602)");
    }
}
