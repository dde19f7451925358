"""The foundation: the extension, the server's Python environment, the CLI, installing."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import psycopg

from dbhelpers import ROOT, sql_error
from pgmodels import __version__

PGMODELS = str(Path(sys.prefix) / "bin" / "pgmodels")


def run_cli(*args, env=None, check=True):
    result = subprocess.run([PGMODELS, *args], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"pgmodels {' '.join(args)} failed: {result.stderr}")
    return result


def test_doctor_reports_the_servers_real_environment(conn):
    rows = {item: (value, ok) for item, value, ok in conn.execute("SELECT * FROM pgmodels.doctor()")}
    assert rows["server python"][0].startswith("3.11")
    assert rows["pgmodels.venv"][0] == str(Path(sys.prefix).resolve())
    # the versions the server imports are the ones installed in the venv
    assert rows["numpy"][0] == importlib.metadata.version("numpy")
    assert rows["onnxruntime"][0] == importlib.metadata.version("onnxruntime")
    assert rows["scikit-learn"][0] == importlib.metadata.version("scikit-learn")
    assert rows["pg_cron preloaded"] == ("yes", True)
    assert all(ok for _, ok in rows.values()), rows


def test_extension_layout(conn):
    schemas = dict(conn.execute("""SELECT p.proname, n.nspname FROM pg_proc p
                                   JOIN pg_namespace n ON n.oid = p.pronamespace
                                   WHERE p.proname IN ('predict', 'train', 'doctor')"""))
    assert schemas == {"predict": "public", "train": "public", "doctor": "pgmodels"}
    dumped = conn.execute("""SELECT array_agg(c::regclass::text ORDER BY c::regclass::text)
                             FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pgmodels'""").fetchone()[0]
    assert dumped == sorted(["pgmodels.deployments", "pgmodels.deployments_id_seq", "pgmodels.models",
                             "pgmodels.models_id_seq", "pgmodels.project_grants", "pgmodels.projects",
                             "pgmodels.projects_id_seq",
                             # request-response serving (sql/080_proxy.sql)
                             "pgmodels._api_tokens", "pgmodels._api_tokens_id_seq", "pgmodels.feature_sources",
                             # batch jobs and streams (sql/070, sql/075)
                             "pgmodels.batch_job", "pgmodels.batch_job_id_seq", "pgmodels.batch_run",
                             "pgmodels.batch_run_id_seq", "pgmodels.stream", "pgmodels.stream_id_seq",
                             "pgmodels.stream_consumer", "pgmodels.stream_consumer_id_seq", "pgmodels.stream_consumer_part",
                             "pgmodels.stream_dead_letter",
                             # monitoring (sql/100)
                             "pgmodels.monitor_settings", "pgmodels.monitor", "pgmodels.monitor_id_seq",
                             "pgmodels.drift_report", "pgmodels.drift_report_id_seq",
                             "pgmodels.request_log", "pgmodels.request_log_id_seq",
                             # edge bundles' signing key (sql/110)
                             "pgmodels.edge_signing_key",
                             # explainers (sql/124, 0.3.0)
                             "pgmodels.model_explainers",
                             # rollouts (sql/126, 0.3.0): the answer log is not dumped (like a log)
                             "pgmodels.rollout_runs", "pgmodels.rollout_runs_id_seq", "pgmodels.rollout_history",
                             "pgmodels.rollout_history_id_seq", "pgmodels.outcome_sources"])


def test_every_function_is_commented(conn):
    missing = conn.execute("""SELECT p.oid::regprocedure::text FROM pg_proc p
                              JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                              JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmodels'
                              WHERE obj_description(p.oid, 'pg_proc') IS NULL""").fetchall()
    assert missing == []


def test_environment_built_for_another_python_is_refused(cluster, connect, admin_setting):
    venv = cluster.home / "test-venv-python3.9"  # where the server user can read it
    (venv / "lib").mkdir(parents=True, exist_ok=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.9.2\n")
    admin_setting("pgmodels.venv", str(venv))
    c = connect()
    err = sql_error(c, "SELECT * FROM pgmodels.overview, train('churn')")
    assert err.sqlstate == "55000"
    assert "was built for another Python" in err.diag.message_primary
    assert "3.9.2" in err.diag.message_detail


def test_cli_cluster_steps_are_idempotent(cluster):
    first = run_cli("db", "create").stdout.strip()
    again = run_cli("db", "create").stdout.strip()
    assert first == again == cluster.url()
    run_cli("db", "start")
    status = run_cli("db", "status").stdout
    assert "state: running" in status
    assert run_cli("db", "url").stdout.strip() == cluster.url()
    out = run_cli("db", "psql", "-tAc", "SELECT extname FROM pg_extension WHERE extname = 'pgmodels'").stdout
    assert out.strip() == "pgmodels"


def test_cli_errors_are_one_line(cluster):
    result = run_cli("install", "--dsn", "postgresql://postgres@127.0.0.1:1/none", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("pgmodels: error: ")
    assert "Traceback" not in result.stderr


def test_install_into_an_existing_database(cluster, name):
    admin = psycopg.connect(cluster.url("postgres"), autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        out = run_cli("install", "--dsn", cluster.url(name)).stdout
        assert f"pgmodels {__version__} installed" in out
        # new sessions find the environment through the server's configuration (ALTER SYSTEM)
        with psycopg.connect(cluster.url(name)) as c:
            setting = c.execute("SELECT pgmodels._admin_setting('pgmodels.venv')").fetchone()[0]
            assert setting == str(Path(sys.prefix).resolve())
            assert c.execute("SELECT pgmodels._activate()").fetchone()[0] is None
        # and installing again changes nothing
        assert f"pgmodels {__version__} installed" in run_cli("install", "--dsn", cluster.url(name)).stdout
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def test_pgxn_install_of_a_local_distribution(tmp_path):
    subprocess.run(["make", "-s", "dist"], cwd=ROOT, check=True, capture_output=True)
    dist = ROOT / "dist" / f"pgmodels-{__version__}.zip"
    assert dist.exists()
    pgxn = str(Path(sys.prefix) / "bin" / "pgxn")
    # DESTDIR (read by make) keeps the server's own extension directory untouched
    result = subprocess.run([pgxn, "install", "--pg_config", "/usr/lib/postgresql/15/bin/pg_config", str(dist)],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "DESTDIR": str(tmp_path / "root")})
    assert result.returncode == 0, result.stdout + result.stderr
    installed = tmp_path / "root" / "usr/share/postgresql/15/extension"
    assert (installed / f"pgmodels--{__version__}.sql").exists()
    assert f"default_version = '{__version__}'" in (installed / "pgmodels.control").read_text()


def test_the_cli_finds_its_cluster_from_anywhere_or_says_so_in_one_line(cluster, tmp_path):
    tool = str(Path(sys.prefix) / "bin" / "pgmodels")
    env = {k: v for k, v in os.environ.items() if k != "PGMODELS_HOME"}
    found = subprocess.run([tool, "db", "url"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert (found.returncode, found.stdout.strip()) == (0, cluster.url())
    for args, extra in ((["db", "url"], {"PGMODELS_HOME": str(tmp_path / "none")}),
                        (["--dir", str(tmp_path / "none"), "db", "url"], {}),
                        (["db", "psql", "-c", "SELECT 1"], {"PGMODELS_HOME": str(tmp_path / "none")})):
        result = subprocess.run([tool, *args], cwd=tmp_path, env={**env, **extra}, capture_output=True, text=True)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("pgmodels: error: ")
