-- Set by WatchRun streams while they follow a run (renewed as they go): commits of a run NOTIFY
-- other replicas' streams only while it is in the future (see WRITE_TAIL in src/state.rs).
ALTER TABLE runs ADD COLUMN watched_until timestamptz;
