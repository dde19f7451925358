"""Trained models convert to ONNX graphs that follow serving's conventions and agree
with an independently fitted scikit-learn / XGBoost model."""

from __future__ import annotations

import numpy as np
import pytest
from training_helpers import float_columns, make_spec, onnx_run

from pgmodels.training import split
from pgmodels.training.fit import Column, train_model


def _f32(X):
    return np.asarray(X, dtype=np.float32)


def _reference(algorithm, X_train, y_train):
    """The estimator pgmodels should have fitted, fitted here by hand."""
    if algorithm == "xgboost":
        from xgboost import XGBClassifier
        return XGBClassifier(random_state=0).fit(_f32(X_train), y_train)
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(random_state=0).fit(_f32(X_train).astype(np.float64), y_train)


@pytest.mark.parametrize("algorithm", ["linear", "xgboost"])
def test_binary_classifier_graph_matches_reference(binary_data, algorithm):
    X, y = binary_data
    model = train_model(make_spec("classification", algorithm), float_columns(X),
                        Column("y", "float", [int(v) for v in y]))
    assert model.runtime == "onnx" and model.conversion["converted"] is True
    assert model.labels == [0, 1] and all(type(v) is int for v in model.labels)
    assert model.feature_names == ["f0", "f1", "f2", "f3"]
    assert model.feature_types == ["float"] * 4

    train, test, _ = split.split_rows(len(y), 0.25, "random", y)
    out = onnx_run(model.artifact, {"X": _f32(X[test])})
    assert set(out) == {"label", "probabilities"}
    assert out["label"].dtype == np.int64 and out["probabilities"].shape == (len(test), 2)

    reference = _reference(algorithm, X[train], y[train])
    expected = reference.predict_proba(_f32(X[test]))
    np.testing.assert_allclose(out["probabilities"], expected, atol=1e-4)
    np.testing.assert_array_equal(out["label"], np.argmax(expected, axis=1))
    accuracy = float(np.mean(out["label"] == y[test]))
    assert model.metrics["accuracy"] == pytest.approx(accuracy)
    assert 0.0 <= model.metrics["roc_auc"] <= 1.0 and model.metrics["log_loss"] > 0


def test_regression_learns_linear_function(linear_data):
    X, y = linear_data
    model = train_model(make_spec("regression", "linear"), float_columns(X),
                        Column("y", "float", y.tolist()))
    assert model.labels is None and model.runtime == "onnx"
    assert model.metrics["r2"] > 0.99
    assert set(model.metrics) >= {"r2", "mean_absolute_error", "mean_squared_error",
                                  "fit_time", "score_time"}
    probe = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], dtype=np.float32)
    value = onnx_run(model.artifact, {"X": probe})["value"].reshape(-1)
    np.testing.assert_allclose(value, [13.0, 9.0], atol=0.1)


def test_text_target_labels_in_sorted_order(binary_data):
    X, y = binary_data
    names = np.array(["zebra", "ant"])[y]  # class 1 is "ant", sorted first
    model = train_model(make_spec("classification", "linear"), float_columns(X),
                        Column("animal", "text", names.tolist()))
    assert model.labels == ["ant", "zebra"]
    out = onnx_run(model.artifact, {"X": _f32(X)})
    predicted = np.array(model.labels)[out["label"]]
    assert np.mean(predicted == names) > 0.8


def test_three_classes_with_int_labels():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    model = train_model(make_spec("classification", "xgboost", test_sampling="stratified"),
                        float_columns(X), Column("species", "float", [int(v) + 5 for v in y]))
    assert model.labels == [5, 6, 7]
    out = onnx_run(model.artifact, {"X": _f32(X)})
    assert out["probabilities"].shape == (150, 3)
    assert np.mean(out["label"] == y) > 0.9


def _mixed_feeds(features, rows):
    feeds = {}
    for col in features:
        values = [col.values[i] for i in rows]
        if col.kind == "text":
            feeds[col.name] = np.array(["" if v is None else v for v in values],
                                       dtype=object).reshape(-1, 1)
        else:
            feeds[col.name] = np.array([np.nan if v is None else v for v in values],
                                       dtype=np.float32).reshape(-1, 1)
    return feeds


@pytest.mark.parametrize("encode", ["native", "one_hot", "target", {"ordinal": ["red", "green"]}])
def test_text_features_get_one_input_each(mixed_data, encode):
    features, target = mixed_data
    preprocess = {"color": {"encode": encode}, "noise": {"impute": "mean", "scale": "standard"}}
    model = train_model(make_spec("classification", "xgboost", preprocess=preprocess),
                        features, target)
    assert model.runtime == "onnx", model.conversion
    assert model.labels == ["no", "yes"]
    assert model.feature_types == ["text", "float", "float"]

    import onnxruntime as ort
    session = ort.InferenceSession(model.artifact, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    assert inputs == [("color", "tensor(string)", [None, 1]), ("size", "tensor(float)", [None, 1]),
                      ("noise", "tensor(float)", [None, 1])]

    out = onnx_run(model.artifact, _mixed_feeds(features, range(len(target.values))))
    truth = np.array(target.values) == "yes"
    assert np.mean((out["label"] == 1) == truth) > 0.9
    # A NULL in "noise" is imputed with the mean, not passed on as NaN.
    assert not np.isnan(out["probabilities"]).any()


def test_unseen_category_and_null_text_do_not_break_the_graph(mixed_data):
    features, target = mixed_data
    model = train_model(make_spec("classification", "linear"), features[:2], target)
    feeds = {"color": np.array([["purple"], [""], ["red"]], dtype=object),
             "size": np.array([[1.0], [1.0], [1.0]], dtype=np.float32)}
    out = onnx_run(model.artifact, feeds)
    assert out["probabilities"].shape == (3, 2)
    np.testing.assert_allclose(out["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    # Unknown and NULL both encode as -1, so they get the same prediction.
    np.testing.assert_allclose(out["probabilities"][0], out["probabilities"][1], atol=1e-6)


def test_impute_mean_fills_nulls_in_training_and_in_the_graph(linear_data):
    X, y = linear_data
    columns = float_columns(X)
    columns[0].values[::5] = [None] * len(columns[0].values[::5])
    spec = make_spec("regression", "linear", preprocess={"f0": {"impute": "mean"}})
    model = train_model(spec, columns, Column("y", "float", y.tolist()))
    assert model.runtime == "onnx" and model.metrics["r2"] > 0.5
    probe = np.array([[np.nan, 0.0, 0.0], [np.nan, 1.0, 0.0]], dtype=np.float32)
    value = onnx_run(model.artifact, {"X": probe})["value"].reshape(-1)
    assert np.isfinite(value).all()
    assert value[1] - value[0] == pytest.approx(-2.0, abs=0.3)


@pytest.mark.parametrize("impute,expected", [("zero", 0.0), ("min", -1.0), ("max", 4.0)])
def test_constant_imputations_use_training_values(impute, expected):
    from sklearn.pipeline import Pipeline

    from pgmodels.training import preprocess as pp

    col = Column("a", "float", [-1.0, None, 4.0, 2.0])
    plans = pp.plan_columns([col, Column("b", "float", [1.0, 2.0, 3.0, 4.0])],
                            {"a": {"impute": impute}})
    X = pp.design_matrix([col, Column("b", "float", [1.0, 2.0, 3.0, 4.0])])
    transformer = Pipeline([("p", pp.build_preprocessor(plans, X, "regression"))]).fit(X)
    out = transformer.transform(X)
    # Plain columns come first, then the imputed one.
    assert out[1, 1] == expected and out[0, 1] == -1.0


def test_one_hot_adds_a_column_per_category(mixed_data):
    from pgmodels.training import preprocess as pp

    features, target = mixed_data
    plans = pp.plan_columns(features[:2], {"color": {"encode": "one_hot"}})
    X = pp.design_matrix(features[:2])
    out = pp.build_preprocessor(plans, X, "classification").fit_transform(X)
    assert out.shape == (len(X), 1 + 3)
    np.testing.assert_array_equal(out[:, 1:].sum(axis=1), 1.0)


def test_input_names_are_the_exact_feature_names():
    rng = np.random.default_rng(5)
    features = [Column("fav colour", "text", rng.choice(["a", "b"], 60).tolist()),
                Column("Größe", "float", rng.normal(size=60).tolist())]
    target = Column("y", "float", rng.normal(size=60).tolist())
    model = train_model(make_spec("regression", "linear"), features, target)
    import onnxruntime as ort
    session = ort.InferenceSession(model.artifact, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["fav colour", "Größe"]
    assert [o.name for o in session.get_outputs()] == ["value"]
