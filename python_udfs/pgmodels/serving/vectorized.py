"""Scoring many rows in one onnxruntime run: the one vectorized path (and, when asked, the
rows' per-feature contributions, from the model's explainer).

predict_batch() and the batch jobs' chunks (and any mode that scores rows in bulk) come
here. Rows arrive as columns, the way SQL can hand them over cheaply: the numeric
features as the array_send() bytes of one rows x features real[] (numpy reads them in
place), the text features, if the model has any, as a rows x features text[]. NULL is
imputed where the model was trained to impute it and refused elsewhere; NaN, Infinity
and values beyond single precision are refused, naming the feature and the row.
"""

from __future__ import annotations

import math

from .._lazy import numpy_for
from ..errors import FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, NULL_VALUE_NOT_ALLOWED, PgmodelsError
from .inputs import array_dims, from_array_send
from .runtime import Model

np = numpy_for(__name__)  # imported at its first use (_lazy.py)

OUTPUTS = ("prediction", "probabilities", "label", "contributions")


def numeric_features(model: Model) -> list[int]:
    """Positions (in the model's feature order) of the features that travel as numbers."""
    return [i for i, t in enumerate(model.feature_types) if t != "text"]


def text_features(model: Model) -> list[int]:
    return [i for i, t in enumerate(model.feature_types) if t == "text"]


def _matrix(model: Model, data: bytes | None, rows: int | None) -> np.ndarray:
    """The numeric features as a rows x n float32 matrix, NULLs imputed (NaN) or refused."""
    positions = numeric_features(model)
    n = len(positions)
    if data is None:
        return np.zeros((rows or 0, 0), dtype=np.float32)
    dims = array_dims(data)
    if len(dims) != 2 or dims[1] != n:
        shape = " x ".join(map(str, dims)) or "empty"
        raise PgmodelsError(f"rows of numeric features must be a rows x {n} array, got {shape}",
                            detail=f"{model.describe()} takes {n} numeric features.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    values = from_array_send(data)
    if isinstance(values, np.ndarray):
        X = values.reshape(-1, n)
    else:  # NULLs: decoded one by one
        nulls = np.array([v is None for v in values], dtype=bool).reshape(-1, n)
        X = np.array([math.nan if v is None else v for v in values], dtype=np.float32).reshape(-1, n)
        for j in np.flatnonzero(nulls.any(axis=0)):
            name = model.feature_names[positions[j]]
            if name not in model.nullable:
                row = int(np.argmax(nulls[:, j])) + 1
                raise PgmodelsError(f'feature "{name}" is NULL in row {row}',
                                    detail=f"{model.describe()} was trained with impute \"error\" for this feature.",
                                    hint="Fill the column, or retrain with preprocess => "
                                         "'{\"%s\": {\"impute\": \"mean\"}}'." % name,
                                    sqlstate=NULL_VALUE_NOT_ALLOWED)
        bad = ~np.isfinite(X) & ~nulls
        if bad.any():
            _refuse(model, positions, bad, X)
        return X
    bad = ~np.isfinite(X)
    if bad.any():
        _refuse(model, positions, bad, X)
    return X


def _refuse(model: Model, positions: list[int], bad: np.ndarray, X: np.ndarray):
    row, j = (int(v) for v in np.argwhere(bad)[0])
    value = float(X[row, j])
    text = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    raise PgmodelsError(f'feature "{model.feature_names[positions[j]]}" of row {row + 1} is {text}',
                        detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                        hint="Pass NULL for a missing value if the model imputes it.",
                        sqlstate=INVALID_PARAMETER_VALUE)


def _texts(model: Model, texts: list | None, rows: int) -> np.ndarray:
    positions = text_features(model)
    if not positions:
        return np.zeros((rows, 0), dtype=object)
    if texts is None or len(texts) != rows or any(not isinstance(r, list) or len(r) != len(positions) for r in texts):
        raise PgmodelsError(f"rows of text features must be a rows x {len(positions)} text array",
                            detail=f"{model.describe()} takes {len(positions)} text features.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    T = np.array(texts, dtype=object).reshape(rows, len(positions))
    for j, i in enumerate(positions):
        missing = [r for r in range(rows) if T[r, j] is None]
        if missing:
            name = model.feature_names[i]
            if name not in model.nullable:
                raise PgmodelsError(f'feature "{name}" is NULL in row {missing[0] + 1}',
                                    detail=f"{model.describe()} was trained with impute \"error\" for this feature.",
                                    sqlstate=NULL_VALUE_NOT_ALLOWED)
            for r in missing:
                T[r, j] = ""
    return T


def feed(model: Model, numeric: bytes | None, texts: list | None = None) -> tuple[dict, int]:
    """The onnxruntime feed (or native input) for a block of rows, and the number of rows."""
    rows = len(texts) if numeric is None and texts is not None else None
    X = _matrix(model, numeric, rows)
    rows = X.shape[0]
    T = None if model.all_float else _texts(model, texts, rows)
    return feed_arrays(model, X, T), rows


def feed_arrays(model: Model, X: np.ndarray, T: np.ndarray | None) -> dict:
    """The feed for checked matrices: X the numeric features (rows x numeric features,
    float32), T the text features (rows x text features, object), in the model's order."""
    if model.all_float:
        return model.engine.feed(model, X, None)
    columns, ni, ti = {}, 0, 0
    for name, kind in zip(model.feature_names, model.feature_types):
        if kind == "text":
            columns[name] = T[:, ti:ti + 1].astype(object)
            ti += 1
        else:
            columns[name] = X[:, ni:ni + 1]
            ni += 1
    return model.engine.feed(model, None, columns)


def answers(model: Model, fed: dict, rows: int, outputs) -> dict:
    """The requested outputs for a fed block: prediction (real), label (text) and
    probabilities (a rows x classes float32 matrix)."""
    out = {}
    if rows == 0:
        return {"prediction": [], "label": [], "probabilities": np.zeros((0, 0), dtype=np.float32)}
    wanted = set(outputs)
    if model.task != "classification":
        if wanted - {"prediction"}:
            raise PgmodelsError(f"{model.describe()} is a {model.task} model; outputs probabilities and label "
                                "need a classifier", sqlstate=FEATURE_NOT_SUPPORTED)
        out["prediction"] = model.engine.values(fed).astype(np.float64).tolist()
        return out
    if "prediction" in wanted or "label" in wanted:
        index = model.engine.labels(fed).astype(np.int64)
        labels = model.labels or []
        if "prediction" in wanted:
            numeric = [float(v) if isinstance(v, (int, float)) else float(i) for i, v in enumerate(labels)]
            out["prediction"] = [numeric[i] if 0 <= i < len(numeric) else float(i) for i in index.tolist()]
        if "label" in wanted:
            text = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in labels]
            out["label"] = [text[i] if 0 <= i < len(text) else str(i) for i in index.tolist()]
    if "probabilities" in wanted:
        out["probabilities"] = model.engine.probabilities(fed)
    return out


def checked(model: Model, numeric: bytes | None, texts: list | None) -> tuple[np.ndarray, np.ndarray | None]:
    """A block's numeric features as a checked matrix, and its text features (or None)."""
    rows = len(texts) if numeric is None and texts is not None else None
    X = _matrix(model, numeric, rows)
    return X, None if model.all_float else _texts(model, texts, X.shape[0])


def score(model: Model, numeric: bytes | None, texts: list | None, outputs, explainer=None, top_n=None) -> dict:
    """The outputs asked for, of a block of rows; "contributions" (with the model's
    explainer, which only pgmodels._explain_lookup hands out) adds, per row, a dict of
    feature -> contribution with the base as "(base)" (top_n: the largest ones only, the
    rest summed as "(other)"), and the explanation itself as "explanation"."""
    X, T = checked(model, numeric, texts)
    fed = feed_arrays(model, X, T)
    out = answers(model, fed, X.shape[0], [o for o in outputs if o != "contributions"])
    if "contributions" in outputs:
        out.update(contributions(model, explainer, X, T, top_n))
    return out


def contributions(model: Model, explainer, X: np.ndarray, T: np.ndarray | None, top_n=None) -> dict:
    """The contributions output of checked rows (X numeric, T text, as feed_arrays takes
    them): the same numbers explain_batch() gives, for the class it explains by default."""
    from ..explain import answer

    if explainer is None:
        raise PgmodelsError("the contributions output needs the model's explainer",
                            detail="It is loaded only by pgmodels._explain_lookup, which checks the explain privilege.",
                            sqlstate=FEATURE_NOT_SUPPORTED)
    answer.check_top_n(top_n)
    rows = X.shape[0]
    if rows == 0:
        return {"contributions": [], "explanation": None}
    if model.all_float:
        design = X.astype(np.float64)
    else:
        design = np.empty((rows, model.n_features), dtype=object)
        ni = ti = 0
        for j, kind in enumerate(model.feature_types):
            if kind == "text":
                design[:, j] = T[:, ti]
                ti += 1
            else:
                design[:, j] = X[:, ni].astype(np.float64)
                ni += 1
    explained = answer.explain(model, explainer, design)
    return {"contributions": answer.as_json(explainer, explained, top_n), "explanation": explained}
