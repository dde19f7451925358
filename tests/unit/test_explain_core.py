"""The explainer core, outside PostgreSQL: exact TreeSHAP against the shap package's
TreeExplainer on the same native models, additivity, linear exactness, the sum-back of
one-hot and target-encoded columns, the sampling estimate, and the record format."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest

from pgmodels.explain import build, record, sampling, transform, trees, treeshap
from pgmodels.explain.explainer import Explainer
from pgmodels.training import preprocess
from pgmodels.training.fit import Column

shap = pytest.importorskip("shap", reason="shap is a test dependency: pip install 'pgmodels[test]'")

N_FEATURES = 6


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(600, N_FEATURES)).astype(np.float32).astype(np.float64)
    margin = X[:, 0] + X[:, 1] * X[:, 2] - 0.5 * X[:, 3]
    return {"X": X,
            "binary": (margin + rng.normal(scale=0.5, size=len(X)) > 0).astype(int),
            "multiclass": np.digitize(margin, [-0.7, 0.7]),
            "regression": 2 * X[:, 0] + np.sin(X[:, 1]) + X[:, 2] * X[:, 3]}


def _model(family: str, task: str):
    import catboost
    import lightgbm
    import xgboost
    from sklearn import ensemble

    classifier = task != "regression"
    small = {"random_state": 0}
    return {
        "xgboost": lambda: (xgboost.XGBClassifier if classifier else xgboost.XGBRegressor)(
            n_estimators=40, max_depth=4, **small),
        "xgboost_random_forest": lambda: (xgboost.XGBRFClassifier if classifier else xgboost.XGBRFRegressor)(
            n_estimators=10, max_depth=4, **small),
        "lightgbm": lambda: (lightgbm.LGBMClassifier if classifier else lightgbm.LGBMRegressor)(
            n_estimators=30, verbose=-1, **small),
        "catboost": lambda: (catboost.CatBoostClassifier if classifier else catboost.CatBoostRegressor)(
            iterations=30, depth=4, verbose=0, allow_writing_files=False, thread_count=1, random_seed=0),
        "random_forest": lambda: (ensemble.RandomForestClassifier if classifier else ensemble.RandomForestRegressor)(
            n_estimators=8, max_depth=7, **small),
        "extra_trees": lambda: (ensemble.ExtraTreesClassifier if classifier else ensemble.ExtraTreesRegressor)(
            n_estimators=8, max_depth=7, **small),
        "gradient_boosting_trees": lambda: (ensemble.GradientBoostingClassifier if classifier
                                            else ensemble.GradientBoostingRegressor)(n_estimators=20, **small),
        "hist_gradient_boosting": lambda: (ensemble.HistGradientBoostingClassifier if classifier
                                           else ensemble.HistGradientBoostingRegressor)(max_iter=20, **small),
        "decision_tree": lambda: __import__("sklearn.tree", fromlist=["x"]).__dict__[
            "DecisionTreeClassifier" if classifier else "DecisionTreeRegressor"](max_depth=6, **small),
    }[family]()


FAMILIES = ["xgboost", "xgboost_random_forest", "lightgbm", "catboost", "random_forest", "extra_trees",
            "gradient_boosting_trees", "hist_gradient_boosting", "decision_tree"]
CASES = [(f, t) for f in FAMILIES for t in ("binary", "multiclass", "regression")]


def _shap(model, X) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        explainer = shap.TreeExplainer(model)
        values = np.asarray(explainer.shap_values(X))
    except Exception as e:  # noqa: BLE001 - shap does not cover every family and task
        if "only supported for binary" in str(e) or "not yet supported" in str(e):
            return None
        raise
    if values.ndim == 2:
        values = values[:, :, None]
    return values, np.atleast_1d(np.asarray(explainer.expected_value, dtype=np.float64))


@pytest.mark.parametrize("family,task", CASES)
def test_tree_shap_agrees_with_shap_and_adds_up(data, family, task):
    X, y = data["X"], data[task]
    model = _model(family, task).fit(X, y)
    ens = build._trees(model, task != "regression", X)
    ens.check()
    paths = treeshap.build_paths(ens, np.arange(N_FEATURES), N_FEATURES)
    rows = X[:150]
    phi = treeshap.shap_values(paths, ens.prepare(rows))
    base = ens.expected_value()
    _, raw = trees.read(model, task != "regression")
    want = np.asarray(raw(rows), dtype=np.float64).reshape(len(rows), -1)
    # additivity: contributions + base = the model's raw output
    np.testing.assert_allclose(phi.sum(axis=1) + base, want, atol=1e-4, rtol=0)
    theirs = _shap(model, rows)
    if theirs is None:  # shap refuses (multi-class sklearn gradient boosting): additivity only
        assert family in ("gradient_boosting_trees", "hist_gradient_boosting") and task == "multiclass"
        return
    values, expected = theirs
    assert values.shape == phi.shape
    np.testing.assert_allclose(phi, values, atol=1e-4, rtol=0)
    np.testing.assert_allclose(base, expected, atol=1e-4, rtol=0)


def test_deep_paths_computed_per_row_agree_with_tables(data, monkeypatch):
    """Paths too deep for a table are computed from the polynomial: same numbers."""
    from sklearn.ensemble import RandomForestRegressor

    X = data["X"]
    model = RandomForestRegressor(n_estimators=4, random_state=0).fit(X, data["regression"])
    ens = build._trees(model, False, X)
    tabled = treeshap.build_paths(ens, np.arange(N_FEATURES), N_FEATURES)
    monkeypatch.setattr(treeshap, "TABLE_DEPTH", 0)
    computed = treeshap.build_paths(ens, np.arange(N_FEATURES), N_FEATURES)
    assert not computed.tabled and computed.computed
    rows = ens.prepare(X[:40])
    np.testing.assert_allclose(treeshap.shap_values(tabled, rows), treeshap.shap_values(computed, rows),
                               atol=1e-10)
    np.testing.assert_allclose(treeshap.shap_values(computed, rows)[:, :, 0],
                               shap.TreeExplainer(model).shap_values(X[:40]), atol=1e-4)


def test_missing_values_follow_the_default_direction():
    import xgboost

    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 3))
    X[rng.random(size=X.shape) < 0.2] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.isnan(X[:, 1]) > 0.3).astype(int)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    ens = build._trees(model, True, X)
    paths = treeshap.build_paths(ens, np.arange(3), 3)
    phi = treeshap.shap_values(paths, ens.prepare(X[:100]))
    np.testing.assert_allclose(phi[:, :, 0], shap.TreeExplainer(model).shap_values(X[:100]), atol=1e-4)


# -- pipelines with preprocessing: the sum-back onto the user's columns ----------------------

def _mixed(n=400, seed=3):
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "premium", "family"], n)
    tenure = rng.integers(1, 72, n).astype(float)
    spend = rng.normal(60, 20, n)
    logit = (plan == "premium") * 1.5 - (plan == "basic") * 1.0 - tenure / 30 + (spend - 60) / 20
    y = (logit + rng.normal(scale=0.3, size=n) > 0).astype(int)
    cols = [Column("plan", "text", plan.tolist()), Column("tenure", "float", tenure.tolist()),
            Column("spend", "float", spend.tolist())]
    return cols, y


def _pipeline(cols, y, estimator, settings, task="classification"):
    from sklearn.pipeline import Pipeline

    plans = preprocess.plan_columns(cols, settings)
    X = preprocess.design_matrix(cols)
    pre = preprocess.build_preprocessor(plans, X, task)
    steps = ([("preprocess", pre)] if pre is not None else []) + [("model", estimator)]
    return Pipeline(steps).fit(X, y), X


@pytest.mark.parametrize("encode", ["one_hot", "target", "native"])
def test_text_column_parts_are_summed_back(encode):
    import xgboost

    cols, y = _mixed()
    settings = {"plan": {"encode": encode}, "spend": {"scale": "standard"}}
    fitted, X = _pipeline(cols, y, xgboost.XGBClassifier(n_estimators=30, max_depth=3), settings)
    blob, info = build.build(fitted, "classification", ["plan", "tenure", "spend"], ["text", "float", "float"], X)
    assert info["kind"] == "tree" and info["exact"], info
    explainer = Explainer.load(blob)
    got = explainer.explain(X[:80])
    assert got.contributions.shape == (80, 3, 1)
    # the same as shap on the model's own columns, each column summed onto its input
    Xt = fitted[0].transform(X[:80])
    values = shap.TreeExplainer(fitted[-1]).shap_values(Xt)
    owner = transform.owners(explainer.spec)
    assert len(owner) == Xt.shape[1] and (encode != "one_hot" or Xt.shape[1] == 3 + 3)
    summed = np.zeros((80, 3))
    for c, i in enumerate(owner):
        summed[:, i] += values[:, c]
    np.testing.assert_allclose(got.contributions[:, :, 0], summed, atol=1e-4)
    margin = fitted[-1].get_booster().predict(
        __import__("xgboost").DMatrix(Xt.astype(np.float32)), output_margin=True)
    np.testing.assert_allclose(got.contributions.sum(axis=(1, 2)) + got.base[0], margin, atol=1e-4)
    assert set(info["importance"]) == {"plan", "tenure", "spend"}


def test_linear_model_is_exact_in_its_feature_space():
    from sklearn.linear_model import LogisticRegression

    cols, y = _mixed()
    fitted, X = _pipeline(cols, y, LogisticRegression(max_iter=1000),
                          {"plan": {"encode": "one_hot"}, "tenure": {"scale": "min_max"}})
    blob, info = build.build(fitted, "classification", ["plan", "tenure", "spend"], ["text", "float", "float"], X)
    assert info["kind"] == "linear"
    got = Explainer.load(blob).explain(X[:50])
    Xt = fitted[0].transform(X)
    coef, mean = fitted[-1].coef_[0], fitted[0].transform(X[_train_rows(X)]).mean(axis=0)
    one = fitted[0].transform(X[:50])
    per_column = coef * (one - mean)
    # plan's one-hot columns come after the two numeric ones... whatever the order, the
    # owner map says which is whose: check tenure and spend exactly, and plan as the rest
    owner = transform.owners(Explainer.load(blob).spec)
    for i in range(3):
        np.testing.assert_allclose(got.contributions[:, i, 0], per_column[:, owner == i].sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(got.base[0], fitted[-1].intercept_[0] + coef @ mean, atol=1e-9)
    np.testing.assert_allclose(got.contributions.sum(axis=(1, 2)) + got.base[0],
                               fitted.decision_function(X[:50]), atol=1e-9)
    assert Xt.shape[1] == 6


def _train_rows(X):
    """The rows build() samples its training mean from (all of them, when there are fewer
    than SAMPLE_ROWS)."""
    assert len(X) <= build.SAMPLE_ROWS
    return np.arange(len(X))


def test_linear_regression_multiclass_and_array_features():
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0]) + 3
    reg = LinearRegression().fit(X, y)
    blob, info = build.build(reg, "regression", ["a[1]", "a[2]", "a[3]", "b"], ["float"] * 4, X)
    got = Explainer.load(blob).explain(X[:10])
    np.testing.assert_allclose(got.contributions[:, :, 0], reg.coef_ * (X[:10] - X.mean(axis=0)), atol=1e-9)
    assert list(info["importance"]) == ["a[1]", "a[2]", "a[3]", "b"]
    clf = LogisticRegression(max_iter=500).fit(X, np.digitize(y, [0, 4]))
    blob, info = build.build(clf, "classification", list("abcd"), ["float"] * 4, X)
    got = Explainer.load(blob).explain(X[:10])
    assert got.contributions.shape == (10, 4, 3)
    np.testing.assert_allclose(got.contributions.sum(axis=1) + got.base, clf.decision_function(X[:10]), atol=1e-9)


# -- the sampling estimate ------------------------------------------------------------------

def test_sampling_estimate_is_additive_seeded_and_close_on_a_linear_model():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(100, 4))
    w = np.array([2.0, -1.0, 0.5, 0.0])

    def f(rows):
        return (np.asarray(rows, dtype=np.float64) @ w)[:, None]
    background = X[:sampling.BACKGROUND]
    phi, base, err = sampling.explain(f, X[:5], background)
    np.testing.assert_allclose(phi.sum(axis=1) + base, f(X[:5]), atol=1e-9)   # exactly additive
    # a linear model's interventional Shapley values are w * (x - mean of the background)
    np.testing.assert_allclose(phi[:, :, 0], w * (X[:5] - background.mean(axis=0)), atol=1e-9)
    again, _, _ = sampling.explain(f, X[:5], background)
    np.testing.assert_array_equal(phi, again)


def test_non_tree_model_falls_back_to_sampling_over_the_whole_pipeline():
    from sklearn.neighbors import KNeighborsClassifier

    cols, y = _mixed()
    fitted, X = _pipeline(cols, y, KNeighborsClassifier(), {"plan": {"encode": "one_hot"}})
    blob, info = build.build(fitted, "classification", ["plan", "tenure", "spend"], ["text", "float", "float"], X)
    assert info["kind"] == "sampling" and not info["exact"] and "KNeighbors" in info["reason"]
    explainer = Explainer.load(blob)
    assert explainer.background.shape == (sampling.BACKGROUND, 3)
    f = lambda rows: fitted.predict_proba(rows)  # noqa: E731
    got = explainer.explain(X[:3], f)
    np.testing.assert_allclose(got.contributions.sum(axis=1) + got.base, fitted.predict_proba(X[:3]), atol=1e-9)
    assert got.errors.shape == got.contributions.shape and (got.errors >= 0).all()


# -- the record ---------------------------------------------------------------------------------

def test_record_loads_without_pickle_and_is_checked_by_sha256():
    from sklearn.linear_model import LinearRegression

    X = np.random.default_rng(0).normal(size=(50, 2))
    blob, _ = build.build(LinearRegression().fit(X, X[:, 0]), "regression", ["a", "b"], ["float"] * 2, X)
    digest = hashlib.sha256(blob).digest()
    Explainer.load(blob, digest)
    with pytest.raises(record.Damaged, match="differ"):
        Explainer.load(blob[:-1] + bytes([blob[-1] ^ 1]), digest)
    # an array of Python objects (what a pickle would be) is refused
    buf = io.BytesIO()
    np.savez(buf, meta=np.frombuffer(b'{"format": 1, "kind": "linear"}', dtype=np.uint8),
             coef=np.array([object()], dtype=object))
    with pytest.raises(record.Damaged):
        record.unpack(buf.getvalue())
    with pytest.raises(record.Damaged):
        record.unpack(b"not a zip")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert all(name.endswith(".npy") for name in z.namelist())


def test_damaged_trees_are_refused():
    import xgboost

    X = np.random.default_rng(0).normal(size=(100, 3))
    model = xgboost.XGBRegressor(n_estimators=3, max_depth=2).fit(X, X[:, 0])
    blob, _ = build.build(model, "regression", list("abc"), ["float"] * 3, X)
    meta, arrays = record.unpack(blob)
    arrays["left"] = arrays["left"].copy()
    arrays["left"][0] = 10_000
    with pytest.raises(record.Damaged):
        Explainer.load(record.pack(meta, arrays))
