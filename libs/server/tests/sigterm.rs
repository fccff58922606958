//! SIGTERM during a slow request lets it complete; new requests are refused afterwards.
//! One test per file: it signals its own process (nextest runs each test in its own process too).

// Test harnesses spawn their servers and clients directly: they end with the test, there is
// no service shutdown to wait for.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use getlood_server::{Listeners, Needs, NoSettings, Runtime, ServiceConfig, ServiceSpec};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_complete() {
    let spec = ServiceSpec { name: "sigterm-test", needs: Needs::default(), ready_without: Needs::default() };
    let config = ServiceConfig::<NoSettings>::with_ports(0, 0, "sigterm_test");
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let listeners = Listeners::bind(loopback, loopback, loopback).await.unwrap();
    let base = format!("http://{}", listeners.http_addr());

    let slow = axum::Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "finished"
        }),
    );
    let shutdown = CancellationToken::new();
    let signal = tokio::spawn(getlood_server::shutdown_signal(shutdown.clone()));
    let runtime = Runtime::build(spec, &config, None, shutdown.clone()).await.unwrap();
    let server = tokio::spawn(runtime.serve(listeners, tonic::service::Routes::default(), slow));

    let http = reqwest::Client::new();
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/slow");
        async move { http.get(url).send().await?.text().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGTERM).unwrap();
    signal.await.unwrap();
    assert!(shutdown.is_cancelled(), "sigterm did not cancel the token");

    // The request that was in flight when SIGTERM arrived completes normally.
    assert_eq!(in_flight.await.unwrap().unwrap(), "finished");
    // The server then exits cleanly, and no longer accepts connections.
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
    assert!(reqwest::Client::new().get(format!("{base}/livez")).send().await.is_err());
}
