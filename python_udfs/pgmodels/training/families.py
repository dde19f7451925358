"""The model families PostgresML has beyond one-target supervised learning: joint
(multi-output) regression, clustering and decomposition (PCA).

These functions run in the training child (:mod:`runner`): numbers in, a fitted and
ONNX-converted model out, checked against the native model on the test rows like every
other family (a model that does not convert is refused, since these families are served
only through ONNX: ``predict_joint`` and ``decompose`` read the graph's output vector).

- joint regression: every PostgresML regression algorithm; those without multi-output
  support of their own are fitted one per target (scikit-learn's MultiOutputRegressor),
  and skl2onnx converts either. Graph output ``value`` [None, targets].
- clustering: PostgresML's names; the algorithms that can assign a new row to a cluster
  (k-means, mini-batch k-means, affinity propagation, birch, mean shift) all do it by the
  nearest centre, so one graph serves them (:mod:`family_onnx`), output ``label``. DBSCAN,
  OPTICS, spectral clustering and feature agglomeration cannot, and are refused.
- decomposition: PCA, graph output ``value`` [None, components].
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import q, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, PgmodelsError
from .. import progress
from . import algorithms, boosters, family_onnx, split

_CL = "sklearn.cluster"
CLUSTERING = {
    "kmeans": f"{_CL}:KMeans", "mini_batch_kmeans": f"{_CL}:MiniBatchKMeans",
    "affinity_propagation": f"{_CL}:AffinityPropagation", "birch": f"{_CL}:Birch",
    "mean_shift": f"{_CL}:MeanShift",
}
# PostgresML's names for algorithms that cannot place a new row in a cluster
NO_PREDICT = ("agglomerative", "dbscan", "optics", "spectral", "spectral_bi", "spectral_co", "feature_agglomeration")
DECOMPOSITION = {"pca": "sklearn.decomposition:PCA"}
UNSUPERVISED = ("clustering", "decomposition")


@dataclass
class FamilySpec:
    task: str                 # 'regression' (joint), 'clustering', 'decomposition'
    algorithm: str
    hyperparams: dict = field(default_factory=dict)
    test_size: float = 0.25
    test_sampling: str = "random"
    # what limits.check_spec reads: these families take no search
    search: None = None
    search_params: dict = field(default_factory=dict)
    search_args: dict = field(default_factory=dict)


@dataclass
class FamilyModel:
    artifact: bytes
    runtime: str
    hyperparams: dict
    metrics: dict
    conversion: dict
    library_versions: dict
    notes: list = field(default_factory=list)


def algorithm_names(task: str) -> list[str]:
    if task == "clustering":
        return sorted(CLUSTERING)
    if task == "decomposition":
        return sorted(DECOMPOSITION)
    return algorithms.algorithm_names("regression")


def make_estimator(task: str, algorithm: str, hyperparams: dict):
    """An unfitted estimator for a family, hyperparameters checked as for the others."""
    import importlib

    if task == "regression":
        return algorithms.make_estimator(algorithm, "regression", hyperparams)
    table = CLUSTERING if task == "clustering" else DECOMPOSITION
    if task == "clustering" and algorithm in NO_PREDICT:
        raise PgmodelsError(f"clustering algorithm {q(algorithm)} cannot predict",
                            detail="It assigns clusters only to the rows it was fitted on, so it cannot "
                                   "serve predict() on new rows.",
                            hint="Use one of: " + ", ".join(algorithm_names(task)) + ".",
                            sqlstate=FEATURE_NOT_SUPPORTED)
    if algorithm not in table:
        raise PgmodelsError(f"unknown algorithm {q(algorithm)}",
                            hint=f"Valid algorithms for {task} are: " + ", ".join(algorithm_names(task)) + ".",
                            sqlstate=INVALID_PARAMETER_VALUE)
    module, name = table[algorithm].split(":")
    estimator = getattr(importlib.import_module(module), name)()
    hyperparams = dict(hyperparams or {})
    algorithms.check_hyperparams(algorithm, estimator, hyperparams)
    for key, value in hyperparams.items():
        algorithms.check_value(task, estimator, key, value)
    defaults = {"random_state": 0} if "random_state" in estimator.get_params(deep=False) else {}
    if algorithm in ("kmeans", "mini_batch_kmeans"):
        defaults["n_init"] = 10  # scikit-learn's 'auto' differs between versions
    estimator.set_params(**{**defaults, **hyperparams})
    return estimator


def _multi_output(estimator, targets: int):
    """The estimator itself when it fits several targets at once, else one per target."""
    from sklearn.multioutput import MultiOutputRegressor

    try:
        multi = estimator._get_tags().get("multioutput", False)  # scikit-learn < 1.6
    except AttributeError:
        multi = bool(getattr(getattr(estimator.__sklearn_tags__(), "target_tags", None), "multi_output", False))
    if type(estimator).__module__.startswith("xgboost"):
        multi = False  # onnxmltools converts XGBoost models of one target only
    if targets > 1 and not multi:
        return MultiOutputRegressor(estimator)
    return estimator


def fit_family(spec: FamilySpec, X: np.ndarray, Y: np.ndarray | None) -> FamilyModel:
    """Split, fit, score, convert and verify one model of a family."""
    from .fit import library_versions, used_hyperparams

    estimator = make_estimator(spec.task, spec.algorithm, spec.hyperparams)
    sampling = "random" if spec.test_sampling == "stratified" else spec.test_sampling
    train, test, note = split.split_rows(len(X), spec.test_size, sampling, None)
    if spec.task == "regression":
        estimator = _multi_output(estimator, Y.shape[1])
    progress.fitting(spec.algorithm, None, None, len(train))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(X[train], Y[train] if Y is not None else None)
    except (ValueError, TypeError, ArithmeticError, *boosters.fit_errors()) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PgmodelsError(f"could not fit algorithm {q(spec.algorithm)}", detail=first,
                            hint="Check the hyperparameters.", sqlstate=INVALID_PARAMETER_VALUE) from None
    fit_time = time.perf_counter() - start
    progress.report("scoring", f"scoring on {len(test)} test rows")
    metrics = _score(spec.task, estimator, X[test], Y[test] if Y is not None else None)
    metrics["fit_time"] = fit_time
    progress.report("converting", "converting to ONNX")
    check = X[test] if len(test) else X[train][:100]
    artifact, conversion = family_onnx.convert_and_verify(spec.task, estimator, X.shape[1], check,
                                                          float(np.std(Y[train])) if Y is not None else 1.0)
    inner = estimator.estimator if hasattr(estimator, "estimators_") and hasattr(estimator, "estimator") \
        and spec.task == "regression" and type(estimator).__name__ == "MultiOutputRegressor" else estimator
    return FamilyModel(artifact=artifact, runtime="onnx", hyperparams=used_hyperparams(inner), metrics=metrics,
                       conversion=conversion, library_versions=library_versions(), notes=[note] if note else [])


def _score(task: str, estimator, X, Y) -> dict:
    from sklearn import metrics as m

    if len(X) == 0:
        return {}
    if task == "regression":
        pred = estimator.predict(X)
        return {"r2": float(m.r2_score(Y, pred)), "mean_absolute_error": float(m.mean_absolute_error(Y, pred)),
                "mean_squared_error": float(m.mean_squared_error(Y, pred)),
                "r2_per_target": [float(v) for v in m.r2_score(Y, pred, multioutput="raw_values")]}
    if task == "decomposition":
        ratio = estimator.explained_variance_ratio_
        return {"cumulative_explained_variance": float(np.sum(ratio)),
                "explained_variance_ratio": [float(v) for v in ratio]}
    labels = estimator.predict(X)
    out = {"n_clusters": int(len(np.unique(family_onnx.cluster_labels(estimator))))}
    try:
        out["silhouette"] = float(m.silhouette_score(X, labels))
    except ValueError:  # one cluster among the test rows: no silhouette
        out["silhouette"] = None
    return out
