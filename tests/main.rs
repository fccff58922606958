//! The platform's integration tests: services started in-process on port 0 by the test kit,
//! against the machine's real Postgres, Redis and NATS.

mod agent_registry;
mod auth;
mod desktop_state;
mod desktop_ws;
mod e2e;
mod events;
mod gateway_chat;
mod pipeline;
mod platform;
mod rate_limit;
mod trace;
mod workflow;
