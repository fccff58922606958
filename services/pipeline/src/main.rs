//! `getlood-pipeline`: the pipeline service binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    getlood_server::cli::main(
        getlood_pipeline::SPEC,
        getlood_pipeline::default_config(),
        Some(&getlood_pipeline::MIGRATOR),
        getlood_pipeline::run,
    )
    .await
}
