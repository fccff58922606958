//! The token verifier of a service, with the identity provider's JWKS kept fresh.

use std::sync::Arc;
use std::time::Duration;

use getlood_auth::{AuthConfig, Verifier};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Result;

/// Builds the verifier for `auth`; with a `jwks_url`, fetches it now (a failure is logged and
/// retried, RS/ES tokens are refused meanwhile) and again every `jwks_refresh` until `shutdown`.
pub async fn verifier(auth: &AuthConfig, tracker: &TaskTracker, shutdown: CancellationToken) -> Result<Arc<Verifier>> {
    let verifier = Arc::new(Verifier::new(auth)?);
    let Some(url) = auth.jwks_url.clone() else { return Ok(verifier) };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| crate::Error::Serve(format!("jwks http client: {e}")))?;
    refresh(&http, &url, &verifier).await;
    let period = auth.jwks_refresh;
    let task_verifier = verifier.clone();
    tracker.spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => refresh(&http, &url, &task_verifier).await,
            }
        }
    });
    Ok(verifier)
}

async fn refresh(http: &reqwest::Client, url: &str, verifier: &Verifier) {
    let body = async { http.get(url).send().await?.error_for_status()?.text().await }.await;
    match body.map_err(|e| e.to_string()).and_then(|doc| verifier.load_jwks(&doc).map_err(|e| e.to_string())) {
        Ok(keys) => tracing::debug!(url, keys, "jwks refreshed"),
        Err(err) => tracing::warn!(url, error = %err, "jwks refresh failed, keeping the previous keys"),
    }
}
