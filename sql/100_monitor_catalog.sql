-- Monitoring (see python_udfs/pgmodels/monitor/): the catalog of drift reports, the
-- monitors that write them on a pg_cron schedule, per-project thresholds, and the
-- definer functions that read and write them for a verified caller. The user's functions
-- are in 101_monitor.sql.
--
-- A model version's reference profile (its training rows, per feature) is kept in
-- pgmodels.models.training -> 'profile', with the model, so it is dumped and restored
-- with it. drift() compares a relation's rows with it; monitor() runs drift() on a
-- schedule and records each report here; with retrain, a report that finds drift
-- trains a new version without a held-out slice of the monitored rows and deploys it
-- only if it beats the deployed one on those rows (their labels), by the project's margin.

CREATE TABLE pgmodels.monitor_settings (
    project_id        bigint PRIMARY KEY REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    psi_warning       double precision NOT NULL DEFAULT 0.1,
    psi_drift         double precision NOT NULL DEFAULT 0.2,
    ks_alpha          double precision NOT NULL DEFAULT 0.01,
    ks_min_statistic  double precision NOT NULL DEFAULT 0.1,
    retrain_margin    double precision NOT NULL DEFAULT 0.0,
    min_holdout_rows  integer NOT NULL DEFAULT 30,
    -- when a monitor with retrain retrains: on drift, on a warning too, or at every report
    retrain_on        text NOT NULL DEFAULT 'drift' CONSTRAINT monitor_settings_retrain_on_check
                      CHECK (retrain_on IN ('drift', 'warning', 'always')),
    CONSTRAINT monitor_settings_psi_check CHECK (psi_warning > 0 AND psi_drift >= psi_warning AND psi_drift <= 10),
    CONSTRAINT monitor_settings_ks_check CHECK (ks_alpha > 0 AND ks_alpha < 1 AND ks_min_statistic >= 0
                                                AND ks_min_statistic <= 1),
    CONSTRAINT monitor_settings_margin_check CHECK (retrain_margin >= 0 AND retrain_margin <= 1),
    CONSTRAINT monitor_settings_holdout_check CHECK (min_holdout_rows BETWEEN 1 AND 100000000)
);
COMMENT ON TABLE pgmodels.monitor_settings IS 'per-project drift thresholds and the retrain margin (set_monitor_thresholds); a project without a row uses the defaults';

CREATE TABLE pgmodels.monitor (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    owner         regrole NOT NULL,
    relation      regclass NOT NULL,
    time_column   name,
    schedule      text,  -- NULL: run by hand (run_monitor)
    retrain       boolean NOT NULL DEFAULT false,
    cron_job_id   bigint,
    -- the end of the last report's window: the next scheduled report starts there
    last_window_end timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- what a retrain trains when not what the deployed version was trained with
    -- (set_monitor_retrain): algorithm, hyperparams, preprocess
    retrain_with  jsonb,
    UNIQUE (project_id, relation)
);
COMMENT ON TABLE pgmodels.monitor IS 'drift monitors: a relation compared with a project''s deployed model on a pg_cron schedule, run as the role that created it; read it through pgmodels.monitors';

CREATE TABLE pgmodels.drift_report (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id     bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    monitor_id     bigint REFERENCES pgmodels.monitor (id) ON DELETE SET NULL,
    model_id       bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    model_version  integer NOT NULL,
    relation       text NOT NULL,
    time_column    name,
    window_start   timestamptz,
    window_end     timestamptz,
    rows           bigint NOT NULL,
    status         text NOT NULL CHECK (status IN ('ok', 'warning', 'drift')),
    drifted        text[] NOT NULL DEFAULT '{}',
    -- one object per feature and one for the predictions: every metric and the current
    -- shares over the reference bins
    features       jsonb NOT NULL,
    thresholds     jsonb NOT NULL,
    -- the retrain decision, if the monitor retrains: new model, both scores, deployed or not, why
    retrain        jsonb,
    created_by     name NOT NULL,  -- the monitor's owner who ran it
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX drift_report_project_idx ON pgmodels.drift_report (project_id, id DESC);
COMMENT ON TABLE pgmodels.drift_report IS 'one row per drift report a monitor wrote: window, model version, every metric per feature, the retrain decision; read it through pgmodels.drift_reports';

REVOKE ALL ON pgmodels.monitor_settings, pgmodels.monitor, pgmodels.drift_report FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.monitor_settings', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.monitor', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.monitor_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.drift_report', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.drift_report_id_seq', '');

-- Traceability of request-response serving: pgmodels serve logs a sample of its
-- requests (--log-sample, every request by default) with the model id and version that
-- answered. It writes with its own connection's role: a superuser, or a role an
-- administrator grants INSERT on this table to (no other role may write it).
CREATE TABLE pgmodels.request_log (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             timestamptz NOT NULL,
    project_id     bigint REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    project        text NOT NULL,
    model_id       bigint,
    model_version  integer,
    role           name NOT NULL,
    transport      text NOT NULL CHECK (transport IN ('http', 'grpc')),
    request_id     text,
    rows           integer,
    status         integer NOT NULL,
    error          text,
    latency_ms     double precision NOT NULL
);
CREATE INDEX request_log_project_at_idx ON pgmodels.request_log (project_id, at DESC);
COMMENT ON TABLE pgmodels.request_log IS 'a sample of the requests pgmodels serve answered: when, project, the model id and version that answered, role, transport, rows, HTTP status, latency; read it through pgmodels.request_logs';
REVOKE ALL ON pgmodels.request_log FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('pgmodels.request_log', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.request_log_id_seq', '');
