"""A rollout's report: its versions' recorded answers joined to the outcomes that arrived.

The answers come from pgmodels._rollout_evidence (definer: the project's owner only);
the outcomes are read here, as the calling role, from the relation register_outcomes()
named, for the keys that were answered (the key column compared in its own type, with
the caller's rights; only text comes back). For each version, the latest answer per key
is compared with the key's outcome. Intervals are bootstrap percentiles (300 resamples,
seeded by the rollout id, so a report is repeatable): over the shared keys, paired, in
shadow; over the two groups, independently, in canary.
"""

from __future__ import annotations

import json
import math

import numpy as np
import plpy

from .._plpy import query, udf
from ..errors import PgmodelsError

RESAMPLES = 300
HIGHER_IS_BETTER = {"f1": True, "accuracy": True, "r2": True, "mae": False}


def evidence(rollout_id: int) -> dict:
    row = query("SELECT pgmodels._rollout_evidence(pgmodels._credential(), $1)::text AS e", [rollout_id], ["bigint"])
    return json.loads(row[0]["e"])


def outcomes(ev: dict, keys: list[str]) -> dict[str, str]:
    """key -> label (as text) for the answered keys, read as the caller (the role that
    registered them; the caller's search_path is pg_catalog's alone, sql/129). Keys are
    compared in the key column's type, where an index serves; if one of them does not
    convert to it (a key a client sent by hand), as text."""
    src = ev.get("outcomes")
    if not src or not keys:
        return {}
    q = plpy.quote_ident
    key, label = f"s.{q(src['key'])}", f"s.{q(src['label'])}"
    since = f" AND s.{q(src['time'])} OPERATOR(pg_catalog.>=) $2::pg_catalog.timestamptz" if src.get("time") else ""
    args = [keys] + ([ev["started_at"]] if since else [])
    types = ["text[]"] + (["text"] if since else [])
    head = f"SELECT {key}::pg_catalog.text AS k, {label}::pg_catalog.text AS l FROM {src['relation']} s WHERE "
    tail = f" AND {label} IS NOT NULL{since}"
    try:
        with plpy.subtransaction():
            rows = query(head + f"{key} OPERATOR(pg_catalog.=) ANY ($1::{src['key_type']}[])" + tail, args, types)
    except plpy.SPIError:
        rows = query(head + f"{key}::pg_catalog.text OPERATOR(pg_catalog.=) ANY ($1)" + tail, args, types)
    return {r["k"]: r["l"] for r in rows}


def _classes(ev: dict):
    labels = json.loads(ev["labels"]) if isinstance(ev.get("labels"), str) else ev.get("labels") or []
    numeric = bool(labels) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels)
    return labels, numeric


def _truth(ev: dict, labels, numeric, text: str):
    if ev["task"] == "regression":
        try:
            return float(text)
        except ValueError:
            return None
    if numeric:
        try:
            return float(text)
        except ValueError:
            return None
    return text


def _predicted(ev: dict, labels, numeric, value):
    """A recorded prediction (the label's value, or the class index) as the outcome is compared."""
    if value is None or ev["task"] == "regression" or numeric:
        return value
    i = int(value)
    if 0 <= i < len(labels):
        v = labels[i]
        return ("true" if v else "false") if isinstance(v, bool) else str(v)
    return str(i)


def metric(name: str, truth: list, pred: list, positive=None) -> float | None:
    if not truth:
        return None
    if name in ("r2", "mae"):
        t, p = np.asarray(truth, dtype=float), np.asarray(pred, dtype=float)
        if name == "mae":
            return float(np.mean(np.abs(t - p)))
        ss = float(np.sum((t - t.mean()) ** 2))
        return None if ss == 0 else 1.0 - float(np.sum((t - p) ** 2)) / ss
    t, p = np.asarray(truth, dtype=object), np.asarray(pred, dtype=object)
    if name == "accuracy":
        return float(np.mean(t == p))
    classes = [positive] if positive is not None else sorted(set(truth) | set(pred), key=str)
    scores = []
    for c in classes:
        tp = float(np.sum((p == c) & (t == c)))
        fp = float(np.sum((p == c) & (t != c)))
        fn = float(np.sum((p != c) & (t == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _interval(values: list, confidence: float):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if len(values) < 10:
        return None, None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def build(rollout_id: int) -> dict:
    ev = evidence(rollout_id)
    rule = ev["rule"]
    name, confidence = rule["metric"], float(rule["confidence"])
    second = ("accuracy" if name != "accuracy" else "f1") if ev["task"] != "regression" else \
        ("mae" if name != "mae" else "r2")
    labels, numeric = _classes(ev)
    positive = None
    if ev["task"] != "regression" and len(labels) == 2:
        positive = float(labels[1]) if numeric else _predicted(ev, labels, numeric, 1)
    candidate_role = ev["mode"]
    # each key's latest answer on each side (a rollout may have gone from shadow to canary:
    # both are the candidate's answers)
    latest = {"champion": {}, candidate_role: {}}
    rows = ev["latest"]
    for side, key, prediction in zip(rows["side"], rows["key"], rows["prediction"]):
        latest["champion" if side == "champion" else candidate_role][key] = prediction
    counts = {"champion": ev["counts"]["champion"], candidate_role: ev["counts"]["candidate"]}
    known = outcomes(ev, sorted(set(latest["champion"]) | set(latest[candidate_role])))
    joined = {}
    for role in ("champion", candidate_role):
        rows = [(k, _truth(ev, labels, numeric, known[k]), _predicted(ev, labels, numeric, p))
                for k, p in latest[role].items() if k in known]
        joined[role] = [r for r in rows if r[1] is not None and r[2] is not None]
    rng = np.random.default_rng(rollout_id)
    values, boots = {}, {}
    for role, rows in joined.items():
        t, p = [r[1] for r in rows], [r[2] for r in rows]
        values[role] = (metric(name, t, p, positive), metric(second, t, p, positive))
        boots[role] = []
        if len(rows) >= 10:
            for _ in range(RESAMPLES):
                idx = rng.integers(0, len(rows), len(rows))
                boots[role].append(metric(name, [t[j] for j in idx], [p[j] for j in idx], positive))
    # the difference: paired over shared keys in shadow, independent groups in canary
    diff_boot = []
    value_diff = None
    if values["champion"][0] is not None and values[candidate_role][0] is not None:
        value_diff = values[candidate_role][0] - values["champion"][0]
        if candidate_role == "shadow":
            champ = {r[0]: r for r in joined["champion"]}
            shared = [(champ[r[0]], r) for r in joined["shadow"] if r[0] in champ]
            if len(shared) >= 10:
                for _ in range(RESAMPLES):
                    idx = rng.integers(0, len(shared), len(shared))
                    picked = [shared[j] for j in idx]
                    m1 = metric(name, [x[1][1] for x in picked], [x[1][2] for x in picked], positive)
                    m0 = metric(name, [x[0][1] for x in picked], [x[0][2] for x in picked], positive)
                    diff_boot.append(None if m1 is None or m0 is None else m1 - m0)
        else:
            for b1, b0 in zip(boots[candidate_role], boots["champion"]):
                diff_boot.append(None if b1 is None or b0 is None else b1 - b0)
    agreement = ev["counts"]["agreement"]
    versions = []
    for role, info in (("champion", ev["champion"]), (candidate_role, ev["candidate"])):
        c = counts[role]
        answers, errors = int(c["answers"]), int(c["errors"])
        lo, hi = _interval(boots[role], confidence)
        dlo, dhi = _interval(diff_boot, confidence) if role != "champion" else (None, None)
        versions.append({
            "role": role, "model_id": info["id"], "version": info["version"], "predictions": answers,
            "outcomes": len(joined[role]), "metric": name, "value": values[role][0], "ci_low": lo, "ci_high": hi,
            "difference": value_diff if role != "champion" else None, "difference_low": dlo, "difference_high": dhi,
            "second_metric": second, "second_value": values[role][1],
            "agreement": agreement if role != "champion" else None,
            "latency_ms": c["latency_ms"], "errors": errors,
            "error_rate": errors / answers if answers else None})
    return {"rollout": ev, "versions": versions}


@udf
def report_json(rollout_id: int) -> str:
    if rollout_id is None:
        raise PgmodelsError("rollout id must not be NULL", sqlstate="22004")
    return json.dumps({"versions": build(rollout_id)["versions"]})
