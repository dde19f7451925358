-- built from sql/*.sql by extension/Makefile: edit those, not this file
\echo Use "CREATE EXTENSION pgmodels" to load this file. \quit

-- 010_catalog.sql
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

-- 020_environment.sql
-- The server-side Python environment, and how errors leave Python.
--
-- PL/Python runs the server's own interpreter (python3.11 on Debian 12). The packages
-- pgmodels imports live in a virtual environment built from that same interpreter and
-- named by the setting pgmodels.venv. _activate() puts that environment on sys.path
-- once per backend. It is the one PL/Python body that is more than a call into the
-- pgmodels package, because it is what makes the package importable.
--
-- Errors: PL/Python would prefix every error with a Python type name. Instead the
-- Python side records the error as pending and returns NULL, and the SQL side raises it
-- with RAISE ... USING (pgmodels._raise_pending), in PostgreSQL's own style.

CREATE FUNCTION pgmodels._pending_error(OUT message text, OUT detail text, OUT hint text, OUT sqlstate text)
RETURNS SETOF record
LANGUAGE plpython3u PARALLEL SAFE
AS $$
pending = GD.pop('pgmodels.pending', None)
return [pending] if pending else []
$$;
COMMENT ON FUNCTION pgmodels._pending_error() IS 'internal: takes the error the Python side recorded, if any';

-- Raises the pending error, or returns NULL when there is none. The argument only fixes
-- the result type, so that coalesce(core(...), pgmodels._raise_pending(NULL::real))
-- costs nothing unless the core returned NULL.
CREATE FUNCTION pgmodels._raise_pending(result_type anyelement) RETURNS anyelement
LANGUAGE plpgsql STABLE PARALLEL SAFE
AS $$
DECLARE
    e record;
BEGIN
    SELECT * INTO e FROM pgmodels._pending_error();
    IF e.message IS NULL THEN
        RETURN NULL;
    ELSIF e.detail IS NOT NULL AND e.hint IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = e.message, DETAIL = e.detail, HINT = e.hint, ERRCODE = e.sqlstate;
    ELSIF e.detail IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = e.message, DETAIL = e.detail, ERRCODE = e.sqlstate;
    ELSIF e.hint IS NOT NULL THEN
        RAISE EXCEPTION USING MESSAGE = e.message, HINT = e.hint, ERRCODE = e.sqlstate;
    ELSE
        RAISE EXCEPTION USING MESSAGE = e.message, ERRCODE = e.sqlstate;
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._raise_pending(anyelement) IS 'internal: raises the error the Python side recorded, in PostgreSQL''s style, or returns NULL';

-- It runs no query (PL/Python's queries open subtransactions, which parallel workers may
-- not), so the caller passes the setting and the extension's version.
CREATE FUNCTION pgmodels._activate(venv text, extversion text) RETURNS text
LANGUAGE plpython3u STABLE PARALLEL SAFE
AS $$
import os, sys
if GD.get('pgmodels.active'):
    return None
def fail(msg, detail, hint):
    GD['pgmodels.pending'] = (msg, detail, hint, '55000')
    return msg
here = '%d.%d' % sys.version_info[:2]
server_python = os.path.join(sys.base_prefix, 'bin', 'python' + here)
make_hint = ('Run "pgmodels install --dsn <url>" with the pgmodels tool installed in a virtual '
             'environment built by %s, or run scripts/install.sh from the pgmodels source tree.' % server_python)
if not venv:
    return fail('pgmodels.venv is not set',
                'pgmodels imports its Python packages from the virtual environment this setting names.', make_hint)
cfg = os.path.join(venv, 'pyvenv.cfg')
try:
    with open(cfg) as f:
        settings = dict((k.strip(), v.strip()) for k, v in (l.split('=', 1) for l in f if '=' in l))
except OSError as e:
    return fail('pgmodels.venv "%s" is not a readable virtual environment' % venv,
                'Reading %s failed: %s.' % (cfg, e.strerror), make_hint)
built = settings.get('version', settings.get('version_info', ''))
if '.'.join(built.split('.')[:2]) != here:
    return fail('pgmodels.venv "%s" was built for another Python' % venv,
                'It was built with Python %s; this server runs Python %s.' % (built or 'unknown', sys.version.split()[0]),
                make_hint)
import site
before = list(sys.path)
site.addsitedir(os.path.join(venv, 'lib', 'python' + here, 'site-packages'))
sys.path[:] = [p for p in sys.path if p not in before] + before
try:
    import pgmodels
except Exception as e:
    sys.path[:] = before
    return fail('the pgmodels Python package cannot be imported from pgmodels.venv "%s"' % venv,
                'Importing it failed with %s: %s.' % (type(e).__name__, e), make_hint)
if extversion and extversion != pgmodels.__version__:
    sys.path[:] = before
    for name in [m for m in sys.modules if m == 'pgmodels' or m.startswith('pgmodels.')]:
        del sys.modules[name]
    return fail('pgmodels Python package %s does not match the extension version %s' % (pgmodels.__version__, extversion),
                'The package in %s and the extension''s SQL objects come from different releases.' % venv,
                'Run "ALTER EXTENSION pgmodels UPDATE", or install the matching package into the virtual environment.')
GD['pgmodels.active'] = True
return None
$$;
COMMENT ON FUNCTION pgmodels._activate(text, text) IS 'internal: puts the virtual environment named by pgmodels.venv on the server''s sys.path once per session; returns the problem (and records it as pending) when it cannot';

CREATE FUNCTION pgmodels._activate() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT pgmodels._activate(pg_catalog.current_setting('pgmodels.venv', true),
                              (SELECT e.extversion FROM pg_catalog.pg_extension e WHERE e.extname = 'pgmodels'))
$$;
COMMENT ON FUNCTION pgmodels._activate() IS 'internal: _activate() with the current pgmodels.venv setting and extension version';

CREATE FUNCTION pgmodels._doctor() RETURNS TABLE (item text, value text, ok boolean)
LANGUAGE plpython3u
AS $$
import sys
problem = plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']
if problem: GD.pop('pgmodels.pending', None); return [('server python', sys.version.split()[0], True), ('pgmodels.venv', problem, False)]
from pgmodels.doctor import report; return report()
$$;
COMMENT ON FUNCTION pgmodels._doctor() IS 'internal: the core of pgmodels.doctor()';

CREATE FUNCTION pgmodels.doctor() RETURNS TABLE (item text, value text, ok boolean)
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM pgmodels._doctor();
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION pgmodels.doctor() IS 'reports the server''s Python, the virtual environment in use, each package''s version and whether pg_cron is loaded';

-- 030_catalog_writes.sql
-- Writing the catalog: storing a model version, and deploying one.
--
-- Only these SECURITY DEFINER functions write pgmodels.projects, models and deployments.
-- They need the extension owner's rights because no other role may write those tables.

CREATE FUNCTION pgmodels._key_metric(task text, metrics jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (metrics ->> CASE task WHEN 'classification' THEN 'f1' ELSE 'r2' END)::double precision $$;
COMMENT ON FUNCTION pgmodels._key_metric(text, jsonb) IS 'internal: the metric deploy compares models by: f1 for classification, r2 for regression';

CREATE FUNCTION pgmodels._project_info(project_name text, OUT task text, OUT last_train jsonb)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT p.task, p.last_train FROM pgmodels.projects p WHERE p.name = project_name $$;
COMMENT ON FUNCTION pgmodels._project_info(text) IS 'internal: a project''s task and last train() arguments (definer: the catalog is not readable by PUBLIC)';

-- Stores one model version, and deploys it when asked to. train() and import_onnx() run
-- with the caller's rights (so training reads only what the caller may read) and call
-- this to write. It checks the caller itself: the session's login role must be allowed
-- to run train() or import_onnx(). (A definer function cannot see the role that called
-- it, only the session's; a session can always return to its login role, so this grants
-- nothing the session does not already have.)
CREATE FUNCTION pgmodels._store_model(
    project_name text, task text, algorithm text, runtime text, artifact bytea,
    hyperparams jsonb, metrics jsonb, search_results jsonb, feature_names text[], feature_types text[],
    labels jsonb, training jsonb, library_versions jsonb, last_train jsonb, deploy_mode text,
    OUT model_id bigint, OUT version integer, OUT deployed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    proj pgmodels.projects;
    current_model pgmodels.models;
BEGIN
    IF NOT (pg_catalog.has_function_privilege(session_user,
                '@extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb)', 'EXECUTE')
            OR pg_catalog.has_function_privilege(session_user,
                '@extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean)', 'EXECUTE')) THEN
        RAISE EXCEPTION 'permission denied to store a model'
            USING ERRCODE = '42501',
                  DETAIL = format('Role "%s" may run neither train() nor import_onnx().', session_user),
                  HINT = 'An administrator grants EXECUTE on train() or import_onnx().';
    END IF;
    INSERT INTO pgmodels.projects AS p (name, task) VALUES (project_name, task)
        ON CONFLICT (name) DO NOTHING;
    SELECT * INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.task <> task THEN
        RAISE EXCEPTION 'project "%" is a % project, not %', project_name, proj.task, task
            USING ERRCODE = '22023', HINT = 'Use another project name for another task.';
    END IF;
    SELECT coalesce(max(m.version), 0) + 1 INTO version FROM pgmodels.models m WHERE m.project_id = proj.id;
    INSERT INTO pgmodels.models (project_id, version, task, algorithm, runtime, artifact, artifact_sha256,
                                 hyperparams, metrics, search_results, feature_names, feature_types, labels,
                                 training, library_versions)
    VALUES (proj.id, version, task, algorithm, runtime, artifact, pg_catalog.sha256(artifact),
            coalesce(hyperparams, '{}'), coalesce(metrics, '{}'), search_results, feature_names, feature_types,
            labels, coalesce(training, '{}'), coalesce(library_versions, '{}'))
    RETURNING id INTO model_id;
    IF last_train IS NOT NULL THEN
        UPDATE pgmodels.projects p SET last_train = _store_model.last_train WHERE p.id = proj.id;
    END IF;

    SELECT m.* INTO current_model FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    deployed := CASE deploy_mode
        WHEN 'always' THEN true
        WHEN 'if_better' THEN current_model.id IS NULL
             OR coalesce(pgmodels._key_metric(task, metrics), '-Infinity')
                > coalesce(pgmodels._key_metric(task, current_model.metrics), '-Infinity')
        ELSE false END;
    IF deployed THEN
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy)
        VALUES (proj.id, model_id, CASE deploy_mode WHEN 'always' THEN 'import' ELSE 'automatic' END);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._store_model(text, text, text, text, bytea, jsonb, jsonb, jsonb, text[], text[], jsonb, jsonb, jsonb, jsonb, text) IS 'internal: stores a model version (and deploys it if asked); called by train() and import_onnx()';

-- deploy() is a SQL function over these two: PL/pgSQL cannot have an argument and a
-- result column of the same name, and pgml's deploy() has both (strategy, algorithm).
CREATE FUNCTION pgmodels._deploy_strategy(project_name text, strategy text, algorithm text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    proj pgmodels.projects;
    chosen pgmodels.models;
    current_id bigint;
BEGIN
    SELECT * INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    SELECT d.model_id INTO current_id FROM pgmodels.deployments d
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    IF _deploy_strategy.strategy = 'best_score' THEN
        SELECT m.* INTO chosen FROM pgmodels.models m
         WHERE m.project_id = proj.id AND (_deploy_strategy.algorithm IS NULL OR m.algorithm = _deploy_strategy.algorithm)
         ORDER BY pgmodels._key_metric(m.task, m.metrics) DESC NULLS LAST, m.id DESC LIMIT 1;
    ELSIF _deploy_strategy.strategy = 'most_recent' THEN
        SELECT m.* INTO chosen FROM pgmodels.models m
         WHERE m.project_id = proj.id AND (_deploy_strategy.algorithm IS NULL OR m.algorithm = _deploy_strategy.algorithm)
         ORDER BY m.id DESC LIMIT 1;
    ELSIF _deploy_strategy.strategy = 'rollback' THEN
        SELECT m.* INTO chosen FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
         WHERE d.project_id = proj.id AND d.model_id IS DISTINCT FROM current_id
           AND (_deploy_strategy.algorithm IS NULL OR m.algorithm = _deploy_strategy.algorithm)
         ORDER BY d.id DESC LIMIT 1;
        IF chosen.id IS NULL THEN
            RAISE EXCEPTION 'project "%" has no earlier deployment to roll back to', project_name
                USING ERRCODE = '55000', DETAIL = 'Its deployment history holds no other model.';
        END IF;
    ELSE
        RAISE EXCEPTION 'unknown deploy strategy "%"', _deploy_strategy.strategy
            USING ERRCODE = '22023', HINT = 'Use best_score, most_recent or rollback.';
    END IF;
    IF chosen.id IS NULL THEN
        RAISE EXCEPTION 'project "%" has no model%', project_name,
              CASE WHEN _deploy_strategy.algorithm IS NULL THEN '' ELSE format(' trained with algorithm "%s"', _deploy_strategy.algorithm) END
            USING ERRCODE = '55000';
    END IF;
    INSERT INTO pgmodels.deployments (project_id, model_id, strategy) VALUES (proj.id, chosen.id, _deploy_strategy.strategy);
    RETURN chosen.id;
END
$$;
COMMENT ON FUNCTION pgmodels._deploy_strategy(text, text, text) IS 'internal: the core of deploy(project_name, strategy, algorithm) (definer: only it writes the catalog)';

CREATE FUNCTION pgmodels._deploy_model(model_id bigint) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chosen pgmodels.models;
    proj_name text;
BEGIN
    SELECT m.* INTO chosen FROM pgmodels.models m WHERE m.id = _deploy_model.model_id;
    IF chosen.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', _deploy_model.model_id USING ERRCODE = '42704';
    END IF;
    SELECT p.name INTO proj_name FROM pgmodels.projects p WHERE p.id = chosen.project_id FOR UPDATE;
    INSERT INTO pgmodels.deployments (project_id, model_id, strategy) VALUES (chosen.project_id, chosen.id, 'model_id');
    RETURN chosen.id;
END
$$;
COMMENT ON FUNCTION pgmodels._deploy_model(bigint) IS 'internal: the core of deploy(model_id) (definer: only it writes the catalog)';

-- Definer too, so that granting deploy() is all it takes; the cores are not for PUBLIC.
CREATE FUNCTION @extschema@.deploy(project_name text, strategy text, algorithm text DEFAULT NULL)
RETURNS TABLE (project text, strategy text, algorithm text, model_id bigint, version integer)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS MATERIALIZED (SELECT pgmodels._deploy_strategy($1, $2, $3) AS id)
    SELECT p.name, $2, m.algorithm, m.id, m.version
    FROM d JOIN pgmodels.models m ON m.id = d.id JOIN pgmodels.projects p ON p.id = m.project_id
$$;
COMMENT ON FUNCTION @extschema@.deploy(text, text, text) IS 'deploys a model of a project by strategy: best_score, most_recent or rollback, optionally among one algorithm''s models';

CREATE FUNCTION @extschema@.deploy(model_id bigint)
RETURNS TABLE (project text, strategy text, algorithm text, model_id bigint, version integer)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH d AS MATERIALIZED (SELECT pgmodels._deploy_model($1) AS id)
    SELECT p.name, 'model_id'::text, m.algorithm, m.id, m.version
    FROM d JOIN pgmodels.models m ON m.id = d.id JOIN pgmodels.projects p ON p.id = m.project_id
$$;
COMMENT ON FUNCTION @extschema@.deploy(bigint) IS 'deploys one model version, chosen by id';

-- 035_training.sql
-- train(): names and parameters follow PostgresML's pgml.train.
--
-- It runs with the caller's rights, so it reads only the rows and columns the caller may
-- read (row-level security included); it stores the result through
-- pgmodels._store_model(). Arguments left NULL reuse the project's previous training:
-- task, relation_name, y_column_name, test_size, test_sampling and preprocess always;
-- hyperparams, search, search_params and search_args only when algorithm is left NULL
-- too. On a project's first training the defaults are algorithm 'linear',
-- hyperparams '{}', test_size 0.25 and test_sampling 'stratified'.
CREATE FUNCTION pgmodels._train(project_name text, task text, relation_name text, y_column_name text,
    algorithm text, hyperparams jsonb, search text, search_params jsonb, search_args jsonb, test_size real,
    test_sampling text, automatic_deploy boolean, preprocess jsonb)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.training.udf import train; return train(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess)
$$;
COMMENT ON FUNCTION pgmodels._train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb) IS 'internal: the core of train()';

CREATE FUNCTION @extschema@.train(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text DEFAULT NULL,
    algorithm text DEFAULT NULL,
    hyperparams jsonb DEFAULT NULL,
    search text DEFAULT NULL,
    search_params jsonb DEFAULT NULL,
    search_args jsonb DEFAULT NULL,
    test_size real DEFAULT NULL,
    test_sampling text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    preprocess jsonb DEFAULT NULL)
RETURNS TABLE (project text, task text, algorithm text, deployed boolean, model_id bigint, version integer,
               runtime text, metrics jsonb)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._train($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb) IS 'trains a new model version of a project on a relation, converts it to ONNX, stores it and deploys it if it beats the deployed one';

-- 040_serving.sql
-- Serving: predict(), predict_proba(), predict_label(), predict_batch().
--
-- How a row is scored. The user-facing functions are one-line SQL wrappers that
-- PostgreSQL inlines into the calling query:
--
--   coalesce(core(project, id, features, statement_timestamp(), NULL),
--            core(project, id, features, statement_timestamp(), pgmodels._lookup(project, id)),
--            pgmodels._raise_pending(NULL::<result type>))
--
-- The first call answers from the backend's cache when it already holds the model this
-- statement serves; that is every row but the first, and it costs no query. Otherwise
-- it returns NULL and the second call runs: _lookup (PL/pgSQL) activates the Python
-- environment and reads the deployed model from the catalog, and the core loads it. The
-- lookup is PL/pgSQL because PL/Python's queries open subtransactions, which parallel
-- workers may not; so predict is PARALLEL SAFE for real. All of it only reads, under the
-- statement's snapshot: a committed deploy is seen by the next statement, one statement
-- never mixes two versions, and it works on a read-only hot standby. Errors the Python
-- side records are raised by _raise_pending (see sql/020_environment.sql).

CREATE TYPE pgmodels.served_model AS (
    id bigint, project text, version integer, task text, runtime text, artifact bytea,
    artifact_sha256 bytea, feature_names text[], feature_types text[], labels text, nullable text[]);
COMMENT ON TYPE pgmodels.served_model IS 'internal: what serving needs to load a model version';

-- Definer: the catalog tables are not readable by PUBLIC; this returns what predict needs.
CREATE FUNCTION pgmodels._lookup(project_name text, model_id bigint) RETURNS pgmodels.served_model
LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    chosen bigint := nullif(model_id, 0);
    served pgmodels.served_model;
BEGIN
    IF project_name IS NULL OR model_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF pgmodels._activate(current_setting('pgmodels.venv', true),
                          (SELECT e.extversion FROM pg_extension e WHERE e.extname = 'pgmodels')) IS NOT NULL THEN
        PERFORM pgmodels._raise_pending(NULL::integer);
    END IF;
    IF chosen IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pgmodels.projects p WHERE p.name = project_name) THEN
            RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704',
                HINT = 'Train one with train(), or see pgmodels.overview for the projects there are.';
        END IF;
        SELECT d.model_id INTO chosen FROM pgmodels.deployments d JOIN pgmodels.projects p ON p.id = d.project_id
         WHERE p.name = project_name ORDER BY d.id DESC LIMIT 1;
        IF chosen IS NULL THEN
            RAISE EXCEPTION 'project "%" has no deployed model', project_name USING ERRCODE = '55000',
                HINT = 'Deploy one with deploy(), or train with automatic_deploy => true.';
        END IF;
    END IF;
    SELECT m.id, p.name, m.version, m.task, m.runtime, m.artifact, m.artifact_sha256, m.feature_names,
           m.feature_types, m.labels::text, ARRAY(SELECT jsonb_array_elements_text(m.training -> 'nullable'))
      INTO served
      FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id WHERE m.id = chosen;
    IF served.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', chosen USING ERRCODE = '42704';
    END IF;
    RETURN served;
END
$$;
COMMENT ON FUNCTION pgmodels._lookup(text, bigint) IS 'internal: the model a project serves (model_id 0) or a model by id, for loading into a backend''s cache (definer: the catalog is not readable by PUBLIC)';

-- The cores and the user-facing wrappers: for each answer (predict, predict_proba,
-- predict_label), the cores take features as float8[] (arrays) or jsonb (objects, and
-- rows, which the wrappers turn into jsonb since PL/Python takes no polymorphic
-- arguments); the wrappers exist for each way of naming the model (project name, model
-- id) and each features type. The wrappers are not STRICT, since coalesce is not, but
-- NULL in gives NULL out.
DO $do$
DECLARE
    answer record;
    target record;
    ftype record;
    core text;
BEGIN
    FOR answer IN SELECT * FROM (VALUES
        ('predict', 'real', 'the prediction: the class (its label if numeric, else its index) or the value'),
        ('predict_proba', 'real[]', 'the class probabilities, in the order of the model''s labels'),
        ('predict_label', 'text', 'the predicted class label as text (classification)')) AS a(name, rettype, what)
    LOOP
        FOREACH core IN ARRAY ARRAY['float8[]', 'jsonb'] LOOP
            EXECUTE format(
                'CREATE FUNCTION pgmodels.%I(project_name text, model_id bigint, features %s, stamp timestamptz, '
                'model pgmodels.served_model) RETURNS %s LANGUAGE plpython3u STABLE PARALLEL SAFE AS %L',
                '_' || answer.name, core, answer.rettype,
                format(E'f = GD.get(\'pgmodels.%1$s\')\n'
                       || E'if f is None and \'pgmodels.active\' in GD: from pgmodels.serving.predict import %1$s as f; GD[\'pgmodels.%1$s\'] = f\n'
                       || 'return f(project_name, model_id, features, stamp, model) if f else None', answer.name));
            EXECUTE format('COMMENT ON FUNCTION pgmodels.%I(text, bigint, %s, timestamptz, pgmodels.served_model) IS %L',
                '_' || answer.name, core, format('internal: the core of %s()', answer.name));
        END LOOP;
        FOR target IN SELECT * FROM (VALUES
            ('project_name text', '$1, 0', 'the deployed model of a project'),
            ('model_id bigint', '''''::text, $1', 'a model version chosen by id')) AS t(arg, pass, what)
        LOOP
            FOR ftype IN SELECT * FROM (VALUES
                ('real[]', '$2::float8[]'), ('double precision[]', '$2'), ('numeric[]', '$2::float8[]'),
                ('integer[]', '$2::float8[]'), ('bigint[]', '$2::float8[]'), ('smallint[]', '$2::float8[]'),
                ('boolean[]', '$2::integer[]::float8[]'), ('jsonb', '$2'),
                ('anyelement', 'pg_catalog.to_jsonb($2)')) AS f(sqltype, cast_expr)
            LOOP
                EXECUTE format(
                    'CREATE FUNCTION @extschema@.%I(%s, %s %s) RETURNS %s '
                    'LANGUAGE sql STABLE PARALLEL SAFE AS %L',
                    answer.name, target.arg, CASE WHEN ftype.sqltype = 'anyelement' THEN '"row"' ELSE 'features' END,
                    ftype.sqltype, answer.rettype,
                    format('SELECT coalesce(pgmodels.%1$I(%2$s, %3$s, statement_timestamp(), NULL), '
                           'pgmodels.%1$I(%2$s, %3$s, statement_timestamp(), pgmodels._lookup(%2$s)), '
                           'pgmodels._raise_pending(NULL::%4$s))',
                           '_' || answer.name, target.pass, ftype.cast_expr, answer.rettype));
                EXECUTE format('COMMENT ON FUNCTION @extschema@.%I(%s, %s) IS %L',
                    answer.name, split_part(target.arg, ' ', 2), ftype.sqltype,
                    format('%s for %s, from features given as %s', answer.what, target.what,
                           CASE ftype.sqltype WHEN 'anyelement' THEN 'a row whose columns are named after the features'
                                              WHEN 'jsonb' THEN 'a jsonb object keyed by feature name'
                                              ELSE 'an array in feature order' END));
            END LOOP;
        END LOOP;
    END LOOP;
END
$do$;

CREATE FUNCTION pgmodels._predict_batch(project_name text, model_id bigint, features bytea, stamp timestamptz,
                                        model pgmodels.served_model)
RETURNS SETOF real LANGUAGE plpython3u STABLE PARALLEL SAFE ROWS 1000
AS $$
from pgmodels.serving.predict import predict_batch; return predict_batch(project_name, model_id, features, stamp, model)
$$;
COMMENT ON FUNCTION pgmodels._predict_batch(text, bigint, bytea, timestamptz, pgmodels.served_model) IS 'internal: the core of predict_batch(); features come as array_send(real[]), which Python reads in place';

CREATE FUNCTION @extschema@.predict_batch(project_name text, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
BEGIN
    RETURN QUERY SELECT pgmodels._predict_batch(project_name, 0, pg_catalog.array_send(features), statement_timestamp(),
                                                 pgmodels._lookup(project_name, 0));
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(text, real[]) IS 'predictions for many rows at once, given flattened into one array (or as a two-dimensional array), one result per row';

CREATE FUNCTION @extschema@.predict_batch(model_id bigint, features real[]) RETURNS SETOF real
LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE ROWS 1000
AS $$
BEGIN
    RETURN QUERY SELECT pgmodels._predict_batch('', model_id, pg_catalog.array_send(features), statement_timestamp(),
                                                 pgmodels._lookup('', model_id));
    PERFORM pgmodels._raise_pending(NULL::integer);
END
$$;
COMMENT ON FUNCTION @extschema@.predict_batch(bigint, real[]) IS 'predictions of a model version chosen by id for many rows at once, given flattened into one array';

-- 050_onnx.sql
-- ONNX in and out: models trained anywhere, and the artifact that serves.

CREATE FUNCTION pgmodels._import_onnx(project_name text, model bytea, feature_names text[], task text,
    labels jsonb, feature_types text[], deploy boolean)
RETURNS TABLE (project text, task text, model_id bigint, version integer, deployed boolean)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD and plpy.execute('SELECT pgmodels._activate() AS p')[0]['p']: return []
from pgmodels.catalog.onnx_io import import_onnx; return import_onnx(project_name, model, feature_names, task, labels, feature_types, deploy)
$$;
COMMENT ON FUNCTION pgmodels._import_onnx(text, bytea, text[], text, jsonb, text[], boolean) IS 'internal: the core of import_onnx()';

CREATE FUNCTION @extschema@.import_onnx(
    project_name text,
    model bytea,
    feature_names text[],
    task text DEFAULT NULL,
    labels jsonb DEFAULT NULL,
    feature_types text[] DEFAULT NULL,
    deploy boolean DEFAULT true)
RETURNS TABLE (project text, task text, model_id bigint, version integer, deployed boolean)
LANGUAGE sql VOLATILE
AS $$
    SELECT * FROM pgmodels._import_onnx($1, $2, $3, $4, $5, $6, $7)
    UNION ALL  -- raises the error the core recorded, if any, once the core has run
    SELECT NULL, NULL, NULL, NULL, NULL WHERE pgmodels._raise_pending(NULL::boolean)
$$;
COMMENT ON FUNCTION @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean) IS 'registers an ONNX model trained anywhere as a new version of a project, after checking that onnxruntime loads it and its inputs match the features';

-- The artifact a model serves from, byte for byte. It reads through pgmodels._lookup,
-- like predict: whoever may predict with a model may export it, and revoking EXECUTE on
-- pgmodels._lookup(text, bigint) takes both away.
CREATE FUNCTION @extschema@.export_onnx(project_name text, model_id bigint DEFAULT NULL) RETURNS bytea
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    served pgmodels.served_model := pgmodels._lookup(project_name, coalesce(export_onnx.model_id, 0));
BEGIN
    IF served.id IS NULL THEN
        RETURN NULL;
    ELSIF served.project <> project_name THEN
        RAISE EXCEPTION 'project "%" has no model %', project_name, served.id USING ERRCODE = '42704',
            DETAIL = format('Model %s belongs to project "%s".', served.id, served.project);
    ELSIF served.runtime <> 'onnx' THEN
        RAISE EXCEPTION 'model % has no ONNX artifact', served.id
            USING ERRCODE = '0A000',
                  DETAIL = format('It could not be converted to ONNX and is served natively (%s); pgmodels.models.training says why.', served.runtime),
                  HINT = 'Train it with another algorithm or preprocessing to get an ONNX model.';
    END IF;
    RETURN served.artifact;
END
$$;
COMMENT ON FUNCTION @extschema@.export_onnx(text, bigint) IS 'returns the exact ONNX artifact a model serves from: the deployed one, or the given model id';

-- 060_overview.sql
-- What is there: one row per model version.
CREATE VIEW pgmodels.overview AS
SELECT p.name AS project,
       m.id AS model_id,
       m.version,
       m.task,
       m.algorithm,
       m.runtime,
       pgmodels._key_metric(m.task, m.metrics) AS key_metric,
       m.metrics,
       (m.id = d.model_id) IS TRUE AS deployed,
       m.trained_at,
       m.trained_by,
       length(m.artifact) AS artifact_bytes
FROM pgmodels.models m
JOIN pgmodels.projects p ON p.id = m.project_id
LEFT JOIN LATERAL (SELECT d.model_id FROM pgmodels.deployments d
                   WHERE d.project_id = p.id ORDER BY d.id DESC LIMIT 1) d ON true;
COMMENT ON VIEW pgmodels.overview IS 'one row per model version: project, version, algorithm, key metric (f1 or r2), deployed or not, who trained it when, artifact size';
GRANT SELECT ON pgmodels.overview TO PUBLIC;

-- 090_grants.sql
-- Who may do what. Predicting (and exporting, which reads the same artifact) is open to
-- PUBLIC, like any function; its one gate is pgmodels._lookup(text, bigint), so
--   REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) FROM PUBLIC;
--   GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) TO app;
-- limits predict, predict_proba, predict_label, predict_batch and export_onnx to app.
-- Training, deploying and importing are for the roles an administrator grants them to,
-- for example:
--   GRANT EXECUTE ON FUNCTION train(text, text, text, text, text, jsonb, text, jsonb,
--                                   jsonb, real, text, boolean, jsonb) TO analyst;
-- pgmodels._store_model stays executable by PUBLIC: it checks the session's right to
-- train or import itself (see its comment).
REVOKE EXECUTE ON FUNCTION
    @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb),
    @extschema@.deploy(text, text, text),
    @extschema@.deploy(bigint),
    @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean),
    pgmodels._deploy_strategy(text, text, text),
    pgmodels._deploy_model(bigint)
FROM PUBLIC;
