-- Transactional outbox (see libs/events/src/outbox.rs): turn.completed events are written with the
-- change they describe and relayed to JetStream after commit.
CREATE TABLE outbox (
    id         uuid        PRIMARY KEY,
    domain     text        NOT NULL,
    envelope   bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
