-- Transactional outbox (see libs/events/src/outbox.rs): run.* and node.* events are written with
-- the state change they describe and relayed to JetStream after commit.
CREATE TABLE outbox (
    id         uuid        PRIMARY KEY,
    domain     text        NOT NULL,
    envelope   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
