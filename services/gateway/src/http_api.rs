//! The gateway's HTTP surface and its layer stack.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::require_auth;
use crate::caller::Caller;
use crate::{
    AppState, a2a, accounts, audit, audit_api, chat, data_source_api, desktop_api, graphql, kb_api, mcp, memory_api,
    models_api, rate_limit, registry_api, sse, workflow_api, ws,
};

/// The only routes of the gateway a request reaches without a verified token. They are not in
/// [`router`]: the server skeleton (`getlood_server::serve`) adds them outside it, so within
/// the router *every* route, WebSocket included, runs behind `require_auth`. A route that must
/// be public goes to the skeleton and to this list, never around `require_auth`.
#[cfg_attr(not(test), allow(dead_code, reason = "the rule, for reviewers; checked by the tests"))]
/// `/metrics` and the detailed readiness report are on the admin port, which the Ingress never
/// routes. `/openapi.json` (the API's description, no data) is merged next to this router by
/// `crate::run` the same way (`openapi::public_routes`). Sign-in needs no token by nature: the
/// built-in accounts' routes (`accounts::PUBLIC`: the sign-in mode, sign-up, sign-in and the
/// JWKS) are merged by [`router`] outside `require_auth`, rate-limited per client address and
/// email, and audited. Outside all of them, the web app's files (`app.web_dir`) answer what no
/// route matched, except API paths (`web::WebApp`).
pub(crate) const PUBLIC_ROUTES: &[&str] = &[
    "/livez",
    "/readyz",
    crate::openapi::PATH,
    accounts::CONFIG_PATH,
    accounts::SIGNUP_PATH,
    accounts::LOGIN_PATH,
    accounts::JWKS_PATH,
];

/// The gateway's router: authenticated API routes under `/api/v1` and `/v1` and the desktop
/// and events WebSockets under `/ws`, behind the shared layer stack; the gRPC services as
/// gRPC-Web at `/<package.Service>/<Method>` (authenticated by their own per-method check,
/// `permissions::grpc_permissions`); CORS for `app.cors_allowed_origins` outside it all.
/// Liveness and a bare readiness status are
/// added by the server skeleton, unauthenticated ([`PUBLIC_ROUTES`]); metrics are on the admin port.
///
/// Plain routes run under `http_request_timeout`; the chat route (SSE or a long non-streaming
/// answer) is kept out of that layer and bounded by its own idle and total deadlines instead,
/// so a long answer is never cut at 30 s.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let plain = Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/auth/users", post(accounts::create_user))
        .route("/v1/models", get(registry_api::list_models))
        .route("/api/v1/agents", get(registry_api::list_agents).post(registry_api::create_agent))
        .route(
            "/api/v1/agents/{id}",
            get(registry_api::get_agent).put(registry_api::update_agent).delete(registry_api::delete_agent),
        )
        .route("/api/v1/memory/search", get(memory_api::search))
        .route("/a2a/{agent}/.well-known/agent-card.json", get(a2a::card))
        .route("/api/v1/audit", get(audit_api::list))
        .route("/api/v1/knowledge-bases", get(kb_api::list).post(kb_api::create))
        .route("/api/v1/knowledge-bases/{name}", get(kb_api::get).delete(kb_api::delete))
        .route("/api/v1/knowledge-bases/{name}/documents", post(kb_api::insert_documents))
        .route("/api/v1/knowledge-bases/{name}/search", get(kb_api::search))
        .route("/api/v1/models", get(models_api::list))
        .route("/api/v1/models/{name}/ask", post(models_api::ask))
        .route("/api/v1/data-sources", get(data_source_api::list).post(data_source_api::create))
        .route("/api/v1/data-sources/{name}", get(data_source_api::get).delete(data_source_api::delete))
        .route("/api/v1/data-sources/{name}/test", post(data_source_api::test))
        .route("/api/v1/data-sources/{name}/tables", get(data_source_api::tables))
        .route("/api/v1/data-sources/{name}/tables/{table}", get(data_source_api::table))
        .route("/api/v1/data-sources/{name}/tables/{table}/rows", get(data_source_api::rows))
        .route("/api/v1/skills", get(registry_api::list_skills).post(registry_api::create_skill))
        .route("/api/v1/skills/{name}", get(registry_api::get_skill).delete(registry_api::delete_skill))
        .route("/api/v1/desktops", get(desktop_api::list_desktops).post(desktop_api::create_desktop))
        .route("/api/v1/desktops/{id}", get(desktop_api::read_desktop).delete(desktop_api::delete_desktop))
        .route("/api/v1/desktops/{id}/windows", get(desktop_api::list_windows).post(desktop_api::open_window))
        .route("/api/v1/desktops/{id}/save", post(desktop_api::save_desktop))
        .route("/api/v1/desktops/{id}/restore", post(desktop_api::restore_desktop))
        .route(
            "/api/v1/windows/{id}",
            get(desktop_api::get_window).patch(desktop_api::move_window).delete(desktop_api::close_window),
        )
        .route("/api/v1/windows/{id}/{action}", post(desktop_api::window_action))
        // The seed's useDesktopBridge routes.
        .route("/api/v1/desktop/state", post(desktop_api::save_state))
        .route("/api/v1/desktop/state/{id}", get(desktop_api::read_desktop_state))
        .route("/api/v1/workflows", get(workflow_api::list_workflows).post(workflow_api::create_workflow))
        .route("/api/v1/workflows/validate", post(workflow_api::validate_workflow))
        .route(
            "/api/v1/workflows/{id}",
            get(workflow_api::get_workflow).put(workflow_api::update_workflow).delete(workflow_api::delete_workflow),
        )
        .route("/api/v1/workflows/{id}/versions", get(workflow_api::list_versions))
        .route("/api/v1/workflows/{id}/execute", post(workflow_api::execute_workflow))
        .route("/api/v1/workflows/{id}/runs", get(workflow_api::list_workflow_runs))
        .route(
            "/api/v1/workflows/{id}/schedule",
            post(workflow_api::schedule_workflow).delete(workflow_api::unschedule_workflow),
        )
        .route("/api/v1/workflows/{id}/jobs/history", get(workflow_api::job_history))
        // Static `runs` wins over `{id}` in the router, so run routes and workflow ids never clash.
        .route("/api/v1/workflows/runs", get(workflow_api::list_runs))
        .route("/api/v1/workflows/runs/{run_id}", get(workflow_api::get_run))
        .route("/api/v1/workflows/runs/{run_id}/cancel", post(workflow_api::cancel_run))
        .route("/api/v1/workflows/runs/{run_id}/approve", post(workflow_api::approve_node))
        // Plain requests only: the deadline answers 408 rather than holding a connection.
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.http_request_timeout))
        // Per-user and per-tenant budgets of writes and expensive reads, by route class; a
        // route layer, so it runs after auth (the router's route_layer below) and sees the route.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_routes));
    let streaming = Router::new()
        .route(
            "/v1/chat/completions",
            // Limits count after auth (route layers run inside the router's route_layer below),
            // and the headers land on every response of the route, SSE included.
            post(chat::chat_completions)
                .route_layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_chat)),
        )
        // Event streams last as long as the client stays; they end on shutdown instead.
        .route("/api/v1/events", get(sse::events))
        .route("/api/v1/workflows/runs/{run_id}/events", get(workflow_api::run_events))
        // Sockets are long-lived. A browser cannot set the Authorization header on a WebSocket:
        // `require_auth` takes its token from the `bearer.<jwt>` subprotocol entry instead.
        .route("/ws/desktop/{id}", get(ws::desktop_socket))
        // The events socket at a plain path (the upgrade of `/api/v1/events` serves it too).
        .route("/ws/events", get(sse::events_socket))
        // Queries, mutations (POST) and the subscription socket (GET upgrade): one endpoint, out
        // of the plain deadline layer because of the socket; plain requests keep the same
        // deadline inside the handler. Per-field permissions and rate limits: `graphql::guard`.
        .route("/graphql", get(graphql::get).post(graphql::post).layer(axum::Extension(graphql::schema(&state))))
        // MCP over streamable HTTP: a tool call may stream an agent's answer as progress
        // notifications (SSE) and GET holds a session's stream, so it is out of the plain
        // deadline layer; each tool checks its own permission and rate-limit class (`mcp`).
        // A2A's JSON-RPC endpoint of each agent: a blocking SendMessage lasts a whole turn and
        // the streaming methods answer SSE, so it is out of the plain deadline layer; messages
        // spend the chat rate-limit class and the tenant's turn cap themselves (`a2a`).
        .route("/a2a/{agent}", post(a2a::rpc))
        .route("/mcp", get(mcp::get).post(mcp::post).delete(mcp::delete).layer(axum::Extension(mcp::endpoint(&state))));
    // Every route of this router is authenticated; the public ones are `PUBLIC_ROUTES`, served
    // by the skeleton outside it. `route_layer`: an unknown path stays a plain 404 (fallback).
    // The role check runs inside `require_auth` (it needs the principal) and knows the matched
    // route; its table is `permissions::route_permissions`.
    let api = plain
        .merge(streaming)
        .route_layer(axum::middleware::from_fn(crate::permissions::require_permission))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_auth))
        // Outside auth, so the audit log sees its 401s and the permission check's 403s as well
        // as every handler's answer; still a route layer, so the matched route is known.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), audit::record));

    // gRPC-Web for browsers: the gRPC port's services (same tables, same forwarding), at
    // `/<package.Service>/<Method>`, each authenticated by its own `authorize`, so they sit
    // outside `require_auth` like the gRPC port's. Plain gRPC over HTTP/2 passes through too.
    let grpc_web = tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebLayer::new())
        .service(crate::grpc::routes(state.clone()).into_axum_router());
    // The public sign-in routes, outside `require_auth` (see `PUBLIC_ROUTES`).
    let api = api.merge(accounts::public_routes(&state));
    // What no route matched: the web app's files when configured, else a JSON 404. API paths
    // stay JSON 404s either way.
    let web = settings
        .web_dir
        .as_deref()
        .and_then(|dir| crate::web::WebApp::new(dir, settings.oidc.as_ref().map(|o| o.token_endpoint.as_str())));
    let api = match web {
        Some(web) => api.fallback(move |req: Request| web.clone().serve(req)),
        None => api.fallback(not_found),
    };
    let mut app = api.with_state(state);
    for service in crate::permissions::GRPC_SERVICE_NAMES {
        app = app.route_service(&format!("/{service}/{{*method}}"), grpc_web.clone());
    }
    let app = app.layer(
        // Outermost first.
        ServiceBuilder::new()
            // Tokens must never reach a log line, whatever layer logs headers later.
            .layer(SetSensitiveRequestHeadersLayer::new([http::header::AUTHORIZATION]))
            // The id exists before the span is made, so every log line of the request carries it.
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http().make_span_with(make_span))
            // Echo the id back so a client can quote it in a support request.
            .layer(PropagateRequestIdLayer::x_request_id())
            // The extractors enforce it while buffering, and `ApiJson` turns the refusal into a
            // JSON 413 instead of axum's plain-text one.
            .layer(axum::extract::DefaultBodyLimit::max(settings.max_body_bytes)),
    );
    // Outside everything else, so a preflight (no token) is answered before authentication.
    match crate::cors::layer(&settings.cors_allowed_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

fn make_span(req: &Request) -> tracing::Span {
    let request_id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let span = tracing::info_span!(
        "gateway.http",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %request_id,
        tenant = tracing::field::Empty,
    );
    getlood_telemetry::set_parent_from_headers(&span, req.headers());
    span
}

/// The caller as the gateway sees it, from the verified token only.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Me {
    /// The tenant of the token.
    tenant: String,
    /// The user id (`sub`).
    user: String,
    /// The roles the token grants (`admin`, `builder`, `operator`, `member`, `viewer`).
    roles: Vec<String>,
    /// The token's expiry, seconds since the epoch.
    expires_at: u64,
}

/// `GET /api/v1/me`.
#[utoipa::path(get, path = "/api/v1/me", tag = "profile",
    responses((status = 200, description = "The caller, from the verified token", body = Me)))]
pub(crate) async fn me(caller: Caller) -> Json<Me> {
    let principal = caller.into_principal();
    Json(Me {
        tenant: principal.tenant.to_string(),
        user: principal.user,
        roles: principal.roles,
        expires_at: principal.expires_at,
    })
}

async fn not_found(req: Request) -> axum::response::Response {
    crate::web::not_found(&req)
}

#[cfg(test)]
mod tests {
    use super::PUBLIC_ROUTES;

    /// The public routes are the skeleton's probes, the OpenAPI document (which describes the
    /// API and holds no data) and sign-in (which a caller without a token needs), never another
    /// API path: an API route is public only if it is taken out of this router, which is
    /// reviewed here.
    #[test]
    fn public_routes_are_only_the_skeletons_and_sign_in() {
        assert_eq!(
            PUBLIC_ROUTES,
            [
                "/livez",
                "/readyz",
                "/openapi.json",
                "/api/v1/auth/config",
                "/api/v1/auth/signup",
                "/api/v1/auth/login",
                "/.well-known/jwks.json"
            ]
        );
        for route in PUBLIC_ROUTES {
            let sign_in = route.starts_with("/api/v1/auth/") || *route == "/.well-known/jwks.json";
            assert!(
                sign_in || !(route.starts_with("/api/") || route.starts_with("/v1/") || route.starts_with("/ws/")),
                "{route}"
            );
        }
        let public: Vec<&str> = crate::accounts::PUBLIC.iter().map(|(_, p)| *p).collect();
        assert!(public.iter().all(|p| PUBLIC_ROUTES.contains(p)), "{public:?}");
        // None of them is in the authenticated router's permission table.
        for (method, path) in crate::accounts::PUBLIC {
            assert!(crate::permission_for(&method.parse().unwrap(), path).is_none(), "{method} {path}");
        }
    }
}
