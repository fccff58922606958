//! `getlood-event-dispatcher`: the event-dispatcher service binary.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    getlood_server::cli::main(
        getlood_event_dispatcher::SPEC,
        getlood_event_dispatcher::default_config(),
        None,
        getlood_event_dispatcher::run,
    )
    .await
}
