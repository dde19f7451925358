"""Each attack of the 0.1.0 security review, run as the unprivileged role it names, against
the real server: every one fails with a clear error and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import threading
import time

import psycopg
import pytest
from onnx import TensorProto, helper

from dbhelpers import role_connection, sql_error
from lifecycle_data import make_numeric
from onnx_models import scaled_sum

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
IMPORT = "import_onnx(text, bytea, text[], text, jsonb, text[], boolean)"


def external_data_model(location: str) -> bytes:
    """The review's reproduction: an initializer stored as external data in a server file,
    cast to float and returned as the probabilities."""
    secret = TensorProto(name="secret", data_type=TensorProto.UINT8, dims=[200],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "200")):
        entry = secret.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Cast", ["secret"], ["probabilities"], to=TensorProto.FLOAT),
         helper.make_node("ReduceSum", ["X"], ["s"], keepdims=0),
         helper.make_node("Cast", ["s"], ["label"], to=TensorProto.INT64)],
        "leak", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("label", TensorProto.INT64, None)],
        initializer=[secret])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def mallory(make_role, name):
    """A role with nothing but LOGIN."""
    return make_role(name + "_mallory")


@pytest.fixture
def victim(conn, name):
    """A project of the superuser's, trained on a numeric table; returns its name."""
    make_numeric(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    return name


def models_in(conn, project: str) -> int:
    return conn.execute("SELECT count(*) FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id "
                        "WHERE p.name = %s", [project]).fetchone()[0]


# 1. Reading server files through an ONNX initializer with external data.

def test_a_model_with_external_data_is_refused_and_never_read(conn, mallory, name):
    rolname, c = mallory
    artifact = external_data_model("pg_hba.conf")
    # the serving cores take no model from the caller any more, and the loader is not PUBLIC's
    err = sql_error(c, "SELECT pgmodels._load('x', 0, 0, ROW(900001, 'x', 1, 'classification', 'onnx', %s, "
                       "sha256(%s), ARRAY['a','b','c','d'], ARRAY['float','float','float','float'], '[0]', NULL, "
                       "NULL, true, NULL, NULL)::pgmodels.served_model, false)", [artifact, artifact])
    assert err.sqlstate == "42501"
    # a core called directly answers only from what _lookup loaded: here nothing
    assert c.execute("SELECT pgmodels._predict_proba('x', 0, ARRAY[1,2,3,4]::float8[], 0, true)").fetchone() == (None,)
    # not even a superuser can import it, nor could one get it served
    conn.execute(f"GRANT EXECUTE ON FUNCTION {IMPORT} TO {rolname}")
    for who in (conn, c):
        err = sql_error(who, "SELECT * FROM import_onnx(%s, %s, ARRAY['a','b','c','d'], 'classification')",
                        [name, artifact])
        assert err.sqlstate == "0A000" and "external data" in err.diag.message_primary
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone()[0] == 0


def test_external_data_in_a_function_default_and_loops_are_refused(conn, mallory, name):
    """The hostile review's bypass of the first check (a function's default attribute), and
    a Loop whose trip count the input sets (a model statement_timeout could not stop)."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent / "unit"))
    from test_onnx_scan import function_default_model, loop_model

    rolname, c = mallory
    conn.execute(f"GRANT EXECUTE ON FUNCTION {IMPORT} TO {rolname}")
    from test_onnx_scan import overlong_tag_model, scan_model

    for artifact, message in ((function_default_model(), "model-local functions"), (loop_model(), "Loop operators"),
                              (scan_model(), "Scan operators")):
        err = sql_error(c, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, artifact])
        assert err.sqlstate == "0A000" and message in err.diag.message_primary, err.diag.message_primary
    # a field tag written long, which protobuf reads but a naive walk would skip
    err = sql_error(c, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, overlong_tag_model()])
    assert err.sqlstate == "22023" and "not a valid ONNX model" in err.diag.message_primary


# 2. Running code as the server's OS user through the environment setting.

@pytest.fixture
def planted_venv(cluster, name):
    """A directory that looks like a virtual environment and runs code when imported from."""
    venv = cluster.home / f"evil-{name}"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.11.2\n")
    marker = cluster.home / f"pwned-{name}"
    (site / "evil.pth").write_text(f"import os; open({str(marker)!r}, 'w').write('pwned')\n")
    os.system(f"chmod -R a+rwX {venv}")
    yield venv, marker
    subprocess.run(["rm", "-rf", str(venv), str(marker)], check=False)


def test_no_role_but_the_administrator_chooses_the_server_python(conn, cluster, mallory, victim, planted_venv, name):
    rolname, c = mallory
    venv, marker = planted_venv
    conn.execute("SELECT grant_project(%s, 'public', 'predict')", [victim])
    conn.execute(f"CREATE DATABASE {name}_own OWNER {rolname}")
    try:
        with psycopg.connect(cluster.url(f"{name}_own"), autocommit=True) as su:
            su.execute("CREATE EXTENSION pgmodels CASCADE")
        own = role_connection(cluster, f"{name}_own", rolname)
        # PostgreSQL 15 already refuses these for a custom setting to non-superusers; were
        # they allowed (or done by a superuser for the role), pgmodels would ignore them
        for statement in (f"ALTER DATABASE {name}_own SET pgmodels.venv = '{venv}'",
                          f"ALTER ROLE {rolname} SET pgmodels.venv = '{venv}'"):
            try:
                own.execute(statement)
            except psycopg.errors.InsufficientPrivilege:
                conn.execute(statement)
        own.close()
        for dbname, options in ((conn.info.dbname, f"-c pgmodels.venv={venv}"), (f"{name}_own", "")):
            fresh = psycopg.connect(f"postgresql://{rolname}:pw@127.0.0.1:{cluster.port}/{dbname}",
                                    options=options, autocommit=True)
            fresh.execute(f"SET pgmodels.venv = '{venv}'")
            if dbname == conn.info.dbname:
                assert fresh.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4])", [victim]).fetchone()[0] in (0.0, 1.0)
            assert fresh.execute("SELECT pgmodels._activate()").fetchone() == (None,)
            err = sql_error(fresh, "SELECT pgmodels._activate_core(%s, '0.2.0')", [str(venv)])
            assert err.sqlstate == "42501"
            doctor = dict((i, v) for i, v, _ in fresh.execute("SELECT * FROM pgmodels.doctor()"))
            assert doctor["pgmodels.venv"] == str(cluster.venv)
            fresh.close()
        assert not marker.exists()
    finally:
        conn.execute(f"ALTER ROLE {rolname} RESET ALL")
        conn.execute(f"DROP DATABASE {name}_own WITH (FORCE)")


def test_the_environment_comes_from_the_configuration_files(conn, connect, admin_setting, cluster):
    admin_setting("pgmodels.venv", "/nonexistent/venv")
    c = connect()
    err = sql_error(c, "SELECT predict('churn', ARRAY[1.0, 2.0])")
    assert err.sqlstate == "55000"
    assert err.diag.message_primary == 'pgmodels.venv "/nonexistent/venv" is not a readable virtual environment'
    rows = dict((i, (v, ok)) for i, v, ok in c.execute("SELECT * FROM pgmodels.doctor()"))
    assert rows["pgmodels.venv"][1] is False


# 3. Poisoning another caller's predictions through the backend's cache.

def test_a_forged_model_cannot_poison_the_cache(conn, mallory, victim):
    rolname, c = mallory
    expected = conn.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4])", [victim]).fetchone()[0]
    conn.execute(f"SET ROLE {rolname}")
    try:
        forged = scaled_sum(1000.0, 4)
        for statement, args in [
            ("SELECT pgmodels._load(%s, 0, pgmodels._stamp(), ROW((SELECT max(model_id) FROM pgmodels.overview), %s, "
             "1, 'regression', 'onnx', %s, sha256(%s), ARRAY['a','b','c','d'], ARRAY['float','float','float','float'], "
             "NULL, NULL, NULL, true, NULL, NULL)::pgmodels.served_model, false)", [victim, victim, forged, forged]),
            ("SELECT pgmodels._lookup(%s, 0, 'forged')", [victim]),
            ("SELECT pgmodels._lookup(%s, 0, pgmodels._credential())", [victim]),  # no predict privilege
        ]:
            assert sql_error(conn, statement, args).sqlstate == "42501"
        # the core itself takes no model, and serves none that _lookup did not load
        assert conn.execute("SELECT pgmodels._predict(%s, 0, ARRAY[1,2,3,4]::float8[], pgmodels._stamp(), true)",
                            [victim]).fetchone() == (None,)
    finally:
        conn.execute("RESET ROLE")
    assert conn.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4])", [victim]).fetchone()[0] == expected


def test_a_kept_stamp_serves_nothing_after_a_revoke(conn, mallory, victim):
    """The review's bypass: a stamp from a statement that could predict, replayed into the
    PUBLIC serving core after the grant is gone."""
    rolname, c = mallory
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [victim, rolname])
    stamp = c.execute("SELECT pgmodels._stamp() FROM (SELECT predict(%s, ARRAY[1, 2, 3, 4])) p", [victim]).fetchone()[0]
    conn.execute("SELECT revoke_project(%s, %s)", [victim, rolname])
    time.sleep(1.2)  # a registration serves one second
    assert c.execute("SELECT pgmodels._predict(%s, 0, ARRAY[5,6,7,8]::float8[], %s, NULL)",
                     [victim, stamp]).fetchone() == (None,)
    assert sql_error(c, "SELECT predict(%s, ARRAY[5, 6, 7, 8])", [victim]).sqlstate == "42501"


def test_a_definer_functions_lookup_serves_only_its_own_call(conn, mallory, victim, name):
    """The review's second bypass: a SECURITY DEFINER function that predicts for its
    caller; in the same statement the caller tries the core with features of its own."""
    rolname, c = mallory
    conn.execute(f"""CREATE FUNCTION {name}_score() RETURNS real LANGUAGE sql SECURITY DEFINER
                     SET search_path = public, pg_catalog, pg_temp
                     AS $$ SELECT predict('{victim}', ARRAY[1, 2, 3, 4]) $$""")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {name}_score() TO {rolname}")
    row = c.execute(f"SELECT {name}_score(), {name}_score(), "
                    "pgmodels._predict(%s, 0, ARRAY[9,9,9,9]::float8[], pgmodels._stamp(), NULL), "
                    "pgmodels._predict(%s, 0, ARRAY[9,9,9,9]::float8[], pgmodels._stamp(), true)",
                    [victim, victim]).fetchone()
    assert row[0] in (0.0, 1.0) and row[1] == row[0]
    assert row[2:] == (None, None)


def test_a_credential_is_for_its_own_role_and_statement(conn, mallory, victim):
    rolname, c = mallory
    credential = conn.execute("SELECT pgmodels._credential()").fetchone()[0]
    assert conn.execute("SELECT pgmodels._verify_caller(pgmodels._credential())::regrole::text").fetchone()[0] \
        == conn.info.user
    # the superuser's credential, replayed in a later statement, is worth nothing
    err = sql_error(c, "SELECT * FROM deploy(%s, 'most_recent')", [victim])
    assert err.sqlstate == "42501"
    err = sql_error(c, "SELECT pgmodels._deploy_strategy(%s, 'most_recent', NULL, %s)", [victim, credential])
    assert err.sqlstate == "42501" and err.diag.message_primary == "invalid caller credential"
    mine = c.execute("SELECT pgmodels._credential()").fetchone()[0]
    err = sql_error(c, "SELECT pgmodels._deploy_strategy(%s, 'most_recent', NULL, %s)",
                    [victim, credential.split(":")[0] + ":" + mine.split(":")[1]])
    assert err.diag.message_primary == "invalid caller credential"


# 4. Crashing the cluster through the native loaders: caller bytes never reach them.

def test_caller_bytes_never_reach_a_native_loader(conn, mallory, name):
    rolname, c = mallory
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN}, {IMPORT} TO {rolname}")
    for function in ("pgmodels._load(text,bigint,double precision,pgmodels.served_model,boolean)",
                     "pgmodels._take_staged(text)", "pgmodels._activate_core(text,text)",
                     "pgmodels._resolve(text,bigint,oid,text,boolean)"):
        assert c.execute("SELECT has_function_privilege(%s, 'EXECUTE')", [function]).fetchone() == (False,)
    err = sql_error(c, "SELECT * FROM pgmodels._store_model('deadbeef')")
    assert err.sqlstate == "42501" and err.diag.message_primary == "no model is staged under this token"
    # import_onnx stores ONNX only, checked by onnxruntime: UBJ bytes are not a model
    err = sql_error(c, "SELECT * FROM import_onnx(%s, '\\x7b4c000000'::bytea, ARRAY['a'], 'regression')", [name])
    assert err.sqlstate == "22023"
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone()[0] == 0


# 5. Reading what a role may not SELECT: exports, catalog records, other projects.

def test_a_login_only_role_reads_nothing_of_other_projects(conn, mallory, victim):
    rolname, c = mallory
    assert sql_error(c, "SELECT export_onnx(%s)", [victim]).sqlstate == "42501"
    err = sql_error(c, "SELECT * FROM pgmodels._project_info(%s, pgmodels._credential())", [victim])
    assert err.sqlstate == "42501"
    assert c.execute("SELECT count(*) FROM pgmodels.overview WHERE project = %s", [victim]).fetchone() == (0,)
    assert c.execute("SELECT count(*) FROM pgmodels.overview o WHERE NOT has_project_privilege(%s, o.project, 'use')",
                     [rolname]).fetchone() == (0,)
    model_id = conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s", [victim]).fetchone()[0]
    assert sql_error(c, "SELECT predict(%s::bigint, ARRAY[1, 2, 3, 4])", [model_id]).sqlstate == "42501"
    assert c.execute("SELECT count(*) FROM pgmodels._deployed(%s, pgmodels._credential())",
                     [model_id]).fetchone() == (0,)


# 6 and 7. A role granted train() deploys nothing into another's project, and cannot make
# its owner train on a table of the attacker's choosing.

def test_a_trainer_cannot_touch_another_roles_project(conn, mallory, victim, name):
    rolname, c = mallory
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN}, {IMPORT} TO {rolname}")
    conn.execute(f"GRANT SELECT ON {victim} TO {rolname}")
    before = models_in(conn, victim)
    last_train = conn.execute("SELECT last_train FROM pgmodels.projects WHERE name = %s", [victim]).fetchone()
    for statement, args in [
        ("SELECT * FROM train(%s, 'classification', %s, 'y')", [victim, victim]),
        ("SELECT * FROM train(%s, relation_name => 'pg_authid')", [victim]),
        ("SELECT * FROM import_onnx(%s, %s, ARRAY['a','b','c','d'], 'regression')", [victim, scaled_sum(2.0, 4)]),
        ("SELECT * FROM deploy(%s, 'rollback')", [victim]),
        ("SELECT * FROM pgmodels._deploy_model(1, pgmodels._credential())", []),
        ("SELECT grant_project(%s, %s, 'all')", [victim, rolname]),
    ]:
        err = sql_error(c, statement, args)
        assert err.sqlstate in ("42501", "42704"), (statement, err.diag.message_primary)
    assert models_in(conn, victim) == before
    assert conn.execute("SELECT last_train FROM pgmodels.projects WHERE name = %s", [victim]).fetchone() == last_train


# 8. Tying up the server: training stops when asked, and administrators set limits.

@pytest.fixture
def big_table(conn, name):
    conn.execute(f"""CREATE TABLE {name}_big AS SELECT (i % 97)::real a, ((i * 7) % 89)::real b, (i % 13)::real c,
                     ((i * 31) % 2)::int y FROM generate_series(1, 20000) i""")
    return f"{name}_big"


def test_training_stops_at_statement_timeout_and_writes_nothing(conn, mallory, big_table, name):
    rolname, c = mallory
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"GRANT SELECT ON {big_table} TO {rolname}")
    c.execute("SET statement_timeout = '1s'")
    start = time.monotonic()
    err = sql_error(c, "SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'random_forest', "
                       "hyperparams => '{\"n_estimators\": 3000}')", [name, big_table])
    elapsed = time.monotonic() - start
    assert err.sqlstate == "57014"
    assert elapsed < 5, elapsed  # the training alone runs far longer; a loaded machine answers late
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone() == (0,)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is pid, read from /proc (no ps needed)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def all_gone(pids: list[int]) -> bool:
    """Every process has ended: gone, or a zombie left for a PID 1 that does not reap."""
    time.sleep(0.3)
    for p in pids:
        try:
            state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        if state not in ("Z", "X"):
            return False
    return True


def test_training_stops_at_cancel_and_terminate(conn, connect, big_table, name):
    for stop in ("pg_cancel_backend", "pg_terminate_backend"):
        c = connect()
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        # warm: the libraries loaded, so that the stop lands in the training child itself
        # (a first training's imports are cancellable too: see the timeout test)
        c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', automatic_deploy => false)",
                  [name + "_warm", big_table])
        start = time.monotonic()
        seen = []
        watcher = threading.Timer(0.5, lambda: seen.extend(children_of(pid)))
        timer = threading.Timer(0.8, lambda: conn.execute(f"SELECT {stop}(%s)", [pid]))
        watcher.start()
        timer.start()
        with pytest.raises(psycopg.Error) as info:
            c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'random_forest', "
                      "hyperparams => '{\"n_estimators\": 3000}')", [name, big_table])
        timer.join()
        watcher.join()
        assert time.monotonic() - start < 2.5
        if stop == "pg_cancel_backend":
            assert info.value.sqlstate == "57014"
        assert seen, "the training ran in a child of the backend"
        assert all_gone(seen), "the training child outlived its statement"
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone() == (0,)
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the cluster is fine


def test_administrator_limits_cap_training(conn, mallory, admin_setting, connect, name):
    rolname, c = mallory
    make_numeric(conn, name)
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"GRANT SELECT ON {name} TO {rolname}")
    admin_setting("pgmodels.max_trees", "50")
    admin_setting("pgmodels.max_training_rows", "100")
    admin_setting("pgmodels.max_search_candidates", "4")
    admin_setting("pgmodels.max_iterations", "1000")
    # a role cannot lift them for itself: SET, or options at connection, are ignored
    fresh = psycopg.connect(c.info.dsn + " password=pw", autocommit=True, options="-c pgmodels.max_trees=100000")
    for args, message in [
        ("algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 51}'", "n_estimators 51 exceeds the limit of 50"),
        ("algorithm => 'hist_gradient_boosting', hyperparams => '{\"max_iter\": 60}'", "max_iter 60 exceeds the limit of 50"),
        ("algorithm => 'linear', hyperparams => '{\"max_iter\": 5000}'", "max_iter 5000 exceeds the limit of 1000"),
        ("algorithm => 'ridge', search => 'grid', search_params => '{\"alpha\": [1, 2, 3, 4, 5]}'",
         "a grid of 5 candidates exceeds the limit of 4"),
        ("algorithm => 'ridge', search => 'random', search_params => '{\"alpha\": [1, 2]}', "
         "search_args => '{\"n_iter\": 10}'", "search_args n_iter 10 exceeds the limit of 4"),
        ("algorithm => 'linear'", f'relation "public.{name}" has more than 100 rows'),
    ]:
        err = sql_error(fresh, f"SELECT * FROM train(%s, 'classification', %s, 'y', {args})", [name, name])
        assert (err.sqlstate, err.diag.message_primary) == ("54000", message)
        assert "pgmodels." in err.diag.message_detail
    fresh.close()
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone() == (0,)


# Further findings of the hostile review of 0.2.0 itself.

def test_leaky_conditions_see_no_row_the_views_hide(conn, mallory, victim):
    rolname, c = mallory
    conn.execute("SELECT grant_project(%s, 'postgres', 'predict')", [victim])  # a grant to leak
    c.execute("""CREATE FUNCTION pg_temp.leak(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001
                 AS $$ BEGIN RAISE NOTICE 'leaked %', $1; RETURN true; END $$""")
    notices = []
    c.add_notice_handler(lambda d: notices.append(d.message_primary))
    c.execute("SELECT * FROM pgmodels.overview WHERE pg_temp.leak(project || ' ' || metrics::text)").fetchall()
    c.execute("SELECT * FROM pgmodels.project_privileges WHERE pg_temp.leak(project || ' ' || grantee)").fetchall()
    assert not [n for n in notices if victim in n]
    try:  # a cast error would show the row it failed on: only rows the role may see get there
        c.execute("SELECT project FROM pgmodels.overview WHERE (project || ':' || metrics::text)::int = 1").fetchall()
    except psycopg.Error as e:
        assert victim not in str(e)


def test_the_batch_core_refuses_bytes_that_are_no_real_array(conn, mallory, victim):
    rolname, c = mallory
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [victim, rolname])
    for data in ("\\x00", "\\x" + "0131" * 2, "\\x" + format(20000000, "08x") + "00000001000003bd",
                 "\\xffffffff00000000000002bc"):
        c.execute("SET statement_timeout = '5s'")
        err = sql_error(c, "SELECT x FROM pgmodels._predict_batch(%s, 0, %s::bytea, pgmodels._stamp(), "
                           "pgmodels._lookup(%s, 0, pgmodels._credential())) x "
                           "UNION ALL SELECT pgmodels._raise_pending(NULL::real)", [victim, data, victim])
        assert err.sqlstate == "22023" and len(str(err)) < 1000, str(err)[:200]


def test_a_retrain_reads_the_relation_it_was_trained_on(conn, mallory, victim, name):
    """A stored relation is schema-qualified: a temporary table of the same name, in the
    session of whoever calls an owner's retraining function, cannot stand in for it."""
    rolname, c = mallory
    relation = conn.execute("SELECT last_train ->> 'relation_name' FROM pgmodels.projects WHERE name = %s",
                            [victim]).fetchone()[0]
    assert relation == f"public.{victim}"
    conn.execute(f"""CREATE FUNCTION {name}_retrain() RETURNS integer LANGUAGE sql SECURITY DEFINER
                     SET search_path = public, pg_catalog AS $$ SELECT version FROM train('{victim}') $$""")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {name}_retrain() TO {rolname}")
    c.execute(f"CREATE TEMP TABLE {victim} AS SELECT 1::real a, 1::real b, 1::real c, 1::real d, 1 y "
              "FROM generate_series(1, 50)")
    version = c.execute(f"SELECT {name}_retrain()").fetchone()[0]
    rows = conn.execute("SELECT (training ->> 'rows')::int, training ->> 'relation' FROM pgmodels.models m "
                        "JOIN pgmodels.projects p ON p.id = m.project_id WHERE p.name = %s AND m.version = %s",
                        [victim, version]).fetchone()
    assert rows == (300, f"public.{victim}")


def test_limits_count_every_tree_fit_and_iteration(conn, mallory, admin_setting, name):
    rolname, c = mallory
    from lifecycle_data import make_numeric

    make_numeric(conn, name)
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"GRANT SELECT ON {name} TO {rolname}")
    admin_setting("pgmodels.max_trees", "50")
    admin_setting("pgmodels.max_search_fits", "20")
    fresh = psycopg.connect(c.info.dsn + " password=pw", autocommit=True)
    for args, message in [
        ("algorithm => 'xgboost', hyperparams => '{\"n_estimators\": 2, \"num_parallel_tree\": 60}'",
         "n_estimators x num_parallel_tree 120 exceeds the limit of 50"),
        ("algorithm => 'ridge', search => 'grid', search_params => '{\"alpha\": [1, 2]}', search_args => '{\"cv\": 200}'",
         "a search of 2 candidates x 200 folds exceeds the limit of 20"),
    ]:
        err = sql_error(fresh, f"SELECT * FROM train(%s, 'classification', %s, 'y', {args})", [name, name])
        assert (err.sqlstate, err.diag.message_primary) == ("54000", message)
    err = sql_error(fresh, "SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'bagging', "
                           "hyperparams => '{\"n_jobs\": 3}')", [name, name])
    assert (err.sqlstate, err.diag.message_primary) == ("22023", 'hyperparameter "n_jobs" is set by pgmodels')
    fresh.close()


def test_json_that_defeats_a_parser_is_a_clear_error(conn, mallory, victim):
    rolname, c = mallory
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [victim, rolname])
    for jsonb in ("[" * 3000 + "1" + "]" * 3000, '{"a": 1' + "0" * 5000 + ', "b": 1}', '["xx"]'):
        err = sql_error(c, "SELECT predict(%s, %s::jsonb)", [victim, jsonb])
        assert err.sqlstate in ("22023", "22P02", "54001"), (err.sqlstate, str(err)[:200])


def test_a_role_named_public_is_not_public(conn, victim):
    """grant_project(p, 'public') is PUBLIC, as GRANT spells it; a role named "Public" is that role."""
    made = not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'Public'").fetchone()
    if made:
        conn.execute('CREATE ROLE "Public"')
    try:
        conn.execute("SELECT grant_project(%s, 'Public', 'predict')", [victim])
        grantees = [r[0] for r in conn.execute("SELECT grantee FROM pgmodels.project_privileges WHERE project = %s",
                                               [victim])]
        assert grantees == ['"Public"']
        assert conn.execute("SELECT has_project_privilege('Public', %s, 'predict')", [victim]).fetchone() == (True,)
    finally:
        conn.execute("SELECT revoke_project(%s, 'Public')", [victim])
        if made:
            conn.execute('DROP ROLE "Public"')


# The re-check of the fixes.

def test_a_temporary_relation_is_never_reused_by_name(conn, name):
    conn.execute(f"CREATE TEMP TABLE {name}_tmp AS SELECT (i % 7)::real a, (i % 2) y FROM generate_series(1, 100) i")
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name + "_tmp"])
    assert conn.execute("SELECT last_train ->> 'relation_name' FROM pgmodels.projects WHERE name = %s",
                        [name]).fetchone() == (None,)
    err = sql_error(conn, "SELECT * FROM train(%s)", [name])
    assert err.sqlstate == "22023" and "relation_name is required" in err.diag.message_primary


def test_limits_count_trees_per_class_and_typed_knobs(conn, admin_setting, name):
    conn.execute(f"""CREATE TABLE {name} AS SELECT (i % 17)::real a, (i % 5)::real b, (i % 6) y
                     FROM generate_series(1, 300) i""")
    admin_setting("pgmodels.max_trees", "100")
    c = psycopg.connect(conn.info.dsn + f" password={conn.info.password}", autocommit=True)
    for args, sqlstate, message in [
        ("algorithm => 'gradient_boosting_trees', hyperparams => '{\"n_estimators\": 20}'", "54000",
         "20 trees for each of 6 classes: 120 exceeds the limit of 100"),
        ("algorithm => 'xgboost', hyperparams => '{\"n_estimators\": 2, \"num_parallel_tree\": \"60\"}'", "22023",
         'invalid value "60" for hyperparameter "num_parallel_tree"'),
        ("algorithm => 'bagging', hyperparams => '{\"max_samples\": 1000000}'", "22023",
         "max_samples 1000000 exceeds the 300 rows read"),
    ]:
        err = sql_error(c, f"SELECT * FROM train(%s, 'classification', %s, 'y', {args})", [name, name])
        assert (err.sqlstate, err.diag.message_primary) == (sqlstate, message)
    c.close()


def test_the_last_internal_errors_are_clear_errors(conn, name):
    from onnx_models import linear_classifier

    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(1.0)])
    make_numeric(conn, name + "_t")
    for statement, args in [
        ("SELECT predict(%s, '[\"pgmodels:record\", 5]'::jsonb)", [name]),
        ("SELECT predict(%s, '[\"pgmodels:record\", {\"a\": 1}]'::jsonb)", [name]),
        ("SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'svm', hyperparams => ('{\"C\": ' || "
         "repeat('9', 5000) || '}')::jsonb)", [name + "_x", name + "_t"]),
        ("SELECT * FROM train(%s, 'classification', %s, 'y', hyperparams => (repeat('{\"a\": ', 2000) || '1' || "
         "repeat('}', 2000))::jsonb)", [name + "_x", name + "_t"]),
        ("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'classification', '[0, 1e400]')",
         [name + "_c", linear_classifier()]),
        ("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'classification', ('[' || repeat('9', 5000) || ', 1]')::jsonb)",
         [name + "_c", linear_classifier()]),
        ("SELECT * FROM import_onnx(%s, %s, ARRAY[['a', 'b']], 'regression')", [name + "_c", scaled_sum(1.0)]),
    ]:
        err = sql_error(conn, statement, args)
        assert err.sqlstate in ("22023", "22P02", "54001", "42804"), (statement, err.sqlstate, str(err)[:300])


def test_training_leaves_no_file_behind(conn, connect, name):
    import glob

    before = set(glob.glob("/tmp/pgmodels-train-*"))
    make_numeric(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    assert set(glob.glob("/tmp/pgmodels-train-*")) == before
