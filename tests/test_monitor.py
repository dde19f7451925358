"""Drift, monitors, retraining and lineage (issue #13), on the embedded cluster."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from dbhelpers import sql_error
from pgmodels import __version__
from monitorhelpers import FEATURES, load, train

MONITOR = "monitor(text, text, text, text, boolean)"


def statuses(conn, *args, **kw) -> dict:
    params = ", ".join(["%s"] * len(args) + [f"{k} => %s" for k in kw])
    return {r[0]: r[1] for r in conn.execute(f"SELECT feature, status FROM drift({params})",
                                              list(args) + list(kw.values()))}


def test_a_shift_in_one_feature_is_flagged_and_only_that_one(conn, name):
    load(conn, f"{name}_train", 4000, seed=1)
    model_id = train(conn, name, f"{name}_train")
    load(conn, f"{name}_same", 20000, seed=2)
    load(conn, f"{name}_shifted", 20000, seed=3, shift={"f5": 0.8})
    same = statuses(conn, name, f"{name}_same")
    assert set(same) == set(FEATURES) | {"color", "(prediction)"}
    assert set(same.values()) == {"ok"}, same
    shifted = statuses(conn, name, f"{name}_shifted")
    assert shifted.pop("f5") == "drift"
    assert set(shifted.values()) == {"ok"}, shifted
    # every metric is there, and the numbers say what happened
    row = conn.execute("SELECT rows, psi, ks_statistic, p_value, null_rate_change FROM drift(%s, %s) "
                       "WHERE feature = 'f5'", [name, f"{name}_shifted"]).fetchone()
    assert row[0] == 20000 and row[1] > 0.2 and row[2] > 0.2 and row[3] < 1e-10 and row[4] == 0
    # a category's mix: PSI over the categories
    conn.execute(f"UPDATE {name}_same SET color = 'blue' WHERE f1 > -0.5")
    assert statuses(conn, name, f"{name}_same", model_id=model_id)["color"] == "drift"
    # nulls show as a null-rate change
    conn.execute(f"UPDATE {name}_same SET f2 = NULL WHERE f3 > 0")
    change = conn.execute("SELECT null_rate_change FROM drift(%s, %s) WHERE feature = 'f2'",
                          [name, f"{name}_same"]).fetchone()[0]
    assert 0.45 < change < 0.55


def test_a_shift_in_the_label_relationship_shows_in_the_predictions(conn, name):
    load(conn, f"{name}_train", 3000, seed=1)
    train(conn, name, f"{name}_train")
    load(conn, f"{name}_cur", 5000, seed=4, shift={"f1": 1.5, "f2": 1.5})
    got = statuses(conn, name, f"{name}_cur")
    assert got["(prediction)"] == "drift" and got["f1"] == "drift" and got["f2"] == "drift"


def test_a_time_window_and_per_project_thresholds(conn, name):
    load(conn, f"{name}_train", 3000, seed=1)
    train(conn, name, f"{name}_train")
    load(conn, f"{name}_cur", 3000, seed=5, shift={"f3": 0.3}, with_time=True)
    # the first 1000 seconds only
    got = conn.execute("SELECT max(rows) FROM drift(%s, %s, since => '2026-01-01 00:33:20+00', time_column => 'ts')",
                       [name, f"{name}_cur"]).fetchone()[0]
    assert got == 1000
    before = statuses(conn, name, f"{name}_cur")["f3"]
    assert before in ("warning", "drift")
    conn.execute("SELECT set_monitor_thresholds(%s, psi_warning => 0.5, psi_drift => 1.0, ks_alpha => 1e-300)", [name])
    assert statuses(conn, name, f"{name}_cur")["f3"] == "ok"
    shown = conn.execute("SELECT set_monitor_thresholds(%s, psi_warning => 0.05)", [name]).fetchone()[0]
    assert shown["psi_warning"] == 0.05 and shown["psi_drift"] == 1.0


def test_bad_input_is_refused_with_a_sqlstate(conn, name):
    load(conn, f"{name}_train", 1000, seed=1, with_time=True)
    conn.execute(f"ALTER TABLE {name}_train DROP COLUMN ts")
    train(conn, name, f"{name}_train")
    load(conn, f"{name}_cur", 200, seed=2, with_time=True)
    conn.execute(f"CREATE TABLE {name}_nofeat AS SELECT f1, f2 FROM {name}_cur")
    conn.execute(f"CREATE TABLE {name}_badtime AS SELECT *, 'x'::text AS t FROM {name}_cur")
    cases = [
        ("SELECT * FROM drift(%s, %s)", [name, f"{name}_nofeat"], "42703", 'has no column "f3"'),
        ("SELECT * FROM drift(%s, %s)", [name, f"{name}_missing"], "42P01", "does not exist"),
        ("SELECT * FROM drift(%s, %s, since => now(), time_column => 'ts')", [name, f"{name}_cur"], "22000",
         "has no rows in the window"),
        ("SELECT * FROM drift(%s, %s, since => now(), time_column => 't')", [name, f"{name}_badtime"], "42804",
         "must be a timestamp or a date"),
        ("SELECT * FROM drift(%s, %s, since => now())", [name, f"{name}_cur"], "22023", "since needs time_column"),
        ("SELECT * FROM drift(%s, %s, time_column => 'nope')", [name, f"{name}_cur"], "42703", "does not exist"),
        ("SELECT * FROM drift(%s, %s)", ["no_such_project", f"{name}_cur"], "42704", "does not exist"),
        ("SELECT set_monitor_thresholds(%s, psi_warning => 0.5, psi_drift => 0.2)", [name], "22023", "invalid PSI"),
        ("SELECT set_monitor_thresholds(%s, ks_alpha => 2)", [name], "22023", "ks_alpha"),
        ("SELECT set_monitor_thresholds(%s, retrain_margin => -1)", [name], "22023", "retrain_margin"),
        ("SELECT set_monitor_thresholds(%s, min_holdout_rows => 0)", [name], "22023", "min_holdout_rows"),
        ("SELECT monitor(%s, %s, NULL, retrain => true)", [name, f"{name}_nofeat"], "42703", None),
        ("SELECT run_monitor(987654321)", [], "42704", "does not exist"),
        ("SELECT * FROM drift(NULL, %s)", [f"{name}_cur"], "22023", "project_name"),
        ("SELECT * FROM drift(%s, NULL)", [name], "22023", "relation"),
    ]
    for statement, params, sqlstate, text in cases:
        err = sql_error(conn, statement, params)
        assert err.sqlstate == sqlstate, (statement, err.sqlstate, err.diag.message_primary)
        assert text is None or text in err.diag.message_primary, err.diag.message_primary
        assert "Traceback" not in str(err)
    # a project with no deployed model
    conn.execute("SELECT import_onnx(%s, %s, ARRAY['f1'], 'regression', deploy => false)",
                 [name + "_nodeploy", _tiny_onnx()])
    err = sql_error(conn, "SELECT * FROM drift(%s, %s)", [name + "_nodeploy", f"{name}_cur"])
    assert err.sqlstate == "55000" and "no deployed model" in err.diag.message_primary
    # a model without a reference profile (imported), until set_reference gives it one
    mid = conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['f1'], 'regression')",
                       [name + "_imp", _tiny_onnx()]).fetchone()[0]
    err = sql_error(conn, "SELECT * FROM drift(%s, %s)", [name + "_imp", f"{name}_cur"])
    assert err.sqlstate == "55000" and "has no reference profile" in err.diag.message_primary
    assert "set_reference" in err.diag.message_hint
    err = sql_error(conn, "SELECT * FROM drift(%s, %s, model_id => %s)", [name, f"{name}_cur", mid])
    assert err.sqlstate == "22023" and "is not a version of project" in err.diag.message_primary
    assert conn.execute("SELECT set_reference(%s, %s)", [name + "_imp", f"{name}_train"]).fetchone()[0] == 1000
    assert {r[0] for r in conn.execute("SELECT feature FROM drift(%s, %s)", [name + "_imp", f"{name}_cur"])} == \
        {"f1", "(prediction)"}
    lineage = dict((r[0], r[1]) for r in conn.execute("SELECT item, value FROM model_lineage(%s)", [mid]))
    assert lineage["origin"] == "imported with import_onnx" and lineage["reference profile"] == "1 features"
    # nothing was written by the failures
    assert conn.execute("SELECT count(*) FROM pgmodels.drift_report").fetchone()[0] == 0


def _tiny_onnx() -> bytes:
    """y = 2 * f1 as an ONNX graph (float input n x 1, output n x 1)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["X", "two"], ["Y"])], "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])])
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _setup_retrain(conn, name, new_cut: float):
    """A deployed model trained on y = f1 + f2 > 0; then the training relation (a view of
    the labelled history, as in production) moves on to newer rows whose label follows
    y = f1 + f2 > new_cut, and the monitored window holds more such rows."""
    load(conn, f"{name}_old", 3000, seed=1)
    conn.execute(f"CREATE VIEW {name}_train AS SELECT * FROM {name}_old")
    train(conn, name, f"{name}_train")
    load(conn, f"{name}_new", 3000, seed=7, shift={"f1": 1.0}, label_cut=new_cut)
    conn.execute(f"CREATE OR REPLACE VIEW {name}_train AS SELECT * FROM {name}_new")
    load(conn, f"{name}_window", 2000, seed=8, shift={"f1": 1.0}, label_cut=new_cut, with_time=True)


def test_a_retrain_deploys_a_better_model_and_records_why(conn, connect, name):
    _setup_retrain(conn, name, new_cut=2.0)
    listener = connect()
    listener.execute("LISTEN pgmodels_drift")
    monitor_id = conn.execute("SELECT monitor(%s, %s, NULL, 'ts', retrain => true)",
                              [name, f"{name}_window"]).fetchone()[0]
    report_id = conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    report = conn.execute("SELECT status, drifted, retrain, model_version, rows, window_start, window_end "
                          "FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()
    assert report[0] == "drift" and "f1" in report[1] and report[3] == 1 and report[4] == 2000
    decision = report[2]
    assert decision["deployed"] is True and decision["new_version"] == 2, decision
    assert decision["new_score"] > decision["deployed_score"] and decision["metric"] == "f1"
    # judged on the newest quarter of the window's labelled rows (the deployed version's test_size)
    assert "f1" in decision["drifted"] and decision["holdout_rows"] == 500
    assert decision["holdout"] == "the newest 500 labelled rows of the window by ts"
    assert conn.execute("SELECT version FROM pgmodels.overview WHERE project = %s AND deployed",
                        [name]).fetchone()[0] == 2
    notes = list(listener.notifies(timeout=5, stop_after=1))
    assert json.loads(notes[0].payload) == {"project": name, "report_id": report_id, "status": "drift"}
    lineage = dict((r[0], r[1]) for r in conn.execute("SELECT item, value FROM model_lineage(%s)",
                                                       [decision["new_model_id"]]))
    assert lineage["origin"] == "retrained by a monitor"
    assert lineage["replaces model"] == str(decision["deployed_model_id"])
    assert lineage["after drift report"] == str(report_id)
    assert lineage["retrain decision"].startswith("deployed version 2")
    assert lineage["training relation"] == f"public.{name}_train" and lineage["training rows"] == "3000"
    events = [r[0] for r in conn.execute("SELECT event FROM pgmodels.history WHERE project = %s ORDER BY at, event",
                                         [name])]
    assert events[:2] == ["trained", "deployed"] and "retrain deployed" in events and "retrained" in events
    overview = conn.execute("SELECT retrain FROM pgmodels.overview WHERE project = %s AND version = 2",
                            [name]).fetchone()[0]
    assert overview["drift_report_id"] == report_id
    # the next run covers only rows after the last window: none yet
    assert conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0] is None


def test_a_retrain_keeps_the_deployed_model_when_the_new_one_is_not_better(conn, name):
    _setup_retrain(conn, name, new_cut=0.0)  # same relationship: the new model is no better
    conn.execute("SELECT set_monitor_thresholds(%s, retrain_margin => 0.05)", [name])
    monitor_id = conn.execute("SELECT monitor(%s, %s, NULL, retrain => true)", [name, f"{name}_window"]).fetchone()[0]
    report_id = conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    decision = conn.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
    assert decision["deployed"] is False and decision["new_version"] == 2
    assert "does not beat" in decision["reason"] and decision["margin"] == 0.05
    assert conn.execute("SELECT version FROM pgmodels.overview WHERE project = %s AND deployed",
                        [name]).fetchone()[0] == 1
    assert "retrain kept" in [r[0] for r in conn.execute("SELECT event FROM pgmodels.history WHERE project = %s",
                                                          [name])]
    # retrain_on => 'always': every report retrains, drift or not (a retrain on the monitor's own schedule)
    conn.execute(f"CREATE TABLE {name}_calm AS SELECT * FROM {name}_old LIMIT 500")
    calm = conn.execute("SELECT monitor(%s, %s, NULL, retrain => true)", [name, f"{name}_calm"]).fetchone()[0]
    report = conn.execute("SELECT run_monitor(%s)", [calm]).fetchone()[0]
    assert conn.execute("SELECT status, retrain FROM pgmodels.drift_reports WHERE id = %s", [report]).fetchone() == \
        ("ok", None)
    conn.execute("SELECT set_monitor_thresholds(%s, retrain_on => 'always')", [name])
    report = conn.execute("SELECT run_monitor(%s)", [calm]).fetchone()[0]
    assert conn.execute("SELECT retrain ->> 'new_version' FROM pgmodels.drift_reports WHERE id = %s",
                        [report]).fetchone()[0] == "3"
    err = sql_error(conn, "SELECT set_monitor_thresholds(%s, retrain_on => 'sometimes')", [name])
    assert err.sqlstate == "22023"


def test_a_failed_retrain_is_recorded_and_the_deployed_model_keeps_serving(conn, name):
    _setup_retrain(conn, name, new_cut=2.0)
    conn.execute(f"DROP VIEW {name}_train")  # the training relation is gone
    monitor_id = conn.execute("SELECT monitor(%s, %s, NULL, retrain => true)", [name, f"{name}_window"]).fetchone()[0]
    report_id = conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    decision = conn.execute("SELECT retrain FROM pgmodels.drift_reports WHERE id = %s", [report_id]).fetchone()[0]
    assert decision["deployed"] is False and decision["sqlstate"] == "42P01", decision
    assert "the retrain failed" in decision["reason"] and "new_model_id" not in decision
    assert conn.execute("SELECT count(*), bool_or(deployed AND version = 1) FROM pgmodels.overview WHERE project = %s",
                        [name]).fetchone() == (1, True)
    features = json.dumps({**{f: 0.1 for f in FEATURES}, "color": "red"})
    assert conn.execute("SELECT predict(%s, %s::jsonb)", [name, features]).fetchone()[0] in (0.0, 1.0)
    assert "retrain failed" in [r[0] for r in conn.execute("SELECT event FROM pgmodels.history WHERE project = %s",
                                                            [name])]


def test_lineage_after_training_records_the_rows_and_their_fingerprint(conn, name):
    load(conn, f"{name}_train", 1000, seed=1)
    first = train(conn, name, f"{name}_train")
    again = train(conn, name, f"{name}_train")
    conn.execute(f"UPDATE {name}_train SET f1 = f1 + 1e-9 WHERE ctid = (SELECT min(ctid) FROM {name}_train)")
    changed = train(conn, name, f"{name}_train")
    fp = {mid: dict(conn.execute("SELECT item, value FROM model_lineage(%s)", [mid]).fetchall())["fingerprint of the rows"]
          for mid in (first, again, changed)}
    assert fp[first] == fp[again] != fp[changed]
    rows = dict(conn.execute("SELECT item, value FROM model_lineage(%s)", [first]).fetchall())
    assert rows["training rows"] == "1000" and rows["split"].startswith("test_size 0.25")
    assert rows["trained by"] == "postgres" and rows["pgmodels version"] == __version__
    assert "library onnxruntime" in rows and "library xgboost" in rows
    # feature importances at training, per version: the label is f1 + f2 > 0
    ranked = [r[0] for r in conn.execute("SELECT item FROM model_lineage(%s) WHERE item LIKE 'importance %%'",
                                         [first])]
    assert len(ranked) == 9 and set(ranked[:2]) == {"importance f1", "importance f2"}
    # the stored profile: quantile bins, histogram, mean, std, min, max, null rate; the target's shares
    profile = conn.execute("SELECT training -> 'profile' FROM pgmodels.models WHERE id = %s", [first]).fetchone()[0]
    f1 = profile["features"]["f1"]
    assert {"edges", "shares", "mean", "std", "min", "max", "null_rate", "quantiles", "histogram"} <= set(f1)
    assert abs(f1["mean"]) < 0.1 and 0.9 < f1["std"] < 1.1 and len(f1["quantiles"]) == 101
    assert set(profile["features"]["color"]["shares"]) == {"red", "green", "blue"}
    assert set(profile["target"]["shares"]) == {"0", "1"}


def test_pg_dump_and_restore_keep_profiles_and_reports(conn, cluster, name):
    load(conn, f"{name}_train", 1000, seed=1)
    train(conn, name, f"{name}_train")
    load(conn, f"{name}_cur", 1000, seed=2, shift={"f2": 1.0})
    monitor_id = conn.execute("SELECT monitor(%s, %s, NULL)", [name, f"{name}_cur"]).fetchone()[0]
    conn.execute("SELECT run_monitor(%s)", [monitor_id])
    restored = name + "_restored"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {restored}")
    try:
        bindir = "/usr/lib/postgresql/15/bin"
        dump = subprocess.run([f"{bindir}/pg_dump", "-Fc", cluster.url(conn.info.dbname)], capture_output=True,
                              check=True)
        subprocess.run([f"{bindir}/pg_restore", "--no-owner", "-d", cluster.url(restored)], input=dump.stdout,
                       capture_output=True, check=True)
        with psycopg.connect(cluster.url(restored), autocommit=True) as c:
            q = ("SELECT r.features, r.status, m.training -> 'profile' FROM pgmodels.drift_reports r "
                 "JOIN pgmodels.models m ON m.id = r.model_id WHERE r.project = %s")
            assert c.execute(q, [name]).fetchall() == conn.execute(q, [name]).fetchall()
            assert c.execute("SELECT status FROM drift(%s, %s) WHERE feature = 'f2'",
                             [name, f"{name}_cur"]).fetchone()[0] == "drift"
            assert c.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0] > 0
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {restored} WITH (FORCE)")


@pytest.mark.parametrize("seed", [11])
def test_drift_matches_the_same_computation_outside_the_database(conn, name, seed):
    """The numbers drift() gives are scipy's and numpy's on the same rows."""
    import numpy as np
    from scipy import stats

    load(conn, f"{name}_train", 2000, seed=1)
    train(conn, name, f"{name}_train")
    load(conn, f"{name}_cur", 3000, seed=seed, shift={"f4": 0.25})
    profile = conn.execute("SELECT training -> 'profile' FROM pgmodels.models m JOIN pgmodels.projects p "
                           "ON p.id = m.project_id WHERE p.name = %s", [name]).fetchone()[0]
    values = np.array([r[0] for r in conn.execute(f"SELECT f4::real FROM {name}_cur")], dtype=np.float64)
    ref = profile["features"]["f4"]
    counts = np.bincount(np.searchsorted(ref["edges"], values, side="right"), minlength=len(ref["shares"]))
    e, a = np.clip(ref["shares"], 1e-4, None), np.clip(counts / len(values), 1e-4, None)
    e, a = e / e.sum(), a / a.sum()
    psi = float(np.sum((a - e) * np.log(a / e)))
    ks = stats.ks_1samp(values, lambda x: np.interp(x, ref["quantiles"], np.linspace(0, 1, 101), left=0, right=1))
    got = conn.execute("SELECT psi, ks_statistic, p_value FROM drift(%s, %s) WHERE feature = 'f4'",
                       [name, f"{name}_cur"]).fetchone()
    assert got[0] == pytest.approx(psi, rel=1e-9) and got[1] == pytest.approx(ks.statistic, rel=1e-6)
    assert got[2] == pytest.approx(ks.pvalue, rel=1e-6)
