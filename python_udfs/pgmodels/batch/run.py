"""run_batch_job(): a run, a chunk at a time, committing after each.

The procedure runs as the job's owner (pg_cron connects as that role; by hand, the
caller must be it), so the source is read, the model used and the output written with
exactly that role's rights. Each run:

1. claims the job in the catalog, or records a skipped run and returns when another
   run's backend holds it;
2. picks what to score: the rest of a run that died or failed (same model, same window:
   it goes on after the last committed row), else, for an incremental job whose output
   the deployed model scored in full, the rows past the watermark, else everything;
3. scores chunk after chunk (one statement each, see plan.py), recording the progress
   and committing after each, so other sessions see it and a killed run loses one chunk;
4. after a full run, removes the keys that left the source; records the end, which moves
   the watermark.

A failure rolls back the chunk in progress, is recorded with its error, and is retried
after the job's delay up to its max_retries times (going on from the last committed
row), unless the statement was cancelled or the error is one a retry cannot mend.

The run must be called outside a transaction block: its first commit is where an atomic
call (inside BEGIN, or from a function) fails, with PostgreSQL's own error ("invalid
transaction termination"), before anything is claimed or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import plpy

from .._plpy import query, udf
from ..errors import INTERNAL_ERROR, PgmodelsError
from .. import progress, relations
from ..rollout import record
from . import plan
from .jobs import serving_model

CANCELED = "57014"
# errors a retry cannot mend: a statement was cancelled; the job names what is not there
# or not allowed (class 42) or what the model cannot do (0A); the data is wrong (22, 23,
# 21), which the next run, once the data is mended, picks up where this one stopped
NOT_RETRIED = (CANCELED, "42", "0A", "22", "23", "21")
# A run that failed longer ago than this is not resumed: the next run starts afresh.
RESUME_WITHIN_HOURS = 24
# Settings a run pins for itself (and restores): the watermark and the cursor are kept as
# text, so they must be written and read the same way whatever the session's settings;
# and every name in the run's SQL is qualified.
PINNED = {"DateStyle": "ISO, YMD", "IntervalStyle": "postgres", "extra_float_digits": "3",
          "search_path": "pg_catalog, pg_temp"}


@dataclass
class Job:
    id: int
    name: str
    project: str
    source: int
    output: int
    key_column: str
    incremental_column: str | None
    outputs: list[str]
    chunk_rows: int
    max_retries: int
    retry_delay: float
    scored_model_id: int | None
    watermark: str | None


def _job(name: str) -> Job:
    r = query("""
        SELECT j.id, j.name, b.project, j.source::oid AS source, j.output::oid AS output, j.key_column::text AS key,
               j.incremental_column::text AS inc, j.outputs, j.chunk_rows, j.max_retries,
               pg_catalog.date_part('epoch', j.retry_delay) AS delay, j.scored_model_id, j.watermark
          FROM pgmodels._batch_owned(pgmodels._credential(), $1, true) j
          JOIN pgmodels.batch_jobs b ON b.job_id = j.id""", [name], ["text"])[0]
    return Job(r["id"], r["name"], r["project"], r["source"], r["output"], r["key"], r["inc"], list(r["outputs"]),
               r["chunk_rows"], r["max_retries"], r["delay"], r["scored_model_id"], r["watermark"])


@dataclass
class Failure:
    message: str
    detail: str | None
    hint: str | None
    sqlstate: str

    @classmethod
    def of(cls, e: Exception) -> "Failure":
        if isinstance(e, PgmodelsError):
            return cls(e.message, e.detail, e.hint, e.sqlstate)
        if isinstance(e, plpy.SPIError):
            spidata = getattr(e, "spidata", None) or (None, None, None)
            return cls(e.args[0] if e.args else str(e), spidata[1], spidata[2], getattr(e, "sqlstate", None)
                       or INTERNAL_ERROR)
        return cls(f"internal error in a batch run: {type(e).__name__}: {e}"[:1000], None,
                   "This is a bug in pgmodels; please report it.", INTERNAL_ERROR)

    def error(self) -> PgmodelsError:
        return PgmodelsError(self.message, detail=self.detail, hint=self.hint, sqlstate=self.sqlstate)


def _begin(job: Job, status: str, trigger: str, attempt: int, mode=None, resumed_from=None, model=None,
           low=None, high=None, cursor=(None, None)) -> int | None:
    return query("""SELECT pgmodels._batch_run_begin(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                                                     $11, $12) AS id""",
                 [job.name, status, mode, resumed_from, attempt, trigger, model.id if model else None,
                  model.version if model else None, low, high, cursor[0], cursor[1]],
                 ["text", "text", "text", "bigint", "integer", "text", "bigint", "integer", "text", "text", "text",
                  "text"])[0]["id"]


def _end(run_id: int, status: str, removed: int = 0, failure: Failure | None = None) -> None:
    f = failure or Failure(None, None, None, None)
    query("SELECT pgmodels._batch_run_end(pgmodels._credential(), $1, $2, $3, $4, $5, $6, $7)",
          [run_id, status, removed, f.message, f.sqlstate, f.detail, f.hint],
          ["bigint", "text", "bigint", "text", "text", "text", "text"])


def _what_to_score(job: Job, model: plan.ServedModel, src: relations.Relation):
    """(mode, low, high, cursor, resumed_from) for this run."""
    last = query(f"""SELECT r.run_id, r.status, r.mode, r.model_id, r.low_watermark, r.high_watermark, r.cursor_key,
                            r.cursor_value,
                            r.started_at > pg_catalog.now() - interval '{RESUME_WITHIN_HOURS} hours' AS recent
                       FROM pgmodels.batch_runs r WHERE r.job = $1 AND r.status <> 'skipped'
                      ORDER BY r.run_id DESC LIMIT 1""", [job.name], ["text"])
    if last and last[0]["status"] == "failed" and last[0]["cursor_key"] is not None and last[0]["recent"] \
            and last[0]["model_id"] == model.id and last[0]["mode"] is not None:
        r = last[0]
        return r["mode"], r["low_watermark"], r["high_watermark"], (r["cursor_key"], r["cursor_value"]), r["run_id"]
    high = None
    if job.incremental_column:
        ident = plpy.quote_ident(job.incremental_column)
        col = src.column(job.incremental_column, "incremental column")
        # NaN and infinity would pin the watermark for good: they are left to full runs
        finite = f" WHERE s.{ident} < 'infinity'::{col.type}" if col.type in relations.HAS_INFINITY else ""
        high = query(f"SELECT pg_catalog.max(s.{ident})::text AS h FROM {src.qualified} s{finite}")[0]["h"]
        if job.watermark is not None and job.scored_model_id == model.id and not _routing_changed(job, model):
            return "incremental", job.watermark, high, (None, None), None
    return "full", None, high, (None, None), None


def _routing_changed(job: Job, model: plan.ServedModel) -> bool:
    """Whether a rollout with this model as its champion started, changed or ended since
    the job's last successful run began: the keys' versions may have changed, so the
    output is scored afresh (a full run), not only past the watermark."""
    return query("""
        SELECT EXISTS (SELECT 1 FROM pgmodels.rollout_decisions d JOIN pgmodels.rollouts r ON r.id = d.rollout_id
                        WHERE r.champion_id = $1 AND d.action IN ('start', 'alter', 'abort')
                          AND d.at >= (SELECT pg_catalog.max(b.started_at) FROM pgmodels.batch_runs b
                                        WHERE b.job = $2 AND b.status = 'succeeded')) AS changed""",
                 [model.id, job.name], ["bigint", "text"])[0]["changed"]


def _attempt(job: Job, trigger: str, attempt: int) -> Failure | None:
    run_id = None
    try:
        model = serving_model(job.project)
        src, out = relations.by_oid(job.source), relations.by_oid(job.output)
        key_type = src.column(job.key_column, "key column").type
        inc_type = src.column(job.incremental_column, "incremental column").type if job.incremental_column else None
        plan.feature_columns(model, src)  # a column renamed or dropped since: a clear error
        mode, low, high, cursor, resumed_from = _what_to_score(job, model, src)
        routed = query("SELECT EXISTS (SELECT 1 FROM pgmodels.rollouts r WHERE r.champion_id = $1 "
                       "AND r.status = 'active') AS r", [model.id], ["bigint"])[0]["r"]
        statements = plan.build(model, src, out, job.key_column, key_type, job.incremental_column, inc_type,
                                job.outputs, job.chunk_rows, mode, routed)
        run_id = _begin(job, "running", trigger, attempt, mode, resumed_from, model, low, high, cursor)
        plpy.commit()
        first = plpy.prepare(statements.first, plan.PARAM_TYPES)
        later = plpy.prepare(statements.next, plan.PARAM_TYPES)
        while True:
            progress.batch_chunk(job.name, run_id, job.chunk_rows, job.source, mode)  # its stage, until the commit
            r = plpy.execute(later if cursor[0] is not None else first,
                             [cursor[0], cursor[1], low, high, model.id, job.outputs, run_id])[0]
            if not r["n"]:
                break
            cursor = (r["last_key"], r["last_value"])
            query("SELECT pgmodels._batch_run_chunk(pgmodels._credential(), $1, $2, $3, $4)",
                  [run_id, r["written"], cursor[0], cursor[1]], ["bigint", "bigint", "text", "text"])
            record.flush()  # a rollout's answers the chunk could not write itself, with the chunk
            plpy.commit()
            if r["n"] < job.chunk_rows:
                break
        removed = plpy.execute(statements.remove_vanished).nrows() if mode == "full" else 0
        _end(run_id, "succeeded", removed)
        plpy.commit()
        return None
    except Exception as e:  # noqa: BLE001 - recorded, then raised in PostgreSQL's style
        failure = Failure.of(e)
    plpy.rollback()
    _name_the_row(failure, job, cursor if run_id is not None else (None, None), locals().get("statements"))
    if run_id is None:
        run_id = _begin(job, "running", trigger, attempt)
    _end(run_id, "failed", failure=failure)
    plpy.commit()
    return failure


def _name_the_row(failure: Failure, job: Job, cursor, statements) -> None:
    """A feature error names the row by its place in the chunk; say which key it is."""
    import re

    found = re.search(r"\brow (\d+)\b", failure.message or "")
    if not found or statements is None or failure.sqlstate[:2] not in ("22", "23"):
        return
    try:
        keys = statements.keys_next if cursor[0] is not None else statements.keys_first
        rows = plpy.execute(plpy.prepare(f"SELECT c.k::text AS k FROM ({keys}) c OFFSET $8 LIMIT 1",
                                         plan.PARAM_TYPES + ["bigint"]),
                            [cursor[0], cursor[1], None, None, None, None, None, int(found.group(1)) - 1])
    except plpy.SPIError:
        return
    if rows:
        where = f"The row with {job.key_column} = {rows[0]['k']}."
        failure.detail = f"{where} {failure.detail}" if failure.detail else where


def _pin_settings() -> dict:
    saved = {}
    for name, value in PINNED.items():
        saved[name] = query("SELECT pg_catalog.current_setting($1) AS v", [name], ["text"])[0]["v"]
        query("SELECT pg_catalog.set_config($1, $2, false)", [name, value], ["text", "text"])
    return saved


def _restore_settings(saved: dict) -> None:
    for name, value in saved.items():
        query("SELECT pg_catalog.set_config($1, $2, false)", [name, value], ["text", "text"])


@udf
def run(job_name: str) -> None:
    plpy.commit()  # inside a transaction block: PostgreSQL's "invalid transaction termination"
    saved = _pin_settings()
    try:
        _run(job_name)
    finally:
        _restore_settings(saved)
        plpy.commit()


def _run(job_name: str) -> None:
    job = _job(job_name)
    # pg_cron's connections name themselves; its background workers (cron.use_background_workers)
    # are of backend type pg_cron
    trigger = "pg_cron" if query(
        "SELECT pg_catalog.current_setting('application_name') = 'pg_cron' OR EXISTS (SELECT 1 FROM "
        "pg_catalog.pg_stat_activity a WHERE a.pid = pg_catalog.pg_backend_pid() AND a.backend_type = 'pg_cron') AS c"
    )[0]["c"] else "manual"
    if _begin(job, "claim", trigger, 1) is not None:  # another run holds the job: recorded as skipped
        plpy.commit()
        return
    plpy.commit()  # the claim, visible to any other run from now on
    try:
        attempt = 1
        while True:
            failure = _attempt(job, trigger, attempt)
            if failure is None:
                return
            if failure.sqlstate.startswith(NOT_RETRIED) or attempt > job.max_retries:
                raise failure.error()
            query("SELECT pg_catalog.pg_sleep($1)", [job.retry_delay], ["float8"])
            plpy.commit()
            attempt += 1
    finally:
        try:
            query("SELECT pgmodels._batch_release(pgmodels._credential(), $1)", [job.name], ["text"])
            plpy.commit()
        except Exception:  # noqa: BLE001 - a claim whose backend is gone is taken over anyway
            pass
