"""Who may train, deploy and predict: the privilege model, and training reading only what
the caller may read. The attacks of a LOGIN-only role are in test_attacks.py."""

from __future__ import annotations

import psycopg

from dbhelpers import sql_error
from lifecycle_data import make_numeric

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
ROW = "ARRAY[1, 2, 3, 4]"


def visible_projects(c) -> set[str]:
    return {r[0] for r in c.execute("SELECT DISTINCT project FROM pgmodels.overview")}


def test_training_needs_a_grant_and_read_access(conn, make_role, name):
    rolname, alice = make_role(name + "_alice")
    table = name + "_data"
    make_numeric(conn, table)
    err = sql_error(alice, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, table])
    assert err.sqlstate == "42501" and "train" in err.diag.message_primary
    # the core refuses too: it checks the caller's right to run train() itself
    assert alice.execute("SELECT * FROM pgmodels._train(%s, 'classification', %s, 'y', NULL, NULL, NULL, NULL, "
                         "NULL, NULL, NULL, true, NULL, false)", [name, table]).fetchall() == []
    # its error is recorded for that statement only, and raised by nobody else
    assert alice.execute("SELECT * FROM pgmodels._pending_error(pgmodels._stamp())").fetchall() == []
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    err = sql_error(alice, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, table])
    assert err.sqlstate == "42501" and table in err.diag.message_primary
    conn.execute(f"GRANT SELECT (a, b, y) ON {table} TO {rolname}")  # not c, d
    err = sql_error(alice, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, table])
    assert err.sqlstate == "42501" and "c, d" in err.diag.message_detail
    conn.execute(f"GRANT SELECT ON {table} TO {rolname}")
    row = alice.execute("SELECT deployed FROM train(%s, 'classification', %s, 'y')", [name, table]).fetchone()
    assert row == (True,)
    assert alice.execute("SELECT trained_by, owner FROM pgmodels.overview WHERE project = %s",
                         [name]).fetchone() == (rolname, rolname)
    # the owner predicts, deploys and rolls back its own project; the catalog stays closed
    assert alice.execute(f"SELECT predict(%s, {ROW})", [name]).fetchone()[0] in (0.0, 1.0)
    for statement in ("DELETE FROM pgmodels.models", "UPDATE pgmodels.deployments SET model_id = 1",
                      "SELECT artifact FROM pgmodels.models", "SELECT * FROM pgmodels.project_grants",
                      "SELECT key FROM pgmodels._secret"):
        assert sql_error(alice, statement).sqlstate == "42501"
    assert alice.execute("SELECT strategy FROM deploy(%s, 'most_recent')", [name]).fetchone() == ("most_recent",)


def test_projects_belong_to_their_owner_and_grants_decide_the_rest(conn, make_role, name):
    owner_name, owner = make_role(name + "_owner")
    app_name, app = make_role(name + "_app")
    make_numeric(conn, name)
    conn.execute(f"GRANT SELECT ON {name} TO {owner_name}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {owner_name}, {app_name}")
    owner.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    # another role sees nothing of it, may not predict, export, train, deploy or grant
    assert name not in visible_projects(app)
    err = sql_error(app, f"SELECT predict(%s, {ROW})", [name])
    assert err.sqlstate == "42501" and err.diag.message_primary == f'permission denied for project "{name}"'
    assert "grant_project" in err.diag.message_hint
    assert sql_error(app, "SELECT export_onnx(%s)", [name]).sqlstate == "42501"
    assert sql_error(app, "SELECT * FROM deploy(%s, 'most_recent')", [name]).sqlstate == "42501"
    assert sql_error(app, "SELECT grant_project(%s, %s, 'all')", [name, app_name]).sqlstate == "42501"
    conn.execute(f"GRANT SELECT ON {name} TO {app_name}")
    err = sql_error(app, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    assert err.sqlstate == "42501" and err.diag.message_primary == f'must be owner of project "{name}"'
    assert owner_name in err.diag.message_detail
    # predict granted: predict, not export
    owner.execute("SELECT grant_project(%s, %s, 'predict')", [name, app_name])
    app2 = psycopg.connect(app.info.dsn + " password=pw", autocommit=True)
    assert app2.execute(f"SELECT predict(%s, {ROW})", [name]).fetchone()[0] in (0.0, 1.0)
    assert sql_error(app2, "SELECT export_onnx(%s)", [name]).sqlstate == "42501"
    assert name in visible_projects(app2)
    assert app2.execute("SELECT grantee, privilege FROM pgmodels.project_privileges WHERE project = %s",
                        [name]).fetchall() == [(app_name, "predict")]
    assert app2.execute("SELECT has_project_privilege(%s, %s, 'export')", [app_name, name]).fetchone() == (False,)
    # export granted; then everything revoked, seen by the next statement
    owner.execute("SELECT grant_project(%s, %s, 'export')", [name, app_name])
    assert len(bytes(app2.execute("SELECT export_onnx(%s)", [name]).fetchone()[0])) > 100
    owner.execute("SELECT revoke_project(%s, %s)", [name, app_name])
    assert sql_error(app2, f"SELECT predict(%s, {ROW})", [name]).sqlstate == "42501"
    assert name not in visible_projects(app2)
    # PUBLIC, and membership in the owner role
    owner.execute("SELECT grant_project(%s, 'public', 'predict')", [name])
    assert app2.execute(f"SELECT predict(%s, {ROW})", [name]).fetchone()[0] in (0.0, 1.0)
    conn.execute(f"GRANT {owner_name} TO {app_name}")
    assert app2.execute("SELECT strategy FROM deploy(%s, 'most_recent')", [name]).fetchone() == ("most_recent",)
    app2.close()


def test_grant_errors_are_clear(conn, make_role, name):
    owner_name, owner = make_role(name + "_owner")
    make_numeric(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    for args, sqlstate, message in [
        (("no_such_project", owner_name, "predict"), "42704", 'project "no_such_project" does not exist'),
        ((name, "no_such_role", "predict"), "42704", 'role "no_such_role" does not exist'),
        ((name, owner_name, "train"), "22023", 'unrecognized privilege type "train"'),
    ]:
        err = sql_error(conn, "SELECT grant_project(%s, %s, %s)", list(args))
        assert (err.sqlstate, err.diag.message_primary) == (sqlstate, message)


def test_predicting_and_exporting_have_a_master_switch(conn, make_role, name):
    rolname, bob = make_role(name + "_bob")
    make_numeric(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    conn.execute("SELECT grant_project(%s, 'public', 'all')", [name])
    assert len(bytes(bob.execute("SELECT export_onnx(%s)", [name]).fetchone()[0])) > 0
    conn.execute("REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) FROM PUBLIC")
    try:
        fresh = psycopg.connect(bob.info.dsn + " password=pw", autocommit=True)
        assert sql_error(fresh, f"SELECT predict(%s, {ROW})", [name]).sqlstate == "42501"
        assert sql_error(fresh, "SELECT export_onnx(%s)", [name]).sqlstate == "42501"
        conn.execute(f"GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO {rolname}")
        assert fresh.execute(f"SELECT predict(%s, {ROW})", [name]).fetchone()[0] in (0.0, 1.0)
        fresh.close()
    finally:
        conn.execute("GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO PUBLIC")


def test_training_sees_only_the_rows_row_level_security_allows(conn, make_role, name):
    rolname, alice = make_role(name + "_alice")
    make_numeric(conn, name)
    conn.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
    conn.execute(f"CREATE POLICY half ON {name} FOR SELECT TO {rolname} USING (a < 8)")
    conn.execute(f"GRANT SELECT ON {name} TO {rolname}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    alice.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    visible = conn.execute(f"SELECT count(*) FROM {name} WHERE a < 8").fetchone()[0]
    rows = conn.execute("SELECT (training ->> 'rows')::int FROM pgmodels.models m JOIN pgmodels.projects p "
                        "ON p.id = m.project_id WHERE p.name = %s", [name]).fetchone()[0]
    assert rows == visible < 300


def test_definer_functions_pin_their_search_path(conn):
    loose = conn.execute("""SELECT p.oid::regprocedure::text FROM pg_proc p
                            JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmodels'
                            WHERE p.prosecdef AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
                         """).fetchall()
    assert loose == []


# Every internal function PUBLIC may execute, and why that is safe (sql/090_grants.sql).
PUBLIC_INTERNALS = {
    # serving cores: answer only from models _lookup loaded for this statement
    "pgmodels._predict_native(text,bigint,anyarray)",
    "pgmodels._predict_batch_native(text,bigint,real[])",
    "pgmodels._predict(text,bigint,double precision[],double precision,boolean)",
    "pgmodels._predict(text,bigint,jsonb,double precision,boolean)",
    "pgmodels._predict(text,bigint,real[],double precision,boolean)",
    "pgmodels._predict_proba(text,bigint,real[],double precision,boolean)",
    "pgmodels._predict_label(text,bigint,real[],double precision,boolean)",
    "pgmodels._predict_proba(text,bigint,double precision[],double precision,boolean)",
    "pgmodels._predict_proba(text,bigint,jsonb,double precision,boolean)",
    "pgmodels._predict_label(text,bigint,double precision[],double precision,boolean)",
    "pgmodels._predict_label(text,bigint,jsonb,double precision,boolean)",
    "pgmodels._predict_batch(text,bigint,bytea,double precision,boolean)",
    # the gate: checks the caller's credential and project privilege
    "pgmodels._lookup(text,bigint,text)",
    # a session's own pending error
    "pgmodels._pending_error(double precision)", "pgmodels._raise_pending(anyelement)",
    # credentials only for current_user and this statement
    "pgmodels._stamp()", "pgmodels._me()", "pgmodels._credential()",
    # answers, as has_table_privilege does
    "pgmodels._may(oid,bigint,text)", "pgmodels._key_metric(text,jsonb)",
    # the administrator's settings, read-only; activation of the configured environment only
    "pgmodels._activate()", "pgmodels._admin_setting(text)", "pgmodels._cron_status()", "pgmodels._doctor()",
    "pgmodels.doctor()",
    # cores that check the caller themselves
    "pgmodels._train(text,text,text,text,text,jsonb,text,jsonb,jsonb,real,text,boolean,jsonb,boolean)",
    "pgmodels._import_onnx(text,bytea,text[],text,jsonb,text[],boolean)",
    "pgmodels._store_model(text)", "pgmodels._project_info(text,text)",
    "pgmodels._deploy_strategy(text,text,text,text)", "pgmodels._deploy_model(bigint,text)",
    "pgmodels._deployed(bigint,text)", "pgmodels._grant_project(text,text,text,boolean,text)",
    "pgmodels._export(text,bigint,text)",
    # edge: export_bundle's core and the bundle endpoint's ETag query check the caller's
    # credential and export privilege (the signing key's functions are not PUBLIC's)
    "pgmodels._export_bundle(text,bigint,text,jsonb,text)", "pgmodels._edge_current(text,text)",
    "pgmodels._edge_options(text,bigint,jsonb,text)", "pgmodels._check_rows(regclass)",
    # and their forms for a device id (the canary's candidate for the devices in its share)
    "pgmodels._edge_current(text,text,text)", "pgmodels._export_device_bundle(text,text,text)",
    # request-response serving: cores that check the caller's credential, the token lookup
    "pgmodels._create_api_token(name,text)", "pgmodels._revoke_api_token(bigint,text,text)",
    "pgmodels._may_manage_tokens(oid,oid)", "pgmodels._api_token_role(text)",
    "pgmodels._register_feature_source(text,regclass,text,text,text)", "pgmodels._model_metadata(text,text)",
    # the proxy's keyed read: an invoker function, and its check, which reads the catalog
    "pgmodels._feature_rows(name,name,name,text[])", "pgmodels._feature_source_check(oid,name,boolean)",
    # batch: the vectorized core (answers only from _lookup's models), a row's error, the
    # deployed model's features for a caller that may predict; the job cores, which check
    # the credential (and EXECUTE on create/alter_batch_job) and act on its role's jobs
    "pgmodels._score_rows(text,bigint,bytea,text[],text[],double precision,boolean)",
    "pgmodels._bad_array_feature(text,integer,integer)", "pgmodels._serving_model(text,bigint,text)",
    "pgmodels._create_batch_job(text,text,text,text,text,text,text,text[],integer,integer,interval,interval)",
    "pgmodels._batch_create(text,text,text,oid,name,oid,name,text[],integer,text,integer,interval,interval)",
    "pgmodels._batch_owned(text,text,boolean)",
    "pgmodels._batch_alter(text,text,text,boolean,integer,integer,interval,interval)",
    "pgmodels._batch_drop(text,text)",
    "pgmodels._batch_run_begin(text,text,text,text,bigint,integer,text,bigint,integer,text,text,text,text)",
    "pgmodels._batch_run_chunk(text,bigint,bigint,text,text)", "pgmodels._batch_run_end(text,bigint,text,bigint,text,text,text,text)",
    "pgmodels._batch_release(text,text)", "pgmodels._backend_alive(integer,timestamp with time zone)",
    "pgmodels._cron_entry(text,bigint)",
    "pgmodels._batch_check_settings(integer,integer,interval,interval)", "pgmodels._check_name(text,text)",
    "pgmodels._run_batch_job(text)",
    # streams: cores that check the credential (and EXECUTE on create_stream or
    # add_consumer where they make something); maintenance removes only what no consumer
    # needs; the lag answers owners only; a consumer's output and channel are not secret
    "pgmodels._stream_get(text,text,boolean)", "pgmodels._stream_create(text,text,oid,name)",
    "pgmodels._stream_drop(text,text,boolean)", "pgmodels._consumer_add(text,text,text,text,oid,oid,name,boolean,integer)",
    "pgmodels._add_consumer(text,text,text,text,text,text,boolean,integer)", "pgmodels._consumer_get(text,text,boolean,integer[])",
    "pgmodels._consumer_advance(text,bigint,integer,bigint,boolean,bigint,bigint)",
    "pgmodels._consumer_dead_letters(text,bigint,bigint[],text[],jsonb[],text[],text[])",
    "pgmodels._consumer_drop(text,text)", "pgmodels._process_stream(text,integer)",
    "pgmodels._stream_waiting(text,text[],boolean)", "pgmodels._stream_inflight(bigint[])", "pgmodels._stream_maintain(text,bigint)", "pgmodels._may_consume(bigint,oid)",
    "pgmodels._consumer_lag(bigint,text)", "pgmodels._consumer_output(text)",
    # an output key's type: catalog reads, as the caller
    "pgmodels._key_type(oid,name)", "pgmodels._consumer_keyed_output(text)",
    # monitoring (sql/100-101): cores that check the credential, the project's privileges
    # and the monitor's owner themselves; the PL/Python cores run as the caller
    "pgmodels._drift_reference(text,bigint,text)",
    "pgmodels._set_monitor_thresholds(text,text,double precision,double precision,double precision,"
    "double precision,double precision,integer,text)",
    "pgmodels._monitor_create(text,text,oid,text,text,boolean)", "pgmodels._monitor_get(text,bigint)",
    "pgmodels._drift_report_write(text,bigint,bigint,timestamp with time zone,timestamp with time zone,bigint,"
    "text,text[],jsonb,jsonb)",
    "pgmodels._drift_report_decide(text,bigint,jsonb)", "pgmodels._store_reference(text,bigint,jsonb)",
    "pgmodels._drop_monitor(text,bigint)", "pgmodels._model_lineage(bigint,text)",
    "pgmodels._stage_profile(bigint,text)",
    "pgmodels._drift(text,text,bigint,timestamp with time zone,text)",
    "pgmodels._set_reference(text,text,bigint,text)", "pgmodels._monitor(text,text,text,text,boolean)",
    "pgmodels._run_monitor(bigint)", "pgmodels._model_lineage_rows(bigint)",
    "pgmodels._monitor_retrain_with(text,bigint,jsonb)", "pgmodels._set_monitor_retrain(bigint,text,jsonb,jsonb)",
    # model families and snapshots (sql/120): the joint training core and the snapshot
    # cores check EXECUTE on train() (and the snapshot ones a credential); the vector
    # serving cores answer only from models _lookup loaded for this statement
    "pgmodels._train_joint(text,text,text,text[],text,jsonb,text,jsonb,jsonb,real,text,boolean,jsonb,boolean)",
    "pgmodels._snapshot_create(oid,oid,text)", "pgmodels._snapshot(text)",
    # and the snapshot checks training runs before reading one (they read the catalog)
    "pgmodels._snapshot_schema_check()", "pgmodels._snapshot_check(oid)",
    # and the type a snapshot gives a column, which the caller converts it to (reads pg_type)
    "pgmodels._snapshot_type(oid,integer)",
    "pgmodels._predict_vector(text,bigint,double precision[],double precision,boolean,text)",
    "pgmodels._predict_vector(text,bigint,jsonb,double precision,boolean,text)",
    # explanations (sql/125_explain.sql): stores only a record this backend's train() staged;
    # the gate, which checks the credential and the explain privilege; the cores, which answer
    # only from what the gate loaded for this statement
    "pgmodels._store_explainer(text)", "pgmodels._explain_lookup(text,bigint,text)",
    "pgmodels._explain(text,bigint,double precision[],integer,text,double precision,boolean)",
    "pgmodels._explain(text,bigint,real[],integer,text,double precision,boolean)",
    "pgmodels._explain(text,bigint,jsonb,integer,text,double precision,boolean)",
    "pgmodels._explain_batch(text,bigint,bytea,jsonb,integer,text,double precision,boolean)",
    # add_consumer(..., outputs)'s core, as the caller: it checks EXECUTE on add_consumer() itself
    "pgmodels._add_consumer_outputs(text,text,text,text[],text,text,text,boolean,integer)",
    # rollouts (sql/127-129): the gate with routing (checks EXECUTE on the three-argument
    # form too); the keyed cores, which answer only from what the gate loaded; the cores of
    # the user's functions, which check the credential and ownership; the writer, which
    # writes only what this backend's scoring code recorded; a key's share (arithmetic);
    # the report and evaluation cores, which run as the caller
    "pgmodels._lookup(text,bigint,text,boolean)",
    "pgmodels._predict(text,bigint,double precision[],double precision,boolean,text)",
    "pgmodels._predict(text,bigint,real[],double precision,boolean,text)",
    "pgmodels._predict(text,bigint,jsonb,double precision,boolean,text)",
    "pgmodels._predict_proba(text,bigint,double precision[],double precision,boolean,text)",
    "pgmodels._predict_proba(text,bigint,real[],double precision,boolean,text)",
    "pgmodels._predict_proba(text,bigint,jsonb,double precision,boolean,text)",
    "pgmodels._predict_label(text,bigint,double precision[],double precision,boolean,text)",
    "pgmodels._predict_label(text,bigint,real[],double precision,boolean,text)",
    "pgmodels._predict_label(text,bigint,jsonb,double precision,boolean,text)",
    "pgmodels._score_rows(text,bigint,bytea,text[],text[],double precision,boolean,text[],text)",
    "pgmodels._rollout_start(text,text,bigint,text,real,jsonb)", "pgmodels._rollout_alter(text,bigint,text,real,jsonb)",
    "pgmodels._rollout_decide(text,bigint,text,boolean,text,jsonb)", "pgmodels._rollout_version(text,text,text)",
    "pgmodels._rollout_flush()", "pgmodels._rollout_share(bigint,text)",
    "pgmodels._rollout_report(bigint)", "pgmodels._evaluate_rollout(bigint)",
    "pgmodels._outcomes_register(text,text,oid,text,text,text)", "pgmodels._rollout_evidence(text,bigint)",
    "pgmodels._rollout_purge(text,bigint)",
}


def test_exactly_these_internal_functions_are_open_to_public(conn):
    open_to_public = {r[0].replace(", ", ",") for r in conn.execute(
        """SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'pgmodels' AND has_function_privilege('public', p.oid, 'EXECUTE')""")}
    assert open_to_public == PUBLIC_INTERNALS
