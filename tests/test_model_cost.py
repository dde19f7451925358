"""Models whose work has no end in sight (issue 24, section 2): import_onnx refuses a model
whose work per row it cannot bound or that passes the administrator's limit, and
statement_timeout, pg_cancel_backend and pg_terminate_backend stop import_onnx and every
way of scoring with what it accepts, as an unprivileged role, leaving the session (or the
server, after a terminate) able to predict.

The models are the review's: ConstantOfShape makes a square matrix from an initializer, a
scalar from the input keeps onnxruntime from folding it, then a chain of MatMuls. "heavy"
always runs the chain; "branchy" runs it only when the features sum to more than zero (an
If), so that its import, which probes zeros, is quick, and a row of ones is slow. At
SIZE 1024 a MatMul takes some 30 ms on one core, so the chains below would run for half a
minute or more. The time bounds are loose on purpose: they tell a stopped run from one
that ran to its end, not a fast machine from a slow one.
"""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import onnx
import psycopg
import pytest
from onnx import TensorProto, helper, numpy_helper

from dbhelpers import sql_error
from onnx_models import scaled_sum
from proxyhelpers import Server, bearer, matrix

IMPORT = "import_onnx(text, bytea, text[], text, jsonb, text[], boolean)"
CREATE_JOB = "create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval)"
SIZE = 1024
MATMULS = 1000
RAISED = "1e14"  # pgmodels.max_import_cost for the tests that need the heavy models imported
STOPPED_WITHIN = 5.0  # seconds: a run stopped at 1 s, not one that ran its half minute


def _chain(size: int, matmuls: int, prefix: str = "") -> list:
    """A size x size matrix of 1/size (which its square keeps), plus 0 x the input's sum,
    squared matmuls times, averaged into <prefix>m, a 1 x 1 tensor."""
    nodes = [helper.make_node("ConstantOfShape", ["shape"], [prefix + "M0"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0 / size])),
             helper.make_node("Mul", ["s", "zero"], [prefix + "s0"]),
             helper.make_node("Add", [prefix + "M0", prefix + "s0"], [prefix + "A0"])]
    nodes += [helper.make_node("MatMul", [f"{prefix}A{i}", f"{prefix}A{i}"], [f"{prefix}A{i + 1}"])
              for i in range(matmuls)]
    return nodes + [helper.make_node("ReduceMean", [f"{prefix}A{matmuls}"], [prefix + "m"], keepdims=1)]


def _model(nodes: list, size: int, classifier: bool) -> bytes:
    """The graph around m: a regression's value = X @ 0 + m; a classifier's scores
    X @ [[1, -1], [1, -1]] + m, their softmax and argmax (class 0 for positive sums)."""
    inits = [numpy_helper.from_array(np.array([size, size], np.int64), "shape"),
             numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero_s")]
    if classifier:
        inits.append(numpy_helper.from_array(np.array([[1.0, -1.0], [1.0, -1.0]], np.float32), "W"))
        tail = [helper.make_node("MatMul", ["X", "W"], ["xw"]), helper.make_node("Add", ["xw", "m"], ["z"]),
                helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
                helper.make_node("ArgMax", ["z"], ["label"], axis=1, keepdims=0)]
        outputs = [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                   helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])]
    else:
        inits.append(numpy_helper.from_array(np.zeros((2, 1), np.float32), "W"))
        tail = [helper.make_node("MatMul", ["X", "W"], ["xw"]), helper.make_node("Add", ["xw", "m"], ["value"])]
        outputs = [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])]
    graph = helper.make_graph(nodes + tail, "costly", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def heavy(size: int = SIZE, matmuls: int = MATMULS) -> bytes:
    return _model([helper.make_node("ReduceSum", ["X"], ["s"], keepdims=0)] + _chain(size, matmuls), size, False)


def branchy(classifier: bool = True, size: int = SIZE, matmuls: int = MATMULS) -> bytes:
    then = helper.make_graph(_chain(size, matmuls, "t_"), "then", [],
                             [helper.make_tensor_value_info("t_m", TensorProto.FLOAT, [1, 1])])
    other = helper.make_graph([helper.make_node("Constant", [], ["e_m"],
                                                value=numpy_helper.from_array(np.zeros((1, 1), np.float32)))],
                              "else", [], [helper.make_tensor_value_info("e_m", TensorProto.FLOAT, [1, 1])])
    nodes = [helper.make_node("ReduceSum", ["X"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero_s"], ["c"]),
             helper.make_node("If", ["c"], ["m"], then_branch=then, else_branch=other)]
    return _model(nodes, size, classifier)


def _graph(nodes: list, inits: list, width: int = 2) -> bytes:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, width])],
                              [helper.make_tensor_value_info("value", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def square_from_input() -> bytes:
    """A MatMul of an n x n matrix by itself, n the first feature: work the input decides."""
    return _graph([helper.make_node("ReduceMax", ["X"], ["mx"], keepdims=0),
                   helper.make_node("Cast", ["mx"], ["n"], to=TensorProto.INT64),
                   helper.make_node("Reshape", ["n", "one"], ["n1"]),
                   helper.make_node("Concat", ["n1", "n1"], ["dims"], axis=0),
                   helper.make_node("ConstantOfShape", ["dims"], ["M"]),
                   helper.make_node("MatMul", ["M", "M"], ["MM"]),
                   helper.make_node("ReduceSum", ["MM"], ["value"], keepdims=1)],
                  [numpy_helper.from_array(np.array([1], np.int64), "one")])


def rows_squared() -> bytes:
    """X @ X^T: rows x rows values, each over the features: work that grows as rows squared."""
    return _graph([helper.make_node("Transpose", ["X"], ["XT"]),
                   helper.make_node("MatMul", ["X", "XT"], ["G"]),
                   helper.make_node("ReduceSum", ["G"], ["value"], keepdims=1)], [])


@pytest.fixture
def importer(conn, make_role, name):
    """A role with LOGIN and EXECUTE on import_onnx, nothing else."""
    rolname, role = make_role(name + "_imp")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {IMPORT} TO {rolname}")
    return rolname, role


@pytest.fixture
def raised(admin_setting):
    admin_setting("pgmodels.max_import_cost", RAISED)


def timed(conn, statement: str, params=None) -> tuple[psycopg.Error | None, float]:
    """(the error the statement ended with, or None; seconds it took)."""
    start = time.monotonic()
    try:
        conn.execute(statement, params).fetchall()
        error = None
    except psycopg.Error as e:
        error = e
    return error, time.monotonic() - start


def stopped_by_timeout(error, seconds: float) -> None:
    assert error is not None and error.sqlstate == "57014", error
    assert error.diag.message_primary == "canceling statement due to statement timeout"
    assert seconds < STOPPED_WITHIN, seconds


def still_serves(conn, role, name: str) -> None:
    """Nothing is left broken: the session imports and predicts with an ordinary model."""
    role.execute("RESET statement_timeout")
    role.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                 [name + "_ok", scaled_sum(2.0)])
    assert role.execute("SELECT predict(%s, ARRAY[1, 2])", [name + "_ok"]).fetchone() == (6.0,)
    assert conn.execute("SELECT 1").fetchone() == (1,)


def later(seconds: float, fn) -> threading.Timer:
    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer


def models_of(conn, project: str) -> int:
    return conn.execute("SELECT count(*) FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id "
                        "WHERE p.name = %s", [project]).fetchone()[0]


# --- import_onnx refuses what it cannot bound ---------------------------------------------

def test_the_reviews_model_is_refused_by_the_work_limit(conn, importer, name):
    _, role = importer
    error, seconds = timed(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                           [name, heavy(2048, 150)])
    assert error is not None and error.sqlstate == "54000", error
    assert "exceeds the limit of 1000000000" in error.diag.message_primary
    assert "pgmodels.max_import_cost" in error.diag.message_detail
    assert "pgmodels.max_import_cost" in error.diag.message_hint
    assert seconds < STOPPED_WITHIN  # refused before running anything
    assert models_of(conn, name) == 0


def test_the_limit_is_the_administrators(conn, importer, name, admin_setting):
    rolname, role = importer
    # a role's own setting is not the limit
    role.execute("SET pgmodels.max_import_cost = '1e15'")
    err = sql_error(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, heavy(512, 10)])
    assert err.sqlstate == "54000" and "1000000000" in err.diag.message_primary
    admin_setting("pgmodels.max_import_cost", "2000000")  # 20 nodes; 2 MatMuls of 128 pass it
    err = sql_error(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                    [name, heavy(128, 2)])
    assert err.sqlstate == "54000" and "limit of 2000000" in err.diag.message_primary
    # a small model passes a small limit, and its estimate is recorded
    role.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(1.0)])
    assert conn.execute("SELECT (m.training ->> 'work_per_row')::float8 FROM pgmodels.models m "
                        "JOIN pgmodels.projects p ON p.id = m.project_id WHERE p.name = %s",
                        [name]).fetchone()[0] > 0


def test_a_model_too_large_to_load_quickly_is_refused(conn, importer, name):
    """Loading a model cannot be interrupted: 10,001 nodes (of nothing) pass the default limit."""
    _, role = importer
    chain = [helper.make_node("Identity", ["X" if i == 0 else f"v{i}"], [f"v{i + 1}"]) for i in range(10_000)]
    model = _graph(chain + [helper.make_node("ReduceSum", ["v10000"], ["value"], keepdims=1)], [])
    error, seconds = timed(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, model])
    assert error is not None and error.sqlstate == "54000", error
    assert error.diag.message_primary == "the ONNX model has 10001 nodes, more than the limit of 10000 allows"
    assert "pgmodels.max_import_cost" in error.diag.message_hint
    assert seconds < STOPPED_WITHIN
    assert models_of(conn, name) == 0


@pytest.mark.parametrize("model, words", [(square_from_input, "shape depends on the input's values"),
                                          (rows_squared, "grows faster than the number of rows")])
def test_work_that_cannot_be_bounded_is_refused(conn, importer, name, raised, model, words):
    _, role = importer
    err = sql_error(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, model()])
    assert err.sqlstate == "0A000" and err.diag.message_primary == "the work of the ONNX model cannot be bounded"
    assert words in err.diag.message_detail
    assert models_of(conn, name) == 0


# --- import_onnx is stopped ---------------------------------------------------------------

def test_statement_timeout_stops_import(conn, importer, name, raised):
    _, role = importer
    role.execute("SET statement_timeout = '1s'")
    error, seconds = timed(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                           [name, heavy()])
    stopped_by_timeout(error, seconds)
    assert models_of(conn, name) == 0
    still_serves(conn, role, name)


def test_pg_cancel_backend_stops_import(conn, importer, name, raised):
    _, role = importer
    pid = role.info.backend_pid
    timer = later(1.0, lambda: conn.execute("SELECT pg_cancel_backend(%s)", [pid]))
    error, seconds = timed(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                           [name, heavy()])
    timer.join()
    assert error is not None and error.sqlstate == "57014", error
    assert error.diag.message_primary == "canceling statement due to user request"
    assert seconds < STOPPED_WITHIN, seconds
    assert models_of(conn, name) == 0
    still_serves(conn, role, name)


def test_pg_terminate_backend_stops_import(conn, importer, name, raised, cluster):
    rolname, role = importer
    pid = role.info.backend_pid
    started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    timer = later(1.0, lambda: conn.execute("SELECT pg_terminate_backend(%s)", [pid]))
    error, seconds = timed(role, "SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                           [name, heavy()])
    timer.join()
    assert isinstance(error, psycopg.OperationalError) and error.sqlstate in ("57P01", None), error
    assert seconds < STOPPED_WITHIN, seconds
    assert role.closed or role.broken
    # the backend ended cleanly: the server did not restart, other sessions live on
    assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    assert conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() == (0,)
    assert models_of(conn, name) == 0
    with psycopg.connect(f"postgresql://{rolname}:pw@127.0.0.1:{cluster.port}/{conn.info.dbname}",
                         autocommit=True) as again:
        still_serves(conn, again, name)


# --- every way of scoring is stopped ------------------------------------------------------

@pytest.fixture
def slow_project(conn, importer, name, raised):
    """The importer's classifier that is quick on rows summing to 0 and slow on others."""
    _, role = importer
    role.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'classification')", [name, branchy()])
    assert role.execute("SELECT predict(%s, ARRAY[0, 0])", [name]).fetchone() == (0.0,)
    return name


@pytest.mark.parametrize("statement", [
    "SELECT predict(%s, ARRAY[1, 1])",
    "SELECT predict(%s, '{\"a\": 1, \"b\": 1}'::jsonb)",
    "SELECT predict_proba(%s, ARRAY[1, 1])",
    "SELECT predict_label(%s, ARRAY[1, 1])",
    "SELECT predict_batch(%s, ARRAY[[0, 0], [1, 1], [1, 1]]::real[])",
    "SELECT predict(%s, ARRAY[a, b]) FROM (VALUES (0, 0), (1, 1), (2, 2)) v(a, b)",
])
def test_statement_timeout_stops_scoring(conn, importer, slow_project, statement):
    _, role = importer
    role.execute("SET statement_timeout = '1s'")
    error, seconds = timed(role, statement, [slow_project])
    stopped_by_timeout(error, seconds)
    assert role.execute("SELECT predict(%s, ARRAY[0, 0])", [slow_project]).fetchone() == (0.0,)
    still_serves(conn, role, slow_project)


def test_statement_timeout_stops_scoring_in_a_parallel_worker(conn, importer, slow_project):
    _, role = importer
    role.execute("SET force_parallel_mode = on")  # a worker runs the whole plan, the leader waits
    role.execute("SET statement_timeout = '1s'")
    plan = "\n".join(r[0] for r in role.execute("EXPLAIN SELECT predict(%s, ARRAY[1, 1])", [slow_project]))
    assert "Gather" in plan
    error, seconds = timed(role, "SELECT predict(%s, ARRAY[a, b]) FROM (VALUES (0, 0), (1, 1)) v(a, b)",
                           [slow_project])
    stopped_by_timeout(error, seconds)
    assert role.execute("SELECT predict(%s, ARRAY[0, 0])", [slow_project]).fetchone() == (0.0,)
    role.execute("RESET force_parallel_mode")
    still_serves(conn, role, slow_project)


def test_a_model_imported_without_an_estimate_is_stopped_too(conn, importer, slow_project, connect, cluster):
    """A model imported before 0.3.0 has no work_per_row: serving estimates it at load."""
    rolname, _ = importer
    conn.execute("UPDATE pgmodels.models m SET training = m.training - 'work_per_row' FROM pgmodels.projects p "
                 "WHERE p.id = m.project_id AND p.name = %s", [slow_project])
    with psycopg.connect(f"postgresql://{rolname}:pw@127.0.0.1:{cluster.port}/{conn.info.dbname}",
                         autocommit=True) as fresh:
        fresh.execute("SET statement_timeout = '1s'")
        error, seconds = timed(fresh, "SELECT predict(%s, ARRAY[a, b]) FROM (VALUES (0, 0), (1, 1)) v(a, b)",
                               [slow_project])
        stopped_by_timeout(error, seconds)
        assert fresh.execute("SELECT predict(%s, ARRAY[0, 0])", [slow_project]).fetchone() == (0.0,)


def test_predict_batch_in_a_parallel_worker_answers_in_its_own_words(conn, importer, slow_project):
    """PL/Python can run no query in parallel mode: an error recorded there is untagged,
    not replaced by 'cannot start subtransactions during a parallel operation'."""
    _, role = importer
    role.execute("SET force_parallel_mode = on")
    err = sql_error(role, "SELECT * FROM predict_batch(%s, ARRAY[1, 2, 3]::real[])", [slow_project])
    assert err.sqlstate == "22023" and "whole number of rows" in err.diag.message_primary
    role.execute("SET statement_timeout = '1s'")
    error, seconds = timed(role, "SELECT * FROM predict_batch(%s, ARRAY[[1, 1], [0, 0]]::real[])", [slow_project])
    stopped_by_timeout(error, seconds)


def test_statement_timeout_stops_a_batch_job(conn, importer, slow_project):
    rolname, role = importer
    job = slow_project + "_job"
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE_JOB} TO {rolname}")
    conn.execute(f"CREATE SCHEMA {job} AUTHORIZATION {rolname}")
    role.execute(f"CREATE TABLE {job}.src AS SELECT i AS id, (i % 2)::real AS a, 0::real AS b "
                 "FROM generate_series(1, 4) i")
    role.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 2)",
                 [job, slow_project, f"{job}.src", f"{job}.out"])
    role.execute("SET statement_timeout = '1s'")
    error, seconds = timed(role, "CALL run_batch_job(%s)", [job])
    stopped_by_timeout(error, seconds)
    still_serves(conn, role, slow_project)


def test_statement_timeout_stops_stream_scoring(conn, importer, slow_project):
    rolname, role = importer
    stream = slow_project + "_s"
    conn.execute(f"GRANT EXECUTE ON FUNCTION create_stream(text, text, text), "
                 f"add_consumer(text, text, text, text, text, text, boolean, integer) TO {rolname}")
    conn.execute(f"CREATE SCHEMA {stream} AUTHORIZATION {rolname}")
    role.execute(f"CREATE TABLE {stream}.events (id bigserial PRIMARY KEY, a real, b real)")
    role.execute("SELECT create_stream(%s, %s, 'id')", [stream, f"{stream}.events"])
    try:
        role.execute("SELECT add_consumer(%s, %s, %s, %s)", [stream, stream, slow_project, f"{stream}.out"])
        role.execute(f"INSERT INTO {stream}.events (a, b) VALUES (0, 0), (1, 1)")
        role.execute("SET statement_timeout = '1s'")
        error, seconds = timed(role, "SELECT process_stream(%s, 10)", [stream])
        stopped_by_timeout(error, seconds)
        still_serves(conn, role, slow_project)
    finally:
        conn.execute("SELECT drop_stream(%s, true)", [stream])


def test_pg_cancel_backend_stops_predict(conn, importer, slow_project):
    _, role = importer
    pid = role.info.backend_pid
    timer = later(1.0, lambda: conn.execute("SELECT pg_cancel_backend(%s)", [pid]))
    error, seconds = timed(role, "SELECT predict(%s, ARRAY[1, 1])", [slow_project])
    timer.join()
    assert error is not None and error.sqlstate == "57014", error
    assert error.diag.message_primary == "canceling statement due to user request"
    assert seconds < STOPPED_WITHIN, seconds
    still_serves(conn, role, slow_project)


def test_pg_terminate_backend_stops_predict_batch(conn, importer, slow_project, cluster):
    rolname, role = importer
    pid = role.info.backend_pid
    started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    timer = later(1.0, lambda: conn.execute("SELECT pg_terminate_backend(%s)", [pid]))
    error, seconds = timed(role, "SELECT predict_batch(%s, ARRAY[[1, 1], [1, 1]]::real[])", [slow_project])
    timer.join()
    assert isinstance(error, psycopg.OperationalError) and error.sqlstate in ("57P01", None), error
    assert seconds < STOPPED_WITHIN, seconds
    assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started
    with psycopg.connect(f"postgresql://{rolname}:pw@127.0.0.1:{cluster.port}/{conn.info.dbname}",
                         autocommit=True) as again:
        assert again.execute("SELECT predict(%s, ARRAY[0, 0])", [slow_project]).fetchone() == (0.0,)


def test_pgmodels_serve_statement_timeout_stops_inference(conn, importer, slow_project, test_db, tmp_path, name):
    rolname, role = importer
    app = name + "_app"
    conn.execute(f"CREATE ROLE {app} LOGIN PASSWORD 'pw'")
    role.execute("SELECT grant_project(%s, %s, 'predict')", [slow_project, app])
    token = conn.execute("SELECT create_api_token(%s)", [app]).fetchone()[0]
    # one worker with one connection: the request after the slow one runs on the same backend
    server = Server(test_db, tmp_path, "--statement-timeout", "1000", "--pool-size", "1", workers=1)
    url = f"{server.url}/v2/models/{slow_project}/infer"
    try:
        start = time.monotonic()
        r = httpx.post(url, json={"inputs": [matrix([[1.0, 1.0]])]}, headers=bearer(token), timeout=60)
        seconds = time.monotonic() - start
        assert r.status_code == 504, r.text
        assert seconds < STOPPED_WITHIN, seconds
        r = httpx.post(url, json={"inputs": [matrix([[0.0, 0.0]])]}, headers=bearer(token), timeout=60)
        assert r.status_code == 200, r.text
    finally:
        server.stop()
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [app])
        conn.execute(f"DROP OWNED BY {app}")
        conn.execute(f"DROP ROLE {app}")
    assert "Traceback" not in server.log_text()


def test_a_long_batch_is_cut_into_runs_and_answers_as_one(connect, conn, name):
    """A batch expected to run long is cut into runs (of about a quarter second each, from
    the time a row took before): its answers are the row-wise ones, in order."""
    from lifecycle_data import make_numeric

    make_numeric(conn, name, 400)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 50}')",
                 [name, name]).fetchall()
    conn.execute(f"CREATE TABLE {name}_rows AS SELECT i, ARRAY[(i % 17), (i * 7) % 23, (i * 3) % 11, i % 5]::real[] "
                 "AS f FROM generate_series(1, 60000) i")
    fresh = connect()  # a backend whose only measure of the model is its first row
    fresh.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4])", [name])
    batch = fresh.execute(f"SELECT array_agg(p) FROM predict_batch(%s, (SELECT array_agg(x ORDER BY i, o) "
                          f"FROM {name}_rows, unnest(f) WITH ORDINALITY u(x, o))) p", [name]).fetchone()[0]
    rows = fresh.execute(f"SELECT array_agg(predict(%s, f) ORDER BY i) FROM {name}_rows", [name]).fetchone()[0]
    assert len(batch) == 60000 and batch == rows
