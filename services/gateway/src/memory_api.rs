//! `GET /api/v1/memory/search`: semantic search over the caller's own past conversation turns
//! (the event dispatcher's memory knowledge base). Always the caller's own: the request cannot
//! name another user, whatever the caller's role.

use axum::Json;
use axum::extract::State;
use getlood_common::ApiError;
use getlood_proto::event_dispatcher::v1::{SearchRequest, SearchSource};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::ApiQuery;

const SERVICE: &str = "event-dispatcher";
/// Longest query accepted, in characters (the dispatcher's own bound).
const MAX_QUERY_CHARS: usize = 4000;
/// Most hits one search returns.
const MAX_TOP_K: u32 = 50;

/// Query string of the search.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// What to look for, in natural language (required, at most 4000 characters).
    q: Option<String>,
    /// Hits wanted, 1..=50 (default 5).
    #[param(minimum = 1, maximum = 50)]
    top_k: Option<u32>,
    /// Only turns of this conversation (a UUID).
    conversation_id: Option<String>,
    /// Only hits at least this relevant, 0..=1.
    #[param(minimum = 0, maximum = 1)]
    min_score: Option<f64>,
}

/// One remembered turn of a memory search.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemoryHit {
    /// The agent that answered the turn, when recorded.
    agent_name: Option<String>,
    /// The stored text.
    content: String,
    /// The turn's conversation, when recorded.
    conversation_id: Option<String>,
    /// Chunk id in the knowledge base.
    id: String,
    /// Relevance in [0, 1]; higher is better.
    score: f64,
    /// The turn's id, when recorded.
    turn_id: Option<String>,
}

/// `GET /api/v1/memory/search` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MemoryHits {
    /// Best first.
    hits: Vec<MemoryHit>,
}

impl SearchQuery {
    fn into_request(self, user: &str) -> Result<SearchRequest, ApiError> {
        let query = self.q.unwrap_or_default();
        let query = query.trim();
        if query.is_empty() {
            return Err(ApiError::invalid_argument("q is required: what to search the memory for"));
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            return Err(ApiError::invalid_argument(format!("q is longer than {MAX_QUERY_CHARS} characters")));
        }
        let top_k = self.top_k.unwrap_or(5);
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(ApiError::invalid_argument(format!("top_k must be between 1 and {MAX_TOP_K}")));
        }
        let min_score = self.min_score.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&min_score) {
            return Err(ApiError::invalid_argument("min_score must be between 0 and 1"));
        }
        let conversation_id = self.conversation_id.unwrap_or_default();
        if !conversation_id.is_empty() && uuid::Uuid::parse_str(&conversation_id).is_err() {
            return Err(ApiError::invalid_argument("conversation_id must be a UUID"));
        }
        Ok(SearchRequest {
            query: query.to_owned(),
            top_k: i32::try_from(top_k).unwrap_or(5),
            sources: vec![SearchSource::Conversations as i32],
            conversation_id,
            user_id: user.to_owned(),
            min_score,
            ..SearchRequest::default()
        })
    }
}

/// `GET /api/v1/memory/search?q=...`: the caller's own most relevant past turns, best first.
#[utoipa::path(get, path = "/api/v1/memory/search", tag = "memory", params(SearchQuery),
    description = "Semantic search over the caller's own past conversation turns; never another user's, whatever the role.",
    responses((status = 200, description = "The most relevant turns, best first", body = MemoryHits)))]
pub(crate) async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<MemoryHits>, ApiError> {
    let req = query.into_request(&caller.principal().user)?;
    let resp = unary(SERVICE, state.upstreams.event_dispatcher().search(caller.request(req))).await?;
    let hits = resp
        .hits
        .into_iter()
        .map(|mut h| MemoryHit {
            agent_name: h.metadata.remove("agent_name"),
            content: h.content,
            conversation_id: h.metadata.remove("conversation_id"),
            id: h.id,
            score: h.score,
            turn_id: h.metadata.remove("turn_id"),
        })
        .collect();
    Ok(Json(MemoryHits { hits }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed body keeps the bytes the `json!` object (sorted keys) produced, absent
    /// metadata as `null`.
    #[test]
    fn hits_are_written_as_the_json_objects_were() {
        let hit = MemoryHit {
            agent_name: None,
            content: "c".into(),
            conversation_id: Some("conv".into()),
            id: "h".into(),
            score: 0.5,
            turn_id: None,
        };
        let old = serde_json::json!({"hits": [{"id": "h", "content": "c", "score": 0.5,
            "conversation_id": "conv", "turn_id": null, "agent_name": null}]});
        assert_eq!(serde_json::to_string(&MemoryHits { hits: vec![hit] }).unwrap(), old.to_string());
    }

    fn q(q: Option<&str>, top_k: Option<u32>) -> SearchQuery {
        SearchQuery { q: q.map(str::to_owned), top_k, conversation_id: None, min_score: None }
    }

    #[test]
    fn a_search_is_always_the_callers_own() {
        let req = q(Some(" teal "), None).into_request("alice").unwrap();
        assert_eq!(req.user_id, "alice");
        assert_eq!(req.query, "teal");
        assert_eq!(req.top_k, 5);
    }

    #[test]
    fn bad_searches_say_what_is_wrong() {
        let msg = |s: SearchQuery| s.into_request("a").unwrap_err().message;
        assert!(msg(q(None, None)).contains("q is required"));
        assert!(msg(q(Some(&"x".repeat(4001)), None)).contains("longer than 4000"));
        assert!(msg(q(Some("x"), Some(0))).contains("top_k"));
        assert!(msg(q(Some("x"), Some(51))).contains("top_k"));
        let mut s = q(Some("x"), None);
        s.conversation_id = Some("nope".into());
        assert!(msg(s).contains("UUID"));
    }
}
