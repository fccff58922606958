-- Outbox rows that can never be published (over NATS's max_payload, undecodable, unknown
-- domain), moved here by the relay with the error so the events behind them still leave
-- (libs/events/src/outbox.rs; metric getlood_outbox_dead_lettered_total, docs/operations.md).
CREATE TABLE outbox_dead_letter (
    id               uuid        PRIMARY KEY,
    domain           text        NOT NULL,
    envelope         bytea       NOT NULL,
    reason           text        NOT NULL,
    error            text        NOT NULL,
    dead_lettered_at timestamptz NOT NULL DEFAULT now()
);
