//! The tenant's MindsDB models through the Model adapter: list them, and ask one for a single
//! completion. Only the caller's tenant project (`t_<tenant>`, tenant from the verified token) is
//! ever read; inputs travel as JSON rows to MindsDB's predict route, never as SQL.

use getlood_auth::Principal;
use getlood_common::{ApiError, ErrorCode};
use getlood_mindsdb::{Ident, MindsdbClient, MindsdbError, ModelAdapter, ModelInfo, TenantContext};
use getlood_proto::pipeline::v1::{AskModelRequest, AskModelResponse, Model};
use serde_json::{Map, Value};

/// Most inputs (columns) one question may carry.
const MAX_INPUTS: usize = 16;
/// Bytes of input names and values one question may carry in all.
const MAX_INPUT_BYTES: usize = 16 * 1024;

/// The tenants' models.
#[derive(Clone, Debug)]
pub(crate) struct Models {
    adapter: ModelAdapter,
}

fn ctx(p: &Principal) -> TenantContext {
    TenantContext::new(p.tenant.clone(), p.user.clone())
}

fn to_proto(m: ModelInfo) -> Model {
    // The training error is MindsDB's text (tracebacks, provider answers): not shown.
    Model {
        name: m.name,
        engine: m.engine.unwrap_or_default(),
        status: m.status.unwrap_or_default(),
        predict: m.predict.unwrap_or_default(),
    }
}

impl Models {
    pub(crate) fn new(client: MindsdbClient) -> Self {
        Self { adapter: ModelAdapter::new(client) }
    }

    /// The models of the caller's tenant project, by name (none before the project exists).
    pub(crate) async fn list(&self, p: &Principal) -> Result<Vec<Model>, ApiError> {
        let mut models = match self.adapter.list(&ctx(p)).await {
            Ok(models) => models,
            Err(MindsdbError::NotFound(_)) => Vec::new(),
            Err(err) => return Err(err.into()),
        };
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models.into_iter().map(to_proto).collect())
    }

    /// One completion of the caller's model `req.name` on the row `req.inputs`.
    pub(crate) async fn ask(&self, p: &Principal, req: &AskModelRequest) -> Result<AskModelResponse, ApiError> {
        let name = Ident::new(&req.name).map_err(|_| {
            ApiError::invalid_argument(format!(
                "model name '{}' is invalid: use 1-63 characters of [a-z0-9_], starting with a letter or '_'",
                req.name.chars().take(64).collect::<String>().escape_debug()
            ))
        })?;
        let input = check_inputs(req)?;
        let ctx = ctx(p);
        let info = match self.adapter.get(&ctx, &name).await {
            Ok(info) => info,
            Err(MindsdbError::NotFound(_)) => return Err(ApiError::not_found(format!("model '{name}' not found"))),
            Err(err) => return Err(err.into()),
        };
        if info.status.as_deref() != Some("complete") {
            return Err(ApiError::new(
                ErrorCode::FailedPrecondition,
                format!("model '{name}' is not ready (status {})", info.status.as_deref().unwrap_or("unknown")),
            ));
        }
        let row = match self.adapter.predict(&ctx, &name, input).await {
            Ok(row) => row,
            Err(MindsdbError::NotFound(_)) => return Err(ApiError::not_found(format!("model '{name}' not found"))),
            Err(err) => return Err(err.into()),
        };
        let outputs: std::collections::HashMap<String, String> = row
            .iter()
            // MindsDB's own bookkeeping columns (`__mindsdb_row_id`, ...) are not the model's.
            .filter(|(k, v)| !k.starts_with("__") && !v.is_null())
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        let answer = info.predict.as_deref().and_then(|c| outputs.get(c)).cloned().unwrap_or_default();
        tracing::debug!(tenant = %ctx.tenant, model = %name, "model asked");
        Ok(AskModelResponse { answer, outputs })
    }
}

/// The inputs as one prediction row; the error names what is wrong.
fn check_inputs(req: &AskModelRequest) -> Result<Map<String, Value>, ApiError> {
    if req.inputs.is_empty() {
        return Err(ApiError::invalid_argument(
            "inputs is empty: give the model's prompt placeholders, e.g. {\"question\": \"...\"}",
        ));
    }
    if req.inputs.len() > MAX_INPUTS {
        return Err(ApiError::invalid_argument(format!("inputs has more than {MAX_INPUTS} entries")));
    }
    let mut total = 0usize;
    let mut row = Map::new();
    // Sorted, so the first bad key named is the same on every call.
    let mut keys: Vec<&String> = req.inputs.keys().collect();
    keys.sort();
    for key in keys {
        let value = &req.inputs[key];
        if Ident::new(key).is_err() {
            return Err(ApiError::invalid_argument(format!(
                "input name '{}' is invalid: use [a-z_][a-z0-9_]{{0,62}}",
                key.chars().take(64).collect::<String>().escape_debug()
            )));
        }
        if value.contains('\0') {
            return Err(ApiError::invalid_argument(format!("input '{key}' contains a NUL character")));
        }
        total += key.len() + value.len();
        row.insert(key.clone(), Value::String(value.clone()));
    }
    if total > MAX_INPUT_BYTES {
        return Err(ApiError::invalid_argument(format!(
            "inputs hold {total} bytes, more than the {MAX_INPUT_BYTES} allowed"
        )));
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(inputs: &[(&str, &str)]) -> AskModelRequest {
        AskModelRequest {
            name: "m".into(),
            inputs: inputs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn inputs_are_bounded_and_named_like_columns() {
        let row = check_inputs(&ask(&[("question", "what is rust?")])).unwrap();
        assert_eq!(row["question"], "what is rust?");
        let msg = |r: AskModelRequest| check_inputs(&r).unwrap_err().message;
        assert!(msg(ask(&[])).contains("inputs is empty"));
        assert!(msg(ask(&[("Question", "x")])).contains("input name 'Question' is invalid"));
        assert!(msg(ask(&[("q", "a\0b")])).contains("NUL"));
        let big = "x".repeat(MAX_INPUT_BYTES);
        assert!(msg(ask(&[("q", &big)])).contains("more than the 16384"));
        let many: Vec<(String, String)> = (0..17).map(|i| (format!("c{i}"), "v".to_owned())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(msg(ask(&many)).contains("more than 16"));
    }
}
