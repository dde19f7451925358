"""The answers of a rollout's versions, kept in pgmodels.rollout_predictions.

Scoring code runs as the calling role, in statements that may only read (predict() is
STABLE), so it does not write the table itself: it appends each answer here, in the
backend's memory, and asks pgmodels._rollout_flush() to write them. That definer
function takes no argument: it writes what this module holds, which only pgmodels'
own code in this backend can have put here (PL/Python is untrusted: no other role can
write to it), so no caller can forge an answer. A batch chunk or a stream batch is
written with it, in its transaction; predict() row by row writes every FLUSH_ROWS
answers and at the session's next statement; pgmodels serve's statements write every
FLUSH_ROWS answers or once the oldest has waited the write delay (a second; at the
backend's next request), so that a request pays no insert of its own: answers still
waiting when a backend ends are lost. Nothing is written where
nothing can be (a parallel worker, a read-only transaction or a hot standby): those
answers are kept, at most MAX_PENDING, until a statement that may write.
"""

from __future__ import annotations

import json
import time

import plpy

from .._plpy import PENDING, in_parallel_mode, udf

FLUSH_ROWS = 1000
WAIT_SECONDS = 1.0
MAX_PENDING = 100_000

_pending: list[tuple] = []
_first = 0.0  # when the oldest pending answer was added (time.monotonic())
_delay = None  # pgmodels serve's write delay (soon())
_stamp = None
_failed = None
_flush_plan = None
_insert_plan = None
_arrays_plan = None


def add(rollout_id: int, key, model_id: int, version: int, prediction, role: str, source: str,
        error: str | None = None, latency_ms: float | None = None, champion=None) -> None:
    """One answer; champion: in shadow, the champion's answer to the same input."""
    global _first
    if not _pending:
        _first = time.monotonic()
    elif len(_pending) >= MAX_PENDING:
        del _pending[: FLUSH_ROWS]
    _pending.append((rollout_id, key, model_id, version, prediction, role, source, error, latency_ms, champion))


def pending() -> int:
    return len(_pending)


def due(stamp: float) -> None:
    """Called by the row-wise cores before they add a row's answers: write what earlier
    statements left, or a full block. A statement whose write failed (a read-only
    transaction) tries no more: its answers wait for a later statement."""
    global _stamp, _failed
    if _pending and (stamp != _stamp or len(_pending) >= FLUSH_ROWS) and _failed != stamp:
        if not flush() and _pending:
            _failed = stamp
    _stamp = stamp


def soon() -> None:
    """Called by pgmodels serve's statements: write when a block is full or the oldest
    answer has waited the write delay (pgmodels.rollout_write_delay, in seconds, 1 by
    default; read once per backend), so that a request pays no insert of its own."""
    global _delay
    if not _pending:
        return
    if _delay is None:
        try:
            value = plpy.execute("SELECT pg_catalog.current_setting('pgmodels.rollout_write_delay', true) AS v")[0]["v"]
            _delay = min(max(float(value), 0.0), 60.0) if value else WAIT_SECONDS
        except (plpy.SPIError, ValueError):
            _delay = WAIT_SECONDS
    if len(_pending) >= FLUSH_ROWS or time.monotonic() - _first >= _delay:
        flush()


def flush() -> int:
    """Have pgmodels._rollout_flush() write the pending answers, where a statement may."""
    global _flush_plan
    if not _pending or in_parallel_mode():
        return 0
    gd = __import__("__main__").GD
    saved = gd.get(PENDING)
    try:
        if _flush_plan is None:
            _flush_plan = plpy.prepare("SELECT pgmodels._rollout_flush() AS n")
        return plpy.execute(_flush_plan)[0]["n"] or 0
    except plpy.SPIError:  # a read-only transaction: kept for a later statement
        return 0
    finally:
        # an error _rollout_flush met is recorded as pending (pgmodels._plpy): nothing raises
        # it here, and it must not reach a later statement or hide the caller's own
        if saved is None:
            gd.pop(PENDING, None)
        else:
            gd[PENDING] = saved


@udf
def write() -> int:
    """pgmodels._rollout_flush(): insert the pending answers (as the extension's owner).

    They travel as one JSON text: PL/Python converts each element of an array parameter
    through its type's text input, which would cost more than the insert itself."""
    global _insert_plan
    if not _pending:
        return 0
    rows = list(_pending)
    if _insert_plan is None:
        _insert_plan = plpy.prepare(
            "INSERT INTO pgmodels.rollout_predictions (rollout_id, key, model_id, model_version, prediction, role, "
            "source, error, latency_ms, champion_prediction) "
            "SELECT (r.v ->> 0)::bigint, r.v ->> 1, (r.v ->> 2)::bigint, (r.v ->> 3)::integer, (r.v ->> 4)::real, "
            "r.v ->> 5, r.v ->> 6, r.v ->> 7, (r.v ->> 8)::real, (r.v ->> 9)::real "
            "FROM pg_catalog.jsonb_array_elements($1::pg_catalog.jsonb) AS r(v) "
            "WHERE EXISTS (SELECT 1 FROM pgmodels.rollout_runs o WHERE o.id = (r.v ->> 0)::bigint)", ["text"])
    n = 0
    # in blocks, each written or dropped whole: one answer that cannot be written (it never
    # should) costs its block, not every later write of the backend
    for start in range(0, len(rows), FLUSH_ROWS):
        block = rows[start:start + FLUSH_ROWS]
        try:
            with plpy.subtransaction():
                n += _write_block(block)
        except plpy.SPIError:
            pass
    del _pending[: len(rows)]
    return n


def _write_block(rows: list) -> int:
    global _arrays_plan
    try:
        text = json.dumps(rows, allow_nan=False)
    except ValueError:  # a NaN or an infinity: as arrays, which take them
        text = None
    if text is not None:
        return plpy.execute(_insert_plan, [text]).nrows()
    if _arrays_plan is None:
        _arrays_plan = plpy.prepare(
            "INSERT INTO pgmodels.rollout_predictions (rollout_id, key, model_id, model_version, prediction, "
            "role, source, error, latency_ms, champion_prediction) SELECT u.* FROM ROWS FROM ("
            "pg_catalog.unnest($1::bigint[]), pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::bigint[]), "
            "pg_catalog.unnest($4::integer[]), pg_catalog.unnest($5::real[]), pg_catalog.unnest($6::text[]), "
            "pg_catalog.unnest($7::text[]), pg_catalog.unnest($8::text[]), pg_catalog.unnest($9::real[]), "
            "pg_catalog.unnest($10::real[])) AS u(i, k, m, v, p, r, s, e, l, c) "
            "WHERE EXISTS (SELECT 1 FROM pgmodels.rollout_runs o WHERE o.id = u.i)",
            ["bigint[]", "text[]", "bigint[]", "integer[]", "real[]", "text[]", "text[]", "text[]", "real[]",
             "real[]"])
    # (a rollout whose project was dropped since is gone, and its answers with it)
    return plpy.execute(_arrays_plan, [list(c) for c in zip(*rows)]).nrows()
