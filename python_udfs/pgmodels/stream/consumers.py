"""add_consumer(): a model scores a stream. Runs as the caller, who must be able to read
the stream's table (its events are its rows), predict with the project, and own the
output table, which is created when missing. A consumer whose output table has a jsonb
column "contributions" (add_consumer(..., outputs => ARRAY[..., 'contributions']) makes
it) writes each prediction's per-feature contributions there too. The output's key column
has the type of the stream's key column (when that is a built-in type with an order, see
sql/078_stream_keys.sql; else text), so that it joins back to the stream's table."""

from __future__ import annotations

from .. import relations
from .._plpy import qualified, query, require_execute, udf
from ..batch.jobs import serving_model
from ..batch.plan import ServedModel, parts
from ..errors import DATATYPE_MISMATCH, UNDEFINED_COLUMN, PgmodelsError
from ..relations import NUMERIC_CATEGORIES, Relation

ADD_SIGNATURE = "add_consumer(text, text, text, text, text, text, boolean, integer)"
# the output table: one prediction per event (the key in its own type, see output_columns)
OUTPUT_COLUMNS = {"event_id": "bigint", "key": "text", "prediction": "real", "probabilities": "real[]",
                  "label": "text", "model_id": "bigint", "model_version": "integer",
                  "event_time": "timestamp with time zone", "predicted_at": "timestamp with time zone",
                  "delivery": "bigint"}
NOT_NULL = ("model_id", "model_version", "event_time", "predicted_at", "delivery")


def sources_of_features(model: ServedModel, events: Relation, enrich: Relation | None) -> dict:
    """Where each of the model's columns comes from: 'event', 'enrich' or 'both' (the
    event's value, else the enrichment's). A column nobody supplies is an error."""
    found = {}
    for column, kind, length in parts(model):
        here = [r for r in (events, enrich) if r is not None and column in r.columns]
        if not here:
            raise PgmodelsError(f'the events of this stream cannot supply feature "{column}"',
                                detail=f"{model.describe()} takes it; " + (
                                    f"neither {events.display} nor {enrich.display} has such a column." if enrich
                                    else f"{events.display} has no such column."),
                                hint="Add the column to the stream's table, or look it up by key with "
                                     "enrich_relation.", sqlstate=UNDEFINED_COLUMN)
        for rel in here:
            col = rel.columns[column]
            numeric = col.category in NUMERIC_CATEGORIES and not col.is_array
            if (kind == "number" and not numeric) or (kind == "array" and not (col.is_array and col.category == "N")):
                raise PgmodelsError(f'column "{column}" of {rel.display} is {col.type}',
                                    detail=f"{model.describe()} takes it as a "
                                           f"{'numeric' if kind == 'number' else 'numeric array'} feature.",
                                    sqlstate=DATATYPE_MISMATCH)
        found[column] = "both" if len(here) == 2 else ("event" if here[0] is events else "enrich")
    return found


OUTPUTS = ("prediction", "probabilities", "label", "contributions")


@udf
def add_with_outputs(stream_name, consumer_name, project_name, outputs, output_table, enrich_relation, enrich_key,
                     from_beginning, partitions=1) -> int:
    """add_consumer(..., outputs => ...): prediction, probabilities and label are always
    written; contributions adds a jsonb column of feature -> contribution per prediction,
    which needs the explain privilege on the project (checked now and at every batch)."""
    if not outputs or any(o not in OUTPUTS for o in outputs) or len(set(outputs)) != len(outputs):
        raise PgmodelsError("outputs must name each of prediction, probabilities, label and contributions at most once",
                            detail=f"Got {outputs!r}." if outputs else "Got no outputs.", sqlstate="22023")
    return _add(stream_name, consumer_name, project_name, output_table, enrich_relation, enrich_key, from_beginning,
                partitions, "contributions" in outputs)


@udf
def add(stream_name, consumer_name, project_name, output_table, enrich_relation, enrich_key, from_beginning,
        partitions=1) -> int:
    return _add(stream_name, consumer_name, project_name, output_table, enrich_relation, enrich_key, from_beginning,
                partitions, False)


def _add(stream_name, consumer_name, project_name, output_table, enrich_relation, enrich_key, from_beginning,
         partitions, contributions: bool) -> int:
    require_execute(qualified(ADD_SIGNATURE), "add_consumer")
    if consumer_name is None or project_name is None:
        raise PgmodelsError("consumer_name and project_name must not be NULL", sqlstate="22004")
    if partitions is None or not 1 <= partitions <= 64:
        raise PgmodelsError("partitions must be between 1 and 64", detail=f"It was {'NULL' if partitions is None else partitions}.",
                            hint="One partition per worker that should score this consumer's events at once.",
                            sqlstate="22023")
    stream = query("SELECT s.source::oid AS source, s.key_column::text AS key FROM "
                   "pgmodels._stream_get(pgmodels._credential(), $1, true) s", [stream_name], ["text"])[0]
    model = serving_model(project_name)
    events = relations.by_oid(stream["source"])
    enrich = None
    if (enrich_relation is None) != (enrich_key is None):
        raise PgmodelsError("enrich_relation and enrich_key go together", sqlstate="22023")
    if enrich_relation is not None:
        if stream["key"] is None:
            raise PgmodelsError(f'stream "{stream_name}" has no key column to look features up by',
                                hint="Create the stream with a key_column.", sqlstate="55000")
        enrich = relations.resolve(enrich_relation, "enrich relation")
        enrich.column(enrich_key, "enrich key")
    if contributions:  # the consumer's owner must be able to explain (and the model have an explainer)
        query("SELECT pgmodels._explain_lookup($1, 0, pgmodels._credential())", [project_name], ["text"])
    sources = sources_of_features(model, events, enrich)
    if enrich is not None:
        relations.require_select(enrich, [enrich_key] + [c for c, s in sources.items() if s != "event"])
    columns = {**output_columns(events, stream["key"]), **({"contributions": "jsonb"} if contributions else {})}
    out = relations.output_table(output_table or f"{consumer_name}_predictions", columns, "event_id", NOT_NULL,
                                 f"predictions of pgmodels stream consumer {consumer_name}", events)
    query(f"CREATE UNIQUE INDEX IF NOT EXISTS {_index(out, 'delivery')} ON {out.qualified} (delivery)")
    query(f"CREATE INDEX IF NOT EXISTS {_index(out, 'key')} ON {out.qualified} (key, event_id)")
    return query("""SELECT pgmodels._consumer_add(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7, $8) AS id""",
                 [consumer_name, stream_name, project_name, out.oid, enrich.oid if enrich else None, enrich_key,
                  bool(from_beginning), partitions],
                 ["text", "text", "text", "oid", "oid", "name", "boolean", "integer"])[0]["id"]


def output_columns(events: Relation, key_column: str | None) -> dict[str, str]:
    """The output table's columns: the key in the type of the stream's key column (with
    its modifier, as a batch job's output has it) when that may be an output's key, else
    text (a stream without a key, a key type without an order)."""
    key_type = "text"
    if key_column is not None and query("SELECT pgmodels._key_type($1, $2) IS NOT NULL AS ok", [events.oid, key_column],
                                        ["oid", "name"])[0]["ok"]:
        key_type = events.columns[key_column].type
    return {**OUTPUT_COLUMNS, "key": key_type}


def _index(out: Relation, what: str) -> str:
    import plpy

    name = query("SELECT c.relname::text AS n FROM pg_catalog.pg_class c WHERE c.oid = $1", [out.oid], ["oid"])[0]["n"]
    return plpy.quote_ident(f"{name[:40]}_{what}_idx")
