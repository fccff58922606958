//! The LLM intent classifier: a MindsDB model in the tenant's project, reached through the Model
//! adapter. The engine and model are created lazily, once per tenant and process; their names
//! carry a hash of the settings, so changing the provider, URL, key, model or prompt makes new
//! objects instead of silently reusing stale ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use getlood_auth::Principal;
use getlood_mindsdb::{
    EngineSpec, Ident, MindsdbClient, MindsdbError, ModelAdapter, ModelSpec, ProjectAdapter, TenantContext,
};
use secrecy::ExposeSecret as _;
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::error::{Error, Result};
use crate::settings::IntentModelSettings;

/// FNV-1a, 64 bits: stable across processes and releases, unlike std's hasher.
fn fnv(data: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The intent model of every tenant.
#[derive(Clone)]
pub(crate) struct IntentModel {
    models: ModelAdapter,
    projects: ProjectAdapter,
    settings: IntentModelSettings,
    prompt: String,
    engine: Ident,
    model: Ident,
    /// Per tenant: set once its engine and model exist. A failed set-up leaves the cell empty,
    /// so the next turn tries again.
    ready: Arc<Mutex<HashMap<String, Arc<OnceCell<()>>>>>,
}

impl std::fmt::Debug for IntentModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntentModel").field("engine", &self.engine).field("model", &self.model).finish_non_exhaustive()
    }
}

fn ctx(p: &Principal) -> TenantContext {
    TenantContext::new(p.tenant.clone(), p.user.clone())
}

impl IntentModel {
    pub(crate) fn new(client: MindsdbClient, settings: &IntentModelSettings, prompt: String) -> Result<Self> {
        let key = settings.api_key.as_ref().map(|k| k.expose_secret().to_owned()).unwrap_or_default();
        let engine_hash = fnv(&format!("{}|{}|{key}", settings.provider, settings.base_url.as_deref().unwrap_or("")));
        let model_hash = fnv(&format!("{engine_hash}|{}|{}|{prompt}", settings.model_name, settings.max_tokens));
        // 8 hex digits: enough to tell configurations apart, too few to say anything of the key.
        let engine = Ident::new(&format!("getlood_intent_{:08x}", engine_hash as u32))?;
        let model = Ident::new(&format!("intent_{:08x}", model_hash as u32))?;
        // Refuse a provider name MindsDB could not take as an identifier now, not on the first turn.
        Ident::new(&settings.provider)?;
        Ok(Self {
            models: ModelAdapter::new(client.clone()),
            projects: ProjectAdapter::new(client),
            settings: settings.clone(),
            prompt,
            engine,
            model,
            ready: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    fn cell(&self, p: &Principal) -> Arc<OnceCell<()>> {
        let mut map = self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(p.tenant.to_string()).or_default().clone()
    }

    /// Creates the tenant's project, engine and model unless this process already did.
    async fn ensure(&self, p: &Principal) -> Result<()> {
        let cell = self.cell(p);
        let setup = cell.get_or_try_init(|| async {
            let ctx = ctx(p);
            self.projects.ensure(&ctx).await?;
            let spec = EngineSpec {
                name: self.engine.clone(),
                handler: Ident::new(&self.settings.provider)?,
                api_key: self.settings.api_key.clone(),
                api_base: self.settings.base_url.clone(),
            };
            match self.models.create_engine(&ctx, &spec).await {
                Ok(()) | Err(MindsdbError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            match self.models.get(&ctx, &self.model).await {
                Ok(info) if info.status.as_deref() == Some("error") => {
                    // A model left broken (e.g. the provider was down when it was made): replace it.
                    tracing::warn!(tenant = %p.tenant, model = %self.model, error = ?info.error, "recreating failed intent model");
                    self.models.delete(&ctx, &self.model).await?;
                    self.create_model(&ctx).await
                }
                Ok(_) => Ok(()),
                Err(MindsdbError::NotFound(_)) => self.create_model(&ctx).await,
                Err(e) => Err(e),
            }
        });
        match tokio::time::timeout(self.settings.setup_timeout, setup).await {
            Ok(r) => r.map(|_| ()).map_err(Error::from),
            Err(_) => Err(Error::Timeout { what: "intent model set-up", after: self.settings.setup_timeout }),
        }
    }

    async fn create_model(&self, ctx: &TenantContext) -> getlood_mindsdb::Result<()> {
        let spec = ModelSpec {
            name: self.model.clone(),
            engine: self.engine.clone(),
            target: Ident::new("answer")?,
            model_name: self.settings.model_name.clone(),
            prompt_template: self.prompt.clone(),
            max_tokens: Some(self.settings.max_tokens),
        };
        match self.models.create(ctx, &spec).await {
            // Another replica made it first.
            Ok(_) | Err(MindsdbError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Asks the model about `message`; returns its raw text answer.
    pub(crate) async fn classify(&self, p: &Principal, message: &str) -> Result<String> {
        self.ensure(p).await?;
        // Keep the start of the message: the request is normally stated first.
        let question: String = message.chars().take(self.settings.max_input_chars).collect();
        let input = Map::from_iter([("question".to_owned(), Value::String(question))]);
        let tenant = ctx(p);
        let call = self.models.predict(&tenant, &self.model, input);
        let row = match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::Timeout { what: "intent model", after: self.settings.timeout }),
        };
        match row.get("answer") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Null) | None => Err(Error::Upstream("the intent model returned no answer".to_owned())),
            Some(other) => Ok(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_settings() {
        let client = MindsdbClient::new(&getlood_mindsdb::MindsdbConfig::default()).unwrap();
        let s = IntentModelSettings::default();
        let a = IntentModel::new(client.clone(), &s, "p".into()).unwrap();
        let b = IntentModel::new(client.clone(), &s, "p".into()).unwrap();
        assert_eq!((a.engine.as_str(), a.model.as_str()), (b.engine.as_str(), b.model.as_str()));
        let c = IntentModel::new(client.clone(), &s, "other prompt".into()).unwrap();
        assert_eq!(a.engine, c.engine);
        assert_ne!(a.model, c.model);
        let s2 = IntentModelSettings { base_url: Some("http://other/v1".into()), ..s };
        let d = IntentModel::new(client, &s2, "p".into()).unwrap();
        assert_ne!(a.engine, d.engine);
    }
}
