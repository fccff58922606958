//! `getlood.pipeline.v1.PipelineService`: input checks, the pre-stream lookups, and the turn
//! reads.

use std::pin::Pin;
use std::sync::Arc;
use tracing::Instrument as _;

use chrono::DateTime;
use futures::Stream;
use getlood_auth::Principal;
use getlood_common::paging::{decode_page_token, encode_page_token, page_size};
use getlood_proto::common::v1::{ChatMessage, PageResponse, Role};
use getlood_proto::pipeline::v1::pipeline_service_server::PipelineService;
use getlood_proto::pipeline::v1::{
    AskModelRequest, AskModelResponse, ExecuteRequest, ExecuteResponse, GetTurnRequest, GetTurnResponse,
    ListModelsRequest, ListModelsResponse, ListTurnsRequest, ListTurnsResponse, execute_response::Event,
};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::pipeline::{Emitter, Item, Pipeline, TurnInput};
use crate::settings::Limits;
use crate::store::Cursor;

/// Longest idempotency key, desktop id, metadata key and metadata value.
const MAX_KEY_CHARS: usize = 200;
const MAX_METADATA_VALUE_CHARS: usize = 2000;

/// The service behind the gRPC API.
pub(crate) struct PipelineApi {
    pub pipeline: Arc<Pipeline>,
    /// Runs turns, so the server's drain waits for them.
    pub tracker: TaskTracker,
    /// The tenant's MindsDB models (list, ask).
    pub models: crate::models::Models,
}

type ExecuteStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

fn principal<T>(req: &Request<T>) -> Result<Principal, Status> {
    getlood_server::principal(req).cloned()
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn turn_not_found(id: &str) -> Status {
    Status::not_found(format!("turn '{}' not found", short(id)))
}

fn conversation_not_found(id: &str) -> Status {
    Status::not_found(format!("conversation '{}' not found", short(id)))
}

/// Checks an Execute request against the contract and the limits; the message names the field.
pub(crate) fn check_request(req: &ExecuteRequest, limits: &Limits) -> Result<(), Status> {
    let invalid = |m: String| Err(Status::invalid_argument(m));
    if req.messages.is_empty() {
        return invalid("messages must contain at least one message".to_owned());
    }
    if req.messages.len() > limits.max_messages {
        return invalid(format!(
            "messages has {} items; at most {} are allowed",
            req.messages.len(),
            limits.max_messages
        ));
    }
    let mut total = 0usize;
    for (i, m) in req.messages.iter().enumerate() {
        match Role::try_from(m.role) {
            Ok(Role::Unspecified) | Err(_) => {
                return invalid(format!(
                    "messages[{i}].role is invalid: expected ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL"
                ));
            }
            Ok(_) => {}
        }
        let chars = m.content.chars().count();
        if chars > limits.max_message_chars {
            return invalid(format!(
                "messages[{i}].content is {chars} characters long; at most {} are allowed",
                limits.max_message_chars
            ));
        }
        total += chars;
    }
    if total > limits.max_total_chars {
        return invalid(format!("messages total {total} characters; at most {} are allowed", limits.max_total_chars));
    }
    let last = req.messages.len() - 1;
    let m: &ChatMessage = &req.messages[last];
    if m.role != Role::User as i32 {
        return invalid(format!(
            "messages[{last}] must be a ROLE_USER message: the turn answers the user's last message"
        ));
    }
    if m.content.trim().is_empty() {
        return invalid(format!("messages[{last}].content must not be empty"));
    }
    if !req.conversation_id.is_empty() && Uuid::parse_str(&req.conversation_id).is_err() {
        return invalid("conversation_id must be empty or a conversation id returned by an earlier turn".to_owned());
    }
    if req.agent_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return invalid("agent_name must not be empty when set".to_owned());
    }
    if req.client_request_id.chars().count() > MAX_KEY_CHARS || req.desktop_id.chars().count() > MAX_KEY_CHARS {
        return invalid(format!("client_request_id and desktop_id are limited to {MAX_KEY_CHARS} characters"));
    }
    if req.metadata.len() > limits.max_metadata_entries {
        return invalid(format!(
            "metadata has {} entries; at most {} are allowed",
            req.metadata.len(),
            limits.max_metadata_entries
        ));
    }
    if req
        .metadata
        .iter()
        .any(|(k, v)| k.is_empty() || k.chars().count() > MAX_KEY_CHARS || v.chars().count() > MAX_METADATA_VALUE_CHARS)
    {
        return invalid(format!(
            "metadata keys must have 1 to {MAX_KEY_CHARS} characters and values at most {MAX_METADATA_VALUE_CHARS}"
        ));
    }
    Ok(())
}

/// Page tokens name the conversation they were issued for, so one cannot be replayed on another.
fn encode_token(conversation: Uuid, c: &Cursor) -> String {
    let position = format!("{}|{}", c.created_at.timestamp_micros(), c.id.simple());
    encode_page_token(&conversation.simple().to_string(), &position)
}

fn decode_token(conversation: Uuid, token: &str) -> Result<Option<Cursor>, Status> {
    let Some(position) = decode_page_token(&conversation.simple().to_string(), token)? else {
        return Ok(None);
    };
    let bad = || Status::invalid_argument("page.page_token: is not a token this list returned");
    let (micros, id) = position.split_once('|').ok_or_else(bad)?;
    let created_at = micros.parse::<i64>().ok().and_then(DateTime::from_timestamp_micros).ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok(Some(Cursor { created_at, id }))
}

fn single(item: ExecuteResponse) -> ExecuteStream {
    Box::pin(futures::stream::iter([Ok(item)]))
}

#[tonic::async_trait]
impl PipelineService for PipelineApi {
    type ExecuteStream = ExecuteStream;

    async fn execute(&self, req: Request<ExecuteRequest>) -> Result<Response<Self::ExecuteStream>, Status> {
        let caller = getlood_server::caller(&req)?.clone();
        let p = caller.principal.clone();
        let req = req.into_inner();
        let settings = &self.pipeline.settings;
        check_request(&req, &settings.limits)?;
        let store = &self.pipeline.store;

        // A retry of a request that already produced a turn replays it.
        if !req.client_request_id.is_empty()
            && let Some(turn) = store.by_client_request(&p.tenant, &p.user, &req.client_request_id).await?
        {
            return Ok(Response::new(single(ExecuteResponse { index: 1, event: Some(Event::Result(turn)) })));
        }
        let conversation_id = if req.conversation_id.is_empty() {
            Uuid::now_v7()
        } else {
            let id = Uuid::parse_str(&req.conversation_id).map_err(|_| conversation_not_found(&req.conversation_id))?;
            // Someone else's conversation of the same tenant is as unknown as another tenant's.
            let users = store.conversation_users(&p.tenant, id).await?;
            if !users.is_empty()
                && !users.contains(&p.user)
                && !getlood_auth::allows(&p.roles, getlood_auth::Permission::UsersRead)
            {
                return Err(conversation_not_found(&req.conversation_id));
            }
            id
        };
        let override_agent = match &req.agent_name {
            Some(name) => Some(self.pipeline.registry.get_by_name(&caller, name).await?),
            None => None,
        };
        let input = TurnInput {
            caller,
            conversation_id,
            messages: req.messages,
            override_agent,
            desktop_id: req.desktop_id,
            client_request_id: req.client_request_id,
            metadata: req.metadata,
        };
        // Small buffer: a slow client slows the run instead of queuing the answer in memory.
        let (tx, mut rx) = mpsc::channel(16);
        let emitter = Emitter::new(tx, settings.heartbeat);
        // The turn runs in its own task; its span keeps it in the caller's trace, so the
        // registry and MindsDB calls it makes carry the same traceparent.
        let span = tracing::info_span!("pipeline.turn", tenant = %input.caller.principal.tenant);
        self.tracker.spawn(self.pipeline.clone().run(input, emitter).instrument(span));
        let stream = async_stream::stream! {
            while let Some(item) = rx.recv().await {
                yield item;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_turn(&self, req: Request<GetTurnRequest>) -> Result<Response<GetTurnResponse>, Status> {
        let p = principal(&req)?;
        let id_text = req.into_inner().turn_id;
        // A malformed id names no turn of this tenant: NOT_FOUND like any unknown id.
        let id = Uuid::parse_str(&id_text).map_err(|_| turn_not_found(&id_text))?;
        let (owner, turn) = self.pipeline.store.get(&p.tenant, id).await?.ok_or_else(|| turn_not_found(&id_text))?;
        if owner != p.user && !getlood_auth::allows(&p.roles, getlood_auth::Permission::UsersRead) {
            return Err(turn_not_found(&id_text));
        }
        Ok(Response::new(GetTurnResponse { turn: Some(turn) }))
    }

    async fn list_turns(&self, req: Request<ListTurnsRequest>) -> Result<Response<ListTurnsResponse>, Status> {
        let p = principal(&req)?;
        let req = req.into_inner();
        if req.conversation_id.is_empty() {
            return Err(Status::invalid_argument("conversation_id is required"));
        }
        let conversation =
            Uuid::parse_str(&req.conversation_id).map_err(|_| conversation_not_found(&req.conversation_id))?;
        let page = req.page.unwrap_or_default();
        let limit = page_size(page.page_size)?;
        let after = decode_token(conversation, &page.page_token)?;
        let user = (!getlood_auth::allows(&p.roles, getlood_auth::Permission::UsersRead)).then_some(p.user.as_str());
        let mut rows = self.pipeline.store.list(&p.tenant, conversation, user, after, limit + 1).await?;
        if rows.is_empty() && after.is_none() {
            return Err(conversation_not_found(&req.conversation_id));
        }
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = if more {
            rows.last().map(|(c, _)| encode_token(conversation, c)).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListTurnsResponse {
            turns: rows.into_iter().map(|(_, t)| t).collect(),
            page: Some(PageResponse { next_page_token: next, total_size: -1 }),
        }))
    }
    async fn list_models(&self, req: Request<ListModelsRequest>) -> Result<Response<ListModelsResponse>, Status> {
        let p = getlood_server::principal(&req)?;
        let models = self.models.list(p).await?;
        Ok(Response::new(ListModelsResponse { models }))
    }

    async fn ask_model(&self, req: Request<AskModelRequest>) -> Result<Response<AskModelResponse>, Status> {
        let p = getlood_server::principal(&req)?;
        Ok(Response::new(self.models.ask(p, req.get_ref()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role: role as i32, content: content.to_owned(), name: String::new() }
    }

    fn req(messages: Vec<ChatMessage>) -> ExecuteRequest {
        ExecuteRequest { messages, ..Default::default() }
    }

    #[test]
    fn bad_input_is_named() {
        let l = Limits::default();
        let err = |r: ExecuteRequest| check_request(&r, &l).unwrap_err().message().to_owned();
        assert_eq!(err(req(vec![])), "messages must contain at least one message");
        assert!(
            err(req(vec![ChatMessage { role: 0, ..msg(Role::User, "x") }])).starts_with("messages[0].role is invalid")
        );
        assert!(
            err(req(vec![ChatMessage { role: 42, ..msg(Role::User, "x") }])).starts_with("messages[0].role is invalid")
        );
        assert!(err(req(vec![msg(Role::User, "  ")])).contains("must not be empty"));
        assert!(err(req(vec![msg(Role::User, "hi"), msg(Role::Assistant, "yo")])).contains("must be a ROLE_USER"));
        let big = "x".repeat(l.max_message_chars + 1);
        assert!(err(req(vec![msg(Role::User, &big)])).contains("at most 32000"));
        let bad_conv = ExecuteRequest { conversation_id: "nope".into(), ..req(vec![msg(Role::User, "hi")]) };
        assert!(err(bad_conv).starts_with("conversation_id"));
        check_request(&req(vec![msg(Role::System, "be brief"), msg(Role::User, "hi")]), &l).unwrap();
    }

    #[test]
    fn page_tokens_are_bound_to_their_conversation() {
        let conv = Uuid::now_v7();
        let c =
            Cursor { created_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(), id: Uuid::now_v7() };
        let t = encode_token(conv, &c);
        assert_eq!(decode_token(conv, &t).unwrap(), Some(c));
        assert!(decode_token(Uuid::now_v7(), &t).is_err());
        assert!(decode_token(conv, "garbage!").is_err());
    }
}
