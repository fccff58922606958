//! Batch loading of run timelines and logs, so a list of runs with their `nodes` is one batch of
//! upstream calls rather than a call per run made one after the other.
//!
//! The workflow service has no batch read (ListRuns leaves timelines out, GetRun reads one run),
//! so a batch is the runs' own GetRun calls made concurrently, at most [`MAX_CONCURRENT`] at a
//! time, each with the caller's token, so the service's tenant rules apply to every one. The
//! loader lives for one GraphQL request (or one subscription socket): it acts for one caller and
//! its cache never outlives what that caller asked.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use futures::StreamExt as _;
use getlood_common::ApiError;
use getlood_proto::workflow::v1::{LogEntry, Run};

use crate::AppState;
use crate::caller::Caller;
use crate::workflow_api::fetch_run;

/// Upstream GetRun calls one batch makes at once.
pub(crate) const MAX_CONCURRENT: usize = 8;
/// Metric: GetRun batches the GraphQL loader made, and the runs they read (`runs`).
pub(crate) const METRIC_BATCHES: &str = "getlood_gateway_graphql_loader_batches_total";
/// Metric: runs read by the GraphQL loader's batches.
pub(crate) const METRIC_RUNS: &str = "getlood_gateway_graphql_loader_runs_total";

/// Loads runs (with their timelines) and run logs for one caller.
pub(crate) struct RunLoader {
    state: AppState,
    caller: Caller,
}

impl RunLoader {
    pub(crate) fn new(state: AppState, caller: Caller) -> Self {
        Self { state, caller }
    }

    /// Each of `ids` read with GetRun (`include_logs` as asked), concurrently; a run that cannot
    /// be read keeps its own error, so one missing run does not fail the others.
    async fn read<T>(
        &self,
        ids: &[String],
        include_logs: bool,
        pick: impl Fn(Run, Vec<LogEntry>) -> T + Send + Sync,
    ) -> HashMap<String, Result<Arc<T>, ApiError>> {
        metrics::counter!(METRIC_BATCHES).increment(1);
        metrics::counter!(METRIC_RUNS).increment(u64::try_from(ids.len()).unwrap_or(u64::MAX));
        let pick = &pick;
        futures::stream::iter(ids.iter().cloned())
            .map(|id| async move {
                let read = fetch_run(&self.state, &self.caller, id.clone(), include_logs).await;
                (id, read.map(|(run, logs)| Arc::new(pick(run, logs))))
            })
            .buffer_unordered(MAX_CONCURRENT)
            .collect()
            .await
    }
}

/// The key of a run's logs (its id); runs themselves are keyed by their id as a `String`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RunLogs(pub String);

impl Loader<String> for RunLoader {
    type Value = Result<Arc<Run>, ApiError>;
    type Error = Infallible;

    async fn load(&self, keys: &[String]) -> Result<HashMap<String, Self::Value>, Self::Error> {
        Ok(self.read(keys, false, |run, _| run).await)
    }
}

impl Loader<RunLogs> for RunLoader {
    type Value = Result<Arc<Vec<LogEntry>>, ApiError>;
    type Error = Infallible;

    async fn load(&self, keys: &[RunLogs]) -> Result<HashMap<RunLogs, Self::Value>, Self::Error> {
        let ids: Vec<String> = keys.iter().map(|k| k.0.clone()).collect();
        let read = self.read(&ids, true, |_, logs| logs).await;
        Ok(read.into_iter().map(|(id, v)| (RunLogs(id), v)).collect())
    }
}
