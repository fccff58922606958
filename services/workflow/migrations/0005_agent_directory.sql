-- The workflow service's read model of the tenants' agents (src/agents.rs): what an `agent`
-- node's name or id stands for, kept from the agent-registry's agent.* events and from the
-- registry's answers to lookups made with a caller's token. A deleted agent stays as a
-- tombstone, so a run naming it fails with "deleted" rather than "unknown".
CREATE TABLE agent_directory (
    tenant_id  text        NOT NULL,
    agent_id   uuid        NOT NULL,
    name       text        NOT NULL,
    version    bigint      NOT NULL,
    deleted    boolean     NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id)
);
CREATE INDEX agent_directory_by_name ON agent_directory (tenant_id, name);

-- The agent stream's sequence this deployment has applied up to (one row); each replica
-- follows the stream from here after a restart.
CREATE TABLE agent_directory_cursor (
    id       smallint PRIMARY KEY CHECK (id = 1),
    sequence bigint   NOT NULL
);
