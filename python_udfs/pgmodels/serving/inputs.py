"""Turning SQL values into model inputs, and refusing the ones a model cannot take.

Shapes that arrive:

- an array of numbers: one row, in feature order; a multi-dimensional array is read in
  row-major order (so a 2-D image is one row of width times height features);
- a mapping of feature name to value: a row of a named type, or a jsonb object; a model
  trained on an array column takes that column (or key) as an array, flattened the same
  way, and must get exactly as many elements as it was trained on;
- a list of values in feature order: an anonymous ROW(...) (or a jsonb array), which
  PostgreSQL would otherwise name f1, f2, ...; a value may itself be an array;
- many rows at once (predict_batch): a flat array whose length is a whole number of
  rows, or an array whose first dimension is the rows, each row flattened in order.

NULL goes to the column's configured imputation as NaN, or is refused when the model was
trained with impute "error"; NaN, Infinity and numbers beyond single precision (the
models' input type) are always refused.
"""

from __future__ import annotations

import math

from .._lazy import numpy_for
from ..errors import (DATATYPE_MISMATCH, INVALID_PARAMETER_VALUE, INVALID_TEXT_REPRESENTATION,
                      NULL_VALUE_NOT_ALLOWED, PgmodelsError)
from .._json import read_json
from .runtime import FLOAT32_MAX, Model

np = numpy_for(__name__)  # imported at its first use (_lazy.py)

NUMERIC_VALUE_OUT_OF_RANGE = "22003"


def flatten(values) -> list:
    """A nested list (a multi-dimensional array) in row-major order."""
    if not any(isinstance(v, list) for v in values):
        return values
    out = []
    for v in values:
        out.extend(flatten(v) if isinstance(v, list) else [v])
    return out


def parse_json(text: str):
    """jsonb features as Python values; every way JSON can defeat the parser is a clear error."""
    def big(token):  # JSON numbers past float64 are refused like any non-finite number
        raise PgmodelsError(f"feature value {token[:40]} is outside the single-precision range",
                            sqlstate=NUMERIC_VALUE_OUT_OF_RANGE)
    return read_json(text, "jsonb features", plural=True, parse_constant=big)


def positional(model: Model, values: list) -> dict:
    """An anonymous row (or jsonb array): values in feature order, arrays flattened in
    place, as the name-keyed mapping the rest of this module takes."""
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


# how the SQL wrapper marks a row of type record: [RECORD, its to_json text]
RECORD = "pgmodels:record"


def record(model: Model, values: dict) -> dict:
    """A row of type record (its columns in order): ROW(a, b, c), whose columns PostgreSQL
    names f1, f2, ... in order, is positional; a record with other column names (a
    subquery's row) is matched by name."""
    if not isinstance(values, dict):
        raise PgmodelsError("features must be a numeric array, a row or a jsonb object", sqlstate=DATATYPE_MISMATCH)
    if list(values) == [f"f{i}" for i in range(1, len(values) + 1)]:
        return positional(model, list(values.values()))
    return values


def _wrong_count(model: Model, got: int) -> PgmodelsError:
    return PgmodelsError(f"{model.describe()} takes {model.n_features} features, got {got}",
                         detail="Features, in order: %s." % ", ".join(model.feature_names[:50]),
                         sqlstate=INVALID_PARAMETER_VALUE)


def _out_of_range(model: Model, index: int, value) -> PgmodelsError:
    return PgmodelsError(f'feature "{model.feature_names[index]}" is {value}, outside the single-precision range',
                         detail="Models take single-precision (real) inputs, whose magnitude is at most 3.4028235e38.",
                         sqlstate=NUMERIC_VALUE_OUT_OF_RANGE)


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
    """One row given as an array, in the model's feature order: a [1, n] float32 matrix.
    A multi-dimensional array is one row read in row-major order."""
    if values and isinstance(values[0], list):
        values = flatten(values)
        if len(values) != model.n_features:
            raise PgmodelsError(f"{model.describe()} takes {model.n_features} features, "
                                f"got a multi-dimensional array of {len(values)} elements",
                                detail="A multi-dimensional array is one row, read in row-major order.",
                                hint="Use predict_batch() for many rows.", sqlstate=INVALID_PARAMETER_VALUE)
    if len(values) != model.n_features:
        raise _wrong_count(model, len(values))
    if not model.all_float:
        raise _needs_row(model)
    given = [v for v in values if v is not None] if None in values else values
    total = sum(given)
    if total - total != 0 and not all(map(math.isfinite, given)):  # the cheap test first
        raise _not_finite(model, values)
    if given and (max(given) > FLOAT32_MAX or min(given) < -FLOAT32_MAX):
        bad = next(i for i, v in enumerate(values) if v is not None and abs(v) > FLOAT32_MAX)
        raise _out_of_range(model, bad, values[bad])
    if given is not values:
        values = [_null(model, i) if v is None else v for i, v in enumerate(values)]
    return np.array(values, dtype=np.float32).reshape(1, -1)


FLOAT4OID = 700
MAXDIM = 6  # PostgreSQL's limit on an array's dimensions


def array_dims(data: bytes) -> list[int]:
    """The dimensions of a real[] from its array_send() bytes, checked: the core that takes
    them is callable by anyone, with any bytes."""
    bad = PgmodelsError("features must be the array_send() bytes of a real[]", sqlstate=INVALID_PARAMETER_VALUE)
    if len(data) < 12:
        raise bad
    ndim = int.from_bytes(data[0:4], "big")
    if not 0 <= ndim <= MAXDIM or len(data) < 12 + 8 * ndim or int.from_bytes(data[8:12], "big") != FLOAT4OID:
        raise bad
    dims = [int.from_bytes(data[12 + 8 * i:16 + 8 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims)) if dims else 0
    if any(d > len(data) for d in dims) or len(data) < 12 + 8 * ndim + 4 * count:
        raise bad
    return dims


def from_array_send(data: bytes) -> list | np.ndarray:
    """Decode array_send(real[]) output: PostgreSQL's binary array format.

    predict_batch passes its features this way because turning a million-element array
    into a Python list costs more than scoring it. Without NULLs the elements sit at a
    fixed stride and numpy reads them in place; with NULLs they are decoded one by one
    (None for NULL), for flat_array to impute or refuse.
    """
    dims = array_dims(data)
    ndim, has_null = len(dims), int.from_bytes(data[4:8], "big")
    offset = 12 + 8 * ndim
    count = int(np.prod(dims)) if dims else 0
    if not has_null:
        if len(data) != offset + 8 * count:
            raise PgmodelsError("features must be the array_send() bytes of a real[]", sqlstate=INVALID_PARAMETER_VALUE)
        fields = np.frombuffer(data, dtype=[("length", ">i4"), ("value", ">f4")], offset=offset)
        return fields["value"].astype(np.float32)
    values, view = [], memoryview(data)
    while offset < len(data) and len(values) < count:
        length = int.from_bytes(view[offset:offset + 4], "big", signed=True)
        offset += 4
        if length < 0:
            values.append(None)
        elif length != 4 or offset + 4 > len(data):
            raise PgmodelsError("features must be the array_send() bytes of a real[]", sqlstate=INVALID_PARAMETER_VALUE)
        else:
            values.append(float(np.frombuffer(view[offset:offset + 4], dtype=">f4")[0]))
            offset += length
    if len(values) != count:
        raise PgmodelsError("features must be the array_send() bytes of a real[]", sqlstate=INVALID_PARAMETER_VALUE)
    return values


def flat_array(model: Model, values, dims: list[int] | None = None) -> np.ndarray:
    """Many rows (predict_batch): an [m, n] float32 matrix. ``dims`` are the array's
    dimensions: one (rows flattened one after the other) or more (the first is the rows,
    each row the rest flattened in order, which must be n elements)."""
    n = model.n_features
    if dims is not None and len(dims) > 1:
        width = int(np.prod(dims[1:]))
        if width != n:
            raise PgmodelsError(f"rows of {width} values do not fit {model.describe()}, which takes {n} features",
                                detail=f"The array's dimensions are {' x '.join(map(str, dims))}; "
                                       "the first is the rows, each row the rest flattened in order.",
                                sqlstate=INVALID_PARAMETER_VALUE)
    if len(values) % n:
        raise PgmodelsError(f"{len(values)} values are not a whole number of rows of {n} features",
                            detail=f"{model.describe()} takes {n} features per row.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not model.all_float:
        raise _needs_row(model)
    if isinstance(values, np.ndarray):  # from_array_send: real[], no NULLs, single precision already
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
    finite = (np.isfinite(X) & (np.abs(X) <= FLOAT32_MAX)) if nulls is None else \
        ((np.isfinite(X) & (np.abs(X) <= FLOAT32_MAX)) | nulls)  # NULL became NaN on purpose
    if not finite.all():
        bad = int(np.argmin(finite.reshape(-1)))
        raise PgmodelsError(f'feature "{model.feature_names[bad % n]}" of row {bad // n + 1} is {values[bad]}',
                            detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return X.astype(np.float32)


def _number(model: Model, name: str, value) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, (int, float)):
        try:  # numeric columns of a row arrive as Decimal
            value = float(value) if not isinstance(value, (str, list, dict)) else _text_in_number(model, name, value)
        except (TypeError, ValueError):
            return _text_in_number(model, name, value)
    try:
        value = float(value)
    except OverflowError:  # an int past float64
        value = math.inf
    if not math.isfinite(value):
        raise PgmodelsError(f'feature "{name}" is {value}',
                            detail="Features must be finite numbers; NaN and Infinity are not accepted.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if abs(value) > FLOAT32_MAX:
        raise _out_of_range(model, model.feature_names.index(name), value)
    return value


def _expand_arrays(model: Model, values: dict) -> dict:
    """A row or object whose array columns (or keys) hold a model's array features."""
    values = dict(values)
    for name, length in model.array_features.items():
        if name not in values:
            continue
        array = values.pop(name)
        if array is None:
            raise PgmodelsError(f'array feature "{name}" is NULL', sqlstate=NULL_VALUE_NOT_ALLOWED)
        flat = flatten(array) if isinstance(array, list) else None
        if flat is None or len(flat) != length:
            got = f"{len(flat)} elements" if flat is not None else f"a {type(array).__name__}"
            raise PgmodelsError(f'array feature "{name}" must have {length} elements, got {got}',
                                detail=f"{model.describe()} was trained on arrays of {length} elements "
                                       "(multi-dimensional ones read in row-major order).",
                                sqlstate=INVALID_PARAMETER_VALUE)
        values.update(zip((f"{name}[{i + 1}]" for i in range(length)), flat))
    return values


def _text_in_number(model: Model, name: str, value):
    raise PgmodelsError(f'feature "{name}" must be a number, not {type(value).__name__} {str(value)[:40]!r}',
                        detail=f"{model.describe()} was trained with \"{name}\" as a numeric feature.",
                        sqlstate=INVALID_TEXT_REPRESENTATION)


def mapping(model: Model, values: dict):
    """A composite row or a jsonb object: features matched by name, extra keys ignored.

    Returns (X, None) for all-float models and (None, columns) for mixed ones, where
    columns maps each feature to a [1, 1] array as the per-feature ONNX inputs want.
    """
    if model.array_features:
        values = _expand_arrays(model, values)
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
            if isinstance(v, (list, dict)):
                _text_in_number(model, name, v)
            columns[name] = np.array([[v if isinstance(v, str) else str(v)]], dtype=object)
        else:
            columns[name] = np.array([[_null(model, i) if v is None else _number(model, name, v)]], dtype=np.float32)
    return None, columns
