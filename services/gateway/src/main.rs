//! `getlood-gateway`: the gateway service binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    getlood_server::cli::main(getlood_gateway::SPEC, getlood_gateway::default_config(), None, getlood_gateway::run)
        .await
}
