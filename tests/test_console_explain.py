"""The console's explanations in a real headless browser (Debian's chromium, Playwright):
a version's global importance, and the waterfall of one prediction for a key of the
project's feature source, as the owner and as a role that may only predict."""

from __future__ import annotations

import time

import httpx
import psycopg
import pytest

from dbhelpers import ROOT
from explainhelpers import churn_table, train
from proxyhelpers import Server

SHOTS = ROOT / "build" / "console-screenshots"


@pytest.fixture(scope="module")
def console(test_db, tmp_path_factory):
    tag = str(int(time.time() * 1000) % 10**8)
    owner, viewer = f"cex_owner_{tag}", f"cex_viewer_{tag}"
    c = psycopg.connect(test_db, autocommit=True)
    for role in (owner, viewer):
        c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        c.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
        c.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role}")
    as_owner = psycopg.connect(test_db, user=owner, password="pw", autocommit=True)
    project, bare = f"cex_churn_{tag}", f"cex_bare_{tag}"
    churn_table(as_owner, project, rows=400)
    train(as_owner, project, project, "xgboost", hyperparams='{"n_estimators": 20, "max_depth": 3}',
          preprocess='{"contract": {"encode": "one_hot"}}')
    train(as_owner, bare, project, "linear")
    as_owner.execute("SELECT register_feature_source(%s, %s, 'id')", [project, project])
    as_owner.execute("SELECT grant_project(%s, %s, 'predict')", [project, viewer])
    as_owner.execute(f"GRANT SELECT ON {project} TO {viewer}")
    tokens = {r: c.execute("SELECT create_api_token(%s)", [r]).fetchone()[0] for r in (owner, viewer)}
    server = Server(test_db, tmp_path_factory.mktemp("console"), "--grpc-port", "0", workers=1)
    yield {"url": server.url, "tokens": tokens, "owner": owner, "viewer": viewer, "project": project, "bare": bare,
           "conn": as_owner}
    server.stop()
    as_owner.close()
    c.execute("DELETE FROM pgmodels.projects WHERE name IN (%s, %s)", [project, bare])
    for role in (owner, viewer):
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


def _login(browser, url: str, token: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(url + "/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/console/")
    return page, problems


def test_version_page_shows_the_global_importance(console, browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, problems = _login(browser, console["url"], console["tokens"][console["owner"]])
    response = page.goto(f"{console['url']}/console/projects/{console['project']}/versions/1")
    assert response.status == 200
    text = page.inner_text("#global-importance")
    assert "mean absolute contribution" in text and "200 training rows" in text and "exact" in text
    # one bar per feature the user gave: contract's one-hot columns are one feature
    assert page.locator("#global-importance svg.chart.importance rect.bar").count() == 5
    page.screenshot(path=str(SHOTS / "version-importance.png"), full_page=True)
    assert problems == [], problems
    page.close()


def test_the_waterfall_of_one_prediction(console, browser):
    page, problems = _login(browser, console["url"], console["tokens"][console["owner"]])
    page.goto(f"{console['url']}/console/projects/{console['project']}")
    page.fill("form.explain input[name=key]", "42")
    page.click("form.explain button[type=submit]")
    page.wait_for_url("**/explain?key=42")
    text = page.inner_text("main")
    assert "why this prediction" in text and "id is 42" in text and 'log-odds of "true"' in text
    chart = page.locator("svg.chart.waterfall")
    assert chart.locator("rect.step.base").count() == 1 and chart.locator("rect.total").count() == 1
    assert chart.locator("rect.step.up").count() + chart.locator("rect.step.down").count() == 5
    # the numbers are explain_prediction()'s, and the total is their sum
    rows = console["conn"].execute(f"SELECT feature, contribution FROM explain_prediction(%s, "
                                   f"(SELECT c FROM {console['project']} c WHERE id = 42))",
                                   [console["project"]]).fetchall()
    cells = page.locator("table.contributions tr").all_inner_texts()
    assert len(cells) == len(rows) + 2 and cells[-1].split()[-1] == f"{sum(r[1] for r in rows):.3g}"
    page.screenshot(path=str(SHOTS / "explain-waterfall.png"), full_page=True)
    assert problems == [], problems
    page.close()


def test_what_the_waterfall_refuses(console):
    url, p = console["url"], console["project"]
    owner = {"authorization": f"Bearer {console['tokens'][console['owner']]}"}
    viewer = {"authorization": f"Bearer {console['tokens'][console['viewer']]}"}
    r = httpx.get(f"{url}/console/projects/{p}/explain", params={"key": "42"}, headers=viewer)
    assert r.status_code == 403 and "explain privilege" in r.text      # predict is not enough
    assert httpx.get(f"{url}/console/projects/{p}/versions/1", headers=viewer).status_code == 200
    r = httpx.get(f"{url}/console/projects/{p}/explain", params={"key": "99999"}, headers=owner)
    assert r.status_code == 404 and "no row" in r.text
    r = httpx.get(f"{url}/console/projects/{console['bare']}/explain", params={"key": "1"}, headers=owner)
    assert r.status_code == 404 and "register_feature_source" in r.text
    r = httpx.get(f"{url}/console/projects/{p}/explain", params={"key": "<b>x</b>"}, headers=owner)
    assert r.status_code in (400, 404) and "<b>x</b>" not in r.text
    assert httpx.get(f"{url}/console/projects/{p}/explain", headers=owner).status_code == 400
