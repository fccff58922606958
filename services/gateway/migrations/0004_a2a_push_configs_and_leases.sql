-- A2A push notifications and task leases (issue 15).

-- A running task (submitted or working) is leased by the replica running its turn, which renews
-- the lease while the turn runs. A replica that dies (SIGKILL, a lost node) stops renewing: once
-- the lease has expired any replica fails the task, so a task never stays "working" forever.
-- NULL for tasks that are not running, and for rows of gateways older than this migration
-- (those fall back to the age rule: older than any turn may last).
ALTER TABLE a2a_tasks ADD COLUMN lease_until timestamptz;

-- The sweeper's scan: running tasks by lease expiry.
CREATE INDEX a2a_tasks_running_by_lease ON a2a_tasks (lease_until)
    WHERE state IN ('TASK_STATE_SUBMITTED', 'TASK_STATE_WORKING');

-- Push-notification configs of a task (A2A TaskPushNotificationConfig): where to POST the task
-- at each status change. A config belongs to its task, so it is scoped like the task (tenant,
-- user, agent: every query joins a2a_tasks) and goes with it.
CREATE TABLE a2a_push_configs (
    tenant_id         text        NOT NULL,
    task_id           uuid        NOT NULL,
    -- The client's id of the config, or a UUID the server made.
    id                text        NOT NULL,
    -- The webhook, checked by the egress policy when stored and again before each delivery.
    url               text        NOT NULL,
    -- Sent as X-A2A-Notification-Token; '' for none.
    token             text        NOT NULL DEFAULT '',
    -- AuthenticationInfo: sent as `Authorization: <scheme> <credentials>`; '' for none. The
    -- credentials are never read back to clients.
    auth_scheme       text        NOT NULL DEFAULT '',
    auth_credentials  text        NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, task_id, id),
    FOREIGN KEY (tenant_id, task_id) REFERENCES a2a_tasks (tenant_id, id) ON DELETE CASCADE
);
