-- The tables and types of 120_families.sql: created once, by the release that added them (an
-- upgrade script alters them); the functions there are replayed by every upgrade.

ALTER TABLE pgmodels.projects
    DROP CONSTRAINT projects_task_check,
    ADD CONSTRAINT projects_task_check CHECK (task IN ('classification', 'regression', 'clustering', 'decomposition'));
ALTER TABLE pgmodels.models
    DROP CONSTRAINT models_task_check,
    ADD CONSTRAINT models_task_check CHECK (task IN ('classification', 'regression', 'clustering', 'decomposition'));

-- Snapshot tables live in schema pgmodels_snapshots, a member of the extension owned by
-- its owner (so nobody else can create the schema first, or put anything in it; CREATE
-- fails if a schema of that name exists already). DROP EXTENSION pgmodels CASCADE drops
-- it with the snapshots in it (without CASCADE the drop is refused while snapshots exist).
CREATE SCHEMA pgmodels_snapshots;
COMMENT ON SCHEMA pgmodels_snapshots IS 'pgmodels: training snapshots (train(..., materialize_snapshot => true)); each table is readable by the role that trained on it';
REVOKE ALL ON SCHEMA pgmodels_snapshots FROM PUBLIC;
