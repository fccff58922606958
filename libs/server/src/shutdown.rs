use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM (Kubernetes sends SIGTERM, a terminal Ctrl-C).
///
/// Also returns when `token` is cancelled by someone else, so the task never outlives the process.
pub async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
        () = term => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        () = token.cancelled() => return,
    }
    token.cancel();
}
