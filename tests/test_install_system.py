"""The README's install into an existing server, as written, on a second cluster made the
way Debian makes them (pg_createcluster), not the embedded one."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from dbhelpers import ROOT

PORT = 54339
CLUSTER = "pgmodels_sys"


def sh(*args, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    command = (["runuser", "-u", user, "--"] if user else []) + list(args)
    result = subprocess.run(command, capture_output=True, text=True, cwd="/")
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("pg_createcluster"),
                                reason="needs root and Debian's postgresql-common, as on CI and a fresh machine")


@pytest.fixture(scope="module")
def stock_cluster():
    sh("pg_dropcluster", "--stop", "15", CLUSTER, check=False)
    sh("pg_createcluster", "15", CLUSTER, "--port", str(PORT), "--start")
    try:
        yield
    finally:
        sh("pg_dropcluster", "--stop", "15", CLUSTER, check=False)


def test_the_readme_install_steps_work_as_written(stock_cluster):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Installing into an existing server"):]
    assert "scripts/install.sh system" in section
    assert "runuser -u postgres -- /opt/pgmodels/venv/bin/pgmodels install --dsn 'postgresql:///mydb'" in section
    sh("bash", str(ROOT / "scripts" / "install.sh"), "system")
    sh("createdb", "-p", str(PORT), "mydb", user="postgres")
    out = sh("/opt/pgmodels/venv/bin/pgmodels", "install", "--dsn", f"postgresql:///mydb?port={PORT}",
             user="postgres").stdout
    assert "installed; pgmodels.venv = /opt/pgmodels/venv" in out
    psql = ["psql", "-X", "-p", str(PORT), "-d", "mydb", "-tA", "-v", "ON_ERROR_STOP=1", "-c"]
    sh(*psql, """CREATE TABLE churn AS SELECT (i % 10)::real AS a, (i % 7)::real AS b, (i % 10 > 4)::int AS y
                 FROM generate_series(1, 300) i""", user="postgres")
    # a new session of a stock server finds the environment: ALTER SYSTEM wrote it
    trained = sh(*psql, "SELECT deployed FROM train('churn', 'classification', 'churn', 'y')", user="postgres")
    assert trained.stdout.strip() == "t"
    assert sh(*psql, "SELECT predict('churn', ARRAY[9, 1])", user="postgres").stdout.strip() == "1"
    doctor = sh(*psql, "SELECT value FROM pgmodels.doctor() WHERE item = 'pgmodels.venv'", user="postgres")
    assert doctor.stdout.strip() == "/opt/pgmodels/venv"
    # batch jobs on a server without pg_cron: by hand yes, a schedule is a clear error
    sh(*psql, "ALTER TABLE churn ADD COLUMN id serial PRIMARY KEY", user="postgres")
    refused = sh(*psql, "SELECT create_batch_job('nightly', 'churn', 'churn', 'id', 'scores', schedule => '0 2 * * *')",
                 user="postgres", check=False)
    assert refused.returncode != 0 and "pg_cron is not installed" in refused.stderr
    assert "shared_preload_libraries" in refused.stderr
    sh(*psql, "SELECT create_batch_job('nightly', 'churn', 'churn', 'id', 'scores')", user="postgres")
    sh(*psql, "CALL run_batch_job('nightly')", user="postgres")
    assert sh(*psql, "SELECT count(*) FROM scores", user="postgres").stdout.strip() == "300"
