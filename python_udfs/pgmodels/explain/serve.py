"""explain_prediction() and explain_batch(): the Python side of the SQL cores.

Each core takes (project name, model id, features, top_n, class, statement stamp,
loaded), as the predict cores do (see serving/predict.py): it answers only from the
model and explainer pgmodels._explain_lookup registered for this statement, and returns
None ("run the lookup and call again") when there is none. Features arrive as predict's
do: a list (an array cast to float8[]), a str (jsonb: an object, a row, an anonymous
row), and for explain_batch the array_send() bytes of a real[] or a jsonb array of rows.
The answer is the composite pgmodels.explanation: parallel arrays of row number,
feature, value and contribution, which the SQL wrapper unnests.
"""

from __future__ import annotations

import numpy as np

from .._plpy import udf
from ..errors import INVALID_PARAMETER_VALUE, PgmodelsError
from ..serving import inputs
from ..serving.runtime import Model
from . import answer, cache


def design(model: Model, X: np.ndarray | None, columns: dict | None) -> np.ndarray:
    """Rows in the model's feature order as the explainer takes them: float64, or an
    object array holding text, from what serving.inputs makes (a matrix or columns)."""
    if X is not None:
        return np.asarray(X, dtype=np.float64)
    n = len(next(iter(columns.values())))
    out = np.empty((n, model.n_features), dtype=object)
    for j, (name, kind) in enumerate(zip(model.feature_names, model.feature_types)):
        col = np.asarray(columns[name]).reshape(-1)
        out[:, j] = col.astype(object) if kind == "text" else col.astype(np.float64)
    return out


def one_row(model: Model, features) -> np.ndarray:
    """predict()'s features, as one design row."""
    if isinstance(features, list):
        return design(model, inputs.row_array(model, features), None)
    if isinstance(features, str):
        features = inputs.parse_json(features)
        if isinstance(features, list) and len(features) == 2 and features[0] == inputs.RECORD \
                and isinstance(features[1], str):
            features = inputs.record(model, inputs.parse_json(features[1]))
        elif isinstance(features, list):
            features = inputs.positional(model, features)
    if not isinstance(features, dict):
        raise PgmodelsError("jsonb features must be an object keyed by feature name, or an array",
                            hint="Pass a row, an array of numbers or a jsonb object.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return design(model, *inputs.mapping(model, features))


def many_rows(model: Model, numeric: bytes | None, rows: str | None) -> np.ndarray:
    """explain_batch()'s rows: a real[] (flat or rows x features) or a jsonb array whose
    elements are rows (objects by name, arrays in order) or, all numbers, a flat array."""
    if numeric is not None:
        X = inputs.flat_array(model, inputs.from_array_send(numeric), inputs.array_dims(numeric))
        return design(model, X, None)
    doc = inputs.parse_json(rows) if rows is not None else None
    if not isinstance(doc, list):
        raise PgmodelsError("rows must be an array of rows", sqlstate=INVALID_PARAMETER_VALUE)
    if doc and all(isinstance(v, (int, float)) and not isinstance(v, bool) or v is None for v in doc):
        return design(model, inputs.flat_array(model, doc), None)
    parts = []
    for i, row in enumerate(doc):
        try:
            if isinstance(row, list):
                row = inputs.positional(model, row)
            elif not isinstance(row, dict):
                _not_a_row(i)
            parts.append(design(model, *inputs.mapping(model, row)))
        except PgmodelsError as e:
            if not e.message.startswith("row "):
                e.message = f"row {i + 1}: {e.message}"
            raise
    if not parts:
        return np.zeros((0, model.n_features))
    return np.concatenate(parts)


def _not_a_row(i: int):
    raise PgmodelsError(f"row {i + 1} is neither an object nor an array",
                        hint="Pass rows of a table (array_agg(t)), jsonb objects or arrays of numbers.",
                        sqlstate=INVALID_PARAMETER_VALUE)


def _result(model, explainer, ans, X, top_n, cls) -> dict:
    rows, feats, values, contribs = [], [], [], []
    for r in range(X.shape[0]):
        for f, v, c in answer.rows_of(model, explainer, ans, X, r, top_n, cls):
            rows.append(r + 1)
            feats.append(f)
            values.append(v)
            contribs.append(c)
    return {"row_number": rows, "feature": feats, "value": values, "contribution": contribs}


@udf(stamp_arg=5)
def explain_prediction(project: str, model_id: int, features, top_n, cls, stamp: float, loaded) -> dict | None:
    """pgmodels._explain: one row's explanation."""
    answer.check_top_n(top_n)
    pair = cache.current(project, model_id, stamp, loaded)
    if pair is None or features is None:
        return None
    model, explainer = pair
    X = one_row(model, features)
    return _result(model, explainer, answer.explain(model, explainer, X, cls), X, top_n, cls)


@udf(stamp_arg=6)
def explain_batch(project: str, model_id: int, numeric: bytes | None, rows: str | None, top_n, cls,
                  stamp: float, loaded) -> dict | None:
    """pgmodels._explain_batch: many rows' explanations in one run."""
    answer.check_top_n(top_n)
    pair = cache.current(project, model_id, stamp, loaded)
    if pair is None or (numeric is None and rows is None):
        return None
    model, explainer = pair
    X = many_rows(model, numeric, rows)
    if len(X) == 0:
        return {"row_number": [], "feature": [], "value": [], "contribution": []}
    return _result(model, explainer, answer.explain(model, explainer, X, cls), X, top_n, cls)
