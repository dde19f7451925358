"""The per-backend model cache.

Artifacts never change once stored, so a loaded model is kept by its id for the life of
the backend. Which model a project (or a model id) serves is fixed per statement: the
SQL wrappers pass statement_timestamp() as the stamp. The first row of a statement
misses, and the wrapper calls again with the catalog row that pgmodels._lookup read
under the statement's snapshot; every later row is a dictionary lookup, no query.
"""

from __future__ import annotations

import json

from .inputs import row_array
from .runtime import Model, engine_for, fast_row_predict, verify

_loaded: dict[int, Model] = {}
# project name, or model id -> (statement stamp, model id)
_current: dict[object, tuple[str, int]] = {}


def current(project: str, model_id: int, stamp: str, record: dict | None) -> Model | None:
    """The model this statement serves, or None when the caller must pass the record."""
    key = model_id or project
    hit = _current.get(key)
    if hit is not None and hit[0] == stamp:
        return _loaded[hit[1]]
    if record is None:
        return None
    model = _loaded.get(record["id"]) or _load(record)
    _current[key] = (stamp, model.id)
    return model


def _load(r: dict) -> Model:
    artifact = bytes(r["artifact"])
    verify(r["id"], artifact, r["artifact_sha256"])
    model = Model(
        id=r["id"], project=r["project"], version=r["version"], task=r["task"], runtime=r["runtime"],
        feature_names=list(r["feature_names"]), feature_types=list(r["feature_types"]),
        labels=json.loads(r["labels"]) if r["labels"] is not None else None,
        nullable=frozenset(r["nullable"] or ()), engine=None)
    model.engine = engine_for(model.runtime, artifact, model.feature_names, model.task)
    model.row = fast_row_predict(model, row_array)
    _loaded[model.id] = model
    return model
