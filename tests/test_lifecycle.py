"""train, deploy, predict, import and export: the model lifecycle from SQL."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from psycopg.types.json import Jsonb

from lifecycle_data import make_churn, make_numeric, make_regression


def train(conn, *args, **kw):
    kw = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in kw.items()}
    names = ", ".join([*["%s"] * len(args), *[f"{k} => %s" for k in kw]])
    row = conn.execute(f"SELECT project, task, algorithm, deployed, model_id, version, runtime, metrics "
                       f"FROM train({names})", [*args, *kw.values()]).fetchone()
    return dict(zip(("project", "task", "algorithm", "deployed", "model_id", "version", "runtime", "metrics"), row))


def test_train_stores_a_converted_versioned_model(conn, name):
    make_numeric(conn, name)
    first = train(conn, name, "classification", name, "y")
    assert (first["version"], first["algorithm"], first["runtime"], first["deployed"]) == (1, "linear", "onnx", True)
    for metric in ("f1", "precision", "recall", "accuracy", "mcc", "roc_auc", "log_loss", "fit_time", "score_time"):
        assert metric in first["metrics"], metric
    row = conn.execute("""SELECT m.feature_names, m.feature_types, m.labels, m.artifact_sha256 = sha256(m.artifact),
                                 m.training -> 'conversion' ->> 'converted', m.library_versions ? 'onnxruntime',
                                 m.trained_by
                          FROM pgmodels.models m WHERE m.id = %s""", [first["model_id"]]).fetchone()
    assert row[:3] == (["a", "b", "c", "d"], ["float"] * 4, [0, 1])
    assert row[3:] == (True, "true", True, "postgres")
    # omitted arguments reuse the previous training: same data, new algorithm
    second = train(conn, name, algorithm="xgboost", hyperparams={"n_estimators": 20})
    assert (second["version"], second["algorithm"], second["task"]) == (2, "xgboost", "classification")
    assert conn.execute("SELECT training ->> 'relation' FROM pgmodels.models WHERE id = %s",
                        [second["model_id"]]).fetchone()[0] == f"public.{name}"


def test_predict_accepts_every_feature_shape(conn, name):
    make_numeric(conn, name)
    m = train(conn, name, "classification", name, "y", algorithm="xgboost", hyperparams={"n_estimators": 30})
    expected = conn.execute(f"SELECT predict(%s, ARRAY[a, b, c, d]) FROM {name} WHERE a = 16 AND b = 10 LIMIT 1",
                            [name]).fetchone()[0]
    assert expected == 1.0
    for literal in ("ARRAY[16, 10, 3, 1]", "ARRAY[16.0, 10, 3, 1]", "ARRAY[16, 10, 3, 1]::bigint[]",
                    "ARRAY[16, 10, 3, 1]::smallint[]", "ARRAY[16, 10, 3, 1]::float8[]", "ARRAY[16, 10, 3, 1]::real[]",
                    "'{\"a\": 16, \"b\": 10, \"c\": 3, \"d\": 1}'::jsonb"):
        assert conn.execute(f"SELECT predict(%s, {literal})", [name]).fetchone()[0] == expected, literal
        assert conn.execute(f"SELECT predict(%s::bigint, {literal})", [m["model_id"]]).fetchone()[0] == expected
    assert conn.execute("SELECT predict(%s, ARRAY[true, false, true, false])", [name]).fetchone()[0] in (0.0, 1.0)
    # a composite row matches features by name, whatever else it carries
    by_row = conn.execute(f"SELECT count(*) FROM {name} t WHERE predict(%s, t) = predict(%s, ARRAY[a, b, c, d])",
                          [name, name]).fetchone()[0]
    assert by_row == 300
    proba = conn.execute("SELECT predict_proba(%s, ARRAY[16, 10, 3, 1])", [name]).fetchone()[0]
    assert len(proba) == 2 and abs(sum(proba) - 1) < 1e-5 and proba[1] > 0.5
    batch = conn.execute(f"SELECT array_agg(p) FROM predict_batch(%s, (SELECT array_agg(v) FROM "
                         f"(SELECT unnest(ARRAY[a, b, c, d]) v FROM {name} ORDER BY a, b, c, d) s)) p",
                         [name]).fetchone()[0]
    rowwise = conn.execute(f"SELECT array_agg(predict(%s, ARRAY[a, b, c, d]) ORDER BY a, b, c, d) FROM {name}",
                           [name]).fetchone()[0]
    assert len(batch) == 300
    assert sum(batch) == sum(rowwise)


def test_text_features_and_text_labels(conn, name):
    make_churn(conn, name)
    conn.execute(f"CREATE VIEW {name}_v AS SELECT tenure, monthly, calls, contract, "
                 f"CASE WHEN churned THEN 'leaves' ELSE 'stays' END AS outcome FROM {name}")
    m = train(conn, name, "classification", f"{name}_v", "outcome", algorithm="random_forest",
              hyperparams={"n_estimators": 20, "max_depth": 5})
    assert m["runtime"] in ("onnx", "skops")
    labels = conn.execute("SELECT labels FROM pgmodels.models WHERE id = %s", [m["model_id"]]).fetchone()[0]
    assert labels == ["leaves", "stays"]
    got = conn.execute(f"""SELECT predict_label(%s, v), predict(%s, v) FROM {name}_v v
                           WHERE tenure = 5 AND monthly > 90 LIMIT 1""", [name, name]).fetchone()
    assert got == ("leaves", 0.0)  # the label back, and its index from predict
    # a numeric array cannot carry a text feature
    err = pytest.raises(Exception, conn.execute, "SELECT predict(%s, ARRAY[1, 2, 3, 4])", [name]).value
    assert err.sqlstate == "42804"


def test_regression_and_preprocessing(conn, name):
    make_regression(conn, name)
    m = train(conn, name, "regression", name, "y", algorithm="ridge", hyperparams={"alpha": 0.0001},
              preprocess={"a": {"scale": "standard", "impute": "mean"}})
    assert m["metrics"]["r2"] > 0.999
    assert abs(conn.execute("SELECT predict(%s, ARRAY[2, 3])", [name]).fetchone()[0] - 1.0) < 0.01
    # a NULL goes to the configured imputation (mean of a), not an error
    assert conn.execute("SELECT predict(%s, ARRAY[NULL, 3]::real[])", [name]).fetchone()[0] is not None


def test_search_keeps_its_results(conn, name):
    make_numeric(conn, name)
    m = train(conn, name, "classification", name, "y", algorithm="xgboost", search="grid",
              search_params={"max_depth": [2, 3], "n_estimators": [5, 10]}, search_args={"cv": 2})
    results = conn.execute("SELECT search_results, hyperparams FROM pgmodels.models WHERE id = %s",
                           [m["model_id"]]).fetchone()
    assert len(results[0]["params"]) == 4
    assert results[0]["best_params"]["max_depth"] == results[1]["max_depth"]


def test_deploy_strategies_and_history(conn, name):
    make_numeric(conn, name)
    linear = train(conn, name, "classification", name, "y")
    xgb = train(conn, name, algorithm="xgboost", hyperparams={"n_estimators": 30})
    worse = train(conn, name, algorithm="xgboost", hyperparams={"n_estimators": 1, "max_depth": 1},
                  automatic_deploy=False)
    assert not worse["deployed"]

    def deployed():
        return conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s AND deployed",
                            [name]).fetchone()[0]

    conn.execute("SELECT * FROM deploy(%s, 'most_recent')", [name])
    assert deployed() == worse["model_id"]
    conn.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
    assert deployed() == (xgb["model_id"] if xgb["deployed"] else linear["model_id"])
    best = conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s "
                        "ORDER BY key_metric DESC, model_id DESC LIMIT 1", [name]).fetchone()[0]
    conn.execute("SELECT * FROM deploy(%s, 'best_score')", [name])
    assert deployed() == best
    conn.execute("SELECT * FROM deploy(%s, 'best_score', 'linear')", [name])
    assert deployed() == linear["model_id"]
    conn.execute("SELECT * FROM deploy(%s::bigint)", [worse["model_id"]])
    assert deployed() == worse["model_id"]
    history = conn.execute("SELECT strategy FROM pgmodels.deployments d JOIN pgmodels.projects p "
                           "ON p.id = d.project_id WHERE p.name = %s ORDER BY d.id", [name]).fetchall()
    assert [h[0] for h in history][-5:] == ["most_recent", "rollback", "best_score", "best_score", "model_id"]


def test_export_is_the_served_artifact_and_import_round_trips(conn, name):
    make_numeric(conn, name)
    train(conn, name, "classification", name, "y", algorithm="xgboost", hyperparams={"n_estimators": 20})
    artifact = bytes(conn.execute("SELECT export_onnx(%s)", [name]).fetchone()[0])
    served_sha = conn.execute("SELECT artifact_sha256 FROM pgmodels.models m JOIN pgmodels.overview o "
                              "ON o.model_id = m.id WHERE o.project = %s AND o.deployed", [name]).fetchone()[0]
    import hashlib
    assert hashlib.sha256(artifact).digest() == bytes(served_sha)
    # the edge: the exported artifact gives the database's answers without the database
    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    rows = conn.execute(f"SELECT ARRAY[a, b, c, d], predict(%s, ARRAY[a, b, c, d]) FROM {name}", [name]).fetchall()
    X = np.array([r[0] for r in rows], dtype=np.float32)
    labels = session.run(["label"], {"X": X})[0]
    assert [float(x) for x in labels] == [r[1] for r in rows]
    # import it as another project: same predictions
    imported = conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b', 'c', 'd'], 'classification', '[0, 1]')",
                            [name + "_imp", artifact]).fetchone()
    assert imported[2:] != (None, None) and imported[4] is True
    same = conn.execute(f"SELECT count(*) FROM {name} WHERE predict(%s, ARRAY[a, b, c, d]) = predict(%s, ARRAY[a, b, c, d])",
                        [name, name + "_imp"]).fetchone()[0]
    assert same == 300


def test_overview_shows_every_version(conn, name):
    make_numeric(conn, name)
    train(conn, name, "classification", name, "y")
    train(conn, name, algorithm="ridge")
    rows = conn.execute("SELECT version, algorithm, deployed, trained_by, artifact_bytes > 0, key_metric IS NOT NULL "
                        "FROM pgmodels.overview WHERE project = %s ORDER BY version", [name]).fetchall()
    assert [r[:2] for r in rows] == [(1, "linear"), (2, "ridge")]
    assert sum(r[2] for r in rows) == 1
    assert all(r[3] == "postgres" and r[4] and r[5] for r in rows)
