-- The catalog: projects, model versions and the deployment history.
--
-- Catalog objects live in schema pgmodels; the user-facing functions go into the
-- extension's own schema (@extschema@, public by default). Nobody but the extension
-- owner writes these tables: train, deploy and import_onnx do it through
-- SECURITY DEFINER functions, after their own privilege checks.

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
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE pgmodels.projects IS 'one row per project: a named prediction task whose models are versions';

CREATE TABLE pgmodels.models (
    id               bigserial PRIMARY KEY,
    project_id       bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    version          integer NOT NULL CHECK (version > 0),
    task             text NOT NULL CHECK (task IN ('classification', 'regression')),
    algorithm        text NOT NULL,
    -- how the artifact is served: 'onnx' (onnxruntime) or a native format that runs
    -- no code when loaded ('xgboost-ubj'); never pickle
    runtime          text NOT NULL CHECK (runtime IN ('onnx', 'xgboost-ubj')),
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
    UNIQUE (project_id, version),
    CHECK (cardinality(feature_names) = cardinality(feature_types))
);
COMMENT ON TABLE pgmodels.models IS 'one row per model version: the serving artifact with its sha256, metrics, features and provenance';

CREATE TABLE pgmodels.deployments (
    id           bigserial PRIMARY KEY,
    project_id   bigint NOT NULL REFERENCES pgmodels.projects (id) ON DELETE CASCADE,
    model_id     bigint NOT NULL REFERENCES pgmodels.models (id) ON DELETE CASCADE,
    strategy     text NOT NULL,
    deployed_by  name NOT NULL DEFAULT session_user,
    deployed_at  timestamptz NOT NULL DEFAULT clock_timestamp()
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
