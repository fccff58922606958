//! Who a request is for: the tenant and the verified caller. Every crate names tenants with
//! [`TenantId`], so the types sit here, below the crates that verify tokens (`getlood-auth`)
//! or scope resources by tenant (`getlood-mindsdb`, `getlood-events`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated tenant id: 1 to 48 characters of `[a-z0-9_]`, starting with a letter or digit.
///
/// The id is used verbatim in MindsDB project names (`t_<tenant>`), NATS subjects and Redis
/// keys, so the pattern leaves nothing that any of them would interpret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TenantId(String);

impl TenantId {
    /// Parses `raw`, returning it back on failure.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 48
            && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !raw.starts_with('_');
        if ok { Ok(Self(raw.to_owned())) } else { Err(raw.to_owned()) }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(de)?;
        Self::parse(&raw).map_err(|raw| serde::de::Error::custom(format!("invalid tenant id '{raw}'")))
    }
}

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The tenant every object of this request belongs to.
    pub tenant: TenantId,
    /// The user (`sub` claim).
    pub user: String,
    /// Roles granted by the issuer.
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub expires_at: u64,
    /// The raw bearer token, forwarded to internal services so each re-verifies it.
    #[serde(skip)]
    pub token: String,
}

impl Principal {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_pattern() {
        for ok in ["acme", "a", "tenant_42", "0day"] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(49);
        for bad in ["", "_x", "Acme", "a-b", "a.b", "a b", "a`b", "t;drop", "é", long.as_str()] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }
}
