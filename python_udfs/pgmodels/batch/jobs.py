"""create_batch_job(): check everything a run will need, create the output table, and
register (and schedule) the job, all in the caller's one transaction: an error leaves
nothing behind, neither a job without its pg_cron entry nor an entry without its job."""

from __future__ import annotations

import re

from .._plpy import qualified, query, quote_ident as qi, require_execute, udf
from ..errors import (DATATYPE_MISMATCH, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, PgmodelsError)
from . import plan, relations
from .relations import OUTPUT_COLUMNS, Relation

FILLFACTOR = 70
JOB_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
OUTPUTS = ("prediction", "probabilities", "label")
CREATE_SIGNATURE = "create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval)"


def serving_model(project: str) -> plan.ServedModel:
    """The project's deployed model, for a caller that may predict with it."""
    rows = query("SELECT * FROM pgmodels._serving_model($1, 0, pgmodels._credential())", [project], ["text"])
    return plan.ServedModel.from_row(rows[0])


def _check_arguments(job_name, outputs, chunk_rows, key_column, output_table, relation_name, project_name):
    for value, what in [(job_name, "job_name"), (project_name, "project_name"), (relation_name, "relation_name"),
                        (key_column, "key_column"), (output_table, "output_table")]:
        if value is None:
            raise PgmodelsError(f"{what} must not be NULL", sqlstate="22004")
    if not JOB_NAME.match(job_name):
        raise PgmodelsError(f"invalid batch job name {job_name!r}",
                            detail="A job name is 1 to 63 letters, digits, underscores, dots or hyphens.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not outputs or any(o not in OUTPUTS for o in outputs) or len(set(outputs)) != len(outputs):
        raise PgmodelsError("outputs must name each of prediction, probabilities and label at most once",
                            detail=f"Got {outputs!r}." if outputs else "Got no outputs.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if chunk_rows is None:
        raise PgmodelsError("chunk_rows must not be NULL", sqlstate="22004")


def _output(output_table: str, src: Relation, key: relations.Column, outputs: list[str]) -> Relation:
    """The output table, created when missing; an existing one must have the job's shape."""
    existing = relations.resolve(output_table, "output table", must_exist=False)
    if existing is not None:
        _check_shape(existing, src, key, outputs)
        return existing
    try:
        parts = query("SELECT pg_catalog.parse_ident($1) AS p", [output_table], ["text"])[0]["p"]
    except Exception:  # noqa: BLE001 - a malformed name
        raise PgmodelsError(f"invalid table name {output_table!r}", sqlstate=INVALID_PARAMETER_VALUE) from None
    if len(parts) > 2:
        raise PgmodelsError(f"invalid table name {output_table!r}",
                            detail="Give a table name, optionally with its schema.", sqlstate=INVALID_PARAMETER_VALUE)
    schema = parts[0] if len(parts) == 2 else query("SELECT pg_catalog.current_schema() AS s")[0]["s"]
    if schema is None:
        raise PgmodelsError("no schema has been selected to create the output table in",
                            hint="Qualify output_table with a schema.", sqlstate="3F000")
    name = f"{qi(schema)}.{qi(parts[-1])}"
    columns = [f"{qi(key.name)} {key.type} PRIMARY KEY"] + \
              [f"{c} {OUTPUT_COLUMNS[c]}" for c in OUTPUTS if c in outputs] + \
              [f"{c} {OUTPUT_COLUMNS[c]} NOT NULL" for c in ("model_id", "model_version", "scored_at", "run_id")]
    # Every run rewrites every row it scores: with room left on each page, an update can
    # stay on its page and skip the index (a HOT update), about a quarter of a full run.
    query(f"CREATE TABLE {name} ({', '.join(columns)}) WITH (fillfactor = {FILLFACTOR})")
    created = relations.resolve(name, "output table")
    query(f"COMMENT ON TABLE {name} IS " + plan._lit(f"predictions of pgmodels batch job scoring {src.display}"))
    return created


def _check_shape(out: Relation, src: Relation, key: relations.Column, outputs: list[str]) -> None:
    if out.kind not in ("r", "p"):
        raise PgmodelsError(f"output {out.display} is not a table", sqlstate="42809")
    if out.oid == src.oid:
        raise PgmodelsError("the output table cannot be the job's source", sqlstate=INVALID_PARAMETER_VALUE)
    want = {key.name: key.type}
    want.update({c: t for c, t in OUTPUT_COLUMNS.items() if c not in OUTPUTS or c in outputs})
    problems = []
    for name, type_ in want.items():
        col = out.columns.get(name)
        if col is None:
            problems.append(f'column "{name}" {type_} is missing')
        elif col.type != type_:
            problems.append(f'column "{name}" is {col.type}, not {type_}')
    extra = query("""
        SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef
           AND a.attidentity = '' AND a.attgenerated = '' AND NOT (a.attname = ANY ($2))""",
                  [out.oid, list(want)], ["oid", "text[]"])
    problems += [f'column "{r["name"]}" is NOT NULL without a default' for r in extra]
    unique = query("""
        SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                        WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
                          AND a.attname = $2) AS ok""", [out.oid, key.name], ["oid", "text"])[0]["ok"]
    if key.name in out.columns and not unique:
        problems.append(f'column "{key.name}" has no unique index of its own')
    if problems:
        shape = ", ".join(f"{qi(n)} {t}" for n, t in want.items())
        raise PgmodelsError(f"table {out.display} does not have the shape of the job's output",
                            detail="; ".join(problems).capitalize() + ".",
                            hint=f"Drop it or name a new table (create_batch_job creates it with the primary key "
                                 f"{key.name}): it needs {shape}.",
                            sqlstate=DATATYPE_MISMATCH)


@udf
def create(job_name, project_name, relation_name, key_column, output_table, schedule, incremental_column,
           outputs, chunk_rows, max_retries, retry_delay, keep_runs) -> int:
    require_execute(qualified(CREATE_SIGNATURE), "create_batch_job")
    _check_arguments(job_name, outputs, chunk_rows, key_column, output_table, relation_name, project_name)
    query("SELECT pgmodels._batch_check_settings($1, $2, $3, $4)", [chunk_rows, max_retries, retry_delay, keep_runs],
          ["integer", "integer", "interval", "interval"])
    model = serving_model(project_name)
    if model.task != "classification" and any(o in outputs for o in ("probabilities", "label")):
        raise PgmodelsError(f"{model.describe()} is a regression model; outputs probabilities and label need "
                            "a classifier", hint="Use outputs => ARRAY['prediction'].", sqlstate=FEATURE_NOT_SUPPORTED)
    src = relations.resolve(relation_name, "source")
    if src.kind not in ("r", "p", "v", "m", "f"):
        raise PgmodelsError(f"{src.display} is not a table or view", sqlstate="42809")
    needed = [src.column(key_column, "key column").name] + plan.feature_columns(model, src)
    if incremental_column is not None:
        needed.append(src.column(incremental_column, "incremental column").name)
    relations.require_select(src, list(dict.fromkeys(needed)))
    key = relations.check_key(src, key_column)
    if incremental_column is not None:
        relations.check_incremental(src, incremental_column)
    out = _output(output_table, src, key, outputs)
    return query("""SELECT pgmodels._batch_create(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                                                 $11, $12) AS id""",
                 [job_name, project_name, src.oid, key_column, out.oid, incremental_column, outputs, chunk_rows,
                  schedule, max_retries, retry_delay, keep_runs],
                 ["text", "text", "oid", "name", "oid", "name", "text[]", "integer", "text", "integer", "interval",
                  "interval"])[0]["id"]
