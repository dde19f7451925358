"""Rollouts (issue #27) in `pgmodels serve` and on edge devices, against a real server:
a canary answers each routing key (parameters.routing_key, or a key of the feature source)
with the version rollout_version() names; a request whose rows the canary splits names
the candidate and each row's version; shadow answers are the champion's and recorded as
source proxy; devices in the canary share get the candidate's signed bundle, and all get
the champion's back after an abort; a bad routing key is a 400."""

from __future__ import annotations

import time

import hashlib
import io
import json
import uuid
import zipfile

import httpx
import psycopg
import pytest

from pgmodels_edge import Device

from proxyhelpers import Server, bearer

P = "ro_proxy"
TAG = uuid.uuid4().hex[:6]  # roles are the cluster's: unique per run
APP = f"ro_app_{TAG}"
ROW = [0.5, -1.0, 1.2, 2.0]


@pytest.fixture(scope="module")
def env(test_db, tmp_path_factory):
    conn = psycopg.connect(test_db, autocommit=True)
    conn.execute("SELECT setseed(0.3)")
    conn.execute(f"""
        CREATE TABLE {P}_data AS
        SELECT i AS id, x1, x2, x3, x4, CASE WHEN x1 + x2 > 0.3 OR x3 > 1.6 THEN 'yes' ELSE 'no' END AS y
          FROM (SELECT i, (random() * 4 - 2)::real x1, (random() * 4 - 2)::real x2, (random() * 2)::real x3,
                       (random() * 3)::real x4 FROM generate_series(1, 600) i) s""")
    conn.execute(f"CREATE VIEW {P}_v AS SELECT x1, x2, x3, x4, y FROM {P}_data")
    first = conn.execute(f"SELECT model_id FROM train('{P}', 'classification', '{P}_v', 'y', "
                         "algorithm => 'linear')").fetchone()[0]
    second = conn.execute(f"SELECT model_id FROM train('{P}', 'classification', '{P}_v', 'y', "
                          "algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 5}', "
                          "automatic_deploy => false)").fetchone()[0]
    conn.execute(f"SELECT register_feature_source('{P}', '{P}_data', 'id')")
    conn.execute(f"CREATE ROLE {APP} LOGIN")
    conn.execute(f"GRANT SELECT ON {P}_data TO {APP}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [P, APP])
    conn.execute("SELECT grant_project(%s, %s, 'export')", [P, APP])
    token = conn.execute("SELECT create_api_token(%s)", [APP]).fetchone()[0]
    versions = dict(conn.execute("SELECT id, version FROM pgmodels.models WHERE id IN (%s, %s)",
                                 [first, second]).fetchall())
    # answers written at once (serve's backends write in blocks, at most a second late)
    dsn = test_db + ("&" if "?" in test_db else "?") + "options=-c%20pgmodels.rollout_write_delay%3D0"
    server = Server(dsn, tmp_path_factory.mktemp("rollouts"), workers=2)
    yield {"conn": conn, "server": server, "token": token, "champion": first, "candidate": second,
           "versions": versions, "key": conn.execute("SELECT edge_public_key()").fetchone()[0]}
    server.stop()
    conn.execute(f"DROP OWNED BY {APP}")
    conn.execute(f"DROP ROLE {APP}")
    conn.close()


@pytest.fixture
def rollout(env):
    """Start a rollout (mode, fraction); aborted at the end if still active."""
    started = []

    def start(mode: str, fraction: float | None = None) -> int:
        rid = env["conn"].execute("SELECT start_rollout(%s, %s::bigint, %s, %s::real)",
                                  [P, env["candidate"], mode, fraction]).fetchone()[0]
        started.append(rid)
        return rid
    yield start
    for rid in started:
        if env["conn"].execute("SELECT status FROM pgmodels.rollout_runs WHERE id = %s", [rid]).fetchone()[0] \
                == "active":
            env["conn"].execute("SELECT abort_rollout(%s)", [rid])


def infer(env, body: dict) -> httpx.Response:
    return httpx.post(f"{env['server'].url}/v2/models/{P}/infer", json=body, headers=bearer(env["token"]),
                      timeout=30)


def matrix(rows: list, **parameters) -> dict:
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [len(rows), 4], "data": rows}]}
    if parameters:
        body["parameters"] = parameters
    return body


def expected(env, key) -> int:
    return env["conn"].execute("SELECT version FROM rollout_version(%s, %s::text)", [P, str(key)]).fetchone()[0]


def test_canary_answers_each_routing_key_with_rollout_version(env, rollout):
    rid = rollout("canary", 0.5)
    want, got = {}, {}
    for i in range(40):
        key = f"customer-{i}" if i % 2 else i  # strings and numbers
        want[i], got[i] = expected(env, key), None
        r = infer(env, matrix([ROW], routing_key=key))
        assert r.status_code == 200, r.text
        got[i] = int(r.json()["model_version"])
    assert got == want
    # both versions answered: the test could fail either way
    assert set(got.values()) == set(env["versions"].values())
    # the candidate's answers are recorded with their key, as source proxy
    canary = {k for (k,) in env["conn"].execute(
        "SELECT key FROM pgmodels.rollout_predictions WHERE rollout_id = %s AND role = 'canary' "
        "AND source = 'proxy'", [rid]).fetchall()}
    assert canary == {str(f"customer-{i}" if i % 2 else i) for i, v in want.items()
                      if v == env["versions"][env["candidate"]]}
    # gRPC carries the same key as a scalar parameter
    import numpy as np
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(env["server"].grpc_url)
    for i in range(0, 40, 5):
        inp = tg.InferInput("input", [1, 4], "FP32")
        inp.set_data_from_numpy(np.array([ROW], dtype=np.float32))
        result = client.infer(P, [inp], headers=bearer(env["token"]), parameters={"routing_key": f"g-{i}"})
        assert int(result.get_response().model_version) == expected(env, f"g-{i}")


def test_a_split_request_names_the_candidate_and_each_row_s_version(env, rollout):
    rollout("canary", 0.5)
    keys = [f"row-{i}" for i in range(12)]
    rows = [expected(env, k) for k in keys]
    assert len(set(rows)) == 2
    body = matrix([ROW] * 12, routing_key=keys)
    body["id"] = "split-request"
    r = infer(env, body)
    assert r.status_code == 200, r.text
    body = r.json()
    assert int(body["model_version"]) == env["versions"][env["candidate"]]
    assert body["parameters"]["model_versions"] == rows
    # and the request log (written in the background) records the version that answered
    logged = None
    for _ in range(100):
        logged = env["conn"].execute("SELECT model_version, model_id FROM pgmodels.request_log WHERE project = %s "
                                     "AND request_id = 'split-request'", [P]).fetchone()
        if logged is not None:
            break
        time.sleep(0.1)
    assert logged == (env["versions"][env["candidate"]], env["candidate"])


def test_keys_of_the_feature_source_route_by_themselves(env, rollout):
    rollout("canary", 0.5)
    ids = list(range(1, 31))
    for i in ids:
        r = infer(env, {"inputs": [], "parameters": {"keys": [i]}})
        assert r.status_code == 200, r.text
        assert int(r.json()["model_version"]) == expected(env, i), i
    assert len({expected(env, i) for i in ids}) == 2


def test_shadow_answers_with_the_champion_and_records_both(env, rollout):
    rid = rollout("shadow")
    champion = env["versions"][env["champion"]]
    for i in range(10):
        r = infer(env, matrix([ROW, ROW], routing_key=f"s-{i}"))
        assert r.status_code == 200, r.text
        assert int(r.json()["model_version"]) == champion and "parameters" not in r.json()
    r = infer(env, matrix([ROW]))  # without a key: still the champion, still shadowed
    assert int(r.json()["model_version"]) == champion
    counts = dict(env["conn"].execute(
        "SELECT role, count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s AND source = 'proxy' "
        "GROUP BY role", [rid]).fetchall())
    assert counts == {"shadow": 21}  # one row per input, the champion's answer beside the candidate's
    assert env["conn"].execute("SELECT count(champion_prediction) FROM pgmodels.rollout_predictions "
                               "WHERE rollout_id = %s AND source = 'proxy'", [rid]).fetchone()[0] == 21
    assert env["conn"].execute("SELECT count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s "
                               "AND role = 'shadow' AND model_id = %s", [rid, env["candidate"]]).fetchone()[0] == 21


def _bundle_version(env, device: str | None) -> tuple[int, int]:
    url = f"{env['server'].url}/v2/models/{P}/bundle" + (f"?device_id={device}" if device is not None else "")
    r = httpx.get(url, headers=bearer(env["token"]), timeout=60)
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        m = json.loads(z.read("manifest.json"))
    return m["version"], m["deployment"]


def test_devices_in_the_canary_share_get_the_candidate_and_an_abort_takes_them_back(env, rollout, tmp_path):
    rid = rollout("canary", 0.5)
    fraction = env["conn"].execute("SELECT fraction FROM pgmodels.rollout_runs WHERE id = %s", [rid]).fetchone()[0]
    devices = [f"device-{i}" for i in range(40)]
    shares = dict(env["conn"].execute("SELECT d, pgmodels._rollout_share(%s, d) FROM unnest(%s::text[]) d",
                                      [rid, devices]).fetchall())
    # the documented hash: the first 52 bits of sha256('<rollout id>:<device id>') over 2^52
    assert all(int(hashlib.sha256(f"{rid}:{d}".encode()).hexdigest()[:13], 16) / 2.0 ** 52 == s
               for d, s in shares.items())
    champion, candidate = env["versions"][env["champion"]], env["versions"][env["candidate"]]
    deployment = _bundle_version(env, None)[1]
    assert _bundle_version(env, None)[0] == champion  # a device that does not name itself
    got = {d: _bundle_version(env, d) for d in devices}
    assert got == {d: (candidate if shares[d] < fraction else champion, deployment) for d in devices}
    assert {v for v, _ in got.values()} == {champion, candidate}

    # a real device syncing with its id: the candidate, then the champion after the abort
    inside = next(d for d in devices if shares[d] < fraction)
    dev = Device(str(tmp_path / "dev"), env["key"], f"{env['server'].url}/v2/models/{P}/bundle",
                 token=env["token"], device_id=inside)
    assert dev.sync().status == "updated" and dev.model.version == candidate
    env["conn"].execute("SELECT abort_rollout(%s)", [rid])
    # the champion again, under a new deployment number that every device takes as newer
    after = _bundle_version(env, None)[1]
    assert after > deployment
    assert {d: _bundle_version(env, d) for d in devices} == {d: (champion, after) for d in devices}
    result = dev.sync()
    assert result.status == "updated" and dev.model.version == champion, result


def test_a_promote_reaches_every_device(env, test_db):
    # a project of its own: the promote deploys its candidate
    conn = env["conn"]
    q = f"{P}_promo"
    conn.execute(f"SELECT * FROM train('{q}', 'classification', '{P}_v', 'y', algorithm => 'linear')").fetchall()
    second = conn.execute(f"SELECT model_id FROM train('{q}', 'classification', '{P}_v', 'y', "
                          "algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 5}', "
                          "automatic_deploy => false)").fetchone()[0]
    conn.execute("SELECT grant_project(%s, %s, 'export')", [q, APP])
    rid = conn.execute("SELECT start_rollout(%s, %s::bigint, 'canary', 0.2)", [q, second]).fetchone()[0]
    version = conn.execute("SELECT version FROM pgmodels.models WHERE id = %s", [second]).fetchone()[0]
    conn.execute("SELECT promote_rollout(%s)", [rid])
    for i in range(10):
        r = httpx.get(f"{env['server'].url}/v2/models/{q}/bundle?device_id=d{i}", headers=bearer(env["token"]),
                      timeout=60)
        assert r.status_code == 200, r.text
        with zipfile.ZipFile(io.BytesIO(r.content)) as z:
            assert json.loads(z.read("manifest.json"))["version"] == version


@pytest.mark.parametrize("value, why", [
    (True, "must be a string or a number"),
    ({"a": 1}, "must be a string or a number"),
    ([1, 2], "holds 2 keys for 1 rows"),
    ([["x"]], "must be a string or a number"),
])
def test_a_bad_routing_key_is_a_400(env, rollout, value, why):
    rollout("canary", 0.5)
    r = infer(env, matrix([ROW], routing_key=value))
    assert r.status_code == 400 and why in r.json()["error"], r.text
    assert set(r.json()) == {"error"}


def test_a_bad_device_id_is_a_400(env):
    r = httpx.get(f"{env['server'].url}/v2/models/{P}/bundle?device_id=" + "x" * 201, headers=bearer(env["token"]),
                  timeout=30)
    assert r.status_code == 400 and "device_id" in r.json()["error"]
