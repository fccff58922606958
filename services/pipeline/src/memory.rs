//! Recall of the caller's earlier conversations: the turns the event dispatcher stored in the
//! tenant's memory knowledge base, searched with the new question and given to the agent.
//!
//! Memory is personal: every search names the caller as `user_id`, so even an admin's recall
//! holds only their own turns. Recall is best effort: a slow or failing search is logged and the
//! agent answers without it, because a turn must not fail for want of context.

use getlood_proto::common::v1::{ChatMessage, Role};
use getlood_proto::event_dispatcher::v1::event_dispatcher_service_client::EventDispatcherServiceClient;
use getlood_proto::event_dispatcher::v1::{SearchRequest, SearchSource};
use getlood_server::{Caller, Upstream};

use crate::settings::MemorySettings;

/// The event dispatcher's `Search`, restricted to the caller's own conversation turns.
#[derive(Clone, Debug)]
pub(crate) struct MemoryClient {
    upstream: Upstream,
    settings: MemorySettings,
}

impl MemoryClient {
    pub(crate) fn new(upstream: Upstream, settings: MemorySettings) -> Self {
        Self { upstream, settings }
    }

    /// The caller's past turns most relevant to `question`, best first; empty on any failure.
    pub(crate) async fn recall(&self, caller: &Caller, question: &str, conversation_id: &str) -> Vec<String> {
        let req = SearchRequest {
            query: question.chars().take(4000).collect(),
            top_k: i32::try_from(self.settings.top_k).unwrap_or(3) + 4,
            sources: vec![SearchSource::Conversations as i32],
            user_id: caller.principal.user.clone(),
            min_score: self.settings.min_score,
            ..SearchRequest::default()
        };
        let mut client = self.upstream.client(EventDispatcherServiceClient::new);
        let call = client.search(caller.request(req, Some(self.settings.timeout)));
        let hits = match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(Ok(resp)) => resp.into_inner().hits,
            Ok(Err(status)) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "memory recall failed; answering without it");
                return Vec::new();
            }
            Err(_) => {
                tracing::warn!(timeout = ?self.settings.timeout, "memory recall timed out; answering without it");
                return Vec::new();
            }
        };
        hits.into_iter()
            // The conversation itself is already in the messages.
            .filter(|h| h.metadata.get("conversation_id").is_none_or(|c| c != conversation_id))
            // Defence in depth: the dispatcher filters by user, and so do we.
            .filter(|h| h.metadata.get("user_id").is_some_and(|u| *u == caller.principal.user))
            .map(|h| h.content.chars().take(self.settings.max_chars).collect())
            .take(self.settings.top_k as usize)
            .collect()
    }
}

/// The messages the agent gets: `messages` with `recalled` turns put before the question in
/// its last user message (the stored turn keeps the user's own words).
pub(crate) fn with_recall(messages: &[ChatMessage], recalled: &[String]) -> Vec<ChatMessage> {
    let mut out = messages.to_vec();
    if recalled.is_empty() {
        return out;
    }
    let Some(last) = out.iter_mut().rev().find(|m| m.role == Role::User as i32) else { return out };
    let notes: Vec<String> = recalled.iter().map(|t| format!("- {}", t.replace('\n', " / "))).collect();
    last.content = format!(
        "From this user's earlier conversations (use them if they help):\n{}\n\nQuestion: {}",
        notes.join("\n"),
        last.content
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role: role as i32, content: content.to_owned(), ..ChatMessage::default() }
    }

    #[test]
    fn recalled_turns_go_before_the_last_question_only() {
        let messages = vec![msg(Role::User, "hi"), msg(Role::Assistant, "hello"), msg(Role::User, "my colour?")];
        let out = with_recall(&messages, &["User: I like teal\nAssistant: noted".to_owned()]);
        assert_eq!(out[0].content, "hi");
        assert_eq!(out[1].content, "hello");
        assert_eq!(
            out[2].content,
            "From this user's earlier conversations (use them if they help):\n- User: I like teal / Assistant: noted\n\nQuestion: my colour?"
        );
        assert_eq!(with_recall(&messages, &[]), messages);
    }
}
