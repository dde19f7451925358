"""The Docker image, built from this tree with podman and run: the database role with the
official postgres image's conventions, a new role training and predicting over TCP, a
batch job pg_cron runs, pgmodels serve answering the Open Inference Protocol, a restart,
an update from 0.2.0's layout, compose.yaml up, down and up, and the bad inputs: no
password, a volume it cannot write, a serve container without its database. Every
container runs on the host's network (no Docker Hub, no bridge here) on free loopback
ports. Skipped only where no container engine can run (dockerhelpers.engine_problem)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.request

import psycopg
import pytest

import dockerhelpers as dh
from dbhelpers import ROOT

PASSWORD = secrets.token_hex(8)
ROLE = "analyst"  # a role with LOGIN and only what an administrator grants it
DB = "models"  # POSTGRES_DB, pg_cron's database
SUPER = "admin"  # POSTGRES_USER
LOOPBACK = ["-c", "listen_addresses=127.0.0.1"]  # the server's arguments: on the host's network, loopback only
state: dict = {}


@pytest.fixture(scope="module", autouse=True)
def engine():
    problem = dh.engine_problem()
    if problem:
        pytest.skip(problem)
    try:
        yield
    finally:
        dh.cleanup()


@pytest.fixture(scope="module")
def image(engine):
    return dh.build_image()


@pytest.fixture(scope="module")
def db(image):
    """The database container on a new volume, and a superuser connection over TCP."""
    port = dh.free_port()
    vol = dh.volume(f"pgmodels-test-data-{port}")
    db = {"name": f"pgmodels-test-db-{port}", "port": port, "volume": vol}
    db["args"] = ["-e", f"POSTGRES_PASSWORD={PASSWORD}", "-e", f"POSTGRES_USER={SUPER}", "-e", f"POSTGRES_DB={DB}",
                  "-e", f"PGPORT={port}", "-v", f"{vol}:/var/lib/postgresql/data"]
    dh.run(db["name"], *db["args"], command=LOOPBACK)
    db["super"] = lambda: dh.connect(port, SUPER, PASSWORD, DB, container=db["name"])
    with db["super"]() as c:
        c.execute("SELECT 1")
    return db


def role_conn(db):
    return dh.connect(db["port"], ROLE, "pw", DB, container=db["name"])


def no_root(name: str) -> None:
    procs = dh.processes(name)
    assert procs and all(user != "root" for user, _ in procs), procs


def test_missing_password_is_refused_with_the_official_message(image):
    done = dh.run("pgmodels-test-nopass-" + dh.RUN_LABEL[-6:], detach=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Error: Database is uninitialized and superuser password is not specified." in out
    assert 'You must specify POSTGRES_PASSWORD to a non-empty value for the' in out
    assert "PostgreSQL init process complete" not in out


def test_an_unwritable_volume_is_refused_with_the_reason(image, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    done = dh.run("pgmodels-test-rovol-" + dh.RUN_LABEL[-6:], "-e", "POSTGRES_PASSWORD=x",
                  "-v", f"{data}:/var/lib/postgresql/data:ro", detach=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert 'error: data directory "/var/lib/postgresql/data" is not writable by user "postgres"' in out
    assert "Read-only file system" in out and "HINT: Mount a writable volume there" in out
    assert list(data.iterdir()) == []


def test_first_start_makes_the_database_and_a_new_role_trains_and_predicts_over_tcp(db):
    with db["super"]() as c:
        extensions = dict(c.execute("SELECT extname, extversion FROM pg_extension").fetchall())
        assert extensions.keys() == {"plpgsql", "plpython3u", "pg_cron", "pgmodels"} \
            and extensions["pgmodels"] == "0.3.0", extensions
        assert c.execute("SELECT current_setting('cron.database_name'), current_setting('shared_preload_libraries'), "
                         "current_setting('pgmodels.venv')").fetchone() == (DB, "pg_cron", "/opt/pgmodels/venv")
        doctor = {item: ok for item, _, ok in c.execute("SELECT item, value, ok FROM pgmodels.doctor()")}
        assert doctor and all(doctor.values()), doctor
        c.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD 'pw'")
        c.execute(f"CREATE SCHEMA {ROLE} AUTHORIZATION {ROLE}")
        for fn in ("train", "create_batch_job"):
            c.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {ROLE}")
    with role_conn(db) as r:
        assert r.execute("SELECT current_user, inet_server_addr()::text").fetchone() == (ROLE, "127.0.0.1/32")
        r.execute("""CREATE TABLE churn AS SELECT i AS id, (i % 10)::real AS a, (i % 7)::real AS b,
                            (i % 10 > 4)::int AS y FROM generate_series(1, 400) i""")
        r.execute("ALTER TABLE churn ADD PRIMARY KEY (id)")
        r.execute("CREATE VIEW churn_features AS SELECT a, b, y FROM churn")
        trained = r.execute("SELECT deployed, version FROM train('churn', 'classification', 'churn_features', 'y')")
        assert trained.fetchone() == (True, 1)
        # CatBoost imports without the plotting packages the image leaves out
        r.execute("SELECT * FROM train('churn', algorithm => 'catboost', hyperparams => '{\"iterations\": 20}', "
                  "automatic_deploy => false)")
        state["predict"] = r.execute("SELECT predict('churn', ARRAY[9, 1]), predict('churn', ARRAY[1, 1])").fetchone()
        assert state["predict"] == (1, 0)
        state["deployed"] = r.execute("SELECT model_id, version FROM pgmodels.overview "
                                      "WHERE project = 'churn' AND deployed").fetchone()
        # pg_cron's next minute runs it (checked at the end, to wait in parallel)
        r.execute("SELECT create_batch_job('nightly', 'churn', 'churn', 'id', 'churn_scores', schedule => '* * * * *')")
        state["scheduled"] = time.monotonic()
    no_root(db["name"])
    assert dh.podman("healthcheck", "run", db["name"], check=False).returncode == 0


def _infer(port: int, token: str, body: dict, project: str = "churn") -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/{project}/infer", json.dumps(body).encode(),
                                     {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


def _ready(port: int) -> bool:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=3).status == 200


def test_serve_container_answers_the_open_inference_protocol(db):
    with db["super"]() as c:
        token = c.execute("SELECT create_api_token(%s)", [ROLE]).fetchone()[0]
    http, grpc = dh.free_port(), dh.free_port()
    name = f"pgmodels-test-serve-{http}"
    dh.run(name, "-e", f"PGMODELS_DSN=postgresql://{SUPER}:{PASSWORD}@127.0.0.1:{db['port']}/{DB}",
           "-e", "PGMODELS_HOST=127.0.0.1", "-e", f"PGMODELS_PORT={http}", "-e", f"PGMODELS_GRPC_PORT={grpc}",
           command=["serve", "--workers", "1"])
    dh.wait_until("pgmodels serve", lambda: _ready(http), timeout=120, container=name)
    answer = _infer(http, token, {"id": "docker-1", "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [2], "data": [9, 1]},
        {"name": "b", "datatype": "FP32", "shape": [2], "data": [1, 1]}]})
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert answer["id"] == "docker-1" and outputs["predict"] == [float(p) for p in state["predict"]]
    no_root(name)
    # the password in PGMODELS_DSN stays out of the process list
    assert not [cmd for _, cmd in dh.processes(name) if PASSWORD in cmd]
    assert dh.podman("healthcheck", "run", name, check=False).returncode == 0
    dh.podman("rm", "-f", "-v", "-t", "5", name)


def test_a_serve_container_without_its_database_retries_says_why_and_fails(image):
    nobody = dh.free_port()  # nothing listens there
    name = f"pgmodels-test-nodb-{nobody}"
    dh.run(name, "-e", f"PGMODELS_DSN=postgresql://{SUPER}:x@127.0.0.1:{nobody}/{DB}", "-e", "PGMODELS_WAIT_TIMEOUT=4",
           "-e", f"PGMODELS_PORT={dh.free_port()}", "-e", "PGMODELS_HOST=127.0.0.1", command=["serve"])
    assert dh.wait_exit(name) == 1
    out = dh.logs(name)
    assert out.count("pgmodels: waiting for the database: connection failed") >= 2, out
    assert "Connection refused" in out
    assert "error: cannot reach the database after 4 s" in out and "HINT: Check PGMODELS_DSN" in out
    assert "Uvicorn running" not in out


def test_compose_up_down_up_keeps_models_and_data(image, tmp_path):
    project = "pgmodels-test-" + dh.RUN_LABEL[-6:]
    pg, http, grpc = dh.free_port(), dh.free_port(), dh.free_port()
    app_password = secrets.token_hex(6)
    # the same file, on the host's network: loopback addresses and free ports
    override = tmp_path / "compose.override.yaml"
    labels = {"labels": [dh.RUN_LABEL], "network_mode": "host"}
    override.write_text(json.dumps({"services": {
        "db": {**labels, "command": ["postgres", "-c", "listen_addresses=127.0.0.1"], "environment": {"PGPORT": str(pg)}},
        "serve": {**labels, "environment": {
            "PGMODELS_DSN": f"postgresql://postgres:{PASSWORD}@127.0.0.1:{pg}/pgmodels",
            "PGMODELS_HOST": "127.0.0.1", "PGMODELS_PORT": str(http), "PGMODELS_GRPC_PORT": str(grpc)}},
        "worker": {**labels, "environment": {"PGMODELS_DSN": f"postgresql://app:{app_password}@127.0.0.1:{pg}/pgmodels"}},
    }}))
    env = {**dh.ENV, "PGMODELS_IMAGE": dh.IMAGE, "POSTGRES_PASSWORD": PASSWORD, "APP_PASSWORD": app_password}
    compose = [str(dh.COMPOSE), "--in-pod", "false", "-p", project, "-f", str(ROOT / "compose.yaml"), "-f", str(override)]

    def run(*args):
        done = subprocess.run([*compose, *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert done.returncode == 0, f"podman-compose {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    try:
        run("up", "-d")
        containers = {s: f"{project}_{s}_1" for s in ("db", "serve", "worker")}
        with dh.connect(pg, "app", app_password, "pgmodels", container=containers["db"]) as app:
            # the streaming quickstart, as the application role the compose file makes
            app.execute("CREATE TABLE rides (ride_id serial PRIMARY KEY, a real, b real)")
            app.execute("""CREATE TABLE history AS SELECT (i % 10)::real AS a, (i % 7)::real AS b,
                                  (i % 10 > 4)::int AS y FROM generate_series(1, 300) i""")
            assert app.execute("SELECT deployed FROM train('rides', 'classification', 'history', 'y')").fetchone() \
                == (True,)
            app.execute("SELECT create_stream('rides', 'rides', key_column => 'ride_id')")
            app.execute("SELECT add_consumer('rides', 'ride_scores', 'rides')")
            app.execute("INSERT INTO rides (a, b) SELECT i % 10, 1 FROM generate_series(1, 50) i")
            # the worker started before the consumer existed: it finds it, and scores the events
            dh.wait_until("the stream worker", lambda: app.execute(
                "SELECT count(*) FROM ride_scores_predictions").fetchone()[0] == 50, timeout=120,
                container=containers["worker"])
            model = app.execute("SELECT model_id, version FROM pgmodels.overview WHERE deployed").fetchone()
        with dh.connect(pg, "postgres", PASSWORD, "pgmodels") as c:
            token = c.execute("SELECT create_api_token('app')").fetchone()[0]
        dh.wait_until("compose's pgmodels serve", lambda: _ready(http), timeout=120, container=containers["serve"])
        answer = _infer(http, token, {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [9]},
                                                 {"name": "b", "datatype": "FP32", "shape": [1], "data": [1]}]},
                        project="rides")
        assert {o["name"]: o["data"] for o in answer["outputs"]}["predict"] == [1.0]
        for name in containers.values():
            no_root(name)

        run("down")
        assert not dh.podman("ps", "-aq", "--filter", f"label=io.podman.compose.project={project}").stdout.split()
        run("up", "-d")
        with dh.connect(pg, "app", app_password, "pgmodels", container=containers["db"]) as app:
            assert app.execute("SELECT model_id, version FROM pgmodels.overview WHERE deployed").fetchone() == model
            assert app.execute("SELECT predict('rides', ARRAY[9, 1])").fetchone() == (1,)
            assert app.execute("SELECT count(*) FROM ride_scores_predictions").fetchone() == (50,)
    finally:
        subprocess.run([*compose, "down", "-v"], capture_output=True, env=env, cwd=ROOT, timeout=300)
        dh.podman("volume", "rm", "-f", f"{project}_pgdata", check=False)


def test_pg_cron_ran_the_batch_job(db):
    assert "scheduled" in state, "the first-start test schedules the job"
    with role_conn(db) as r:
        def ran():
            return r.execute("SELECT status, rows_scored FROM pgmodels.batch_runs WHERE job = 'nightly' "
                             "AND triggered_by = 'pg_cron' AND status = 'succeeded'").fetchone()
        # pg_cron 1.4 schedules to the minute
        assert dh.wait_until("pg_cron's run of the batch job", ran, timeout=150, every=2,
                             container=db["name"]) == ("succeeded", 400)
        assert r.execute("SELECT count(*) FROM churn_scores").fetchone() == (400,)
        r.execute("SELECT drop_batch_job('nightly')")


def test_a_restarted_database_predicts_with_the_same_model(db):
    dh.podman("restart", "-t", "30", db["name"])
    with role_conn(db) as r:
        assert r.execute("SELECT predict('churn', ARRAY[9, 1]), predict('churn', ARRAY[1, 1])").fetchone() \
            == state["predict"]
        assert r.execute("SELECT model_id, version FROM pgmodels.overview WHERE project = 'churn' AND deployed"
                         ).fetchone() == state["deployed"]
    no_root(db["name"])


def _replace_db(db, *env):
    """A new container of the image on the same volume, as after pulling a newer one."""
    dh.podman("rm", "-f", "-v", "-t", "30", db["name"])  # the named volume stays
    dh.run(db["name"], *env, *db["args"], command=LOOPBACK)
    with db["super"]() as c:
        c.execute("SELECT 1")
    return dh.logs(db["name"])


def test_a_newer_image_updates_pgmodels_on_an_older_volume(db):
    with db["super"]() as c:
        c.execute("CREATE DATABASE legacy")
    with dh.connect(db["port"], SUPER, PASSWORD, "legacy") as c:
        c.execute("CREATE EXTENSION pgmodels VERSION '0.2.0' CASCADE")
    # 0.2.0's layout: an image before this one stamped no version on the data directory
    dh.podman("stop", "-t", "30", db["name"])
    (dh.volume_path(db["volume"]) / "pgmodels_image_version").unlink()

    out = _replace_db(db, "-e", "PGMODELS_UPDATE=off")
    assert 'pgmodels: database "legacy" has pgmodels 0.2.0, this image 0.3.0; not updated (PGMODELS_UPDATE=off). ' \
           "In that database, run: ALTER EXTENSION pgmodels UPDATE;" in out, out
    with dh.connect(db["port"], SUPER, PASSWORD, "legacy") as c:
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == ("0.2.0",)

    out = _replace_db(db)
    assert 'pgmodels: database "legacy": ALTER EXTENSION pgmodels UPDATE (0.2.0 -> 0.3.0)' in out, out
    assert f'database "{DB}": ALTER EXTENSION' not in out  # it had 0.3.0 already
    with dh.connect(db["port"], SUPER, PASSWORD, "legacy") as c:
        assert c.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == ("0.3.0",)
    with role_conn(db) as r:
        assert r.execute("SELECT predict('churn', ARRAY[9, 1])").fetchone() == (state["predict"][0],)
    # once updated, a restart does not look again
    dh.podman("restart", "-t", "30", db["name"])
    with db["super"]() as c:
        c.execute("SELECT 1")
    assert dh.logs(db["name"]).count("ALTER EXTENSION pgmodels UPDATE (0.2.0 -> 0.3.0)") == 1
