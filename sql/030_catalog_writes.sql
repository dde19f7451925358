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
