-- A2A tasks (issue 15): one row per task a tenant's client started with one of its agents over
-- the A2A server. The gateway speaks A2A, so it owns the protocol's state; the answer's turn
-- stays the pipeline's (turn_id names it). Every row is scoped by tenant_id and user_id and
-- every query filters on both: a task is its sender's, another tenant's or user's is not found.
CREATE TABLE a2a_tasks (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    user_id          text        NOT NULL,
    agent_name       text        NOT NULL,
    -- A2A's contextId: the client's, or one the server made.
    context_id       text        NOT NULL,
    -- The pipeline conversation the task's turns belong to; '' until the first turn ends.
    conversation_id  text        NOT NULL DEFAULT '',
    -- The pipeline turn that answered last; '' until then.
    turn_id          text        NOT NULL DEFAULT '',
    -- A2A TaskState name: TASK_STATE_SUBMITTED, _WORKING, _COMPLETED, _FAILED, _CANCELED,
    -- _INPUT_REQUIRED.
    state            text        NOT NULL,
    -- TaskStatus.message (an A2A Message as JSON), or null.
    status_message   jsonb,
    -- The conversation's messages (A2A Message JSON), oldest first.
    history          jsonb       NOT NULL DEFAULT '[]',
    -- The task's artifacts (A2A Artifact JSON).
    artifacts        jsonb       NOT NULL DEFAULT '[]',
    metadata         jsonb       NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- ListTasks: a user's tasks of one agent, most recently updated first.
CREATE INDEX a2a_tasks_by_agent ON a2a_tasks (tenant_id, user_id, agent_name, updated_at DESC, id DESC);

-- A message naming a contextId continues that context's conversation.
CREATE INDEX a2a_tasks_by_context ON a2a_tasks (tenant_id, user_id, agent_name, context_id, updated_at DESC);
