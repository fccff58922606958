//! `nats.url` may name a cluster's servers comma-separated (the configuration check accepts it,
//! the chart and the drill harness set it): the services' client must take them in turn, not
//! parse the whole list as one URL and refuse the start.

use std::time::{Duration, Instant};

use getlood_server::{Infra, Needs, NoSettings, ServiceConfig};

fn nats_url() -> String {
    std::env::var("GETLOOD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

#[test]
fn a_cluster_url_lists_every_server() {
    assert_eq!(
        getlood_server::nats_servers("nats://a:4222, nats://b:4222,,nats://c:4222"),
        ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    );
    assert_eq!(getlood_server::nats_servers("nats://a:4222"), ["nats://a:4222"]);
}

#[tokio::test]
async fn a_service_connects_through_a_comma_separated_server_list() -> Result<(), Box<dyn std::error::Error>> {
    // A server that is down first, then the machine's: the client must get past the first.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead_url = format!("nats://{}", dead.local_addr()?);
    drop(dead);
    let mut config = ServiceConfig::<NoSettings>::with_ports(0, 0, "nats_cluster_url");
    config.nats.url = format!("{dead_url},{}", nats_url());
    let infra = Infra::connect(Needs { nats: true, ..Needs::default() }, &config, "nats-cluster-url").await?;
    let nats = infra.nats.ok_or("no nats client")?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while nats.connection_state() != async_nats::connection::State::Connected {
        assert!(Instant::now() < deadline, "not connected through {} after 15 s", config.nats.url);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut sub = nats.subscribe("getlood_test.cluster_url").await?;
    nats.publish("getlood_test.cluster_url", "hello".into()).await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut sub)).await?;
    assert_eq!(msg.ok_or("subscription ended")?.payload.as_ref(), b"hello");
    Ok(())
}
