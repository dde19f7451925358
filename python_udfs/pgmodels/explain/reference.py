"""An approximate explainer from set_reference()'s rows, for a model that has none from
training (an imported ONNX model, above all).

set_reference() reads a relation's rows as its caller (the project's owner) and scores
them with the model; this takes those rows (the ones the model can score), draws the
sampling estimate's background from them with the fixed seed, measures the global
importance on them, and stores the record with the version, marked as set_reference's.
A later set_reference() replaces it; an explainer made by training is never replaced.
"""

from __future__ import annotations

import numpy as np

from .._plpy import query
from ..serving import cache
from ..serving.runtime import Model
from . import build
from .answer import _model_function
from .store import store_explainer


def from_reference(project: str, model_id: int, X: np.ndarray, T: np.ndarray | None, keep: np.ndarray) -> dict | None:
    """Store an explainer for the model from its reference rows (X: numeric features,
    T: text ones, keep: the rows it can score); None when it has one from training, or
    cannot be explained (a classifier without probabilities)."""
    made = query("SELECT source FROM pgmodels.explainers WHERE model_id = $1", [model_id], ["bigint"])
    if made and made[0]["source"] == "training":
        return None
    model: Model = cache._loaded.get(model_id)   # predictions() loaded it for this statement
    if model is None:
        return None
    rows = _design(model, X[keep], None if T is None else T[keep])
    if len(rows) == 0:
        return None
    f = _model_function(model)
    try:
        f(rows[:1])
    except Exception:  # noqa: BLE001 - no probability output, say: nothing to explain
        return None
    blob, info = build.sampled(f, model.feature_names, model.feature_types, model.task == "classification", rows,
                               np.random.default_rng(build.SEED), "explained from set_reference()'s rows",
                               source="reference rows")
    store_explainer(model.id, blob, info, "set_reference")
    return info


def _design(model: Model, X: np.ndarray, T: np.ndarray | None) -> np.ndarray:
    if model.all_float:
        return np.asarray(X, dtype=np.float64)
    out = np.empty((len(X), model.n_features), dtype=object)
    ni = ti = 0
    for j, kind in enumerate(model.feature_types):
        if kind == "text":
            out[:, j] = ["" if v is None else str(v) for v in T[:, ti]]
            ti += 1
        else:
            out[:, j] = X[:, ni].astype(np.float64)
            ni += 1
    return out
