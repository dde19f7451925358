"""The console's drift and batch charts in a real headless browser (issue #26, item 6):
PSI across reports is a series from 0 once there are two reports, and says "one report so
far" before; "Training beside now" says why it is empty; batch-run bars carry their run id
and start time, visibly and as accessible text. Debian's chromium through Playwright, as
tests/test_console.py; screenshots in build/console-screenshots/charts-*.png."""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from dbhelpers import ROOT
from monitorhelpers import load
from proxyhelpers import Server

SHOTS = ROOT / "build" / "console-screenshots"


@pytest.fixture(scope="module")
def site(test_db, tmp_path_factory):
    tag = str(int(time.time() * 1000) % 10**8)
    owner, analyst, reader = f"cc_owner_{tag}", f"cc_analyst_{tag}", f"cc_reader_{tag}"
    admin = psycopg.connect(test_db, autocommit=True)
    for role in (owner, analyst, reader):
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
    admin.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {owner}")
    c = psycopg.connect(test_db, user=owner, password="pw", autocommit=True)
    series, single, stripped = f"cc_series_{tag}", f"cc_single_{tag}", f"cc_stripped_{tag}"
    load(c, f"cc_train_{tag}", 1500, seed=1)
    for project in (series, single, stripped):
        c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 10}')",
                  [project, f"cc_train_{tag}"]).fetchall()
    # three reports of one monitor: its view shows rows shifted further each time
    for i, by in enumerate((0.0, 0.5, 1.2)):
        load(c, f"cc_now{i}_{tag}", 800, seed=10 + i, shift={"f2": by})
    c.execute(f"CREATE VIEW cc_cur_{tag} AS SELECT * FROM cc_now0_{tag}")
    monitor_id = c.execute("SELECT monitor(%s, %s, NULL)", [series, f"cc_cur_{tag}"]).fetchone()[0]
    reports = []
    for i in range(3):
        c.execute(f"CREATE OR REPLACE VIEW cc_cur_{tag} AS SELECT * FROM cc_now{i}_{tag}")
        reports.append(c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0])
    for project in (single, stripped):
        m = c.execute("SELECT monitor(%s, %s, NULL)", [project, f"cc_now2_{tag}"]).fetchone()[0]
        c.execute("SELECT run_monitor(%s)", [m])
    # a profile without its details, as model_lineage() gives it to a role without the
    # monitor or export privilege (feature names and kinds only)
    admin.execute("""UPDATE pgmodels.models m SET training = m.training || jsonb_build_object('profile',
                         jsonb_build_object('features', (SELECT jsonb_object_agg(f.key, jsonb_build_object('kind', f.value -> 'kind'))
                                                           FROM jsonb_each(m.training -> 'profile' -> 'features') f)))
                      FROM pgmodels.projects p WHERE p.id = m.project_id AND p.name = %s""", [stripped])
    # who sees what: an analyst granted monitor only, a reader granted predict only
    c.execute("SELECT grant_project(%s, %s, 'monitor')", [series, analyst])
    c.execute("SELECT grant_project(%s, %s, 'predict')", [series, reader])
    # a batch job with three runs
    c.execute(f"CREATE TABLE cc_src_{tag} AS SELECT row_number() OVER () AS id, * FROM cc_now0_{tag}")
    c.execute(f"ALTER TABLE cc_src_{tag} ADD PRIMARY KEY (id)")
    c.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 500)",
              [f"cc_job_{tag}", series, f"cc_src_{tag}", f"cc_out_{tag}"])
    for _ in range(3):
        c.execute("CALL run_batch_job(%s)", [f"cc_job_{tag}"])
    runs = c.execute("SELECT run_id, started_at FROM pgmodels.batch_runs WHERE job = %s ORDER BY run_id",
                     [f"cc_job_{tag}"]).fetchall()
    tokens = {r: admin.execute("SELECT create_api_token(%s)", [r]).fetchone()[0] for r in (owner, analyst, reader)}
    server = Server(test_db, tmp_path_factory.mktemp("console_charts"), "--grpc-port", "0", workers=1)
    yield {"url": server.url, "tokens": tokens, "owner": owner, "analyst": analyst, "reader": reader,
           "series": series, "single": single, "stripped": stripped, "reports": reports, "runs": runs,
           "job": f"cc_job_{tag}"}
    server.stop()
    c.close()
    admin.execute("DELETE FROM pgmodels.projects WHERE name IN (%s, %s, %s)", [series, single, stripped])
    for role in (owner, analyst, reader):
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")
    admin.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, site, role: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(site["url"] + "/console/login")
    page.fill("input[name=token]", site["tokens"][role])
    page.click("button[type=submit]")
    page.wait_for_url(site["url"] + "/console/")
    return page, problems


def _visit(page, site, path: str, shot: str) -> str:
    SHOTS.mkdir(parents=True, exist_ok=True)
    response = page.goto(site["url"] + path)
    assert response.status == 200, path
    page.screenshot(path=str(SHOTS / f"charts-{shot}.png"), full_page=True)
    return page.inner_text("main")


def _figure(page, feature: str):
    """The PSI figure of a feature (the second grid: PSI across reports)."""
    return page.locator("figure", has=page.locator("figcaption", has_text=re.compile(rf"^{re.escape(feature)}$"))) \
        .filter(has=page.locator("svg.chart.psi"))


def test_psi_across_reports_is_a_series_from_zero(site, browser):
    page, problems = _open(browser, site, site["owner"])
    text = _visit(page, site, f"/console/projects/{site['series']}", "psi-series")
    assert "PSI across reports" in text and "one report so far" not in text
    charts = page.locator("svg.chart.psi")
    assert charts.count() == 10  # f1..f8, color and (prediction)
    for i in range(charts.count()):
        chart = charts.nth(i)
        assert chart.locator("circle.point").count() == 3  # one point per report
        ticks = [float(t) for t in chart.locator("text.tick:not(.threshold)").all_text_contents()
                 if re.fullmatch(r"-?[0-9.e+-]+", t)]
        assert min(ticks) == 0.0, ticks  # the axis starts at 0, never below
        zero = float(chart.locator("line.grid").first.get_attribute("y1"))
        assert all(float(p.get_attribute("cy")) <= zero for p in chart.locator("circle.point").all())
        labels = chart.locator("text.tick", has_text=re.compile(r"^#\d+$")).all_text_contents()
        assert labels == [f"#{r}" for r in site["reports"]]
    # f2 moved further each report, and its points say so, in order
    f2 = _figure(page, "f2").locator("svg.chart.psi")
    titles = f2.locator("circle.point title").all_text_contents()
    values = [float(re.search(r"PSI ([0-9.e+-]+)", t).group(1)) for t in titles]
    assert values == sorted(values) and values[-1] > 0.2 and titles[-1].endswith("(drift)"), titles
    # the project's thresholds are drawn (warning 0.1, drift 0.2: f2's last report is above both)
    assert f2.locator("line.threshold.warning").count() == 1 and f2.locator("line.threshold.drift").count() == 1
    assert problems == [], problems
    page.close()


def test_one_report_so_far(site, browser):
    page, problems = _open(browser, site, site["owner"])
    text = _visit(page, site, f"/console/projects/{site['single']}", "psi-one")
    report_id = int(re.search(r"Report (\d+) on", text).group(1))
    one = page.locator("svg.chart.psi.one")
    assert one.count() == 10 and page.locator("svg.chart.psi circle.point").count() == 0
    said = _figure(page, "f2").locator("svg text.empty").text_content()
    assert re.fullmatch(rf"one report so far: PSI [0-9.]+ in report #{report_id} \(drift\)", said), said
    assert "a series from the second report on" in text
    assert problems == [], problems
    page.close()


def test_training_beside_now_says_why_it_is_empty(site, browser):
    # the profile's details missing (as a role without monitor or export gets it): said, not an empty grid
    page, problems = _open(browser, site, site["owner"])
    text = _visit(page, site, f"/console/projects/{site['stripped']}", "beside-now-why")
    assert "Training beside now" in text and page.locator("svg.chart.compare").count() == 0
    why = page.locator("p.why-not").inner_text()
    assert why.startswith(f"Role {site['owner']} may not see the training profile of version 1 "), why
    assert f"SELECT grant_project('{site['stripped']}', '{site['owner']}', 'monitor')" in why
    page.close()
    # a role granted monitor sees the reports and the profile: the charts, no excuse
    page, more = _open(browser, site, site["analyst"])
    text = _visit(page, site, f"/console/projects/{site['series']}", "beside-now-monitor")
    assert "Training beside now" in text and page.locator("svg.chart.compare").count() == 10
    assert page.locator("p.why-not").count() == 0 and page.locator("svg.chart.psi circle.point").count() == 30
    page.close()
    # a role granted predict only sees no report, and the drift card says why, in the same terms
    page, still = _open(browser, site, site["reader"])
    text = _visit(page, site, f"/console/projects/{site['series']}", "beside-now-predict")
    assert "Training beside now" not in text and page.locator("svg.chart.psi").count() == 0
    assert (f"No drift report that role {site['reader']} may see: reports are for the project's owner and the "
            "roles it grants monitor") in text
    assert problems + more + still == []
    page.close()


def test_batch_run_bars_carry_their_run_and_start(site, browser):
    page, problems = _open(browser, site, site["owner"])
    _visit(page, site, "/console/batch", "batch-runs")
    chart = page.locator(f"#job-{site['job']} svg.chart.timeline")
    assert chart.locator("rect.run.succeeded").count() == 3
    ids = chart.locator("text.run-label").all_text_contents()
    times = chart.locator("text.run-time").all_text_contents()
    assert ids == [f"#{run_id}" for run_id, _ in site["runs"]]
    assert times == [started.strftime("%m-%d %H:%M") for _, started in site["runs"]]
    # accessible text: the chart's description, and each bar's title, name every run and its start
    desc = chart.locator("desc").text_content()
    for (run_id, started), bar in zip(site["runs"], chart.locator("rect.run").all()):
        words = f"run {run_id}, started {started.strftime('%Y-%m-%d %H:%M:%S')}: succeeded, 800 rows in "
        assert words in desc and bar.locator("title").text_content().startswith(words)
    named = page.get_by_role("img", name=f"runs of {site['job']}")
    assert named.count() == 1
    assert problems == [], problems
    page.close()
