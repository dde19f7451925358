-- Batch jobs: scheduled scoring of a table into a prediction table (see
-- python_udfs/pgmodels/batch/). This file holds the catalog and the one helper over
-- pg_cron; 071 the definer functions that write the catalog, 072 the user's functions.

CREATE TABLE pgmodels.batch_job (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    owner              regrole NOT NULL,
    project_id         bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    source             regclass NOT NULL,
    key_column         name NOT NULL,
    output             regclass NOT NULL UNIQUE,
    incremental_column name,
    -- contributions (0.3.0): per row, feature -> contribution (sql/125_explain.sql)
    outputs            text[] NOT NULL CONSTRAINT batch_job_outputs_check
                       CHECK (outputs <@ ARRAY['prediction', 'probabilities', 'label', 'contributions']
                              AND cardinality(outputs) > 0),
    chunk_rows         integer NOT NULL CHECK (chunk_rows BETWEEN 1 AND 1000000),
    schedule           text,
    cron_job_id        bigint,
    max_retries        integer NOT NULL CHECK (max_retries BETWEEN 0 AND 100),
    retry_delay        interval NOT NULL CHECK (retry_delay >= '0'::interval AND retry_delay <= '1 hour'::interval),
    keep_runs          interval NOT NULL CHECK (keep_runs >= '1 minute'::interval),
    -- after a successful run: the model the whole output was scored with, and for an
    -- incremental job the largest value of its column that run covered
    scored_model_id    bigint,
    watermark          text,
    -- the run in progress: its backend (pid and start time), so that a second run
    -- skips while it lives and takes over once it is gone
    runner_pid         integer,
    runner_start       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((schedule IS NULL) = (cron_job_id IS NULL))
);
COMMENT ON TABLE pgmodels.batch_job IS 'batch scoring jobs: a project''s deployed model scoring a relation into an output table by key, on a pg_cron schedule or by hand; read it through pgmodels.batch_jobs';

CREATE TABLE pgmodels.batch_run (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id         bigint NOT NULL REFERENCES pgmodels.batch_job (id) ON DELETE CASCADE,
    status         text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    mode           text CHECK (mode IN ('full', 'incremental')),
    resumed_from   bigint,
    attempt        integer NOT NULL DEFAULT 1,
    triggered_by   text NOT NULL,
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at    timestamptz,
    rows_scored    bigint NOT NULL DEFAULT 0,
    rows_removed   bigint NOT NULL DEFAULT 0,
    chunks         integer NOT NULL DEFAULT 0,
    model_id       bigint,
    model_version  integer,
    -- an incremental run scores the rows whose column is in (low_watermark, high_watermark]
    low_watermark  text,
    high_watermark text,
    -- the last row committed, in scoring order: where a resumed run goes on
    cursor_key     text,
    cursor_value   text,
    pid            integer,
    backend_start  timestamptz,
    error          text,
    error_sqlstate text,
    error_detail   text,
    error_hint     text
);
CREATE INDEX batch_run_job_id_id_idx ON pgmodels.batch_run (job_id, id DESC);
COMMENT ON TABLE pgmodels.batch_run IS 'one row per run of a batch job, updated after every chunk; read it through pgmodels.batch_runs';

SELECT pg_catalog.pg_extension_config_dump('pgmodels.batch_job', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.batch_job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.batch_run', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.batch_run_id_seq', '');
