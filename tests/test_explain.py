"""Explanations in the database: the explainer record train() stores with a version, its
global importance, explain_prediction() and explain_batch(), and who may use them."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from dbhelpers import sql_error

FEATURES = "tenure, charges, calls, contract"


def _table(conn, name: str, rows: int = 600, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 25, rows).round(2)
    calls = rng.poisson(1.5, rows)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows)
    logit = (contract == "month-to-month") * 1.4 - tenure / 25 + (charges - 70) / 30 + calls * 0.4
    churned = (logit + rng.normal(scale=0.6, size=rows)) > 0
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, tenure int, charges float8, calls int, "
                 "contract text, churned boolean)")
    with conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
        for i in range(rows):
            copy.write_row((i + 1, int(tenure[i]), float(charges[i]), int(calls[i]), str(contract[i]),
                            bool(churned[i])))


def _train(conn, project: str, relation: str, algorithm: str, **kw) -> int:
    args = ", ".join(f"{k} => %s" for k in kw)
    row = conn.execute(f"SELECT model_id FROM train(%s, 'classification', %s, 'churned', algorithm => %s"
                       f"{', ' + args if args else ''})", [project, relation, algorithm, *kw.values()]).fetchone()
    return row[0]


@pytest.fixture
def churn(conn, name):
    """A churn table and an XGBoost project on it (contract one-hot encoded)."""
    _table(conn, name)
    model_id = _train(conn, name, name, "xgboost", hyperparams='{"n_estimators": 30, "max_depth": 4}',
                      preprocess='{"contract": {"encode": "one_hot"}}')
    return {"project": name, "table": name, "model_id": model_id}


def test_training_stores_an_exact_tree_explainer_with_its_importance(conn, churn):
    row = conn.execute("SELECT kind, exact, method, output, importance, importance_rows, source "
                       "FROM pgmodels.explainers WHERE model_id = %s", [churn["model_id"]]).fetchone()
    kind, exact, method, output, importance, rows, source = row
    assert (kind, exact, output, source) == ("tree", True, "margin", "training")
    assert "TreeSHAP" in method and rows == 200
    # per feature the user gave: contract's one-hot columns summed back into contract
    assert set(importance) == {"id", "tenure", "charges", "calls", "contract"}
    assert importance["contract"] > 0 and importance["tenure"] > importance["id"] * 0.1
    info = conn.execute("SELECT training -> 'explainer' FROM pgmodels.models WHERE id = %s",
                        [churn["model_id"]]).fetchone()[0]
    assert info["kind"] == "tree" and info["additivity_error"] < 1e-6 and "importance" not in info


def test_the_record_is_plain_arrays_checked_by_sha256(conn, churn):
    record, digest = conn.execute("SELECT record, record_sha256 FROM pgmodels.model_explainers WHERE model_id = %s",
                                  [churn["model_id"]]).fetchone()
    assert hashlib.sha256(record).digest() == bytes(digest)
    with np.load(io.BytesIO(record), allow_pickle=False) as z:   # no pickle needed to read it
        assert {"meta", "left", "right", "threshold", "cover", "value"} <= set(z.files)
        meta = json.loads(z["meta"].tobytes())
    assert meta["kind"] == "tree" and meta["feature_names"] == ["id", "tenure", "charges", "calls", "contract"]


@pytest.mark.parametrize("algorithm,kind,output", [("linear", "linear", "margin"), ("svm", "sampling", "probability"),
                                                   ("random_forest", "tree", "probability")])
def test_each_kind_of_model_gets_its_explainer(conn, name, algorithm, kind, output):
    _table(conn, name, rows=300)
    model_id = _train(conn, name, name, algorithm, hyperparams='{"n_estimators": 10, "max_depth": 5}'
                      if algorithm == "random_forest" else '{}')
    got = conn.execute("SELECT kind, exact, output, method FROM pgmodels.explainers WHERE model_id = %s",
                       [model_id]).fetchone()
    assert got[:3] == (kind, kind != "sampling", output)
    if kind == "sampling":
        assert "16 background rows x 8 feature orders" in got[3] and "seed 0" in got[3]


def test_a_direct_store_call_has_nothing_to_store(make_role, churn):
    _, attacker = make_role("explain_storer")
    err = sql_error(attacker, "SELECT pgmodels._store_explainer(%s)", ["0" * 64])
    assert err.sqlstate == "42501"
    err = sql_error(attacker, "SELECT * FROM pgmodels._take_staged_explainer(%s)", ["0" * 64])
    assert err.sqlstate == "42501"   # not PUBLIC's
    err = sql_error(attacker, "SELECT * FROM pgmodels.model_explainers")
    assert err.sqlstate == "42501"


def test_explainers_view_shows_only_projects_the_role_may_use(conn, make_role, churn):
    role, other = make_role("explain_viewer")
    assert other.execute("SELECT count(*) FROM pgmodels.explainers WHERE project = %s",
                         [churn["project"]]).fetchone()[0] == 0
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [churn["project"], role])
    assert other.execute("SELECT kind FROM pgmodels.explainers WHERE project = %s",
                         [churn["project"]]).fetchone()[0] == "tree"
