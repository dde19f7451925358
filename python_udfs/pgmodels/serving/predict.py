"""predict() and friends: the Python side of the SQL serving functions.

Each SQL wrapper passes (project name, model id, features, statement stamp, loaded): a
project name with model id 0, or a model id with an empty name; loaded is NULL on the
first call and true once pgmodels._lookup has loaded the model (see cache.py). Features
arrive as a list (an array cast to float8[]) or a str (jsonb: objects, rows, and
anonymous rows as JSON arrays). Returning None without a pending error means "run
_lookup and call again".
"""

from __future__ import annotations

import json

from .._plpy import udf
from ..errors import (DATATYPE_MISMATCH, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE,
                      OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError)
from ..rollout import record
from ..rollout.route import CANDIDATE, CONTROL, MAX_KEY
from . import cache, inputs, native, vectorized
from .runtime import Model

# rows from which predict_batch translates a tree ensemble for the library (native.py)
NATIVE_ROWS = 1024


def _feed(model: Model, features):
    if isinstance(features, list):
        return model.engine.feed(model, inputs.row_array(model, features), None)
    if isinstance(features, str):  # jsonb: an object, or an array (an anonymous row)
        features = inputs.parse_json(features)
        if isinstance(features, list) and len(features) == 2 and features[0] == inputs.RECORD \
                and isinstance(features[1], str):
            features = inputs.record(model, inputs.parse_json(features[1]))  # a row of type record
        elif isinstance(features, list):
            features = inputs.positional(model, features)
        elif not isinstance(features, dict):
            kind = "null" if features is None else "boolean" if isinstance(features, bool) \
                else "string" if isinstance(features, str) else "number"
            raise PgmodelsError("jsonb features must be an object keyed by feature name, or an array",
                                detail=f"Got a JSON {kind}.",
                                hint="A value that is neither a row nor an array (a timestamp, a text) reaches "
                                     "predict as JSON: pass a row, an array of numbers or a jsonb object.",
                                sqlstate=INVALID_PARAMETER_VALUE)
    if not isinstance(features, dict):
        raise PgmodelsError("features must be a numeric array, a row or a jsonb object",
                            sqlstate=DATATYPE_MISMATCH)
    X, columns = inputs.mapping(model, features)
    return model.engine.feed(model, X, columns)


def _label_value(model: Model, index: int) -> float:
    labels = model.labels
    if labels is not None and 0 <= index < len(labels) and isinstance(labels[index], (int, float)):
        return float(labels[index])
    return float(index)


def predict(project: str, model_id: int, features, stamp: float, loaded, _current=cache._current,
            _now=cache.monotonic, _for_me=cache._for_me) -> float:
    """The row-wise hot path: a model this statement already loaded, a list of numbers.
    Anything else, and any problem with the row, goes to the checked path below, which
    raises the right error (so the fast path needs no error handling of its own)."""
    hit = _current.get(model_id or project)
    if (hit is not None and hit[0] == stamp and hit[2] is not None and features.__class__ is list and hit[3] > _now()
            and _for_me(hit[5])):
        try:
            return hit[2](features)
        except Exception:  # noqa: BLE001 - the checked path raises it properly
            pass
    return _predict(project, model_id, features, stamp, loaded)


@udf(hot=True)
def _predict(project: str, model_id: int, features, stamp: float, loaded) -> float:
    return _serve(project, model_id, features, stamp, loaded, None, "predict")


def _answer(model: Model, features, kind: str):
    """predict(), predict_proba() or predict_label()'s answer for one row."""
    if kind == "predict":
        if model.row is not None and type(features) is list:
            return model.row(features)
        feed = _feed(model, features)
        if model.task == "classification":
            return _label_value(model, int(model.engine.labels(feed)[0]))
        return float(model.engine.values(feed)[0])
    if model.task != "classification":
        function = "predict_proba" if kind == "proba" else "predict_label"
        raise PgmodelsError(f"{model.describe()} is a {model.task} model; {function} needs a classifier",
                            hint={"decomposition": "Use decompose() for its components.",
                                  "clustering": "Use predict() for its cluster."}.get(model.task,
                                                                                      "Use predict() for its values."),
                            sqlstate=FEATURE_NOT_SUPPORTED)
    if kind == "proba":
        return model.engine.probabilities(_feed(model, features))[0].tolist()
    index = int(model.engine.labels(_feed(model, features))[0])
    labels = model.labels or []
    if not 0 <= index < len(labels):
        return str(index)
    label = labels[index]
    return ("true" if label else "false") if isinstance(label, bool) else str(label)


def _value(model: Model, kind: str, answer) -> float | None:
    """What a rollout records of an answer: the prediction predict() would give."""
    if kind == "predict" or answer is None:
        return answer
    if kind == "proba":
        return _label_value(model, max(range(len(answer)), key=answer.__getitem__))
    labels = [("true" if v else "false") if isinstance(v, bool) else str(v) for v in model.labels or []]
    return _label_value(model, labels.index(answer)) if answer in labels else None


def _serve(project: str, model_id: int, features, stamp: float, loaded, key, kind: str):
    """One row's answer, routed by the statement's rollout if there is one."""
    model = cache.current(project, model_id, stamp, loaded)
    if model is None or features is None:
        return None
    route = cache.route_for(model_id or project, stamp)
    if route is None:
        return _answer(model, features, kind)
    key = None if key is None else str(key)
    if key is not None and len(key) > MAX_KEY:
        raise PgmodelsError(f"routing key is too long ({len(key)} characters)",
                            detail=f"A routing key is at most {MAX_KEY} characters: a customer id, an account number.",
                            sqlstate="22001")
    record.due(stamp)  # what earlier statements left is written first
    group = route.group(key)
    cand = route.candidate
    if group != CANDIDATE:
        answer = _answer(model, features, kind)
        if group == CONTROL and key is not None:
            record.add(route.id, key, model.id, model.version, _value(model, kind, answer), "champion", "sql")
        return answer
    try:
        candidate, error = _answer(cand, features, kind), None
    except Exception as e:  # noqa: BLE001 - counted against the candidate; the champion answers
        candidate, error = None, (getattr(e, "message", None) or str(e) or type(e).__name__)[:500]
    shadow = route.mode == "shadow"
    answer = _answer(model, features, kind) if shadow or error else candidate
    if shadow or key is not None or error:
        record.add(route.id, key, cand.id, cand.version, _value(cand, kind, candidate), route.mode, "sql", error,
                   None, _value(model, kind, answer) if shadow else None)
    return answer


@udf(hot=True)
def predict_proba(project: str, model_id: int, features, stamp: float, loaded) -> list[float]:
    return _serve(project, model_id, features, stamp, loaded, None, "proba")


@udf(hot=True)
def predict_label(project: str, model_id: int, features, stamp: float, loaded) -> str:
    return _serve(project, model_id, features, stamp, loaded, None, "label")


def predict_key(project: str, model_id: int, features, stamp: float, loaded, key, _current=cache._current,
                _now=cache.monotonic, _for_me=cache._for_me) -> float:
    """predict(..., key => k): the hot path as predict()'s, routed by the key (rollout/route.py)."""
    hit = _current.get(model_id or project)
    if (hit is not None and hit[0] == stamp and hit[4] is not None and features.__class__ is list and hit[3] > _now()
            and _for_me(hit[5])):
        try:
            return hit[4](features, key)
        except Exception:  # noqa: BLE001 - the checked path raises it properly
            pass
    return _predict_key(project, model_id, features, stamp, loaded, key)


@udf(hot=True)
def _predict_key(project: str, model_id: int, features, stamp: float, loaded, key) -> float:
    return _serve(project, model_id, features, stamp, loaded, key, "predict")


@udf(hot=True)
def predict_proba_key(project: str, model_id: int, features, stamp: float, loaded, key) -> list[float]:
    return _serve(project, model_id, features, stamp, loaded, key, "proba")


@udf(hot=True)
def predict_label_key(project: str, model_id: int, features, stamp: float, loaded, key) -> str:
    return _serve(project, model_id, features, stamp, loaded, key, "label")


@udf(empty=[])
def predict_batch(project: str, model_id: int, features: bytes, stamp: float, loaded) -> list[float]:
    model = cache.current(project, model_id, stamp, loaded)
    if model is None or features is None:
        return []
    X = inputs.flat_array(model, inputs.from_array_send(features), inputs.array_dims(features))
    if len(X) >= NATIVE_ROWS or getattr(model, "native_blob", None):
        answers = native.score(model, X)  # a tree ensemble's trees in C (translated once)
        if answers is not None:
            return answers.tolist()
    return vectorized.answers(model, model.engine.feed(model, X, None), len(X), ["prediction"])["prediction"]


@udf(stamp_arg=5)
def score_rows(project: str, model_id: int, numeric: bytes | None, texts: list | None, outputs: list[str],
               stamp: float, loaded, keys: list | None = None, source: str = "batch") -> dict | None:
    """pgmodels._score_rows: a block of rows (a batch job's chunk, a proxy statement)
    scored in one run; keys (one per row, or NULL) route it when a rollout is active."""
    model = cache.current(project, model_id, stamp, loaded)
    if model is None:
        return None
    unknown = [o for o in outputs or [] if o not in vectorized.OUTPUTS]
    if unknown or not outputs:
        raise PgmodelsError(f"unknown output {unknown[0]!r}" if unknown else "no outputs requested",
                            hint="Outputs are prediction, probabilities, label and contributions.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    explainer = None
    if "contributions" in outputs:  # registered by pgmodels._explain_lookup in this statement
        from ..explain import cache as explain_cache

        pair = explain_cache.current(project, model_id, stamp, True)
        if pair[0].id != model.id:
            raise PgmodelsError("the explainer loaded for this statement is another model's",
                                hint="Call pgmodels._explain_lookup for the same project and model id.",
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
        explainer = pair[1]
    route = cache.route_for(model_id or project, stamp)
    if route is not None and explainer is None:  # contributions: the champion answers (its explainer's)
        from ..rollout.route import score_block

        if keys is not None and len(keys) != (len(texts) if numeric is None and texts is not None
                                              else inputs.array_dims(numeric)[0] if numeric else 0):
            raise PgmodelsError("there must be one routing key per row", sqlstate=INVALID_PARAMETER_VALUE)
        X, T = vectorized.checked(model, numeric, texts)
        source = source if source in ("batch", "stream", "proxy", "sql") else "sql"
        out = score_block(model, route, X, T, [o for o in outputs if o != "contributions"], keys, source)
        if source == "proxy":
            record.soon()  # in blocks, so that a request pays no insert of its own (rollout/record.py)
        else:
            record.flush()  # with the block, in its transaction
    else:
        out = vectorized.score(model, numeric, texts, outputs, explainer)
    probabilities = out.get("probabilities")
    return {"model_id": model.id, "model_version": model.version,
            "model_ids": out.get("model_ids"), "model_versions": out.get("model_versions"),
            "predictions": out.get("prediction"), "labels": out.get("label"),
            "probabilities": probabilities.reshape(-1).tolist() if probabilities is not None else None,
            "classes": int(probabilities.shape[1]) if probabilities is not None else None,
            "contributions": [json.dumps(c) for c in out["contributions"]] if "contributions" in out else None}
