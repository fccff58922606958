//! `/api/v1/models`: the tenant's MindsDB models (the pipeline's Model adapter), listed, and
//! asked for one completion. The OpenAI-compatible `/v1/models` (the tenant's agents) is
//! another route and stays as it is.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, State};
use getlood_common::ApiError;
use getlood_proto::pipeline::v1::{AskModelRequest, ListModelsRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::caller::{Caller, unary};
use crate::extract::ApiJson;

const SERVICE: &str = "pipeline";

/// A model as REST shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MindsDbModel)]
pub(crate) struct ModelJson {
    /// The ML engine it runs on.
    engine: String,
    /// Name in the tenant's project.
    name: String,
    /// The output column a completion fills.
    predict: String,
    /// `generating`, `complete` or `error`.
    status: String,
}

/// `GET /api/v1/models` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = MindsDbModelList)]
pub(crate) struct ModelList {
    /// By name.
    models: Vec<ModelJson>,
}

/// `POST /api/v1/models/{name}/ask` body: the row of inputs, or `question` alone as a shorthand
/// for `{"inputs": {"question": ...}}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AskModelInput)]
pub(crate) struct AskBody {
    question: Option<String>,
    #[serde(default)]
    inputs: HashMap<String, String>,
}

impl AskBody {
    fn into_inputs(self) -> Result<HashMap<String, String>, ApiError> {
        let mut inputs = self.inputs;
        if let Some(question) = self.question {
            if inputs.contains_key("question") {
                return Err(ApiError::invalid_argument("give question or inputs.question, not both"));
            }
            inputs.insert("question".to_owned(), question);
        }
        Ok(inputs)
    }
}

/// `POST /api/v1/models/{name}/ask` answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ModelAnswer)]
pub(crate) struct AskAnswer {
    /// The model's output column.
    answer: String,
    /// The whole output row, values as text.
    outputs: BTreeMap<String, String>,
}

/// `GET /api/v1/models`: the tenant's MindsDB models, by name.
#[utoipa::path(get, path = "/api/v1/models", operation_id = "list_mindsdb_models", tag = "models",
    responses((status = 200, description = "The tenant's MindsDB models, by name", body = ModelList)))]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<ModelList>, ApiError> {
    let resp = unary(SERVICE, state.upstreams.pipeline().list_models(caller.request(ListModelsRequest {}))).await?;
    let models = resp
        .models
        .into_iter()
        .map(|m| ModelJson { engine: m.engine, name: m.name, predict: m.predict, status: m.status })
        .collect();
    Ok(Json(ModelList { models }))
}

/// `POST /api/v1/models/{name}/ask`: one completion of the model.
#[utoipa::path(post, path = "/api/v1/models/{name}/ask", operation_id = "ask_model", tag = "models",
    params(("name" = String, Path, description = "The model's name")), request_body = AskBody,
    responses((status = 200, description = "The model's answer and whole output row", body = AskAnswer)))]
pub(crate) async fn ask(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<AskBody>,
) -> Result<Json<AskAnswer>, ApiError> {
    let req = AskModelRequest { name, inputs: body.into_inputs()? };
    let resp = unary(SERVICE, state.upstreams.pipeline().ask_model(caller.request(req))).await?;
    Ok(Json(AskAnswer { answer: resp.answer, outputs: resp.outputs.into_iter().collect() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_is_a_shorthand_for_one_input() {
        let body = AskBody { question: Some("why?".into()), inputs: HashMap::new() };
        assert_eq!(body.into_inputs().unwrap()["question"], "why?");
        let both =
            AskBody { question: Some("a".into()), inputs: HashMap::from([("question".to_owned(), "b".to_owned())]) };
        assert!(both.into_inputs().unwrap_err().message.contains("not both"));
    }
}
