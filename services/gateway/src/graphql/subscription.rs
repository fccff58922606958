//! `Subscription`: the tenant's events and one run's events, through the same event-dispatcher
//! subscription as `GET /api/v1/events` and `GET /api/v1/workflows/runs/{id}/events`, resumable
//! with `after: <cursor>` (each event's `cursor`). Served on the GraphQL socket only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_graphql::{Context, ErrorExtensions as _, Subscription as SubscriptionDerive};
use futures::stream::{BoxStream, StreamExt as _};
use getlood_auth::Permission;
use getlood_common::{ApiError, ErrorCode};

use super::guard::{Need, caller, gql_error, state};
use super::types::Event;
use crate::sse::{self, Item, Start};

/// The event-dispatcher topic of every run and node event (`run.*`, `node.*`).
const RUN_EVENTS_TOPIC: &str = "workflow";

/// The root of GraphQL subscriptions.
#[derive(Debug, Default)]
pub(crate) struct Subscription;

/// The subscriptions one socket may hold open (`graphql_max_subscriptions`).
#[derive(Debug, Clone)]
pub(crate) struct Slots {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One open subscription of a socket, freed when its stream is dropped.
#[derive(Debug)]
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub(crate) fn new(max: usize) -> Self {
        Self { open: Arc::new(AtomicUsize::new(0)), max }
    }

    fn take(&self) -> Result<Slot, ApiError> {
        let taken = self.open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1));
        match taken {
            Ok(_) => Ok(Slot(self.open.clone())),
            Err(_) => Err(ApiError::new(
                ErrorCode::ResourceExhausted,
                format!("this socket already holds {} subscriptions; complete one first", self.max),
            )),
        }
    }
}

/// A slot of the socket the subscription runs on; subscriptions run on the socket only.
fn slot(ctx: &Context<'_>) -> async_graphql::Result<Slot> {
    let slots = ctx.data::<Slots>().map_err(|_| {
        gql_error(ApiError::invalid_argument(
            "subscriptions are served on the GraphQL WebSocket (graphql-transport-ws)",
        ))
    })?;
    slots.take().map_err(gql_error)
}

/// The subscription's items as GraphQL results: events until the stream ends, or one error
/// (`resync` with the cursors to resume from, the upstream's failure, token expiry) and the end.
fn events(items: BoxStream<'static, Item>, slot: Slot) -> BoxStream<'static, async_graphql::Result<Event>> {
    futures::stream::unfold(Some((items, slot)), |state| async move {
        let (mut items, slot) = state?;
        let item = items.next().await?;
        Some(match item {
            Item::Event { cursor, kind, data } => (Ok(Event { cursor, kind, event: data }), Some((items, slot))),
            Item::Resync(data) => {
                let err = async_graphql::Error::new("the subscription fell behind; resume after `cursor`").extend_with(
                    |_, ext| {
                        ext.set("code", "resync");
                        ext.set("cursor", data["cursor"].as_str().unwrap_or_default());
                        ext.set("last_delivered_cursor", data["last_delivered_cursor"].as_str().unwrap_or_default());
                    },
                );
                (Err(err), None)
            }
            Item::Failed(data) | Item::Expired(data) => {
                let message = data["message"].as_str().unwrap_or("the event stream failed").to_owned();
                let code = data["code"].as_str().unwrap_or(ErrorCode::Unavailable.as_str()).to_owned();
                (Err(async_graphql::Error::new(message).extend_with(|_, ext| ext.set("code", code))), None)
            }
        })
    })
    .boxed()
}

#[SubscriptionDerive]
impl Subscription {
    /// The caller's events on `topics` (e.g. `["window", "workflow.node.*"]`), of `entityId`
    /// only when given (window topics need one unless the caller is admin). Without `after`,
    /// only new events; with it, every event after that cursor, none twice.
    #[graphql(guard = "Need::to(Permission::EventsRead)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        topics: Vec<String>,
        entity_id: Option<String>,
        after: Option<String>,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<Event>>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        let topics: Vec<String> = topics.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
        if topics.is_empty() {
            return Err(gql_error(ApiError::invalid_argument("topics is required, e.g. [\"window\"]")));
        }
        let slot = slot(ctx)?;
        let items = sse::subscribe(state, caller, topics, entity_id.unwrap_or_default(), after, Start::New)
            .await
            .map_err(gql_error)?;
        Ok(events(items, slot))
    }

    /// Run `runId`'s `run.*` and `node.*` events: from its first retained event, or after
    /// `after`. Another tenant's run is `not_found` and nothing is subscribed.
    #[graphql(guard = "Need::to(Permission::RunsRead)")]
    async fn run_events(
        &self,
        ctx: &Context<'_>,
        run_id: String,
        after: Option<String>,
    ) -> async_graphql::Result<BoxStream<'static, async_graphql::Result<Event>>> {
        let (state, caller) = (state(ctx)?, caller(ctx)?);
        // Read with the caller's token first: another tenant's run never opens a stream.
        let (run, _) = crate::workflow_api::fetch_run(state, caller, run_id, false).await.map_err(gql_error)?;
        let slot = slot(ctx)?;
        let topics = vec![RUN_EVENTS_TOPIC.to_owned()];
        let items = sse::subscribe(state, caller, topics, run.id, after, Start::All).await.map_err(gql_error)?;
        Ok(events(items, slot))
    }
}
