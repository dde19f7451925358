"""Every algorithm trains for each task it supports, and bad names fail cleanly."""

from __future__ import annotations


import numpy as np
import pytest
from training_helpers import float_columns, make_spec, onnx_run

from pgmodels.errors import PgmodelsError
from pgmodels.training import algorithms, split
from pgmodels.training.fit import Column, train_model
from pgmodels.training.native import load_native

CASES = [(task, name) for task in algorithms.TASKS for name in algorithms.algorithm_names(task)]


@pytest.fixture(scope="module")
def tiny():
    from sklearn.datasets import make_classification, make_regression

    Xc, yc = make_classification(n_samples=60, n_features=4, n_informative=3, n_redundant=0,
                                 random_state=0)
    Xr, yr = make_regression(n_samples=60, n_features=4, noise=1.0, random_state=0)
    return {"classification": (Xc, yc), "regression": (Xr, yr)}


def test_catalogue_has_every_pgml_name():
    assert len(algorithms.algorithm_names()) == 31  # with lightgbm and catboost (0.2.0)
    assert "perceptron" not in algorithms.algorithm_names("regression")
    assert "lasso" not in algorithms.algorithm_names("classification")
    assert len(CASES) == 49


@pytest.mark.parametrize("task,algorithm", CASES)
def test_algorithm_trains_and_is_servable(tiny, task, algorithm):
    X, y = tiny[task]
    spec = make_spec(task, algorithm, test_sampling="stratified")
    model = train_model(spec, float_columns(X), Column("y", "float", y.tolist()))  # skops is a dependency
    assert model.runtime in ("onnx", "xgboost-ubj", "skops")
    assert model.conversion["converted"] is (model.runtime == "onnx")
    key = "accuracy" if task == "classification" else "r2"
    assert isinstance(model.metrics[key], float)
    assert isinstance(model.hyperparams, dict) and model.hyperparams
    if "random_state" in model.hyperparams:
        assert model.hyperparams["random_state"] == 0

    _, test, _ = split.split_rows(len(y), 0.25, "stratified", y if task == "classification" else None)
    X_test = X[test].astype(np.float32)
    if model.runtime == "onnx":
        out = onnx_run(model.artifact, {"X": X_test})
        predicted = out["label"] if task == "classification" else out["value"].reshape(-1)
    else:
        predicted = load_native(model.runtime, model.artifact).predict(X_test.astype(np.float64))
    # The served model reproduces the metric computed natively at training time.
    if task == "classification":
        assert np.mean(predicted == y[test]) == pytest.approx(model.metrics["accuracy"])
    else:
        mae = float(np.mean(np.abs(np.asarray(predicted, dtype=np.float64) - y[test])))
        assert mae == pytest.approx(model.metrics["mean_absolute_error"], rel=1e-3, abs=1e-3)


def _error(*args) -> PgmodelsError:
    with pytest.raises(PgmodelsError) as info:
        train_model(*args)
    return info.value


def test_regression_only_algorithm_for_classification(tiny):
    X, y = tiny["classification"]
    e = _error(make_spec("classification", "lasso"), float_columns(X), Column("y", "float", list(y)))
    assert e.sqlstate == "22023"
    assert "lasso" in e.message and "classification" in e.message
    assert "xgboost" in e.hint and "elastic_net" not in e.hint


def test_classification_only_algorithm_for_regression(tiny):
    X, y = tiny["regression"]
    e = _error(make_spec("regression", "perceptron"), float_columns(X), Column("y", "float", list(y)))
    assert e.sqlstate == "22023" and "perceptron" in e.message and "lasso" in e.hint


def test_unknown_algorithm(tiny):
    X, y = tiny["regression"]
    e = _error(make_spec("regression", "deep_magic"), float_columns(X), Column("y", "float", list(y)))
    assert e.sqlstate == "22023" and "deep_magic" in e.message and "random_forest" in e.hint


def test_unknown_task(tiny):
    X, y = tiny["regression"]
    e = _error(make_spec("clustering", "linear"), float_columns(X), Column("y", "float", list(y)))
    assert e.sqlstate == "22023" and "clustering" in e.message


def test_unknown_hyperparameter_lists_valid_ones(tiny):
    X, y = tiny["classification"]
    spec = make_spec("classification", "random_forest", hyperparams={"depth": 3})
    e = _error(spec, float_columns(X), Column("y", "float", list(y)))
    assert e.sqlstate == "22023" and '"depth"' in e.message and "max_depth" in e.detail


@pytest.mark.parametrize("algorithm,hyperparams", [
    ("random_forest", {"n_estimators": -3}),
    ("linear", {"C": "lots"}),
    ("xgboost", {"max_depth": "deep"}),
])
def test_bad_hyperparameter_value(tiny, algorithm, hyperparams):
    X, y = tiny["classification"]
    spec = make_spec("classification", algorithm, hyperparams=hyperparams)
    e = _error(spec, float_columns(X), Column("y", "float", list(y)))
    assert e.sqlstate == "22023" and f"\"{next(iter(hyperparams))}\"" in e.message
    assert e.detail and e.detail.endswith(".")


def test_user_hyperparameters_win_over_defaults(tiny):
    X, y = tiny["classification"]
    spec = make_spec("classification", "random_forest",
                     hyperparams={"n_estimators": 7, "random_state": 5})
    model = train_model(spec, float_columns(X), Column("y", "float", list(y)))
    assert model.hyperparams["n_estimators"] == 7 and model.hyperparams["random_state"] == 5


def test_svc_gets_probabilities(tiny):
    X, y = tiny["classification"]
    model = train_model(make_spec("classification", "svm"), float_columns(X),
                        Column("y", "float", list(y)))
    assert model.hyperparams["probability"] is True
    assert model.metrics["log_loss"] is not None


def test_classifier_without_proba_has_no_probabilities_output(tiny):
    X, y = tiny["classification"]
    model = train_model(make_spec("classification", "ridge"), float_columns(X),
                        Column("y", "float", list(y)))
    assert model.runtime == "onnx"
    out = onnx_run(model.artifact, {"X": X.astype(np.float32)})
    assert set(out) == {"label"}
    assert model.metrics["log_loss"] is None and model.metrics["roc_auc"] is not None
