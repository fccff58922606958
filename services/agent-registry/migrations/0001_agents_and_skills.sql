-- Agent metadata and the skills catalogue of every tenant. Every row is scoped by tenant_id and
-- every query filters on it; the service's schema (search_path) isolates it from other services.

CREATE TABLE skills (
    tenant_id       text        NOT NULL,
    name            text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    tables          text[]      NOT NULL DEFAULT '{}',
    knowledge_bases text[]      NOT NULL DEFAULT '{}',
    prompt_fragment text        NOT NULL DEFAULT '',
    version         bigint      NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE agents (
    tenant_id        text        NOT NULL,
    id               uuid        NOT NULL,
    name             text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    -- Name of the agent inside the tenant's MindsDB project; stable across renames.
    mindsdb_name     text        NOT NULL,
    model_provider   text        NOT NULL,
    model_name       text        NOT NULL,
    model_base_url   text,
    -- The key itself lives only in MindsDB; we remember that one was given.
    has_api_key      boolean     NOT NULL DEFAULT false,
    skills           text[]      NOT NULL DEFAULT '{}',
    prompt_template  text        NOT NULL DEFAULT '',
    data_tables      text[]      NOT NULL DEFAULT '{}',
    data_kbs         text[]      NOT NULL DEFAULT '{}',
    metadata         jsonb       NOT NULL DEFAULT '{}',
    version          bigint      NOT NULL DEFAULT 1,
    owner            text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- FindAgents by skill: array overlap/containment on the tenant's agents.
CREATE INDEX agents_skills_gin ON agents USING gin (skills);
