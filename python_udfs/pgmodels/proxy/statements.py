"""From an infer request to the SQL that scores it, and the other way back.

``plan`` checks a request against the model version's features and says what to score:
a [batch, n] matrix, rows of named features, or keys of the feature source with features
that override the stored ones. ``combine`` turns one or more plans of the same kind
(batching.py merges concurrent requests that way) into one call of pgmodels._score_rows,
the vectorized path batch jobs use too: one model run for all the rows, which also says
which version answered. Keyed rows are read first, as the request's role, in the same
transaction. ``split`` hands each request its rows back.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field

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
    found: list = field(default_factory=list)  # keys: whether each key has a stored row
    routing: list | None = None  # matrix, json: the rollout routing key of each row (None: drawn at random)

    def kind(self) -> tuple:
        """Plans of one kind can share a statement."""
        return self.mode, self.n, self.source


def _check_values(name: str, sql_type: str | None, values) -> None:
    """An integer feature takes whole numbers, a boolean one true, false, 0 or 1: anything
    else is the client's mistake, not something to score silently."""
    if sql_type in ("smallint", "integer", "bigint"):
        for value in values:
            if isinstance(value, float) and value == value and not value.is_integer():
                raise bad_request(f"input \"{name}\" is an integer feature ({sql_type}): {value!r} is not a whole number")
    elif sql_type == "boolean":
        for value in values:
            if value is not None and not isinstance(value, bool) and value not in (0, 1):
                raise bad_request(f"input \"{name}\" is a boolean feature: {value!r} is not true, false, 0 or 1")


def plan(model, v: dict, req: InferRequest) -> Plan:
    names, types = v["feature_names"], v["feature_types"]
    sql_types = v.get("column_types") or {}
    by_name = {t.name: t for t in req.inputs if t.name in names}
    keys = _keys(req, names)
    others = [t for t in req.inputs if t.name not in by_name and not (t.name in ("key", "keys") and keys is not None)]
    if others:
        if len(others) > 1 or by_name or keys is not None:
            raise bad_request(f"unknown input \"{others[-1].name}\": send one [batch, {len(names)}] tensor, or one "
                              f"tensor per feature named {', '.join(names)}")
        x, n_rows = _matrix(others[0], names, types)
        for j, name in enumerate(names):
            _check_values(name, sql_types.get(name), x[j::len(names)])
        return Plan("matrix", n_rows, x=[x[i:i + len(names)] for i in range(0, len(x), len(names))], n=len(names),
                    routing=routing_keys(req, n_rows))
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
        _check_values(name, sql_types.get(name), values)
        for i, value in enumerate(values):
            rows[i][name] = value
    routing = routing_keys(req, n_rows)  # checked in every form; keys of the feature source route by themselves
    if keys is None:
        return Plan("json", n_rows, rows=rows, routing=routing)
    fs = model.feature_source
    if fs is None:
        raise bad_request(f"model \"{model.name}\" has no feature source to look keys up in")
    if not model.key_type or not _KEY_TYPE.match(model.key_type):
        raise ProxyError(404, f"the feature source of \"{model.name}\" is gone")
    return Plan("keys", n_rows, rows=rows, keys=keys,
                source=(fs["schema"], fs["relation"], fs["key_column"], model.key_type))


# As predict(): the core first with loaded NULL, which answers when the backend keeps a
# decision for the request's role (serving/cache.py: no lookup, no credential), then with
# _lookup (an argument, so evaluated first), which checks the privilege, activates the
# environment and loads the model. OFFSET 0 keeps the subquery whole: flattened, each
# (s).field would call the function again. With contributions, the model's explainer too:
# pgmodels._explain_lookup checks the role's explain privilege at every statement, and the
# statement fails (403) without it.
_SCORE = ("SELECT (s).model_version, (s).predictions, (s).labels, (s).probabilities, (s).classes, "
          "(s).contributions, (s).model_versions FROM (SELECT {scored} AS s OFFSET 0) q")
# With the rows' routing keys (NULL: none, each row drawn at random while the project has
# a canary): the project's active rollout answers each key by the version it assigns it,
# and per-row model_versions say which (NULL without a rollout); recorded as source proxy.
_CALL = "pgmodels._score_rows({t}, {x}, {texts}, %(outputs)s, pgmodels._stamp(), {loaded}, {keys}, 'proxy')"
_LOADED = "pgmodels._lookup({t}, pgmodels._credential())"
_EXPLAINED = "(pgmodels._lookup({t}, pgmodels._credential()) AND pgmodels._explain_lookup({t}, pgmodels._credential()))"


def _scored(t: str, x: str, texts: str, explained: bool, keys: str) -> str:
    """coalesce(the kept decision's answer, the looked-up answer, the pending error)."""
    def call(loaded):
        return _CALL.format(t=t, x=x, texts=texts, loaded=loaded, keys=keys)
    first = "" if explained else call("NULL") + ", "
    return (f"coalesce({first}{call((_EXPLAINED if explained else _LOADED).format(t=t))}, "
            "pgmodels._raise_pending(NULL::pgmodels.scored_rows))")


def _score(versioned: bool, explained: bool) -> str:
    t = "''::text, %(model_id)s::bigint" if versioned else "%(project)s::text, 0::bigint"
    return _SCORE.format(scored=_scored(t, "pg_catalog.array_send(%(x)s::real[])", "%(texts)s::text[]", explained,
                                        "%(rkeys)s::text[]"))
_ELEMENT = re.compile(r"^(.*)\[(\d+)\]$")
_OUTPUT = {"predict": "prediction", "probabilities": "probabilities", "label": "label",
           "contributions": "contributions"}
FLT_MAX = 3.4028234663852886e38


def combine(plans: list[Plan], project: str, v: dict, versioned: bool, wanted: tuple) -> tuple[str, dict]:
    """One statement, and its parameters, scoring every row of plans of one kind."""
    params = {"project": project, "model_id": v["model_id"], "outputs": [_OUTPUT[w] for w in wanted]}
    if plans[0].mode == "keys":
        numeric, text = _split_features(v)
        elements = [_ELEMENT.match(n) for n in numeric]
        schema, relation, key_column, _key_type = plans[0].source
        params.update(keys=[k for p in plans for k in p.keys], rows_json=json.dumps([r for p in plans for r in p.rows]),
                      fn=numeric, ft=text, fb=[m.group(1) if m else None for m in elements],
                      fx=[int(m.group(2)) - 1 if m else None for m in elements],
                      fs_schema=schema, fs_relation=relation, fs_key=key_column)
        return _keyed(len(numeric), len(text), versioned, "contributions" in wanted), params
    score = _score(versioned, "contributions" in wanted)
    rows = [r for p in plans for r in (p.x if p.mode == "matrix" else p.rows)]
    # no routing key in any of the plans: NULL, as before rollouts (the hot path)
    params["rkeys"] = (None if all(p.routing is None for p in plans)
                       else [k for p in plans for k in (p.routing or [None] * p.n_rows)])
    if plans[0].mode == "matrix":
        return score, {**params, "x": rows, "texts": None}
    return score, {**params, **_columns(rows, v)}


def split(plans: list[Plan], rows: list, wanted: tuple) -> list[list]:
    """Each plan's rows: (version that answered the row, found, one value per wanted output)."""
    row = rows[0]
    if plans[0].mode == "keys":
        found, n, row = row[0], row[1], row[2:]
        if n != sum(p.n_rows for p in plans):
            raise bad_request("the key column of the feature source is not unique")
        at = 0
        for p in plans:
            p.found, at = found[at:at + p.n_rows], at + p.n_rows
    version, predictions, labels, probabilities, classes, contributions, versions = row
    out, at = [], 0
    for p in plans:
        mine = []
        for ok in p.found or [True] * p.n_rows:
            if not ok:
                mine.append((version, False) + (None,) * len(wanted))
                continue
            values = []
            for w in wanted:
                if w == "predict":
                    values.append(predictions[at])
                elif w == "contributions":
                    values.append(contributions[at])
                elif w == "label":
                    values.append(labels[at])
                else:
                    values.append(probabilities[at * classes:(at + 1) * classes])
            mine.append((versions[at] if versions else version, True, *values))
            at += 1
        out.append(mine)
    return out


def _split_features(v: dict) -> tuple[list, list]:
    names, types = v["feature_names"], v["feature_types"]
    return [n for n, t in zip(names, types) if t != "text"], [n for n, t in zip(names, types) if t == "text"]


def _columns(rows: list[dict], v: dict) -> dict:
    """Rows of named features as _score_rows takes them: numbers, then texts, in feature order."""
    numeric, text = _split_features(v)
    return {"x": [[_number(r.get(n), n) for n in numeric] for r in rows] if numeric else None,
            "texts": [[_text(r.get(n), n) for n in text] for r in rows] if text else None}


def _number(value, name: str):
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    if isinstance(value, (int, float)):
        if abs(value) > FLT_MAX:
            raise bad_request(f"feature \"{name}\" is {value:g}, beyond single precision (3.4e38)")
        return float(value)
    raise bad_request(f"feature \"{name}\" must be a number, not {type(value).__name__}")


def _text(value, name: str):
    if value is None or isinstance(value, str):
        return value
    raise bad_request(f"feature \"{name}\" is text: send it as BYTES")




@functools.lru_cache(maxsize=256)
def _keyed(n_numeric: int, n_text: int, versioned: bool, explained: bool = False) -> str:
    """Read the keyed rows as the role, put the request's features over them, score the
    rows that were found, all in one statement. Feature names travel as parameters
    (fn, ft; fb and fx name an array column and the element of a feature col[i]), and so
    does the feature source: pgmodels._feature_rows reads it, and only if reading it runs
    no function a role wrote (this session's role is the request's only until such a
    function would RESET ROLE; sql/080_proxy.sql)."""
    # one subquery per row over the feature lists (bound once each), not an expression per
    # feature: the statement's text, and its parse and plan, stay the same size whatever
    # the number of features
    number = ("CASE pg_catalog.jsonb_typeof(z.v) WHEN 'number' THEN (z.v #>> '{}')::real "
              "WHEN 'boolean' THEN (z.v #>> '{}')::boolean::integer::real END")
    x = (sql.SQL("pg_catalog.array_agg(ARRAY(SELECT " + number + " FROM pg_catalog.generate_subscripts(p.fn, 1) "
                 "AS j(j) CROSS JOIN LATERAL (SELECT coalesce(k.doc -> p.fn[j.j], k.doc -> p.fb[j.j] -> p.fx[j.j]) AS v) z "
                 "ORDER BY j.j) ORDER BY k.i) FILTER (WHERE k.found)")
         if n_numeric else sql.SQL("NULL::real[]"))
    t = (sql.SQL("pg_catalog.array_agg(ARRAY(SELECT k.doc ->> p.ft[j.j] FROM pg_catalog.generate_subscripts("
                 "p.ft, 1) AS j(j) ORDER BY j.j) ORDER BY k.i) FILTER (WHERE k.found)")
         if n_text else sql.SQL("NULL::text[]"))
    target = sql.SQL("''::text, %(model_id)s::bigint" if versioned else "%(project)s::text, 0::bigint")
    return sql.SQL(
        "WITH k AS (SELECT f.i, f.found, f.doc || r.f AS doc "
        "FROM pgmodels._feature_rows(%(fs_schema)s, %(fs_relation)s, %(fs_key)s, %(keys)s::text[]) AS f "
        "JOIN pg_catalog.jsonb_array_elements(%(rows_json)s::jsonb) WITH ORDINALITY AS r(f, i) ON r.i = f.i), "
        "p AS (SELECT %(fn)s::text[] AS fn, %(fb)s::text[] AS fb, %(fx)s::integer[] AS fx, %(ft)s::text[] AS ft, "
        "%(keys)s::text[] AS keys), "
        "a AS (SELECT pg_catalog.array_agg(k.found ORDER BY k.i) AS found, pg_catalog.count(*) AS n, {x} AS x, "
        "{t} AS t, pg_catalog.array_agg(p.keys[k.i::integer] ORDER BY k.i) FILTER (WHERE k.found) "
        "AS rk FROM k CROSS JOIN p) "
        "SELECT a.found, a.n, (q.s).model_version, (q.s).predictions, (q.s).labels, (q.s).probabilities, "
        "(q.s).classes, (q.s).contributions, (q.s).model_versions FROM a LEFT JOIN LATERAL (SELECT {scored} "
        "AS s WHERE a.x IS NOT NULL OR a.t IS NOT NULL OFFSET 0) q ON true").format(
        x=x, t=t, scored=sql.SQL(_scored(target.as_string(None), "pg_catalog.array_send(a.x)", "a.t", explained, "a.rk")
                                 .replace("{", "{{").replace("}", "}}"))
    ).as_string(None)


def routing_keys(req: InferRequest, n_rows: int) -> list | None:
    """The request's parameters.routing_key as one key (text) per row, or None. A string
    or a number routes every row of the request; a list (REST only: gRPC parameters are
    scalars) holds one key per row, a null in it drawing that row at random."""
    value = req.parameters.get("routing_key")
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) != n_rows:
            raise bad_request(f"\"routing_key\" holds {len(value)} keys for {n_rows} rows: send one key per row, "
                              "or one string or number for all of them")
        return [None if k is None else _routing_key(k) for k in value]
    return [_routing_key(value)] * n_rows


def _routing_key(value) -> str:
    """A key as rollout_version(project, key) reads it: a string as it is, a number as
    SQL writes it (17, not 17.0)."""
    if isinstance(value, str):
        if len(value) > 1000:
            raise bad_request("\"routing_key\" must be at most 1000 characters")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        return str(int(value)) if value.is_integer() else repr(value)
    raise bad_request("\"routing_key\" must be a string or a number, or a list of them with one per row")


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
    # (a float32 tensor cannot hold such a value: make_tensor refused NaN and infinities)
    if t.data.dtype.kind == "f" and t.data.dtype.itemsize > 4 and len(t.data) and float(abs(t.data).max()) > FLT_MAX:
        raise bad_request(f"input \"{t.name}\" has a value beyond single precision (3.4e38)")
    return t.data.astype("float64").tolist(), shape[0]
