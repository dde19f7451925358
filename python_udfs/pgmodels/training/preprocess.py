"""Per-column preprocessing: encode, impute, scale.

The steps become the first stage of the scikit-learn Pipeline, so they are fitted on
the training split only and travel into the ONNX graph with the model.

Conventions (the serving side relies on them):

- A float feature's NULL is NaN; a text feature's NULL is the empty string. For text,
  NULL and ``''`` are therefore the same value: missing.
- ``impute "error"`` (the default) refuses NULLs in the training data (SQLSTATE 22004).
  At prediction time a NULL then reaches the model as NaN (float) or as an unknown
  category (text).
- Text columns are categorical. ``native`` is ordinal encoding with the categories in
  sorted order (0, 1, ...); a category not seen in training, and a missing text value,
  encode as -1. ``{"ordinal": [...]}`` is the same with the user's order. ``one_hot``
  ignores unknown categories (all zeros). ``target`` is scikit-learn's TargetEncoder
  (unknown categories get the target mean).
- Text columns accept impute ``"mode"`` (a NULL becomes the most frequent training
  value) or ``"error"``; numeric strategies on text are refused.
- ``min``/``max`` impute the training split's minimum/maximum as a constant.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin

from ..errors import (q, DATA_EXCEPTION, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE,
                      INVALID_TEXT_REPRESENTATION, NULL_VALUE_NOT_ALLOWED, PgmodelsError)

ENCODINGS = ("native", "one_hot", "target")  # and {"ordinal": [...]}
IMPUTES = ("error", "mean", "median", "mode", "min", "max", "zero")
TEXT_IMPUTES = ("error", "mode")
SCALES = ("preserve", "standard", "min_max", "max_abs", "robust")
MISSING_TEXT = ""


@dataclass(frozen=True)
class ColumnPlan:
    """What to do with one feature column."""
    index: int
    name: str
    kind: str                      # 'float' | 'text'
    encode: str = "native"         # 'native' | 'one_hot' | 'target' | 'ordinal'
    categories: tuple | None = None  # the user's order for 'ordinal'
    impute: str = "error"
    scale: str = "preserve"

    @property
    def plain(self) -> bool:
        return self.kind == "float" and self.impute == "error" and self.scale == "preserve"


class AsFloat(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Cast numeric columns of a mixed (object) design matrix to float64.

    Needed because a matrix holding text and numbers is an object array; in the ONNX
    graph the input is already a float tensor, so this converts to Identity.
    """

    def fit(self, X, y=None):
        self.n_features_in_ = np.shape(X)[1]
        return self

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)


def _bad(message, detail=None, hint=None, sqlstate=INVALID_PARAMETER_VALUE):
    return PgmodelsError(message, detail=detail, hint=hint, sqlstate=sqlstate)


def plan_columns(features, preprocess: dict | None) -> list[ColumnPlan]:
    """Validate ``preprocess`` against the feature columns and return one plan each."""
    preprocess = preprocess or {}
    if not isinstance(preprocess, dict):
        raise _bad("preprocess must be a JSON object mapping column names to settings")
    names = [f.name for f in features]
    for name in preprocess:
        if name not in names:
            raise _bad(f"preprocess names unknown column {q(name)}",
                       hint="Feature columns are: " + ", ".join(names) + ".")
    return [_plan_one(i, f.name, f.kind, preprocess.get(f.name, {}))
            for i, f in enumerate(features)]


def _plan_one(index: int, name: str, kind: str, settings) -> ColumnPlan:
    if not isinstance(settings, dict):
        raise _bad(f"preprocess settings for column {q(name)} must be a JSON object")
    unknown = set(settings) - {"encode", "impute", "scale"}
    if unknown:
        raise _bad(f"unknown preprocess key {sorted(unknown)[0]!r} for column {q(name)}",
                   hint="Valid keys are: encode, impute, scale.")
    encode, categories = _encoding(name, kind, settings.get("encode", "native"))
    impute = settings.get("impute", "error")
    allowed = TEXT_IMPUTES if kind == "text" else IMPUTES
    if impute not in allowed:
        raise _bad(f"invalid impute {q(impute)} for {kind} column {q(name)}",
                   hint="Valid values are: " + ", ".join(allowed) + ".")
    scale = settings.get("scale", "preserve")
    if scale not in SCALES:
        raise _bad(f"invalid scale {q(scale)} for column {q(name)}",
                   hint="Valid values are: " + ", ".join(SCALES) + ".")
    return ColumnPlan(index, name, kind, encode, categories, impute, scale)


def _encoding(name: str, kind: str, encode) -> tuple[str, tuple | None]:
    categories = None
    if isinstance(encode, dict) and set(encode) == {"ordinal"}:
        categories = encode["ordinal"]
        if (not isinstance(categories, list) or not categories
                or len(set(map(str, categories))) != len(categories)):
            raise _bad(f"ordinal encoding of column {q(name)} needs a list of distinct values")
        encode, categories = "ordinal", tuple(str(c) for c in categories)
    elif not isinstance(encode, str) or encode not in ENCODINGS:
        raise _bad(f"invalid encode {q(encode)} for column {q(name)}",
                   hint='Valid values are: native, one_hot, target, {"ordinal": [...]}.')
    if kind == "float" and encode != "native":
        raise _bad(f"encode {q(encode)} is only supported for text columns",
                   detail=f"Column {q(name)} is numeric.",
                   hint="Cast the column to text in the training query to treat it as a category.",
                   sqlstate=FEATURE_NOT_SUPPORTED)
    return encode, categories


def design_matrix(features) -> np.ndarray:
    """The feature columns as one 2-D array, rows by columns.

    All-float data gives a float64 array rounded to float32 precision, the precision
    the ONNX graph computes in, so the native and ONNX models see the same numbers.
    Mixed data gives an object array of floats and strings.
    """
    n = len(features[0].values)
    all_float = all(f.kind == "float" for f in features)
    X = np.empty((n, len(features)), dtype=np.float64 if all_float else object)
    for j, col in enumerate(features):
        if len(col.values) != n:
            raise _bad("feature columns have different lengths", sqlstate=DATA_EXCEPTION)
        X[:, j] = _floats(col) if col.kind == "float" else _texts(col)
    return X


_PLAIN = frozenset((float, int, bool))


def _floats(col) -> np.ndarray:
    kinds = set(map(type, col.values))
    if kinds <= _PLAIN | {type(None)}:  # what SPI hands over for real, float8, integers, booleans: numpy converts
        missing = None
        if type(None) in kinds:
            missing = np.fromiter((v is None for v in col.values), dtype=bool, count=len(col.values))
            out = np.array([np.nan if v is None else v for v in col.values], dtype=np.float64)
        else:
            out = np.array(col.values, dtype=np.float64)
        finite = np.isfinite(out)
        if not (finite.all() if missing is None else (finite | missing).all()):
            raise _bad(f"column {q(col.name)} contains NaN or infinity",
                       detail="Only finite numbers can be used as features.",
                       hint="Filter these rows out or replace them with NULL and set impute.")
        return _narrowed(col, out)
    out = np.empty(len(col.values), dtype=np.float64)
    for i, v in enumerate(col.values):
        if v is None:
            out[i] = np.nan
            continue
        if not isinstance(v, (int, float, decimal.Decimal, np.number, np.bool_)):
            raise _bad(f"invalid value {q(v)} in numeric column {q(col.name)}",
                       sqlstate=INVALID_TEXT_REPRESENTATION)
        out[i] = float(v)
        if not math.isfinite(out[i]):
            raise _bad(f"column {q(col.name)} contains NaN or infinity",
                       detail="Only finite numbers can be used as features.",
                       hint="Filter these rows out or replace them with NULL and set impute.")
    return _narrowed(col, out)


def _narrowed(col, out: np.ndarray) -> np.ndarray:
    """The values rounded to float32 precision, the precision the ONNX graph computes in."""
    with np.errstate(over="ignore"):
        narrowed = out.astype(np.float32)
    if np.isinf(narrowed).any():
        raise _bad(f"column {q(col.name)} has values outside the single-precision range",
                   detail="Models compute in 32-bit floating point.")
    return narrowed.astype(np.float64)


def _texts(col) -> np.ndarray:
    return np.array([MISSING_TEXT if v is None else str(v) for v in col.values], dtype=object)


def check_missing(plans: list[ColumnPlan], X: np.ndarray) -> None:
    """Refuse NULLs in columns whose impute is 'error'."""
    for p in plans:
        if p.impute == "error" and missing_mask(X[:, p.index], p.kind).any():
            raise _bad(f"column {q(p.name)} contains NULL values",
                       detail="Imputation for this column is \"error\".",
                       hint=f'Set preprocess => \'{{"{p.name}": {{"impute": "mean"}}}}\' '
                            "(or mode, median, min, max, zero), or filter the NULLs out.",
                       sqlstate=NULL_VALUE_NOT_ALLOWED)


def missing_mask(column: np.ndarray, kind: str) -> np.ndarray:
    if kind == "text":
        return column == MISSING_TEXT
    return np.isnan(column.astype(np.float64))


def build_preprocessor(plans: list[ColumnPlan], X_train: np.ndarray, task: str):
    """A ColumnTransformer for ``plans``, or None when every column passes through."""
    from sklearn.compose import ColumnTransformer

    mixed = any(p.kind == "text" for p in plans)
    if not mixed and all(p.plain for p in plans):
        return None
    transformers = []
    plain = [p.index for p in plans if p.plain]
    if plain:
        transformers.append(("numeric", AsFloat() if mixed else "passthrough", plain))
    for p in plans:
        if not p.plain:
            steps = _column_steps(p, X_train[:, p.index], mixed, task)
            transformers.append((f"c{p.index}", _chain(steps), [p.index]))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)


def _chain(steps):
    from sklearn.pipeline import Pipeline
    return steps[0] if len(steps) == 1 else Pipeline([(f"s{i}", s) for i, s in enumerate(steps)])


def _column_steps(p: ColumnPlan, column: np.ndarray, mixed: bool, task: str) -> list:
    steps = []
    if p.kind == "float":
        if mixed:
            steps.append(AsFloat())
        if p.impute != "error":
            steps.append(_numeric_imputer(p, column))
    else:
        if p.impute == "mode":
            steps.append(_text_imputer(p, column))
        steps.append(_encoder(p, task))
    if p.scale != "preserve":
        steps.append(_scaler(p.scale))
    return steps


def _numeric_imputer(p: ColumnPlan, column: np.ndarray):
    from sklearn.impute import SimpleImputer

    present = column.astype(np.float64)
    present = present[~np.isnan(present)]
    if present.size == 0:
        raise _bad(f"column {q(p.name)} has no values to impute from",
                   detail="Every value of the column in the training split is NULL.",
                   sqlstate=DATA_EXCEPTION)
    strategy = {"mean": "mean", "median": "median", "mode": "most_frequent"}.get(p.impute)
    if strategy:
        return SimpleImputer(strategy=strategy)
    fill = {"zero": 0.0, "min": float(present.min()), "max": float(present.max())}[p.impute]
    return SimpleImputer(strategy="constant", fill_value=fill)


def _text_imputer(p: ColumnPlan, column: np.ndarray):
    from sklearn.impute import SimpleImputer

    if (column == MISSING_TEXT).all():
        raise _bad(f"column {q(p.name)} has no values to impute from",
                   detail="Every value of the column in the training split is NULL.",
                   sqlstate=DATA_EXCEPTION)
    return SimpleImputer(missing_values=MISSING_TEXT, strategy="most_frequent")


def _encoder(p: ColumnPlan, task: str):
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, TargetEncoder

    if p.encode == "one_hot":
        return OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    if p.encode == "target":
        target_type = "continuous" if task == "regression" else "auto"
        return TargetEncoder(target_type=target_type, random_state=0)
    categories = [list(p.categories)] if p.categories else "auto"
    return OrdinalEncoder(categories=categories, handle_unknown="use_encoded_value",
                          unknown_value=-1)


def _scaler(scale: str):
    from sklearn import preprocessing as pp

    return {"standard": pp.StandardScaler, "min_max": pp.MinMaxScaler,
            "max_abs": pp.MaxAbsScaler, "robust": pp.RobustScaler}[scale]()
