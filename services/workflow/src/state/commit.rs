//! The commit of a [`RunTx`]: every change and event of the transaction in one statement.

use std::sync::LazyLock;

use getlood_events::Domain;
use serde_json::Value;
use uuid::Uuid;

use super::RunTx;
use super::rows::{NODE_COLUMNS, NodeRow, RUN_COLUMNS, level_name};
use crate::error::Result;

impl RunTx {
    /// Renews nothing, changes nothing: a read-only look ends here.
    pub(crate) async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }

    /// Writes every change and event in one statement, then commits. `channel` is the Postgres
    /// NOTIFY channel WatchRun streams (and cancellation on other replicas) listen on; it is
    /// notified only while some WatchRun stream follows the run (see [`WRITE_TAIL`]).
    pub(crate) async fn commit(mut self, channel: &str) -> Result<Committed> {
        let id = self.run.id;
        if self.inserted {
            self.dirty = (0..self.nodes.len()).collect();
        }
        let r = &self.run;
        let query = if self.inserted {
            sqlx::query(sqlx::AssertSqlSafe(INSERT_SQL.as_str()))
                .bind(r.id)
                .bind(&r.tenant_id)
                .bind(r.workflow_id)
                .bind(r.workflow_version)
                .bind(&r.status)
                .bind(&r.mode)
                .bind(&r.trigger)
                .bind(&r.triggered_by)
                .bind(&r.input)
                .bind(&r.result)
                .bind(&r.error_code)
                .bind(&r.error_message)
                .bind(&r.failed_node_id)
                .bind(&r.job_name)
                .bind(&r.cancel_reason)
                .bind(&r.request_id)
                .bind(r.deadline)
                .bind(r.created_at)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.last_sequence)
        } else {
            sqlx::query(sqlx::AssertSqlSafe(UPDATE_SQL.as_str()))
                .bind(id)
                .bind(&r.status)
                .bind(&r.result)
                .bind(&r.error_code)
                .bind(&r.error_message)
                .bind(&r.failed_node_id)
                .bind(&r.cancel_reason)
                .bind(r.started_at)
                .bind(r.finished_at)
                .bind(r.last_sequence)
                .bind(&r.job_name)
        };

        let mut rows: Vec<&NodeRow> = self.dirty.iter().map(|&i| &self.nodes[i]).collect();
        rows.sort_by_key(|n| n.ordinal);
        macro_rules! col {
            ($f:ident) => {
                rows.iter().map(|n| n.$f.clone()).collect::<Vec<_>>()
            };
        }
        let query = query
            .bind(col!(node_id))
            .bind(col!(node_type))
            .bind(col!(ordinal))
            .bind(col!(status))
            .bind(col!(attempt))
            .bind(col!(reached_seq))
            .bind(col!(queued_at))
            .bind(col!(started_at))
            .bind(col!(attempt_started_at))
            .bind(col!(finished_at))
            .bind(col!(duration_ms))
            .bind(col!(lease_until))
            .bind(col!(next_retry_at))
            .bind(col!(output))
            .bind(col!(output_summary))
            .bind(col!(error))
            .bind(col!(decided_by))
            .bind(col!(decision_comment));

        let (seqs, bodies): (Vec<i64>, Vec<Vec<u8>>) = std::mem::take(&mut self.events).into_iter().unzip();
        let query = query.bind(seqs).bind(bodies);

        let logs = std::mem::take(&mut self.logs);
        let query = query
            .bind(self.now)
            .bind(logs.iter().map(|(s, _)| *s).collect::<Vec<i64>>())
            .bind(logs.iter().map(|(_, l)| l.node_id.clone()).collect::<Vec<String>>())
            .bind(logs.iter().map(|(_, l)| l.attempt).collect::<Vec<i32>>())
            .bind(logs.iter().map(|(_, l)| level_name(l.level).to_owned()).collect::<Vec<String>>())
            .bind(logs.iter().map(|(_, l)| l.message.clone()).collect::<Vec<String>>())
            .bind(logs.iter().map(|(_, l)| l.fields.clone()).collect::<Vec<Value>>());

        // The outbox table of libs/events. Its ids are v7 made in order, so the relay, which
        // sends by id, keeps the events of this transaction (and of this run) in order.
        let published_events = self.outbox.len();
        let ids: Vec<Uuid> =
            self.outbox.iter().map(|e| Uuid::parse_str(&e.id).unwrap_or_else(|_| Uuid::now_v7())).collect();
        let envelopes: Vec<Vec<u8>> = self.outbox.iter().map(prost::Message::encode_to_vec).collect();
        let query = query.bind(Domain::Workflow.token()).bind(ids).bind(envelopes).bind(channel);

        query.execute(&mut *self.tx).await?;
        self.tx.commit().await?;
        let to_publish = self.to_publish.iter().map(|&i| self.nodes[i].node_id.clone()).collect();
        Ok(Committed { run_id: id, to_publish, events: published_events })
    }
}

/// The write of a new run: the run row is `$1`..`$21`.
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    let values = (1..=21).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    write_sql(&format!("INSERT INTO runs ({RUN_COLUMNS}) VALUES ({values})"), 21)
});

/// The write of a loaded run: the run row's mutable columns are `$1`..`$11`.
static UPDATE_SQL: LazyLock<String> = LazyLock::new(|| {
    write_sql(
        "UPDATE runs SET status = $2, result = $3, error_code = $4, error_message = $5, failed_node_id = $6, \
         cancel_reason = $7, started_at = $8, finished_at = $9, last_sequence = $10, job_name = $11 WHERE id = $1",
        11,
    )
});

/// Column types of the node rows' arrays, in [`NODE_COLUMNS`] order.
const NODE_ARRAY_TYPES: [&str; 18] = [
    "text[]",
    "text[]",
    "int[]",
    "text[]",
    "int[]",
    "bigint[]",
    "timestamptz[]",
    "timestamptz[]",
    "timestamptz[]",
    "timestamptz[]",
    "bigint[]",
    "timestamptz[]",
    "timestamptz[]",
    "jsonb[]",
    "text[]",
    "text[]",
    "text[]",
    "text[]",
];

/// One statement for the whole commit, instead of one per table (and one for the NOTIFY): the
/// run row (`run`, whose parameters are `$1`..`$params`, `$1` being the run id), then the
/// changed node rows, the WatchRun items, the log lines, the outbox rows (each as arrays, empty
/// when there are none) and the NOTIFY channel. See [`WRITE_TAIL`] for when it notifies.
fn write_sql(run: &str, params: usize) -> String {
    let mut n = params;
    let mut p = |ty: &str| {
        n += 1;
        format!("${n}::{ty}")
    };
    let nodes = NODE_ARRAY_TYPES.map(&mut p).join(", ");
    let events = [p("bigint[]"), p("bytea[]")].join(", ");
    let logged_at = p("timestamptz");
    let logs = ["bigint[]", "text[]", "int[]", "text[]", "text[]", "jsonb[]"].map(&mut p).join(", ");
    let domain = p("text");
    let outbox = [p("uuid[]"), p("bytea[]")].join(", ");
    let channel = p("text");
    format!(
        "WITH run AS ({run}), \
         nodes AS (INSERT INTO node_runs (run_id, {NODE_COLUMNS}) SELECT $1, * FROM UNNEST({nodes}) \
           ON CONFLICT (run_id, node_id) DO UPDATE SET status = EXCLUDED.status, attempt = EXCLUDED.attempt, \
           reached_seq = EXCLUDED.reached_seq, queued_at = EXCLUDED.queued_at, started_at = EXCLUDED.started_at, \
           attempt_started_at = EXCLUDED.attempt_started_at, finished_at = EXCLUDED.finished_at, \
           duration_ms = EXCLUDED.duration_ms, lease_until = EXCLUDED.lease_until, \
           next_retry_at = EXCLUDED.next_retry_at, output = EXCLUDED.output, \
           output_summary = EXCLUDED.output_summary, error = EXCLUDED.error, decided_by = EXCLUDED.decided_by, \
           decision_comment = EXCLUDED.decision_comment), \
         events AS (INSERT INTO run_events (run_id, sequence, body) SELECT $1, * FROM UNNEST({events})), \
         logs AS (INSERT INTO run_logs (run_id, sequence, logged_at, node_id, attempt, level, message, fields) \
           SELECT $1, s, {logged_at}, n, a, l, m, f FROM UNNEST({logs}) AS u(s, n, a, l, m, f)), \
         outbox AS (INSERT INTO outbox (id, domain, envelope) SELECT i, {domain}, b FROM UNNEST({outbox}) AS u(i, b)) \
         {WRITE_TAIL}",
        WRITE_TAIL = WRITE_TAIL.replace("$channel", &channel),
    )
}

/// The NOTIFY of a commit, sent only while a WatchRun stream (of any replica) follows the run:
/// NOTIFY takes a database-wide lock from before the commit until after its WAL flush, which
/// serializes every notifying commit, so a notify per state change capped the engine. A
/// stream marks the run (`watched_until`, see `Store::watch`) before it reads the run's items,
/// and that update waits for the run's row lock, so each commit either sees the mark (and
/// notifies) or committed before the stream's first read. A new run has no watcher yet (the
/// statement's snapshot does not see the row it inserts).
const WRITE_TAIL: &str = "SELECT pg_notify($channel, $1::text) FROM runs WHERE id = $1 AND watched_until > now()";

/// What a committed transaction leaves to do.
#[derive(Debug)]
pub(crate) struct Committed {
    pub run_id: Uuid,
    /// Nodes to hand to the work queue.
    pub to_publish: Vec<String>,
    /// Outbox rows written (the relay's backlog).
    pub events: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The placeholders of a commit's statement, in order of first use.
    fn placeholders(sql: &str) -> Vec<usize> {
        let mut seen = Vec::new();
        for part in sql.split('$').skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<usize>()
                && !seen.contains(&n)
            {
                seen.push(n);
            }
        }
        seen
    }

    #[test]
    fn commit_statements_number_their_parameters_as_commit_binds_them() {
        // Run row, 18 node arrays, 2 event arrays, logged_at and 6 log arrays, domain and 2
        // outbox arrays, the channel.
        let tail = 18 + 2 + 7 + 3 + 1;
        for (sql, run) in [(INSERT_SQL.as_str(), 21), (UPDATE_SQL.as_str(), 11)] {
            let mut used = placeholders(sql);
            used.sort_unstable();
            assert_eq!(used, (1..=run + tail).collect::<Vec<_>>(), "{sql}");
        }
        assert!(INSERT_SQL.ends_with(WRITE_TAIL.replace("$channel", "$52::text").as_str()));
    }
}
