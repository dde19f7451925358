"""Progress of long work (training, batch runs, stream catch-up), shown two ways.

- To the session doing the work: each stage is a message, a NOTICE unless the setting
  ``pgmodels.progress_level`` says ``info``, ``log``, ``debug``, ``warning`` or ``off``.
  PostgreSQL flushes a notice to the client when it is raised, so psql prints it and a
  psycopg notice handler sees it while the statement still runs.
- To every other session: the stage is published in the backend's ``application_name``
  (``pgmodels train fitting 3/12 churn``), which PostgreSQL copies into shared memory at
  once, so pg_stat_activity shows it with no commit; the view ``pgmodels.progress``
  (sql/085_progress.sql) reads it back. It is set as ``SET LOCAL`` does, so the end of
  the transaction (a commit, an error, a cancel) always gives the caller back its own
  application_name: no stage outlives its work. A finished training restores it at once.

Training fits in a forked child that must not touch PostgreSQL (training/runner.py):
there :func:`report` writes one line to a pipe, which the backend drains while it waits
for the child and publishes as if it had been reported there.

A run started by pg_cron (application_name ``pg_cron``) publishes its stage but sends no
messages: nobody reads them, and pg_cron's connection would only log them.
"""

from __future__ import annotations

import json
import os
import time

from .errors import INVALID_PARAMETER_VALUE, PgmodelsError

SETTING = "pgmodels.progress_level"
LEVELS = ("notice", "info", "log", "debug", "warning", "off")
APPNAME_BYTES = 63  # NAMEDATALEN - 1: what pg_stat_activity keeps of application_name

_op: dict | None = None        # the operation this backend is reporting
_child_fd: int | None = None   # in a training child: the pipe to the backend
_batch: dict = {}              # run_id -> chunks seen, estimated rows
_stream: dict = {}             # consumer -> [events scored in this catch-up, estimated total]


def _query(sql: str, args=None, types=None):
    from ._plpy import query

    return query(sql, args or [], types or [])


def level() -> str:
    """The configured message level; an unknown value is an error, as for any setting."""
    value = _query("SELECT pg_catalog.current_setting($1, true) AS v", [SETTING], ["text"])[0]["v"]
    value = (value or "notice").strip().lower()
    if value not in LEVELS:
        raise PgmodelsError(f'invalid value for parameter "{SETTING}": "{value}"',
                            hint="Available values: " + ", ".join(LEVELS) + ".", sqlstate=INVALID_PARAMETER_VALUE)
    return value


def start(operation: str, name: str) -> None:
    """Begin reporting an operation of this backend (train, batch, stream) on a name."""
    global _op
    original = _query("SELECT pg_catalog.current_setting('application_name') AS a")[0]["a"]
    lvl = level()
    _op = {"operation": operation, "name": name, "original": original, "started": time.monotonic(),
           "level": None if lvl == "off" or original == "pg_cron" else lvl}
    report("starting")  # seen at once, even while the first training of a session loads its libraries


def report(stage: str, message: str | None = None, step: int | None = None, steps: int | None = None) -> None:
    """Publish a stage (and send its message, if any); in a training child, hand it to the backend."""
    if _child_fd is not None:
        line = json.dumps([stage, message, step, steps]).encode()[:4000] + b"\n"  # < PIPE_BUF: one atomic write
        try:
            os.write(_child_fd, line)
        except OSError:  # a full pipe: a message lost, never a blocked fit
            pass
        return
    if _op is None:
        return
    counter = "" if step is None else f" {int(step)}/{'' if steps is None else int(steps)}"
    _query("SELECT pg_catalog.set_config('application_name', $1, true)",
           [appname(_op["operation"], stage, counter, _op["name"])], ["text"])
    if message and _op["level"]:
        import plpy

        getattr(plpy, _op["level"])(f'{_op["operation"]}{" job" if _op["operation"] == "batch" else ""} '
                                    f'"{_op["name"]}": {message}')


def finish(message: str | None = None, tail: str = "") -> None:
    """The operation is over: its last message, and the caller's application_name back."""
    global _op
    if _op is None or _child_fd is not None:
        return
    op, elapsed = _op, time.monotonic() - _op["started"]
    if message:
        report("done", f"{message} in {elapsed:.1f} s{tail}")
    _query("SELECT pg_catalog.set_config('application_name', $1, true)", [op["original"]], ["text"])
    _op = None


def appname(operation: str, stage: str, counter: str, name: str) -> str:
    """``pgmodels <operation> <stage>[ <step>/<steps>] <name>``, the name cut to fit 63
    bytes; PostgreSQL would turn anything but printable ASCII into '?' anyway."""
    head = f"pgmodels {operation} {stage}{counter} "
    clean = "".join(c if " " <= c <= "~" else "?" for c in name)
    return (head + clean)[:APPNAME_BYTES]


# Training: the child's side, and the backend's relay.

class Relay:
    """A pipe from the training child to the backend, drained while the backend waits."""

    def __init__(self):
        self.r, self.w = os.pipe()
        os.set_blocking(self.r, False)
        os.set_blocking(self.w, False)
        self.buf = b""

    def in_child(self) -> None:
        global _child_fd
        os.close(self.r)
        _child_fd = self.w

    def in_parent(self) -> None:
        os.close(self.w)

    def poll(self) -> None:
        while True:
            try:
                chunk = os.read(self.r, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            try:
                stage, message, step, steps = json.loads(line)
            except ValueError:
                continue
            report(stage, message, step, steps)

    def close(self) -> None:
        os.close(self.r)


def fitting(algorithm: str, search, scorer, rows: int) -> None:
    """Before the fit: one model, or a search's first candidate (its scorer counts the rest)."""
    if isinstance(scorer, CandidateScorer):
        report("fitting", f"fitting candidate 1 of {scorer.candidates} ({algorithm}, {search} search, "
                          f"{scorer.folds}-fold cross-validation on {rows} rows)", 1, scorer.candidates)
    else:
        report("fitting", f"fitting {algorithm} on {rows} rows")


class CandidateScorer:
    """A search's scorer that counts its calls: a search with one job fits candidate after
    candidate, fold after fold, and scores each fit, so every ``folds`` calls a candidate
    is done. Then the best one is refitted on all the training rows."""

    def __init__(self, scoring: str, grid: dict, n_iter: int | None, folds: int):
        from sklearn.metrics import get_scorer
        from sklearn.model_selection import ParameterGrid

        size = len(ParameterGrid(grid))
        self.scorer, self.folds = get_scorer(scoring), folds
        self.candidates = size if n_iter is None else min(n_iter, size)
        self.calls = 0

    def __call__(self, estimator, X, y, **kwargs):
        score = self.scorer(estimator, X, y, **kwargs)
        self.calls += 1
        if self.calls % self.folds == 0:
            k = self.calls // self.folds + 1
            if k <= self.candidates:
                report("fitting", f"fitting candidate {k} of {self.candidates}", k, self.candidates)
            elif k == self.candidates + 1:
                report("refitting", "refitting the best candidate on all the training rows")
        return score


# Batch runs and stream catch-up: one call each from their loops.

def batch_chunk(job: str, run_id: int, chunk_rows: int, source: int, mode: str) -> None:
    """Before a batch run scores its next chunk."""
    global _op
    state = _batch.get(run_id)
    if state is None:
        _batch.clear()
        start("batch", job)
        estimate = None
        if mode == "full":
            est = _query("SELECT c.reltuples::bigint AS n FROM pg_catalog.pg_class c WHERE c.oid = $1",
                         [source], ["oid"])
            estimate = est[0]["n"] if est and est[0]["n"] and est[0]["n"] > 0 else None
        state = _batch[run_id] = {"chunk": 0, "estimate": estimate, "op": _op}
    _op = state["op"]
    state["chunk"] += 1
    k, first = state["chunk"], (state["chunk"] - 1) * chunk_rows + 1
    steps = -(-state["estimate"] // chunk_rows) if state["estimate"] else None
    of = f" of about {state['estimate']}" if state["estimate"] else ""
    report("scoring", f"scoring chunk {k} (rows {first} to {first + chunk_rows - 1}{of})", k, steps)


def stream_batch(consumer: str, consumer_id: int, taken: int, max_events: int) -> None:
    """After process_stream() read its events: a full batch means a backlog (catch-up)."""
    global _op
    state = _stream.get(consumer)
    if taken < max_events:
        if state is not None:
            _op = state[2]
            report("caught_up", f"caught up after {state[0] + taken} events")
            _op = None
            del _stream[consumer]
        return
    if state is None:
        start("stream", consumer)
        lag = _query("SELECT l.pending FROM pgmodels._consumer_lag($1, pgmodels._credential()) l", [consumer_id], ["bigint"])
        state = _stream[consumer] = [0, (lag[0]["pending"] if lag else None) or taken, _op]
    _op = state[2]
    first = state[0] + 1
    state[0] += taken
    state[1] = max(state[1], state[0])
    report("catching_up", f"catching up: events {first} to {state[0]} of about {state[1]}", state[0], state[1])
