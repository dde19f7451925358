-- The catalog: projects, model versions and the deployment history.
--
-- Catalog objects live in schema pgmodels; the user-facing functions go into the
-- extension's own schema (@extschema@, public by default). Nobody but the extension
-- owner reads or writes these tables directly: train, deploy, import_onnx and
-- grant_project write them through SECURITY DEFINER functions that check who is asking
-- (see sql/025_privileges.sql), and the views show each role only the projects it may use.

CREATE SCHEMA pgmodels;
COMMENT ON SCHEMA pgmodels IS 'pgmodels catalog: projects, model versions, deployments and internal functions';
GRANT USAGE ON SCHEMA pgmodels TO PUBLIC;

CREATE TABLE pgmodels.projects (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name <> '' AND length(name) <= 200),
    task        text NOT NULL CHECK (task IN ('classification', 'regression')),
    -- the arguments of the latest train() call, reused for omitted arguments
    last_train  jsonb NOT NULL DEFAULT '{}',
    created_by  name NOT NULL DEFAULT session_user,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- the role that first trained or imported it: it (and its members) may train, import,
    -- deploy and grant; regrole, so that pg_dump writes the name and restore finds the role
    owner       regrole NOT NULL
);
COMMENT ON TABLE pgmodels.projects IS 'one row per project: a named prediction task whose models are versions';
-- No two projects whose names differ only in case: one would pass for the other in the
-- console, /metrics and bundles (pgmodels._check_new_project says so first, in words; this
-- index settles two sessions making both at once).
CREATE UNIQUE INDEX projects_name_lower_key ON pgmodels.projects (lower(name));

CREATE TABLE pgmodels.models (
    id               bigserial PRIMARY KEY,
    project_id       bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    version          integer NOT NULL CHECK (version > 0),
    task             text NOT NULL CHECK (task IN ('classification', 'regression')),
    algorithm        text NOT NULL,
    -- how the artifact is served: 'onnx' (onnxruntime) or a native format that runs
    -- no code when loaded ('xgboost-ubj', or 'skops' with a type allow-list); never pickle
    runtime          text NOT NULL CONSTRAINT models_runtime_check CHECK (runtime IN ('onnx', 'xgboost-ubj', 'skops')),
    artifact         bytea NOT NULL,
    artifact_sha256  bytea NOT NULL CHECK (length(artifact_sha256) = 32),
    hyperparams      jsonb NOT NULL DEFAULT '{}',
    metrics          jsonb NOT NULL DEFAULT '{}',
    search_results   jsonb,
    feature_names    text[] NOT NULL,
    feature_types    text[] NOT NULL,
    -- classification: the class labels in output order (text or numbers)
    labels           jsonb,
    -- relation, target, split, preprocessing and conversion check of this training
    training         jsonb NOT NULL DEFAULT '{}',
    library_versions jsonb NOT NULL DEFAULT '{}',
    trained_by       name NOT NULL DEFAULT session_user,
    trained_at       timestamptz NOT NULL DEFAULT now(),
    -- (0.3.0) a tree ensemble's trees in the form extension/src/trees.c walks, made and
    -- checked against onnxruntime by train() and import_onnx(): a backend's first predict() reads them
    -- instead of starting onnxruntime (python_udfs/pgmodels/serving/native.py)
    native_trees     bytea,
    UNIQUE (project_id, version),
    CHECK (cardinality(feature_names) = cardinality(feature_types)),
    -- so that a deployment can name a model and its project, and they agree
    CONSTRAINT models_project_id_id_key UNIQUE (project_id, id)
);
COMMENT ON TABLE pgmodels.models IS 'one row per model version: the serving artifact with its sha256, metrics, features and provenance';

CREATE TABLE pgmodels.deployments (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    model_id     bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    strategy     text NOT NULL CONSTRAINT deployments_strategy_check
                 CHECK (strategy IN ('automatic', 'import', 'best_score', 'most_recent', 'rollback', 'model_id', 'rollout')),
    deployed_by  name NOT NULL DEFAULT session_user,
    deployed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT deployments_project_model_fkey FOREIGN KEY (project_id, model_id)
        REFERENCES pgmodels.models (project_id, id) ON DELETE CASCADE
);
COMMENT ON TABLE pgmodels.deployments IS 'the full deployment history; the newest row of a project is its deployed model';
CREATE INDEX deployments_project_idx ON pgmodels.deployments (project_id, id DESC);

REVOKE ALL ON pgmodels.projects, pgmodels.models, pgmodels.deployments FROM PUBLIC;

-- pg_dump and pg_restore keep every project, model and deployment.
SELECT pg_catalog.pg_extension_config_dump('pgmodels.projects', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.projects_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.models', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.models_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.deployments', '');
SELECT pg_catalog.pg_extension_config_dump('pgmodels.deployments_id_seq', '');
