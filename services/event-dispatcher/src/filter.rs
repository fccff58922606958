//! Subscription filters (topics relative to the caller's tenant) and resume cursors.

use std::collections::BTreeMap;
use std::fmt;

use getlood_events::Domain;

use crate::error::{Error, Result};

/// Most topics one subscription may name.
const MAX_TOPICS: usize = 32;

/// A topic `<domain>[.<entity>[.<verb>]]` with NATS wildcards, relative to the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The stream it reads.
    pub domain: Domain,
    /// Tokens after the domain (`["node", "*"]`); empty means the whole domain.
    rest: Vec<String>,
}

impl Topic {
    /// Parses `raw`; the domain must be named, wildcards may follow it.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = |why: &str| Error::InvalidArgument(format!("topic '{}': {why}", truncate(raw)));
        let mut tokens = raw.split('.');
        let domain = match tokens.next().unwrap_or_default() {
            "agent" => Domain::Agent,
            "turn" => Domain::Turn,
            "window" => Domain::Window,
            "workflow" => Domain::Workflow,
            "audit" => Domain::Audit,
            _ => return Err(invalid("must start with agent, turn, window, workflow or audit")),
        };
        let rest: Vec<String> = tokens.map(str::to_owned).collect();
        if rest.len() > 2 {
            return Err(invalid("at most <domain>.<entity>.<verb>"));
        }
        for (i, token) in rest.iter().enumerate() {
            let word = !token.is_empty()
                && token.len() <= 64
                && token.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            let wildcard = token == "*" || (token == ">" && i + 1 == rest.len());
            if !word && !wildcard {
                return Err(invalid("tokens are [a-z0-9_]+, '*', or a final '>'"));
            }
        }
        // `window.>` means the same as `window`.
        let rest = if rest.first().is_some_and(|t| t == ">") { Vec::new() } else { rest };
        Ok(Self { domain, rest })
    }

    /// Whether `event_type` (`<entity>.<verb>`, the subject after the domain) matches.
    pub fn matches(&self, event_type: &str) -> bool {
        if self.rest.is_empty() {
            return true;
        }
        let mut tokens = event_type.split('.');
        for pattern in &self.rest {
            if pattern == ">" {
                return tokens.next().is_some();
            }
            match tokens.next() {
                Some(t) if pattern == "*" || pattern == t => {}
                _ => return false,
            }
        }
        tokens.next().is_none()
    }
}

/// Parses the topics of a request, grouped by the stream they read.
pub fn parse_topics(raw: &[String]) -> Result<BTreeMap<DomainKey, Vec<Topic>>> {
    if raw.is_empty() {
        return Err(Error::InvalidArgument("at least one topic is required".to_owned()));
    }
    if raw.len() > MAX_TOPICS {
        return Err(Error::InvalidArgument(format!("at most {MAX_TOPICS} topics")));
    }
    let mut by_domain: BTreeMap<DomainKey, Vec<Topic>> = BTreeMap::new();
    for t in raw {
        let topic = Topic::parse(t)?;
        by_domain.entry(DomainKey(topic.domain)).or_default().push(topic);
    }
    Ok(by_domain)
}

/// A [`Domain`] usable as an ordered map key (cursors list domains in a fixed order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainKey(pub Domain);

impl DomainKey {
    fn rank(self) -> usize {
        Domain::ALL.iter().position(|d| *d == self.0).unwrap_or(usize::MAX)
    }

    fn parse(token: &str) -> Option<Self> {
        Domain::ALL.into_iter().find(|d| d.token() == token).map(Self)
    }
}

impl PartialOrd for DomainKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DomainKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

/// A resume position over one or more streams: `window:42` or `agent:7,window:42`. Every event
/// of a listed stream with a greater sequence is still to be delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub BTreeMap<DomainKey, u64>);

impl Cursor {
    /// Parses a cursor this service produced.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid = || Error::InvalidArgument(format!("malformed cursor '{}'", truncate(raw)));
        if raw.is_empty() || raw.len() > 256 {
            return Err(invalid());
        }
        let mut positions = BTreeMap::new();
        for part in raw.split(',') {
            let (domain, seq) = part.split_once(':').ok_or_else(invalid)?;
            let domain = DomainKey::parse(domain).ok_or_else(invalid)?;
            let seq = seq.parse::<u64>().map_err(|_| invalid())?;
            if positions.insert(domain, seq).is_some() {
                return Err(invalid());
            }
        }
        Ok(Self(positions))
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (domain, seq)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{seq}", domain.0.token())?;
        }
        Ok(())
    }
}

fn truncate(raw: &str) -> String {
    raw.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_match() {
        let t = Topic::parse("window").unwrap();
        assert!(t.matches("window.opened") && t.matches("desktop.saved"));
        let t = Topic::parse("workflow.node.*").unwrap();
        assert!(t.matches("node.completed"));
        assert!(!t.matches("run.completed"));
        let t = Topic::parse("turn.turn.completed").unwrap();
        assert!(t.matches("turn.completed") && !t.matches("turn.started"));
        let t = Topic::parse("window.window.>").unwrap();
        assert!(t.matches("window.moved") && !t.matches("desktop.saved"));
        assert_eq!(Topic::parse("window.>").unwrap(), Topic::parse("window").unwrap());
        for bad in ["", "*", ">", "windows", "window..x", "window.>.x", "window.a.b.c", "window.A", "getlood.acme"] {
            assert!(Topic::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursor_round_trips_in_domain_order() {
        let c = Cursor::parse("window:42,agent:7").unwrap();
        assert_eq!(c.to_string(), "agent:7,window:42");
        assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        for bad in ["", "window", "window:", "window:-1", "nope:1", "window:1,window:2", "window:1;x"] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }
}
