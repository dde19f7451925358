"""The contributions output of batch jobs, stream consumers and pgmodels serve: the same
numbers as explain_prediction(), and the explain privilege they need."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from batchhelpers import CREATE, make_project
from dbhelpers import sql_error
from proxyhelpers import Server, bearer, matrix
from streamhelpers import ADD_CONSUMER, drain, insert_rides, regression_project, ride_stream


def _sql(conn, project, row: list[float]) -> dict:
    rows = conn.execute("SELECT feature, contribution FROM explain_prediction(%s, %s::real[])", [project, row])
    return dict(rows.fetchall())


def test_batch_job_writes_the_contributions_explain_prediction_gives(conn, name):
    src = make_project(conn, name, rows=60)
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, outputs => ARRAY['prediction', 'contributions'], "
                 "chunk_rows => 25)", [name, name, src, name + "_out"])
    conn.execute("CALL run_batch_job(%s)", [name])
    got = conn.execute(f"SELECT o.id, o.prediction, o.contributions, ARRAY[s.a, s.b, s.c, s.d] FROM {name}_out o "
                       f"JOIN {src} s USING (id) ORDER BY o.id").fetchall()
    assert len(got) == 60
    for key, prediction, contributions, row in got[::7]:
        assert set(contributions) == {"(base)", "a", "b", "c", "d"}
        assert contributions == pytest.approx(_sql(conn, name, row), abs=1e-9)
        margin = sum(contributions.values())
        assert (margin > 0) == (prediction == 1.0)   # the log-odds of class 1 decide the class
    err = sql_error(conn, "SELECT create_batch_job(%s, %s, %s, 'id', %s, outputs => ARRAY['contributions', 'x'])",
                    [name + "_bad", name, src, name + "_bad_out"])
    assert err.sqlstate == "22023" and "contributions" in err.diag.message_primary


def test_a_batch_job_role_needs_the_explain_privilege(conn, make_role, name):
    src = make_project(conn, name, rows=20)
    role, c = make_role("explain_batcher")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE} TO {role}")
    conn.execute(f"GRANT SELECT ON {src} TO {role}")
    conn.execute(f"CREATE SCHEMA AUTHORIZATION {role}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, role])
    err = sql_error(c, "SELECT create_batch_job(%s, %s, %s, 'id', %s, outputs => ARRAY['prediction', "
                       "'contributions'])", [name, name, src, f"{role}.out"])
    assert err.sqlstate == "42501" and "explain" in err.diag.message_detail
    assert c.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", [role]).fetchone()[0] == 0
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [name, role])
    c.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, outputs => ARRAY['prediction', 'contributions'])",
              [name, name, src, f"{role}.out"])
    c.execute("CALL run_batch_job(%s)", [name])
    assert c.execute(f"SELECT count(contributions) FROM {role}.out").fetchone()[0] == 20
    # explain taken back: the next run fails on it, naming the privilege
    conn.execute("SELECT revoke_project(%s, %s, 'explain')", [name, role])
    err = sql_error(c, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "42501" and "explain privilege" in err.diag.message_detail
    status, error = c.execute("SELECT status, error FROM pgmodels.batch_runs WHERE job = %s ORDER BY run_id DESC "
                              "LIMIT 1", [name]).fetchone()
    assert status == "failed" and "permission denied" in error
    c.execute("SELECT drop_batch_job(%s)", [name])


def test_stream_consumer_writes_contributions(conn, make_role, name):
    regression_project(conn, name)
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s, outputs => ARRAY['prediction', 'contributions'])",
                 [name, name + "_c", name])
    insert_rides(conn, table, 30)
    assert drain(conn, name + "_c") == 30
    got = conn.execute(f"SELECT p.prediction, p.contributions, r.a, r.b FROM {name}_c_predictions p "
                       f"JOIN {table} r ON r.ride_id = p.key::bigint ORDER BY p.event_id").fetchall()
    assert len(got) == 30
    for prediction, contributions, a, b in got[::5]:
        assert contributions == pytest.approx(_sql(conn, name, [a, b]), abs=1e-9)
        assert sum(contributions.values()) == pytest.approx(prediction, abs=1e-3)
    # a consumer without the option has no such column, and is unchanged
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_plain", name])
    assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = %s AND "
                        "column_name = 'contributions'", [name + "_plain_predictions"]).fetchone()[0] == 0
    err = sql_error(conn, "SELECT add_consumer(%s, %s, %s, outputs => ARRAY['nonsense'])", [name, name + "_x", name])
    assert err.sqlstate == "22023"
    # as a role granted add_consumer and predict only: refused before anything is made
    role, c = make_role("explain_consumer")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {ADD_CONSUMER} TO {role}")
    conn.execute(f"GRANT SELECT ON {table} TO {role}")
    conn.execute(f"CREATE SCHEMA AUTHORIZATION {role}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, role])
    err = sql_error(c, "SELECT add_consumer(%s, %s, %s, output_table => %s, outputs => ARRAY['contributions'])",
                    [name, f"{role}_c", name, f"{role}.out"])
    assert err.sqlstate == "42501"
    assert conn.execute("SELECT count(*) FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [f"{role}_c"]).fetchone()[0] == 0


@pytest.fixture(scope="module")
def served(test_db, tmp_path_factory):
    import uuid

    import psycopg

    from lifecycle_data import make_numeric

    tag = uuid.uuid4().hex[:8]
    project, explainer, predictor = f"ex_px_{tag}", f"ex_px_e_{tag}", f"ex_px_p_{tag}"
    c = psycopg.connect(test_db, autocommit=True)
    make_numeric(c, project)
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 10}')",
              [project, project])
    tokens = {}
    for role in (explainer, predictor):
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        c.execute("SELECT grant_project(%s, %s, 'predict')", [project, role])
        tokens[role] = c.execute("SELECT create_api_token(%s)", [role]).fetchone()[0]
    c.execute("SELECT grant_project(%s, %s, 'explain')", [project, explainer])
    server = Server(test_db, tmp_path_factory.mktemp("serve"), workers=1)
    yield {"conn": c, "project": project, "server": server, "explain": tokens[explainer], "predict": tokens[predictor]}
    server.stop()
    for role in (explainer, predictor):
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
        c.execute(f"DROP OWNED BY {role}")
        c.execute(f"DROP ROLE {role}")
    c.close()


ROWS = [[3.0, 5.0, 1.0, 2.0], [16.0, 20.0, 9.0, 4.0], [0.0, 1.0, 0.0, 0.0]]


def _infer(served, token, **extra):
    body = {"inputs": [matrix(ROWS)], "outputs": [{"name": "predict"}, {"name": "contributions"}], **extra}
    return httpx.post(f"{served['server'].url}/v2/models/{served['project']}/infer", json=body,
                      headers=bearer(token), timeout=30)


def test_serve_answers_contributions_as_sql_does(served):
    r = _infer(served, served["explain"])
    assert r.status_code == 200, r.text
    out = {o["name"]: o for o in r.json()["outputs"]}
    c = out["contributions"]
    assert c["datatype"] == "FP32" and c["shape"] == [3, 4] and c["parameters"]["features"] == ["a", "b", "c", "d"]
    data = np.array(c["data"]).reshape(3, 4)
    for i, row in enumerate(ROWS):
        expected = _sql(served["conn"], served["project"], row)
        assert data[i] == pytest.approx([expected[f] for f in "abcd"], abs=1e-5)   # FP32
        assert c["parameters"]["base"][i] == pytest.approx(expected["(base)"], abs=1e-9)
    # top_n: the largest per row, the rest as "other"
    r = _infer(served, served["explain"], parameters={"top_n": 1})
    c = {o["name"]: o for o in r.json()["outputs"]}["contributions"]
    data = np.array(c["data"]).reshape(3, 4)
    assert ((data != 0).sum(axis=1) <= 1).all() and len(c["parameters"]["other"]) == 3
    for i, row in enumerate(ROWS):
        expected = _sql(served["conn"], served["project"], row)
        assert data[i].sum() + c["parameters"]["other"][i] == pytest.approx(
            sum(v for k, v in expected.items() if k != "(base)"), abs=1e-5)
    assert _infer(served, served["explain"], parameters={"top_n": 0}).status_code == 400
    # a request that names no output gets no contributions
    plain = httpx.post(f"{served['server'].url}/v2/models/{served['project']}/infer", json={"inputs": [matrix(ROWS)]},
                       headers=bearer(served["explain"]), timeout=30).json()
    assert "contributions" not in {o["name"] for o in plain["outputs"]}


def test_serve_contributions_need_the_explain_privilege(served):
    r = _infer(served, served["predict"])
    assert r.status_code == 403 and "permission denied" in r.json()["error"]
    r = httpx.post(f"{served['server'].url}/v2/models/{served['project']}/infer",
                   json={"inputs": [matrix(ROWS)], "outputs": [{"name": "predict"}]},
                   headers=bearer(served["predict"]), timeout=30)
    assert r.status_code == 200


def test_serve_contributions_over_grpc(served):
    import json

    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(served["server"].grpc_url)
    x = np.array(ROWS, dtype=np.float32)
    inp = tg.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    result = client.infer(served["project"], [inp], outputs=[tg.InferRequestedOutput("contributions")],
                          headers=bearer(served["explain"]))
    data = result.as_numpy("contributions")
    assert data.shape == (3, 4)
    params = result.get_output("contributions").parameters
    base = json.loads(params["base"].string_param)
    expected = _sql(served["conn"], served["project"], ROWS[1])
    assert data[1] == pytest.approx([expected[f] for f in "abcd"], abs=1e-5)
    assert base[1] == pytest.approx(expected["(base)"], abs=1e-9)
