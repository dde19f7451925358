"""From an infer request to the SQL that scores it, and the other way back.

``plan`` checks a request against the model version's features and says what to score:
a [batch, n] matrix, rows of named features (jsonb), or keys of the feature source with
features that override the stored ones. ``combine`` turns one or more plans of the same
kind into one statement (batching.py merges concurrent requests that way), and
``split`` hands each request its rows back.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

from psycopg import sql

from .errors import ProxyError, bad_request
from .tensors import InferRequest, Tensor

_KEY_TYPE = re.compile(r"^[a-z0-9_ .\"(),\[\]]+$")
_FUNCTIONS = {"predict": "predict", "probabilities": "predict_proba", "label": "predict_label"}


@dataclass
class Plan:
    mode: str                   # matrix | json | keys
    n_rows: int
    x: list | None = None       # matrix: the rows, flat
    n: int = 0                  # matrix: features per row
    rows: list | None = None    # json, keys: one object of features per row
    keys: list | None = None    # keys: the feature source's keys, as text
    source: tuple | None = None  # keys: schema, relation, key column, key type

    def kind(self) -> tuple:
        """Plans of one kind can share a statement."""
        return self.mode, self.n, self.source


def plan(model, v: dict, req: InferRequest) -> Plan:
    names, types = v["feature_names"], v["feature_types"]
    by_name = {t.name: t for t in req.inputs if t.name in names}
    keys = _keys(req, names)
    others = [t for t in req.inputs if t.name not in by_name and not (t.name in ("key", "keys") and keys is not None)]
    if others:
        if len(others) > 1 or by_name or keys is not None:
            raise bad_request(f"unknown input \"{others[-1].name}\": send one [batch, {len(names)}] tensor, or one "
                              f"tensor per feature named {', '.join(names)}")
        x, n_rows = _matrix(others[0], names, types)
        return Plan("matrix", n_rows, x=x, n=len(names))
    n_rows = len(keys) if keys is not None else _batch(by_name)
    if keys is None:
        missing = [n for n in names if n not in by_name]
        if missing:
            raise bad_request(f"model \"{model.name}\" needs features {', '.join(missing)}: send them, or send "
                              "keys of its feature source")
    rows = [{} for _ in range(n_rows)]
    for name, t in by_name.items():
        if _batch({name: t}) != n_rows:
            raise bad_request(f"input \"{name}\" has {_batch({name: t})} rows, the request {n_rows}")
        values = t.data if t.datatype == "BYTES" else t.data.tolist()
        for i, value in enumerate(values):
            rows[i][name] = value
    if keys is None:
        return Plan("json", n_rows, rows=rows)
    fs = model.feature_source
    if fs is None:
        raise bad_request(f"model \"{model.name}\" has no feature source to look keys up in")
    if not model.key_type or not _KEY_TYPE.match(model.key_type):
        raise ProxyError(404, f"the feature source of \"{model.name}\" is gone")
    return Plan("keys", n_rows, rows=rows, keys=keys,
                source=(fs["schema"], fs["relation"], fs["key_column"], model.key_type))


def combine(plans: list[Plan], project: str, v: dict, versioned: bool, wanted: tuple) -> tuple[str, dict]:
    """One statement (and its parameters) scoring every row of plans of one kind, in order:
    each row gives (version that answered, found, output...)."""
    first, total = plans[0], sum(p.n_rows for p in plans)
    params = {"project": project, "model_id": v["model_id"], "version": v["version"]}
    if first.mode == "matrix":
        params.update(x=[f for p in plans for f in p.x], n=first.n, rows=total)
    else:
        rows = [r for p in plans for r in p.rows]
        params["rows_json"] = json.dumps(rows[0] if total == 1 and first.mode == "json" else rows)
        if first.mode == "keys":
            params["keys"] = [k for p in plans for k in p.keys]
    single = total == 1 and first.mode != "keys"
    return _compose(first.mode, wanted, versioned, single, first.source), params


def split(plans: list[Plan], rows: list) -> list[list]:
    out, at = [], 0
    for p in plans:
        out.append(rows[at:at + p.n_rows])
        at += p.n_rows
    return out


@functools.lru_cache(maxsize=256)
def _compose(mode: str, wanted: tuple, versioned: bool, single: bool, source: tuple | None) -> str:
    """The statement for a kind of request (cached: requests of one kind share one text,
    which psycopg then prepares on each connection)."""
    if versioned:
        target, version = sql.SQL("%(model_id)s::bigint"), sql.SQL("%(version)s::integer")
    else:
        target = sql.SQL("%(project)s::text")
        version = sql.SQL("(SELECT pgmodels._deployed_version(%(project)s, pgmodels._credential()))")  # once
    found, tail = sql.SQL("true"), sql.SQL("")
    if mode == "matrix" and single:
        feats = sql.SQL("%(x)s::float8[]")
    elif mode == "matrix":
        feats = sql.SQL("(%(x)s::float8[])[(i - 1) * %(n)s + 1:i * %(n)s]")
        tail = sql.SQL(" FROM generate_series(1, %(rows)s) AS i ORDER BY i")
    elif mode == "json" and single:
        feats = sql.SQL("%(rows_json)s::jsonb")
    elif mode == "json":
        feats = sql.SQL("r.f")
        tail = sql.SQL(" FROM jsonb_array_elements(%(rows_json)s::jsonb) WITH ORDINALITY AS r(f, i) ORDER BY r.i")
    else:
        schema, relation, key_column, key_type = source
        key = sql.Identifier("s", key_column)
        feats = sql.SQL("(pg_catalog.to_jsonb(s) || r.f)")
        found = sql.SQL("{} IS NOT NULL").format(key)
        tail = sql.SQL(" FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS k(key, i) "
                       "JOIN jsonb_array_elements(%(rows_json)s::jsonb) WITH ORDINALITY AS r(f, i) ON r.i = k.i "
                       "LEFT JOIN {} AS s ON {} = k.key::{} ORDER BY k.i").format(
            sql.Identifier(schema, relation), key, sql.SQL(key_type))
    calls = [sql.SQL("CASE WHEN {found} THEN {fn}({target}, {feats}) END").format(
        found=found, fn=sql.Identifier(_FUNCTIONS[w]), target=target, feats=feats) for w in wanted]
    return sql.SQL("SELECT {version}, {found}, {calls}{tail}").format(
        version=version, found=found, calls=sql.SQL(", ").join(calls), tail=tail).as_string(None)


def _keys(req: InferRequest, names: list[str]) -> list[str] | None:
    keys = req.parameters.get("keys")
    if isinstance(keys, str):  # gRPC parameters are scalars: a JSON list in a string
        try:
            keys = json.loads(keys)
        except ValueError:
            raise bad_request("the \"keys\" parameter must be a JSON list") from None
    if keys is not None:
        if not isinstance(keys, list) or not keys or not all(
                isinstance(k, (int, str)) and not isinstance(k, bool) for k in keys):
            raise bad_request("\"keys\" must be a non-empty list of numbers or strings")
        return [str(k) for k in keys]
    for t in req.inputs:
        if t.name in ("key", "keys") and t.name not in names:
            if t.datatype not in ("BYTES", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"):
                raise bad_request(f"input \"{t.name}\" must be of an integer datatype or BYTES")
            values = t.data if t.datatype == "BYTES" else t.data.tolist()
            if not values:
                raise bad_request(f"input \"{t.name}\" holds no keys")
            return [str(k) for k in values]
    return None


def _batch(tensors: dict[str, Tensor]) -> int:
    sizes = set()
    for name, t in tensors.items():
        if len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1):
            sizes.add(t.shape[0])
        else:
            raise bad_request(f"input \"{name}\" must have shape [batch] or [batch, 1], not {t.shape}")
    if len(sizes) != 1:
        raise bad_request("the feature inputs have different batch sizes")
    n = sizes.pop()
    if n == 0:
        raise bad_request("the batch is empty")
    return n


def _matrix(t: Tensor, names: list[str], types: list[str]) -> tuple[list, int]:
    if any(kind == "text" for kind in types):
        raise bad_request(f"this model has text features ({', '.join(n for n, k in zip(names, types) if k == 'text')}): "
                          "send one tensor per feature, named after it, with BYTES for text")
    if t.datatype == "BYTES":
        raise bad_request(f"input \"{t.name}\": a [batch, n_features] tensor must be numeric")
    shape = [1, t.shape[0]] if len(t.shape) == 1 else t.shape
    if len(shape) != 2:
        raise bad_request(f"input \"{t.name}\" must have shape [batch, {len(names)}], not {t.shape}")
    if shape[1] != len(names):
        raise bad_request(f"input \"{t.name}\" has {shape[1]} features, the model takes {len(names)} "
                          f"({', '.join(names)})")
    if shape[0] == 0:
        raise bad_request("the batch is empty")
    return t.data.astype("float64").tolist(), shape[0]
