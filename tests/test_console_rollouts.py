"""The console's rollout pages (issue #27): /console/rollouts lists pgmodels.rollouts, and
/console/rollouts/{id} shows a rollout's two versions side by side at its last
evaluation, its metric at each evaluation with intervals, its shares and its decision;
the same data as JSON with ?format=json. A shadow rollout of a random forest beside a
deployed linear model, keys scored in two rounds, labels arriving after each, evaluated
twice; another role sees none of it."""

from __future__ import annotations

import re
import time

import httpx
import psycopg
import pytest

from monitorhelpers import load
from proxyhelpers import Server

FEATURES = "to_jsonb(v) - 'y' - 'id'"


@pytest.fixture(scope="module")
def site(test_db, tmp_path_factory):
    tag = str(int(time.time() * 1000) % 10**8)
    owner, other = f"cr_owner_{tag}", f"cr_other_{tag}"
    admin = psycopg.connect(test_db, autocommit=True)
    for role in (owner, other):
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    admin.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {owner}")
    admin.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {owner}")
    c = psycopg.connect(test_db, user=owner, password="pw", autocommit=True)
    project, data, labels = f"cr_churn_{tag}", f"cr_v_{tag}", f"cr_labels_{tag}"
    load(c, f"{data}_train", 800, seed=7)
    c.execute(f"CREATE TABLE {data} AS SELECT row_number() OVER () AS id, * FROM {data}_train")
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'linear')",
              [project, f"{data}_train"]).fetchall()
    candidate = c.execute("SELECT model_id FROM train(%s, 'classification', %s, 'y', algorithm => 'random_forest', "
                          "hyperparams => '{\"n_estimators\": 5}', automatic_deploy => false)",
                          [project, f"{data}_train"]).fetchone()[0]
    rollout = c.execute("SELECT start_rollout(%s, %s, 'shadow', rule => '{\"min_outcomes\": 100000}')",
                        [project, candidate]).fetchone()[0]
    c.execute(f"CREATE TABLE {labels} (id bigint PRIMARY KEY, y integer)")
    c.execute("SELECT register_outcomes(%s, %s, 'id', 'y')", [project, labels])
    evaluations = []
    for low, high in ((1, 300), (301, 600)):  # two rounds: scored, then their labels arrive
        c.execute(f"SELECT predict(%s, {FEATURES}, key => v.id) FROM {data} v WHERE v.id BETWEEN %s AND %s",
                  [project, low, high]).fetchall()
        c.execute("SELECT pgmodels._rollout_flush()")
        c.execute(f"INSERT INTO {labels} SELECT id, y FROM {data} WHERE id BETWEEN %s AND %s", [low, high])
        evaluations.append(c.execute("SELECT * FROM evaluate_rollout(%s)", [rollout]).fetchone())
    token = admin.execute("SELECT create_api_token(%s)", [owner]).fetchone()[0]
    other_token = admin.execute("SELECT create_api_token(%s)", [other]).fetchone()[0]
    server = Server(test_db, tmp_path_factory.mktemp("console_rollouts"), "--grpc-port", "0", workers=1)
    yield {"url": server.url, "token": token, "other_token": other_token, "project": project,
           "rollout": rollout, "evaluations": evaluations}
    server.stop()
    c.close()
    admin.execute("DELETE FROM pgmodels.projects WHERE name = %s", [project])
    for role in (owner, other):
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")
    admin.close()


def _get(site, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(site["url"] + path, headers={"authorization": f"Bearer {token or site['token']}"}, timeout=60)


def test_the_evaluations_waited_with_numbers(site):
    for action, automatic, reason, numbers in site["evaluations"]:
        assert action == "wait" and "min_outcomes" in reason
        champion, candidate = numbers["versions"]
        assert champion["role"] == "champion" and candidate["role"] == "shadow"
    first, second = (e[3]["versions"][0]["outcomes"] for e in site["evaluations"])
    assert (first, second) == (300, 600)


def test_the_rollouts_page_lists_it(site):
    r = _get(site, "/console/rollouts")
    assert r.status_code == 200 and "<script" not in r.text.lower()
    row = re.search(rf'<tr class="rollout active" id="rollout-{site["rollout"]}">(.*?)</tr>', r.text, re.S)
    assert row, r.text
    assert site["project"] in row.group(1) and ">shadow<" in row.group(1) and ">wait<" in row.group(1)
    assert "v1" in row.group(1) and "v2" in row.group(1)
    listed = _get(site, "/console/rollouts?format=json").json()["rollouts"]
    mine = next(x for x in listed if x["id"] == site["rollout"])
    assert mine["status"] == "active" and mine["mode"] == "shadow" and mine["candidate_version"] == 2
    assert mine["last_report"] == site["evaluations"][-1][3]
    # linked from the overview and from the project's page
    assert f'href="/console/rollouts/{site["rollout"]}"' in _get(site, "/console/").text
    assert f'href="/console/rollouts/{site["rollout"]}"' in _get(site, f"/console/projects/{site['project']}").text


def test_the_rollout_page_shows_both_versions_over_time(site):
    r = _get(site, f"/console/rollouts/{site['rollout']}")
    assert r.status_code == 200, r.text
    html = r.text
    last = site["evaluations"][-1][3]["versions"]
    # side by side: the last evaluation's outcomes, metric and interval of each version
    assert re.findall(r'<td class="n outcomes">(\d+)</td>', html) == [str(v["outcomes"]) for v in last] == ["600"] * 2
    metrics = re.findall(r'<td class="n metric">([^<]*)</td>', html)
    assert len(metrics) == 2 and all("[" in m for m in metrics), metrics
    assert "shadow: v2" in html and "champion: v1" in html and "agreement with the champion" in html
    # one point per evaluation and version, each with its interval
    assert html.count('<circle class="point champion"') == 2 and html.count('<circle class="point candidate"') == 2
    assert html.count('<line class="interval candidate"') == 2
    # shadow: the champion answers every key
    assert '<rect class="share champion"' in html and '<rect class="share candidate"' not in html
    # the decision and why
    assert 'id="decision"' in html and "min_outcomes" in html and 'class="status wait"' in html
    body = _get(site, f"/console/rollouts/{site['rollout']}?format=json").json()
    assert [p[1] for p in body["series"]["candidate"]] == [e[3]["versions"][1]["value"] for e in site["evaluations"]]
    assert [d["action"] for d in body["decisions"]] == ["start", "wait", "wait"]
    assert body["shares"] == [["champion", "champion answers (candidate in shadow)", 1.0]]


def test_another_role_sees_no_rollout(site):
    r = _get(site, f"/console/rollouts/{site['rollout']}", token=site["other_token"])
    assert r.status_code == 404 and site["project"] not in r.text
    assert site["project"] not in _get(site, "/console/rollouts", token=site["other_token"]).text
    assert _get(site, "/console/rollouts/nope").status_code == 404
