//! The platform's integration tests: services started in-process on port 0 by the test kit,
//! against the machine's real Postgres, Redis and NATS.

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]
// Helpers of test code: a failed unwrap is the test failing, with its location.
#![allow(clippy::unwrap_used)]

mod agent_registry;
mod auth;
mod desktop_state;
mod desktop_ws;
mod e2e;
mod events;
mod gateway_chat;
mod gateway_workflows;
mod jwks;
mod paging;
mod pipeline;
mod platform;
mod rate_limit;
mod trace;
mod workflow;
