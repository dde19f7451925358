"""The SQL a batch run executes: a chunk read, scored and upserted in one statement.

A chunk is the next ``chunk_rows`` rows of the source in scoring order (the key, or for
an incremental run the incremental column and then the key) after the last committed
row. The statement aggregates the chunk's features into one rows x features real[]
(and text[] for text features), scores it with one call of pgmodels._score_rows (one
model run; with a rollout, routed by the chunk's keys as text), zips the answers with
the keys and upserts them into the output table, and returns how many rows it wrote
and where it stopped.

Every name in the SQL is quoted from the catalog; every value travels as a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._plpy import quote_ident as qi
from ..errors import DATATYPE_MISMATCH, UNDEFINED_COLUMN, PgmodelsError
from ..relations import NUMERIC_CATEGORIES, Relation

# $1 cursor key, $2 cursor value (incremental column), $3 low watermark, $4 high watermark,
# $5 model id, $6 outputs, $7 run id: all text but the last three
PARAM_TYPES = ["text", "text", "text", "text", "bigint", "text[]", "bigint"]


@dataclass
class ServedModel:
    """What a run needs of the model it scores with (pgmodels._serving_model)."""
    id: int
    project: str
    version: int
    task: str
    feature_names: list[str]
    feature_types: list[str]
    array_features: dict

    @classmethod
    def from_row(cls, r: dict) -> "ServedModel":
        import json
        arrays = r["array_features"]
        arrays = json.loads(arrays) if isinstance(arrays, str) else (arrays or {})
        return cls(r["model_id"], r["project"], r["version"], r["task"], list(r["feature_names"]),
                   list(r["feature_types"]), arrays)

    def describe(self) -> str:
        return f'model {self.id} (version {self.version} of project "{self.project}")'


def parts(model: ServedModel):
    """The model's features grouped by the source column that holds them, in order:
    (column, kind, length), kind 'number', 'text' or 'array'."""
    names, i, out = model.feature_names, 0, []
    while i < len(names):
        name = names[i]
        array = next((a for a, n in model.array_features.items() if name == f"{a}[1]"), None)
        if array is not None:
            length = int(model.array_features[array])
            out.append((array, "array", length))
            i += length
            continue
        out.append((name, "text" if model.feature_types[i] == "text" else "number", 1))
        i += 1
    return out


def feature_columns(model: ServedModel, rel: Relation) -> list[str]:
    """The source columns the model reads, checked: present and of a usable type."""
    used = []
    for column, kind, length in parts(model):
        col = rel.columns.get(column)
        if col is None:
            raise PgmodelsError(f'relation {rel.display} has no column "{column}"',
                                detail=f"{model.describe()} takes a feature of that name.",
                                hint="Score a view that names the columns after the model's features.",
                                sqlstate=UNDEFINED_COLUMN)
        if kind == "array" and not (col.is_array and col.category == "N"):
            raise PgmodelsError(f'column "{column}" must be a numeric array, not {col.type}',
                                detail=f"{model.describe()} was trained on it as an array of {length} numbers.",
                                sqlstate=DATATYPE_MISMATCH)
        if kind == "number" and (col.is_array or col.category not in NUMERIC_CATEGORIES):
            raise PgmodelsError(f'column "{column}" must be numeric, not {col.type}',
                                detail=f"{model.describe()} takes it as a numeric feature.",
                                sqlstate=DATATYPE_MISMATCH)
        used.append(column)
    return used


def numeric_expr(model: ServedModel, rel: Relation, nan_nulls: bool = False) -> str | None:
    """One row's numeric features as a real[] in the model's order; ``nan_nulls`` reads a
    NULL scalar as NaN (so that a block of rows stays NULL-free and numpy reads it in place)."""
    pieces, scalars = [], []
    for column, kind, length in parts(model):
        ref = f"s.{qi(column)}"
        if kind == "number":
            cast = "::integer::real" if rel.columns[column].category == "B" else "::real"
            if nan_nulls and rel.columns[column].category != "B":
                # NULL reads as NaN, and a value beyond single precision as an infinity (a
                # drift report counts it; it must not end the statement)
                scalars.append(f"(CASE WHEN {ref} IS NULL THEN 'NaN'::real "
                               f"WHEN {ref}::float8 > 3.4028234663852886e38 THEN 'Infinity'::real "
                               f"WHEN {ref}::float8 < -3.4028234663852886e38 THEN '-Infinity'::real "
                               f"ELSE {ref}{cast} END)")
            elif nan_nulls:
                scalars.append(f"COALESCE({ref}{cast}, 'NaN'::real)")
            else:
                scalars.append(f"{ref}{cast}")
        elif kind == "array":
            if scalars:
                pieces.append(f"ARRAY[{', '.join(scalars)}]::real[]")
                scalars = []
            flat = f"(CASE WHEN pg_catalog.array_ndims({ref}) = 1 THEN {ref} " \
                   f"ELSE ARRAY(SELECT pg_catalog.unnest({ref})) END)::real[]"
            pieces.append(f"(CASE WHEN pg_catalog.cardinality({ref}) = {length} THEN {flat} "
                          f"ELSE pgmodels._bad_array_feature({_lit(column)}, {length}, "
                          f"pg_catalog.cardinality({ref})) END)")
    if scalars:
        pieces.append(f"ARRAY[{', '.join(scalars)}]::real[]")
    return " || ".join(pieces) if pieces else None


def text_expr(model: ServedModel) -> str | None:
    texts = [f"s.{qi(c)}::text" for c, kind, _ in parts(model) if kind == "text"]
    return f"ARRAY[{', '.join(texts)}]::text[]" if texts else None


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class Plan:
    first: str  # the first chunk's statement (no cursor yet)
    next: str  # every later chunk's
    remove_vanished: str  # a full run's last step: keys that left the source leave the output
    high_watermark: str | None  # the incremental column's largest value now
    keys_first: str = ""  # the keys of a chunk, in order (to name a row an error is about)
    keys_next: str = ""


def build(model: ServedModel, src: Relation, out: Relation, key: str, key_type: str, incremental: str | None,
          incremental_type: str | None, outputs: list[str], chunk_rows: int, mode: str, routed: bool = True) -> Plan:
    """The run's statements; routed: a rollout has the job's model as its champion (the
    run is routed by the rollout active when it starts, as it scores with the model
    deployed then), so each chunk passes its keys."""
    k = qi(key)
    numeric, texts = numeric_expr(model, src), text_expr(model)
    by_value = mode == "incremental"
    w = f"s.{qi(incremental)}" if incremental else "NULL::text"
    where = [f"s.{k} IS NOT NULL"]
    if by_value:
        where += [f"($3 IS NULL OR {w} > $3::{incremental_type})", f"{w} <= $4::{incremental_type}"]
        order, corder, cdesc = f"{w}, s.{k}", "c.w, c.k", "c.w DESC, c.k DESC"
        cursor = f"({w}, s.{k}) > ($2::{incremental_type}, $1::{key_type})"
    else:
        order, corder, cdesc = f"s.{k}", "c.k", "c.k DESC"
        cursor = f"s.{k} > $1::{key_type}"
    cols = [o for o in ("prediction", "probabilities", "label", "contributions") if o in outputs]
    values = {"prediction": "u.p", "label": "u.l", "contributions": "u.c",
              "probabilities": "(sc.s).probabilities[((u.i - 1) * (sc.s).classes + 1)::integer"
                               " : (u.i * (sc.s).classes)::integer]"}
    target = ", ".join([k] + cols + ["model_id", "model_version", "scored_at", "run_id"])
    select = ", ".join(["u.k"] + [values[c] for c in cols]
                       + ["coalesce((sc.s).model_ids[u.i::integer], (sc.s).model_id)",
                          "coalesce((sc.s).model_versions[u.i::integer], (sc.s).model_version)", "pg_catalog.now()", "$7"])
    update = ", ".join(f"{c} = EXCLUDED.{c}" for c in cols + ["model_id", "model_version", "scored_at", "run_id"])

    # the model for this statement, and with contributions its explainer (explain privilege);
    # routed: while the job's model is the champion of its project's active rollout, each
    # row is answered by the version its key is assigned (rollout/route.py), named per row
    # in model_ids/model_versions (NULL without a rollout: the scalar model_id is every row's)
    loaded = f"pgmodels._lookup('', $5, pgmodels._credential(), {'true' if routed else 'false'})"
    if "contributions" in outputs:
        loaded = f"({loaded} AND pgmodels._explain_lookup('', $5, pgmodels._credential()))"

    def keys(conditions: list[str]) -> str:
        return f"SELECT s.{k} AS k FROM {src.qualified} s WHERE {' AND '.join(conditions)} ORDER BY {order} " \
               f"LIMIT {int(chunk_rows)}"

    def statement(conditions: list[str]) -> str:
        return f"""
WITH chunk AS MATERIALIZED (
    SELECT s.{k} AS k, {w} AS w, {numeric or 'NULL::real[]'} AS x, {texts or 'NULL::text[]'} AS t
      FROM {src.qualified} s
     WHERE {' AND '.join(conditions)}
     ORDER BY {order}
     LIMIT {int(chunk_rows)}),
agg AS (
    SELECT pg_catalog.array_agg(c.k ORDER BY {corder}) AS keys,
           {'pg_catalog.array_send(pg_catalog.array_agg(c.x ORDER BY ' + corder + '))' if numeric else 'NULL::bytea'} AS x,
           {'pg_catalog.array_agg(c.t ORDER BY ' + corder + ')' if texts else 'NULL::text[]'} AS t,
           {'pg_catalog.array_agg(c.k::text ORDER BY ' + corder + ')' if routed else 'NULL::text[]'} AS routing,
           pg_catalog.count(*) AS n
      FROM chunk c),
scored AS (
    SELECT a.keys, pgmodels._score_rows('', $5, a.x, a.t, $6, pgmodels._stamp(), {loaded}, a.routing, 'batch') AS s
      FROM agg a WHERE a.n > 0),
written AS (
    INSERT INTO {out.qualified} AS o ({target})
    SELECT {select}
      FROM scored sc, ROWS FROM (pg_catalog.unnest(sc.keys), pg_catalog.unnest((sc.s).predictions),
                                pg_catalog.unnest((sc.s).labels), pg_catalog.unnest((sc.s).contributions))
                      WITH ORDINALITY AS u(k, p, l, c, i)
     WHERE (sc.s).model_id IS NOT NULL
    ON CONFLICT ({k}) DO UPDATE SET {update}
    RETURNING 1)
SELECT (SELECT pg_catalog.count(*) FROM written) AS written,
       (SELECT a.n FROM agg a) AS n,
       (SELECT c.k::text FROM chunk c ORDER BY {cdesc} LIMIT 1) AS last_key,
       (SELECT c.w::text FROM chunk c ORDER BY {cdesc} LIMIT 1) AS last_value,
       (SELECT pgmodels._raise_pending(NULL::integer) FROM scored sc WHERE (sc.s).model_id IS NULL) AS raised"""

    remove = f"DELETE FROM {out.qualified} o WHERE NOT EXISTS (SELECT 1 FROM {src.qualified} s WHERE s.{k} = o.{k})"
    high = f"SELECT pg_catalog.max({w})::text AS high FROM {src.qualified} s" if incremental else None
    return Plan(statement(where), statement(where + [cursor]), remove, high, keys(where), keys(where + [cursor]))
