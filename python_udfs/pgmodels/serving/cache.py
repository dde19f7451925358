"""The per-backend model cache.

Artifacts never change once stored, so a loaded model is kept by its id for the life of
the backend. Which model a project (or a model id) serves is fixed per statement: the
SQL wrappers pass pgmodels._stamp(), a number that changes with every statement and
every transaction. The first row of a statement misses; pgmodels._lookup then checks
the caller's privilege, reads the catalog under the statement's snapshot and calls
:func:`load` (pgmodels._load, which no other role may call) to register the model for
this statement; every later row is a dictionary lookup, no query.

The cores never take a model from their caller: what they serve was put here by
_lookup, from the catalog, with its sha256 checked. They are callable by PUBLIC (the
inlined wrappers need that) with any stamp, so a registration is good for TTL seconds
only: a long statement looks the model up again each second, and a stamp kept from an
earlier statement is worth nothing once a grant is revoked. A lookup made for another
role than the session's own (a SECURITY DEFINER function predicting) serves only the
call that made it.
"""

from __future__ import annotations

import json
import time

from .._plpy import udf
from ..errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError
from . import guard
from .inputs import row_array
from .runtime import Model, engine_for, fast_row_predict, verify

TTL = 1.0  # seconds a registration serves

_loaded: dict[int, Model] = {}
# project name, or model id -> (statement stamp, model id, the model's row fast path, expiry)
_current: dict[object, tuple] = {}
# registrations for one call: project name, or model id -> (statement stamp, model id)
_once: dict[object, tuple] = {}
monotonic = time.monotonic


def current(project: str, model_id: int, stamp: float, loaded) -> Model | None:
    """The model this statement serves, or None when the caller must run _lookup first."""
    key = model_id or project
    if loaded is not None:
        once = _once.pop(key, None)
        if once is not None and once[0] == stamp:
            return _loaded[once[1]]
    hit = _current.get(key)
    if hit is not None and hit[0] == stamp and hit[3] > monotonic():
        return _loaded[hit[1]]
    if loaded is None:
        return None
    raise PgmodelsError("no model is loaded for this statement",
                        detail="The serving cores answer only from models pgmodels._lookup loaded for the "
                               "current statement.",
                        hint="Call predict(), predict_proba(), predict_label() or predict_batch().",
                        sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


@udf(stamp_arg=2)
def load(project: str, model_id: int, stamp: float, record: dict, once: bool = False) -> bool:
    """pgmodels._load: make a catalog model the one this statement (or this call) serves.
    False when the model is not loaded here and the record came without its artifact:
    _lookup then reads the artifact and calls again. A statement whose model run a cancel
    or timeout stopped loads nothing more: the error is raised again (guard.py)."""
    guard.check_statement(stamp)
    model = _loaded.get(record["id"])
    if model is None or model.sha256 != bytes(record["artifact_sha256"]):
        if record["artifact"] is None:
            return False
        model = _load(record)
    key = model_id or project
    if once:
        _current.pop(key, None)
        _once[key] = (stamp, model.id)
    else:
        _current[key] = (stamp, model.id, model.row, monotonic() + TTL)
    return True


def _load(r: dict) -> Model:
    artifact = bytes(r["artifact"])
    verify(r["id"], artifact, r["artifact_sha256"])
    # a clustering model is served as a classifier is: its label output is the cluster
    task = "classification" if r["task"] == "clustering" else r["task"]
    model = Model(
        id=r["id"], project=r["project"], version=r["version"], task=task, runtime=r["runtime"],
        feature_names=list(r["feature_names"]), feature_types=list(r["feature_types"]),
        labels=json.loads(r["labels"]) if r["labels"] is not None else None,
        nullable=frozenset(r["nullable"] or ()), engine=None, sha256=bytes(r["artifact_sha256"]),
        array_features=json.loads(r["array_features"]) if r.get("array_features") else {})
    imported, work = bool(r.get("imported")), r.get("work_per_row")
    if imported and work is None and model.runtime == "onnx":
        work = _estimate(artifact)
    model.engine = engine_for(model.runtime, artifact, model.feature_names, model.task, imported, work)
    model.row = fast_row_predict(model, row_array)
    _loaded[model.id] = model
    return model


def _estimate(artifact: bytes) -> float | None:
    """The work per row of an imported model stored without an estimate (imported before
    0.3.0, or one whose shapes follow the input's values, which this finds unbounded
    again): made once per backend, with the onnx package that serving otherwise never
    loads. None: every run of the model is guarded (guard.py)."""
    try:
        from ..catalog.onnx_cost import work_per_row

        return work_per_row(artifact)[0]
    except Exception:  # noqa: BLE001 - unbounded, or a graph ONNX's inference cannot follow
        return None
