//! The platform's integration tests: services started in-process on port 0 by the test kit,
//! against the machine's real Postgres, Redis and NATS.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
// Helpers of test code: a failed unwrap is the test failing, with its location.
#![allow(clippy::unwrap_used)]

/// reqwest is built with `rustls-no-provider` (ring is the one provider, installed by
/// getlood-tls), so a test that builds a `reqwest::Client` before anything installed it panics.
/// The provider is installed when the test binary loads, before any test runs, so no test has
/// to remember it.
#[allow(unsafe_code, reason = "a load-time initializer (.init_array), as the ctor crate makes")]
#[used]
#[unsafe(link_section = ".init_array")]
static INSTALL_CRYPTO_PROVIDER: extern "C" fn() = {
    extern "C" fn install() {
        getlood_tls::install_crypto_provider();
    }
    install
};

mod a2a;
mod accounts;
mod agent_registry;
mod audit;
mod auth;
mod balance;
mod data_sources;
mod desktop_state;
mod desktop_ws;
mod e2e;
mod edge_grpc;
mod egress;
mod events;
mod fair_share;
mod gateway_chat;
mod gateway_workflows;
mod graphql;
mod hostile_rest;
mod jwks;
mod knowledge_bases;
mod local_model;
mod mcp;
mod models;
mod openapi;
mod paging;
mod permissions;
mod pipeline;
mod platform;
mod public_clients;
mod rate_limit;
mod tls;
mod trace;
mod workflow;
mod workflow_agents;
mod workflow_remote;

/// `(status, body)` of a JSON request to `url` with `token` (a body that is not JSON comes back
/// as a string), for the tests that drive the gateway's REST routes.
pub(crate) async fn call_json(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut req = http.request(method.parse()?, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))))
}
