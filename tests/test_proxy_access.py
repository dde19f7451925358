"""Who may ask `pgmodels serve` for what: tokens, roles, grants, as LOGIN-only roles."""

from __future__ import annotations

import hashlib
import subprocess
import time

import httpx
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbhelpers import sql_error
from proxyhelpers import PGMODELS, Env, Server, bearer, matrix

ONE = {"inputs": [matrix([[3.0, 5.0, 1.0, 2.0]])]}


@pytest.fixture(scope="module")
def env(test_db, tmp_path_factory):
    e = Env(test_db, tmp_path_factory.mktemp("serve"))
    yield e
    e.close()


def as_role(env, role: str) -> psycopg.Connection:
    params = conninfo_to_dict(env.dsn)
    params.update(user=role, password="pw")
    return psycopg.connect(make_conninfo(**params), autocommit=True)


def post(env, token=None, body=ONE, project=None, headers=None) -> httpx.Response:
    return httpx.post(f"{env.server.url}/v2/models/{project or env.num}/infer", json=body, timeout=30,
                      headers=headers if headers is not None else (bearer(token) if token else {}))


def test_no_or_bad_token_is_401_and_health_needs_none(env):
    assert post(env).status_code == 401
    assert post(env, headers={"authorization": "Basic abc"}).status_code == 401
    assert post(env, token="pgm_1_" + "0" * 96).status_code == 401
    r = httpx.get(f"{env.server.url}/v2/models/{env.num}")
    assert r.status_code == 401 and "bearer token" in r.json()["error"]
    assert httpx.get(f"{env.server.url}/v2/health/ready").status_code == 200
    assert post(env, token=env.token).status_code == 200


def test_a_role_without_predict_gets_403(env):
    r = post(env, token=env.outsider_token)
    assert r.status_code == 403 and "permission denied" in r.json()["error"]
    r = httpx.get(f"{env.server.url}/v2/models/{env.num}", headers=bearer(env.outsider_token))
    assert r.status_code == 403
    # a grant in SQL opens it, a revoke closes it again, for the next request
    env.conn.execute("SELECT grant_project(%s, %s, 'predict')", [env.mix, env.outsider])
    inputs = [{"name": n, "datatype": "FP32", "shape": [1], "data": [1]} for n in ("tenure", "monthly", "calls")]
    inputs += [{"name": "paperless", "datatype": "BOOL", "shape": [1], "data": [True]},
               {"name": "contract", "datatype": "BYTES", "shape": [1], "data": ["year"]}]
    assert post(env, env.outsider_token, {"inputs": inputs}, project=env.mix).status_code == 200
    env.conn.execute("SELECT revoke_project(%s, %s)", [env.mix, env.outsider])
    assert post(env, env.outsider_token, {"inputs": inputs}, project=env.mix).status_code == 403


def test_reading_features_by_key_needs_select_on_the_source(env):
    env.conn.execute("SELECT grant_project(%s, %s, 'predict')", [env.num, env.outsider])
    try:
        assert post(env, env.outsider_token).status_code == 200
        r = post(env, env.outsider_token, {"parameters": {"keys": [1]}})
        assert r.status_code == 403 and "permission denied for table" in r.json()["error"]
    finally:
        env.conn.execute("SELECT revoke_project(%s, %s)", [env.num, env.outsider])


def test_tokens_are_stored_hashed_and_revoked(env):
    token = env.conn.execute("SELECT create_api_token(%s)", [env.app]).fetchone()[0]
    assert token.startswith("pgm_") and len(token) > 80
    stored = env.conn.execute("SELECT token_sha256 FROM pgmodels._api_tokens WHERE id = %s",
                              [int(token.split("_")[1])]).fetchone()[0]
    assert bytes(stored) == hashlib.sha256(token.encode()).digest()
    assert post(env, token).status_code == 200
    assert env.conn.execute("SELECT revoke_api_token(%s::text)", [token]).fetchone()[0] is True
    time.sleep(1.2)  # the server caches a token for a second
    assert post(env, token).status_code == 401


def test_who_may_create_and_revoke_tokens(env):
    with as_role(env, env.outsider) as c:
        assert sql_error(c, "SELECT * FROM pgmodels._api_tokens").sqlstate == "42501"
        e = sql_error(c, "SELECT create_api_token(%s)", [env.app])
        assert e.sqlstate == "42501" and "permission denied to create an API token" in e.diag.message_primary
        e = sql_error(c, "SELECT create_api_token('postgres')")
        assert e.sqlstate == "42501" and "superuser" in e.diag.message_primary
        assert sql_error(c, "SELECT create_api_token('no_such_role_x')").sqlstate == "42704"
        own = c.execute("SELECT create_api_token(current_user)").fetchone()[0]
        assert post(env, own).status_code == 403  # a token of its own, but still no predict privilege
        listed = c.execute("SELECT role FROM pgmodels.api_tokens").fetchall()
        assert listed and {r[0] for r in listed} == {env.outsider}
        app_token_id = env.conn.execute("SELECT max(id) FROM pgmodels._api_tokens WHERE role = %s::regrole",
                                        [env.app]).fetchone()[0]
        assert sql_error(c, "SELECT revoke_api_token(%s::bigint)", [app_token_id]).sqlstate == "42501"
        own_id = int(own.split("_")[1])
        assert c.execute("SELECT revoke_api_token(%s::bigint)", [own_id]).fetchone()[0] is True
        assert sql_error(c, "SELECT pgmodels._create_api_token(%s, 'forged')", [env.app]).sqlstate == "42501"
        # the owner's business: registering a feature source
        e = sql_error(c, "SELECT register_feature_source(%s, %s, 'id')", [env.num, env.features])
        assert e.sqlstate == "42501"


def test_requests_carry_no_sql(env):
    hostile = ["x'; DROP TABLE px; --", 'a"; RESET ROLE; --']
    for name in hostile:
        assert post(env, env.token, project=name).status_code == 404
    r = post(env, env.token, {"parameters": {"keys": ["1; DROP TABLE x", "1) OR (1=1"]}})
    assert r.status_code == 400
    r = post(env, env.token, {"id": "'); RESET ROLE; --", "inputs": ONE["inputs"]})
    assert r.status_code == 200 and r.json()["id"] == "'); RESET ROLE; --"
    assert env.conn.execute(f"SELECT count(*) FROM {env.features}").fetchone()[0] > 0


def test_token_command_and_anonymous_role(env, tmp_path):
    done = subprocess.run([str(PGMODELS), "token", "create", env.app, "--dsn", env.dsn],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert post(env, token).status_code == 200
    listed = subprocess.run([str(PGMODELS), "token", "list", "--dsn", env.dsn], capture_output=True, text=True)
    assert token.split("_")[1] in listed.stdout and token not in listed.stdout
    done = subprocess.run([str(PGMODELS), "token", "create", "postgres", "--dsn", env.dsn],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("pgmodels: ")
    assert "cannot create an API token for superuser" in done.stderr
    assert "Traceback" not in done.stderr

    done = subprocess.run([str(PGMODELS), "serve", "--dsn", env.dsn, "--anonymous-role", "postgres", "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "must not be a superuser" in done.stderr

    server = Server(env.dsn, tmp_path, "--anonymous-role", env.app, workers=1)
    try:
        r = httpx.post(f"{server.url}/v2/models/{env.num}/infer", json=ONE, timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{server.url}/v2/models/{env.num}/infer", json=ONE, headers=bearer(env.outsider_token))
        assert r.status_code == 403  # a token still names its own role
    finally:
        assert server.stop() in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down
    assert "Application shutdown complete" in server.log_text() and "Traceback" not in server.log_text()


def test_a_feature_source_in_a_schema_the_role_cannot_use(env):
    """The role sees the model's metadata and predicts from sent features; keys are 403."""
    c, schema, project = env.conn, f"px_priv_{env.tag}", f"px_priv_{env.tag}"
    c.execute(f"CREATE SCHEMA {schema}")
    c.execute(f"CREATE TABLE {schema}.f AS SELECT * FROM {env.features}")
    c.execute(f"SELECT * FROM train('{project}', 'classification', '{env.num}', 'y')").fetchall()
    c.execute("SELECT register_feature_source(%s, %s, 'id')", [project, f"{schema}.f"])
    c.execute("SELECT grant_project(%s, %s, 'predict')", [project, env.app])
    r = httpx.get(f"{env.server.url}/v2/models/{project}", headers=bearer(env.token))
    assert r.status_code == 200 and r.json()["parameters"]["feature_source"]["schema"] == schema
    assert post(env, env.token, project=project).status_code == 200
    r = post(env, env.token, {"parameters": {"keys": [1]}}, project=project)
    assert r.status_code == 403 and "permission denied for schema" in r.json()["error"]
