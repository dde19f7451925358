"""The training pipeline's preprocessing, as data: what turns the user's features into
the model's columns, and which user feature each model column came from.

Trained pipelines are ``[ColumnTransformer of training.preprocess, estimator]`` (or the
estimator alone when every feature passes through). An exact explainer works in the
estimator's own feature space, so it needs that space's row for every row it explains;
this module writes the fitted steps down as plain JSON (categories, fill values, scaler
constants: no code) and replays them with numpy. :func:`spec_of` refuses a step it does
not know, and the explainer's builder checks the replay against the pipeline's own
``transform`` on training rows before the spec is stored.

A spec is a list of blocks, in the ColumnTransformer's output order:
``{"inputs": [input column, ...], "steps": [step, ...], "width": n output columns}``.
A block of several inputs passes them through (one output each); a block of one input
may expand it (one-hot: one output per category; target encoding of a multi-class
target: one per class), and every output of such a block belongs to that input.
"""

from __future__ import annotations

import numpy as np

MISSING_TEXT = ""  # training.preprocess's NULL text (not imported: serving need not load scikit-learn)


class Unknown(Exception):
    """A preprocessing step this module cannot replay."""


def identity(n_inputs: int) -> list[dict]:
    return [{"inputs": list(range(n_inputs)), "steps": [{"op": "float"}], "width": n_inputs}]


def spec_of(preprocessor, n_inputs: int) -> list[dict]:
    """The spec of a fitted ColumnTransformer (None: every feature passes through)."""
    if preprocessor is None:
        return identity(n_inputs)
    blocks = []
    for name, transformer, columns in preprocessor.transformers_:
        if transformer == "drop" or name == "remainder":
            if transformer not in ("drop",) and len(columns):
                raise Unknown("a remainder that is kept")
            continue
        columns = [int(c) for c in columns]
        steps = _steps(transformer)
        width = len(columns)
        for step in steps:
            if step["op"] == "one_hot":
                width = len(step["categories"])
            elif step["op"] == "target":
                width = len(step["encodings"])
        if len(columns) > 1 and width != len(columns):
            raise Unknown("a block of several columns that changes their number")
        blocks.append({"inputs": columns, "steps": steps, "width": width})
    return blocks


def _steps(transformer) -> list[dict]:
    from sklearn.pipeline import Pipeline

    if isinstance(transformer, str):
        if transformer != "passthrough":
            raise Unknown(f"transformer {transformer!r}")
        return [{"op": "float"}]
    if isinstance(transformer, Pipeline):
        return [s for _, t in transformer.steps for s in _steps(t)]
    return [_step(transformer)]


def _step(t) -> dict:
    name = type(t).__name__
    if name == "AsFloat":
        return {"op": "float"}
    if name == "SimpleImputer":
        fill = t.statistics_.tolist()
        text = isinstance(t.missing_values, str)
        return {"op": "impute_text" if text else "impute", "fill": [str(v) for v in fill] if text else fill}
    if name == "OneHotEncoder":
        if t.drop_idx_ is not None or getattr(t, "infrequent_categories_", None) is not None \
                and any(c is not None for c in t.infrequent_categories_):
            raise Unknown("one-hot encoding that drops or pools categories")
        return {"op": "one_hot", "categories": [str(c) for c in t.categories_[0]]}
    if name == "OrdinalEncoder":
        return {"op": "ordinal", "categories": [str(c) for c in t.categories_[0]],
                "unknown": float(t.unknown_value) if t.unknown_value is not None else np.nan}
    if name == "TargetEncoder":
        mean = np.atleast_1d(np.asarray(t.target_mean_, dtype=np.float64)).tolist()
        return {"op": "target", "categories": [str(c) for c in t.categories_[0]],
                "encodings": [np.asarray(e, dtype=np.float64).tolist() for e in t.encodings_], "unknown": mean}
    if name == "StandardScaler":
        n = t.n_features_in_
        return {"op": "affine", "sub": (t.mean_ if t.mean_ is not None else np.zeros(n)).tolist(),
                "div": (t.scale_ if t.scale_ is not None else np.ones(n)).tolist()}
    if name == "RobustScaler":
        n = t.n_features_in_
        return {"op": "affine", "sub": (t.center_ if t.center_ is not None else np.zeros(n)).tolist(),
                "div": (t.scale_ if t.scale_ is not None else np.ones(n)).tolist()}
    if name == "MaxAbsScaler":
        return {"op": "affine", "sub": np.zeros(t.n_features_in_).tolist(), "div": t.scale_.tolist()}
    if name == "MinMaxScaler":
        if t.clip:
            raise Unknown("a clipping min-max scaler")
        # x * scale_ + min_ = (x - (-min_ / scale_)) / (1 / scale_)
        scale = np.asarray(t.scale_, dtype=np.float64)
        return {"op": "scale_shift", "mul": scale.tolist(), "add": np.asarray(t.min_, dtype=np.float64).tolist()}
    raise Unknown(f"preprocessing step {name}")


def owners(spec: list[dict]) -> np.ndarray:
    """For each model column, the input column it came from."""
    out = []
    for b in spec:
        out += b["inputs"] if len(b["inputs"]) > 1 else b["inputs"] * b["width"]
    return np.asarray(out, dtype=np.int64)


def apply(spec: list[dict], X: np.ndarray) -> np.ndarray:
    """The model-space rows (float64) of design-matrix rows X (float, or object with text)."""
    n = X.shape[0]
    if len(spec) == 1 and spec[0]["steps"] == [{"op": "float"}] and spec[0]["inputs"] == list(range(X.shape[1])):
        return np.asarray(X, dtype=np.float64)      # every feature passes through
    parts = []
    for b in spec:
        A = X[:, b["inputs"]]
        for step in b["steps"]:
            A = _run(step, A)
        parts.append(np.asarray(A, dtype=np.float64).reshape(n, b["width"]))
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))


def _run(step: dict, A: np.ndarray) -> np.ndarray:
    op = step["op"]
    if op == "float":
        return A.astype(np.float64)
    if op == "impute":
        A = A.astype(np.float64)
        return np.where(np.isnan(A), np.asarray(step["fill"])[None, :], A)
    if op == "impute_text":
        return np.where(A == MISSING_TEXT, np.asarray(step["fill"], dtype=object)[None, :], A)
    if op == "affine":
        return (A.astype(np.float64) - np.asarray(step["sub"])) / np.asarray(step["div"])
    if op == "scale_shift":
        return A.astype(np.float64) * np.asarray(step["mul"]) + np.asarray(step["add"])
    column = np.asarray([str(v) for v in A[:, 0]], dtype=object)
    index = {c: i for i, c in enumerate(step["categories"])}
    position = np.fromiter((index.get(v, -1) for v in column), dtype=np.int64, count=len(column))
    if op == "one_hot":
        out = np.zeros((len(column), len(step["categories"])))
        known = position >= 0
        out[np.flatnonzero(known), position[known]] = 1.0
        return out
    if op == "ordinal":
        return np.where(position >= 0, position, step["unknown"]).astype(np.float64)[:, None]
    if op == "target":
        enc = np.asarray(step["encodings"], dtype=np.float64)          # (outputs, categories)
        unknown = np.asarray(step["unknown"], dtype=np.float64)
        out = np.where(position[:, None] >= 0, enc[:, np.maximum(position, 0)].T, unknown[None, :])
        return out
    raise Unknown(f"step {op!r}")


def names(spec: list[dict], feature_names: list[str]) -> list[str]:
    """A readable name for each model column: the input's, with the category for one-hot."""
    out = []
    for b in spec:
        if len(b["inputs"]) > 1 or b["width"] == 1:
            out += [feature_names[i] for i in b["inputs"]]
            continue
        name = feature_names[b["inputs"][0]]
        cats = next((s["categories"] for s in b["steps"] if s["op"] == "one_hot"), None)
        out += [f"{name}={c}" for c in cats] if cats else [f"{name}#{k}" for k in range(b["width"])]
    return out
