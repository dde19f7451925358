"""One row of features as the model's inputs, with SQL predict()'s rules and errors.

This mirrors the row-wise part of pgmodels/serving/inputs.py on the server, without its
dependency on the server package: a list of numbers is a float8[] (one row in feature
order, a nested list read in row-major order), a list holding text is a jsonb array (an
anonymous row, positional), a dict is a row or jsonb object (matched by name, extra
keys ignored). None goes to the feature's imputation as NaN, or is refused when the
model was trained with impute "error"; NaN, Infinity and numbers beyond single
precision are always refused. The messages are the server's, word for word.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import (DATATYPE_MISMATCH, INVALID_PARAMETER_VALUE, INVALID_TEXT_REPRESENTATION,
                     NULL_VALUE_NOT_ALLOWED, NUMERIC_VALUE_OUT_OF_RANGE, EdgeError)

FLOAT32_MAX = 3.4028234663852886e38


def flatten(values) -> list:
    if not any(isinstance(v, list) for v in values):
        return values
    out = []
    for v in values:
        out.extend(flatten(v) if isinstance(v, list) else [v])
    return out


def is_numeric_list(values: list) -> bool:
    """A list SQL would take as float8[]: numbers, NULLs and nested lists of them."""
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
               or (isinstance(v, list) and is_numeric_list(v)) for v in values)


def positional(model, values: list) -> dict:
    names = model.feature_names
    if not model.array_features:
        flat = flatten(values)
        if len(flat) != len(names):
            raise _wrong_count(model, len(flat))
        return dict(zip(names, flat))
    out, i = {}, 0
    for v in values:
        if isinstance(v, list):
            v = flatten(v)
            out.update(zip(names[i:i + len(v)], v))
            i += len(v)
        else:
            if i < len(names):
                out[names[i]] = v
            i += 1
    if i != len(names):
        raise _wrong_count(model, i)
    return out


def _wrong_count(model, got: int) -> EdgeError:
    return EdgeError(f"{model.describe()} takes {model.n_features} features, got {got}",
                     detail="Features, in order: %s." % ", ".join(model.feature_names[:50]),
                     sqlstate=INVALID_PARAMETER_VALUE)


def _out_of_range(model, index: int, value) -> EdgeError:
    return EdgeError(f'feature "{model.feature_names[index]}" is {value}, outside the single-precision range',
                     detail="Models take single-precision (real) inputs, whose magnitude is at most 3.4028235e38.",
                     sqlstate=NUMERIC_VALUE_OUT_OF_RANGE)


def _needs_row(model) -> EdgeError:
    texts = [n for n, t in zip(model.feature_names, model.feature_types) if t == "text"]
    return EdgeError(f"{model.describe()} needs text features, which a numeric array cannot carry",
                     detail="Text features: %s." % ", ".join(texts),
                     hint="Pass a row (predict(project, t) FROM t) or a jsonb object keyed by feature name.",
                     sqlstate=DATATYPE_MISMATCH)


def _null(model, index: int) -> float:
    name = model.feature_names[index]
    if name in model.nullable:
        return math.nan
    raise EdgeError(f'feature "{name}" is NULL',
                    detail=f"{model.describe()} was trained with impute \"error\" for this feature.",
                    hint="Pass a value, or retrain with preprocess => '{\"%s\": {\"impute\": \"mean\"}}'." % name,
                    sqlstate=NULL_VALUE_NOT_ALLOWED)


def _not_finite(model, values) -> EdgeError:
    bad = next(i for i, v in enumerate(values) if v is not None and not math.isfinite(v))
    return EdgeError(f'feature "{model.feature_names[bad]}" is {values[bad]}',
                     detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                     hint="Pass NULL for a missing value if the model imputes it.",
                     sqlstate=INVALID_PARAMETER_VALUE)


def row_array(model, values: list) -> np.ndarray:
    """One row given as a numeric array: a [1, n] float32 matrix."""
    if values and isinstance(values[0], list):
        values = flatten(values)
        if len(values) != model.n_features:
            raise EdgeError(f"{model.describe()} takes {model.n_features} features, "
                            f"got a multi-dimensional array of {len(values)} elements",
                            detail="A multi-dimensional array is one row, read in row-major order.",
                            hint="Use predict_batch() for many rows.", sqlstate=INVALID_PARAMETER_VALUE)
    values = flatten(values)
    if len(values) != model.n_features:
        raise _wrong_count(model, len(values))
    if not model.all_float:
        raise _needs_row(model)
    for i, v in enumerate(values):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > FLOAT32_MAX:  # past float64 too, maybe
            raise _out_of_range(model, i, _big(v))
    values = [float(v) if v is not None else None for v in values]
    if any(v is not None and not math.isfinite(v) for v in values):
        raise _not_finite(model, values)
    bad = next((i for i, v in enumerate(values) if v is not None and abs(v) > FLOAT32_MAX), None)
    if bad is not None:
        raise _out_of_range(model, bad, values[bad])
    values = [_null(model, i) if v is None else v for i, v in enumerate(values)]
    return np.array(values, dtype=np.float32).reshape(1, -1)


def _big(v: int) -> str:
    """A huge integer as a short number (float() of it may overflow)."""
    try:
        return repr(float(v))
    except OverflowError:
        digits = str(abs(v))
        return f"{'-' if v < 0 else ''}{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"


def _number(model, name: str, value) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)):
        try:  # Decimal and the like
            value = float(value) if not isinstance(value, (str, list, dict)) else _text_in_number(model, name, value)
        except (TypeError, ValueError):
            return _text_in_number(model, name, value)
    try:
        value = float(value)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise EdgeError(f'feature "{name}" is {value}',
                        detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                        sqlstate=INVALID_PARAMETER_VALUE)
    if abs(value) > FLOAT32_MAX:
        raise _out_of_range(model, model.feature_names.index(name), value)
    return value


def _expand_arrays(model, values: dict) -> dict:
    values = dict(values)
    for name, length in model.array_features.items():
        if name not in values:
            continue
        array = values.pop(name)
        if array is None:
            raise EdgeError(f'array feature "{name}" is NULL', sqlstate=NULL_VALUE_NOT_ALLOWED)
        flat = flatten(array) if isinstance(array, list) else None
        if flat is None or len(flat) != length:
            got = f"{len(flat)} elements" if flat is not None else f"a {type(array).__name__}"
            raise EdgeError(f'array feature "{name}" must have {length} elements, got {got}',
                            detail=f"{model.describe()} was trained on arrays of {length} elements "
                                   "(multi-dimensional ones read in row-major order).",
                            sqlstate=INVALID_PARAMETER_VALUE)
        values.update(zip((f"{name}[{i + 1}]" for i in range(length)), flat))
    return values


def _text_in_number(model, name: str, value):
    raise EdgeError(f'feature "{name}" must be a number, not {type(value).__name__} {str(value)[:40]!r}',
                    detail=f"{model.describe()} was trained with \"{name}\" as a numeric feature.",
                    sqlstate=INVALID_TEXT_REPRESENTATION)


def mapping(model, values: dict):
    """Features matched by name: (X, None) for all-float models, (None, columns) else."""
    if model.array_features:
        values = _expand_arrays(model, values)
    missing = [n for n in model.feature_names if n not in values]
    if missing:
        raise EdgeError("features missing from the input: %s" % ", ".join(missing),
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
            if isinstance(v, (list, dict)):
                _text_in_number(model, name, v)
            columns[name] = np.array([[v if isinstance(v, str) else str(v)]], dtype=object)
        else:
            columns[name] = np.array([[_null(model, i) if v is None else _number(model, name, v)]], dtype=np.float32)
    return None, columns


def one_row(model, features):
    """(X, columns) for one row in any of the accepted shapes."""
    if isinstance(features, np.ndarray):
        features = features.tolist()
    if isinstance(features, tuple):
        features = list(features)
    if isinstance(features, list):
        if is_numeric_list(features):
            return row_array(model, features), None
        return mapping(model, positional(model, features))
    if isinstance(features, dict):
        return mapping(model, features)
    if features is None or isinstance(features, (str, int, float, bool)):  # a JSON scalar, as SQL's jsonb
        kind = "null" if features is None else "boolean" if isinstance(features, bool) \
            else "string" if isinstance(features, str) else "number"  # JSON's names, as SQL's message
        raise EdgeError("jsonb features must be an object keyed by feature name, or an array",
                        detail=f"Got a JSON {kind}.", sqlstate=INVALID_PARAMETER_VALUE)
    raise EdgeError("features must be a numeric array, a row or a jsonb object", sqlstate=DATATYPE_MISMATCH)
