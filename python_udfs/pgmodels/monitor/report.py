"""drift() and set_reference(): comparing current rows with a model's reference profile."""

from __future__ import annotations

import json

import numpy as np

from .._plpy import query, udf
from ..errors import INVALID_PARAMETER_VALUE, PgmodelsError
from ..relations import resolve
from . import drift as metrics, profile as profiles
from .current import Current, Reference, predictions, read

PREDICTION = "(prediction)"
COLUMNS = ("feature", "kind", "rows", "psi", "ks_statistic", "p_value", "null_rate_change", "status")


def compare(ref: Reference, cur: Current) -> list[dict]:
    """One result per feature of the model, then one for its predictions."""
    try:
        return _compare(ref, cur)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise PgmodelsError(f"the reference profile of model {ref.model.id} is not usable",
                            detail=f"It lacks or mistypes {e!s:.200}.",
                            hint="Its owner can store a new one with set_reference(project_name, relation_name).",
                            sqlstate=INVALID_PARAMETER_VALUE) from None


def _compare(ref: Reference, cur: Current) -> list[dict]:
    limits = {k: float(ref.thresholds.get(k, v)) for k, v in metrics.DEFAULTS.items()}
    features = ref.profile.get("features") or {}
    out = []
    for j, name in enumerate(cur.numeric_names):
        prof = features.get(name)
        if prof is None or prof.get("kind") != "numeric":
            continue
        out.append({"feature": name, "kind": "numeric", **metrics.numeric(prof, cur.X[:, j], limits)})
    for j, name in enumerate(cur.text_names):
        prof = features.get(name)
        if prof is None or prof.get("kind") != "categorical":
            continue
        out.append({"feature": name, "kind": "categorical", **metrics.categorical(prof, cur.T[:, j], limits)})
    # the model's answers now against its answers on its training rows (profiles made
    # before 0.2.0's final form have only the target's distribution)
    target = ref.profile.get("predictions") or ref.profile.get("target")
    if target:
        keep, answers = predictions(ref, cur)
        if target.get("kind") == "numeric":
            result = metrics.numeric(target, np.asarray(answers, dtype=np.float64), limits)
        else:
            result = metrics.categorical(target, answers, limits)
        result["rows"] = int(keep.sum())
        out.append({"feature": PREDICTION, "kind": "prediction", **result})
    return out


def worst(results: list[dict]) -> str:
    order = {"ok": 0, "warning": 1, "drift": 2}
    return max((r["status"] for r in results), key=order.__getitem__, default="ok")


def as_rows(results: list[dict]) -> list[tuple]:
    return [tuple(r.get(c) for c in COLUMNS) for r in results]


@udf(empty=[])
def drift_udf(project_name, relation_name, model_id, since, time_column):
    """drift(): compare a relation (or a time window of it) with a model's reference."""
    if project_name is None:
        raise PgmodelsError("project_name must not be NULL", sqlstate=INVALID_PARAMETER_VALUE)
    ref = Reference.load(project_name, model_id)
    rel = resolve(relation_name, "relation_name")
    cur = read(ref, rel, since=since, time_column=time_column)
    return as_rows(compare(ref, cur))


@udf
def set_reference(project_name, relation_name, model_id, y_column_name):
    """set_reference(): a reference profile for a model from a relation's rows (an imported
    model's, or a new one for a model trained on data since gone). Its owner's."""
    if project_name is None:
        raise PgmodelsError("project_name must not be NULL", sqlstate=INVALID_PARAMETER_VALUE)
    ref = Reference.load(project_name, model_id, need_profile=False)
    rel = resolve(relation_name, "relation_name")
    cur = read(ref, rel, y_column=y_column_name)
    columns = {name: ("float", cur.X[:, j]) for j, name in enumerate(cur.numeric_names)}
    columns.update({name: ("text", list(cur.T[:, j])) for j, name in enumerate(cur.text_names)})
    prof = {"features": profiles.of_columns(columns)}
    keep, answers = predictions(ref, cur)  # what drift() compares the answers on current rows with
    prof["predictions"] = (profiles.categorical(answers) if ref.model.task == "classification"
                           else profiles.numeric(list(answers)))
    if y_column_name is not None:
        prof["target"] = (profiles.categorical(cur.y) if ref.model.task == "classification"
                          else profiles.numeric([None if v is None else float(v) for v in cur.y]))
    prof["source"] = {"relation": rel.display, "rows": cur.rows}
    got = query("SELECT pgmodels._store_reference(pgmodels._credential(), $1, $2::jsonb) AS ok",
                [ref.model.id, json.dumps(prof)], ["bigint", "text"])
    if got and got[0]["ok"]:  # a model with no explainer from training gets one from these rows
        from ..explain.reference import from_reference

        from_reference(ref.model.project, ref.model.id, cur.X, cur.T, keep)
    return cur.rows if got and got[0]["ok"] else None
