//! `getlood-workflow`: the workflow service binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    getlood_server::cli::main(
        getlood_workflow::SPEC,
        getlood_workflow::default_config(),
        Some(&getlood_workflow::MIGRATOR),
        getlood_workflow::run,
    )
    .await
}
