"""``pgmodels serve --dsn PRIMARY --read-dsn STANDBY ...``: inference round robin across
hot standbys, skipping one that fails and retrying its requests on another; tokens and
the request log on the primary. Real standbys, a real server, real HTTP."""

from __future__ import annotations

import subprocess
import threading
import time

import httpx
import pytest

from proxyhelpers import Server, bearer, matrix
from scalehelpers import PGMODELS, Standby, free_port, wait_replayed

ONE = {"inputs": [matrix([[3.0, 5.0]])]}


@pytest.fixture(scope="module")
def standbys(cluster, test_db):
    made = [Standby(cluster), Standby(cluster)]
    yield made
    for s in made:
        s.close()


@pytest.fixture
def served(conn, name, standbys):
    """A project (version 1: a + b, imported ONNX), a LOGIN role with a token, replayed on
    both standbys."""
    from onnx_models import scaled_sum

    conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(1.0)])
    role = name + "_app"
    conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, role])
    token = conn.execute("SELECT create_api_token(%s)", [role]).fetchone()[0]
    for s in standbys:
        with s.connect(conn.info.dbname) as sc:
            wait_replayed(conn, sc)
    yield name, token
    conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")


def _serve(conn, standbys, tmp_path, *reads):
    dbname = conn.info.dbname
    urls = list(reads) or [s.url(dbname) for s in standbys]
    extra = [x for u in urls for x in ("--read-dsn", u)]
    primary = standbys[0].primary.url(dbname)
    return Server(primary, tmp_path, *extra, "--log-sample", "1", workers=1)


def _infer(server, project, token):
    return httpx.post(f"{server.url}/v2/models/{project}/infer", json=ONE, headers=bearer(token), timeout=30)


def _served_since(standby, dbname, since) -> int:
    """The proxy's sessions on a standby that ran an inference after since."""
    with standby.connect(dbname) as s:
        return s.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgmodels serve' "
                         "AND query LIKE '%%predict%%' AND state_change > %s", [since]).fetchone()[0]


def test_inference_goes_round_robin_to_the_standbys_and_writes_to_the_primary(conn, standbys, served, tmp_path):
    project, token = served
    dbname = conn.info.dbname
    server = _serve(conn, standbys, tmp_path)
    try:
        # each standby lags in its own way: standby 0 paused before a deploy, standby 1 after it
        with standbys[0].connect(dbname) as s0:
            s0.execute("SELECT pg_wal_replay_pause()")
            try:
                from onnx_models import scaled_sum

                conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                             [project, scaled_sum(10.0)])
                with standbys[1].connect(dbname) as s1:
                    wait_replayed(conn, s1)
                time.sleep(1.1)  # the proxy's metadata cache
                answers = [_infer(server, project, token) for _ in range(8)]
            finally:
                s0.execute("SELECT pg_wal_replay_resume()")
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
        seen = {(r.json()["model_version"], r.json()["outputs"][0]["data"][0]) for r in answers}
        assert seen == {("1", 8.0), ("2", 80.0)}  # both standbys answered, each its own replayed state
        # the token check and the request log are the primary's
        time.sleep(1.5)
        logged = conn.execute("SELECT count(*) FROM pgmodels.request_log WHERE project = %s", [project]).fetchone()[0]
        assert logged == 8
        # both stopped: the primary answers
        for s in standbys:
            s.cluster.stop()
        try:
            for _ in range(4):
                r = _infer(server, project, token)
                assert r.status_code == 200 and r.json()["model_version"] == "2", r.text
            assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
        finally:
            for s in standbys:
                s.cluster.start()
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
    assert "failed" in server.log_text() and "left out" in server.log_text()


def test_stopping_a_standby_mid_load_loses_no_request(conn, standbys, served, tmp_path):
    project, token = served
    dbname = conn.info.dbname
    server = _serve(conn, standbys, tmp_path)
    statuses: list[int] = []
    bodies: list[str] = []
    stop = threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                r = client.post(f"{server.url}/v2/models/{project}/infer", json=ONE, headers=bearer(token))
                statuses.append(r.status_code)
                if r.status_code != 200:
                    bodies.append(r.text)

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        while len(statuses) < 100:
            time.sleep(0.05)
        standbys[0].cluster.stop()  # fast shutdown: its sessions are cut mid-request
        at_stop = len(statuses)
        while len(statuses) < at_stop + 200:
            time.sleep(0.05)
        standbys[0].cluster.start()
        with standbys[0].connect(dbname) as s0:
            wait_replayed(conn, s0)
            restarted = s0.execute("SELECT now()").fetchone()[0]
        time.sleep(3)  # past the time a failed pool is left out
        at_start = len(statuses)
        while len(statuses) < at_start + 100:
            time.sleep(0.05)
        # a read tried while the standby was still starting left it out once more: it is
        # back within a few of those periods
        deadline, back = time.monotonic() + 20, 0
        while not (back := _served_since(standbys[0], dbname, restarted)) and time.monotonic() < deadline:
            time.sleep(0.25)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        server.stop()
    assert statuses.count(200) == len(statuses), bodies[:3]
    assert back >= 1  # the restarted standby is back in the rotation
    assert "Traceback" not in server.log_text()


def test_a_read_dsn_down_from_the_start_is_skipped(conn, standbys, served, tmp_path):
    project, token = served
    dead = f"postgresql://postgres:x@127.0.0.1:{free_port()}/{conn.info.dbname}"
    server = _serve(conn, standbys, tmp_path, dead, standbys[1].url(conn.info.dbname))
    try:
        for _ in range(6):
            r = _infer(server, project, token)
            assert r.status_code == 200, r.text
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()


def test_a_malformed_read_dsn_is_refused_at_start(test_db):
    r = subprocess.run([PGMODELS, "serve", "--dsn", test_db, "--read-dsn", "postgresql://[", "--port",
                        str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "invalid --read-dsn" in r.stderr and "Traceback" not in r.stderr

