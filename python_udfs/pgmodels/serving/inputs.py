"""Turning SQL values into model inputs, and refusing the ones a model cannot take.

Three shapes arrive: an array of numbers (one row), a mapping of feature name to value
(a composite row or a jsonb object), and a flattened array of many rows
(predict_batch). NULL goes to the column's configured imputation as NaN, or is refused
when the model was trained with impute "error"; NaN and Infinity are always refused.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import (DATATYPE_MISMATCH, INVALID_PARAMETER_VALUE, INVALID_TEXT_REPRESENTATION,
                      NULL_VALUE_NOT_ALLOWED, PgmodelsError)
from .runtime import Model


def _needs_row(model: Model) -> PgmodelsError:
    texts = [n for n, t in zip(model.feature_names, model.feature_types) if t == "text"]
    return PgmodelsError(f"{model.describe()} needs text features, which a numeric array cannot carry",
                         detail="Text features: %s." % ", ".join(texts),
                         hint="Pass a row (predict(project, t) FROM t) or a jsonb object keyed by feature name.",
                         sqlstate=DATATYPE_MISMATCH)


def _null(model: Model, index: int) -> float:
    name = model.feature_names[index]
    if name in model.nullable:
        return math.nan
    raise PgmodelsError(f'feature "{name}" is NULL',
                        detail=f"{model.describe()} was trained with impute \"error\" for this feature.",
                        hint="Pass a value, or retrain with preprocess => '{\"%s\": {\"impute\": \"mean\"}}'." % name,
                        sqlstate=NULL_VALUE_NOT_ALLOWED)


def _not_finite(model: Model, values) -> PgmodelsError:
    bad = next(i for i, v in enumerate(values) if v is not None and not math.isfinite(v))
    return PgmodelsError(f'feature "{model.feature_names[bad]}" is {values[bad]}',
                         detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                         hint="Pass NULL for a missing value if the model imputes it.",
                         sqlstate=INVALID_PARAMETER_VALUE)


def row_array(model: Model, values: list) -> np.ndarray:
    """One row given as an array, in the model's feature order: a [1, n] float32 matrix."""
    if values and isinstance(values[0], list):
        raise PgmodelsError("features must be a one-dimensional array",
                            hint="Use predict_batch() for many rows, flattened into one array.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if len(values) != model.n_features:
        raise PgmodelsError(f"{model.describe()} takes {model.n_features} features, got {len(values)}",
                            detail="Features, in order: %s." % ", ".join(model.feature_names),
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not model.all_float:
        raise _needs_row(model)
    given = [v for v in values if v is not None] if None in values else values
    total = sum(given)
    if total - total != 0 and not all(map(math.isfinite, given)):  # the cheap test first
        raise _not_finite(model, values)
    if given is not values:
        values = [_null(model, i) if v is None else v for i, v in enumerate(values)]
    return np.array(values, dtype=np.float32).reshape(1, -1)


def from_array_send(data: bytes) -> list | np.ndarray:
    """Decode array_send(real[]) output: PostgreSQL's binary array format.

    predict_batch passes its features this way because turning a million-element array
    into a Python list costs more than scoring it. Without NULLs the elements sit at a
    fixed stride and numpy reads them in place; with NULLs they are decoded one by one
    (None for NULL), for flat_array to impute or refuse.
    """
    ndim, has_null = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    offset = 12 + 8 * ndim
    if not has_null:
        fields = np.frombuffer(data, dtype=[("length", ">i4"), ("value", ">f4")], offset=offset)
        return fields["value"].astype(np.float32)
    values, view = [], memoryview(data)
    while offset < len(data):
        length = int.from_bytes(view[offset:offset + 4], "big", signed=True)
        offset += 4
        if length < 0:
            values.append(None)
        else:
            values.append(float(np.frombuffer(view[offset:offset + 4], dtype=">f4")[0]))
            offset += length
    return values


def flat_array(model: Model, values) -> np.ndarray:
    """Many rows flattened into one array (predict_batch): an [m, n] float32 matrix."""
    n = model.n_features
    if len(values) % n:
        raise PgmodelsError(f"{len(values)} values are not a whole number of rows of {n} features",
                            detail=f"{model.describe()} takes {n} features per row.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not model.all_float:
        raise _needs_row(model)
    if isinstance(values, np.ndarray):  # from_array_send: no NULLs
        X = values.reshape(-1, n)
        if not np.isfinite(X).all():
            bad = int(np.argmin(np.isfinite(X).reshape(-1)))
            raise PgmodelsError(f'feature "{model.feature_names[bad % n]}" of row {bad // n + 1} is {values[bad]}',
                                detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                                sqlstate=INVALID_PARAMETER_VALUE)
        return X
    nulls = None
    if None in values:
        nulls = np.array([v is None for v in values]).reshape(-1, n)
        values = [_null(model, i % n) if v is None else v for i, v in enumerate(values)]
    X = np.array(values, dtype=np.float64).reshape(-1, n)
    finite = np.isfinite(X) if nulls is None else (np.isfinite(X) | nulls)  # NULL became NaN on purpose
    if not finite.all():
        bad = int(np.argmin(finite.reshape(-1)))
        raise PgmodelsError(f'feature "{model.feature_names[bad % n]}" of row {bad // n + 1} is {values[bad]}',
                            detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return X.astype(np.float32)


def _number(model: Model, name: str, value) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        value = float(value)
        if not math.isfinite(value):
            raise PgmodelsError(f'feature "{name}" is {value}',
                                detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                                sqlstate=INVALID_PARAMETER_VALUE)
        return value
    try:  # numeric columns of a row arrive as Decimal
        return float(value) if not isinstance(value, str) else _text_in_number(model, name, value)
    except (TypeError, ValueError):
        return _text_in_number(model, name, value)


def _text_in_number(model: Model, name: str, value):
    raise PgmodelsError(f'feature "{name}" must be a number, not {type(value).__name__} {str(value)[:40]!r}',
                        detail=f"{model.describe()} was trained with \"{name}\" as a numeric feature.",
                        sqlstate=INVALID_TEXT_REPRESENTATION)


def mapping(model: Model, values: dict):
    """A composite row or a jsonb object: features matched by name, extra keys ignored.

    Returns (X, None) for all-float models and (None, columns) for mixed ones, where
    columns maps each feature to a [1, 1] array as the per-feature ONNX inputs want.
    """
    missing = [n for n in model.feature_names if n not in values]
    if missing:
        raise PgmodelsError("features missing from the input: %s" % ", ".join(missing),
                            detail=f"{model.describe()} takes: %s." % ", ".join(model.feature_names),
                            hint="Name the row's columns or the object's keys after the features.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if model.all_float:
        row = [_null(model, i) if values[n] is None else _number(model, n, values[n])
               for i, n in enumerate(model.feature_names)]
        return np.array(row, dtype=np.float32).reshape(1, -1), None
    columns = {}
    for i, (name, kind) in enumerate(zip(model.feature_names, model.feature_types)):
        v = values[name]
        if kind == "text":
            if v is None:
                _null(model, i)
                v = ""
            columns[name] = np.array([[v if isinstance(v, str) else str(v)]], dtype=object)
        else:
            columns[name] = np.array([[_null(model, i) if v is None else _number(model, name, v)]], dtype=np.float32)
    return None, columns
