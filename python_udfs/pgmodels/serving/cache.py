"""The per-backend model cache.

Artifacts never change once stored, so a loaded model is kept by its id for the life of
the backend. Which model a project serves can change with any deploy: that is checked
once per statement (the SQL wrappers pass statement_timestamp()), so a committed deploy
is seen by the next statement, one statement never mixes two versions, and rows after
the first cost no query at all.
"""

from __future__ import annotations

from .._plpy import query
from ..errors import OBJECT_NOT_IN_PREREQUISITE_STATE, UNDEFINED_OBJECT, PgmodelsError
from .runtime import Model, engine_for, verify

_loaded: dict[int, Model] = {}
# (project name or model id) -> (statement stamp, model id)
_current: dict[object, tuple[str, int]] = {}


def _load(model_id: int) -> Model:
    model = _loaded.get(model_id)
    if model is not None:
        return model
    rows = query("SELECT * FROM pgmodels._model_artifact($1)", [model_id], ["bigint"])
    if not rows or rows[0]["id"] is None:
        raise PgmodelsError(f"model {model_id} does not exist", sqlstate=UNDEFINED_OBJECT)
    r = rows[0]
    artifact = bytes(r["artifact"])
    verify(model_id, artifact, r["artifact_sha256"])
    import json

    model = Model(
        id=r["id"], project=r["project"], version=r["version"], task=r["task"], runtime=r["runtime"],
        feature_names=list(r["feature_names"]), feature_types=list(r["feature_types"]),
        labels=json.loads(r["labels"]) if r["labels"] is not None else None,
        nullable=frozenset(r["nullable"] or ()),
        engine=None,
    )
    model.engine = engine_for(model.runtime, artifact, model.feature_names, model.task)
    _loaded[model_id] = model
    return model


def deployed(project: str, stamp: str) -> Model:
    """The model the project serves in this statement."""
    hit = _current.get(project)
    if hit is not None and hit[0] == stamp:
        return _loaded[hit[1]]
    rows = query("SELECT project_id, model_id FROM pgmodels._deployment_of($1)", [project], ["text"])
    if not rows or rows[0]["project_id"] is None:
        raise PgmodelsError(f'project "{project}" does not exist',
                            hint="Train one with train(), or see pgmodels.overview for the projects there are.",
                            sqlstate=UNDEFINED_OBJECT)
    model_id = rows[0]["model_id"]
    if model_id is None:
        raise PgmodelsError(f'project "{project}" has no deployed model',
                            hint="Deploy one with deploy(), or train with automatic_deploy => true.",
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
    model = _load(model_id)
    _current[project] = (stamp, model_id)
    return model


def by_id(model_id: int, stamp: str) -> Model:
    """A model chosen by id; its existence is checked once per statement."""
    hit = _current.get(model_id)
    if hit is not None and hit[0] == stamp:
        return _loaded[model_id]
    exists = query("SELECT pgmodels._model_exists($1) AS e", [model_id], ["bigint"])[0]["e"]
    if not exists:
        _loaded.pop(model_id, None)
        raise PgmodelsError(f"model {model_id} does not exist", sqlstate=UNDEFINED_OBJECT)
    model = _load(model_id)
    _current[model_id] = (stamp, model_id)
    return model


def resolve(project: str, model_id: int, stamp: str) -> Model:
    """The SQL wrappers pass either a project name (model_id 0) or a model id (project '')."""
    return by_id(model_id, stamp) if model_id else deployed(project, stamp)
