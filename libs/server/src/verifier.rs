//! The token verifier of a service, with the identity provider's JWKS kept fresh.

use std::sync::Arc;
use std::time::Duration;

use getlood_auth::{AuthConfig, Verifier};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Result;

/// Shortest time between two JWKS fetches triggered by unknown `kid`s: a flood of tokens with
/// made-up key ids costs the identity provider at most one request a second per replica.
const UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(1);

/// First wait before fetching a JWKS document again after a failed fetch; it doubles up to
/// `jwks_refresh`. A service started before its issuer (the gateway's built-in accounts in
/// `getlood dev`, or a pod started before the gateway's) gets the keys within seconds of the
/// issuer coming up instead of a whole refresh period later.
const FAILED_FETCH_RETRY: Duration = Duration::from_secs(1);

/// Builds the verifier for `auth`; with a `jwks_url`, fetches it now (a failure is logged and
/// retried after 1 s, 2 s, 4 s... up to `jwks_refresh`; RS/ES tokens are refused meanwhile),
/// again every `jwks_refresh`, and as soon as a token names an unknown `kid` (a key rotation),
/// until `shutdown`.
pub async fn verifier(auth: &AuthConfig, tracker: &TaskTracker, shutdown: CancellationToken) -> Result<Arc<Verifier>> {
    let verifier = Arc::new(Verifier::new(auth)?);
    let Some(url) = auth.jwks_url.clone() else { return Ok(verifier) };
    let http = jwks_http_client(auth)?;
    let mut fetched = refresh(&http, &url, &verifier).await;
    let period = auth.jwks_refresh;
    let task_verifier = verifier.clone();
    tracker.spawn(async move {
        let mut retry = FAILED_FETCH_RETRY;
        loop {
            let wait = if fetched {
                retry = FAILED_FETCH_RETRY;
                period
            } else {
                let wait = retry.min(period);
                retry = (retry * 2).min(period);
                wait
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => fetched = refresh(&http, &url, &task_verifier).await,
                () = task_verifier.unknown_kid_seen() => {
                    tracing::debug!(url, "unknown key id seen, fetching the jwks again");
                    fetched = refresh(&http, &url, &task_verifier).await;
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(UNKNOWN_KID_COOLDOWN) => {}
                    }
                }
            }
        }
    });
    Ok(verifier)
}

/// The HTTP client of the JWKS fetch: 5 s per request, TLS trusting the system roots or, with
/// `auth.jwks_ca_file`, only that file's CAs.
pub fn jwks_http_client(auth: &AuthConfig) -> Result<reqwest::Client> {
    getlood_tls::http_client_builder(auth.jwks_ca_file.as_deref())?
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| crate::Error::Serve(format!("jwks http client: {}", getlood_common::error_chain(&e))))
}

/// Fetches the JWKS document at `url` with `http` and loads its keys into `verifier`, returning
/// how many it holds. On failure the previous keys stay.
pub async fn fetch_jwks(http: &reqwest::Client, url: &str, verifier: &Verifier) -> Result<usize> {
    let jwks_error = |message: String| crate::Error::Jwks { url: url.to_owned(), message };
    let body = async { http.get(url).send().await?.error_for_status()?.text().await }
        .await
        .map_err(|e| jwks_error(getlood_common::error_chain(&e)))?;
    verifier.load_jwks(&body).map_err(|e| jwks_error(e.to_string()))
}

/// Fetches the document into `verifier`; whether it succeeded.
async fn refresh(http: &reqwest::Client, url: &str, verifier: &Verifier) -> bool {
    match fetch_jwks(http, url, verifier).await {
        Ok(keys) => {
            tracing::debug!(url, keys, "jwks refreshed");
            true
        }
        Err(err) => {
            tracing::warn!(url, error = %err, "jwks refresh failed, keeping the previous keys");
            false
        }
    }
}
