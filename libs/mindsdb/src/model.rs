//! Model adapter: ML engines (LLM provider + base URL) and LLM models in the tenant's project.
//! Owned by the pipeline (intent detection and enhancement calls).
//!
//! * Engines are created through `PUT /api/config/integrations/{name}` with JSON params: the
//!   API key and base URL never appear in SQL text. The base URL key is `api_base`: the 26.1
//!   engine silently ignores `openai_api_base` and sends traffic to api.openai.com.
//! * `CREATE MODEL ... USING` cannot bind params, so its values are written as checked literals
//!   by [`crate::sql::Sql::to_inline`]; no secret goes there (the key lives on the engine, which
//!   also keeps it out of `TRAINING_OPTIONS`, which MindsDB echoes in clear).
//! * Predictions use `POST /api/projects/{p}/models/{m}/predict` with JSON rows: inputs are
//!   never SQL.

use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::client::{MindsdbClient, RestPath, Retry, TenantContext};
use crate::error::{MindsdbError, Result};
use crate::mask::mask_secrets;
use crate::sql::{Ident, SqlBuilder};

/// An ML engine: which provider handler, with which key and base URL.
#[derive(Debug, Clone)]
pub struct EngineSpec {
    /// Engine name (company-wide in MindsDB, i.e. per tenant).
    pub name: Ident,
    /// MindsDB handler: `openai`, `anthropic`, `ollama`, `groq`, ... (must be installed).
    pub handler: Ident,
    /// Provider key; stored by MindsDB, never returned.
    pub api_key: Option<SecretString>,
    /// Base URL of an OpenAI-compatible endpoint (`http://127.0.0.1:18080/v1` locally).
    pub api_base: Option<String>,
}

/// An engine as listed, secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineInfo {
    /// Engine name.
    pub name: String,
    /// Handler it uses.
    pub handler: String,
    /// Connection settings with every secret replaced by `******`.
    pub settings: Value,
}

/// An LLM model: a prompt template answered by an engine.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Model name in the tenant's project.
    pub name: Ident,
    /// Engine it runs on.
    pub engine: Ident,
    /// Output column (`answer`).
    pub target: Ident,
    /// Provider model name. Offline, prefer a cl100k name (`gpt-4`, `gpt-3.5-turbo`): MindsDB's
    /// tiktoken downloads the encoding of any other name (o200k for `gpt-4o`) and fails.
    pub model_name: String,
    /// Template with `{{column}}` placeholders filled from each prediction row.
    pub prompt_template: String,
    /// Completion length limit.
    pub max_tokens: Option<u32>,
}

/// A model as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Model name.
    pub name: String,
    /// Engine it runs on.
    pub engine: Option<String>,
    /// `generating`, `complete` or `error`.
    pub status: Option<String>,
    /// The training error, if any.
    pub error: Option<String>,
    /// Output column.
    pub predict: Option<String>,
}

/// Engines, models and predictions of the tenant.
#[derive(Debug, Clone)]
pub struct ModelAdapter {
    client: MindsdbClient,
}

impl ModelAdapter {
    /// An adapter over `client`.
    pub fn new(client: MindsdbClient) -> Self {
        Self { client }
    }

    /// Creates an ML engine; `AlreadyExists` if the name is taken. MindsDB checks the key
    /// against the provider's `/models` route while creating it.
    pub async fn create_engine(&self, ctx: &TenantContext, spec: &EngineSpec) -> Result<()> {
        let mut params = Map::new();
        params.insert("type".into(), spec.handler.as_str().into());
        if let Some(key) = &spec.api_key {
            // Handlers read their own key name (`openai_api_key`, `anthropic_api_key`, ...).
            params.insert(format!("{}_api_key", spec.handler), key.expose_secret().into());
        }
        if let Some(base) = &spec.api_base {
            params.insert("api_base".into(), base.clone().into());
        }
        let path = RestPath::new("/api/config/integrations").id(&spec.name);
        let body = json!({ "params": params });
        self.client.rest(ctx, "model.create_engine", Method::PUT, &path, Some(&body), Retry::OnlyIfUnsent).await?;
        Ok(())
    }

    /// The tenant's ML engines, secrets masked.
    pub async fn list_engines(&self, ctx: &TenantContext) -> Result<Vec<EngineInfo>> {
        let sql = SqlBuilder::new().kw("SHOW ML_ENGINES").build();
        let t = self.client.query_idempotent(ctx, "model.list_engines", &sql).await?.into_table();
        Ok(t.rows
            .iter()
            .map(|r| {
                let mut settings = t.cell(r, "connection_data").cloned().unwrap_or(Value::Null);
                mask_secrets(&mut settings);
                EngineInfo {
                    name: t.text(r, "name").unwrap_or_default(),
                    handler: t.text(r, "handler").unwrap_or_default(),
                    settings,
                }
            })
            .collect())
    }

    /// Drops an engine (its models must be dropped first).
    pub async fn drop_engine(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP ML_ENGINE").ident(name).build();
        self.client.query(ctx, "model.drop_engine", &sql).await?;
        Ok(())
    }

    /// Creates a model and waits until MindsDB reports it `complete` (about a second for LLM
    /// models), or fails with its error.
    pub async fn create(&self, ctx: &TenantContext, spec: &ModelSpec) -> Result<ModelInfo> {
        let mut b = SqlBuilder::new()
            .kw("CREATE MODEL")
            .qualified(&ctx.project(), &spec.name)
            .kw("PREDICT")
            .ident(&spec.target)
            .kw("USING engine =")
            .value(spec.engine.as_str())
            .kw(", model_name =")
            .value(spec.model_name.as_str())
            .kw(", prompt_template =")
            .value(spec.prompt_template.as_str());
        if let Some(n) = spec.max_tokens {
            b = b.kw(", max_tokens =").int(i64::from(n));
        }
        let text = b.build().to_inline()?;
        let body = json!({ "query": text, "context": {"db": ctx.project().as_str()} });
        self.client.query_body(ctx, "model.create", &body, Retry::OnlyIfUnsent).await?;
        self.wait_ready(ctx, &spec.name).await
    }

    async fn wait_ready(&self, ctx: &TenantContext, name: &Ident) -> Result<ModelInfo> {
        let deadline = Instant::now() + self.client.config().request_timeout;
        loop {
            let info = self.get(ctx, name).await?;
            match info.status.as_deref() {
                Some("complete") => return Ok(info),
                Some("error") => {
                    return Err(MindsdbError::from_message(info.error.as_deref().unwrap_or("model training failed")));
                }
                _ if Instant::now() > deadline => {
                    return Err(MindsdbError::Timeout(self.client.config().request_timeout));
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// One model; `NotFound` if absent.
    pub async fn get(&self, ctx: &TenantContext, name: &Ident) -> Result<ModelInfo> {
        self.list(ctx)
            .await?
            .into_iter()
            .find(|m| m.name == name.as_str())
            .ok_or_else(|| MindsdbError::NotFound(format!("model {name}")))
    }

    /// The models of the tenant's project.
    pub async fn list(&self, ctx: &TenantContext) -> Result<Vec<ModelInfo>> {
        // Named columns only: MindsDB echoes API keys in clear in TRAINING_OPTIONS.
        let sql = SqlBuilder::new()
            .kw("SELECT NAME, ENGINE, STATUS, ERROR, PREDICT FROM")
            .qualified(&ctx.project(), &models_table())
            .build();
        let t = self.client.query_idempotent(ctx, "model.list", &sql).await?.into_table();
        Ok(t.rows
            .iter()
            .map(|r| ModelInfo {
                name: t.text(r, "name").unwrap_or_default(),
                engine: t.text(r, "engine"),
                status: t.text(r, "status"),
                error: t.text(r, "error"),
                predict: t.text(r, "predict"),
            })
            .collect())
    }

    /// Runs the model on one row of inputs (`{"question": "..."}`); returns the output row.
    pub async fn predict(
        &self,
        ctx: &TenantContext,
        name: &Ident,
        input: Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let mut rows = self.predict_many(ctx, name, vec![input]).await?;
        rows.pop().ok_or_else(|| MindsdbError::Internal("prediction returned no row".to_owned()))
    }

    /// Runs the model on several rows at once.
    pub async fn predict_many(
        &self,
        ctx: &TenantContext,
        name: &Ident,
        inputs: Vec<Map<String, Value>>,
    ) -> Result<Vec<Map<String, Value>>> {
        let path = RestPath::new("/api/projects").id(&ctx.project()).fixed("/models").id(name).fixed("/predict");
        let body = json!({ "data": inputs });
        // A prediction has no side effect in MindsDB, but it costs an LLM call: retry only
        // what never left.
        let v = self.client.rest(ctx, "model.predict", Method::POST, &path, Some(&body), Retry::OnlyIfUnsent).await?;
        match v {
            Value::Array(rows) => Ok(rows
                .into_iter()
                .map(|r| match r {
                    Value::Object(m) => m,
                    other => Map::from_iter([("value".to_owned(), other)]),
                })
                .collect()),
            Value::Object(ref o) if o.contains_key("detail") => {
                Err(MindsdbError::from_message(o.get("detail").and_then(Value::as_str).unwrap_or("prediction failed")))
            }
            _ => Err(MindsdbError::Internal("unexpected prediction answer".to_owned())),
        }
    }

    /// Deletes a model; `NotFound` if absent.
    pub async fn delete(&self, ctx: &TenantContext, name: &Ident) -> Result<()> {
        let sql = SqlBuilder::new().kw("DROP MODEL").qualified(&ctx.project(), name).build();
        self.client.query(ctx, "model.delete", &sql).await?;
        Ok(())
    }
}

fn models_table() -> Ident {
    Ident::new("models").unwrap_or_else(|_| unreachable!("constant identifier"))
}
