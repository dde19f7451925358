"""train_model(): columns in, a fitted and converted model out.

The order: validate everything that can be validated cheaply (task, algorithm,
hyperparameter names, preprocess, search settings, target), split, fit the Pipeline
(preprocessing + estimator) on the training rows, score it on the test rows, then
convert it to ONNX, verified against the native pipeline, or fall back to a native
format.

Classification targets are encoded to class indices 0..K-1 before fitting, so every
model's (and every graph's) label is an index into ``TrainedModel.labels``, which keeps
the original values in sorted order (ints stay ints, text stays text).
"""

from __future__ import annotations

import math
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import (q, DATA_EXCEPTION, DATATYPE_MISMATCH, INVALID_PARAMETER_VALUE,
                      NULL_VALUE_NOT_ALLOWED, PgmodelsError)
from .. import progress
from ..explain import build as explain_build
from ..monitor import profile as training_profile
from ..serving import native as serving_native
from . import algorithms, boosters, convert, preprocess, search as searching, split
from .metrics import evaluation, score
from .search import jsonable


@dataclass
class Column:
    """One feature (or target) column as read from the table."""
    name: str
    kind: str        # 'float' (numeric/boolean, None for NULL) or 'text' (str or None)
    values: list


@dataclass
class TrainSpec:
    task: str                       # 'classification' | 'regression'
    algorithm: str                  # PostgresML names, see algorithms.py
    hyperparams: dict = field(default_factory=dict)
    search: str | None = None       # None | 'grid' | 'random'
    search_params: dict = field(default_factory=dict)
    search_args: dict = field(default_factory=dict)
    test_size: float = 0.25         # <= 1: fraction; > 1: row count
    test_sampling: str = "random"   # 'random' | 'last' | 'stratified'
    preprocess: dict = field(default_factory=dict)


@dataclass
class TrainedModel:
    artifact: bytes
    runtime: str                    # 'onnx' | 'xgboost-ubj' | 'skops'
    feature_names: list[str]
    feature_types: list[str]
    labels: list | None
    metrics: dict
    hyperparams: dict
    search_results: dict | None
    conversion: dict
    library_versions: dict
    notes: list[str] = field(default_factory=list)  # e.g. why stratification was skipped
    feature_importances: dict | None = None  # per feature, for tree and linear models (monitor.lineage)
    evaluation: dict | None = None  # the confusion matrix or the residuals on the test split
    prediction_profile: dict | None = None  # the model's answers on its training rows (monitor.profile)
    explainer: bytes | None = None  # the explainer record (explain.build), None when there is none
    explainer_info: dict | None = None  # its kind, method, global importance, or why there is none
    reference_profile: dict | None = None  # the training rows' profile (monitor.profile.of_training)
    native_trees: bytes | None = None  # a tree ensemble's trees for the C library (serving/native.py)


def train_model(spec: TrainSpec, features: list[Column], target: Column) -> TrainedModel:
    task = algorithms.check_task(spec.task)
    _check_features(features, target)
    estimator = algorithms.make_estimator(spec.algorithm, task, spec.hyperparams)
    searching.check_search(spec.search, spec.search_params, spec.search_args, estimator)
    plans = preprocess.plan_columns(features, spec.preprocess)
    y, labels = encode_target(task, target)
    X = preprocess.design_matrix(features)
    preprocess.check_missing(plans, X)

    train, test, note = split.split_rows(len(y), spec.test_size, spec.test_sampling,
                                         y if task == "classification" else None)
    if labels is not None:
        _check_train_classes(y[train], labels)
    pipeline = _pipeline(preprocess.build_preprocessor(plans, X[train], task), estimator)
    fitted, results, fit_time = _fit(spec, task, pipeline, X[train], y[train])

    progress.report("scoring", f"scoring on {len(test)} test rows")
    metrics, native = score(task, fitted, X[test], y[test], len(labels) if labels else None)
    predicted_test = native["predict"]
    metrics["fit_time"] = fit_time
    y_scale = float(np.std(y[train])) if task == "regression" else 1.0
    names, kinds = [f.name for f in features], [f.kind for f in features]
    # the explainer record, the prediction profile and the rows' reference profile read
    # only the fitted model and the rows: they run beside the conversion and its check (the
    # boosters' and onnxruntime's work releases the interpreter lock)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pgmodels-post-fit") as beside:
        explained = beside.submit(explain_build.build, fitted, task, names, kinds, X[train])
        profiled = beside.submit(prediction_profile, task, fitted, X, labels, test, predicted_test)
        referenced = beside.submit(training_profile.of_training, task, features, target)
        artifact, runtime, conversion = convert.serialize(fitted, task, names, kinds, X[test], y_scale, native)
        # while those finish: a tree ensemble's trees as the C library walks them, checked
        # against onnxruntime, stored with the version (a backend's first predict() then
        # starts no onnxruntime)
        trees = serving_native.checked_translation(artifact, runtime, task, labels, len(names))
        explainer, explainer_info = explained.result()
        predictions = profiled.result()
        reference = referenced.result()
    return TrainedModel(
        artifact=artifact, runtime=runtime, feature_names=names, feature_types=kinds,
        labels=labels, metrics=metrics,
        hyperparams=used_hyperparams(fitted[-1]), search_results=results,
        conversion=conversion, library_versions=library_versions(),
        notes=[note] if note else [], feature_importances=importances(fitted, names),
        evaluation=evaluation(task, predicted_test, y[test], len(labels) if labels else None),
        prediction_profile=predictions, reference_profile=reference,
        explainer=explainer, explainer_info=explainer_info, native_trees=trees)


def prediction_profile(task: str, fitted, X, labels, test=None, predicted_test=None) -> dict | None:
    """The distribution of the model's own answers on the rows it was trained and tested
    on: what drift() compares the answers on current rows with (the true labels' would
    flag any imperfect model). predicted_test: the answers on the rows test indexes,
    already made (the test metrics'); the other rows are predicted here."""
    from ..monitor import profile  # pure numpy: this runs in the training child, and in unit tests

    if predicted_test is not None and len(test):
        rest = np.ones(len(X), dtype=bool)
        rest[test] = False
        predicted = np.empty(len(X), dtype=np.asarray(predicted_test).dtype)
        predicted[test] = np.asarray(predicted_test).reshape(-1)
        if rest.any():
            predicted[rest] = np.asarray(fitted.predict(X[rest])).reshape(-1)
    else:
        predicted = np.asarray(fitted.predict(X)).reshape(-1)
    if task == "classification":
        classes, counts = np.unique(predicted.astype(np.int64), return_counts=True)
        return profile.categorical_counts({profile.label_text(labels[int(i)]): int(n)
                                           for i, n in zip(classes, counts)}, len(predicted))
    return profile.numeric(predicted.astype(np.float64))


def importances(fitted, names: list[str]) -> dict | None:
    """The fitted model's feature importances (trees) or absolute coefficients (linear
    models, averaged over classes), summed back onto the relation's features when the
    preprocessing expanded them (one-hot columns named feature_value); None otherwise."""
    model = fitted[-1]
    values = getattr(model, "feature_importances_", None)
    if values is None and getattr(model, "coef_", None) is not None:
        coef = np.abs(np.asarray(model.coef_, dtype=np.float64))
        values = coef.mean(axis=0) if coef.ndim == 2 else coef
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) == len(names):
        return {n: float(v) for n, v in zip(names, values)}
    try:
        out_names = [str(n).split("__", 1)[-1] for n in fitted[:-1].get_feature_names_out(names)]
    except Exception:  # noqa: BLE001 - a preprocessor that cannot name its columns: no importances
        return None
    if len(out_names) != len(values):
        return None
    total = {n: 0.0 for n in names}
    for out, v in zip(out_names, values):
        owner = out if out in total else next((n for n in sorted(names, key=len, reverse=True)
                                               if out.startswith(n + "_")), None)
        if owner is None:
            return None
        total[owner] += float(v)
    return total


def _pipeline(preprocessor, estimator):
    from sklearn.pipeline import Pipeline

    steps = [("preprocess", preprocessor)] if preprocessor is not None else []
    return Pipeline(steps + [(searching.STEP, estimator)])


def _fit(spec: TrainSpec, task: str, pipeline, X, y):
    """(fitted pipeline, search results or None, seconds spent fitting)."""
    model = pipeline
    if spec.search:
        model = searching.make_search(spec.search, spec.search_params, spec.search_args,
                                      pipeline, task)
    progress.fitting(spec.algorithm, spec.search, getattr(model, "scoring", None), len(y))
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Convergence and similar warnings would reach the client as noise; the
            # metrics tell the user how well the model did.
            warnings.simplefilter("ignore")
            model.fit(X, y)
    except (ValueError, TypeError, ArithmeticError, *boosters.fit_errors()) as e:  # InvalidParameterError, XGBoostError
        raise PgmodelsError(f"could not fit algorithm {q(spec.algorithm)}",
                            detail=_first_line(e),
                            hint="Check the hyperparameters and search_params values.",
                            sqlstate=INVALID_PARAMETER_VALUE) from None
    elapsed = time.perf_counter() - start
    if spec.search:
        return model.best_estimator_, searching.search_results(model), elapsed
    return model, None, elapsed


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    detail = text[0] if text else type(e).__name__
    return detail if detail.endswith(".") else detail + "."


def encode_target(task: str, target: Column) -> tuple[np.ndarray, list | None]:
    """(y, labels): float values for regression; class indices and sorted labels otherwise."""
    kinds = set(map(type, target.values))
    # plain numbers (what SPI hands over for integers and float8): checked by numpy at once
    numbers = np.asarray(target.values, dtype=np.float64) if kinds and kinds <= {int, float} else None
    values = target.values if numbers is not None else \
        [v.item() if isinstance(v, np.generic) else v for v in target.values]
    nulls = 0 if numbers is not None else sum(v is None for v in values)
    if nulls:
        raise PgmodelsError(f"target column {q(target.name)} contains NULL values",
                            detail=f"{nulls} of {len(values)} rows have a NULL target.",
                            hint="Filter these rows out of the training relation.",
                            sqlstate=NULL_VALUE_NOT_ALLOWED)
    if target.kind == "float" and (numbers is None or not np.isfinite(numbers).all()):
        for v in values:
            if isinstance(v, str) or not math.isfinite(float(v)):
                raise PgmodelsError(f"target column {q(target.name)} contains {q(v)}",
                                    detail="A numeric target must hold finite numbers.",
                                    sqlstate=INVALID_PARAMETER_VALUE)
    if task == "regression":
        if target.kind != "float":
            raise PgmodelsError(f"regression target {q(target.name)} must be numeric",
                                hint="Use task 'classification' for a text target.",
                                sqlstate=DATATYPE_MISMATCH)
        return (numbers if numbers is not None else np.array([float(v) for v in values], dtype=np.float64)), None
    if target.kind == "text":
        values = [str(v) for v in values]
    if target.kind != "text" and (kinds == {int} if numbers is not None else all(type(v) is int for v in values)):
        # integer classes (the usual 0/1): encoded by numpy
        labels_array, y = np.unique(np.asarray(values, dtype=np.int64), return_inverse=True)
        labels = labels_array.tolist()
    else:
        labels, y = sorted(set(values)), None
    if len(labels) < 2:
        raise PgmodelsError(f"target column {q(target.name)} has only one class",
                            detail=f"Every row has the value {q(labels[0])}." if labels else None,
                            hint="Classification needs at least two distinct target values.",
                            sqlstate=DATA_EXCEPTION)
    if y is not None:
        return y.astype(np.int64).reshape(-1), labels
    index = {v: i for i, v in enumerate(labels)}
    return np.array([index[v] for v in values], dtype=np.int64), labels


def _check_features(features: list[Column], target: Column) -> None:
    if not features:
        raise PgmodelsError("no feature columns", hint="Train on a relation with at least "
                            "one column besides the target.", sqlstate=INVALID_PARAMETER_VALUE)
    names = [f.name for f in features]
    for f in features:
        if f.kind not in ("float", "text"):
            raise PgmodelsError(f"column {q(f.name)} has unsupported kind {q(f.kind)}",
                                sqlstate=DATATYPE_MISMATCH)
        if names.count(f.name) > 1:
            raise PgmodelsError(f"duplicate feature column {q(f.name)}",
                                sqlstate=INVALID_PARAMETER_VALUE)
        if len(f.values) != len(target.values):
            raise PgmodelsError("feature and target columns have different lengths",
                                sqlstate=DATA_EXCEPTION)
    if target.kind not in ("float", "text"):
        raise PgmodelsError(f"target column {q(target.name)} has unsupported kind {q(target.kind)}",
                            sqlstate=DATATYPE_MISMATCH)
    if len(target.values) == 0:
        raise PgmodelsError("relation has no rows", sqlstate=DATA_EXCEPTION)


def _check_train_classes(y_train: np.ndarray, labels: list) -> None:
    missing = [labels[i] for i in range(len(labels)) if not (y_train == i).any()]
    if missing:
        raise PgmodelsError("the training split has no rows of class "
                            + ", ".join(repr(m) for m in missing[:5]),
                            detail="Every class must appear in the training split.",
                            hint="Use test_sampling 'stratified', a smaller test_size, or more rows.",
                            sqlstate=DATA_EXCEPTION)


def used_hyperparams(estimator) -> dict:
    """The estimator's parameters as fitted, JSON-safe (objects become their repr)."""
    return {k: jsonable(v) for k, v in sorted(estimator.get_params(deep=False).items())}


def library_versions() -> dict:
    """Versions of the libraries that trained and converted the model (None if absent)."""
    import importlib

    out = {}
    for key in ("sklearn", "xgboost", "onnx", "onnxruntime", "skl2onnx", "onnxmltools",
                "numpy", "skops"):
        try:
            out[key] = str(importlib.import_module(key).__version__)
        except ImportError:
            out[key] = None
    return out
