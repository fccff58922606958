//! Agents' model API keys at rest in the registry's own table.
//!
//! MindsDB holds the key an agent uses; the registry keeps a copy only so that it can put the
//! agent back when MindsDB has lost it (see [`crate::grpc::Registry::restore`]). The copy is
//! sealed ([`getlood_common::sealing`]) under `app.key_encryption_key`, bound to the tenant and
//! the agent, so a value copied to another row does not open; without that key it is stored in
//! clear, as the workflow service does with node credentials, and the service warns at start.

use getlood_common::ApiError;
use getlood_common::sealing::SealingKey;
use secrecy::SecretString;
use uuid::Uuid;

/// An API key as the `agents` table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredKey {
    /// The sealed text, or the key itself when `sealed` is false.
    pub value: String,
    pub sealed: bool,
}

/// Seals and opens agents' API keys.
#[derive(Debug, Clone)]
pub(crate) struct KeyVault {
    key: Option<SealingKey>,
}

fn aad(tenant: &str, agent: &Uuid) -> String {
    format!("agent-registry/agents/{tenant}/{agent}/api_key")
}

impl KeyVault {
    /// A vault over `app.key_encryption_key` (none: keys are kept in clear).
    pub(crate) fn new(secret: Option<&SecretString>) -> Self {
        Self { key: secret.map(SealingKey::new) }
    }

    /// Whether keys are sealed.
    pub(crate) fn seals(&self) -> bool {
        self.key.is_some()
    }

    /// `plain` as it is stored for agent `agent` of `tenant`.
    pub(crate) fn store(&self, tenant: &str, agent: &Uuid, plain: &str) -> Result<StoredKey, ApiError> {
        match &self.key {
            Some(key) => {
                let value = key.seal_text(plain, aad(tenant, agent).as_bytes()).map_err(|e| ApiError::internal(&e))?;
                Ok(StoredKey { value, sealed: true })
            }
            None => Ok(StoredKey { value: plain.to_owned(), sealed: false }),
        }
    }

    /// The key stored for agent `agent` of `tenant`; the error says what is wrong with the
    /// setting, never the value.
    pub(crate) fn open(&self, tenant: &str, agent: &Uuid, stored: &StoredKey) -> Result<String, String> {
        if !stored.sealed {
            return Ok(stored.value.clone());
        }
        let key = self.key.as_ref().ok_or("its api key is encrypted but app.key_encryption_key is not set")?;
        key.open_text(&stored.value, aad(tenant, agent).as_bytes()).map_err(|e| format!("its api key: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sealed_to_their_agent_and_open_only_with_the_same_secret() {
        let vault = KeyVault::new(Some(&SecretString::from("k".repeat(32))));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let stored = vault.store("acme", &a, "sk-secret").unwrap();
        assert!(stored.sealed);
        assert!(!stored.value.contains("sk-secret"));
        assert_eq!(vault.open("acme", &a, &stored).unwrap(), "sk-secret");
        // Moved to another agent or tenant, it does not open.
        assert!(vault.open("acme", &b, &stored).is_err());
        assert!(vault.open("globex", &a, &stored).is_err());
        let other = KeyVault::new(Some(&SecretString::from("x".repeat(32))));
        let err = other.open("acme", &a, &stored).unwrap_err();
        assert!(err.contains("key-encryption key is not the one"), "{err}");
        let none = KeyVault::new(None);
        assert_eq!(
            none.open("acme", &a, &stored).unwrap_err(),
            "its api key is encrypted but app.key_encryption_key is not set"
        );
        // Without a key-encryption key the value is kept as given.
        let clear = none.store("acme", &a, "sk-secret").unwrap();
        assert_eq!(clear, StoredKey { value: "sk-secret".into(), sealed: false });
        assert_eq!(vault.open("acme", &a, &clear).unwrap(), "sk-secret");
    }
}
