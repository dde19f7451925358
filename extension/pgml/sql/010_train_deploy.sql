-- pgml.train, pgml.deploy and pgml.version: PostgresML's signatures and result shapes
-- over pgmodels' own train() and deploy(). Each file runs in a DO block that puts the
-- schema pgmodels was installed in where the text says @pgmodels@ (PostgreSQL 15 has no
-- @extschema:pgmodels@; pgmodels is not relocatable, so the name cannot change later).
--
-- Everything runs with the caller's rights: pgmodels' functions do the privilege checks
-- (only a project's owner trains and deploys; the catalog is written by pgmodels' definer
-- cores), so nothing here is SECURITY DEFINER.
DO $pgml$
DECLARE
    s text := (SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_extension e
               JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pgmodels');
BEGIN
EXECUTE pg_catalog.replace($sql$

CREATE OR REPLACE FUNCTION pgml.version() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 'pgmodels ' || e.extversion || ' (pgml compatibility)' FROM pg_catalog.pg_extension e WHERE e.extname = 'pgmodels' $$;
COMMENT ON FUNCTION pgml.version() IS 'the pgmodels version behind the pgml schema';

-- PostgresML's own check of a runtime name: 'python' and 'rust' are accepted and mean the
-- same here (pgmodels fits with Python and serves through ONNX, or natively where ONNX
-- cannot represent the model), anything else is an error.
CREATE OR REPLACE FUNCTION pgml._check_runtime(runtime text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF runtime IS NOT NULL AND runtime NOT IN ('python', 'rust') THEN
        RAISE EXCEPTION 'invalid runtime "%"', runtime
            USING ERRCODE = '22023', HINT = 'Use ''python'' or ''rust'' (pgmodels serves both through ONNX).';
    END IF;
    RETURN true;
END
$$;
COMMENT ON FUNCTION pgml._check_runtime(text) IS 'internal: refuses a runtime PostgresML would not know';

-- The algorithm PostgresML trains when it is left at its default 'linear': k-means for a
-- clustering project, PCA for a decomposition one.
CREATE OR REPLACE FUNCTION pgml._algorithm(project_name text, task text, algorithm text) RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN $3 = 'linear' THEN
                CASE coalesce($2, (SELECT o.task FROM pgmodels.overview o WHERE o.project = $1 LIMIT 1))
                    WHEN 'clustering' THEN 'kmeans' WHEN 'decomposition' THEN 'pca' ELSE $3 END
                ELSE $3 END
$$;
COMMENT ON FUNCTION pgml._algorithm(text, text, text) IS 'internal: PostgresML''s default algorithm for a project''s task';

-- PostgresML's defaults: algorithm 'linear' (k-means for clustering, PCA for
-- decomposition), hyperparams '{}', test_size 0.25, 'stratified'. Without a relation the
-- project's last training data (and its split) is reused, as PostgresML reuses its last
-- snapshot, so the split arguments are passed only with a relation.
CREATE OR REPLACE FUNCTION pgml.train(
    project_name text,
    task text DEFAULT NULL,
    relation_name text DEFAULT NULL,
    y_column_name text DEFAULT NULL,
    algorithm text DEFAULT 'linear',
    hyperparams jsonb DEFAULT '{}',
    search text DEFAULT NULL,
    search_params jsonb DEFAULT '{}',
    search_args jsonb DEFAULT '{}',
    test_size real DEFAULT 0.25,
    test_sampling text DEFAULT 'stratified',
    runtime text DEFAULT NULL,
    automatic_deploy boolean DEFAULT true,
    materialize_snapshot boolean DEFAULT false,
    preprocess jsonb DEFAULT '{}')
RETURNS TABLE (project text, task text, algorithm text, deployed boolean)
LANGUAGE sql VOLATILE
AS $$
    SELECT t.project, t.task, t.algorithm, t.deployed
      FROM @pgmodels@.train(
          $1, $2, $3, $4, pgml._algorithm($1, $2, $5), $6, $7, $8, $9,
          CASE WHEN $3 IS NOT NULL THEN $10 END, CASE WHEN $3 IS NOT NULL THEN $11 END,
          CASE WHEN pgml._check_runtime($12) THEN coalesce($13, false) END,
          CASE WHEN $3 IS NOT NULL THEN $15 END, $14) t
$$;
COMMENT ON FUNCTION pgml.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, text, boolean, boolean, jsonb) IS 'PostgresML''s train(): trains a model version with pgmodels'' train() and returns project, task, algorithm and whether it was deployed';

-- PostgresML's strategies: best_score, most_recent, rollback, and new_score, which
-- deploys the newest model (of the algorithm, if one is given) when it scores better than
-- the deployed one (the rule automatic deployment follows; recorded as most_recent, which
-- is what it deployed) and otherwise leaves the deployment as it is. An algorithm with no
-- model is the error the other strategies give.
-- (PL/pgSQL cannot name an argument and a result column alike, hence the core.)
CREATE OR REPLACE FUNCTION pgml._deploy(project_name text, strategy_name text, algorithm_name text)
RETURNS TABLE (project_out text, strategy_out text, algorithm_out text)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    strategy text := strategy_name;
    algorithm text := algorithm_name;
    newest record;
    current_metric double precision;
BEGIN
    IF strategy = 'new_score' THEN
        SELECT o.model_id, o.key_metric, o.deployed INTO newest FROM pgmodels.overview o
         WHERE o.project = _deploy.project_name AND (algorithm_name IS NULL OR o.algorithm = algorithm_name)
         ORDER BY o.version DESC LIMIT 1;
        current_metric := (SELECT d.key_metric FROM pgmodels.overview d WHERE d.project = _deploy.project_name AND d.deployed
                            LIMIT 1);
        IF newest.model_id IS NULL OR (NOT newest.deployed AND newest.key_metric IS NOT NULL
                                       AND newest.key_metric > coalesce(current_metric, '-Infinity')) THEN
            -- the newest model of the algorithm (or the error for an algorithm without one)
            RETURN QUERY SELECT d.project, 'new_score'::text, d.algorithm
                           FROM @pgmodels@.deploy(project_name, 'most_recent', algorithm_name) d;
        ELSIF NOT @pgmodels@.has_project_privilege(current_user::text, project_name, 'owner') THEN
            RAISE EXCEPTION 'permission denied for project "%"', project_name
                USING ERRCODE = '42501', DETAIL = 'Only the project''s owner may deploy its models.';
        ELSE  -- the newest does not score better: the deployed model stays
            RETURN QUERY SELECT o.project, 'new_score'::text, o.algorithm FROM pgmodels.overview o
                          WHERE o.project = _deploy.project_name AND o.deployed;
        END IF;
        RETURN;
    END IF;
    IF strategy = 'specific' THEN
        RAISE EXCEPTION 'strategy "specific" needs a model id'
            USING ERRCODE = '22023', HINT = 'Call pgml.deploy(model_id) instead.';
    END IF;
    RETURN QUERY SELECT d.project, d.strategy, d.algorithm FROM @pgmodels@.deploy(project_name, strategy, algorithm) d;
END
$$;
COMMENT ON FUNCTION pgml._deploy(text, text, text) IS 'internal: the core of pgml.deploy(project_name, strategy, algorithm)';

CREATE OR REPLACE FUNCTION pgml.deploy(project_name text, strategy text, algorithm text DEFAULT NULL)
RETURNS TABLE (project text, strategy text, algorithm text)
LANGUAGE sql VOLATILE
AS $$ SELECT * FROM pgml._deploy($1, $2, $3) $$;
COMMENT ON FUNCTION pgml.deploy(text, text, text) IS 'PostgresML''s deploy(): deploys a project''s model by best_score, most_recent, rollback or new_score, optionally among one algorithm''s models';

CREATE OR REPLACE FUNCTION pgml.deploy(model_id bigint)
RETURNS TABLE (project text, strategy text, algorithm text)
LANGUAGE sql VOLATILE
AS $$ SELECT d.project, 'specific'::text, d.algorithm FROM @pgmodels@.deploy($1) d $$;
COMMENT ON FUNCTION pgml.deploy(bigint) IS 'PostgresML''s deploy(model_id): deploys one model version';

$sql$, '@pgmodels@', s);
END
$pgml$;
