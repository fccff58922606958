-- Desktops, their windows (the seed's `windows_state`) and focus stacks. Every row is scoped by
-- tenant_id and every query filters on it (and on the owning user for desktops); the service's
-- schema (search_path) isolates these tables from other services.
--
-- Locking rule: every write to a desktop or to one of its windows first locks the desktop row
-- (SELECT ... FOR UPDATE), so writers of one desktop serialize and never deadlock.

CREATE TABLE desktops (
    tenant_id      text        NOT NULL,
    id             uuid        NOT NULL,
    owner_user_id  text        NOT NULL,
    name           text        NOT NULL,
    -- Window ids, most recently focused first.
    focus_stack    uuid[]      NOT NULL DEFAULT '{}',
    version        bigint      NOT NULL DEFAULT 1,
    -- Idempotency key of the CreateDesktop call that made it.
    request_id     text,
    -- The last SaveDesktop: an encoded getlood.desktop_state.v1.Desktop, and when it was taken.
    saved_snapshot bytea,
    saved_at       timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, owner_user_id, request_id)
);

-- ListDesktops: the caller's desktops, newest first.
CREATE INDEX desktops_owner_created ON desktops (tenant_id, owner_user_id, created_at DESC, id DESC);

CREATE TABLE windows_state (
    tenant_id   text        NOT NULL,
    id          uuid        NOT NULL,
    desktop_id  uuid        NOT NULL,
    user_id     text        NOT NULL,
    app_id      text        NOT NULL,
    title       text        NOT NULL,
    -- Normal geometry: kept while maximized or minimized, for restore.
    x           integer     NOT NULL,
    y           integer     NOT NULL,
    width       integer     NOT NULL CHECK (width > 0),
    height      integer     NOT NULL CHECK (height > 0),
    z_index     integer     NOT NULL,
    state       text        NOT NULL CHECK (state IN ('normal', 'minimized', 'maximized')),
    props       jsonb       NOT NULL DEFAULT '{}',
    version     bigint      NOT NULL DEFAULT 1,
    -- Idempotency key of the OpenWindow call that made it (e.g. a UiAction id).
    request_id  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, desktop_id) REFERENCES desktops (tenant_id, id) ON DELETE CASCADE,
    -- Deferred: SaveDesktop renumbers every window of a desktop in one transaction.
    CONSTRAINT windows_state_z_unique UNIQUE (tenant_id, desktop_id, z_index) DEFERRABLE INITIALLY DEFERRED,
    UNIQUE (tenant_id, desktop_id, request_id)
);

-- Tenants whose windows are readable from MindsDB: the per-tenant Postgres schema and role, and
-- when the MindsDB integration was attached (NULL: not yet, retry on the next desktop).
CREATE TABLE agent_tables (
    tenant_id   text        PRIMARY KEY,
    schema_name text        NOT NULL UNIQUE,
    attached_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
