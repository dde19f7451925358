"""The README's install into an existing server, as written, on a second cluster made the
way Debian makes them (pg_createcluster), not the embedded one."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

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
    installed = sh("bash", str(ROOT / "scripts" / "install.sh"), "system")
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


def test_install_prints_the_pg_cron_steps_and_following_them_schedules_jobs(stock_cluster):
    """Issue #26, item 7: install.sh system prints, for a cluster that does not preload
    pg_cron, exactly what to run; after those steps (a restart) a schedule works, pg_cron
    runs the job, and a job scheduled by hand shows its pg_cron entry in batch_jobs."""
    installed = sh("bash", str(ROOT / "scripts" / "install.sh"), "system")
    lines = [l.removeprefix("[install] ") for l in installed.stderr.splitlines()]
    start = next(i for i, l in enumerate(lines) if f"cluster 15/{CLUSTER} (port {PORT}) does not load it" in l)
    steps = []
    for line in lines[start + 2:]:  # after the message and "as root:"
        steps.append(line.strip())
        if "CREATE EXTENSION IF NOT EXISTS pg_cron" in line:
            break
    assert steps[0] == "DB=mydb" and any("restart" in s for s in steps), steps
    sh("createdb", "-p", str(PORT), "mydb", user="postgres", check=False)
    sh("/opt/pgmodels/venv/bin/pgmodels", "install", "--dsn", f"postgresql:///mydb?port={PORT}", user="postgres")
    sh("bash", "-ec", "\n".join(s.split("#")[0] for s in steps))
    psql = ["psql", "-X", "-p", str(PORT), "-d", "mydb", "-tA", "-v", "ON_ERROR_STOP=1", "-c"]
    assert sh(*psql, "SHOW cron.database_name", user="postgres").stdout.strip() == "mydb"
    # a second install sees the preload and prints nothing for this cluster
    again = sh("bash", str(ROOT / "scripts" / "install.sh"), "system")
    assert f"cluster 15/{CLUSTER}" not in again.stderr

    sh(*psql, """CREATE TABLE IF NOT EXISTS cust AS SELECT i AS id, (i % 10)::real AS a, (i % 7)::real AS b,
                 (i % 10 > 4)::int AS y FROM generate_series(1, 200) i""", user="postgres")
    sh(*psql, "CREATE OR REPLACE VIEW cust_train AS SELECT a, b, y FROM cust", user="postgres")
    sh(*psql, "SELECT deployed FROM train('cust', 'classification', 'cust_train', 'y')", user="postgres")
    sh(*psql, "SELECT create_batch_job('every_minute', 'cust', 'cust', 'id', 'cust_scores', schedule => '* * * * *')",
       user="postgres")
    # scheduled by hand, as the hint of another database's schedule says
    sh(*psql, "SELECT create_batch_job('by_hand', 'cust', 'cust', 'id', 'cust_by_hand')", user="postgres")
    jobid = sh(*psql, "SELECT cron.schedule('by_hand_entry', '* * * * *', $$CALL run_batch_job('by_hand')$$)",
               user="postgres").stdout.strip()
    shown = sh(*psql, "SELECT schedule || '|' || cron_job_id || '|' || cron_entry FROM pgmodels.batch_jobs "
                      "WHERE job = 'by_hand'", user="postgres").stdout.strip()
    assert shown.startswith(f"* * * * *|{jobid}|pg_cron job {jobid} \"by_hand_entry\" in this database, "
                            "scheduled by hand, as role postgres"), shown
    deadline = time.time() + 150
    done = ""
    while time.time() < deadline and done != "by_hand,every_minute":
        time.sleep(3)
        done = sh(*psql, "SELECT string_agg(DISTINCT job, ',' ORDER BY job) FROM pgmodels.batch_runs "
                         "WHERE triggered_by = 'pg_cron' AND status = 'succeeded'", user="postgres").stdout.strip()
    assert done == "by_hand,every_minute", sh(*psql, "SELECT * FROM cron.job_run_details", user="postgres").stdout
    assert sh(*psql, "SELECT count(*) FROM cust_by_hand", user="postgres").stdout.strip() == "200"
