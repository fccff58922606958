//! The one place the gateway decides who may call what: every route of [`crate::router`]
//! (method and path pattern) and every method of every gRPC service it serves (its own
//! `GatewayService` and the services re-served at the edge, [`grpc_permissions`]) names the
//! permission it needs (`getlood_auth::Permission`, role table in `getlood_auth`).
//! [`require_permission`] runs right after `require_auth`, `getlood_server::authorize` before a
//! gRPC handler; a route or method missing from its table is refused to everyone.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use getlood_auth::{Permission, Principal};
use getlood_common::{ApiError, ErrorCode};

/// One route of the gateway's router and the permission a caller needs to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePermission {
    /// HTTP method (`HEAD` is checked as `GET`).
    pub method: &'static str,
    /// The route's pattern as written in the router, e.g. `/api/v1/agents/{id}`.
    pub path: &'static str,
    /// What the caller's roles must allow.
    pub permission: Permission,
}

const fn r(method: &'static str, path: &'static str, permission: Permission) -> RoutePermission {
    RoutePermission { method, path, permission }
}

use Permission as P;

/// Every route of the router with its permission. A new route without an entry here is a 403
/// for every caller, and fails the router-coverage test.
const ROUTES: &[RoutePermission] = &[
    r("GET", "/api/v1/me", P::ProfileRead),
    // Built-in accounts: an admin adds users to the tenant (sign-up and sign-in are public,
    // outside this router: `http_api::PUBLIC_ROUTES`).
    r("POST", "/api/v1/auth/users", P::UsersWrite),
    r("GET", "/v1/models", P::AgentsRead),
    r("POST", "/v1/chat/completions", P::Chat),
    r("GET", "/api/v1/agents", P::AgentsRead),
    r("POST", "/api/v1/agents", P::AgentsWrite),
    r("GET", "/api/v1/agents/{id}", P::AgentsRead),
    r("PUT", "/api/v1/agents/{id}", P::AgentsWrite),
    r("DELETE", "/api/v1/agents/{id}", P::AgentsWrite),
    r("GET", "/api/v1/memory/search", P::MemoryRead),
    r("GET", "/api/v1/skills", P::SkillsRead),
    r("POST", "/api/v1/skills", P::SkillsWrite),
    r("GET", "/api/v1/skills/{name}", P::SkillsRead),
    r("DELETE", "/api/v1/skills/{name}", P::SkillsWrite),
    r("GET", "/api/v1/desktops", P::DesktopsRead),
    r("POST", "/api/v1/desktops", P::DesktopsWrite),
    r("GET", "/api/v1/desktops/{id}", P::DesktopsRead),
    r("DELETE", "/api/v1/desktops/{id}", P::DesktopsWrite),
    r("GET", "/api/v1/desktops/{id}/windows", P::DesktopsRead),
    r("POST", "/api/v1/desktops/{id}/windows", P::DesktopsWrite),
    r("POST", "/api/v1/desktops/{id}/save", P::DesktopsWrite),
    r("POST", "/api/v1/desktops/{id}/restore", P::DesktopsWrite),
    r("GET", "/api/v1/windows/{id}", P::DesktopsRead),
    r("PATCH", "/api/v1/windows/{id}", P::DesktopsWrite),
    r("DELETE", "/api/v1/windows/{id}", P::DesktopsWrite),
    r("POST", "/api/v1/windows/{id}/{action}", P::DesktopsWrite),
    r("POST", "/api/v1/desktop/state", P::DesktopsWrite),
    r("GET", "/api/v1/desktop/state/{id}", P::DesktopsRead),
    // Read-only viewers get the state and live events; window commands need desktops.write
    // (checked per command by the socket).
    r("GET", "/ws/desktop/{id}", P::DesktopsRead),
    r("GET", "/api/v1/events", P::EventsRead),
    r("GET", "/ws/events", P::EventsRead),
    r("GET", "/api/v1/workflows", P::WorkflowsRead),
    r("POST", "/api/v1/workflows", P::WorkflowsWrite),
    r("POST", "/api/v1/workflows/validate", P::WorkflowsRead),
    r("GET", "/api/v1/workflows/{id}", P::WorkflowsRead),
    r("PUT", "/api/v1/workflows/{id}", P::WorkflowsWrite),
    r("DELETE", "/api/v1/workflows/{id}", P::WorkflowsWrite),
    r("GET", "/api/v1/workflows/{id}/versions", P::WorkflowsRead),
    r("POST", "/api/v1/workflows/{id}/execute", P::RunsExecute),
    r("GET", "/api/v1/workflows/{id}/runs", P::RunsRead),
    r("POST", "/api/v1/workflows/{id}/schedule", P::SchedulesWrite),
    r("DELETE", "/api/v1/workflows/{id}/schedule", P::SchedulesWrite),
    r("GET", "/api/v1/workflows/{id}/jobs/history", P::RunsRead),
    r("GET", "/api/v1/workflows/runs", P::RunsRead),
    r("GET", "/api/v1/workflows/runs/{run_id}", P::RunsRead),
    r("POST", "/api/v1/workflows/runs/{run_id}/cancel", P::RunsExecute),
    // Also refused to the run's starter unless the workflow service allows self-approval.
    r("POST", "/api/v1/workflows/runs/{run_id}/approve", P::RunsApprove),
    r("GET", "/api/v1/workflows/runs/{run_id}/events", P::RunsRead),
    r("GET", "/api/v1/audit", P::AuditRead),
    r("GET", "/api/v1/knowledge-bases", P::KnowledgeBasesRead),
    r("POST", "/api/v1/knowledge-bases", P::KnowledgeBasesWrite),
    r("GET", "/api/v1/knowledge-bases/{name}", P::KnowledgeBasesRead),
    r("DELETE", "/api/v1/knowledge-bases/{name}", P::KnowledgeBasesWrite),
    r("POST", "/api/v1/knowledge-bases/{name}/documents", P::KnowledgeBasesWrite),
    r("GET", "/api/v1/knowledge-bases/{name}/search", P::KnowledgeBasesRead),
    // The tenant's MindsDB models: read like the agent list, asked like a chat turn.
    r("GET", "/api/v1/models", P::AgentsRead),
    r("POST", "/api/v1/models/{name}/ask", P::Chat),
    r("GET", "/api/v1/data-sources", P::DataSourcesRead),
    r("POST", "/api/v1/data-sources", P::DataSourcesWrite),
    r("GET", "/api/v1/data-sources/{name}", P::DataSourcesRead),
    r("DELETE", "/api/v1/data-sources/{name}", P::DataSourcesWrite),
    // A connection check changes nothing: a read.
    r("POST", "/api/v1/data-sources/{name}/test", P::DataSourcesRead),
    r("GET", "/api/v1/data-sources/{name}/tables", P::DataSourcesRead),
    r("GET", "/api/v1/data-sources/{name}/tables/{table}", P::DataSourcesRead),
    r("GET", "/api/v1/data-sources/{name}/tables/{table}/rows", P::DataSourcesRead),
    // The least that reaches the endpoint; every field and mutation then needs its REST route's
    // permission (`graphql::guard::Need`).
    r("GET", "/graphql", P::ProfileRead),
    r("POST", "/graphql", P::ProfileRead),
    // The least that reaches the MCP endpoint (initialize, listings); every tool and resource
    // then checks its REST route's permission (`mcp::server::ToolKind::permission`).
    r("GET", "/mcp", P::ProfileRead),
    r("POST", "/mcp", P::ProfileRead),
    r("DELETE", "/mcp", P::ProfileRead),
    // A2A: an agent's card is read like the agent; its JSON-RPC endpoint (messages, and the
    // caller's own tasks) is a chat.
    r("GET", "/a2a/{agent}/.well-known/agent-card.json", P::AgentsRead),
    r("POST", "/a2a/{agent}", P::Chat),
];

/// The permission each A2A JSON-RPC method of `POST /a2a/{agent}` needs (the route lets in whoever
/// may chat; each method is then checked against this table). The tasks and their push
/// configs are the caller's own, made by chatting: reading and managing them is `chat` too.
const A2A_METHODS: &[(&str, Permission)] = &[
    ("SendMessage", P::Chat),
    ("SendStreamingMessage", P::Chat),
    ("GetTask", P::Chat),
    ("ListTasks", P::Chat),
    ("CancelTask", P::Chat),
    ("SubscribeToTask", P::Chat),
    ("CreateTaskPushNotificationConfig", P::Chat),
    ("GetTaskPushNotificationConfig", P::Chat),
    ("ListTaskPushNotificationConfigs", P::Chat),
    ("DeleteTaskPushNotificationConfig", P::Chat),
    // Answered "not configured": reading a card is reading the agent.
    ("GetExtendedAgentCard", P::AgentsRead),
];

/// The permission of the A2A method `method`; `None` for a method the server does not have
/// (answered "method not found" to anyone).
pub(crate) fn a2a_method_permission(method: &str) -> Option<Permission> {
    A2A_METHODS.iter().find(|(m, _)| *m == method).map(|(_, p)| *p)
}

/// The permission each `getlood.gateway.v1.GatewayService` method needs.
pub(crate) const GRPC_PERMISSIONS: getlood_server::MethodPermissions =
    &[("WhoAmI", P::ProfileRead), ("ChatCompletion", P::Chat), ("ListModels", P::AgentsRead)];

/// The edge re-serves each internal service under the service's own table
/// (`getlood_auth::methods`): a method is allowed at the edge exactly when the service allows it.
/// `getlood.agent_registry.v1.AgentRegistryService`.
pub(crate) const GRPC_AGENT_REGISTRY_PERMISSIONS: getlood_server::MethodPermissions =
    getlood_auth::methods::AGENT_REGISTRY;

/// `getlood.desktop_state.v1.DesktopStateService`.
pub(crate) const GRPC_DESKTOP_STATE_PERMISSIONS: getlood_server::MethodPermissions =
    getlood_auth::methods::DESKTOP_STATE;

/// `getlood.workflow.v1.WorkflowService`.
pub(crate) const GRPC_WORKFLOW_PERMISSIONS: getlood_server::MethodPermissions = getlood_auth::methods::WORKFLOW;

/// `getlood.event_dispatcher.v1.EventDispatcherService`.
pub(crate) const GRPC_EVENT_DISPATCHER_PERMISSIONS: getlood_server::MethodPermissions =
    getlood_auth::methods::EVENT_DISPATCHER;

/// Every gRPC service of the public gRPC port (fully qualified name) with its method table:
/// the tables `getlood_server::authorize` enforces, exposed so tests can be generated from them.
const GRPC_SERVICES: &[(&str, getlood_server::MethodPermissions)] = &[
    ("getlood.gateway.v1.GatewayService", GRPC_PERMISSIONS),
    ("getlood.agent_registry.v1.AgentRegistryService", GRPC_AGENT_REGISTRY_PERMISSIONS),
    ("getlood.desktop_state.v1.DesktopStateService", GRPC_DESKTOP_STATE_PERMISSIONS),
    ("getlood.workflow.v1.WorkflowService", GRPC_WORKFLOW_PERMISSIONS),
    ("getlood.event_dispatcher.v1.EventDispatcherService", GRPC_EVENT_DISPATCHER_PERMISSIONS),
];

/// Every gRPC service the gateway serves (gRPC port, and gRPC-Web on the HTTP port) with the
/// permission of each of its methods.
pub fn grpc_permissions() -> &'static [(&'static str, getlood_server::MethodPermissions)] {
    GRPC_SERVICES
}

/// The fully qualified names of the served gRPC services, for reflection and health.
pub(crate) const GRPC_SERVICE_NAMES: &[&str] =
    &[GRPC_SERVICES[0].0, GRPC_SERVICES[1].0, GRPC_SERVICES[2].0, GRPC_SERVICES[3].0, GRPC_SERVICES[4].0];

/// Every route of the gateway's router with the permission it needs: the table
/// [`require_permission`] enforces, exposed so tests can be generated from it.
pub fn route_permissions() -> &'static [RoutePermission] {
    ROUTES
}

/// The permission of `method` on the route pattern `path`, if the table has one.
pub fn permission_for(method: &http::Method, path: &str) -> Option<Permission> {
    let method = if method == http::Method::HEAD { "GET" } else { method.as_str() };
    ROUTES.iter().find(|e| e.method == method && e.path == path).map(|e| e.permission)
}

/// Refuses, with a JSON 403 `permission_denied`, a caller whose roles do not allow the route's
/// permission. Runs inside `require_auth` (which stored the [`Principal`]) as a route layer, so
/// the matched route pattern is known.
pub(crate) async fn require_permission(req: Request, next: Next) -> Response {
    let Some(pattern) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        return ApiError::new(ErrorCode::PermissionDenied, "route has no declared permission").into_response();
    };
    let Some(permission) = permission_for(req.method(), &pattern) else {
        tracing::error!(method = %req.method(), route = %pattern, "route without a declared permission refused");
        let message = format!("{} {pattern} has no declared permission", req.method());
        return ApiError::new(ErrorCode::PermissionDenied, message).into_response();
    };
    let roles = req.extensions().get::<Principal>().map(|p| p.roles.as_slice()).unwrap_or_default();
    if let Err(err) = getlood_auth::require(roles, permission) {
        tracing::info!(route = %pattern, permission = %permission, "request refused: permission denied");
        let mut response = err.into_response();
        let reason = format!("needs {permission}");
        response.extensions_mut().insert(crate::audit::Refusal(reason));
        return response;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The `(method, path)` pairs routed by `http_api::router`, read from its source: every
    /// `.route("<path>", <method>(..)[.<method>(..)])` call.
    fn routed() -> BTreeSet<(String, String)> {
        let src = include_str!("http_api.rs");
        let mut out = BTreeSet::new();
        let mut rest = src;
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let Some(path) = rest.trim_start().strip_prefix('"').and_then(|s| s.split('"').next()) else { continue };
            // The method router runs to the parenthesis that closes `.route(`.
            let mut depth = 1usize;
            let mut end = 0;
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let body = &rest[..end];
            // Only top-level method calls count (`route_layer(...)` arguments are skipped).
            let mut depth = 0usize;
            let mut prev = ' ';
            for (i, c) in body.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if depth == 0 && (prev == ',' || prev == '.' || prev.is_whitespace()) {
                    for m in ["get", "post", "put", "patch", "delete"] {
                        if body[i..].starts_with(&format!("{m}(")) {
                            out.insert((m.to_uppercase(), path.to_owned()));
                        }
                    }
                }
                prev = c;
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_has_a_permission_and_every_entry_a_route() {
        let routed = routed();
        assert!(routed.len() > 30, "the source scan found too few routes: {routed:?}");
        let table: BTreeSet<(String, String)> =
            ROUTES.iter().map(|e| (e.method.to_owned(), e.path.to_owned())).collect();
        let missing: Vec<_> = routed.difference(&table).collect();
        assert!(missing.is_empty(), "routes without a permission: {missing:?}");
        let stale: Vec<_> = table.difference(&routed).collect();
        assert!(stale.is_empty(), "permissions of routes that do not exist: {stale:?}");
        assert_eq!(table.len(), ROUTES.len(), "a route is listed twice");
    }

    /// Each gRPC table names exactly the methods of its service in the compiled protos: a
    /// method added to a proto without a permission here would be refused to everyone.
    #[test]
    fn every_grpc_table_names_exactly_the_methods_of_its_service() {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(getlood_proto::FILE_DESCRIPTOR_SET).unwrap();
        for (service, table) in GRPC_SERVICES {
            let (package, name) = service.rsplit_once('.').unwrap();
            let methods: BTreeSet<&str> = set
                .file
                .iter()
                .filter(|f| f.package() == package)
                .flat_map(|f| &f.service)
                .filter(|s| s.name() == name)
                .flat_map(|s| &s.method)
                .map(|m| m.name())
                .collect();
            let listed: BTreeSet<&str> = table.iter().map(|(m, _)| *m).collect();
            assert!(!methods.is_empty(), "{service} is not in the descriptor set");
            assert_eq!(methods, listed, "{service}");
            assert_eq!(listed.len(), table.len(), "a method of {service} is listed twice");
        }
        let names: Vec<&str> = GRPC_SERVICES.iter().map(|(s, _)| *s).collect();
        assert_eq!(GRPC_SERVICE_NAMES, names.as_slice());
        for generated in [
            getlood_proto::gateway::v1::gateway_service_server::SERVICE_NAME,
            getlood_proto::agent_registry::v1::agent_registry_service_server::SERVICE_NAME,
            getlood_proto::desktop_state::v1::desktop_state_service_server::SERVICE_NAME,
            getlood_proto::workflow::v1::workflow_service_server::SERVICE_NAME,
            getlood_proto::event_dispatcher::v1::event_dispatcher_service_server::SERVICE_NAME,
        ] {
            assert!(names.contains(&generated), "{generated}");
        }
    }

    /// The A2A table names exactly the methods `a2a::dispatch` serves, read from its source.
    #[test]
    fn every_a2a_method_has_a_permission_and_every_entry_a_method() {
        let src = include_str!("a2a/mod.rs");
        let body = src.split("async fn dispatch(").nth(1).and_then(|s| s.split("\n}\n").next()).unwrap();
        let served: BTreeSet<&str> = body
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split_once("\" =>").map(|(m, _)| m))
            .collect();
        let table: BTreeSet<&str> = A2A_METHODS.iter().map(|(m, _)| *m).collect();
        assert!(served.len() >= 10, "the source scan found too few methods: {served:?}");
        assert_eq!(served, table);
        assert_eq!(table.len(), A2A_METHODS.len(), "a method is listed twice");
        assert_eq!(a2a_method_permission("ListTaskPushNotificationConfigs"), Some(P::Chat));
        assert_eq!(a2a_method_permission("tasks/get"), None);
    }

    #[test]
    fn head_is_checked_as_get() {
        assert_eq!(permission_for(&http::Method::HEAD, "/api/v1/agents"), Some(P::AgentsRead));
        assert_eq!(permission_for(&http::Method::PATCH, "/api/v1/agents"), None);
    }
}
