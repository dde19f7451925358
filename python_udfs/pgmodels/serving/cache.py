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
call that made it. A statement's first lookup pins the model for the rest of the
statement: a later lookup in it (after a second, or by a nested statement, which shares
the stamp) checks the privilege again but keeps the version.

Across statements the backend keeps each decision _lookup made: (role, project or model
id) -> the model it served, with the count of invalidation messages the backend had
taken in when the decision's statement began (backend.py). A statement's first row,
finding nothing registered for it, asks that cache with the role it runs as
(PostgreSQL's GetUserId(), which no caller can choose): while the count is unchanged, no
committed change to PostgreSQL's catalog or to pgmodels' serving catalog has reached the
backend since, so the decision stands and the statement is served with no lookup and no
credential. Any such change, a grant or revoke, a deploy or rollback, a role's membership,
a DROP ROLE, the master switch on pgmodels._lookup, sends every backend to _lookup again
at its next transaction. A transaction that has written anything neither uses nor keeps
decisions (its own changes are not counted until it commits), and a decision serves only
during the first second of a transaction (the backend reads invalidations when a
transaction starts; a later statement of a long transaction looks up as before). Inside a
SECURITY DEFINER function the role is the function's owner and the decision serves that
call only, as a lookup there does.
"""

from __future__ import annotations

import json
import time

from .._plpy import udf
from ..errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError
from ..rollout import record as rollout_record
from . import backend, guard, native
from .inputs import row_array
from .runtime import Model, engine_for, fast_row_predict, verify

TTL = 1.0  # seconds a registration serves

_loaded: dict[int, Model] = {}
# project name, or model id -> (statement stamp, model id, the model's row fast path, expiry,
# the fast path with a routing key)
_current: dict[object, tuple] = {}
# registrations for one call: project name, or model id -> (statement stamp, model id)
_once: dict[object, tuple] = {}
# project name, or model id -> (statement stamp, rollout.route.Route or None): the rollout
# a statement's answers are routed by, registered with the model
_routes: dict[object, tuple] = {}
# (role oid, project name or model id) -> (invalidation count, model id, transaction start,
# confirmed, (rollout spec, candidate model id) or None): _lookup's decisions (see _remember)
_decisions: dict[tuple, tuple] = {}
MAX_DECISIONS = 10000
# (statement stamp, role oid, invalidation count, transaction start) read by the last core
# that found nothing registered, before its _lookup ran
_asked: tuple | None = None
monotonic = time.monotonic


def current(project: str, model_id: int, stamp: float, loaded) -> Model | None:
    """The model this statement serves, or None when the caller must run _lookup first."""
    key = model_id or project
    if loaded is not None:
        once = _once.pop(key, None)
        if once is not None and once[0] == stamp and _for_me(once[2]):
            return _loaded[once[1]]
    hit = _current.get(key)
    if hit is not None and hit[0] == stamp and _for_me(hit[5]):
        if hit[3] > monotonic():
            return _loaded[hit[1]]
        if loaded is None:  # this statement's registration expired: a full lookup checks again
            return None
    if loaded is None:
        return _decided(key, stamp)
    raise PgmodelsError("no model is loaded for this statement",
                        detail="The serving cores answer only from models pgmodels._lookup loaded for the "
                               "current statement.",
                        hint="Call predict(), predict_proba(), predict_label() or predict_batch().",
                        sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


@udf(stamp_arg=2)
def load(project: str, model_id: int, stamp: float, record: dict, once: bool = False, caller: int | None = None,
         rollout: str | None = None, candidate: dict | None = None) -> bool:
    """pgmodels._load: make a catalog model the one this statement (or this call) serves,
    and keep the decision for the role _lookup checked (caller). False when the model is
    not loaded here and the record came without its artifact: _lookup then reads the
    artifact and calls again. A statement whose model run a cancel or timeout stopped
    loads nothing more: the error is raised again (guard.py). rollout and candidate: the
    project's active rollout (jsonb: id, mode, fraction) and its candidate's record, which
    every answer of the statement is then routed by (rollout/route.py)."""
    guard.check_statement(stamp)
    if rollout_record.pending():  # answers a rollout recorded in earlier statements
        rollout_record.due(stamp)
    model = _model(record)
    spec = json.loads(rollout) if rollout is not None and candidate is not None else None
    second = _model(candidate) if spec is not None else None
    if model is None or (spec is not None and second is None):
        return False
    key = model_id or project
    _remember(key, stamp, caller, model.id, (spec, second.id) if spec is not None else None)
    pinned = _current.get(key)
    if pinned is not None and pinned[0] == stamp and pinned[1] != model.id and pinned[1] in _loaded:
        model = _loaded[pinned[1]]  # the statement's first lookup chose its version
    _register(key, stamp, model, spec, second, once, TTL, caller)
    if not once and spec is None and caller is not None:
        # the rest of the statement's rows in C, for the role the lookup checked (native.py)
        native.offer_statement(caller, key, stamp, model)
    return True


def _model(record: dict) -> Model | None:
    """The loaded model of a catalog record, loaded now if the record has its artifact."""
    model = _loaded.get(record["id"])
    if model is None or model.sha256 != bytes(record["artifact_sha256"]):
        if record["artifact"] is None:
            return None
        model = _load(record)
    return model


def _for_me(role) -> bool:
    """Whether a registration made for role serves the code running now: only the role
    the lookup checked (GetUserId(); a registration of 0.2.0's _load, which names no role,
    serves any, as it did)."""
    return role is None or role == backend.user()


def _register(key, stamp: float, model: Model, spec, candidate, once: bool, ttl: float, role=None) -> None:
    route = None
    if spec is not None and candidate is not None and candidate.id != model.id:
        from ..rollout.route import made

        route = made(spec, model, candidate, stamp)
    _routes[key] = (stamp, route)
    if once:
        _current.pop(key, None)
        _once[key] = (stamp, model.id, role)
    elif route is not None:
        _current[key] = (stamp, model.id, route.row, monotonic() + ttl, route.keyed, role)
    else:
        _current[key] = (stamp, model.id, model.row, monotonic() + ttl, model.keyed, role)


def route_for(key, stamp: float):
    """The rollout this statement's answers for a project (or model id) are routed by, or None."""
    hit = _routes.get(key)
    return hit[1] if hit is not None and hit[0] == stamp else None


def _decided(key, stamp: float) -> Model | None:
    """The model a kept decision serves the calling role in this statement, or None: run
    _lookup (whose decision load() then keeps)."""
    global _asked
    me = backend.caller(TTL)
    if me is None:
        _asked = None
        return None
    role, session_role, count, started, left = me
    _asked = (stamp, role, count, started)
    decision = _decisions.get((role, key))
    if decision is None or not decision[3] or decision[0] != count or left <= 0:
        return None
    model = _loaded.get(decision[1])
    if model is None:
        return None
    spec, candidate = (decision[4][0], _loaded.get(decision[4][1])) if decision[4] is not None else (None, None)
    if spec is not None and candidate is None:
        return None
    # a SECURITY DEFINER function's owner (role is not the session's): this call only, as _lookup's once
    _register(key, stamp, model, spec, candidate, role != session_role, min(TTL, left), role)
    if role != session_role:
        _once.pop(key, None)
    return model


def _remember(key, stamp: float, caller: int | None, model_id: int, route=None) -> None:
    """Keep _lookup's decision for the role it checked, with the invalidation count read
    before the check began.

    A decision serves only once a lookup in a later transaction, at the same count, has
    made it again. The count may have moved between the statement's snapshot and the
    core's read of it (the backend reads the queue when it first locks a relation, an
    index say, in the transaction): the first decision could then stand for a count that
    includes a change its snapshot did not see. A transaction started after that read
    takes its snapshot after every change the count includes had committed, so its
    lookup, at the same count, sees them all."""
    asked = _asked
    if caller is None or asked is None or asked[0] != stamp or asked[1] != caller or not backend.writes_nothing():
        return
    old = _decisions.get((caller, key))
    if old is not None and old[0] == asked[2] and old[1] == model_id and old[4] == route and asked[3] > old[2]:
        _decisions[(caller, key)] = (old[0], model_id, old[2], True, route)
        if route is None and not old[3] and model_id in _loaded:
            # a tree ensemble's one-row predict in C serves the same decision (native.py)
            native.offer(caller, key, old[0], _loaded[model_id])
        return
    if len(_decisions) >= MAX_DECISIONS:
        _decisions.clear()
        native.forget()
    elif old is not None:
        native.forget(caller, key)
    _decisions[(caller, key)] = (asked[2], model_id, asked[3], False, route)


def _load(r: dict) -> Model:
    artifact = bytes(r["artifact"])
    verify(r["id"], artifact, r["artifact_sha256"])
    # a clustering model is served as a classifier is: its label output is the cluster
    task = "classification" if r["task"] == "clustering" else r["task"]
    model = Model(
        id=r["id"], project=r["project"], version=r["version"], task=task, runtime=r["runtime"],
        feature_names=list(r["feature_names"]), feature_types=list(r["feature_types"]),
        labels=json.loads(r["labels"]) if r["labels"] is not None else None,
        nullable=frozenset(r["nullable"] or ()), sha256=bytes(r["artifact_sha256"]),
        array_features=json.loads(r["array_features"]) if r.get("array_features") else {})
    imported, work = bool(r.get("imported")), r.get("work_per_row")

    def start():
        nonlocal work
        if imported and work is None and model.runtime == "onnx":
            work = _estimate(artifact)
        model.engine = engine_for(model.runtime, artifact, model.feature_names, model.task, imported, work)
        model.row = fast_row_predict(model, row_array)
        model.keyed = (lambda features, key, row=model.row: row(features)) if model.row is not None else None
        return model.engine

    trees = r.get("native_trees")
    if trees and model.runtime == "onnx" and native.available():
        # the trees train() or import_onnx() made and checked (native.checked_translation):
        # the library answers predict(), and onnxruntime starts when another answer (or a
        # row the library does not take) first needs it
        model.native_blob, model.start = bytes(trees), start
        model.row = _starting_row(model)
        model.keyed = lambda features, key, row=model.row: row(features)
    else:
        start()
        native.keep_source(model, artifact)
    _loaded[model.id] = model
    return model


def _starting_row(model: Model):
    """The row path of a model whose engine has not started: it starts it, and from then on
    the model's own row path (or predict()'s general one, when it has none) answers."""
    def row(features: list) -> float:
        if model.engine is not None and model.row is not row and model.row is not None:
            return model.row(features)
        from .predict import _answer

        return _answer(model, features, "predict")
    return row


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
