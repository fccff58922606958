//! Generated protobuf messages and tonic stubs of the GETLOOD v1 gRPC contracts and events.
//!
//! The sources live in `proto/` at the workspace root; `build.rs` compiles them at build time.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Encoded `FileDescriptorSet` of every contract, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("getlood_descriptor");

/// The `getlood.*.v1` packages.
pub mod getlood {
    /// Messages shared by every service.
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("getlood.common.v1");
        }
    }
    /// Versioned event envelope and payloads carried on NATS.
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("getlood.events.v1");
        }
    }
    /// Public gRPC mirror of the gateway's REST API.
    pub mod gateway {
        pub mod v1 {
            tonic::include_proto!("getlood.gateway.v1");
        }
    }
    /// Agent registry: agents, skills, QueryAgent.
    pub mod agent_registry {
        pub mod v1 {
            tonic::include_proto!("getlood.agent_registry.v1");
        }
    }
    /// The 5-stage chat pipeline.
    pub mod pipeline {
        pub mod v1 {
            tonic::include_proto!("getlood.pipeline.v1");
        }
    }
    /// Desktops, windows and focus stacks.
    pub mod desktop_state {
        pub mod v1 {
            tonic::include_proto!("getlood.desktop_state.v1");
        }
    }
    /// Workflow definitions, versions and runs.
    pub mod workflow {
        pub mod v1 {
            tonic::include_proto!("getlood.workflow.v1");
        }
    }
    /// Resumable event subscriptions and knowledge-base memory search.
    pub mod event_dispatcher {
        pub mod v1 {
            tonic::include_proto!("getlood.event_dispatcher.v1");
        }
    }
}

pub use getlood::{agent_registry, common, desktop_state, event_dispatcher, events, gateway, pipeline, workflow};
