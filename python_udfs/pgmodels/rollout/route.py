"""Which version answers a key, and a block of rows scored by a rollout's two versions.

A key's share is the first 52 bits of sha256('<rollout id>:<key>') as a fraction of
2^52 (exact in a double, and the same in SQL: pgmodels._rollout_share). In canary the
candidate answers the keys whose share is below the fraction; the champion's answers for
the keys in [fraction, 2 x fraction) (the rest, above one half) are recorded as the
control group the candidate is measured against. A row without a key draws its share at
random. In shadow every row is scored by both and the champion answers.

A candidate that fails on a row never fails the champion's answer: the row is answered
by the champion and the failure is recorded against the candidate.
"""

from __future__ import annotations

import hashlib
import random
import time

from .._lazy import numpy_for
from ..serving import vectorized
from ..serving.runtime import Model
from . import record

np = numpy_for(__name__)  # imported at its first use (_lazy.py)

CHAMPION, CANDIDATE, CONTROL = 0, 1, 2
_SCALE = float(1 << 52)
# (rollout id, fraction) -> {key: group}: a key's group, kept across statements (customers
# come back; a batch job scores the same keys every run), at most MAX_KEPT keys
_kept: dict[tuple, dict] = {}
MAX_KEPT = 500_000
_made: dict[tuple, "Route"] = {}
MAX_KEY = 1000  # characters of a routing key: a longer one is refused (SQL, proxy) or not recorded
KEPT_KEY = 100  # a key's group is kept only for keys up to this long


def share(rollout_id: int, key) -> float:
    """The key's place in [0, 1) for a rollout: stable for the whole rollout."""
    digest = hashlib.sha256(f"{rollout_id}:{key}".encode()).digest()
    return (int.from_bytes(digest[:7], "big") >> 4) / _SCALE


class Route:
    """A rollout as the scoring code sees it for one statement."""

    __slots__ = ("id", "mode", "fraction", "champion", "candidate", "row", "keyed", "stamp", "_groups", "_prefix")

    def __init__(self, spec: dict, champion: Model, candidate: Model):
        self.id = int(spec["id"])
        self.mode = spec["mode"]
        self.fraction = float(spec["fraction"]) if spec.get("fraction") is not None else None
        self.champion, self.candidate = champion, candidate
        self.row = None  # predict()'s fast path for a row without a key (serving/predict.py)
        self.keyed = None  # and with a key
        self.stamp = None  # the statement it serves now (serving/cache.py sets it at each registration)
        self._prefix = hashlib.sha256(f"{self.id}:".encode())
        groups = _kept.get((self.id, self.fraction))
        if groups is None:
            if sum(len(g) for g in _kept.values()) > MAX_KEPT:
                _kept.clear()
            groups = _kept[(self.id, self.fraction)] = {}
        self._groups = groups

    def group(self, key) -> int:
        """CHAMPION, CANDIDATE (the canary answers) or CONTROL (the champion answers, recorded)."""
        if self.mode == "shadow":
            return CANDIDATE
        if key is None:
            return self._of(random.random())
        g = self._groups.get(key)
        if g is None:
            text = str(key)
            h = self._prefix.copy()
            h.update(text.encode())
            g = self._of((int.from_bytes(h.digest()[:7], "big") >> 4) / _SCALE)
            if len(text) <= KEPT_KEY:
                self._groups[key] = g
        return g

    def _of(self, s: float) -> int:
        f = self.fraction
        if s < f:
            return CANDIDATE
        return CONTROL if s < 2 * f or f >= 0.5 else CHAMPION

    def groups(self, keys, n: int) -> np.ndarray:
        if self.mode == "shadow":
            return np.full(n, CANDIDATE, dtype=np.int8)
        if keys is None:
            keys = [None] * n
        got = list(map(self._groups.get, keys))  # kept: no hashing, no Python call per key
        if None in got:
            group = self.group
            got = [g if g is not None else group(k) for g, k in zip(got, keys)]
        return np.array(got, dtype=np.int8)


def score_block(model: Model, route: Route | None, X: np.ndarray, T, outputs, keys, source: str) -> dict:
    """The outputs for a block of checked rows (X numeric, T text, as feed_arrays takes
    them), routed: with a rollout, "model_ids" and "model_versions" per row."""
    n = X.shape[0]
    started = time.perf_counter()
    out = vectorized.answers(model, vectorized.feed_arrays(model, X, T), n, outputs)
    if route is None or n == 0 or route.candidate.id == model.id:
        return out
    champion_ms = (time.perf_counter() - started) * 1000.0 / n
    groups = route.groups(keys, n)
    rows = np.flatnonzero(groups == CANDIDATE)
    started = time.perf_counter()
    cand, failed = _candidate_answers(route.candidate, X, T, rows, outputs)
    candidate_ms = (time.perf_counter() - started) * 1000.0 / max(len(rows), 1)
    ids = [model.id] * n
    versions = [model.version] * n
    predictions = out.get("prediction") or _predictions(model, X, T)
    shadow = route.mode == "shadow"
    served = list(predictions)
    if not shadow:
        for j, i in enumerate(rows.tolist()):
            if j in failed:
                continue
            ids[i], versions[i] = route.candidate.id, route.candidate.version
            for name in ("prediction", "label"):
                if name in out:
                    out[name][i] = cand[name][j]
            if "probabilities" in out:
                out["probabilities"][i] = cand["probabilities"][j]
            served[i] = cand["prediction"][j]
    out["model_ids"], out["model_versions"] = ids, versions
    key_of = (lambda i: None) if keys is None else \
        (lambda i: None if keys[i] is None or len(str(keys[i])) > MAX_KEY else str(keys[i]))
    recorded = rows if (shadow or keys is not None) else np.zeros(0, dtype=np.int64)
    add, cid, cversion, cpred = record.add, route.candidate.id, route.candidate.version, cand["prediction"]
    for j, i in enumerate(recorded.tolist()):
        error = failed.get(j)
        add(route.id, key_of(i), cid, cversion, None if error else cpred[j], route.mode, source, error,
            candidate_ms, predictions[i] if shadow else None)
    if not shadow and keys is not None:
        for i in np.flatnonzero(groups == CONTROL).tolist():
            record.add(route.id, key_of(i), model.id, model.version, predictions[i], "champion", source, None,
                       champion_ms)
    return out


def _predictions(model: Model, X, T) -> list:
    return vectorized.answers(model, vectorized.feed_arrays(model, X, T), X.shape[0], ["prediction"])["prediction"]


def _candidate_answers(candidate: Model, X, T, rows: np.ndarray, outputs) -> tuple[dict, dict]:
    """The candidate's answers for the rows it scores, and {position: error} for the rows
    it failed on (answered by the champion)."""
    wanted = sorted(set(outputs) | {"prediction"})
    if len(rows) == 0:
        return {w: [] for w in wanted}, {}
    try:
        sub_t = T[rows] if T is not None else None
        return vectorized.answers(candidate, vectorized.feed_arrays(candidate, X[rows], sub_t), len(rows), wanted), {}
    except Exception:  # noqa: BLE001 - one row spoils a block: find which, row by row
        pass
    out = {w: [] for w in wanted}
    failed = {}
    for j, i in enumerate(rows.tolist()):
        try:
            one = vectorized.answers(candidate, vectorized.feed_arrays(candidate, X[i:i + 1],
                                                                       T[i:i + 1] if T is not None else None),
                                     1, wanted)
        except Exception as e:  # noqa: BLE001 - counted against the candidate
            failed[j] = _message(e)
            one = None
        for w in wanted:
            out[w].append(None if one is None else one[w][0])
    return out, failed


def made(spec: dict, champion: Model, candidate: Model, stamp: float) -> Route:
    """The route of a rollout between two loaded versions, made once and kept (a statement
    of pgmodels serve or of an application registers it anew: it only sets the stamp)."""
    key = (int(spec["id"]), spec["mode"], spec.get("fraction"), champion.id, candidate.id)
    route = _made.get(key)
    if route is None or route.champion is not champion or route.candidate is not candidate:
        if len(_made) > 100:
            _made.clear()
        route = _made[key] = Route(spec, champion, candidate)
        route.row, route.keyed = row_function(route), keyed_function(route)
    route.stamp = stamp
    return route


def row_function(route: Route):
    """predict()'s fast path for one numeric row without a key, routed (None: the models
    have no fast path; serving/predict.py routes the row itself)."""
    champion, candidate = route.champion.row, route.candidate.row
    if champion is None or candidate is None:
        return None
    cid, cversion, rid = route.candidate.id, route.candidate.version, route.id
    if route.mode == "canary":
        fraction, draw = route.fraction, random.random

        def canary(features):
            if draw() < fraction:
                try:
                    return candidate(features)
                except Exception as e:  # noqa: BLE001 - counted against the candidate
                    record.due(route.stamp)
                    record.add(rid, None, cid, cversion, None, "canary", "sql", _message(e))
            return champion(features)
        return canary

    def shadow(features):
        answer = champion(features)
        record.due(route.stamp)
        try:
            record.add(rid, None, cid, cversion, candidate(features), "shadow", "sql", None, None, answer)
        except Exception as e:  # noqa: BLE001 - counted against the candidate
            record.add(rid, None, cid, cversion, None, "shadow", "sql", _message(e), None, answer)
        return answer
    return shadow


def _message(e: Exception) -> str:
    return (getattr(e, "message", None) or str(e) or type(e).__name__)[:500]


def keyed_function(route: Route):
    """predict(..., key => k)'s fast path for one numeric row, routed by its key (None: no
    fast path; serving/predict.py routes the row itself)."""
    champion, candidate = route.champion.row, route.candidate.row
    if champion is None or candidate is None:
        return None
    group, kept, add, due = route.group, route._groups, record.add, record.due
    rid, mode = route.id, route.mode
    cid, cversion, mid, mversion = route.candidate.id, route.candidate.version, route.champion.id, route.champion.version

    def keyed(features, key):
        if key is not None and len(key) > MAX_KEY:
            raise ValueError(key)  # the checked path refuses it
        g = kept.get(key)
        if g is None:
            g = group(key)
        if g == CHAMPION:
            return champion(features)
        if g == CONTROL:
            answer = champion(features)
            due(route.stamp)
            add(rid, str(key), mid, mversion, answer, "champion", "sql")
            return answer
        try:
            answer, error = candidate(features), None
        except Exception as e:  # noqa: BLE001 - counted against the candidate; the champion answers
            answer, error = None, _message(e)
        if mode == "shadow" or error is not None:
            served = champion(features)
        else:
            served = answer
        due(route.stamp)
        add(rid, None if key is None else str(key), cid, cversion, answer, mode, "sql", error, None,
            served if mode == "shadow" else None)
        return served
    return keyed
