-- Conversation turns of every tenant. Every row is scoped by tenant_id and every query filters
-- on it; the service's schema (search_path) isolates it from other services.
CREATE TABLE turns (
    tenant_id          text             NOT NULL,
    id                 uuid             NOT NULL,
    conversation_id    uuid             NOT NULL,
    user_id            text             NOT NULL,
    -- '' when the client sent no idempotency key.
    client_request_id  text             NOT NULL DEFAULT '',
    desktop_id         text             NOT NULL DEFAULT '',
    messages           jsonb            NOT NULL,
    answer             text             NOT NULL,
    outcome            text             NOT NULL,
    intent             text             NOT NULL,
    confidence         double precision NOT NULL,
    intent_source      text             NOT NULL,
    -- Why stage 1 fell back (invalid LLM JSON, unknown intent, model down), or the rule that decided.
    intent_note        text             NOT NULL DEFAULT '',
    mode               text             NOT NULL,
    route_rule         text             NOT NULL DEFAULT '',
    agent_id           text,
    agent_name         text,
    agent_version      bigint,
    ui_actions         jsonb            NOT NULL DEFAULT '[]',
    user_intent_hints  jsonb            NOT NULL DEFAULT '[]',
    stage_timings      jsonb            NOT NULL DEFAULT '[]',
    metadata           jsonb            NOT NULL DEFAULT '{}',
    duration_ms        bigint           NOT NULL,
    -- The Turn message exactly as returned by Execute, so reads return what the client saw.
    turn_pb            bytea            NOT NULL,
    created_at         timestamptz      NOT NULL,
    completed_at       timestamptz      NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- ListTurns: a conversation's turns, oldest first.
CREATE INDEX turns_by_conversation ON turns (tenant_id, conversation_id, created_at, id);

-- A retried request (same client_request_id) replays its stored turn instead of running again.
CREATE UNIQUE INDEX turns_by_client_request ON turns (tenant_id, user_id, client_request_id)
    WHERE client_request_id <> '';
