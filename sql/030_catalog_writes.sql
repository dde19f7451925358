-- Writing the catalog: storing a model version, and deploying one.
--
-- Only these SECURITY DEFINER functions write pgmodels.projects, models and deployments.
-- They need the extension owner's rights because no other role may write those tables,
-- and each checks who is asking (see sql/025_privileges.sql): only a project's owner, or
-- a member of the owner role, stores, deploys or rolls back its models.

CREATE OR REPLACE FUNCTION pgmodels._key_metric(task text, metrics jsonb) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT (metrics ->> CASE task WHEN 'classification' THEN 'f1' WHEN 'clustering' THEN 'silhouette'
                                     WHEN 'decomposition' THEN 'cumulative_explained_variance' ELSE 'r2' END)::double precision $$;
COMMENT ON FUNCTION pgmodels._key_metric(text, jsonb) IS 'internal: the metric deploy compares models by: f1 for classification, r2 for regression (joint: averaged over the targets), silhouette for clustering, cumulative_explained_variance for decomposition';


-- A new project's name: plain enough to pass for no other (pgmodels._check_name) and not
-- an existing project's but for case, which would pose as it in the console, /metrics
-- and bundles. The unique index projects_name_lower_key (sql/010_catalog.sql) refuses
-- the same when two sessions make both at once. Case is as the database's lower() sees
-- it (with a C collation, ASCII letters only). Not a definer: the definer functions that
-- make projects call it, and only they.
CREATE OR REPLACE FUNCTION pgmodels._check_new_project(project_name text) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    existing text;
BEGIN
    PERFORM pgmodels._check_name('project', project_name);
    SELECT p.name INTO existing FROM pgmodels.projects p
     WHERE lower(p.name) = lower(project_name) AND p.name <> project_name
     ORDER BY p.id LIMIT 1;
    IF existing IS NOT NULL THEN
        RAISE EXCEPTION 'project "%" differs from project "%" only in case', project_name, existing
            USING ERRCODE = '42710',
                  DETAIL = 'Project names that differ only in case would pass for one another in the console, in /metrics and in bundles.',
                  HINT = format('Use project "%s", or a name that differs by more than case.', existing);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._check_new_project(text) IS 'internal: raises unless a new project''s name passes _check_name and is no existing project''s but for case';

-- Storing a model version. train() and import_onnx() run with the caller's rights (so
-- training reads only what the caller may read); when they have a checked model they
-- stage it in the backend's Python state under a one-time random token, together with
-- the role that called them, and call _store_model(token). Nothing reaches the catalog
-- that this backend's own train() or import_onnx() did not just produce: a direct call
-- has no staged model to name. The staged role must own the project (a new project
-- becomes its own).
CREATE OR REPLACE FUNCTION pgmodels._take_staged(token text,
    OUT role oid, OUT project_name text, OUT task text, OUT algorithm text, OUT runtime text, OUT artifact bytea,
    OUT hyperparams jsonb, OUT metrics jsonb, OUT search_results jsonb, OUT feature_names text[],
    OUT feature_types text[], OUT labels jsonb, OUT training jsonb, OUT library_versions jsonb,
    OUT last_train jsonb, OUT deploy_mode text, OUT native_trees bytea)
LANGUAGE plpython3u VOLATILE
AS $$
if 'pgmodels.active' not in GD: return None  # nothing was staged in this backend
from pgmodels.catalog.store import take_staged; return take_staged(token)
$$;
COMMENT ON FUNCTION pgmodels._take_staged(text) IS 'internal: takes the model train() or import_onnx() staged in this backend under a one-time token';

CREATE OR REPLACE FUNCTION pgmodels._store_model(token text, OUT model_id bigint, OUT version integer, OUT deployed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s record;
    proj pgmodels.projects;
    current_model pgmodels.models;
BEGIN
    SELECT * INTO s FROM pgmodels._take_staged(token);
    IF s.role IS NULL THEN
        RAISE EXCEPTION 'no model is staged under this token'
            USING ERRCODE = '42501',
                  DETAIL = 'Only train() and import_onnx() store models, each the one it has just made and checked.';
    ELSIF s.deploy_mode IS NULL OR s.deploy_mode NOT IN ('if_better', 'always', 'never') THEN
        RAISE EXCEPTION 'unknown deploy mode "%"', s.deploy_mode USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgmodels.projects p WHERE p.name = s.project_name) THEN
        PERFORM pgmodels._check_new_project(s.project_name);
    END IF;
    -- no conflict target: a project of this name, or of this name but for case that another
    -- session has just made (projects_name_lower_key), leaves the insert undone
    INSERT INTO pgmodels.projects AS p (name, task, owner) VALUES (s.project_name, s.task, s.role)
        ON CONFLICT DO NOTHING;
    SELECT * INTO proj FROM pgmodels.projects p WHERE p.name = s.project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        PERFORM pgmodels._check_new_project(s.project_name);  -- raises: the other session's name is seen now
        RAISE EXCEPTION 'could not create project "%"', s.project_name USING ERRCODE = '40001',
            DETAIL = 'Another session was creating a project of the same name but for case.',
            HINT = 'Try again.';
    END IF;
    PERFORM pgmodels._require_owner(s.role, proj);
    IF proj.task <> s.task THEN
        RAISE EXCEPTION 'project "%" is a % project, not %', s.project_name, proj.task, s.task
            USING ERRCODE = '22023', HINT = 'Use another project name for another task.';
    END IF;
    SELECT coalesce(max(m.version), 0) + 1 INTO version FROM pgmodels.models m WHERE m.project_id = proj.id;
    INSERT INTO pgmodels.models (project_id, version, task, algorithm, runtime, artifact, artifact_sha256,
                                 hyperparams, metrics, search_results, feature_names, feature_types, labels,
                                 training, library_versions, native_trees)
    VALUES (proj.id, version, s.task, s.algorithm, s.runtime, s.artifact, pg_catalog.sha256(s.artifact),
            coalesce(s.hyperparams, '{}'), coalesce(s.metrics, '{}'), s.search_results, s.feature_names,
            s.feature_types, s.labels, coalesce(s.training, '{}'), coalesce(s.library_versions, '{}'),
            s.native_trees)
    RETURNING id INTO model_id;
    IF s.last_train IS NOT NULL THEN
        UPDATE pgmodels.projects p SET last_train = s.last_train WHERE p.id = proj.id;
    END IF;

    SELECT m.* INTO current_model FROM pgmodels.deployments d JOIN pgmodels.models m ON m.id = d.model_id
     WHERE d.project_id = proj.id ORDER BY d.id DESC LIMIT 1;
    -- A model whose key metric is undefined (no test rows, say) is kept, never deployed by itself.
    deployed := CASE s.deploy_mode
        WHEN 'always' THEN true
        WHEN 'if_better' THEN pgmodels._key_metric(s.task, s.metrics) IS NOT NULL
             AND (current_model.id IS NULL
                  OR pgmodels._key_metric(s.task, s.metrics)
                     > coalesce(pgmodels._key_metric(s.task, current_model.metrics), '-Infinity'))
        ELSE false END;
    IF deployed THEN
        INSERT INTO pgmodels.deployments (project_id, model_id, strategy)
        VALUES (proj.id, model_id, CASE s.deploy_mode WHEN 'always' THEN 'import' ELSE 'automatic' END);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._store_model(text) IS 'internal: stores the model version train() or import_onnx() staged under a token (and deploys it if asked), after checking that the staging role owns the project';

-- A project's task and last train() arguments, for its owner (train() reuses them).
CREATE OR REPLACE FUNCTION pgmodels._project_info(project_name text, credential text, OUT task text, OUT last_train jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
BEGIN
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.name = project_name;
    IF proj.id IS NOT NULL THEN
        PERFORM pgmodels._require_owner(caller, proj);
        task := proj.task;
        last_train := proj.last_train;
    ELSE
        -- a new project: its name is checked before any training (and again when stored)
        PERFORM pgmodels._check_new_project(project_name);
    END IF;
END
$$;
COMMENT ON FUNCTION pgmodels._project_info(text, text) IS 'internal: a project''s task and last train() arguments, for its owner, or for a new project the check of its name (definer: the catalog is not readable by PUBLIC)';

-- deploy() is a SQL function over these two: PL/pgSQL cannot have an argument and a
-- result column of the same name, and pgml's deploy() has both (strategy, algorithm).
CREATE OR REPLACE FUNCTION pgmodels._deploy_strategy(project_name text, strategy text, algorithm text, credential text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    proj pgmodels.projects;
    chosen pgmodels.models;
    current_id bigint;
BEGIN
    SELECT * INTO proj FROM pgmodels.projects p WHERE p.name = project_name FOR UPDATE;
    IF proj.id IS NULL THEN
        RAISE EXCEPTION 'project "%" does not exist', project_name USING ERRCODE = '42704';
    END IF;
    PERFORM pgmodels._require_owner(caller, proj);
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
COMMENT ON FUNCTION pgmodels._deploy_strategy(text, text, text, text) IS 'internal: the core of deploy(project_name, strategy, algorithm) (definer: only it writes the catalog)';

CREATE OR REPLACE FUNCTION pgmodels._deploy_model(model_id bigint, credential text) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    caller oid := pgmodels._verify_caller(credential);
    chosen pgmodels.models;
    proj pgmodels.projects;
BEGIN
    SELECT m.* INTO chosen FROM pgmodels.models m WHERE m.id = _deploy_model.model_id;
    IF chosen.id IS NULL THEN
        RAISE EXCEPTION 'model % does not exist', _deploy_model.model_id USING ERRCODE = '42704';
    END IF;
    SELECT p.* INTO proj FROM pgmodels.projects p WHERE p.id = chosen.project_id FOR UPDATE;
    PERFORM pgmodels._require_owner(caller, proj);
    INSERT INTO pgmodels.deployments (project_id, model_id, strategy) VALUES (chosen.project_id, chosen.id, 'model_id');
    RETURN chosen.id;
END
$$;
COMMENT ON FUNCTION pgmodels._deploy_model(bigint, text) IS 'internal: the core of deploy(model_id) (definer: only it writes the catalog)';

-- The deploy() functions run as the caller and pass its credential to the definer cores,
-- which check ownership; so they are open to PUBLIC: a role deploys only its own projects.
CREATE OR REPLACE FUNCTION pgmodels._deployed(model_id bigint, credential text)
RETURNS TABLE (project text, algorithm text, model_id bigint, version integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.name, m.algorithm, m.id, m.version FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id
     WHERE m.id = $1 AND pgmodels._may(pgmodels._verify_caller($2), p.id, 'owner')
$$;
COMMENT ON FUNCTION pgmodels._deployed(bigint, text) IS 'internal: the project, algorithm and version of a model id, for deploy()''s result';

CREATE OR REPLACE FUNCTION @extschema@.deploy(project_name text, strategy text, algorithm text DEFAULT NULL)
RETURNS TABLE (project text, strategy text, algorithm text, model_id bigint, version integer)
LANGUAGE sql VOLATILE
AS $$
    WITH d AS MATERIALIZED (SELECT pgmodels._deploy_strategy($1, $2, $3, pgmodels._credential()) AS id)
    SELECT r.project, $2, r.algorithm, r.model_id, r.version FROM d, pgmodels._deployed(d.id, pgmodels._credential()) r
$$;
COMMENT ON FUNCTION @extschema@.deploy(text, text, text) IS 'deploys a model of a project by strategy: best_score, most_recent or rollback, optionally among one algorithm''s models';

CREATE OR REPLACE FUNCTION @extschema@.deploy(model_id bigint)
RETURNS TABLE (project text, strategy text, algorithm text, model_id bigint, version integer)
LANGUAGE sql VOLATILE
AS $$
    WITH d AS MATERIALIZED (SELECT pgmodels._deploy_model($1, pgmodels._credential()) AS id)
    SELECT r.project, 'model_id'::text, r.algorithm, r.model_id, r.version FROM d, pgmodels._deployed(d.id, pgmodels._credential()) r
$$;
COMMENT ON FUNCTION @extschema@.deploy(bigint) IS 'deploys one model version, chosen by id';
