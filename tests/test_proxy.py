"""`pgmodels serve` against real clients: tritonclient over HTTP and gRPC, httpx for the
rest. The server runs as a subprocess (two workers) over the test database."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from pgmodels import __version__
from proxyhelpers import Env, bearer, matrix

ROWS = [[3.0, 5.0, 1.0, 2.0], [16.0, 20.0, 9.0, 4.0], [0.0, 1.0, 0.0, 0.0]]


@pytest.fixture(scope="module")
def env(test_db, tmp_path_factory):
    e = Env(test_db, tmp_path_factory.mktemp("serve"), "--body-timeout", "2", "--max-body", "100000")
    yield e
    e.close()


def infer(env, body, project=None, token=None, path=None) -> httpx.Response:
    url = env.server.url + (path or f"/v2/models/{project or env.num}/infer")
    return httpx.post(url, json=body, headers=bearer(token or env.token), timeout=30)


def test_tritonclient_http(env):
    import tritonclient.http as th

    client = th.InferenceServerClient(env.server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(env.num, headers=bearer(env.token))
    meta = client.get_model_metadata(env.num, headers=bearer(env.token))
    assert [i["name"] for i in meta["inputs"]] == ["a", "b", "c", "d"]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "probabilities", "label", "contributions"]
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"

    x = np.array(ROWS, dtype=np.float32)
    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # binary tensor extension, tritonclient's default
    result = client.infer(env.num, [inp], headers=bearer(env.token), request_id="req-7")
    expected = env.sql_predict(env.num, ROWS)
    assert result.as_numpy("predict").tolist() == [e[0] for e in expected]
    assert np.allclose(result.as_numpy("probabilities"), [e[1] for e in expected], atol=1e-6)
    assert result.get_response()["id"] == "req-7" and result.get_response()["model_version"] == "1"
    assert [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label")] == \
        [str(int(e[0])) for e in expected]

    inp = th.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=False)  # plain JSON
    assert client.infer(env.num, [inp], headers=bearer(env.token)).as_numpy("predict").tolist() == \
        [e[0] for e in expected]


def test_tritonclient_grpc(env):
    import tritonclient.grpc as tg
    from tritonclient.utils import InferenceServerException

    client = tg.InferenceServerClient(env.server.grpc_url)
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "pgmodels"
    assert client.is_model_ready(env.num, headers=bearer(env.token))
    meta = client.get_model_metadata(env.num, headers=bearer(env.token))
    assert [i.name for i in meta.inputs] == ["a", "b", "c", "d"] and list(meta.versions) == ["1"]

    x = np.array(ROWS, dtype=np.float64)
    inp = tg.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    result = client.infer(env.num, [inp], headers=bearer(env.token), request_id="g-1")
    expected = env.sql_predict(env.num, ROWS)
    assert result.as_numpy("predict").tolist() == [e[0] for e in expected]
    assert np.allclose(result.as_numpy("probabilities"), [e[1] for e in expected], atol=1e-6)
    assert result.get_response().id == "g-1" and result.get_response().model_version == "1"

    inp = tg.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x)
    for kwargs, code in [({}, "StatusCode.UNAUTHENTICATED"),
                         ({"headers": bearer(env.outsider_token)}, "StatusCode.PERMISSION_DENIED")]:
        with pytest.raises(InferenceServerException) as info:
            client.infer(env.num, [inp], **kwargs)
        assert info.value.status() == code, info.value
    with pytest.raises(InferenceServerException) as info:
        client.infer("no_such_model", [inp], headers=bearer(env.token))
    assert info.value.status() == "StatusCode.NOT_FOUND"
    key = tg.InferInput("key", [2], "INT64")  # features by key over gRPC: a key input
    key.set_data_from_numpy(np.array([5, 9], dtype=np.int64))
    stored = env.conn.execute(f"SELECT a, b, c, d FROM {env.features} WHERE id IN (5, 9) ORDER BY id").fetchall()
    keyed = client.infer(env.num, [key], headers=bearer(env.token))
    assert keyed.as_numpy("predict").tolist() == [e[0] for e in env.sql_predict(env.num, stored)]
    # one tensor per feature over gRPC, the text one as BYTES (raw, length-prefixed)
    feeds = {"tenure": ("FP32", np.float32, [3]), "monthly": ("FP32", np.float32, [95]),
             "calls": ("INT32", np.int32, [1]), "paperless": ("BOOL", np.bool_, [False]),
             "contract": ("BYTES", np.object_, [b"month"])}
    inputs = []
    for name, (datatype, dtype, values) in feeds.items():
        t = tg.InferInput(name, [1], datatype)
        t.set_data_from_numpy(np.array(values, dtype=dtype))
        inputs.append(t)
    labels = client.infer(env.mix, inputs, headers=bearer(env.token)).as_numpy("label")
    assert [v.decode() for v in labels] == [env.conn.execute(
        "SELECT predict_label(%s, '{\"tenure\": 3, \"monthly\": 95, \"calls\": 1, \"paperless\": false, "
        "\"contract\": \"month\"}'::jsonb)", [env.mix]).fetchone()[0]]
    bad = tg.InferInput("input", [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer(env.num, [bad], headers=bearer(env.token))
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "takes 4" in info.value.message()


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT32", "INT64"])
def test_every_numeric_datatype_scores_a_batch_in_one_call(env, datatype):
    rows = [[int(v) for v in r] for r in ROWS]
    r = infer(env, {"id": "b", "inputs": [matrix(rows, datatype=datatype)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "b" and body["model_name"] == env.num
    out = {o["name"]: o for o in body["outputs"]}
    assert out["predict"]["shape"] == [3] and out["probabilities"]["shape"] == [3, 2]
    assert out["predict"]["data"] == [e[0] for e in env.sql_predict(env.num, rows)]


def test_bool_tensor_and_requested_outputs(env):
    r = infer(env, {"inputs": [matrix([[True, False, True, False]], datatype="BOOL")],
                    "outputs": [{"name": "label"}]})
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["label"]
    assert r.json()["outputs"][0]["data"] == [str(int(env.sql_predict(env.num, [[1, 0, 1, 0]])[0][0]))]


def test_one_tensor_per_feature_with_text_as_bytes(env):
    inputs = [{"name": "tenure", "datatype": "FP32", "shape": [2], "data": [3, 50]},
              {"name": "monthly", "datatype": "FP32", "shape": [2], "data": [95, 30]},
              {"name": "calls", "datatype": "INT32", "shape": [2, 1], "data": [[1], [6]]},
              {"name": "paperless", "datatype": "BOOL", "shape": [2], "data": [False, True]},
              {"name": "contract", "datatype": "BYTES", "shape": [2], "data": ["month", "two"]}]
    r = infer(env, {"inputs": inputs}, project=env.mix)
    assert r.status_code == 200, r.text
    expected = [env.conn.execute("SELECT predict_label(%s, %s::jsonb)", [env.mix, doc]).fetchone()[0] for doc in (
        '{"tenure": 3, "monthly": 95, "calls": 1, "paperless": false, "contract": "month"}',
        '{"tenure": 50, "monthly": 30, "calls": 6, "paperless": true, "contract": "two"}')]
    assert {o["name"]: o for o in r.json()["outputs"]}["label"]["data"] == expected
    # the [batch, n] form is numeric only
    r = infer(env, {"inputs": [matrix([[1, 2, 3, 0, 1]])]}, project=env.mix)
    assert r.status_code == 400 and "text features (contract)" in r.json()["error"]


def test_features_by_key_with_overrides(env):
    stored = env.conn.execute(f"SELECT a, b, c, d FROM {env.features} WHERE id IN (5, 9) ORDER BY id").fetchall()
    r = infer(env, {"parameters": {"keys": [5, 9]}, "inputs": []})
    assert r.status_code == 200, r.text
    assert {o["name"]: o for o in r.json()["outputs"]}["predict"]["data"] == \
        [e[0] for e in env.sql_predict(env.num, stored)]
    # a key input, and a feature given in the request overrides the stored one
    r = infer(env, {"inputs": [{"name": "key", "datatype": "INT64", "shape": [2], "data": [5, 9]},
                               {"name": "a", "datatype": "FP32", "shape": [2], "data": [16, 0]}]})
    assert r.status_code == 200, r.text
    overridden = [[16.0, *stored[0][1:]], [0.0, *stored[1][1:]]]
    assert {o["name"]: o for o in r.json()["outputs"]}["probabilities"]["data"] == pytest.approx(
        [p for e in env.sql_predict(env.num, overridden) for p in e[1]], abs=1e-6)
    r = infer(env, {"parameters": {"keys": [5, 123456789]}})
    assert r.status_code == 404 and "123456789" in r.json()["error"]
    r = infer(env, {"parameters": {"keys": ["not a number"]}})
    assert r.status_code == 400 and "error" in r.json()
    r = infer(env, {"parameters": {"keys": [1]}}, project=env.mix)
    assert r.status_code == 400 and "no feature source" in r.json()["error"]


BAD_BODIES = [
    (b"{not json", 400, "malformed JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"inputs": []}', 400, "inputs"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]}', 400, "takes 4"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 5], "data": [1, 2, 3, 4, 5]}]}', 400, "takes 4"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3]}]}', 400, "needs 4"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, NaN]}]}', 400, "NaN"),
    (b'{"inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [1, 2, 3, 1e39]}]}', 400,
     "single precision"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": ["1", 2, 3, 4]}]}', 400, "numbers"),
    (b'{"inputs": [{"name": "input", "datatype": "FP16", "shape": [1, 4], "data": [1, 2, 3, 4]}]}', 400, "FP16"),
    (b'{"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1, 4], "data": ["a", "b", "c", "d"]}]}', 400,
     "numeric"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2, 1], "data": [1, 2, 3, 4]}]}', 400, "shape"),
    (b'{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}]}', 400, "needs features b, c, d"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}, '
     b'{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}', 400, "unknown input"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], '
     b'"outputs": [{"name": "nope"}]}', 400, "no output"),
    (b'{"id": 5, "inputs": []}', 400, "id"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], '
     b'"parameters": {"routing_key": "\\ud800"}}', 400, "lone surrogate"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1000000, 1000], "data": []}]}', 413, "limit"),
]


@pytest.mark.parametrize("body,status,words", BAD_BODIES)
def test_bad_input_answers_the_protocol_error(env, body, status, words):
    r = httpx.post(f"{env.server.url}/v2/models/{env.num}/infer", content=body, headers=bearer(env.token), timeout=30)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and words in r.json()["error"], r.text
    assert "Traceback" not in r.text


def test_unknown_models_versions_and_endpoints(env):
    one = {"inputs": [matrix([ROWS[0]])]}
    assert infer(env, one, project="no_such_project").status_code == 404
    assert infer(env, one, path=f"/v2/models/{env.num}/versions/1/infer").status_code == 200
    for version in ("2", "abc", "0"):
        r = infer(env, one, path=f"/v2/models/{env.num}/versions/{version}/infer")
        assert r.status_code == 404 and "no version" in r.json()["error"]
    r = httpx.get(f"{env.server.url}/v2/models/{env.num}/versions/9", headers=bearer(env.token))
    assert r.status_code == 404
    r = httpx.get(f"{env.server.url}/v2/nothing/here")
    assert r.status_code == 404 and r.json() == {"error": "no such endpoint"}
    r = httpx.get(f"{env.server.url}/v2/models/{env.num}/infer", headers=bearer(env.token))
    assert r.status_code == 405 and "error" in r.json()


def _read_reply(sock):
    """The whole reply: the server may send the headers and the body in separate packets, then close."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_oversized_body_and_slow_client(env):
    r = httpx.post(f"{env.server.url}/v2/models/{env.num}/infer", content=b"x" * 200_000, headers=bearer(env.token))
    assert r.status_code == 413 and "limit" in r.json()["error"]

    import socket

    with socket.create_connection(("127.0.0.1", env.server.port), timeout=10) as s:
        s.sendall(f"POST /v2/models/{env.num}/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.token}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"inputs\"".encode())
        started = time.monotonic()
        reply = _read_reply(s)
        assert time.monotonic() - started < 8
    assert reply.startswith("HTTP/1.1 408") and '"error"' in reply

    for partial in (b"", b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n"):  # idle, or headers trickling
        with socket.create_connection(("127.0.0.1", env.server.port), timeout=10) as s:
            s.sendall(partial)
            started = time.monotonic()
            reply = _read_reply(s)
            assert 1 < time.monotonic() - started < 8
        assert reply.startswith("HTTP/1.1 408") and "headers did not arrive" in reply


def test_metadata_server_and_openapi(env):
    r = httpx.get(f"{env.server.url}/v2")
    assert r.json()["name"] == "pgmodels" and r.json()["version"] == __version__
    r = httpx.get(f"{env.server.url}/v2/models/{env.mix}", headers=bearer(env.token))
    inputs = {i["name"]: i["datatype"] for i in r.json()["inputs"]}
    assert inputs["contract"] == "BYTES" and inputs["tenure"] == "FP32"
    assert r.json()["parameters"]["task"] == "classification"
    r = httpx.get(f"{env.server.url}/v2/models/{env.num}/ready", headers=bearer(env.token))
    assert r.status_code == 200 and r.json()["ready"] is True
    # HEAD has a head and no body: answered at once, on a connection that then answers a GET
    with httpx.Client(base_url=env.server.url, timeout=5) as client:
        for path in ("/v2/health/ready", "/v2"):
            r = client.head(path)
            assert r.status_code == 200 and r.content == b""
        assert client.get("/v2").json()["name"] == "pgmodels"
    spec = httpx.get(f"{env.server.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/v2/models/{name}/versions/{version}/infer" in spec["paths"]


def test_a_deploy_in_sql_changes_the_version_answering_the_next_request(env):
    c = env.conn
    project = f"px_dep_{env.tag}"
    first = c.execute(f"SELECT model_id FROM train('{project}', 'classification', '{env.num}', 'y')").fetchone()[0]
    second = c.execute(f"SELECT model_id FROM train('{project}', algorithm => 'xgboost', "
                       "hyperparams => '{\"n_estimators\": 3}')").fetchone()[0]
    c.execute("SELECT grant_project(%s, %s, 'predict')", [project, env.app])
    one = {"inputs": [matrix([ROWS[1]])]}
    for model_id, version in ((first, "1"), (second, "2"), (first, "1")):
        c.execute("SELECT * FROM deploy(%s::bigint)", [model_id]).fetchall()
        r = infer(env, one, project=project)
        assert r.status_code == 200 and r.json()["model_version"] == version, r.text
    assert f"infer model={project} version=2" in env.server.log_text()


def test_metrics(env):
    infer(env, {"inputs": [matrix([ROWS[0]])]})
    infer(env, {"inputs": []})
    r = httpx.post(f"{env.server.url}/v2/models/made_up_model_x/infer", content=b"{bad", headers=bearer(env.token))
    assert r.status_code == 404  # the model is looked up first: made-up names never become labels
    text = httpx.get(f"{env.server.url}/metrics").text
    assert "made_up_model_x" not in text
    assert f'pgmodels_requests_total{{code="200",endpoint="infer",model="{env.num}"}}' in text
    assert f'pgmodels_request_errors_total{{code="400",endpoint="infer",model="{env.num}"}}' in text
    assert f'pgmodels_request_duration_seconds_bucket{{endpoint="infer",le="0.01",model="{env.num}"}}' in text
    assert 'pgmodels_pool_connections{state="size"}' in text


def test_concurrent_requests_each_get_their_own_rows_and_errors(env):
    """Requests that arrive together may share a statement (batching.py): each still gets
    its own rows in order, and one request's bad features fail only that request."""
    import asyncio

    bad_key = 10_000_000
    env.conn.execute(f"INSERT INTO {env.features} VALUES ({bad_key}, NULL, 1, 1, 1) ON CONFLICT DO NOTHING")
    stored = dict((r[0], list(r[1:])) for r in env.conn.execute(f"SELECT id, a, b, c, d FROM {env.features} "
                                                                 "WHERE id <= 50"))
    expected = dict(zip(stored, env.sql_predict(env.num, list(stored.values()))))

    async def go():
        async with httpx.AsyncClient(headers=bearer(env.token), timeout=30) as client:
            async def one(i):
                keys = [bad_key] if i == 13 else [i + 1, i + 2]  # a stored NULL fails in the database
                body = {"id": str(i), "parameters": {"keys": keys}}
                return i, await client.post(f"{env.server.url}/v2/models/{env.num}/infer", json=body)
            return await asyncio.gather(*(one(i) for i in range(48)))

    for i, r in asyncio.run(go()):
        if i == 13:
            assert r.status_code == 400 and "NULL" in r.json()["error"], r.text
            continue
        assert r.status_code == 200, r.text
        out = {o["name"]: o["data"] for o in r.json()["outputs"]}
        assert r.json()["id"] == str(i)
        assert out["predict"] == [expected[i + 1][0], expected[i + 2][0]]
        assert out["probabilities"] == pytest.approx([*expected[i + 1][1], *expected[i + 2][1]], abs=1e-6)


def test_a_regression_model_answers_predict_only(env):
    from lifecycle_data import make_regression

    project = f"px_reg_{env.tag}"
    make_regression(env.conn, project)
    env.conn.execute(f"SELECT * FROM train('{project}', 'regression', '{project}', 'y')").fetchall()
    env.conn.execute("SELECT grant_project(%s, %s, 'predict')", [project, env.app])
    meta = httpx.get(f"{env.server.url}/v2/models/{project}", headers=bearer(env.token)).json()
    assert [o["name"] for o in meta["outputs"]] == ["predict", "contributions"]
    r = infer(env, {"inputs": [matrix([[2.0, 3.0], [5.0, 1.0]], datatype="FP64")]}, project=project)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == pytest.approx([3 * 2 - 2 * 3 + 1, 3 * 5 - 2 * 1 + 1], abs=1e-3)
    r = infer(env, {"inputs": [matrix([[2.0, 3.0]])], "outputs": [{"name": "probabilities"}]}, project=project)
    assert r.status_code == 400 and "no output" in r.json()["error"]


def test_requests_are_logged_with_the_model_version_that_answered(env):
    import psycopg

    c = env.conn
    project = f"px_log_{env.tag}"
    first = c.execute(f"SELECT model_id FROM train('{project}', 'classification', '{env.num}', 'y')").fetchone()[0]
    second = c.execute(f"SELECT model_id FROM train('{project}', algorithm => 'xgboost', "
                       "hyperparams => '{\"n_estimators\": 3}')").fetchone()[0]
    c.execute("SELECT grant_project(%s, %s, 'predict')", [project, env.app])
    for model_id in (first, second):
        c.execute("SELECT * FROM deploy(%s::bigint)", [model_id]).fetchall()
        assert infer(env, {"id": f"r{model_id}", "inputs": [matrix([ROWS[0], ROWS[1]])]}, project=project).status_code == 200
    assert infer(env, {"inputs": [matrix([[1.0, 2.0]])]}, project=project).status_code == 400
    deadline, rows = time.monotonic() + 10, []
    while time.monotonic() < deadline and len(rows) < 3:
        time.sleep(0.3)
        rows = c.execute("SELECT model_id, model_version, status, role, transport, rows, request_id, latency_ms > 0 "
                         "FROM pgmodels.request_log WHERE project = %s ORDER BY at, id", [project]).fetchall()
    assert [r[:3] for r in rows] == [(first, 1, 200), (second, 2, 200), (None, None, 400)], rows
    assert {r[3] for r in rows} == {env.app} and {r[4] for r in rows} == {"http"}
    assert [r[5] for r in rows[:2]] == [2, 2] and rows[0][6] == f"r{first}" and all(r[7] for r in rows)
    assert c.execute("SELECT count(*) FROM pgmodels.request_log WHERE project = %s AND transport = 'grpc'",
                     [env.num]).fetchone()[0] > 0
    # the log is its project owner's to read: a role with predict sees none of it, and may not write it
    with psycopg.connect(env.dsn, user=env.app, password="pw", autocommit=True) as app:
        assert app.execute("SELECT count(*) FROM pgmodels.request_logs WHERE project = %s", [project]).fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("INSERT INTO pgmodels.request_log (at, project, role, transport, status, latency_ms) "
                        "VALUES (now(), %s, 'x', 'http', 200, 1)", [project])
    assert c.execute("SELECT count(*) FROM pgmodels.request_logs WHERE project = %s", [project]).fetchone() == (3,)
