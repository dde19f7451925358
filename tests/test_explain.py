"""Explanations in the database: the explainer record train() stores with a version, its
global importance, explain_prediction() and explain_batch(), and who may use them."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from dbhelpers import sql_error
from explainhelpers import churn_table as _table, train as _train


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
    assert info["kind"] == "tree" and info["additivity_error"] < 1e-4 and "importance" not in info


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
        assert "16 background training rows x 8 feature orders" in got[3] and "seed 0" in got[3]


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


# -- explain_prediction and explain_batch ------------------------------------------------------

def _explain(conn, sql: str, params) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def test_contributions_and_base_add_up_to_the_log_odds(conn, churn):
    p, t = churn["project"], churn["table"]
    for key in (1, 17, 300):
        rows = _explain(conn, f"SELECT * FROM explain_prediction(%s, (SELECT c FROM {t} c WHERE id = %s))", [p, key])
        assert rows[0][0] == "(base)" and 'log-odds of "true"' in rows[0][1] and "exact" in rows[0][1]
        # the features the user gave, each once (contract's one-hot columns summed back), by |contribution|
        assert sorted(r[0] for r in rows[1:]) == sorted(["id", "tenure", "charges", "calls", "contract"])
        assert [abs(r[2]) for r in rows[1:]] == sorted((abs(r[2]) for r in rows[1:]), reverse=True)
        prob = conn.execute(f"SELECT (predict_proba(%s, c))[2] FROM {t} c WHERE id = %s", [p, key]).fetchone()[0]
        assert sum(r[2] for r in rows) == pytest.approx(_logit(prob), abs=1e-4)
        value = dict((r[0], r[1]) for r in rows[1:])
        row = conn.execute(f"SELECT tenure, contract FROM {t} WHERE id = %s", [key]).fetchone()
        assert value["tenure"] == str(row[0]) and value["contract"] == row[1]


def test_every_form_of_features_gives_the_same_answer(conn, churn):
    p, t = churn["project"], churn["table"]
    key = 42
    by_row = _explain(conn, f"SELECT * FROM explain_prediction(%s, (SELECT c FROM {t} c WHERE id = %s))", [p, key])
    doc = conn.execute(f"SELECT to_jsonb(c) - 'churned' FROM {t} c WHERE id = %s", [key]).fetchone()[0]
    by_json = _explain(conn, "SELECT * FROM explain_prediction(%s, %s::jsonb)", [p, json.dumps(doc)])
    by_id = _explain(conn, "SELECT * FROM explain_prediction(%s::bigint, %s::jsonb)", [churn["model_id"], json.dumps(doc)])
    anonymous = _explain(conn, f"SELECT e.* FROM {t} c, explain_prediction(%s, ROW(c.id, c.tenure, c.charges, c.calls, "
                               "c.contract)) e WHERE c.id = %s", [p, key])
    for other in (by_json, by_id, anonymous):
        assert [(f, v) for f, v, _ in other] == [(f, v) for f, v, _ in by_row]
        assert [c for _, _, c in other] == pytest.approx([c for _, _, c in by_row], abs=1e-9)


def test_explain_batch_equals_one_row_at_a_time(conn, churn):
    p, t = churn["project"], churn["table"]
    batch = _explain(conn, f"SELECT * FROM explain_batch(%s, (SELECT array_agg(c ORDER BY id) FROM {t} c "
                           "WHERE id <= 5), top_n => 3)", [p])
    assert [r[0] for r in batch] == [k for k in range(1, 6) for _ in range(5)]   # base, 3 features, (other)
    for key in range(1, 6):
        one = _explain(conn, f"SELECT * FROM explain_prediction(%s, (SELECT c FROM {t} c WHERE id = %s), top_n => 3)",
                       [p, key])
        mine = [r[1:] for r in batch if r[0] == key]
        assert [r[:2] for r in mine] == [r[:2] for r in one] and mine[-1][0] == "(other)"
        assert [r[2] for r in mine] == pytest.approx([r[2] for r in one], abs=1e-9)


def test_numeric_model_arrays_and_real_batches(conn, name):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 3))
    y = 2 * X[:, 0] - X[:, 1] + 0.5 * X[:, 0] * X[:, 2]
    conn.execute(f"CREATE TABLE {name} (a float8, b float8, c float8, y float8)")
    with conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
        for row, target in zip(X.tolist(), y.tolist()):
            copy.write_row((*row, target))
    conn.execute(f"SELECT * FROM train(%s, 'regression', %s, 'y', algorithm => 'lightgbm', "
                 "hyperparams => '{\"n_estimators\": 20}')", [name, name])
    x = [0.5, -1.0, 2.0]
    rows = _explain(conn, "SELECT * FROM explain_prediction(%s, %s::real[])", [name, x])
    value = conn.execute("SELECT predict(%s, %s::real[])", [name, x]).fetchone()[0]
    assert rows[0][1].startswith("the predicted value") and sum(r[2] for r in rows) == pytest.approx(value, abs=1e-4)
    for form in ("%s::float8[]", "%s::numeric[]"):
        again = _explain(conn, f"SELECT * FROM explain_prediction(%s, {form})", [name, x])
        assert [r[2] for r in again] == pytest.approx([r[2] for r in rows], abs=1e-6)
    flat = _explain(conn, "SELECT * FROM explain_batch(%s, %s::real[])", [name, x + [1.0, 1.0, 1.0]])
    assert [r[0] for r in flat] == [1] * 4 + [2] * 4
    assert [r[3] for r in flat[:4]] == pytest.approx([r[2] for r in rows], abs=1e-6)
    err = sql_error(conn, "SELECT * FROM explain_prediction(%s, %s::real[], class => 'x')", [name, x])
    assert err.sqlstate == "22023" and "no classes" in err.diag.message_primary


def test_multiclass_explains_the_predicted_class_and_any_other(conn, name):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(450, 2))
    label = np.where(X[:, 0] > 0.5, "high", np.where(X[:, 0] < -0.5, "low", "mid"))
    conn.execute(f"CREATE TABLE {name} (a float8, b float8, label text)")
    with conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
        for row, target in zip(X.tolist(), label.tolist()):
            copy.write_row((*row, target))
    conn.execute(f"SELECT * FROM train(%s, 'classification', %s, 'label', algorithm => 'xgboost', "
                 "hyperparams => '{\"n_estimators\": 15, \"max_depth\": 3}')", [name, name])
    x = [1.2, 0.0]
    predicted = conn.execute("SELECT predict_label(%s, %s::real[])", [name, x]).fetchone()[0]
    proba = conn.execute("SELECT predict_proba(%s, %s::real[])", [name, x]).fetchone()[0]
    default = _explain(conn, "SELECT * FROM explain_prediction(%s, %s::real[])", [name, x])
    assert f'margin of "{predicted}"' in default[0][1]
    margins = []
    for cls in ("high", "low", "mid"):        # the labels' sorted order, predict_proba's too
        rows = _explain(conn, "SELECT * FROM explain_prediction(%s, %s::real[], class => %s)", [name, x, cls])
        assert f'margin of "{cls}"' in rows[0][1]
        margins.append(sum(r[2] for r in rows))
    softmax = np.exp(margins) / np.exp(margins).sum()
    np.testing.assert_allclose(softmax, proba, atol=1e-4)


def test_sampling_estimate_is_marked_approximate_and_adds_up(conn, name):
    _table(conn, name, rows=300)
    _train(conn, name, name, "svm")
    rows = _explain(conn, f"SELECT * FROM explain_prediction(%s, (SELECT c FROM {name} c WHERE id = 3))", [name])
    assert "approximate: permutation sampling" in rows[0][1] and "standard error up to" in rows[0][1]
    prob = conn.execute(f"SELECT (predict_proba(%s, c))[2] FROM {name} c WHERE id = 3", [name]).fetchone()[0]
    assert sum(r[2] for r in rows) == pytest.approx(prob, abs=1e-5)
    again = _explain(conn, f"SELECT * FROM explain_prediction(%s, (SELECT c FROM {name} c WHERE id = 3))", [name])
    assert again == rows        # seeded: the same row gets the same answer
