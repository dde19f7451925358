"""The console (pgmodels serve, /console) in a real headless browser: Debian's chromium,
driven by Playwright (no browser download). A database with projects, a batch job with a
failed run, a stream with lag and a drift report, owned by a LOGIN role whose token the
viewer logs in with; another role's project that must not show. Screenshots are saved
to build/console-screenshots/ as the run's artifacts."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from dbhelpers import ROOT
from monitorhelpers import load
from proxyhelpers import Server

SHOTS = ROOT / "build" / "console-screenshots"
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def console(test_db, tmp_path_factory):
    tag = str(int(time.time() * 1000) % 10**8)
    owner, other = f"con_owner_{tag}", f"con_other_{tag}"
    c = psycopg.connect(test_db, autocommit=True)
    for role in (owner, other):
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        c.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        c.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}")
    as_owner = psycopg.connect(test_db, user=owner, password="pw", autocommit=True)
    as_other = psycopg.connect(test_db, user=other, password="pw", autocommit=True)
    project, hidden = f"con_churn_{tag}", f"con_secret_{tag}"
    # a project with three versions, a rollback, a drift report and a retrain
    load(as_owner, f"con_train_{tag}", 1500, seed=1)
    ids = [as_owner.execute("SELECT model_id FROM train(%s, 'classification', %s, 'y', %s)",
                            [project, f"con_train_{tag}", algorithm]).fetchone()[0]
           for algorithm in ("linear", "xgboost", "random_forest")]
    for model_id in ids[1:]:
        as_owner.execute("SELECT * FROM deploy(%s::bigint)", [model_id]).fetchall()
    as_owner.execute("SELECT * FROM deploy(%s, 'rollback')", [project]).fetchall()
    load(as_owner, f"con_now_{tag}", 1500, seed=2, shift={"f2": 1.0})
    monitor_id = as_owner.execute("SELECT monitor(%s, %s, NULL)", [project, f"con_now_{tag}"]).fetchone()[0]
    as_owner.execute("SELECT run_monitor(%s)", [monitor_id])
    # a batch job: a run that succeeds, then one that fails on a NULL feature
    as_owner.execute(f"CREATE TABLE con_src_{tag} AS SELECT row_number() OVER () AS id, * FROM con_now_{tag}")
    as_owner.execute(f"ALTER TABLE con_src_{tag} ADD PRIMARY KEY (id)")
    as_owner.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 500, max_retries => 0)",
                     [f"con_job_{tag}", project, f"con_src_{tag}", f"con_out_{tag}"])
    as_owner.execute("CALL run_batch_job(%s)", [f"con_job_{tag}"])
    as_owner.execute(f"UPDATE con_src_{tag} SET f1 = NULL WHERE id = 700")
    with pytest.raises(psycopg.Error):
        as_owner.execute("CALL run_batch_job(%s)", [f"con_job_{tag}"])
    # a stream whose consumer is behind, with an hour of samples
    as_owner.execute(f"CREATE TABLE con_events_{tag} (id bigserial PRIMARY KEY, f1 float8, f2 float8, f3 float8, "
                     "f4 float8, f5 float8, f6 float8, f7 float8, f8 float8, color text)")
    as_owner.execute("SELECT create_stream(%s, %s, 'id')", [f"con_stream_{tag}", f"con_events_{tag}"])
    as_owner.execute("SELECT add_consumer(%s, %s, %s, %s)",
                     [f"con_stream_{tag}", f"con_live_{tag}", project, f"con_live_out_{tag}"])
    as_owner.execute(f"INSERT INTO con_events_{tag} (f1, f2, f3, f4, f5, f6, f7, f8, color) "
                     "SELECT random(), random(), random(), random(), random(), random(), random(), random(), 'red' "
                     "FROM generate_series(1, 300)")
    as_owner.execute("SELECT process_stream(%s, 100)", [f"con_live_{tag}"])
    stream_id = c.execute("SELECT id FROM pgmodels.stream WHERE name = %s", [f"con_stream_{tag}"]).fetchone()[0]
    as_owner.execute("SELECT pgmodels._stream_maintain(pgmodels._credential(), %s)", [stream_id])  # a real sample
    c.execute("""INSERT INTO pgmodels.stream_consumer_sample (consumer_id, at, events_processed, events_pending)
                 SELECT c.id, now() - g * interval '1 minute', greatest(100 - g, 0), 200 + g
                   FROM pgmodels.stream_consumer c, generate_series(1, 50, 7) g WHERE c.name = %s""",
              [f"con_live_{tag}"])
    # another role's projects: one it keeps to itself, one with markup in its name
    load(as_other, f"con_other_{tag}", 300, seed=3)
    as_other.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [hidden, f"con_other_{tag}"]).fetchall()
    as_owner.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [EVIL, f"con_train_{tag}"]).fetchall()
    token = c.execute("SELECT create_api_token(%s)", [owner]).fetchone()[0]
    other_token = c.execute("SELECT create_api_token(%s)", [other]).fetchone()[0]
    server = Server(test_db, tmp_path_factory.mktemp("console"), "--grpc-port", "0", workers=1)
    yield {"url": server.url, "token": token, "other_token": other_token, "project": project, "hidden": hidden,
           "job": f"con_job_{tag}", "consumer": f"con_live_{tag}", "tag": tag}
    server.stop()
    c.execute("SELECT drop_stream(%s, true)", [f"con_stream_{tag}"])
    for conn in (as_owner, as_other):
        conn.close()
    c.execute("DELETE FROM pgmodels.projects WHERE name IN (%s, %s, %s)", [project, hidden, EVIL])
    for role in (owner, other):
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
        c.execute(f"DROP OWNED BY {role}")
        c.execute(f"DROP ROLE {role}")
    c.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield b
        b.close()


def _page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
    return page, problems


def _login(page, url: str, token: str) -> None:
    page.goto(url + "/console/")
    assert page.url.endswith("/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/console/")


def test_every_page_in_a_headless_browser(console, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, problems = _page(browser)
    url = console["url"]
    _login(page, url, console["token"])
    timings = {}

    def visit(path: str, shot: str):
        start = time.perf_counter()
        response = page.goto(url + path)
        timings[path] = time.perf_counter() - start
        assert response.status == 200, path
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        return page.inner_text("main")

    text = visit("/console/", "projects")
    assert console["project"] in text and "deployed" in text and console["hidden"] not in text
    assert EVIL in text  # shown as text, not markup
    assert page.locator(f"#project-{console['project']} svg.chart.line circle.point").count() == 3
    assert page.locator(f"#project-{console['project']} .status.drift").count() == 1
    assert console["job"] in text and console["consumer"] in text

    text = visit(f"/console/projects/{console['project']}", "project")
    assert "f1 by version" in text and "rolled back" in text and "Drift" in text
    assert page.locator("svg.chart.line path.marker.rollback").count() >= 1
    assert page.locator("svg.chart.line path.marker.deploy").count() >= 1
    assert page.locator("table.drift .status.drift").count() >= 1 and "f2" in text
    assert page.locator("svg.chart.compare rect.bar.reference").count() > 10
    assert page.locator("svg.chart.compare rect.bar.current").count() > 10
    assert "PSI across reports" in text

    text = visit(f"/console/projects/{console['project']}/versions/2", "version")
    for words in ("Metrics (test split)", "Confusion matrix", "Feature importances", "Lineage", "fingerprint of the rows",
                  "artifact sha256", "Hyperparameters", "n_estimators"):
        assert words in text, words
    assert page.locator("table.confusion td.diag").count() == 2
    assert page.locator("svg.chart.bars rect.bar").count() == 9

    text = visit("/console/batch", "batch")
    assert console["job"] in text and "succeeded" in text and "failed" in text
    assert "NULL" in text  # the failed run's error
    assert page.locator("svg.chart.timeline rect.run.succeeded").count() == 1
    assert page.locator("svg.chart.timeline rect.run.failed").count() == 1

    text = visit("/console/streams", "streams")
    assert console["consumer"] in text and "200 pending" in text
    assert page.locator("svg.chart.timeseries polyline.series").count() == 2

    assert problems == [], problems
    print("console page loads (s):", {k: round(v, 3) for k, v in timings.items()})
    page.close()


def test_a_viewer_sees_only_what_its_role_may(console, browser):
    page, problems = _page(browser)
    _login(page, console["url"], console["other_token"])
    text = page.inner_text("main")
    assert console["hidden"] in text and console["project"] not in text and console["job"] not in text
    response = page.goto(console["url"] + f"/console/projects/{console['project']}")
    assert response.status == 404 and console["project"] in page.inner_text("main")  # the name it asked for
    assert page.locator("table").count() == 0
    response = page.goto(console["url"] + f"/console/projects/{console['project']}/versions/1")
    assert response.status == 404
    assert console["consumer"] not in page.goto(console["url"] + "/console/streams").text()
    page.click("header form.who button")  # log out: a POST
    page.wait_for_url(console["url"] + "/console/login")
    assert page.goto(console["url"] + "/console/").url.endswith("/console/login")
    # the two 404 pages asked for above are the only complaints
    assert [p for p in problems if "status of 404" not in p] == [] and len(problems) == 2, problems
    page.close()


def test_the_login_page_names_commands_that_exist(console):
    """Every command the login page tells a user to run runs (as printed, with --help)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = httpx.get(console["url"] + "/console/login").text
    commands = re.findall(r"<code>(pgmodels [^<]*?) ROLE</code>", page)
    assert commands == ["pgmodels token create"]
    tool = Path(sys.executable).with_name("pgmodels")
    for command in commands:
        run = subprocess.run([str(tool), *command.split()[1:], "--help"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr


def test_no_token_a_bad_token_and_the_headers(console):
    url = console["url"]
    r = httpx.get(url + "/console/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = httpx.post(url + "/console/login", data={"token": "nope"})
    assert r.status_code == 401 and "invalid or revoked token" in r.text and "set-cookie" not in r.headers
    r = httpx.post(url + "/console/login", data={"token": console["token"]}, follow_redirects=False)
    cookie = r.headers["set-cookie"].lower()
    assert r.status_code == 303 and "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    r = httpx.get(url + "/console/", headers={"authorization": f"Bearer {console['token']}"})
    assert r.status_code == 200 and "script-src" not in r.headers["content-security-policy"]
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "<script" not in r.text.lower() and "&lt;img src=x onerror=alert(1)&gt;" in r.text
    # read-only: nothing but GET (and the login and logout forms' POSTs)
    assert httpx.post(url + "/console/", headers={"authorization": f"Bearer {console['token']}"}).status_code == 405
    # a login form on another site cannot log a browser in under the attacker's token
    r = httpx.post(url + "/console/login", data={"token": console["token"]}, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers
    # a NUL, which no name can hold, is the client's mistake (tests/test_proxy_nul.py)
    r = httpx.get(url + "/console/projects/a%00b", headers={"authorization": f"Bearer {console['token']}"})
    assert r.status_code == 400 and "<title>Error" in r.text
