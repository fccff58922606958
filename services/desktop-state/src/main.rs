//! `getlood-desktop-state`: the desktop-state service binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    getlood_server::cli::main(
        getlood_desktop_state::SPEC,
        getlood_desktop_state::default_config(),
        Some(&getlood_desktop_state::MIGRATOR),
        getlood_desktop_state::run,
    )
    .await
}
