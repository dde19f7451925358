"""Splits, searches and the errors bad data or settings must raise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from training_helpers import float_columns, make_spec

from pgmodels.errors import PgmodelsError
from pgmodels.training import split
from pgmodels.training.fit import Column, train_model


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=80, n_features=3, n_informative=2, n_redundant=0,
                               random_state=2)
    return float_columns(X), Column("y", "float", [int(v) for v in y])


def _error(spec, features, target) -> PgmodelsError:
    with pytest.raises(PgmodelsError) as info:
        train_model(spec, features, target)
    return info.value


# -- split ---------------------------------------------------------------------------

def test_test_size_above_one_is_a_row_count():
    train, test, _ = split.split_rows(50, 7, "random", None)
    assert len(test) == 7 and len(train) == 43
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(50))


def test_fraction_rounds_up():
    assert split.count_test_rows(10, 0.25) == 3


def test_last_sampling_takes_the_final_rows():
    train, test, _ = split.split_rows(20, 5, "last", None)
    assert test.tolist() == [15, 16, 17, 18, 19] and train.tolist() == list(range(15))


def test_random_sampling_is_shuffled_and_repeatable():
    a = split.split_rows(100, 0.2, "random", None)[1]
    assert a.tolist() == split.split_rows(100, 0.2, "random", None)[1].tolist()
    assert a.tolist() != list(range(80, 100))


def test_stratified_keeps_class_shares():
    classes = np.array([0] * 80 + [1] * 20)
    _, test, note = split.split_rows(100, 0.2, "stratified", classes)
    assert note is None and int(classes[test].sum()) == 4


def test_stratified_falls_back_to_random_for_a_singleton_class():
    classes = np.array([0] * 30 + [1] * 29 + [2])
    train, test, note = split.split_rows(60, 0.25, "stratified", classes)
    assert len(test) == 15 and "random" in note


@pytest.mark.parametrize("test_size", [0, -1, 1.0, 80, 200, 2.5, "x", float("nan")])
def test_impossible_test_sizes(data, test_size):
    features, target = data
    e = _error(make_spec(test_size=test_size), features, target)
    assert e.sqlstate == "22023" and "test_size" in e.message


def test_model_records_test_size_row_count_and_last(data):
    features, target = data
    model = train_model(make_spec(test_size=10, test_sampling="last"), features, target)
    assert model.notes == []
    # Rebuild the metric by hand from the last 10 rows: they must be the ones scored.
    from sklearn.linear_model import LogisticRegression
    X = np.array([c.values for c in features], dtype=np.float32).T.astype(np.float64)
    y = np.array(target.values)
    reference = LogisticRegression(random_state=0).fit(X[:70], y[:70])
    assert model.metrics["accuracy"] == pytest.approx(reference.score(X[70:], y[70:]))


def test_invalid_test_sampling(data):
    features, target = data
    e = _error(make_spec(test_sampling="first"), features, target)
    assert e.sqlstate == "22023" and "last" in e.hint


# -- target and feature values -------------------------------------------------------

def test_one_class_target(data):
    features, _ = data
    e = _error(make_spec(), features, Column("y", "text", ["a"] * 80))
    assert e.sqlstate == "22000" and "only one class" in e.message


def test_null_target(data):
    features, target = data
    values = list(target.values)
    values[3] = None
    e = _error(make_spec(), features, Column("y", "float", values))
    assert e.sqlstate == "22004" and '"y"' in e.message


def test_null_feature_without_impute(data):
    features, target = data
    broken = [Column(c.name, c.kind, list(c.values)) for c in features]
    broken[1].values[0] = None
    e = _error(make_spec(), broken, target)
    assert e.sqlstate == "22004" and '"f1"' in e.message and "impute" in e.hint


def test_null_text_feature_without_impute(data):
    features, target = data
    text = Column("t", "text", ["a", "b"] * 39 + [None, "a"])
    e = _error(make_spec(), features + [text], target)
    assert e.sqlstate == "22004" and '"t"' in e.message


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_feature(data, bad):
    features, target = data
    broken = [Column(c.name, c.kind, list(c.values)) for c in features]
    broken[0].values[5] = bad
    e = _error(make_spec(), broken, target)
    assert e.sqlstate == "22023" and "NaN or infinity" in e.message


def test_regression_on_text_target(data):
    features, _ = data
    e = _error(make_spec("regression"), features, Column("y", "text", ["a", "b"] * 40))
    assert e.sqlstate == "42804"


def test_too_few_rows():
    e = _error(make_spec("regression"), [Column("a", "float", [1.0])], Column("y", "float", [2.0]))
    assert e.sqlstate == "22000"


@pytest.mark.parametrize("preprocess,needle", [
    ({"nope": {"impute": "mean"}}, "nope"),
    ({"f0": {"impute": "average"}}, "average"),
    ({"f0": {"scale": "huge"}}, "huge"),
    ({"f0": {"colour": "red"}}, "colour"),
    ({"f0": {"encode": "one_hot"}}, "one_hot"),
    ({"f0": "mean"}, "f0"),
])
def test_invalid_preprocess(data, preprocess, needle):
    features, target = data
    e = _error(make_spec(preprocess=preprocess), features, target)
    assert e.sqlstate in ("22023", "0A000") and needle in e.message


def test_text_column_refuses_numeric_imputation(data):
    features, target = data
    text = Column("t", "text", ["a", "b"] * 40)
    e = _error(make_spec(preprocess={"t": {"impute": "mean"}}), features + [text], target)
    assert e.sqlstate == "22023" and "mode" in e.hint


def test_text_mode_imputation(data):
    features, target = data
    text = Column("t", "text", ["a", "b", "a", None] * 20)
    model = train_model(make_spec(preprocess={"t": {"impute": "mode"}}), features + [text], target)
    assert model.runtime == "onnx" and model.feature_types[-1] == "text"


# -- search --------------------------------------------------------------------------

def test_grid_search_tries_every_combination(data):
    features, target = data
    spec = make_spec("classification", "random_forest", hyperparams={"n_estimators": 5},
                     search="grid", search_params={"max_depth": [1, 3], "min_samples_leaf": [1, 4]},
                     search_args={"cv": 2})
    model = train_model(spec, features, target)
    results = model.search_results
    json.dumps(results)  # stored as jsonb
    assert len(results["params"]) == 4 == len(results["mean_test_score"])
    assert {tuple(sorted(p.items())) for p in results["params"]} == {
        (("max_depth", d), ("min_samples_leaf", m)) for d in (1, 3) for m in (1, 4)}
    best = results["params"][results["rank_test_score"].index(1)]
    assert results["best_params"] == best
    assert results["best_score"] == pytest.approx(max(results["mean_test_score"]))
    assert model.hyperparams["max_depth"] == best["max_depth"]
    assert model.hyperparams["n_estimators"] == 5


def test_random_search_samples_n_iter(data):
    features, target = data
    spec = make_spec("classification", "linear", search="random",
                     search_params={"C": [0.01, 0.1, 1.0, 10.0, 100.0]},
                     search_args={"n_iter": 3, "cv": 2})
    model = train_model(spec, features, target)
    assert len(model.search_results["params"]) == 3
    assert model.hyperparams["C"] == model.search_results["best_params"]["C"]


def test_regression_search_scores_r2(data):
    features, _ = data
    target = Column("y", "float", [sum(c.values[i] for c in features) for i in range(80)])
    spec = make_spec("regression", "ridge", search="grid", search_params={"alpha": [0.01, 100.0]})
    model = train_model(spec, features, target)
    assert model.search_results["best_params"] == {"alpha": 0.01}
    assert model.search_results["best_score"] > 0.9


@pytest.mark.parametrize("kw,needle", [
    ({"search": "bayes", "search_params": {"C": [1]}}, "bayes"),
    ({"search": "grid", "search_params": {}}, "search_params"),
    ({"search": "grid", "search_params": {"depth": [1]}}, "depth"),
    ({"search": "grid", "search_params": {"C": 1}}, "C"),
    ({"search": "grid", "search_params": {"C": [1]}, "search_args": {"folds": 3}}, "folds"),
    ({"search": "grid", "search_params": {"C": [1]}, "search_args": {"cv": 1}}, "cv"),
])
def test_invalid_search_settings(data, kw, needle):
    features, target = data
    e = _error(make_spec(**kw), features, target)
    assert e.sqlstate == "22023" and needle in e.message


def test_bad_value_inside_search(data):
    features, target = data
    spec = make_spec("classification", "random_forest", search="grid",
                     search_params={"max_depth": [-1]})
    e = _error(spec, features, target)
    assert e.sqlstate == "22023" and "max_depth" in e.message and e.detail.endswith(".")


def test_metrics_and_versions_are_json(data):
    features, target = data
    model = train_model(make_spec(), features, target)
    json.dumps(model.metrics, allow_nan=False)
    json.dumps(model.hyperparams, allow_nan=False)
    assert all(type(v) is float or v is None for v in model.metrics.values())
    assert set(model.metrics) >= {"f1", "precision", "recall", "accuracy", "mcc", "roc_auc",
                                  "log_loss", "fit_time", "score_time"}
    assert model.library_versions["sklearn"] and model.library_versions["onnxruntime"]
