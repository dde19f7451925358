"""create_batch_job(): check everything a run will need, create the output table, and
register (and schedule) the job, all in the caller's one transaction: an error leaves
nothing behind, neither a job without its pg_cron entry nor an entry without its job."""

from __future__ import annotations

from .._plpy import qualified, query, require_execute, udf
from ..errors import FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, PgmodelsError
from .. import relations
from ..relations import Relation
from . import plan

FILLFACTOR = 70
OUTPUTS = ("prediction", "probabilities", "label", "contributions")
# the output table's columns besides the key, and their types (contributions: per row,
# feature -> contribution with "(base)", which needs the explain privilege)
OUTPUT_COLUMNS = {"prediction": "real", "probabilities": "real[]", "label": "text", "contributions": "jsonb",
                  "model_id": "bigint",
                  "model_version": "integer", "scored_at": "timestamp with time zone", "run_id": "bigint"}
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
    query("SELECT pgmodels._check_name('batch job', $1)", [job_name], ["text"])
    if not outputs or any(o not in OUTPUTS for o in outputs) or len(set(outputs)) != len(outputs):
        raise PgmodelsError("outputs must name each of prediction, probabilities, label and contributions at most once",
                            detail=f"Got {outputs!r}." if outputs else "Got no outputs.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if chunk_rows is None:
        raise PgmodelsError("chunk_rows must not be NULL", sqlstate="22004")


def _output(output_table: str, src: Relation, key: relations.Column, outputs: list[str]) -> Relation:
    """The output table: the key, the outputs asked for, and what made each row."""
    columns = {key.name: key.type}
    columns.update({c: t for c, t in OUTPUT_COLUMNS.items() if c not in OUTPUTS or c in outputs})
    # Every run rewrites every row it scores: with room left on each page, an update can
    # stay on its page and skip the index (a HOT update), about a quarter of a full run.
    return relations.output_table(output_table, columns, key.name, ("model_id", "model_version", "scored_at", "run_id"),
                                  f"predictions of pgmodels batch job scoring {src.display}", src, FILLFACTOR)


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
    if "contributions" in outputs:  # the job's role must be able to explain (and the model have an explainer)
        query("SELECT pgmodels._explain_lookup($1, 0, pgmodels._credential())", [project_name], ["text"])
    src = relations.resolve(relation_name, "source")
    if src.kind not in ("r", "p", "v", "m", "f"):
        raise PgmodelsError(f"{src.display} is not a table or view", sqlstate="42809")
    needed = [src.column(key_column, "key column").name] + plan.feature_columns(model, src)
    if incremental_column is not None:
        needed.append(src.column(incremental_column, "incremental column").name)
    relations.require_select(src, list(dict.fromkeys(needed)))
    key = relations.check_key(src, key_column)
    if key.name in OUTPUT_COLUMNS:
        raise PgmodelsError(f'key column "{key.name}" has the name of an output column',
                            detail="The output table has the columns %s besides the key." % ", ".join(OUTPUT_COLUMNS),
                            hint="Score a view that renames the key.", sqlstate=INVALID_PARAMETER_VALUE)
    if incremental_column is not None:
        relations.check_incremental(src, incremental_column)
    out = _output(output_table, src, key, outputs)
    return query("""SELECT pgmodels._batch_create(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                                                 $11, $12) AS id""",
                 [job_name, project_name, src.oid, key_column, out.oid, incremental_column, outputs, chunk_rows,
                  schedule, max_retries, retry_delay, keep_runs],
                 ["text", "text", "oid", "name", "oid", "name", "text[]", "integer", "text", "integer", "interval",
                  "interval"])[0]["id"]
