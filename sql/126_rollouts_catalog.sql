-- The tables of 127_rollouts.sql (safe rollouts: shadow, canary, champion/challenger):
-- created once, by the release that added them (an upgrade script alters them); the
-- functions there are replayed by every upgrade. Written only by pgmodels' definer
-- functions; read by definer code and through the views of 127_rollouts.sql.

-- One row per rollout: a candidate model version beside a project's deployed one
-- (the champion). At most one active rollout per project. rule: the automatic decision
-- (python_udfs/pgmodels/rollout/decide.py): metric, margin, min_outcomes, max_error_rate,
-- confidence, auto.
CREATE TABLE pgmodels.rollout_runs (
    id            bigserial PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    champion_id   bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    candidate_id  bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    mode          text NOT NULL CHECK (mode IN ('shadow', 'canary')),
    fraction      real CHECK (fraction > 0 AND fraction < 1),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'promoted', 'aborted')),
    rule          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(rule) = 'object'),
    started_by    name NOT NULL DEFAULT session_user,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    ended_at      timestamptz,
    decision      text,
    reason        text,
    decided_at    timestamptz,
    -- the pg_cron entry that evaluates it (as the role that started it), while active
    cron_job_id   bigint,
    CHECK ((mode = 'canary') = (fraction IS NOT NULL)),
    CHECK ((status = 'active') = (ended_at IS NULL)),
    CHECK (champion_id <> candidate_id)
);
COMMENT ON TABLE pgmodels.rollout_runs IS 'one row per rollout: champion and candidate model, mode (shadow or canary), canary fraction, status, automatic rule and the last decision';
CREATE UNIQUE INDEX rollout_runs_one_active ON pgmodels.rollout_runs (project_id) WHERE status = 'active';
REVOKE ALL ON pgmodels.rollout_runs FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_runs', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_runs_id_seq', '');

-- Every change and every evaluation of a rollout, with the numbers it was decided on.
CREATE TABLE pgmodels.rollout_history (
    id          bigserial PRIMARY KEY,
    rollout_id  bigint NOT NULL REFERENCES pgmodels.rollout_runs (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    action      text NOT NULL CHECK (action IN ('start', 'alter', 'promote', 'abort', 'wait')),
    automatic   boolean NOT NULL DEFAULT false,
    reason      text,
    numbers     jsonb,
    by_role     name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE pgmodels.rollout_history IS 'every start, change, evaluation and decision of a rollout, with the numbers it rested on';
CREATE INDEX rollout_history_rollout_idx ON pgmodels.rollout_history (rollout_id, id);
REVOKE ALL ON pgmodels.rollout_history FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_history', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.rollout_history_id_seq', '');

-- The answers a rollout's versions gave, by key: the candidate's (shadow or canary) and
-- the champion's (in shadow, on the candidate's row as champion_prediction: the same
-- input; in canary, for a control share of keys as large as the canary's, a row of its
-- own). A log, which a scoring path only appends to, so it costs an insert and no more:
-- no key of its own, no foreign key (a per-row check; a rollout's rows go with it by the
-- trigger in 127_rollouts.sql), a BRIN index (rollout ids grow with time, as the rows
-- do). Kept for the rule's retention_days (30 by default), then deleted by the evaluation.
CREATE TABLE pgmodels.rollout_predictions (
    rollout_id           bigint NOT NULL,
    key                  text,
    model_id             bigint NOT NULL,
    model_version        integer NOT NULL,
    prediction           real,
    champion_prediction  real,
    -- champion: the deployed version's answer (a canary's control group); shadow or
    -- canary: the candidate's
    role                 text NOT NULL CHECK (role IN ('champion', 'shadow', 'canary')),
    source               text NOT NULL CHECK (source IN ('sql', 'batch', 'stream', 'proxy')),
    error                text,
    latency_ms           real,
    at                   timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE pgmodels.rollout_predictions IS 'the answers of a rollout''s versions with their key, model version, role (champion, shadow, canary), source mode and time; a shadow row carries the champion''s answer to the same input; a candidate''s failure has error set and no prediction';
CREATE INDEX rollout_predictions_rollout_idx ON pgmodels.rollout_predictions USING brin (rollout_id);
REVOKE ALL ON pgmodels.rollout_predictions FROM PUBLIC;

-- Where a project's true labels arrive, later, by key: registered by the project's owner
-- role and read as that role, and only as it, when a rollout is evaluated. The oid with
-- the qualified name it had: a relation dropped, renamed or replaced under a reused oid
-- is refused at evaluation.
CREATE TABLE pgmodels.outcome_sources (
    project_id    bigint PRIMARY KEY REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    relation      oid NOT NULL,
    relation_name text NOT NULL,
    key_column    name NOT NULL,
    label_column  name NOT NULL,
    time_column   name,
    owner_role    oid NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE pgmodels.outcome_sources IS 'per project: the relation where true labels arrive by key (key, label and time columns, the qualified name it had) and the role, the project''s owner, that reads it';
REVOKE ALL ON pgmodels.outcome_sources FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.outcome_sources', '');
