//! `getlood_nats_consumer_lag`: how many messages a durable consumer has not yet been given,
//! plus those given but not acknowledged, read from JetStream's own consumer info.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Reports the lag of durable consumer `consumer` of `stream` every `period` until `shutdown`.
/// Read failures are logged at debug level and leave the last value in place.
pub fn spawn_lag_reporter(
    js: async_nats::jetstream::Context,
    stream: String,
    consumer: String,
    period: Duration,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    tracker.spawn(async move {
        let pending = metrics::gauge!("getlood_nats_consumer_lag", "stream" => stream.clone(), "consumer" => consumer.clone(), "kind" => "pending");
        let unacked = metrics::gauge!("getlood_nats_consumer_lag", "stream" => stream.clone(), "consumer" => consumer.clone(), "kind" => "ack_pending");
        loop {
            let info = async {
                let mut c: async_nats::jetstream::consumer::PullConsumer =
                    js.get_consumer_from_stream(&consumer, &stream).await.map_err(|e| e.to_string())?;
                c.info().await.map(|i| (i.num_pending, i.num_ack_pending)).map_err(|e| e.to_string())
            }
            .await;
            match info {
                Ok((p, a)) => {
                    pending.set(p as f64);
                    unacked.set(a as f64);
                }
                Err(err) => tracing::debug!(stream, consumer, error = %err, "consumer lag not read"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(period) => {}
            }
        }
    });
}
