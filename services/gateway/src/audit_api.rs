//! `GET /api/v1/audit`: the caller's tenant audit log (the event dispatcher's `ListAudit`),
//! oldest first, for callers with `audit.read` (admins). Events of unauthenticated requests
//! have no tenant and are never listed.

use axum::Json;
use axum::extract::State;
use getlood_common::ApiError;
use getlood_events::{EventEnvelope, Payload};
use getlood_proto::common::v1::PageRequest;
use getlood_proto::event_dispatcher::v1::ListAuditRequest;
use getlood_proto::events::v1::AuditOutcome;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::ApiQuery;
use crate::proto_json::{enum_name, parse_enum, parse_timestamp, timestamp};
use crate::rest::page_fields;

const SERVICE: &str = "event-dispatcher";
const OUTCOME_PREFIX: &str = "AUDIT_OUTCOME_";

/// Query string of the audit list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditQuery {
    /// Only this action, e.g. `agents.create`.
    action: Option<String>,
    /// Only this user's events.
    user: Option<String>,
    /// Only this outcome: `allowed`, `denied` or `error`.
    outcome: Option<String>,
    /// Only events at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only events before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Most events in one page; 0 or absent uses the service's default.
    page_size: Option<i32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

impl AuditQuery {
    fn into_request(self) -> Result<ListAuditRequest, ApiError> {
        let outcome = match self.outcome.as_deref() {
            None | Some("") => AuditOutcome::Unspecified,
            Some(raw) => {
                parse_enum(raw, OUTCOME_PREFIX, AuditOutcome::from_str_name, "outcome", "allowed, denied, error")?
            }
        };
        Ok(ListAuditRequest {
            page: Some(PageRequest {
                page_size: self.page_size.unwrap_or(0),
                page_token: self.page_token.unwrap_or_default(),
            }),
            action: self.action.unwrap_or_default(),
            user_id: self.user.unwrap_or_default(),
            outcome: outcome as i32,
            since: parse_timestamp(self.since.as_deref(), "since")?,
            until: parse_timestamp(self.until.as_deref(), "until")?,
        })
    }
}

/// One audit event as the REST API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEvent {
    /// What was done, from the route template, e.g. `agents.create`.
    action: String,
    /// Event id.
    id: String,
    /// `allowed`, `denied` or `error` (`unspecified` if unknown).
    outcome: String,
    /// Why a request was refused, if it was.
    reason: String,
    /// The request's `x-request-id`.
    request_id: String,
    /// The matched route template.
    route: String,
    /// HTTP status of the answer.
    status: i32,
    /// The id the action targeted, if any.
    target: String,
    tenant: String,
    /// RFC 3339 time of the request.
    #[schema(format = DateTime)]
    time: Option<String>,
    /// The caller's user id.
    user: String,
    user_agent: String,
}

/// `GET /api/v1/audit` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditList {
    /// Oldest first.
    events: Vec<AuditEvent>,
    /// Token of the next page; empty on the last page.
    next_page_token: String,
    /// Total count, when the service counted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    total_size: Option<i64>,
}

/// One audit event as the REST API shows it.
fn event_json(env: EventEnvelope) -> AuditEvent {
    let audit = match env.payload {
        Some(Payload::Audit(a)) => a,
        _ => Default::default(),
    };
    let outcome = AuditOutcome::try_from(audit.outcome).unwrap_or(AuditOutcome::Unspecified);
    AuditEvent {
        action: audit.action,
        id: env.id,
        outcome: enum_name(outcome.as_str_name(), OUTCOME_PREFIX),
        reason: audit.reason,
        request_id: env.request_id,
        route: audit.route,
        status: audit.http_status,
        target: audit.resource_id,
        tenant: env.tenant_id,
        time: timestamp(env.occurred_at.as_ref()),
        user: env.actor,
        user_agent: audit.user_agent,
    }
}

/// `GET /api/v1/audit?action=&user=&outcome=&since=&until=&page_size=&page_token=`.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", operation_id = "list_audit", params(AuditQuery),
    description = "The caller's tenant audit log, oldest first (needs `audit.read`).",
    responses((status = 200, description = "A page of audit events", body = AuditList)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let req = query.into_request()?;
    let resp = unary(SERVICE, state.upstreams.event_dispatcher().list_audit(caller.request(req))).await?;
    let (next_page_token, total_size) = page_fields(resp.page);
    Ok(Json(AuditList { events: resp.events.into_iter().map(event_json).collect(), next_page_token, total_size }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rest::assert_sorted_keys;

    /// The typed bodies keep the bytes the `json!` objects (sorted keys) produced.
    #[test]
    fn typed_bodies_are_written_in_key_order() {
        let env = EventEnvelope {
            id: "e".into(),
            occurred_at: Some(prost_types::Timestamp { seconds: 1, nanos: 0 }),
            ..EventEnvelope::default()
        };
        let list = AuditList { events: vec![event_json(env)], next_page_token: String::new(), total_size: Some(1) };
        assert_sorted_keys(&list);
    }

    #[test]
    fn the_query_becomes_the_request() {
        let q = AuditQuery {
            action: Some("agents.create".into()),
            user: Some("alice".into()),
            outcome: Some("Denied".into()),
            since: Some("2026-01-31T08:00:00Z".into()),
            page_size: Some(2),
            ..AuditQuery::default()
        };
        let req = q.into_request().unwrap();
        assert_eq!((req.action.as_str(), req.user_id.as_str()), ("agents.create", "alice"));
        assert_eq!(req.outcome, AuditOutcome::Denied as i32);
        assert!(req.since.is_some() && req.until.is_none());
        assert_eq!(req.page.unwrap().page_size, 2);
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let bad = AuditQuery { outcome: Some("maybe".into()), ..AuditQuery::default() };
        assert!(bad.into_request().unwrap_err().message.contains("outcome"));
        let bad = AuditQuery { until: Some("yesterday".into()), ..AuditQuery::default() };
        assert!(bad.into_request().unwrap_err().message.contains("until"));
    }
}
