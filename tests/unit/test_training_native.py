"""The native fallback: XGBoost UBJ and skops artifacts load back and predict the same,
and the loader refuses what it cannot trust."""

from __future__ import annotations

import numpy as np
import pytest
from training_helpers import float_columns, make_spec

from pgmodels.errors import PgmodelsError
from pgmodels.training import convert, split
from pgmodels.training.fit import Column, train_model
from pgmodels.training.native import load_native

NO_SKOPS = "skops is not installed; the skops fallback is untested"


@pytest.fixture(scope="module")
def three_classes():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=90, n_features=4, n_informative=3, n_redundant=0,
                               n_classes=3, random_state=4)
    return X.astype(np.float32).astype(np.float64), y


def _fit(estimator, X, y, preprocessor=None):
    from sklearn.pipeline import Pipeline

    steps = [("preprocess", preprocessor)] if preprocessor is not None else []
    return Pipeline(steps + [("model", estimator)]).fit(X, y)


def _break_conversion(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("no converter for this test")
    monkeypatch.setattr(convert, "to_onnx", refuse)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_bare_xgboost_falls_back_to_ubj(monkeypatch, three_classes, task):
    import xgboost

    X, y = three_classes
    estimator = xgboost.XGBClassifier(n_estimators=5) if task == "classification" \
        else xgboost.XGBRegressor(n_estimators=5)
    pipeline = _fit(estimator, X, y if task == "classification" else y * 1.5)
    _break_conversion(monkeypatch)
    artifact, runtime, record = convert.serialize(pipeline, task, list("abcd"), ["float"] * 4, X, 1.0)
    assert runtime == "xgboost-ubj" and record["converted"] is False
    assert "no converter for this test" in record["reason"]
    loaded = load_native(runtime, artifact)
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))
    if task == "classification":
        np.testing.assert_allclose(loaded.predict_proba(X), pipeline.predict_proba(X), atol=1e-6)


def test_binary_ubj_probabilities(monkeypatch, three_classes):
    import xgboost

    X, y = three_classes
    pipeline = _fit(xgboost.XGBClassifier(n_estimators=5), X, (y == 2).astype(int))
    _break_conversion(monkeypatch)
    artifact, runtime, _ = convert.serialize(pipeline, "classification", list("abcd"),
                                             ["float"] * 4, X, 1.0)
    loaded = load_native(runtime, artifact)
    assert loaded.predict_proba(X).shape == (90, 2)
    np.testing.assert_allclose(loaded.predict_proba(X), pipeline.predict_proba(X), atol=1e-6)
    np.testing.assert_array_equal(loaded.predict(X), pipeline.predict(X))


def test_verification_rejects_a_graph_that_disagrees(three_classes):
    """XGBRFClassifier with three classes converts to a wrong graph; it must not pass."""
    X, y = three_classes
    model = train_model(make_spec("classification", "xgboost_random_forest"),
                        float_columns(X), Column("y", "float", [int(v) for v in y]))
    if model.runtime == "onnx":  # a fixed converter is fine, as long as it was verified
        assert model.conversion["max_abs_diff"] <= 1e-3
        return
    assert model.runtime == "xgboost-ubj" and "differ" in model.conversion["reason"]
    _, test, _ = split.split_rows(90, 0.25, "random", y)
    predicted = load_native(model.runtime, model.artifact).predict(X[test])
    assert np.mean(predicted == y[test]) == pytest.approx(model.metrics["accuracy"])


def test_corrupt_ubj_artifact():
    with pytest.raises(PgmodelsError) as info:
        load_native("xgboost-ubj", b"certainly not a model")
    assert info.value.sqlstate == "XX001"


def test_unknown_runtime():
    with pytest.raises(PgmodelsError) as info:
        load_native("pickle", b"")
    assert info.value.sqlstate == "0A000"


def test_skops_fallback_without_skops_is_a_clean_error(monkeypatch, three_classes):
    import sys

    from sklearn.linear_model import LogisticRegression

    X, y = three_classes
    pipeline = _fit(LogisticRegression(), X, y)
    _break_conversion(monkeypatch)
    monkeypatch.setitem(sys.modules, "skops", None)  # import skops -> ImportError
    monkeypatch.setitem(sys.modules, "skops.io", None)
    with pytest.raises(PgmodelsError) as info:
        convert.serialize(pipeline, "classification", list("abcd"), ["float"] * 4, X, 1.0)
    assert info.value.sqlstate == "0A000" and "skops" in info.value.detail


class Gadget:
    """A type outside the trusted packages; its module is this test file."""


def test_skops_round_trip_with_preprocessing(monkeypatch, three_classes):
    pytest.importorskip("skops", reason=NO_SKOPS)
    from sklearn.linear_model import LogisticRegression

    from pgmodels.training import preprocess as pp

    X, y = three_classes
    rows = len(y)
    features = [Column("t", "text", ["a", "b", "c"] * (rows // 3))] + float_columns(X)
    plans = pp.plan_columns(features, {"f0": {"scale": "standard", "impute": "mean"}})
    Xm = pp.design_matrix(features)
    pipeline = _fit(LogisticRegression(), Xm, y,
                    pp.build_preprocessor(plans, Xm, "classification"))
    _break_conversion(monkeypatch)
    names, kinds = [f.name for f in features], [f.kind for f in features]
    artifact, runtime, record = convert.serialize(pipeline, "classification", names, kinds, Xm, 1.0)
    assert runtime == "skops" and record["converted"] is False
    loaded = load_native(runtime, artifact)
    np.testing.assert_allclose(loaded.predict_proba(Xm), pipeline.predict_proba(Xm))


def test_skops_xgboost_with_preprocessing(monkeypatch, three_classes):
    pytest.importorskip("skops", reason=NO_SKOPS)
    import xgboost
    from sklearn.preprocessing import StandardScaler

    X, y = three_classes
    pipeline = _fit(xgboost.XGBClassifier(n_estimators=5), X, y, StandardScaler())
    _break_conversion(monkeypatch)
    artifact, runtime, _ = convert.serialize(pipeline, "classification", list("abcd"),
                                             ["float"] * 4, X, 1.0)
    assert runtime == "skops"
    np.testing.assert_allclose(load_native(runtime, artifact).predict_proba(X),
                               pipeline.predict_proba(X), atol=1e-6)


def test_skops_refuses_untrusted_types():
    sio = pytest.importorskip("skops.io", reason=NO_SKOPS)
    artifact = sio.dumps({"gadget": Gadget()})
    with pytest.raises(PgmodelsError) as info:
        load_native("skops", artifact)
    assert info.value.sqlstate == "XX001" and "Gadget" in info.value.detail


@pytest.mark.parametrize("task,algorithm", [("regression", "kernel_ridge"),
                                            ("classification", "hist_gradient_boosting")])
def test_unconvertible_algorithm_serves_natively(task, algorithm, three_classes):
    X, y = three_classes
    target = Column("y", "float", [float(v) for v in y])
    model = train_model(make_spec(task, algorithm), float_columns(X), target)
    # these fail to convert with the converter versions of 2026-11; a newer skl2onnx may
    # convert one (and then it serves as ONNX, which test_algorithms checks end to end)
    if model.runtime == "onnx":
        pytest.skip(f"this converter version converts {algorithm} to ONNX")
    assert model.runtime == "skops" and model.conversion["reason"]
    loaded = load_native(model.runtime, model.artifact)
    assert loaded.predict(X[:5]).shape == (5,)
