-- Who may run what.
--
-- Training and importing are for the roles an administrator grants them to, e.g.
--   GRANT EXECUTE ON FUNCTION train(text, text, text, text, text, jsonb, text, jsonb,
--                                   jsonb, real, text, boolean, jsonb, boolean) TO analyst;
-- A project belongs to the role that first trained or imported it; only it (and its
-- members) train, import, deploy and grant there, so deploy() and grant_project() are
-- open to PUBLIC. Predicting and exporting need the project's predict or export
-- privilege (grant_project), and EXECUTE on pgmodels._lookup(text, bigint, text), which
-- PUBLIC has until an administrator revokes it: the master switch.
REVOKE EXECUTE ON FUNCTION
    @extschema@.train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    @extschema@.import_onnx(text, bytea, text[], text, jsonb, text[], boolean)
FROM PUBLIC;
-- 0.1.0 revoked deploy() from PUBLIC; say it again so an upgraded database matches.
GRANT EXECUTE ON FUNCTION @extschema@.deploy(text, text, text), @extschema@.deploy(bigint) TO PUBLIC;

-- Internal functions are internal: PUBLIC may execute none of them but the ones below,
-- and tests/test_security.py lists exactly this set. Each is safe to call directly:
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA pgmodels FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the serving cores, which the inlined predict wrappers call as the caller: they answer
    -- only from models _lookup loaded for this statement, and take no model from the caller
    -- (and the C one, which answers only from decisions the Python cache kept for the caller)
    pgmodels._predict_native(text, bigint, anyarray),
    pgmodels._predict_batch_native(text, bigint, real[]),
    pgmodels._predict(text, bigint, double precision[], double precision, boolean),
    pgmodels._predict(text, bigint, real[], double precision, boolean),
    pgmodels._predict(text, bigint, jsonb, double precision, boolean),
    pgmodels._predict_proba(text, bigint, double precision[], double precision, boolean),
    pgmodels._predict_proba(text, bigint, real[], double precision, boolean),
    pgmodels._predict_proba(text, bigint, jsonb, double precision, boolean),
    pgmodels._predict_label(text, bigint, double precision[], double precision, boolean),
    pgmodels._predict_label(text, bigint, real[], double precision, boolean),
    pgmodels._predict_label(text, bigint, jsonb, double precision, boolean),
    pgmodels._predict_batch(text, bigint, bytea, double precision, boolean),
    -- the gate: it checks the caller's credential and privilege itself (the master switch);
    -- the four-argument form checks EXECUTE on the three-argument one too
    pgmodels._lookup(text, bigint, text),
    pgmodels._lookup(text, bigint, text, boolean),
    -- error reporting: each statement reads only its own pending error
    pgmodels._pending_error(double precision),
    pgmodels._raise_pending(anyelement),
    -- who is asking: a credential only for current_user and this statement
    pgmodels._stamp(),
    pgmodels._me(),
    pgmodels._credential(),
    -- answers about privileges and metrics, as has_table_privilege does (the views use them)
    pgmodels._may(oid, bigint, text),
    pgmodels._key_metric(text, jsonb),
    -- the administrator's settings: activates only the configured environment, and shows
    -- pgmodels.* settings and whether pg_cron is loaded
    pgmodels._activate(),
    pgmodels._admin_setting(text),
    pgmodels._cron_status(),
    pgmodels._doctor(),
    pgmodels.doctor(),
    -- cores that check the caller themselves: EXECUTE on train() or import_onnx(), or a
    -- credential and project ownership, or a model this backend just staged
    pgmodels._train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean),
    pgmodels._import_onnx(text, bytea, text[], text, jsonb, text[], boolean),
    pgmodels._store_model(text),
    pgmodels._project_info(text, text),
    pgmodels._deploy_strategy(text, text, text, text),
    pgmodels._deploy_model(bigint, text),
    pgmodels._deployed(bigint, text),
    pgmodels._grant_project(text, text, text, boolean, text),
    pgmodels._export(text, bigint, text),
    -- request-response serving (sql/080_proxy.sql): cores that check the caller's
    -- credential themselves, and the token lookup, which answers only the token's holder
    pgmodels._create_api_token(name, text),
    pgmodels._revoke_api_token(bigint, text, text),
    pgmodels._may_manage_tokens(oid, oid),
    pgmodels._api_token_role(text),
    pgmodels._register_feature_source(text, regclass, text, text, text),
    pgmodels._model_metadata(text, text),
    -- the keyed read of the proxy: an invoker function (the caller's own rights) that reads
    -- only relations whose reading runs no function a role wrote; its check reads the catalog
    pgmodels._feature_rows(name, name, name, text[]),
    pgmodels._feature_source_check(oid, name, boolean)
TO PUBLIC;

-- Batch jobs (sql/070-072). Creating and altering a job (which schedules with pg_cron)
-- are for the roles an administrator grants them to; running and dropping one are for
-- its owner, whoever that is, so they are open to PUBLIC.
REVOKE EXECUTE ON FUNCTION
    @extschema@.create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval),
    @extschema@.alter_batch_job(text, text, integer, integer, interval, interval, boolean)
FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE @extschema@.run_batch_job(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.drop_batch_job(text, boolean) TO PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the vectorized core: like the other cores, it answers only from models _lookup
    -- loaded for this statement; and the error of a bad array feature
    pgmodels._score_rows(text, bigint, bytea, text[], text[], double precision, boolean),
    pgmodels._bad_array_feature(text, integer, integer),
    -- the deployed model's features, for a caller that may predict with it (credential)
    pgmodels._serving_model(text, bigint, text),
    -- the batch cores: create checks EXECUTE on create_batch_job() itself, alter on
    -- alter_batch_job(); each acts only on jobs of the credential's role
    pgmodels._create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval),
    pgmodels._batch_create(text, text, text, oid, name, oid, name, text[], integer, text, integer, interval, interval),
    pgmodels._batch_owned(text, text, boolean),
    pgmodels._batch_alter(text, text, text, boolean, integer, integer, interval, interval),
    pgmodels._batch_drop(text, text),
    pgmodels._batch_run_begin(text, text, text, text, bigint, integer, text, bigint, integer, text, text, text, text),
    pgmodels._batch_run_chunk(text, bigint, bigint, text, text),
    pgmodels._batch_run_end(text, bigint, text, bigint, text, text, text, text),
    pgmodels._batch_release(text, text),
    -- whether a run's backend still lives (the batch_runs view uses it)
    pgmodels._backend_alive(integer, timestamptz),
    -- the pg_cron entry made by hand that runs a job (the batch_jobs view uses it): for the
    -- job's owner only, by credential
    pgmodels._cron_entry(text, bigint),
    pgmodels._batch_check_settings(integer, integer, interval, interval),
    -- a name's check (sql/065_modes.sql)
    pgmodels._check_name(text, text)
TO PUBLIC;
GRANT EXECUTE ON PROCEDURE pgmodels._run_batch_job(text) TO PUBLIC;

-- Streams (sql/075-077). Making a table a stream and adding a consumer are for the roles
-- an administrator grants them to; the rest acts on what the caller owns (or, to read
-- predictions, on output tables it may read), so it is open to PUBLIC.
REVOKE EXECUTE ON FUNCTION
    @extschema@.create_stream(text, text, text),
    @extschema@.add_consumer(text, text, text, text, text, text, boolean, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    -- the stream cores: each checks the credential, the caller's ownership or privileges,
    -- and EXECUTE on create_stream() or add_consumer() where it makes something
    pgmodels._stream_get(text, text, boolean),
    pgmodels._stream_create(text, text, oid, name),
    pgmodels._stream_drop(text, text, boolean),
    pgmodels._consumer_add(text, text, text, text, oid, oid, name, boolean, integer),
    pgmodels._add_consumer(text, text, text, text, text, text, boolean, integer),
    pgmodels._consumer_get(text, text, boolean, integer[]),
    pgmodels._consumer_advance(text, bigint, integer, bigint, boolean, bigint, bigint),
    pgmodels._consumer_dead_letters(text, bigint, bigint[], text[], jsonb[], text[], text[]),
    pgmodels._consumer_drop(text, text),
    pgmodels._process_stream(text, integer),
    pgmodels._stream_waiting(text, text[], boolean),
    pgmodels._stream_inflight(bigint[]),
    -- maintenance (for owners) only removes events no consumer needs; the log's policy
    -- answers as has_table_privilege does; the lag answers only owners; a
    -- consumer's output table and channel are not secret
    pgmodels._stream_maintain(text, bigint),
    pgmodels._may_consume(bigint, oid),
    pgmodels._consumer_lag(bigint, text),
    pgmodels._consumer_output(text),
    -- a column's type if it may be an output's key, and an output's key type (invokers:
    -- they read the catalog as the caller)
    pgmodels._key_type(oid, name),
    pgmodels._consumer_keyed_output(text)
TO PUBLIC;
