//! `/graphql`: the platform's API as GraphQL (issue 14), next to REST and over the same upstream
//! calls, permissions and tenant rules.
//!
//! * `POST /graphql` with `application/json` (`{"query","operationName","variables"}`, or a list
//!   of up to `graphql_max_batch` of them): queries and mutations. `GET /graphql?query=...` runs
//!   queries only: a mutation sent with GET is refused, so every write is a POST, which the audit
//!   log records.
//! * `GET /graphql` as a WebSocket upgrade with the `graphql-transport-ws` subprotocol (the
//!   legacy `graphql-ws` is accepted too): subscriptions ([`socket`]).
//!
//! The route is behind `require_auth` like every route (bearer header, or for browsers the
//! `bearer.<jwt>` subprotocol entry on the socket), and needs `profile.read`; each field then
//! needs the permission of its REST route ([`guard::Need`]), and each mutation counts against
//! its REST route's rate-limit class. Every error is a GraphQL error whose `extensions.code` is
//! the platform's error code (`invalid_argument`, `permission_denied`, `not_found`, ...); a
//! request that is not GraphQL at all (no JSON, too large) is a 4xx with a GraphQL error body.
//!
//! Bounds: the body limit (`max_body_bytes`), `graphql_max_depth`, `graphql_max_complexity`
//! (list fields cost their page size times their selection, fields that call a service more),
//! `graphql_max_aliases`, `graphql_max_batch`, list pages of at most 100, the plain request
//! deadline (`http_request_timeout`), and on a socket `graphql_max_subscriptions`.

mod data_sources;
mod guard;
mod knowledge;
mod loader;
mod mutation;
mod query;
mod socket;
mod subscription;
mod types;

use std::collections::HashSet;

use async_graphql::dataloader::DataLoader;
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{BatchRequest, BatchResponse, Request as GqlRequest, Response as GqlResponse, Schema, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLResponse};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use getlood_common::{ApiError, ErrorCode};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::AppState;
use crate::audit::Described;
use crate::caller::Caller;
pub(crate) use loader::RunLoader;
use mutation::Mutation;
use query::Query;
use subscription::Subscription;

/// Upstream service names, as REST's errors name them.
const REGISTRY: &str = "agent-registry";
const DESKTOP_STATE: &str = "desktop-state";
const WORKFLOW: &str = "workflow";

/// The root of reads: each area's fields, in one `Query` type.
#[derive(Debug, Default, async_graphql::MergedObject)]
#[graphql(name = "Query")]
pub(crate) struct RootQuery(Query, knowledge::KnowledgeQuery, data_sources::DataSourceQuery);

/// The root of writes: each area's mutations, in one `Mutation` type.
#[derive(Debug, Default, async_graphql::MergedObject)]
#[graphql(name = "Mutation")]
pub(crate) struct RootMutation(Mutation, knowledge::KnowledgeMutation, data_sources::DataSourceMutation);

/// The gateway's GraphQL schema.
pub(crate) type GatewaySchema = Schema<RootQuery, RootMutation, Subscription>;

/// The schema with the limits of `state`'s settings; built once, when the router is.
pub(crate) fn schema(state: &AppState) -> GatewaySchema {
    let settings = &state.settings;
    let builder = Schema::build(RootQuery::default(), RootMutation::default(), Subscription)
        .data(state.clone())
        .limit_depth(settings.graphql_max_depth)
        .limit_complexity(settings.graphql_max_complexity);
    if settings.graphql_introspection { builder.finish() } else { builder.disable_introspection().finish() }
}

/// The schema in SDL, for the docs and tests.
#[cfg(test)]
pub(crate) fn sdl() -> String {
    Schema::build(RootQuery::default(), RootMutation::default(), Subscription).finish().sdl()
}

/// An error answer to a request that could not be read as GraphQL: `{"errors":[...]}` with the
/// code under `extensions.code`, and the status of that code.
fn refusal(err: &ApiError) -> Response {
    let body = json!({"errors": [{"message": err.message, "extensions": {"code": err.code.as_str()}}]});
    let mut response = (err.code.http_status(), axum::Json(body)).into_response();
    response.extensions_mut().insert(Described::Read);
    response
}

/// `GET /graphql`: a query in the URL, or the subscription socket when the request is an upgrade.
pub(crate) async fn get(
    State(state): State<AppState>,
    Extension(schema): Extension<GatewaySchema>,
    caller: Caller,
    protocol: Result<GraphQLProtocol, StatusCode>,
    upgrade: crate::sse::Upgrade,
    RawQuery(query): RawQuery,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            let Ok(protocol) = protocol else {
                return ApiError::invalid_argument("a GraphQL socket needs the graphql-transport-ws subprotocol")
                    .into_response();
            };
            return socket::upgrade(&state, schema, caller, upgrade, protocol);
        }
        Err(rejection) if !is_plain_request(&rejection) => {
            return ApiError::invalid_argument(rejection.body_text()).into_response();
        }
        Err(_) => {}
    }
    let request = match async_graphql::http::parse_query_string(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(err) => return refusal(&ApiError::invalid_argument(format!("malformed GraphQL request: {err}"))),
    };
    execute(&state, &schema, &caller, BatchRequest::Single(request), &Method::GET).await
}

/// Whether a refused upgrade is a plain request (no upgrade asked) rather than a broken one.
fn is_plain_request(rejection: &axum::extract::ws::rejection::WebSocketUpgradeRejection) -> bool {
    use axum::extract::ws::rejection::WebSocketUpgradeRejection as R;
    matches!(rejection, R::InvalidConnectionHeader(_) | R::InvalidUpgradeHeader(_) | R::MethodNotGet(_))
}

/// `POST /graphql`: a query or mutation (or a batch of them) as JSON.
pub(crate) async fn post(
    State(state): State<AppState>,
    Extension(schema): Extension<GatewaySchema>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return refusal(&ApiError::new(ErrorCode::PayloadTooLarge, "request body is too large"));
        }
        Err(r) => return refusal(&ApiError::invalid_argument(format!("cannot read request body: {}", r.body_text()))),
    };
    let json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return refusal(&ApiError::invalid_argument(
            "a GraphQL request must be JSON with 'content-type: application/json'",
        ));
    }
    let batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(e) => return refusal(&ApiError::invalid_argument(format!("malformed GraphQL request: {e}"))),
    };
    execute(&state, &schema, &caller, batch, &Method::POST).await
}

/// What one operation of a request is, read before it runs.
struct Inspected {
    /// The mutation's root fields (for the audit log); empty for a query.
    mutations: Vec<String>,
}

/// Checks what the schema's own validation does not: the alias limit, and no writes over GET.
/// A document that does not parse is left to the schema, which reports where.
fn inspect(request: &mut GqlRequest, method: &Method, max_aliases: usize) -> Result<Inspected, ApiError> {
    let operation_name = request.operation_name.clone();
    let Ok(doc) = request.parsed_query() else { return Ok(Inspected { mutations: Vec::new() }) };
    let aliases = count_aliases(doc);
    if aliases > max_aliases {
        return Err(ApiError::invalid_argument(format!(
            "the document has {aliases} aliases; at most {max_aliases} are allowed"
        )));
    }
    let operation = match (&doc.operations, operation_name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        // The schema reports the missing or ambiguous operation name.
        (DocumentOperations::Multiple(_), None) => None,
    };
    let Some(operation) = operation else { return Ok(Inspected { mutations: Vec::new() }) };
    match operation.ty {
        OperationType::Mutation if method == Method::GET => {
            Err(ApiError::invalid_argument("mutations must be sent with POST"))
        }
        OperationType::Mutation => {
            let mut names = Vec::new();
            root_fields(doc, &operation.selection_set.node, &mut names, &mut HashSet::new());
            Ok(Inspected { mutations: names })
        }
        OperationType::Query | OperationType::Subscription => Ok(Inspected { mutations: Vec::new() }),
    }
}

/// The fields with an alias in the whole document (fragments included, each counted once).
fn count_aliases(doc: &ExecutableDocument) -> usize {
    fn in_set(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(f) => usize::from(f.node.alias.is_some()) + in_set(&f.node.selection_set.node),
                Selection::InlineFragment(f) => in_set(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    let operations: usize = doc.operations.iter().map(|(_, op)| in_set(&op.node.selection_set.node)).sum();
    let fragments: usize = doc.fragments.values().map(|f| in_set(&f.node.selection_set.node)).sum();
    operations + fragments
}

/// The names of the root fields `set` selects, through fragments (each fragment once).
fn root_fields<'a>(
    doc: &'a ExecutableDocument,
    set: &'a SelectionSet,
    out: &mut Vec<String>,
    seen: &mut HashSet<&'a str>,
) {
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => out.push(f.node.name.node.to_string()),
            Selection::InlineFragment(f) => root_fields(doc, &f.node.selection_set.node, out, seen),
            Selection::FragmentSpread(s) => {
                let name = s.node.fragment_name.node.as_str();
                if seen.insert(name)
                    && let Some(fragment) = doc.fragments.get(&s.node.fragment_name.node)
                {
                    root_fields(doc, &fragment.node.selection_set.node, out, seen);
                }
            }
        }
    }
}

/// Runs `batch` for `caller` and answers it; every error leaves with an `extensions.code`.
async fn execute(
    state: &AppState,
    schema: &GatewaySchema,
    caller: &Caller,
    batch: BatchRequest,
    method: &Method,
) -> Response {
    let settings = &state.settings;
    let requests = match batch {
        BatchRequest::Single(request) => vec![request],
        BatchRequest::Batch(requests) if requests.is_empty() => {
            return refusal(&ApiError::invalid_argument("a batch needs at least one request"));
        }
        BatchRequest::Batch(requests) if requests.len() > settings.graphql_max_batch => {
            return refusal(&ApiError::invalid_argument(format!(
                "a batch may hold at most {} requests, not {}",
                settings.graphql_max_batch,
                requests.len()
            )));
        }
        BatchRequest::Batch(requests) => requests,
    };
    let single = requests.len() == 1;
    let mut mutations = Vec::new();
    let mut responses = Vec::with_capacity(requests.len());
    let mut audit_status = StatusCode::OK;
    let mut refusal_reason = String::new();
    for mut request in requests {
        let inspected = match inspect(&mut request, method, settings.graphql_max_aliases) {
            Ok(inspected) => inspected,
            Err(err) => {
                responses.push(GqlResponse::from_errors(vec![server_error(&err)]));
                continue;
            }
        };
        // A loader per request: it acts for this caller only and its cache ends with the request.
        let loader = DataLoader::new(RunLoader::new(state.clone(), caller.clone()), spawner(state));
        let request = request.data(caller.clone()).data(loader);
        let response = match tokio::time::timeout(settings.http_request_timeout, schema.execute(request)).await {
            Ok(response) => coded(response),
            Err(_) => GqlResponse::from_errors(vec![server_error(&ApiError::new(
                ErrorCode::DeadlineExceeded,
                "the GraphQL request did not finish within its deadline",
            ))]),
        };
        if !inspected.mutations.is_empty() {
            if let Some((status, reason)) = worst(&response)
                && audit_status == StatusCode::OK
            {
                (audit_status, refusal_reason) = (status, reason);
            }
            mutations.extend(inspected.mutations);
        }
        responses.push(response);
    }
    let described = if mutations.is_empty() {
        Described::Read
    } else {
        Described::Write { action: audit_action(&mutations), status: audit_status, reason: refusal_reason }
    };
    let batch = if single { BatchResponse::Single(responses.remove(0)) } else { BatchResponse::Batch(responses) };
    let mut response = GraphQLResponse::from(batch).into_response();
    response.extensions_mut().insert(described);
    response
}

/// The DataLoader's spawner: its batches run on the service's task tracker, so shutdown waits
/// for them (each is bounded by the upstream deadline).
fn spawner(state: &AppState) -> impl Fn(futures::future::BoxFuture<'static, ()>) + Send + Sync + 'static {
    let tracker = state.realtime.tracker().clone();
    move |fut| {
        tracker.spawn(fut);
    }
}

/// The audit action of a request's mutations: `graphql.<field>` (`graphql.createAgent`), or for
/// several root fields their names joined by `,` (bounded by the audit log's field length).
fn audit_action(mutations: &[String]) -> String {
    format!("graphql.{}", mutations.join(","))
}

/// The first error of `response` as the HTTP status REST would have answered it with, and its
/// message, for the audit log's outcome.
fn worst(response: &GqlResponse) -> Option<(StatusCode, String)> {
    let err = response.errors.first()?;
    let code = err
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(|v| match v {
            async_graphql::Value::String(s) => Some(s.as_str()),
            _ => None,
        })
        .and_then(code_of)
        .unwrap_or(ErrorCode::InvalidArgument);
    Some((code.http_status(), err.message.clone()))
}

fn code_of(name: &str) -> Option<ErrorCode> {
    const ALL: [ErrorCode; 13] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::Aborted,
        ErrorCode::FailedPrecondition,
        ErrorCode::ResourceExhausted,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Unimplemented,
        ErrorCode::Internal,
    ];
    ALL.into_iter().find(|c| c.as_str() == name)
}

/// `err` as a GraphQL error of the response (no location).
fn server_error(err: &ApiError) -> ServerError {
    guard::gql_error(err.clone()).into_server_error(async_graphql::Pos::default())
}

/// `response` with an `extensions.code` on every error: the resolvers' errors carry theirs;
/// the schema's own (syntax, unknown field, wrong argument, depth, complexity) are
/// `invalid_argument`, with the limit named when one was exceeded.
fn coded(mut response: GqlResponse) -> GqlResponse {
    for err in &mut response.errors {
        let has_code = err.extensions.as_ref().is_some_and(|e| e.get("code").is_some());
        if has_code {
            continue;
        }
        err.message = match err.message.as_str() {
            "Query is nested too deep." => "the query is nested deeper than graphql_max_depth allows".to_owned(),
            "Query is too complex." => {
                "the query is more complex than graphql_max_complexity allows (a list costs its pageSize times its selection)"
                    .to_owned()
            }
            _ => std::mem::take(&mut err.message),
        };
        err.extensions.get_or_insert_with(Default::default).set("code", ErrorCode::InvalidArgument.as_str());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspected(query: &str, method: &Method) -> Result<Inspected, ApiError> {
        inspect(&mut GqlRequest::new(query), method, 3)
    }

    #[test]
    fn mutations_are_named_for_the_audit_log_and_refused_over_get() {
        let q = "mutation { a: createDesktop(name: \"x\") { id } ...F } fragment F on Mutation { cancelRun(id: \"r\") { id } }";
        let found = inspected(q, &Method::POST).unwrap();
        assert_eq!(found.mutations, ["createDesktop", "cancelRun"]);
        assert_eq!(audit_action(&found.mutations), "graphql.createDesktop,cancelRun");
        let err = inspected("mutation { createDesktop(name: \"x\") { id } }", &Method::GET).err().unwrap();
        assert_eq!(err.message, "mutations must be sent with POST");
        assert!(inspected("{ me { user } }", &Method::GET).unwrap().mutations.is_empty());
    }

    #[test]
    fn aliases_are_counted_across_the_document() {
        let q = "{ a: me { user } b: me { u: user } ...F } fragment F on Query { c: me { user } }";
        let err = inspected(q, &Method::POST).err().unwrap();
        assert!(err.message.contains("4 aliases"), "{}", err.message);
        assert!(inspected("{ a: me { user } b: me { user } }", &Method::POST).is_ok());
    }

    #[test]
    fn schema_errors_get_a_code_and_the_limit_named() {
        let mut response = GqlResponse::from_errors(vec![
            ServerError::new("Query is nested too deep.", None),
            ServerError::new("Unknown field \"x\"", None),
        ]);
        response = coded(response);
        let codes: Vec<_> =
            response.errors.iter().map(|e| e.extensions.as_ref().and_then(|x| x.get("code")).cloned()).collect();
        assert!(codes.iter().all(|c| *c == Some(async_graphql::Value::from("invalid_argument"))), "{codes:?}");
        assert!(response.errors[0].message.contains("graphql_max_depth"));
        assert_eq!(worst(&response).map(|w| w.0), Some(StatusCode::BAD_REQUEST));
        assert_eq!(code_of("permission_denied"), Some(ErrorCode::PermissionDenied));
    }

    #[test]
    fn the_schema_has_the_rest_surface() {
        let sdl = sdl();
        for field in ["agents(", "runs(", "executeWorkflow(", "approveNode(", "runEvents(", "openWindow("] {
            assert!(sdl.contains(field), "{field} missing from the schema");
        }
        // API keys are write-only.
        assert!(!sdl.contains("apiKey: String!\n  hasApiKey"));
    }
}
