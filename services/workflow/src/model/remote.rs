//! The configuration of the nodes that call remote agents and tools (`a2a_agent`, `mcp_tool`;
//! issue 15): reading it from the editor's data with every problem named, and keeping its
//! credentials out of every read of the graph.
//!
//! URLs are literal, never templates: the egress policy (`app.egress.allow`) judges them when
//! the graph is saved, and the node checks them again, with the addresses their names resolve
//! to, when it runs. Credentials (`auth.bearer`, header values) read back as [`REDACTED`]; a
//! save that keeps [`REDACTED`] keeps the stored value of the same node, but only while its URL
//! is unchanged, so whoever may edit a workflow cannot send its token to a host of their own.
//!
//! At rest the credentials are sealed ([`getlood_common::sealing`], `app.key_encryption_key`):
//! each slot's string becomes `{"sealed": "<base64>"}`, bound to its tenant, workflow, node and
//! slot. A save cannot write that shape itself (a credential must be a string), so every sealed
//! value was sealed by this service.

use getlood_common::egress::EgressPolicy;
use getlood_common::sealing::{SealError, SealingKey};
use getlood_proto::common::v1::FieldViolation;
use serde_json::{Map, Value};

use super::doc::GraphDoc;
use super::template::short;
use super::validate::Problems;

/// What a credential reads back as.
pub(crate) const REDACTED: &str = "[redacted]";
/// The member of a sealed credential's object.
const SEALED: &str = "sealed";
/// Longest URL of a remote node, in bytes.
const MAX_URL_BYTES: usize = 2048;
/// Longest `message` template of an a2a_agent node, in bytes (the rendered message has its own
/// bound when it runs).
const MAX_MESSAGE_TEMPLATE_BYTES: usize = 32 * 1024;
/// Largest `arguments` object of an mcp_tool node as saved, JSON text.
const MAX_ARGUMENTS_TEMPLATE_BYTES: usize = 64 * 1024;
/// Most extra headers a node may send.
const MAX_HEADERS: usize = 16;
/// Longest credential or header value, in bytes.
const MAX_SECRET_BYTES: usize = 4096;
/// Headers the node sets itself (or that would change how the request is framed): a node's
/// `headers` cannot name them; its token goes in `auth.bearer`.
const RESERVED_HEADERS: &[&str] = &[
    "a2a-version",
    "accept",
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "host",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-session-id",
    "proxy-authorization",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// A remote node's credentials. Its `Debug` never shows them.
#[derive(Clone, PartialEq, Default)]
pub(crate) struct Credentials {
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// Extra headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| REDACTED))
            .field("headers", &names)
            .finish()
    }
}

impl Credentials {
    /// Every secret value, for scrubbing texts that leave the node.
    pub(crate) fn secrets(&self) -> Vec<String> {
        self.bearer.iter().cloned().chain(self.headers.iter().map(|(_, v)| v.clone())).collect()
    }
}

/// An `a2a_agent` node: one message to a remote A2A 1.0 agent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct A2aNode {
    /// The agent card's URL (or the agent's base URL, under which the card is at
    /// `/.well-known/agent-card.json`).
    pub card_url: String,
    /// Template of the message text.
    pub message: String,
    pub credentials: Credentials,
}

/// An `mcp_tool` node: one tool call on a remote MCP server (streamable HTTP).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct McpNode {
    /// The server's MCP endpoint.
    pub server_url: String,
    pub tool: String,
    /// The arguments, each value a template.
    pub arguments: Map<String, Value>,
    pub credentials: Credentials,
}

/// Reads the data of an `a2a_agent` node (`field` is `graph.nodes[i]`).
pub(super) fn parse_a2a(
    data: &Map<String, Value>,
    field: &str,
    id: &str,
    egress: Option<&EgressPolicy>,
    p: &mut Problems,
) -> Option<A2aNode> {
    let card_url = url(data, "card_url", field, id, egress, p);
    let message = match data.get("message") {
        Some(Value::String(s)) if s.len() > MAX_MESSAGE_TEMPLATE_BYTES => {
            p.add(
                &format!("{field}.data.message"),
                id,
                &format!("'message' is {} bytes, more than {MAX_MESSAGE_TEMPLATE_BYTES}", s.len()),
            );
            None
        }
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => {
            p.add(&format!("{field}.data.message"), id, "'message' is required and must be a non-empty string");
            None
        }
    };
    let credentials = credentials(data, field, id, p);
    Some(A2aNode { card_url: card_url?, message: message?, credentials: credentials? })
}

/// Reads the data of an `mcp_tool` node (`field` is `graph.nodes[i]`).
pub(super) fn parse_mcp(
    data: &Map<String, Value>,
    field: &str,
    id: &str,
    egress: Option<&EgressPolicy>,
    p: &mut Problems,
) -> Option<McpNode> {
    let server_url = url(data, "server_url", field, id, egress, p);
    let tool = match data.get("tool") {
        Some(Value::String(t)) if is_tool_name(t) => Some(t.clone()),
        _ => {
            p.add(
                &format!("{field}.data.tool"),
                id,
                "'tool' is required: the tool's name, 1-128 characters of A-Z, a-z, 0-9, '_', '-' and '.'",
            );
            None
        }
    };
    let arguments = match data.get("arguments") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(o)) => {
            let size = Value::Object(o.clone()).to_string().len();
            if size > MAX_ARGUMENTS_TEMPLATE_BYTES {
                p.add(
                    &format!("{field}.data.arguments"),
                    id,
                    &format!("'arguments' is {size} bytes of JSON, more than {MAX_ARGUMENTS_TEMPLATE_BYTES}"),
                );
                None
            } else {
                Some(o.clone())
            }
        }
        Some(_) => {
            p.add(&format!("{field}.data.arguments"), id, "'arguments' must be an object (argument name: value)");
            None
        }
    };
    let credentials = credentials(data, field, id, p);
    Some(McpNode { server_url: server_url?, tool: tool?, arguments: arguments?, credentials: credentials? })
}

/// MCP's tool names (specification 2025-11-25, "Tool names").
fn is_tool_name(t: &str) -> bool {
    (1..=128).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

/// A literal http(s) URL at `data[key]`, judged by `egress` when given (saved graphs; stored
/// ones are judged again when the node runs).
fn url(
    data: &Map<String, Value>,
    key: &str,
    field: &str,
    id: &str,
    egress: Option<&EgressPolicy>,
    p: &mut Problems,
) -> Option<String> {
    let f = format!("{field}.data.{key}");
    let Some(Value::String(u)) = data.get(key).filter(|v| v.as_str().is_some_and(|s| !s.trim().is_empty())) else {
        p.add(&f, id, &format!("'{key}' is required: the http(s) URL to call"));
        return None;
    };
    if u.len() > MAX_URL_BYTES {
        p.add(&f, id, &format!("'{key}' is longer than {MAX_URL_BYTES} bytes"));
        return None;
    }
    if u.contains("{{") {
        p.add(
            &f,
            id,
            &format!("'{key}' cannot be a template: remote URLs are fixed when the workflow is saved, so the egress policy can judge them"),
        );
        return None;
    }
    if let Some(policy) = egress
        && let Err(e) = policy.check_url(u)
    {
        p.add(&f, id, &format!("'{key}' {e}"));
        return None;
    }
    Some(u.clone())
}

/// `auth` and `headers` of a remote node.
fn credentials(data: &Map<String, Value>, field: &str, id: &str, p: &mut Problems) -> Option<Credentials> {
    let before = p.0.len();
    let mut out = Credentials::default();
    match data.get("auth") {
        None | Some(Value::Null) => {}
        Some(Value::Object(auth)) => {
            for key in auth.keys().filter(|k| k.as_str() != "bearer") {
                p.add(
                    &format!("{field}.data.auth.{}", short(key)),
                    id,
                    &format!("'auth.{}' is not supported: 'auth' takes 'bearer' (a token)", short(key)),
                );
            }
            match auth.get("bearer") {
                Some(Value::String(t)) if secret_ok(t) => out.bearer = Some(t.clone()),
                _ => p.add(
                    &format!("{field}.data.auth.bearer"),
                    id,
                    &format!(
                        "'auth.bearer' must be a token of 1-{MAX_SECRET_BYTES} printable ASCII characters without spaces"
                    ),
                ),
            }
        }
        Some(_) => p.add(&format!("{field}.data.auth"), id, "'auth' must be an object: {\"bearer\": \"<token>\"}"),
    }
    match data.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) if headers.len() > MAX_HEADERS => {
            p.add(&format!("{field}.data.headers"), id, &format!("'headers' names more than {MAX_HEADERS} headers"));
        }
        Some(Value::Object(headers)) => {
            for (name, value) in headers {
                let f = format!("{field}.data.headers.{}", short(name));
                let lower = name.to_ascii_lowercase();
                if !is_header_name(name) {
                    p.add(&f, id, "header names are 1-64 characters of letters, digits and !#$%&'*+-.^_`|~");
                } else if RESERVED_HEADERS.contains(&lower.as_str()) {
                    p.add(&f, id, &format!("the node sets '{lower}' itself; a token goes in 'auth.bearer'"));
                } else {
                    match value {
                        Value::String(v) if header_value_ok(v) => out.headers.push((lower, v.clone())),
                        _ => p.add(
                            &f,
                            id,
                            &format!(
                                "a header value must be a string of 1-{MAX_SECRET_BYTES} printable ASCII characters"
                            ),
                        ),
                    }
                }
            }
        }
        Some(_) => p.add(&format!("{field}.data.headers"), id, "'headers' must be an object (name: value)"),
    }
    (p.0.len() == before).then_some(out)
}

fn secret_ok(t: &str) -> bool {
    (1..=MAX_SECRET_BYTES).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_graphic())
}

fn header_value_ok(v: &str) -> bool {
    (1..=MAX_SECRET_BYTES).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

fn is_header_name(n: &str) -> bool {
    (1..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The URL field of a remote node type.
fn url_key(kind: &str) -> Option<&'static str> {
    match kind {
        "a2a_agent" => Some("card_url"),
        "mcp_tool" => Some("server_url"),
        _ => None,
    }
}

/// The credential slots of a remote node's data: `(field below data, value)`.
fn slots(data: &mut Map<String, Value>) -> Vec<(String, &mut Value)> {
    let mut out = Vec::new();
    // One pass over the two objects, so both borrows are disjoint.
    for (key, value) in data.iter_mut() {
        match (key.as_str(), value) {
            ("auth", Value::Object(auth)) => {
                if let Some(v) = auth.get_mut("bearer") {
                    out.push(("auth.bearer".to_owned(), v));
                }
            }
            ("headers", Value::Object(headers)) => {
                for (name, v) in headers.iter_mut() {
                    out.push((format!("headers.{name}"), v));
                }
            }
            _ => {}
        }
    }
    out
}

impl GraphDoc {
    /// The graph as reads show it: every remote node's credentials replaced by [`REDACTED`].
    pub(crate) fn redacted(mut self) -> Self {
        let Ok(()) = self.each_credential(|_, _, v| {
            // A string, or a sealed one as stored.
            if v.is_string() || v.is_object() {
                *v = Value::String(REDACTED.to_owned());
            }
            Ok::<(), std::convert::Infallible>(())
        });
        self
    }

    /// Calls `f` with (node id, slot, value) for every credential slot of the remote nodes,
    /// stopping at its first error.
    fn each_credential<E>(&mut self, mut f: impl FnMut(&str, &str, &mut Value) -> Result<(), E>) -> Result<(), E> {
        for node in &mut self.nodes {
            if url_key(&node.kind).is_none() {
                continue;
            }
            if let Value::Object(data) = &mut node.data {
                for (slot, v) in slots(data) {
                    f(&node.id, &slot, v)?;
                }
            }
        }
        Ok(())
    }

    /// The graph as stored: every remote node's credential sealed with `key`, bound to the
    /// tenant, the workflow, its node and its slot.
    pub(crate) fn seal_credentials(&mut self, key: &SealingKey, tenant: &str, workflow: &str) -> Result<(), SealError> {
        self.each_credential(|id, slot, v| {
            if let Value::String(plain) = v {
                let sealed = key.seal_text(plain, credential_aad(tenant, workflow, id, slot).as_bytes())?;
                *v = serde_json::json!({ SEALED: sealed });
            }
            Ok(())
        })
    }

    /// The graph with its sealed credentials opened (plain ones, stored without a key, stay as
    /// they are). A sealed credential without `key`, or that does not open with it, is an
    /// error naming its node and slot, never its value.
    pub(crate) fn open_credentials(
        &mut self,
        key: Option<&SealingKey>,
        tenant: &str,
        workflow: &str,
    ) -> Result<(), String> {
        self.each_credential(|id, slot, v| {
            let Some(sealed) = v.as_object().and_then(|o| o.get(SEALED)).and_then(Value::as_str) else {
                return Ok(());
            };
            let key =
                key.ok_or_else(|| format!("node {id}: its {slot} is encrypted but app.key_encryption_key is not set"))?;
            let plain = key
                .open_text(sealed, credential_aad(tenant, workflow, id, slot).as_bytes())
                .map_err(|e| format!("node {id}: its {slot}: {e}"))?;
            *v = Value::String(plain);
            Ok(())
        })
    }

    /// Puts back the stored credentials a save left as [`REDACTED`]: from the node of the same
    /// id and type in `previous` (the latest version), while its URL is the same. Every slot
    /// that cannot be restored is a problem (all of them when there is no previous version).
    pub(crate) fn restore_credentials(&mut self, previous: Option<&GraphDoc>) -> Vec<FieldViolation> {
        let mut problems = Problems::default();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let Some(key) = url_key(&node.kind) else { continue };
            let old = previous.and_then(|g| g.nodes.iter().find(|o| o.id == node.id && o.kind == node.kind));
            let same_url = old.is_some_and(|o| o.data.get(key).is_some() && o.data.get(key) == node.data.get(key));
            let mut old_data = old.and_then(|o| o.data.as_object().cloned()).unwrap_or_default();
            let old_slots: Vec<(String, Value)> =
                slots(&mut old_data).into_iter().map(|(f, v)| (f, v.clone())).collect();
            let id = node.id.clone();
            let Value::Object(data) = &mut node.data else { continue };
            for (f, v) in slots(data) {
                if v.as_str() != Some(REDACTED) {
                    continue;
                }
                let stored = old_slots
                    .iter()
                    .find(|(of, ov)| *of == f && ov.as_str().is_some_and(|s| s != REDACTED))
                    .map(|(_, ov)| ov.clone());
                match stored {
                    Some(s) if same_url => *v = s,
                    Some(_) => problems.add(
                        &format!("graph.nodes[{i}].data.{f}"),
                        &id,
                        &format!("is \"{REDACTED}\" but '{key}' changed: give the credential again (a stored one never follows a node to a new URL)"),
                    ),
                    None => problems.add(
                        &format!("graph.nodes[{i}].data.{f}"),
                        &id,
                        &format!("is \"{REDACTED}\", and there is no stored value to keep: give the credential itself"),
                    ),
                }
            }
        }
        problems.0
    }
}

/// What a sealed credential is bound to. A JSON array: no node id or header name can make two
/// slots' bindings equal.
fn credential_aad(tenant: &str, workflow: &str, node: &str, slot: &str) -> String {
    serde_json::json!(["workflow-credential", tenant, workflow, node, slot]).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::doc::NodeDoc;

    fn problems_of(kind: &str, data: Value, egress: Option<&EgressPolicy>) -> Vec<FieldViolation> {
        let mut p = Problems::default();
        let data = data.as_object().unwrap().clone();
        match kind {
            "a2a_agent" => drop(parse_a2a(&data, "graph.nodes[1]", "n", egress, &mut p)),
            _ => drop(parse_mcp(&data, "graph.nodes[1]", "n", egress, &mut p)),
        }
        p.0
    }

    fn has(problems: &[FieldViolation], field: &str, needle: &str) {
        assert!(
            problems.iter().any(|p| p.field == field && p.description.contains(needle)),
            "no problem at {field} with {needle:?}: {problems:#?}"
        );
    }

    #[test]
    fn a2a_nodes_need_a_card_url_and_a_message() {
        let ok = json!({"card_url": "https://agents.example.com/a2a/helper", "message": "Q: {{input.q}}",
                        "auth": {"bearer": "tok-123"}, "headers": {"X-Tenant": "acme"}});
        let mut p = Problems::default();
        let node = parse_a2a(ok.as_object().unwrap(), "graph.nodes[1]", "n", None, &mut p).unwrap();
        assert!(p.0.is_empty());
        assert_eq!(node.credentials.bearer.as_deref(), Some("tok-123"));
        assert_eq!(node.credentials.headers, vec![("x-tenant".to_owned(), "acme".to_owned())]);
        // Debug output never carries a credential.
        let shown = format!("{node:?}");
        assert!(!shown.contains("tok-123") && !shown.contains("acme"), "{shown}");

        let problems = problems_of("a2a_agent", json!({}), None);
        has(&problems, "graph.nodes[1].data.card_url", "'card_url' is required");
        has(&problems, "graph.nodes[1].data.message", "'message' is required");
        let problems = problems_of(
            "a2a_agent",
            json!({"card_url": "https://{{input.host}}/x", "message": "x".repeat(40_000)}),
            None,
        );
        has(&problems, "graph.nodes[1].data.card_url", "cannot be a template");
        has(&problems, "graph.nodes[1].data.message", "more than 32768");
    }

    #[test]
    fn remote_urls_follow_the_egress_policy() {
        let policy = EgressPolicy::default();
        let problems = problems_of(
            "a2a_agent",
            json!({"card_url": "http://169.254.169.254/latest", "message": "hi"}),
            Some(&policy),
        );
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "graph.nodes[1].data.card_url");
        assert_eq!(
            problems[0].description,
            "'card_url' 169.254.169.254 is a link-local address; allow it with app.egress.allow"
        );
        let problems = problems_of("mcp_tool", json!({"server_url": "file:///etc/passwd", "tool": "t"}), Some(&policy));
        has(&problems, "graph.nodes[1].data.server_url", "scheme 'file' is not allowed");
        let problems = problems_of(
            "mcp_tool",
            json!({"server_url": "http://user:pw@example.com/mcp", "tool": "t"}),
            Some(&policy),
        );
        has(&problems, "graph.nodes[1].data.server_url", "user info");
        // Stored graphs load without the policy (the node checks again when it runs).
        assert!(problems_of("mcp_tool", json!({"server_url": "http://10.0.0.1/mcp", "tool": "t"}), None).is_empty());
    }

    #[test]
    fn mcp_nodes_name_a_tool_and_bounded_arguments() {
        let problems =
            problems_of("mcp_tool", json!({"server_url": "https://x.example/mcp", "tool": "no spaces!"}), None);
        has(&problems, "graph.nodes[1].data.tool", "'tool' is required");
        let problems = problems_of(
            "mcp_tool",
            json!({"server_url": "https://x.example/mcp", "tool": "t", "arguments": [1]}),
            None,
        );
        has(&problems, "graph.nodes[1].data.arguments", "must be an object");
        let big = json!({"server_url": "https://x.example/mcp", "tool": "t", "arguments": {"a": "x".repeat(70_000)}});
        has(&problems_of("mcp_tool", big, None), "graph.nodes[1].data.arguments", "more than 65536");
    }

    #[test]
    fn credentials_are_checked_field_by_field() {
        let base = |extra: Value| {
            let mut d = json!({"server_url": "https://x.example/mcp", "tool": "t"});
            d.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            problems_of("mcp_tool", d, None)
        };
        has(&base(json!({"auth": "tok"})), "graph.nodes[1].data.auth", "must be an object");
        has(&base(json!({"auth": {"basic": "a:b"}})), "graph.nodes[1].data.auth.basic", "takes 'bearer'");
        has(&base(json!({"auth": {"bearer": "has space"}})), "graph.nodes[1].data.auth.bearer", "printable ASCII");
        has(
            &base(json!({"headers": {"Authorization": "x"}})),
            "graph.nodes[1].data.headers.Authorization",
            "auth.bearer",
        );
        has(&base(json!({"headers": {"bad name": "x"}})), "graph.nodes[1].data.headers.bad name", "header names");
        has(&base(json!({"headers": {"x-a": 1}})), "graph.nodes[1].data.headers.x-a", "must be a string");
        has(&base(json!({"headers": {"x-a": "line\nbreak"}})), "graph.nodes[1].data.headers.x-a", "printable");
        let many: Map<String, Value> = (0..17).map(|i| (format!("x-{i}"), json!("v"))).collect();
        has(&base(json!({"headers": many})), "graph.nodes[1].data.headers", "more than 16");
    }

    fn doc(url: &str, bearer: &str) -> GraphDoc {
        GraphDoc {
            nodes: vec![NodeDoc {
                id: "call".to_owned(),
                kind: "a2a_agent".to_owned(),
                data: json!({"card_url": url, "message": "m", "auth": {"bearer": bearer}, "headers": {"x-key": "k1"}}),
                position: (0.0, 0.0),
            }],
            edges: Vec::new(),
            editor_state: Value::Null,
        }
    }

    #[test]
    fn reads_redact_and_saves_keep_credentials_only_at_the_same_url() {
        let stored = doc("https://a.example/card", "secret-token");
        let shown = stored.clone().redacted();
        let text = serde_json::to_string(&shown).unwrap();
        assert!(!text.contains("secret-token") && !text.contains("k1"), "{text}");
        assert_eq!(shown.nodes[0].data["auth"]["bearer"], REDACTED);
        assert_eq!(shown.nodes[0].data["message"], "m");

        // Saved back as read: the stored values are kept.
        let mut again = shown.clone();
        assert!(again.restore_credentials(Some(&stored)).is_empty());
        assert_eq!(again, stored);
        // Pointed at another host: refused, slot by slot.
        let mut moved = shown.clone();
        moved.nodes[0].data["card_url"] = json!("https://attacker.example/card");
        let problems = moved.restore_credentials(Some(&stored));
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(problems[0].field, "graph.nodes[0].data.auth.bearer");
        assert!(problems[0].description.contains("'card_url' changed"), "{problems:#?}");
        // A new workflow has nothing stored.
        let mut fresh = shown;
        let problems = fresh.restore_credentials(None);
        assert!(problems.iter().all(|p| p.description.contains("no stored value")), "{problems:#?}");
        // A new token replaces the stored one.
        let mut new_token = doc("https://a.example/card", "other");
        assert!(new_token.restore_credentials(Some(&stored)).is_empty());
        assert_eq!(new_token.nodes[0].data["auth"]["bearer"], "other");
    }

    #[test]
    fn stored_credentials_are_sealed_to_their_workflow_and_open_back() {
        let key = SealingKey::new(&secrecy::SecretString::from("a-key-encryption-secret-of-32-bytes-or-more"));
        let plain = doc("https://a.example/card", "secret-token");
        let mut stored = plain.clone();
        stored.seal_credentials(&key, "acme", "wf-1").unwrap();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(!text.contains("secret-token") && !text.contains("\"k1\""), "{text}");
        assert!(stored.nodes[0].data["auth"]["bearer"]["sealed"].is_string(), "{text}");
        assert_eq!(stored.nodes[0].data["card_url"], "https://a.example/card");
        // Reads redact the sealed form too.
        let shown = serde_json::to_string(&stored.clone().redacted()).unwrap();
        assert!(!shown.contains("sealed") && shown.contains(REDACTED), "{shown}");

        let mut opened = stored.clone();
        opened.open_credentials(Some(&key), "acme", "wf-1").unwrap();
        assert_eq!(opened, plain);
        // Plain graphs (stored without a key) load as they are.
        let mut legacy = plain.clone();
        legacy.open_credentials(Some(&key), "acme", "wf-1").unwrap();
        assert_eq!(legacy, plain);
        // Another tenant's or workflow's binding, no key, another key: refused, value unnamed.
        for (key, tenant, wf) in [(Some(&key), "other", "wf-1"), (Some(&key), "acme", "wf-2"), (None, "acme", "wf-1")] {
            let err = stored.clone().open_credentials(key, tenant, wf).unwrap_err();
            assert!(err.starts_with("node call: its auth.bearer") && !err.contains("secret"), "{err}");
        }
        let other = SealingKey::new(&secrecy::SecretString::from("another-key-encryption-secret-of-32-bytes"));
        assert!(stored.clone().open_credentials(Some(&other), "acme", "wf-1").is_err());
    }
}
