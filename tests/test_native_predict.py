"""predict()'s one-row path in C (issue #25; extension/src/native.c, serving/native.py).

predict() from real[] and double precision[] is a C function. Once the backend's decision
cache has confirmed a decision for the calling role and the model is a tree ensemble,
the C function evaluates the trees itself; otherwise it calls the same Python cores as
the other forms. Whether a statement reached the Python core is read from PostgreSQL's
own count of its calls in the transaction (track_functions = 'pl').

Checked here: the C answers equal onnxruntime's for every row, for XGBoost (binary,
multiclass, regression), LightGBM and a random forest regressor, from real[] and from
double precision[]; other models stay with the cores; as LOGIN roles, a revoke, a deploy
and the master switch reach the very next statement of a session the C path was
answering; a SECURITY DEFINER function is its owner, not its caller; calling the C core
directly answers nothing a role was not granted; bad input gets the cores' errors; a
statement's own lookup (no kept decision: a transaction that wrote) serves the rest of the
statement in C once the trees are translated.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import psycopg
import pytest

from dbhelpers import role_connection, sql_error
from onnx_models import scaled_sum, tree_regressor

IMPORT = "import_onnx(text, bytea, text[], text, jsonb, text[], boolean)"
CORE_CALLS = ("coalesce(pg_catalog.pg_stat_get_xact_function_calls("
              "'pgmodels._predict(text,bigint,real[],double precision,boolean)'::pg_catalog.regprocedure), 0)")
CORE8_CALLS = ("coalesce(pg_catalog.pg_stat_get_xact_function_calls("
               "'pgmodels._predict(text,bigint,double precision[],double precision,boolean)'"
               "::pg_catalog.regprocedure), 0)")


def in_c(c, project, x: float = 1.0) -> tuple[float, bool]:
    """(predict(project, ARRAY[x, 1]), whether no Python core ran for it). The session's
    pending call counts are read before and after the predict in the same statement
    (its target list runs left to right), so a flush of the counts cannot hide a call."""
    before, value, after = c.execute(f"SELECT {CORE_CALLS}, predict(%s, ARRAY[%s, 1]::real[]), {CORE_CALLS}",
                                     [project, x]).fetchone()
    return value, before == after


def warm_c(c, project, expected: float | None = None) -> None:
    """Predict until a statement is answered in C."""
    for _ in range(20):
        value, native = in_c(c, project)
        if expected is not None:
            assert value == expected
        if native:
            return
    raise AssertionError("no statement was answered in C")


@pytest.fixture(scope="module")
def trained(test_db):
    """Tree ensembles trained on a deterministic table of 4 features, and a linear model."""
    c = psycopg.connect(test_db, autocommit=True)
    c.execute("DROP TABLE IF EXISTS native_rows CASCADE")
    c.execute("SELECT setseed(0.25)")  # the same rows each run
    c.execute("""CREATE TABLE native_rows AS
                 SELECT i AS id, random()::real AS a, random()::real AS b, random()::real AS c,
                        random()::real AS d FROM generate_series(1, 3000) i""")
    c.execute("""CREATE OR REPLACE VIEW native_bin AS
                 SELECT a, b, c, d, (a + b * c > 0.6)::int AS y FROM native_rows""")
    c.execute("""CREATE OR REPLACE VIEW native_multi AS
                 SELECT a, b, c, d, (floor((a + b) * 1.5))::int AS y FROM native_rows""")
    c.execute("""CREATE OR REPLACE VIEW native_reg AS
                 SELECT a, b, c, d, (a * 3 + b * c - d)::real AS y FROM native_rows""")
    models = {
        "native_xgb_bin": ("classification", "native_bin", "xgboost", '{"n_estimators": 20}'),
        "native_xgb_multi": ("classification", "native_multi", "xgboost", '{"n_estimators": 10}'),
        "native_xgb_reg": ("regression", "native_reg", "xgboost", '{"n_estimators": 20}'),
        "native_rf_reg": ("regression", "native_reg", "random_forest", '{"n_estimators": 8, "max_depth": 6}'),
        # deeper than the complete-tree layout takes (src/trees.c: FULL_MAX_DEPTH): its nodes are walked
        "native_rf_deep": ("regression", "native_reg", "random_forest", '{"n_estimators": 3, "max_depth": 14}'),
        "native_lgb_bin": ("classification", "native_bin", "lightgbm", '{"n_estimators": 20}'),
        "native_linear": ("regression", "native_reg", "linear", "{}"),
    }
    for project, (task, relation, algorithm, hyper) in models.items():
        c.execute("SELECT 1 FROM train(%s, task => %s, relation_name => %s, y_column_name => 'y', "
                  "algorithm => %s, hyperparams => %s::jsonb)", [project, task, relation, algorithm, hyper])
    c.close()
    return models


def onnxruntime_answers(c, project: str, table: str = "native_rows") -> list[float]:
    """predict()'s answer (a real) for every row of the table (a, b, c, d by id), from the
    served artifact run in this process by onnxruntime: the label of a classifier, the
    value of a regressor; as the float psycopg reads a real as, from its shortest text."""
    artifact = bytes(c.execute("SELECT export_onnx(%s)", [project]).fetchone()[0])
    X = np.array(c.execute(f"SELECT a, b, c, d FROM {table} ORDER BY id").fetchall(), dtype=np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as the backends run it: trees summed in order
    session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
    first = session.run(None, {session.get_inputs()[0].name: X})[0]
    return [float(str(v)) for v in first.ravel().astype(np.float32)]


def both_paths(test_db, project: str, form: str) -> tuple[list, list, int]:
    """Every row's predict() in one read-only statement (after warming the session), and
    onnxruntime's answers for the same rows, with the core calls of the statement."""
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("SET track_functions = 'pl'")
        statement = f"SELECT predict(%s, ARRAY[a, b, c, d]::{form}) FROM native_rows ORDER BY id"
        for _ in range(4):
            c.execute(statement + " LIMIT 1", [project])
        before = c.execute(f"SELECT {CORE_CALLS} + {CORE8_CALLS}").fetchone()[0]
        fast = [r[0] for r in c.execute(statement, [project]).fetchall()]
        calls = c.execute(f"SELECT {CORE_CALLS} + {CORE8_CALLS}").fetchone()[0] - before
        return fast, onnxruntime_answers(c, project), calls


@pytest.mark.parametrize("project", ["native_xgb_bin", "native_xgb_multi", "native_xgb_reg", "native_rf_reg",
                                     "native_rf_deep", "native_lgb_bin"])
@pytest.mark.parametrize("form", ["real[]", "double precision[]"])
def test_tree_ensembles_are_answered_in_c_as_onnxruntime_answers(test_db, trained, project, form):
    fast, cores, _ = both_paths(test_db, project, form)
    assert len(fast) == 3000 and fast == cores
    assert len(set(fast)) > 1
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("SET track_functions = 'pl'")
        for _ in range(4):
            c.execute(f"SELECT predict(%s, ARRAY[a, b, c, d]::{form}) FROM native_rows WHERE id = 1", [project])
        before, _, after = c.execute(f"SELECT {CORE_CALLS} + {CORE8_CALLS}, predict(%s, ARRAY[a, b, c, d]::{form}), "
                                     f"{CORE_CALLS} + {CORE8_CALLS} FROM native_rows WHERE id = 2",
                                     [project]).fetchone()
        assert before == after, "the statement ran a Python core"


@pytest.mark.parametrize("project", ["native_xgb_bin", "native_xgb_multi", "native_rf_reg", "native_rf_deep"])
def test_predict_batch_of_a_tree_ensemble_is_answered_in_c_as_onnxruntime_answers(test_db, trained, project):
    batch_calls = ("coalesce(pg_catalog.pg_stat_get_xact_function_calls('pgmodels._predict_batch(text,bigint,"
                   "bytea,double precision,boolean)'::pg_catalog.regprocedure), 0)")
    flat = "(SELECT array_agg(x ORDER BY id, o) FROM native_rows, unnest(ARRAY[a, b, c, d]) WITH ORDINALITY u(x, o))"
    rows = "(SELECT array_agg(ARRAY[a, b, c, d] ORDER BY id) FROM native_rows)"
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("SET track_functions = 'pl'")
        for _ in range(4):
            c.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4]::real[])", [project])
        fast = {}
        for form in (flat, rows):  # the core's calls read before and after, in the statement itself
            before, fast[form], after = c.execute(
                f"SELECT {batch_calls}, ARRAY(SELECT p FROM predict_batch(%s, {form}) p), {batch_calls}",
                [project]).fetchone()
            assert after == before, "predict_batch ran its Python core"
        with c.transaction():  # no kept decision: the statement's own lookup, then C for its rows
            c.execute("CREATE TEMP TABLE native_wrote ()")
            before, wrote, after = c.execute(
                f"SELECT {batch_calls}, ARRAY(SELECT p FROM predict_batch(%s, {rows}) p), {batch_calls}",
                [project]).fetchone()
            assert after == before, "predict_batch ran its Python core after its lookup"
        cores = onnxruntime_answers(c, project)
    assert len(cores) == 3000 and fast[flat] == cores and fast[rows] == cores and wrote == cores


def test_other_models_stay_with_the_python_cores(test_db, trained):
    fast, cores, calls = both_paths(test_db, "native_linear", "real[]")
    assert calls == 3000 and np.allclose(fast, cores, rtol=1e-5, atol=1e-6)  # a linear model: its own engine's float rounding


def test_the_other_array_forms_use_the_c_path_too(test_db, trained):
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("SET track_functions = 'pl'")
        rows = c.execute("SELECT (a * 10)::int, (b * 10)::int, (c * 10)::int, (d * 10)::int FROM native_rows "
                         "ORDER BY id LIMIT 50").fetchall()
        for _ in range(4):
            c.execute("SELECT predict('native_xgb_reg', ARRAY[1, 2, 3, 4])")
        fast = [c.execute("SELECT predict('native_xgb_reg', %s::integer[]), predict('native_xgb_reg', %s::numeric[])",
                          [list(r), list(r)]).fetchone() for r in rows]
        assert all(x == y for x, y in fast)
        expected = [c.execute("SELECT predict('native_xgb_reg', %s::real[])", [list(map(float, r))]).fetchone()[0]
                    for r in rows]
        assert [x for x, _ in fast] == expected


@pytest.fixture
def tree_owner(conn, make_role, name):
    """A role granted import_onnx only, owning project `name`: two trees, (1, 1) -> 2."""
    rolname, c = make_role(name + "_own")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {IMPORT} TO {rolname}")
    c.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
              [name, tree_regressor(1.0)])
    return rolname, c


@pytest.fixture
def reader(conn, cluster, make_role, name):
    rolname, c = make_role(name + "_r")
    c.close()
    conn.execute(f"ALTER ROLE {rolname} SET track_functions = 'pl'")
    c = role_connection(cluster, conn.info.dbname, rolname)
    yield rolname, c
    c.close()


def test_a_revoke_a_deploy_and_the_master_switch_reach_the_next_statement_of_a_session_answered_in_c(
        conn, tree_owner, reader, name):
    own, oc = tree_owner
    rname, rc = reader
    assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).sqlstate == "42501"
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    warm_c(rc, name, 2.0)
    assert in_c(rc, name, 2.0) == (5.0, True)  # the first tree's other branch, in C
    oc.execute("SELECT revoke_project(%s, %s)", [name, rname])
    for _ in range(3):
        assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).sqlstate == "42501"
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    warm_c(rc, name, 2.0)
    second = oc.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => false)",
                        [name, tree_regressor(10.0)]).fetchone()[0]
    warm_c(rc, name, 2.0)
    oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
    assert in_c(rc, name)[0] == 20.0
    warm_c(rc, name, 20.0)
    oc.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
    assert in_c(rc, name)[0] == 2.0
    warm_c(rc, name, 2.0)
    # the administrator's master switch
    conn.execute("REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) FROM PUBLIC")
    try:
        error = sql_error(rc, "SELECT predict(%s, ARRAY[1, 1]::real[])", [name])
        assert error.sqlstate == "42501" and "_lookup" in error.diag.message_primary
    finally:
        conn.execute("GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO PUBLIC")
    warm_c(rc, name, 2.0)
    # by model id: a decision of its own
    for _ in range(4):
        rc.execute("SELECT predict(%s::bigint, ARRAY[1, 1]::real[])", [second])
    before, value, after = rc.execute(f"SELECT {CORE_CALLS}, predict(%s::bigint, ARRAY[1, 1]::real[]), {CORE_CALLS}",
                                      [second]).fetchone()
    assert (value, after - before) == (20.0, 0)
    oc.execute("SELECT revoke_project(%s, %s)", [name, rname])
    assert sql_error(rc, "SELECT predict(%s::bigint, ARRAY[1, 1]::real[])", [second]).sqlstate == "42501"


def test_a_security_definer_function_predicts_as_its_owner_not_its_warm_caller(conn, tree_owner, reader, make_role,
                                                                               name):
    own, oc = tree_owner
    rname, rc = reader
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    other, xc = make_role(name + "_def")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {other}")
    xc.execute(f"""CREATE FUNCTION public.{name}_pred() RETURNS real LANGUAGE sql SECURITY DEFINER
                   AS $$ SELECT predict('{name}', ARRAY[1, 1]::real[]) $$""")
    xc.execute(f"GRANT EXECUTE ON FUNCTION public.{name}_pred() TO {rname}")
    warm_c(rc, name, 2.0)
    for _ in range(3):
        assert sql_error(rc, f"SELECT public.{name}_pred()").sqlstate == "42501"
    assert in_c(rc, name) == (2.0, True)


def test_calling_the_c_core_directly_answers_nothing_a_role_was_not_granted(conn, tree_owner, reader, make_role,
                                                                            name):
    own, oc = tree_owner
    rname, rc = reader
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    warm_c(rc, name, 2.0)
    assert rc.execute("SELECT pgmodels._predict_native(%s, 0, ARRAY[1, 1]::real[])", [name]).fetchone()[0] == 2.0
    outsider, uc = make_role(name + "_x")
    for _ in range(3):
        assert uc.execute("SELECT pgmodels._predict_native(%s, 0, ARRAY[1, 1]::real[])", [name]).fetchone()[0] \
            is None
        assert sql_error(uc, "SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).sqlstate == "42501"
    # a member acting as the reader by SET ROLE is answered as the reader, and as itself
    # (NOINHERIT: not using the reader's privileges) it is refused again
    conn.execute(f"ALTER ROLE {outsider} NOINHERIT")
    conn.execute(f"GRANT {rname} TO {outsider}")
    uc.execute(f"SET ROLE {rname}")
    assert uc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).fetchone()[0] == 2.0
    uc.execute("RESET ROLE")
    assert sql_error(uc, "SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).sqlstate == "42501"


def test_bad_input_gets_the_cores_errors_on_a_session_answered_in_c(conn, tree_owner, reader, name):
    own, oc = tree_owner
    rname, rc = reader
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    warm_c(rc, name, 2.0)
    short = sql_error(rc, "SELECT predict(%s, ARRAY[1]::real[])", [name])
    assert short.sqlstate == "22023" and "takes 2 features, got 1" in short.diag.message_primary
    assert short.diag.message_detail and "Traceback" not in str(short)
    nan = sql_error(rc, "SELECT predict(%s, ARRAY['NaN', 1]::real[])", [name])
    assert nan.sqlstate and nan.sqlstate != "XX000" and "Traceback" not in str(nan)
    inf = sql_error(rc, "SELECT predict(%s, ARRAY[1, 1e300]::float8[])", [name])
    assert inf.sqlstate and inf.sqlstate != "XX000"
    assert rc.execute("SELECT predict(%s, NULL::real[])", [name]).fetchone()[0] is None
    assert rc.execute("SELECT predict(NULL::text, ARRAY[1, 1]::real[])").fetchone()[0] is None
    assert rc.execute("SELECT predict(%s, ARRAY[[1, 1]]::real[])", [name]).fetchone()[0] == 2.0
    assert sql_error(rc, "SELECT predict(%s, ARRAY[1, NULL]::real[])", [name]).sqlstate != "XX000"
    partial = sql_error(rc, "SELECT * FROM predict_batch(%s, ARRAY[1, 1, 1]::real[])", [name])
    assert partial.sqlstate not in (None, "XX000") and "Traceback" not in str(partial)
    assert [r[0] for r in rc.execute("SELECT * FROM predict_batch(%s, ARRAY[1, 1, 2, 1]::real[])", [name])] == [2.0, 5.0]
    assert in_c(rc, name) == (2.0, True)  # and the session goes on answering in C


def test_a_transaction_that_wrote_is_answered_by_its_own_lookup_and_a_rollback_undoes_it(conn, tree_owner, name):
    own, oc = tree_owner
    for _ in range(4):
        oc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [name])
    second = oc.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => false)",
                        [name, scaled_sum(10.0)]).fetchone()[0]
    for _ in range(4):
        oc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [name])
    with pytest.raises(psycopg.errors.QueryCanceled):
        with oc.transaction():
            oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
            assert oc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).fetchone()[0] == 20.0
            raise psycopg.errors.QueryCanceled("roll back")
    assert oc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).fetchone()[0] == 2.0


@pytest.mark.parametrize("kind", ["trees, answered in C", "a sum, answered in Python"])
def test_a_deploy_and_a_revoke_committed_during_a_reader_transaction_reach_its_next_statement(
        conn, tree_owner, reader, name, kind):
    """READ COMMITTED: a statement sees what committed before it began, even when the
    transaction has locked nothing new since (the hostile review's finding: the backend
    had not read the invalidation queue, so a kept decision answered from before)."""
    own, oc = tree_owner
    rname, rc = reader
    project, model = (name, tree_regressor) if kind.startswith("trees") else (name + "_sum", scaled_sum)
    if project != name:
        oc.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [project, model(1.0)])
    second = oc.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => false)",
                        [project, model(10.0)]).fetchone()[0]
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [project, rname])
    for _ in range(5):
        assert rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [project]).fetchone()[0] == 2.0
    with rc.transaction():
        assert rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [project]).fetchone()[0] == 2.0
        oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
        assert rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [project]).fetchone()[0] == 20.0
        # one statement, its first row past the transaction's first second: one version
        values = rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[]), pg_sleep(CASE WHEN g = 1 THEN 1.1 ELSE 0 END) "
                            "FROM generate_series(1, 3) g", [project]).fetchall()
        assert [v for v, _ in values] == [20.0, 20.0, 20.0]
    for _ in range(5):
        assert rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [project]).fetchone()[0] == 20.0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        with rc.transaction():
            assert rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [project]).fetchone()[0] == 20.0
            oc.execute("SELECT revoke_project(%s, %s)", [project, rname])
            rc.execute("SELECT predict(%s, ARRAY[1, 1]::real[])", [project])


def test_in_a_database_that_is_not_utf8_project_names_stay_with_the_cores(conn, cluster, name):
    """The C path compares a project's name as the database's bytes; Python's are UTF-8,
    so elsewhere only decisions by model id are handed over (the hostile review's note)."""
    dbname = f"{name}_latin1"
    conn.execute(f"CREATE DATABASE {dbname} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    try:
        with psycopg.connect(cluster.url(dbname), autocommit=True) as c:
            c.execute("CREATE EXTENSION pgmodels CASCADE")
            c.execute("SET track_functions = 'pl'")
            model_id = c.execute("SELECT model_id FROM import_onnx('latin_proj', %s, ARRAY['a', 'b'], 'regression')",
                                 [tree_regressor(1.0)]).fetchone()[0]
            for _ in range(4):
                assert in_c(c, "latin_proj")[0] == 2.0
            assert in_c(c, "latin_proj") == (2.0, False)
            for _ in range(4):
                c.execute("SELECT predict(%s::bigint, ARRAY[1, 1]::real[])", [model_id])
            before, value, after = c.execute(f"SELECT {CORE_CALLS}, predict(%s::bigint, ARRAY[1, 1]::real[]), "
                                             f"{CORE_CALLS}", [model_id]).fetchone()
            assert (value, after - before) == (2.0, 0)
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


def test_a_definer_function_in_the_callers_statement_is_not_served_the_callers_lookup(conn, tree_owner, reader,
                                                                                     make_role, name):
    """The hostile review's finding: a statement's registration served whoever predicted in
    it; a SECURITY DEFINER function of an ungranted role, called in a granted role's
    statement after its lookup, got the answer. Registrations serve the role checked."""
    own, oc = tree_owner
    rname, rc = reader
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    other, xc = make_role(name + "_def")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {other}")
    xc.execute(f"""CREATE FUNCTION public.{name}_steal(f real[]) RETURNS real LANGUAGE sql SECURITY DEFINER
                   AS $$ SELECT predict('{name}', f) $$""")
    xc.execute(f"GRANT EXECUTE ON FUNCTION public.{name}_steal(real[]) TO {rname}")
    # a transaction that wrote keeps no decision: its statement's first row is looked up
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        rc.execute(f"CREATE TEMP TABLE IF NOT EXISTS {name}_w (); "
                   f"SELECT predict('{name}', ARRAY[1, 1]::real[]), public.{name}_steal(ARRAY[1, 1]::real[])")
    assert sql_error(xc, "SELECT predict(%s, ARRAY[1, 1]::real[])", [name]).sqlstate == "42501"


def test_set_role_within_a_query_string_is_not_served_the_previous_roles_lookup(conn, tree_owner, reader, make_role,
                                                                               name):
    own, oc = tree_owner
    rname, _ = reader
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    other, _ = make_role(name + "_other")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"SET ROLE {rname}; SELECT * FROM predict_batch('{name}', ARRAY[1, 1]::real[]); "
                     f"SELECT predict('{name}', ARRAY[1, 1]::real[]); RESET ROLE; SET ROLE {other}; "
                     f"SELECT predict('{name}', ARRAY[1, 1]::real[])")
    conn.execute("RESET ROLE")


def test_a_revoke_committed_during_a_query_string_reaches_its_next_predict_batch(conn, tree_owner, reader, name):
    """The hostile review's finding: every statement (and transaction) of one query string
    shares pgmodels._stamp(), so a statement's registration in C answered the next
    statements for a second after a revoke. A registration is the statement's: its
    transaction, and a snapshot that has seen no commit since."""
    import threading
    import time

    own, oc = tree_owner
    rname, rc = reader
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, rname])
    warm_c(rc, name, 2.0)  # the trees are translated
    revoke = threading.Thread(target=lambda: (time.sleep(0.3), oc.execute("SELECT revoke_project(%s, %s)",
                                                                          [name, rname])))
    revoke.start()
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rc.execute(f"SELECT array_agg(x) FROM predict_batch('{name}', ARRAY[1, 1]::real[]) x; "
                       "SELECT pg_sleep(0.8); "
                       f"SELECT array_agg(x) FROM predict_batch('{name}', ARRAY[1, 1]::real[]) x")
    finally:
        revoke.join()


def test_a_multiclass_ensemble_without_base_values_whose_classes_may_go_unscored_stays_with_onnxruntime(name):
    """The hostile review's finding: onnxruntime leaves a class no leaf scored out of the
    argmax when the ensemble has no base values, the library counted it as 0; such an
    ensemble is not translated (XGBoost's and LightGBM's score every class in every row)."""
    from pgmodels.serving import native

    def attrs(tree_classes):
        a = {"nodes_treeids": [], "nodes_nodeids": [], "nodes_modes": [], "class_treeids": [],
             "class_nodeids": [], "class_ids": []}
        for t, classes in enumerate(tree_classes):
            a["nodes_treeids"].append(t)
            a["nodes_nodeids"].append(0)
            a["nodes_modes"].append(b"LEAF")
            for c in classes:
                a["class_treeids"].append(t)
                a["class_nodeids"].append(0)
                a["class_ids"].append(c)
        return a

    assert native._every_class_scored(attrs([[0], [1], [2]]), 3)
    assert not native._every_class_scored(attrs([[0], [1]]), 3)
    partial = attrs([[0], [1], [2]])
    partial["nodes_treeids"].append(2)  # a second leaf of tree 2 that weighs nothing
    partial["nodes_nodeids"].append(1)
    partial["nodes_modes"].append(b"LEAF")
    assert not native._every_class_scored(partial, 3)
