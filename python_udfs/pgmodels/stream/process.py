"""process_stream(): a consumer's next events, scored in one model run, in the caller's
transaction.

1. pgmodels._consumer_get locks one of the consumer's partitions for this transaction (a
   worker that finds every partition held gets nothing and returns 0) and starts a batch
   there: the events of the transactions committed since the partition's position (see
   sql/075_stream_catalog.sql);
2. one statement reads up to max_events of them (of that partition) in id order, with
   their features (from the event's row, else looked up by key in the enrich relation);
3. events whose features cannot be scored (missing, NaN, Infinity, out of range, an
   array of the wrong length) or whose key does not convert to the type of the output's
   key column go to the dead letters; the others are scored in one run of the vectorized
   path and written to the output table (the key, text in the log, in its own type);
4. the position moves past them (pgmodels._consumer_advance, which hands out their
   delivery numbers under the consumer's row lock, so deliveries number in commit order
   however many partitions are scored at once), the predictions are written and
   subscribers are notified, all in the same transaction: a prediction exists if and
   only if the position moved past its event.
"""

from __future__ import annotations

import json
import math

import numpy as np
import plpy

from .. import progress, relations
from .._plpy import query, quote_ident as qi, udf
from ..batch.plan import ServedModel, parts
from ..errors import PgmodelsError
from ..rollout import record
from ..rollout.route import score_block
from ..serving import cache, vectorized
from ..serving.runtime import FLOAT32_MAX, Model
from .consumers import sources_of_features

_plans: dict[tuple, str] = {}  # per consumer and model: the statement that reads events
_inserts: dict[tuple, object] = {}  # per output table: the statement that writes predictions
INSERT = """
INSERT INTO {out} (event_id, key, prediction, probabilities, label, model_id, model_version, event_time,
                   predicted_at, delivery)
SELECT u.i, CAST(u.k AS {key}), u.p, CASE WHEN $4 > 0 THEN $3[((u.o - 1) * $4 + 1)::integer : (u.o * $4)::integer] END, u.l,
       $6[u.o::integer], $7[u.o::integer], u.t, pg_catalog.now(), $8 + u.o
  FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($5::real[]),
                  pg_catalog.unnest($9::text[]), pg_catalog.unnest($10::timestamptz[])) WITH ORDINALITY AS u(i, k, p, l, t, o)"""
# $6, $7: each event's model id and version (a rollout answers some by its candidate)
INSERT_TYPES = ["bigint[]", "text[]", "real[]", "integer", "real[]", "bigint[]", "integer[]", "bigint", "text[]",
                "text[]"]
# an output table with a contributions column (add_consumer(..., outputs => ARRAY['contributions']))
INSERT_CONTRIBUTIONS = """
INSERT INTO {out} (event_id, key, prediction, probabilities, label, model_id, model_version, event_time,
                   predicted_at, delivery, contributions)
SELECT u.i, CAST(u.k AS {key}), u.p, CASE WHEN $4 > 0 THEN $3[((u.o - 1) * $4 + 1)::integer : (u.o * $4)::integer] END, u.l,
       $6[u.o::integer], $7[u.o::integer], u.t, pg_catalog.now(), $8 + u.o, u.c
  FROM ROWS FROM (pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($5::real[]),
                  pg_catalog.unnest($9::text[]), pg_catalog.unnest($10::timestamptz[]), pg_catalog.unnest($11::jsonb[]))
       WITH ORDINALITY AS u(i, k, p, l, t, c, o)"""
_explains: dict[int, bool] = {}  # per output table: whether it has a contributions column
# the type of the output's key column, if it may hold a key (sql/078_stream_keys.sql)
KEY_TYPE = """
SELECT pgmodels._key_type(a.attrelid, a.attname)::text AS cast, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
  FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attname = 'key' AND a.attnum > 0 AND NOT a.attisdropped"""
_casts: dict[tuple, object] = {}  # per key type: the statements that check keys convert


def _read_sql(c: dict, model: ServedModel, events: relations.Relation, enrich: relations.Relation | None) -> str:
    sources = sources_of_features(model, events, enrich)
    numbers, texts = [], []
    for column, kind, length in parts(model):
        ident = qi(column)
        ref = {"event": f"(ev.r).{ident}", "enrich": f"en.{ident}",
               "both": f"coalesce((ev.r).{ident}, en.{ident})"}[sources[column]]
        if kind == "text":
            texts.append(f"({ref})::text")
        elif kind == "number":
            col = (events.columns.get(column) or enrich.columns[column])
            # float8, not real: a value beyond single precision is the event's problem, not the batch's
            numbers.append(f"ARRAY[({ref}){'::integer' if col.category == 'B' else ''}::float8]")
        else:
            numbers.append(f"(CASE WHEN pg_catalog.array_ndims({ref}) > 1 THEN ARRAY(SELECT pg_catalog.unnest({ref})) "
                           f"ELSE {ref} END)::float8[]")
    x = " || ".join(numbers) if numbers else "NULL::float8[]"
    t = f"ARRAY[{', '.join(texts)}]::text[]" if texts else "NULL::text[]"
    join = ""
    if enrich is not None:
        enrich_key = enrich.column(c["enrich_key"], "enrich key")
        stream_key = events.columns.get(c["key_column"]) if c["key_column"] else None
        # the event's key as text: cast back when it came from a column of the same type
        # (it always casts), else compared as text (an event never fails on its key)
        match = f"en.{qi(enrich_key.name)} = ev.ev_key::{enrich_key.type}" \
            if stream_key is not None and stream_key.type == enrich_key.type else f"en.{qi(enrich_key.name)}::text = ev.ev_key"
        # one row per key: a feature store with two rows for a key must not score an event twice
        join = f" LEFT JOIN LATERAL (SELECT * FROM {enrich.qualified} en WHERE {match} LIMIT 1) en ON true"
    return f"""
SELECT ev.ev_id, ev.ev_key, ev.ev_time, {x} AS x, {t} AS t
  FROM (SELECT l.ev_id, l.ev_key, l.ev_time, l.ev_row AS r FROM pgmodels.{qi(c['log'])} l
         WHERE l.ev_txid >= pg_catalog.pg_snapshot_xmin(\x00done\x00) AND l.ev_txid < pg_catalog.pg_snapshot_xmax(\x00batch\x00)
           AND pg_catalog.pg_visible_in_snapshot(l.ev_txid, \x00batch\x00)
           AND NOT pg_catalog.pg_visible_in_snapshot(l.ev_txid, \x00done\x00)
           AND l.ev_id > \x00after\x00{_part_filter(c)}
         ORDER BY l.ev_id LIMIT \x00limit\x00) ev{join}
 ORDER BY ev.ev_id"""


def _part_filter(c: dict) -> str:
    """The partition's events (pgmodels._event_part, inlined): none to filter with one."""
    n = int(c["partitions"])
    if n <= 1:
        return ""
    return (f"\n           AND ((pg_catalog.hashtextextended(coalesce(l.ev_key, l.ev_id::text), 0) % {n} + {n}) % {n})"
            " = \x00part\x00")


def _problem(model: Model, x: list | None, t: list | None, n_numeric: int, numeric_names: list[str],
             text_names: list[str]) -> tuple[str, str] | None:
    """Why an event cannot be scored, as (message, SQLSTATE), or None."""
    if n_numeric:
        if x is None or len(x) != n_numeric:
            return (f"the event has {0 if x is None else len(x)} numeric feature values, the model takes {n_numeric}",
                    "22023")
        for v, name in zip(x, numeric_names):
            if v is None:
                if name not in model.nullable:
                    return f'feature "{name}" is missing', "22004"
            elif not math.isfinite(v):
                return f'feature "{name}" is {"NaN" if math.isnan(v) else "Infinity"}', "22023"
            elif abs(v) > FLOAT32_MAX:
                return f'feature "{name}" is {v}, outside the single-precision range', "22003"
    for v, name in zip(t or [], text_names):
        if v is None and name not in model.nullable:
            return f'feature "{name}" is missing', "22004"
    return None


def _take(consumer_name: str, skip: list[int]) -> dict | None:
    got = query("SELECT * FROM pgmodels._consumer_get(pgmodels._credential(), $1, true, $2)", [consumer_name, skip],
                ["text", "integer[]"])
    return got[0] if got else None


def _read(c: dict, model: Model, max_events: int) -> list:
    """Up to max_events of the taken partition's batch, in id order, with their features."""
    served = ServedModel(model.id, model.project, model.version, model.task, model.feature_names, model.feature_types,
                         model.array_features)
    key = (c["consumer_id"], model.id, c["partitions"])
    template = _plans.get(key)
    if template is None:
        events = relations.by_oid(c["source"])
        enrich = relations.by_oid(c["enrich"]) if c["enrich"] else None
        template = _plans[key] = _read_sql(c, served, events, enrich)
    # The snapshots go in as literals, not parameters: with parameters PostgreSQL soon
    # settles on a generic plan that sorts every pending event to take the first ones,
    # where the plan for the values walks the id index.
    # (NUL marks the places: no identifier can hold one)
    values = {"done": plpy.quote_literal(c["done_snapshot"]) + "::pg_catalog.pg_snapshot",
              "batch": plpy.quote_literal(c["batch_snapshot"]) + "::pg_catalog.pg_snapshot",
              "after": str(int(c["batch_after"])), "limit": str(int(max_events)), "part": str(int(c["part"]))}
    statement = template
    for name, value in values.items():
        statement = statement.replace(f"\x00{name}\x00", value)
    try:
        return plpy.execute(statement)
    except plpy.SPIError as e:
        _plans.pop(key, None)  # a column renamed or dropped since: built again (and checked) next call
        raise e


def _wants_contributions(output: int) -> bool:
    """Whether the consumer's output table has a jsonb column "contributions"."""
    if output not in _explains:
        _explains[output] = bool(query(
            "SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attname = 'contributions' "
            "AND NOT a.attisdropped AND a.atttypid = 'pg_catalog.jsonb'::pg_catalog.regtype", [output], ["oid"]))
    return _explains[output]


def _key_type(output: int) -> str:
    """The type the events' keys (text in the log) become in the output table: its key
    column's, which must be a built-in key type, so that converting a key runs nothing but
    a built-in type's input function (as the consumer's owner, who runs this)."""
    got = query(KEY_TYPE, [output], ["oid"])
    if not got or got[0]["cast"] is None:
        display = relations.by_oid(output).display
        raise PgmodelsError(f"the key column of output table {display} is not of a built-in key type",
                            detail=f"It is {got[0]['type']}." if got else "It has no column \"key\".",
                            hint="Give it the type of the stream's key column again (ALTER TABLE ... ALTER COLUMN "
                                 "key TYPE ...).", sqlstate="42804")
    return got[0]["cast"]


def _keys_that_do_not_convert(rows: list, key_type: str) -> dict:
    """The events (by id) whose key does not convert to the output's key type, with why: a
    key column whose type changed since the output was made, say. Dead letters, not a
    consumer stuck on its batch. One statement checks all; only when it fails, each."""
    if key_type == "text" or not rows:
        return {}
    plans = _casts.get(key_type)
    if plans is None:
        plans = _casts[key_type] = (
            plpy.prepare(f"SELECT pg_catalog.count(CAST(k AS {key_type})) FROM pg_catalog.unnest($1::text[]) k",
                         ["text[]"]),
            plpy.prepare(f"SELECT CAST($1::text AS {key_type})", ["text"]))
    try:
        with plpy.subtransaction():
            plpy.execute(plans[0], [[r["ev_key"] for r in rows]])
        return {}
    except plpy.SPIError:
        pass
    bad = {}
    for r in rows:
        try:
            with plpy.subtransaction():
                plpy.execute(plans[1], [r["ev_key"]])
        except plpy.SPIError as e:
            bad[r["ev_id"]] = (f"the event's key does not convert to {key_type}, the type of the output's key: "
                               f"{e.args[0] if e.args else e}", getattr(e, "sqlstate", None) or "22000")
    return bad


def _explainer(project: str, model: Model):
    """The model's explainer, for this statement, once pgmodels._explain_lookup has checked
    that the consumer's owner (the caller) may explain with the project."""
    from ..explain import cache as explain_cache

    got = query("SELECT pgmodels._stamp() AS s, pgmodels._explain_lookup($1, 0, pgmodels._credential()) AS ok",
                [project], ["text"])[0]
    pair = explain_cache.current(project, 0, got["s"], True)
    if pair[0].id != model.id:  # deployed in between: the next batch scores with the new one
        raise PgmodelsError(f"the deployed model of project \"{project}\" changed during the batch",
                            hint="Process the stream again.", sqlstate="40001")
    return pair[1]


def _advance(c: dict, last: int | None, finished: bool, scored: int, failed: int) -> int | None:
    return query("SELECT pgmodels._consumer_advance(pgmodels._credential(), $1, $2, $3, $4, $5, $6) AS d",
                 [c["consumer_id"], c["part"], last, finished, scored, failed],
                 ["bigint", "integer", "bigint", "boolean", "bigint", "bigint"])[0]["d"]


@udf
def process(consumer_name: str, max_events: int) -> int:
    if max_events is None or not 1 <= max_events <= 100000:
        raise PgmodelsError("max_events must be between 1 and 100000", sqlstate="22023")
    c = _take(consumer_name, [])
    if c is None:
        return 0  # other workers hold every partition
    loaded = query("SELECT pgmodels._stamp() AS s, pgmodels._lookup($1, 0, pgmodels._credential()) AS ok",
                   [c["project"]], ["text"])[0]
    model = cache.current(c["project"], 0, loaded["s"], True)
    rows = _read(c, model, max_events)
    skip = []
    # a partition with nothing: its batch is finished (its position moves on) and the next
    # free one is tried, so that 0 means no free partition has anything
    while not rows and c["partitions"] > 1:
        _advance(c, None, True, 0, 0)
        skip.append(c["part"])
        taken = _take(consumer_name, skip)
        if taken is None:
            progress.stream_batch(consumer_name, c["consumer_id"], 0, max_events)
            return 0
        c = taken
        rows = _read(c, model, max_events)
    n = len(rows)
    progress.stream_batch(consumer_name, c["consumer_id"], n, max_events)  # a full batch is a catch-up's step
    good, bad = [], []
    numeric_names = [f for f, t in zip(model.feature_names, model.feature_types) if t != "text"]
    text_names = [f for f, t in zip(model.feature_names, model.feature_types) if t == "text"]
    key_type = _key_type(c["output"])
    unconverted = _keys_that_do_not_convert(rows, key_type)
    for r in rows:
        problem = unconverted.get(r["ev_id"]) or _problem(model, r["x"], r["t"], len(numeric_names), numeric_names,
                                                        text_names)
        (bad if problem else good).append((r, problem))
    last = rows[n - 1]["ev_id"] if n else None
    if good:  # scored first: the lock below is held to commit, so only writes follow it
        X = np.array([[math.nan if v is None else v for v in r["x"]] for r, _ in good], dtype=np.float32) \
            if numeric_names else np.zeros((len(good), 0), dtype=np.float32)
        T = np.array([["" if v is None else v for v in r["t"]] for r, _ in good], dtype=object) if text_names else None
        outputs = ["prediction", "label", "probabilities"] if model.task == "classification" else ["prediction"]
        if _wants_contributions(c["output"]):
            # contributions are the deployed model's explanation: with them the champion
            # answers every event (not routed), as _score_rows does for a batch job
            out = vectorized.answers(model, vectorized.feed_arrays(model, X, T), len(good), outputs)
            out.update(vectorized.contributions(model, _explainer(c["project"], model), X, T))
        else:
            # routed by the event's key while the project has an active rollout (_lookup
            # registered it for this statement); without one, the deployed model's answers
            out = score_block(model, cache.route_for(c["project"], loaded["s"]), X, T, outputs,
                              [r["ev_key"] for r, _ in good], "stream")
    # the position and the counters: the delivery numbers come with the consumer's row
    # lock (this transaction writes the predictions too, so both or neither happen)
    delivered = _advance(c, last, n < max_events, len(good), len(bad))
    if good:
        probabilities = out.get("probabilities")
        classes = int(probabilities.shape[1]) if probabilities is not None else 0
        explained = "contributions" in out
        insert = _inserts.get((c["output"], explained, key_type))
        if insert is None:
            insert = _inserts[(c["output"], explained, key_type)] = plpy.prepare(
                (INSERT_CONTRIBUTIONS if explained else INSERT).format(out=relations.by_oid(c["output"]).qualified,
                                                                       key=key_type),
                INSERT_TYPES + (["jsonb[]"] if explained else []))
        plpy.execute(insert, [[r["ev_id"] for r, _ in good], [r["ev_key"] for r, _ in good],
                              probabilities.reshape(-1).tolist() if classes else None, classes,
                              out["prediction"], out.get("model_ids") or [model.id] * len(good),
                              out.get("model_versions") or [model.version] * len(good), delivered, out.get("label"),
                              [r["ev_time"] for r, _ in good]]
                     + ([[json.dumps(d) for d in out["contributions"]]] if explained else []))
        delivered += len(good)
        record.flush()  # the rollout's answers, in this transaction with the predictions
    if bad:
        ids = [r["ev_id"] for r, _ in bad]
        payload = {e["ev_id"]: e["j"] for e in query(
            f"SELECT l.ev_id, pg_catalog.to_jsonb(l.ev_row)::text AS j FROM pgmodels.{qi(c['log'])} l "
            "WHERE l.ev_id = ANY ($1)", [ids], ["bigint[]"])}
        query("SELECT pgmodels._consumer_dead_letters(pgmodels._credential(), $1, $2, $3, $4::jsonb[], $5, $6)",
              [c["consumer_id"], ids, [r["ev_key"] for r, _ in bad], [payload.get(i) for i in ids],
               [p[0] for _, p in bad], [p[1] for _, p in bad]],
              ["bigint", "bigint[]", "text[]", "text[]", "text[]", "text[]"])
    if good:
        query("SELECT pg_catalog.pg_notify($1, $2)",
              [f"pgmodels_consumer_{c['consumer_id']}",
               json.dumps({"consumer": consumer_name, "predictions": len(good), "last_event_id": last,
                           "delivered": delivered})], ["text", "text"])
    return n
