//! `GET /api/v1/audit`: the caller's tenant audit log (the event dispatcher's `ListAudit`),
//! oldest first, for callers with `audit.read` (admins). Events of unauthenticated requests
//! have no tenant and are never listed.

use axum::Json;
use axum::extract::{Query, State};
use getlood_common::ApiError;
use getlood_events::{EventEnvelope, Payload};
use getlood_proto::common::v1::PageRequest;
use getlood_proto::event_dispatcher::v1::ListAuditRequest;
use getlood_proto::events::v1::AuditOutcome;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::proto_json::{enum_name, parse_enum, parse_timestamp, timestamp_json};
use crate::rest::list_json;

const SERVICE: &str = "event-dispatcher";
const OUTCOME_PREFIX: &str = "AUDIT_OUTCOME_";

/// Query string of the audit list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Only this action, e.g. `agents.create`.
    action: Option<String>,
    /// Only this user's events.
    user: Option<String>,
    /// Only this outcome: `allowed`, `denied` or `error`.
    outcome: Option<String>,
    /// Only events at or after this RFC 3339 time.
    since: Option<String>,
    /// Only events before this RFC 3339 time.
    until: Option<String>,
    page_size: Option<i32>,
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
fn event_json(env: EventEnvelope) -> Value {
    let audit = match env.payload {
        Some(Payload::Audit(a)) => a,
        _ => Default::default(),
    };
    let outcome = AuditOutcome::try_from(audit.outcome).unwrap_or(AuditOutcome::Unspecified);
    json!({
        "id": env.id,
        "time": timestamp_json(env.occurred_at.as_ref()),
        "tenant": env.tenant_id,
        "user": env.actor,
        "action": audit.action,
        "target": audit.resource_id,
        "route": audit.route,
        "outcome": enum_name(outcome.as_str_name(), OUTCOME_PREFIX),
        "status": audit.http_status,
        "reason": audit.reason,
        "request_id": env.request_id,
        "user_agent": audit.user_agent,
    })
}

/// `GET /api/v1/audit?action=&user=&outcome=&since=&until=&page_size=&page_token=`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let req = query.into_request()?;
    let resp = unary(SERVICE, state.upstreams.event_dispatcher().list_audit(caller.request(req))).await?;
    Ok(list_json("events", resp.events.into_iter().map(event_json).collect(), resp.page))
}

#[cfg(test)]
mod tests {
    use super::*;

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
