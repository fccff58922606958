-- Workflow definitions (immutable versions), runs, the node timeline, run events and logs.
-- Every workflow row is scoped by tenant_id and every query filters on it; run children
-- (node_runs, run_events, run_logs) are reached only through a tenant-checked run.

CREATE TABLE workflows (
    tenant_id      text        NOT NULL,
    id             uuid        NOT NULL,
    name           text        NOT NULL,
    latest_version bigint      NOT NULL DEFAULT 1,
    owner          text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- Soft delete: runs keep pointing at their pinned version, new executions are NOT_FOUND.
    deleted_at     timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- A deleted workflow's name can be reused.
CREATE UNIQUE INDEX workflows_name ON workflows (tenant_id, name) WHERE deleted_at IS NULL;

CREATE TABLE workflow_versions (
    tenant_id   text        NOT NULL,
    workflow_id uuid        NOT NULL,
    version     bigint      NOT NULL,
    name        text        NOT NULL,
    description text        NOT NULL DEFAULT '',
    graph       jsonb       NOT NULL,
    author      text        NOT NULL,
    comment     text        NOT NULL DEFAULT '',
    node_count  integer     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id, version)
);

CREATE TABLE schedules (
    tenant_id    text        NOT NULL,
    workflow_id  uuid        NOT NULL,
    every_count  integer     NOT NULL,
    unit         text        NOT NULL,
    start_at     timestamptz,
    end_at       timestamptz,
    mode         text        NOT NULL,
    version      bigint      NOT NULL DEFAULT 0,
    input        jsonb       NOT NULL DEFAULT '{}',
    job_name     text        NOT NULL DEFAULT '',
    -- Engine mode only: the scheduler loop fires rows whose next_run_at has passed.
    next_run_at  timestamptz,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, workflow_id)
);
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE mode = 'engine';

CREATE TABLE runs (
    id               uuid        PRIMARY KEY,
    tenant_id        text        NOT NULL,
    workflow_id      uuid        NOT NULL,
    workflow_version bigint      NOT NULL,
    status           text        NOT NULL,
    mode             text        NOT NULL,
    trigger          text        NOT NULL,
    triggered_by     text        NOT NULL DEFAULT '',
    input            jsonb       NOT NULL DEFAULT '{}',
    result           jsonb,
    error_code       text        NOT NULL DEFAULT '',
    error_message    text        NOT NULL DEFAULT '',
    failed_node_id   text        NOT NULL DEFAULT '',
    job_name         text        NOT NULL DEFAULT '',
    cancel_reason    text        NOT NULL DEFAULT '',
    request_id       text        NOT NULL DEFAULT '',
    deadline         timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    -- Run-local event sequence: bumped with every run_events row, under the run's row lock.
    last_sequence    bigint      NOT NULL DEFAULT 0
);
CREATE INDEX runs_tenant_created ON runs (tenant_id, created_at DESC, id DESC);
CREATE INDEX runs_active ON runs (status) WHERE status IN ('pending', 'running', 'waiting_approval');
CREATE UNIQUE INDEX runs_request_id ON runs (tenant_id, workflow_id, request_id) WHERE request_id <> '';

CREATE TABLE node_runs (
    run_id           uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    node_id          text        NOT NULL,
    node_type        text        NOT NULL,
    -- Position in the graph, the tie-breaker of the timeline order.
    ordinal          integer     NOT NULL,
    status           text        NOT NULL,
    attempt          integer     NOT NULL DEFAULT 0,
    -- Order in which nodes were reached (timeline order).
    reached_seq      bigint,
    queued_at        timestamptz,
    started_at       timestamptz,
    attempt_started_at timestamptz,
    finished_at      timestamptz,
    duration_ms      bigint      NOT NULL DEFAULT 0,
    -- While a worker executes the node it renews this lease; an expired lease means the worker
    -- died and the node may be taken over.
    lease_until      timestamptz,
    next_retry_at    timestamptz,
    output           jsonb,
    output_summary   text        NOT NULL DEFAULT '',
    error            text        NOT NULL DEFAULT '',
    decided_by       text        NOT NULL DEFAULT '',
    decision_comment text        NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, node_id)
);
-- The sweeper's lookup of nodes whose work message may have been lost.
CREATE INDEX node_runs_queued ON node_runs (queued_at) WHERE status IN ('queued', 'retrying', 'running');

-- Every state change of a run, encoded as the WatchRunResponse it is streamed as.
CREATE TABLE run_events (
    run_id     uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    sequence   bigint      NOT NULL,
    body       bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, sequence)
);

CREATE TABLE run_logs (
    run_id    uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    sequence  bigint      NOT NULL,
    logged_at timestamptz NOT NULL DEFAULT now(),
    node_id   text        NOT NULL DEFAULT '',
    attempt   integer     NOT NULL DEFAULT 0,
    level     text        NOT NULL,
    message   text        NOT NULL,
    fields    jsonb       NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, sequence)
);
