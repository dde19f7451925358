"""A monitor's retrain is judged on labelled rows it did not train on (issue #26, item 1).

As the issue's report: a project whose deployed version is an XGBoost model, a later
train() of a random forest that was never deployed, and a monitor with retrain on the
relation the project trains on. The retrain must train XGBoost again with the deployed
version's hyperparameters, leave the held-out rows out of its training, compare the two
versions on those rows only, and say the same thing about the outcome everywhere: the
NOTICE, pgmodels.overview, pgmodels.history, the report's decision and the console.

Everything runs as a LOGIN role granted only train() and monitor() (and CREATE on
public), as an administrator would set a project's owner up; the monitor runs for real
(run_monitor, as pg_cron calls it).
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from dbhelpers import sql_error
from monitorhelpers import FEATURES, load
from proxyhelpers import Server

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
MONITOR = "monitor(text, text, text, text, boolean)"
COLUMNS = ", ".join(FEATURES + ["color", "y"])
KEY = f"md5(ROW(ARRAY[{', '.join(FEATURES)}]::real[], ARRAY[color]::text[])::text)"  # monitor/holdout.py


@pytest.fixture
def owner(conn, make_role, name):
    rolname, c = make_role(f"{name}_owner")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {rolname}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN}, {MONITOR} TO {rolname}")
    notes = []
    c.add_notice_handler(lambda d: notes.append(d.message_primary))
    return rolname, c, notes


def _deploy_xgboost_then_train_a_forest(c, name: str, relation: str) -> int:
    """The deployed XGBoost version 1, and version 2, a random forest, trained last and not deployed."""
    first = c.execute("SELECT model_id FROM train(%s, 'classification', %s, 'y', 'xgboost', "
                      "'{\"n_estimators\": 20, \"max_depth\": 3}')", [name, relation]).fetchone()[0]
    c.execute("SELECT * FROM train(%s, algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 10}', "
              "automatic_deploy => false)", [name]).fetchall()
    assert c.execute("SELECT version, algorithm FROM pgmodels.overview WHERE project = %s AND deployed",
                     [name]).fetchone() == (1, "xgboost")
    return first


def _fingerprint(c, rows_sql: str, params=None) -> str:
    """monitor/lineage.py's fingerprint of a set of rows, computed here independently."""
    n, total = c.execute(f"SELECT count(*), sum(hash_record_extended(s, 0)::numeric) "
                         f"FROM ({rows_sql}) s", params).fetchone()
    return f"rows-hash-sum:{n}:{int(total or 0) % (1 << 64):016x}"


def _f1(c, model_id: int, rows_sql: str, params=None) -> tuple[int, float]:
    """The version's macro f1 on some rows, from predict() by model id, scored here."""
    from sklearn.metrics import f1_score

    got = c.execute(f"SELECT s.y, predict(%s::bigint, to_jsonb(s) - 'y') FROM ({rows_sql}) s",
                    [model_id] + list(params or [])).fetchall()
    truth, answers = [int(r[0]) for r in got], [int(r[1]) for r in got]
    return len(got), float(f1_score(truth, answers, average="macro", zero_division=0))


def _new_version(conn, decision: dict) -> dict:
    return conn.execute("SELECT jsonb_build_object('algorithm', algorithm, 'hyperparams', hyperparams, "
                     "'training', training - 'profile') FROM pgmodels.models WHERE id = %s",
                     [decision["new_model_id"]]).fetchone()[0]


def test_the_newest_labelled_rows_are_held_out_by_the_time_column(conn, owner, name):
    rolname, c, notes = owner
    load(c, f"{name}_events", 3000, seed=4, with_time=True)
    c.execute(f"CREATE VIEW {name}_train AS SELECT {COLUMNS} FROM {name}_events")  # the same rows, no time
    deployed = _deploy_xgboost_then_train_a_forest(c, name, f"{name}_train")
    c.execute("SELECT set_monitor_thresholds(%s, retrain_on => 'always')", [name])
    monitor_id = c.execute("SELECT monitor(%s, %s, NULL, 'ts', retrain => true)",
                           [name, f"{name}_events"]).fetchone()[0]
    notes.clear()
    report_id = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    decision = c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
    # the newest quarter (the deployed version's test_size) of the 3000 labelled rows
    assert decision["holdout"] == "the newest 750 labelled rows of the window by ts", decision
    assert decision["holdout_rows"] == 750 and decision["excluded_rows"] == 750
    cutoff = c.execute(f"SELECT ts FROM {name}_events ORDER BY ts DESC OFFSET 749 LIMIT 1").fetchone()[0]
    # the deployed version's algorithm and hyperparameters, not the last train()'s forest
    new = _new_version(conn, decision)
    assert decision["algorithm"] == new["algorithm"] == "xgboost"
    assert new["hyperparams"]["n_estimators"] == 20 and new["hyperparams"]["max_depth"] == 3
    assert new["training"]["preprocess"] == {} and new["training"]["test_size"] == 0.25
    # it trained on exactly the older 2250 rows: their fingerprint, computed here
    assert new["training"]["rows"] == 2250 and new["training"]["retrain"]["excluded_rows"] == 750
    older = f"SELECT {COLUMNS} FROM {name}_events WHERE ts < %s"
    assert new["training"]["fingerprint"] == _fingerprint(c, older, [cutoff])
    assert new["training"]["relation"] == f"public.{name}_train"
    # and both scores are the versions' f1 on the newest 750 rows, scored here by predict()
    newest = f"SELECT {COLUMNS} FROM {name}_events WHERE ts >= %s"
    rows, old_f1 = _f1(c, deployed, newest, [cutoff])
    _, new_f1 = _f1(c, decision["new_model_id"], newest, [cutoff])
    assert rows == 750
    assert decision["deployed_score"] == pytest.approx(old_f1, abs=1e-9)
    assert decision["new_score"] == pytest.approx(new_f1, abs=1e-9)
    assert decision["reason"].endswith(" on 750 held-out rows (the window's newest by ts)"), decision["reason"]
    # the training's own NOTICE does not call the candidate deployed or not: the monitor's says which
    trained = [n for n in notes if n.startswith(f'train "{name}": trained version 3')]
    assert len(trained) == 1 and "a retrain's candidate: the monitor decides whether to deploy it" in trained[0]
    assert f'monitor {monitor_id} of project "{name}": retrain: {decision["reason"]}' in notes


def test_a_monitor_on_the_training_relation_holds_out_random_rows_it_does_not_train_on(conn, owner, name):
    """The issue's case: the monitored relation is the training relation, with no time column."""
    rolname, c, notes = owner
    load(c, f"{name}_data", 3000, seed=5)
    deployed = _deploy_xgboost_then_train_a_forest(c, name, f"{name}_data")
    c.execute("SELECT set_monitor_thresholds(%s, retrain_on => 'always')", [name])
    monitor_id = c.execute("SELECT monitor(%s, %s, NULL, retrain => true)", [name, f"{name}_data"]).fetchone()[0]
    report_id = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    decision = c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
    seed = f"report {report_id}"
    assert decision["holdout"] == f"750 labelled rows of the window drawn at random (seed: {seed})", decision
    assert decision["holdout_rows"] == 750 and decision["excluded_rows"] == 750
    assert decision["reason"].endswith(f" on 750 held-out rows (drawn at random from the window, seed: {seed})")
    # the draw as documented (monitor/holdout.py): by md5 of the seed and the row's features
    held = [r[0] for r in c.execute(f"SELECT {KEY} FROM {name}_data WHERE y IS NOT NULL "
                                    f"ORDER BY md5(%s || {KEY}), 1 LIMIT 750", [seed])]
    new = _new_version(conn, decision)
    assert decision["algorithm"] == new["algorithm"] == "xgboost" and new["hyperparams"]["n_estimators"] == 20
    assert new["training"]["rows"] == 2250
    rest = f"SELECT {COLUMNS} FROM {name}_data WHERE NOT {KEY} = ANY(%s)"
    assert new["training"]["fingerprint"] == _fingerprint(c, rest, [held])
    assert new["training"]["fingerprint"] != _fingerprint(c, f"SELECT {COLUMNS} FROM {name}_data")
    drawn = f"SELECT {COLUMNS} FROM {name}_data WHERE {KEY} = ANY(%s)"
    rows, old_f1 = _f1(c, deployed, drawn, [held])
    _, new_f1 = _f1(c, decision["new_model_id"], drawn, [held])
    assert rows == 750
    assert decision["deployed_score"] == pytest.approx(old_f1, abs=1e-9)
    assert decision["new_score"] == pytest.approx(new_f1, abs=1e-9)
    # the same report's draw is the same rows; another report draws others
    again = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    other = c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [again]).fetchone()[0]
    assert other["holdout"].endswith(f"(seed: report {again})")
    held_again = [r[0] for r in c.execute(f"SELECT {KEY} FROM {name}_data ORDER BY md5(%s || {KEY}), 1 LIMIT 750",
                                          [f"report {again}"])]
    assert set(held_again) != set(held)


def test_too_few_labelled_rows_train_nothing_and_say_why(conn, owner, name):
    rolname, c, notes = owner
    load(c, f"{name}_train", 2000, seed=1)
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 10}')",
              [name, f"{name}_train"]).fetchall()
    load(c, f"{name}_now", 500, seed=2, with_time=True)
    c.execute(f"UPDATE {name}_now SET y = NULL WHERE ts >= (SELECT min(ts) FROM {name}_now) + interval '20 seconds'")
    c.execute("SELECT set_monitor_thresholds(%s, retrain_on => 'always', min_holdout_rows => 50)", [name])
    monitor_id = c.execute("SELECT monitor(%s, %s, NULL, 'ts', retrain => true)", [name, f"{name}_now"]).fetchone()[0]
    notes.clear()
    report_id = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    decision = c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
    assert decision["deployed"] is False and "new_model_id" not in decision and decision["holdout_rows"] == 20
    assert decision["reason"] == ("kept version 1 and trained nothing: the window has 20 labelled rows, "
                                  "fewer than min_holdout_rows (50) to judge a retrain on")
    assert c.execute("SELECT count(*) FROM pgmodels.overview WHERE project = %s", [name]).fetchone()[0] == 1
    events = dict(c.execute("SELECT event, detail FROM pgmodels.history WHERE project = %s AND event LIKE 'retrain%%'",
                            [name]).fetchall())
    assert events == {"retrain skipped": f"{decision['reason']}; report {report_id}"}
    assert notes == [f'monitor {monitor_id} of project "{name}": retrain: {decision["reason"]}']


def test_the_monitor_can_name_another_algorithm(conn, owner, make_role, name):
    rolname, c, notes = owner
    load(c, f"{name}_train", 1500, seed=1)
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 10}')",
              [name, f"{name}_train"]).fetchall()
    load(c, f"{name}_now", 400, seed=2)
    c.execute("SELECT set_monitor_thresholds(%s, retrain_on => 'always')", [name])
    monitor_id = c.execute("SELECT monitor(%s, %s, NULL, retrain => true)", [name, f"{name}_now"]).fetchone()[0]
    settings = c.execute("SELECT set_monitor_retrain(%s, 'random_forest', '{\"n_estimators\": 7}', "
                         "'{\"color\": {\"encode\": \"one_hot\"}}')", [monitor_id]).fetchone()[0]
    assert settings == {"algorithm": "random_forest", "hyperparams": {"n_estimators": 7},
                        "preprocess": {"color": {"encode": "one_hot"}}}
    assert c.execute("SELECT retrain_with FROM pgmodels.monitors WHERE id = %s", [monitor_id]).fetchone()[0] == settings
    report_id = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    decision = c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
    new = _new_version(conn, decision)
    assert decision["algorithm"] == new["algorithm"] == "random_forest", decision
    assert new["hyperparams"]["n_estimators"] == 7
    assert new["training"]["preprocess"] == {"color": {"encode": "one_hot"}}
    # hyperparameters alone go with the deployed version's algorithm; all NULL: the deployed version's again
    c.execute("SELECT set_monitor_retrain(%s, hyperparams => '{\"max_depth\": 2}')", [monitor_id])
    report_id = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    new = _new_version(conn, c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s",
                                    [report_id]).fetchone()[0])
    assert new["algorithm"] == "xgboost" and new["hyperparams"]["max_depth"] == 2
    assert c.execute("SELECT set_monitor_retrain(%s)", [monitor_id]).fetchone()[0] is None
    assert c.execute("SELECT retrain_with FROM pgmodels.monitors WHERE id = %s", [monitor_id]).fetchone()[0] is None
    # what is refused, and to whom
    for args, sqlstate, words in [
        (("'no_such_algorithm'", "NULL"), "22023", 'unknown algorithm "no_such_algorithm"'),
        (("'lasso'", "NULL"), "22023", 'algorithm "lasso" does not support classification'),
        (("NULL", "'{\"no_such\": 1}'"), "22023", 'unknown hyperparameter "no_such" for algorithm "xgboost"'),
        (("NULL", "'[1]'"), "22023", "hyperparams must be a jsonb object"),
        (("'xgboost'", "'{\"n_jobs\": 4}'"), "22023", 'hyperparameter "n_jobs" is set by pgmodels'),
    ]:
        err = sql_error(c, f"SELECT set_monitor_retrain(%s, {args[0]}, {args[1]})", [monitor_id])
        assert (err.sqlstate, err.diag.message_primary) == (sqlstate, words), (args, str(err))
    _, stranger = make_role(f"{name}_x")
    err = sql_error(stranger, "SELECT set_monitor_retrain(%s, 'random_forest')", [monitor_id])
    assert err.sqlstate == "42501", str(err)
    err = sql_error(stranger, "SELECT pgmodels._monitor_retrain_with(pgmodels._credential(), %s, "
                              "'{\"algorithm\": \"random_forest\"}')", [monitor_id])
    assert err.sqlstate == "42501" and err.diag.message_primary == f"must be owner of monitor {monitor_id}"
    err = sql_error(c, "SELECT pgmodels._monitor_retrain_with(pgmodels._credential(), %s, '{\"search\": \"grid\"}')",
                    [monitor_id])
    assert (err.sqlstate, err.diag.message_primary) == ("22023", "invalid retrain settings")
    assert c.execute("SELECT retrain_with FROM pgmodels.monitors WHERE id = %s", [monitor_id]).fetchone()[0] is None
    err = sql_error(c, "SELECT set_monitor_retrain(%s, 'random_forest')", [monitor_id + 1000])
    assert err.sqlstate == "42704"


def _console_says(server: Server, token: str, project: str) -> tuple[str, dict]:
    """The project page's retrain line and, per version, whether its row says deployed."""
    html = httpx.get(f"{server.url}/console/projects/{project}", headers={"authorization": f"Bearer {token}"}).text
    line = re.search(r'<p class="decision">Retrain: (.*?)</p>', html, re.S).group(1)
    rows = re.findall(r'<tr class="(deployed)?"><td><a href="[^"]*/versions/(\d+)">', html)
    return line, {int(v): bool(d) for d, v in rows}


def test_notice_overview_history_report_and_console_agree(conn, test_db, owner, name, tmp_path):
    """One retrain that does not deploy, then one that does, read back everywhere."""
    from html import unescape

    rolname, c, notes = owner
    load(c, f"{name}_old", 3000, seed=1)
    c.execute(f"CREATE VIEW {name}_train AS SELECT * FROM {name}_old")
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 20}')",
              [name, f"{name}_train"]).fetchall()
    c.execute("SELECT set_monitor_thresholds(%s, retrain_margin => 0.05, retrain_on => 'always')", [name])
    token = conn.execute("SELECT create_api_token(%s)", [rolname]).fetchone()[0]
    server = Server(test_db, tmp_path, workers=1)
    try:
        expected = {}
        # 1. the same relationship: the new version is no better by the margin, kept
        load(c, f"{name}_same", 1000, seed=2, with_time=True)
        # 2. the label moved on, and the training view with it: the new version is better, deployed
        load(c, f"{name}_moved", 1000, seed=8, shift={"f1": 1.0}, label_cut=2.0, with_time=True)
        for window, prepare, deployed in ((f"{name}_same", None, False),
                                          (f"{name}_moved", f"{name}_new", True)):
            if prepare:
                load(c, prepare, 3000, seed=7, shift={"f1": 1.0}, label_cut=2.0)
                c.execute(f"CREATE OR REPLACE VIEW {name}_train AS SELECT * FROM {prepare}")
            monitor_id = c.execute("SELECT monitor(%s, %s, NULL, 'ts', retrain => true)",
                                   [name, window]).fetchone()[0]
            notes.clear()
            report_id = c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
            decision = c.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
            version, reason = decision["new_version"], decision["reason"]
            assert decision["deployed"] is deployed and decision["holdout_rows"] == 250, decision
            expected[version] = deployed
            # the NOTICE: the training's says "candidate", the monitor's the decision in the report's words
            assert [n for n in notes if "not deployed" in n or ", deployed" in n] == []
            assert notes[-1] == f'monitor {monitor_id} of project "{name}": retrain: {reason}'
            assert reason.startswith(f"deployed version {version} in place of version 1" if deployed
                                     else f"kept version {1 if version == 2 else 2}:"), reason
            # pgmodels.overview: deployed exactly when the decision says so
            overview = dict(c.execute("SELECT version, deployed FROM pgmodels.overview WHERE project = %s",
                                      [name]).fetchall())
            assert overview[version] is deployed and sum(overview.values()) == 1
            # pgmodels.history: the decision, with the same reason, and a deployment only when deployed
            events = c.execute("SELECT event, version, detail FROM pgmodels.history WHERE project = %s "
                               "AND (detail LIKE %s OR (event = 'deployed' AND version = %s))",
                               [name, f"%report {report_id}", version]).fetchall()
            decided = [e for e in events if e[0].startswith("retrain ")]
            assert decided == [("retrain deployed" if deployed else "retrain kept", version,
                                f"{reason}; report {report_id}")]
            assert [e for e in events if e[0] == "deployed"] == ([("deployed", version, f"strategy model_id, by {rolname}")]
                                                                  if deployed else [])
            # model_lineage: the decision that answered this version
            lineage = dict(c.execute("SELECT item, value FROM model_lineage(%s)",
                                     [decision["new_model_id"]]).fetchall())
            assert lineage["retrain decision"] == reason
            # the console: the latest report's decision, and which version it marks deployed
            line, marked = _console_says(server, token, name)
            assert unescape(line) == reason
            assert marked[version] is deployed and sum(marked.values()) == 1
        assert expected == {2: False, 3: True}
    finally:
        server.stop()
