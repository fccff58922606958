//! `ListAudit`: the caller's tenant audit events (`<prefix>.<tenant>.audit.>`, published by the
//! gateway for every mutation and every refused request), oldest first, filtered and paged by
//! stream sequence. The tenant comes from the verified token only; events of unauthenticated
//! requests live under the reserved `_unauthenticated` token and are never read here.

use std::time::Duration;

use futures::StreamExt as _;
use getlood_auth::Principal;
use getlood_common::paging::{decode_page_token, encode_page_token, page_size};
use getlood_events::{Domain, EventBus, EventEnvelope, EventError, Payload, StartAt};
use getlood_proto::common::v1::PageResponse;
use getlood_proto::event_dispatcher::v1::{ListAuditRequest, ListAuditResponse};
use getlood_proto::events::v1::AuditOutcome;
use prost_types::Timestamp;

use crate::{Error, Result};

/// Page-token kind of the audit list.
const PAGE_KIND: &str = "audit";
/// Most stored events one call reads, matching or not; the page then ends early with a token,
/// so a filter that matches little never turns one call into a scan of the whole stream.
const MAX_SCAN: usize = 10_000;
/// Longest wait for the next stored event before the read is given up.
const READ_WAIT: Duration = Duration::from_secs(5);
/// Events are stored in publish order and stamped when the request ended, so replicas can
/// interleave slightly: the scan stops only at events this far past `until`.
const UNTIL_SLACK_SECS: i64 = 30;
/// Longest accepted `action` or `user_id` filter.
const MAX_FILTER_CHARS: usize = 256;

/// The checked filters of one request.
#[derive(Debug)]
struct Filter {
    action: String,
    user_id: String,
    outcome: Option<AuditOutcome>,
    since: Option<(i64, i32)>,
    until: Option<(i64, i32)>,
}

fn instant(ts: Option<&Timestamp>) -> Option<(i64, i32)> {
    ts.map(|t| (t.seconds, t.nanos))
}

impl Filter {
    fn parse(req: &ListAuditRequest) -> Result<Self> {
        for (name, value) in [("action", &req.action), ("user_id", &req.user_id)] {
            if value.chars().count() > MAX_FILTER_CHARS {
                return Err(Error::InvalidArgument(format!("{name}: longer than {MAX_FILTER_CHARS} characters")));
            }
        }
        let outcome = match AuditOutcome::try_from(req.outcome) {
            Ok(AuditOutcome::Unspecified) => None,
            Ok(outcome) => Some(outcome),
            Err(_) => return Err(Error::InvalidArgument(format!("outcome: unknown value {}", req.outcome))),
        };
        let (since, until) = (instant(req.since.as_ref()), instant(req.until.as_ref()));
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(Error::InvalidArgument("since: must not be after until".to_owned()));
        }
        Ok(Self { action: req.action.clone(), user_id: req.user_id.clone(), outcome, since, until })
    }

    /// Whether `env` is an audit event this filter keeps.
    fn matches(&self, env: &EventEnvelope) -> bool {
        let Some(Payload::Audit(audit)) = env.payload.as_ref() else { return false };
        let at = instant(env.occurred_at.as_ref()).unwrap_or_default();
        (self.action.is_empty() || audit.action == self.action)
            && (self.user_id.is_empty() || env.actor == self.user_id)
            && self.outcome.is_none_or(|o| audit.outcome == o as i32)
            && self.since.is_none_or(|s| at >= s)
            && self.until.is_none_or(|u| at < u)
    }

    /// Whether every later event is certainly past `until`, so the scan can stop.
    fn past_until(&self, env: &EventEnvelope) -> bool {
        let at = instant(env.occurred_at.as_ref()).unwrap_or_default();
        self.until.is_some_and(|(s, n)| at >= (s.saturating_add(UNTIL_SLACK_SECS), n))
    }
}

/// One page of `principal`'s tenant audit events.
pub(crate) async fn list(bus: &EventBus, principal: &Principal, req: &ListAuditRequest) -> Result<ListAuditResponse> {
    let filter = Filter::parse(req)?;
    let page = req.page.clone().unwrap_or_default();
    let limit = usize::try_from(page_size(page.page_size).map_err(|e| Error::InvalidArgument(e.message))?)
        .unwrap_or(usize::MAX);
    let after = match decode_page_token(PAGE_KIND, &page.page_token).map_err(|e| Error::InvalidArgument(e.message))? {
        Some(position) => position
            .parse::<u64>()
            .map_err(|_| Error::InvalidArgument("page.page_token: is not a token this list returned".to_owned()))?,
        None => 0,
    };
    let follow = bus.follow(&principal.tenant, Domain::Audit, StartAt::After(after)).await?;
    let mut events = Vec::new();
    // Where the next page starts; None once the scan reached the stream's end (or `until`).
    let mut resume_after = None;
    if follow.pending > 0 {
        let mut stream = follow.events;
        let (mut scanned, mut last_read) = (0usize, after);
        loop {
            let raw = match tokio::time::timeout(READ_WAIT, stream.next()).await {
                Ok(Some(raw)) => raw?,
                // The ordered consumer does not end by itself; treat an end as "caught up".
                Ok(None) => break,
                Err(_) if scanned == 0 => {
                    return Err(EventError::JetStream("timed out reading the audit stream".to_owned()).into());
                }
                // Slow server: return what was read, the client continues from there.
                Err(_) => {
                    resume_after = Some(last_read);
                    break;
                }
            };
            scanned += 1;
            last_read = raw.sequence;
            match raw.decode() {
                Ok(env) => {
                    if filter.past_until(&env) {
                        break;
                    }
                    if filter.matches(&env) {
                        events.push(env);
                    }
                }
                // One undecodable event must not hide the rest of the log.
                Err(err) => tracing::warn!(sequence = raw.sequence, error = %err, "undecodable audit event skipped"),
            }
            if raw.pending == 0 {
                break;
            }
            if events.len() >= limit || scanned >= MAX_SCAN {
                resume_after = Some(raw.sequence);
                break;
            }
        }
    }
    let next_page_token = resume_after.map(|seq| encode_page_token(PAGE_KIND, &seq.to_string())).unwrap_or_default();
    Ok(ListAuditResponse { events, page: Some(PageResponse { next_page_token, total_size: -1 }) })
}

#[cfg(test)]
mod tests {
    use getlood_proto::events::v1::AuditEvent;

    use super::*;

    fn env(action: &str, actor: &str, outcome: AuditOutcome, seconds: i64) -> EventEnvelope {
        EventEnvelope {
            actor: actor.to_owned(),
            occurred_at: Some(Timestamp { seconds, nanos: 0 }),
            payload: Some(Payload::Audit(AuditEvent {
                action: action.to_owned(),
                outcome: outcome as i32,
                ..AuditEvent::default()
            })),
            ..EventEnvelope::default()
        }
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos: 0 })
    }

    #[test]
    fn every_filter_must_match() {
        let req = ListAuditRequest {
            action: "agents.create".into(),
            user_id: "alice".into(),
            outcome: AuditOutcome::Allowed as i32,
            since: at(100),
            until: at(200),
            ..ListAuditRequest::default()
        };
        let f = Filter::parse(&req).unwrap();
        assert!(f.matches(&env("agents.create", "alice", AuditOutcome::Allowed, 100)));
        assert!(!f.matches(&env("agents.delete", "alice", AuditOutcome::Allowed, 150)));
        assert!(!f.matches(&env("agents.create", "bob", AuditOutcome::Allowed, 150)));
        assert!(!f.matches(&env("agents.create", "alice", AuditOutcome::Denied, 150)));
        assert!(!f.matches(&env("agents.create", "alice", AuditOutcome::Allowed, 99)));
        assert!(!f.matches(&env("agents.create", "alice", AuditOutcome::Allowed, 200)));
        assert!(!f.matches(&EventEnvelope::default()), "not an audit payload");
        assert!(!f.past_until(&env("x", "alice", AuditOutcome::Allowed, 229)));
        assert!(f.past_until(&env("x", "alice", AuditOutcome::Allowed, 230)));
        let any = Filter::parse(&ListAuditRequest::default()).unwrap();
        assert!(any.matches(&env("windows.update", "bob", AuditOutcome::Error, 5)));
        assert!(!any.past_until(&env("x", "bob", AuditOutcome::Error, i64::MAX)));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let msg = |req: ListAuditRequest| Filter::parse(&req).unwrap_err().to_string();
        assert!(msg(ListAuditRequest { since: at(5), until: at(4), ..Default::default() }).contains("since"));
        assert!(msg(ListAuditRequest { outcome: 42, ..Default::default() }).contains("outcome"));
        assert!(msg(ListAuditRequest { action: "a".repeat(300), ..Default::default() }).contains("action"));
    }
}
