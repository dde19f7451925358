"""Scores on the test split, computed with the fitted native pipeline.

Every value is a plain Python float or None (NaN and undefined scores become None), so
the dict is JSON as it stands.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np


def clean(value):
    """A JSON-safe Python scalar: numpy scalars unwrapped, NaN/inf -> None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def score(task: str, pipeline, X_test, y_test, n_classes: int | None = None) -> tuple[dict, dict]:
    """Test metrics plus score_time (seconds spent predicting the test split), and the
    native model's answers on it: {"predict", "proba" (a classifier's, or None)}, which
    the conversion's check, the evaluation and the prediction profile use again."""
    start = time.perf_counter()
    predicted = pipeline.predict(X_test)
    scores = proba = None
    if task == "classification":
        proba = _proba(pipeline, X_test)
        scores = _class_scores(pipeline, X_test, proba) if n_classes == 2 else None
    elapsed = time.perf_counter() - start
    with warnings.catch_warnings():
        # Undefined metrics on tiny test splits warn; we report None or 0 instead.
        warnings.simplefilter("ignore")
        if task == "regression":
            out = regression_metrics(y_test, predicted)
        else:
            out = classification_metrics(y_test, predicted, scores, n_classes)
    out["score_time"] = elapsed
    return ({k: clean(float(v)) if v is not None else None for k, v in out.items()},
            {"predict": np.asarray(predicted), "proba": proba})


def evaluation(task: str, predicted, y_test, n_classes: int | None = None) -> dict | None:
    """What a version's page draws from the model's predictions on the test split: the
    confusion matrix (rows: true class, columns: predicted, in label order), or for
    regression the residuals' quantiles and a 20-bin histogram."""
    if len(y_test) == 0:
        return None
    predicted = np.asarray(predicted)
    if task == "classification":
        from sklearn import metrics as m

        matrix = m.confusion_matrix(np.asarray(y_test).astype(np.int64), predicted.astype(np.int64).reshape(-1),
                                    labels=list(range(n_classes or int(max(y_test.max(), predicted.max()) + 1))))
        return {"confusion_matrix": matrix.tolist()}
    residuals = np.asarray(y_test, dtype=np.float64) - predicted.astype(np.float64).reshape(-1)
    counts, edges = np.histogram(residuals, bins=20)
    return {"residuals": {"quantiles": np.quantile(residuals, [0, 0.05, 0.25, 0.5, 0.75, 0.95, 1]).tolist(),
                          "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}}


def regression_metrics(y, predicted) -> dict:
    from sklearn import metrics as m

    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    return {
        "r2": m.r2_score(y, predicted) if len(y) > 1 else None,
        "mean_absolute_error": m.mean_absolute_error(y, predicted),
        "mean_squared_error": m.mean_squared_error(y, predicted),
    }


def classification_metrics(y, predicted, scores, n_classes) -> dict:
    """Macro-averaged f1/precision/recall, accuracy, MCC; roc_auc and log_loss if binary.

    ``scores`` is (kind, values) with kind 'proba' (P(class 1)) or 'decision'
    (decision_function), or None.
    """
    from sklearn import metrics as m

    out = {
        "f1": m.f1_score(y, predicted, average="macro", zero_division=0),
        "precision": m.precision_score(y, predicted, average="macro", zero_division=0),
        "recall": m.recall_score(y, predicted, average="macro", zero_division=0),
        "accuracy": m.accuracy_score(y, predicted),
        "mcc": m.matthews_corrcoef(y, predicted),
    }
    if n_classes == 2:
        out["roc_auc"] = out["log_loss"] = None
        if scores is not None and len(np.unique(y)) == 2:
            out["roc_auc"] = m.roc_auc_score(y, scores[1])
        if scores is not None and scores[0] == "proba":
            out["log_loss"] = m.log_loss(y, np.clip(scores[1], 1e-15, 1 - 1e-15), labels=[0, 1])
    return out


def _proba(pipeline, X):
    """A classifier's probabilities, or None when it has none."""
    if hasattr(pipeline, "predict_proba"):
        try:
            return np.asarray(pipeline.predict_proba(X))
        except AttributeError:  # e.g. SGDClassifier with hinge loss
            pass
    return None


def _class_scores(pipeline, X, proba=None):
    if proba is not None:
        return "proba", proba[:, 1]
    if hasattr(pipeline, "decision_function"):
        return "decision", np.asarray(pipeline.decision_function(X)).reshape(-1)
    return None
