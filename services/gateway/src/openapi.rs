//! The gateway's OpenAPI 3.1 document, generated with utoipa from the handlers' `#[utoipa::path]`
//! annotations and the types the handlers serialise, so the schemas are the bodies' own types.
//! Served unauthenticated at [`PATH`] (outside the authenticated router, like the probes; see
//! `http_api::PUBLIC_ROUTES`) and exported to `docs/api/openapi.json` by `getlood openapi`.
//!
//! What every operation shares is added here rather than repeated on each handler: the bearer
//! security requirement and the error answers (`ErrorBody`, or on the OpenAI routes the body
//! with OpenAI's `error` object as well). A route of [`crate::route_permissions`] without an
//! operation here, or an operation without a route, fails `the_document_covers_every_route`.

use std::sync::LazyLock;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use getlood_common::{ErrorBody, ErrorCode};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::openai::OpenAiErrorBody;
use crate::{
    audit_api, chat, data_source_api, desktop_api, http_api, kb_api, memory_api, models_api, registry_api, sse,
    workflow_api, ws,
};

/// Where the document is served.
pub const PATH: &str = "/openapi.json";

/// The name of the bearer security scheme.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "GETLOOD gateway",
        description = "The public HTTP API of GETLOOD: REST under `/api/v1`, the OpenAI-compatible API under `/v1`, Server-Sent Events and WebSockets. Every operation but sign-in (`/api/v1/auth/config`, `/signup`, `/login` and `/.well-known/jwks.json`) needs `Authorization: Bearer <jwt>` (a browser's WebSocket may send it as the `bearer.<jwt>` subprotocol entry instead); the tenant is the token's. Errors are `{\"code\", \"message\"}` with a stable `code`; another tenant's object is a 404 like a missing one.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        http_api::me,
        crate::accounts::config,
        crate::accounts::signup,
        crate::accounts::login,
        crate::accounts::jwks,
        crate::accounts::create_user,
        registry_api::list_models,
        chat::chat_completions,
        registry_api::list_agents,
        registry_api::create_agent,
        registry_api::get_agent,
        registry_api::update_agent,
        registry_api::delete_agent,
        memory_api::search,
        audit_api::list,
        registry_api::list_skills,
        registry_api::create_skill,
        registry_api::get_skill,
        registry_api::delete_skill,
        desktop_api::list_desktops,
        desktop_api::create_desktop,
        desktop_api::read_desktop,
        desktop_api::delete_desktop,
        desktop_api::list_windows,
        desktop_api::open_window,
        desktop_api::save_desktop,
        desktop_api::restore_desktop,
        desktop_api::get_window,
        desktop_api::move_window,
        desktop_api::close_window,
        desktop_api::window_action,
        desktop_api::save_state,
        desktop_api::read_desktop_state,
        ws::desktop_socket,
        sse::events,
        sse::events_socket,
        workflow_api::list_workflows,
        workflow_api::create_workflow,
        workflow_api::validate_workflow,
        workflow_api::get_workflow,
        workflow_api::update_workflow,
        workflow_api::delete_workflow,
        workflow_api::list_versions,
        workflow_api::execute_workflow,
        workflow_api::list_workflow_runs,
        workflow_api::schedule_workflow,
        workflow_api::unschedule_workflow,
        workflow_api::job_history,
        workflow_api::list_runs,
        workflow_api::get_run,
        workflow_api::cancel_run,
        workflow_api::approve_node,
        workflow_api::run_events,
        graphql_get,
        graphql_post,
        crate::mcp::openapi::mcp_post,
        crate::mcp::openapi::mcp_get,
        crate::mcp::openapi::mcp_delete,
        crate::a2a::card,
        crate::a2a::openapi::a2a_rpc,
        kb_api::list,
        kb_api::create,
        kb_api::get,
        kb_api::delete,
        kb_api::insert_documents,
        kb_api::search,
        models_api::list,
        models_api::ask,
        data_source_api::list,
        data_source_api::create,
        data_source_api::get,
        data_source_api::delete,
        data_source_api::test,
        data_source_api::tables,
        data_source_api::table,
        data_source_api::rows,
    ),
    components(schemas(ErrorBody, ErrorCode, OpenAiErrorBody, desktop_api::EventJson, desktop_api::WindowAction)),
    modifiers(&Shared),
    security(("bearer" = [])),
    tags(
        (name = "profile", description = "The caller"),
        (name = "auth", description = "Sign-in: built-in accounts (sign-up, sign-in, users an admin adds) and the keys their tokens are signed with, or the OpenID Connect provider to use"),
        (name = "openai", description = "The OpenAI-compatible API"),
        (name = "agents", description = "The tenant's agents (MindsDB agents)"),
        (name = "skills", description = "The tenant's skill catalogue"),
        (name = "memory", description = "Search of the caller's past conversation turns"),
        (name = "desktops", description = "Desktops and windows, and their real-time socket"),
        (name = "events", description = "The caller's events as a stream"),
        (name = "workflows", description = "Workflow graphs, versions and schedules"),
        (name = "runs", description = "Workflow runs, approvals and run events"),
        (name = "audit", description = "The tenant's audit log (admins)"),
        (name = "graphql", description = "The same data as GraphQL (see docs/api/graphql.md)"),
        (name = "a2a", description = "The tenant's agents as A2A 1.0 agents (see docs/api/a2a.md)"),
        (name = "mcp", description = "The tenant's agents, workflows, runs and knowledge bases as an MCP server (see docs/api/mcp.md)"),
        (name = "knowledge-bases", description = "The tenant's knowledge bases: documents and semantic search"),
        (name = "models", description = "The tenant's MindsDB models"),
        (name = "data-sources", description = "The tenant's databases, registered in MindsDB"),
    ),
)]
struct ApiDoc;

/// A GraphQL request (async-graphql's, as `graphql::post` reads it).
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: the body is async-graphql's request")]
struct GraphQlRequest {
    /// The document: a query or a mutation.
    query: String,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    variables: Option<serde_json::Value>,
}

/// A GraphQL answer (async-graphql's): `data`, and `errors` each with `extensions.code`.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only: the body is async-graphql's response")]
struct GraphQlResponse {
    /// Absent when the request could not be executed at all.
    data: Option<serde_json::Value>,
    errors: Option<Vec<GraphQlError>>,
}

/// One error of a GraphQL answer.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "schema only, see GraphQlResponse")]
struct GraphQlError {
    message: String,
    #[schema(value_type = Option<Vec<Object>>)]
    locations: Option<serde_json::Value>,
    #[schema(value_type = Option<Vec<Object>>)]
    path: Option<serde_json::Value>,
    /// `code`: the platform's error code, e.g. `permission_denied`.
    #[schema(value_type = Option<Object>)]
    extensions: Option<serde_json::Value>,
}

/// `GET /graphql` (handler `graphql::get`): described here, its bodies being async-graphql's.
#[utoipa::path(get, path = "/graphql", tag = "graphql",
    description = "A GraphQL query in the URL (`query`, `operationName`, `variables` as JSON), or, as a WebSocket upgrade with the `graphql-transport-ws` subprotocol, the subscription socket (101). Every field needs its REST route's permission.",
    params(("query" = Option<String>, Query, description = "The GraphQL document"),
        ("operationName" = Option<String>, Query, description = "The operation to run"),
        ("variables" = Option<String>, Query, description = "The variables as a JSON object")),
    responses(
        (status = 200, description = "The answer; field errors are in `errors`",
            content((GraphQlResponse = "application/graphql-response+json"), (GraphQlResponse = "application/json"))),
        (status = 101, description = "Switched to the graphql-transport-ws subscription socket")))]
#[allow(dead_code, reason = "the operation's description; the handler is graphql::get")]
fn graphql_get() {}

/// `POST /graphql` (handler `graphql::post`): described here, its bodies being async-graphql's.
#[utoipa::path(post, path = "/graphql", tag = "graphql",
    description = "A GraphQL query or mutation (or a batch: an array of them) as JSON. Every field needs its REST route's permission; mutations count against their REST route's rate limit.",
    request_body = GraphQlRequest,
    responses((status = 200, description = "The answer (an array for a batch); field errors are in `errors`",
        content((GraphQlResponse = "application/graphql-response+json"), (GraphQlResponse = "application/json")))))]
#[allow(dead_code, reason = "the operation's description; the handler is graphql::post")]
fn graphql_post() {}

/// Adds what every operation shares: the bearer scheme and the error answers.
struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT of the platform's identity provider; its tenant is the caller's."))
                    .build(),
            ),
        );
        for error in ERRORS {
            for flavour in [Flavour::Rest, Flavour::OpenAi, Flavour::GraphQl] {
                let mut response = ResponseBuilder::new().description(error.description);
                if error.status != "408" {
                    let content =
                        || ContentBuilder::new().schema(Some(Ref::from_schema_name(error.schema(flavour)))).build();
                    response = response.content("application/json", content());
                    // async-graphql answers in the GraphQL-over-HTTP media type unless asked for JSON.
                    if flavour == Flavour::GraphQl && error.handler {
                        response = response.content("application/graphql-response+json", content());
                    }
                }
                components.responses.insert(error.name(flavour), RefOr::T(response.build()));
            }
        }
        for (path, item) in &mut doc.paths.paths {
            let flavour = if path.starts_with("/v1/") {
                Flavour::OpenAi
            } else if path == "/graphql" {
                Flavour::GraphQl
            } else {
                Flavour::Rest
            };
            let has_id = path.contains('{');
            let operations = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.patch, true),
                (&mut item.delete, true),
            ];
            for (operation, write) in operations {
                if let Some(operation) = operation.as_mut() {
                    add_errors(operation, flavour, has_id, write);
                }
            }
            if crate::accounts::PUBLIC.iter().any(|(_, p)| p == path) {
                for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                    public_operation(operation);
                }
            }
        }
    }
}

/// Whose error body a route's handler answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    /// `ErrorBody`.
    Rest,
    /// `OpenAiErrorBody`: OpenAI's `error` object as well.
    OpenAi,
    /// `GraphQlResponse`: `errors` with `extensions.code`.
    GraphQl,
}

/// An error answer the operations share.
struct SharedError {
    status: &'static str,
    /// The name of its `components.responses` entry.
    name: &'static str,
    description: &'static str,
    /// Whether the handler's own body answers it (else the token, role and dependency checks
    /// before the handler do, with `ErrorBody` on every route).
    handler: bool,
}

impl SharedError {
    fn name(&self, flavour: Flavour) -> String {
        match (flavour, self.handler) {
            (Flavour::OpenAi, true) => format!("OpenAi{}", self.name),
            (Flavour::GraphQl, true) => format!("GraphQl{}", self.name),
            _ => self.name.to_owned(),
        }
    }

    fn schema(&self, flavour: Flavour) -> &'static str {
        match (flavour, self.handler) {
            (Flavour::OpenAi, true) => "OpenAiErrorBody",
            (Flavour::GraphQl, true) => "GraphQlResponse",
            _ => "ErrorBody",
        }
    }
}

const fn error(status: &'static str, name: &'static str, description: &'static str, handler: bool) -> SharedError {
    SharedError { status, name, description, handler }
}

const ERRORS: &[SharedError] = &[
    error("400", "InvalidArgument", "The request is invalid (`invalid_argument`); the message names the field", true),
    error("401", "Unauthenticated", "No valid token (`unauthenticated`)", false),
    error("403", "PermissionDenied", "The caller's roles do not allow the operation (`permission_denied`)", false),
    error("404", "NotFound", "No such object, or another tenant's or user's (`not_found`)", true),
    error("408", "RequestTimeout", "The request took longer than the gateway's deadline (empty body)", false),
    error(
        "409",
        "Conflict",
        "A stale version (`aborted`), an existing name (`already_exists`) or a state that does not allow it (`failed_precondition`)",
        true,
    ),
    error("413", "PayloadTooLarge", "The request body is too large (`payload_too_large`)", true),
    error("429", "RateLimited", "Over a rate limit (`resource_exhausted`); `Retry-After` says when to retry", true),
    error("500", "Internal", "An unexpected failure (`internal`); details are logged, never returned", true),
    error("501", "Unimplemented", "Not implemented by this deployment (`unimplemented`)", true),
    error("503", "Unavailable", "A dependency is unavailable (`unavailable`); retrying may help", false),
    error("504", "DeadlineExceeded", "An upstream service did not answer in time (`deadline_exceeded`)", true),
];

/// The shared error answers of one operation, those it does not document itself.
fn add_errors(operation: &mut Operation, flavour: Flavour, has_id: bool, write: bool) {
    let has_body = operation.request_body.is_some();
    for error in ERRORS {
        let applies = match error.status {
            // A write may name another object in its body (a skill, the desktop of a save).
            "404" => has_id || write,
            "409" => write,
            "413" => has_body,
            _ => true,
        };
        if applies && !operation.responses.responses.contains_key(error.status) {
            let reference = Ref::new(format!("#/components/responses/{}", error.name(flavour)));
            operation.responses.responses.insert(error.status.to_owned(), RefOr::Ref(reference));
        }
    }
    if operation.security.is_none() {
        operation.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    }
}

/// A public (sign-in) operation: no token, so no token or role refusal; sign-in refuses a wrong
/// password with 401 (documented by its operation) and counts attempts (429).
fn public_operation(operation: &mut Operation) {
    operation.security = Some(Vec::new());
    operation.responses.responses.remove("403");
    if operation.operation_id.as_deref() != Some("login") {
        operation.responses.responses.remove("401");
    }
    if operation.request_body.is_none() {
        // Reads of public documents: nothing to name, nothing to conflict with, no rate limit.
        for status in ["404", "409", "429"] {
            operation.responses.responses.remove(status);
        }
    }
}

/// The gateway's OpenAPI document.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as pretty JSON with a final newline: the bytes `/openapi.json` serves and
/// `docs/api/openapi.json` holds.
pub fn document_json() -> String {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        // Serialising the document's own types cannot fail; an empty object would fail the
        // document tests loudly rather than take the gateway down.
        let mut json = document().to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
        json.push('\n');
        json
    });
    JSON.clone()
}

/// The unauthenticated route serving the document ([`PATH`]), merged next to the authenticated
/// router by [`crate::run`], as the server skeleton merges its probes.
pub(crate) fn public_routes() -> Router {
    Router::new().route(PATH, get(serve))
}

async fn serve() -> Response {
    ([(http::header::CONTENT_TYPE, "application/json")], document_json()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every (method, path) of the route table is an operation of the document, and the
    /// document has no other: a route added without documentation fails here.
    #[test]
    fn the_document_covers_every_route() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            let methods = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
                ("HEAD", item.head.is_some()),
                ("OPTIONS", item.options.is_some()),
                ("TRACE", item.trace.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    documented.insert((method.to_owned(), path.clone()));
                }
            }
        }
        let routes: BTreeSet<_> = crate::route_permissions()
            .iter()
            .map(|r| (r.method, r.path))
            .chain(crate::accounts::PUBLIC.iter().copied())
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .collect();
        let undocumented: Vec<_> = routes.difference(&documented).collect();
        assert!(undocumented.is_empty(), "routes without an OpenAPI operation: {undocumented:?}");
        let unrouted: Vec<_> = documented.difference(&routes).collect();
        assert!(unrouted.is_empty(), "OpenAPI operations of no route: {unrouted:?}");
    }

    /// Every operation needs the bearer token and names its error body; every schema reference
    /// resolves.
    #[test]
    fn every_operation_is_secured_and_every_reference_resolves() {
        let json: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        assert_eq!(json["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        let schemas = json["components"]["schemas"].as_object().unwrap();
        let text = json.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "unresolved schema reference {name}");
        }
        let responses = json["components"]["responses"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/responses/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(responses.contains_key(name), "unresolved response reference {name}");
        }
        let mut operation_ids = std::collections::BTreeSet::new();
        for (path, item) in json["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                assert!(operation_ids.insert(id.clone()), "operationId {id} is not unique ({method} {path})");
                if crate::accounts::PUBLIC.iter().any(|(_, p)| p == path) {
                    // Sign-in: no token asked, none refused.
                    assert_eq!(operation["security"], serde_json::json!([]), "{method} {path}");
                    assert!(operation["responses"].get("403").is_none(), "{method} {path}");
                    continue;
                }
                assert_eq!(operation["security"], serde_json::json!([{"bearer": []}]), "{method} {path}");
                assert_eq!(
                    operation["responses"]["401"]["$ref"], "#/components/responses/Unauthenticated",
                    "{method} {path}"
                );
            }
        }
    }

    /// The checked-in export (`docs/api/openapi.json`, written by `getlood openapi`) is the
    /// document the gateway serves.
    #[test]
    fn the_checked_in_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == document_json(),
            "docs/api/openapi.json is stale: run `cargo run --bin getlood -- openapi > docs/api/openapi.json` \
             (then `make api-types` for the TypeScript types)"
        );
    }
}
