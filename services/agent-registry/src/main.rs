//! `getlood-agent-registry`: the agent-registry service binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    getlood_server::cli::main(
        getlood_agent_registry::SPEC,
        getlood_agent_registry::default_config(),
        Some(&getlood_agent_registry::MIGRATOR),
        getlood_agent_registry::run,
    )
    .await
}
