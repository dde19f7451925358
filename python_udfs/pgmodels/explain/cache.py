"""The per-backend explainer cache, as serving.cache is the model cache.

pgmodels._explain_lookup (definer) checks that the calling role may explain with the
project, reads the model and its explainer record from the catalog and hands both to
:func:`load` (pgmodels._explain_load, which no other role may call); the explain cores
then answer from :func:`current`, for this statement only (and for TTL seconds at most),
and never take a model or a record from their caller. A record is loaded (its sha256
checked, its trees turned into TreeSHAP paths) once per backend and kept by model id.
A registration for explaining is its own: it does not let predict() serve the model,
nor a predict registration let anyone explain.
"""

from __future__ import annotations

import time

from .._plpy import udf
from ..errors import DATA_CORRUPTED, OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError
from ..serving import cache as model_cache
from ..serving.runtime import Model
from .explainer import Explainer
from .record import Damaged

TTL = model_cache.TTL

_explainers: dict[int, tuple[bytes, Explainer]] = {}   # model id -> (record sha256, explainer)
_current: dict[object, tuple] = {}   # project name or model id -> (stamp, model id, expiry)
_once: dict[object, tuple] = {}      # ... for one call: (stamp, model id)
monotonic = time.monotonic


def current(project: str, model_id: int, stamp: float, loaded) -> tuple[Model, Explainer] | None:
    """The model and explainer this statement explains with, or None: run the lookup first."""
    key = model_id or project
    if loaded is not None:
        once = _once.pop(key, None)
        if once is not None and once[0] == stamp:
            return _pair(once[1])
    hit = _current.get(key)
    if hit is not None and hit[0] == stamp and hit[2] > monotonic():
        return _pair(hit[1])
    if loaded is None:
        return None
    raise PgmodelsError("no explainer is loaded for this statement",
                        detail="The explain cores answer only from explainers pgmodels._explain_lookup loaded for "
                               "the current statement.",
                        hint="Call explain_prediction() or explain_batch().",
                        sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


def _pair(model_id: int) -> tuple[Model, Explainer]:
    return model_cache._loaded[model_id], _explainers[model_id][1]


@udf(stamp_arg=2)
def load(project: str, model_id: int, stamp: float, record: dict, explainer: bytes | None, sha256: bytes,
         once: bool = False) -> bool:
    """pgmodels._explain_load: make a model and its explainer the ones this statement (or
    call) explains with. False when either is not loaded here and came without its bytes:
    the lookup then reads them and calls again."""
    model = model_cache._loaded.get(record["id"])
    if model is None or model.sha256 != bytes(record["artifact_sha256"]):
        if record["artifact"] is None:
            return False
        model = model_cache._load(record)
    have = _explainers.get(model.id)
    if have is None or have[0] != bytes(sha256):
        if explainer is None:
            return False
        try:
            loaded = Explainer.load(bytes(explainer), bytes(sha256))
        except Damaged as e:
            raise PgmodelsError(f"the explainer of {model.describe()} cannot be loaded", detail=str(e),
                                hint="Train the model again, or set_reference() for an imported one.",
                                sqlstate=DATA_CORRUPTED) from None
        if loaded.feature_names != model.feature_names:
            raise PgmodelsError(f"the explainer of {model.describe()} does not match its features",
                                detail="Its record names other features than the model.", sqlstate=DATA_CORRUPTED)
        _explainers[model.id] = (bytes(sha256), loaded)
    key = model_id or project
    if once:
        _current.pop(key, None)
        _once[key] = (stamp, model.id)
    else:
        _current[key] = (stamp, model.id, monotonic() + TTL)
    return True
