"""Running onnxruntime so that statement_timeout, pg_cancel_backend and pg_terminate_backend
stop it.

onnxruntime's run() is C++ that never looks at PostgreSQL's interrupt flags, and PL/Python
runs it in the backend's own thread. A run that may take long is therefore handed to one
worker thread per backend, and the backend's thread waits for it, looking every 20 ms at
the flags PostgreSQL's signal handlers set (QueryCancelPending, which statement_timeout's
handler and pg_cancel_backend set; ProcDiePending, pg_terminate_backend's). When one is
set it ends the run through its RunOptions (onnxruntime stops before the next node), waits
for the worker to let go of the session, and asks PostgreSQL to act on the interrupt
(pg_sleep(0)), which raises PostgreSQL's own error: "canceling statement due to statement
timeout" or "... user request" (57014), or ends the backend (57P01). In parallel mode,
where PL/Python can run no query, the interrupt is left for PostgreSQL's next check.

The worker is needed because PL/Python keeps Python's interpreter lock whenever the
backend runs PostgreSQL's code: a watchdog thread beside a run in the backend's thread
would wait for that lock, waking every 5 ms, for as long as the backend idles. The worker
instead sleeps on a queue, without the lock, until the next run; and the waiting thread
holds nothing. The hand-over costs some tens of microseconds, so a run expected to be
short (see :class:`Budget`) runs in the backend's thread as before: predict() of one row
of an ordinary model takes single microseconds and stays there. A run expected to be long
is also cut into runs of about RUN_SECONDS each, so that no single node (a MatMul over
every row at once, say) outlasts a cancel by much.

The worker blocks the asynchronous signals PostgreSQL handles, so that they reach the
backend's thread only. Outside a backend (the command line, the tests' own processes)
there are no flags and every run is a plain run.
"""

from __future__ import annotations

import os
import queue
import threading
import time

from ..errors import PgmodelsError

POLL = 0.02                   # seconds between looks at the interrupt flags
INLINE_SECONDS = 0.005        # a run expected to be shorter runs in the backend's own thread
RUN_SECONDS = 0.25            # a guarded run is cut into runs expected to take about this long
SECONDS_PER_OPERATION = 1e-9  # for a static work estimate (pgmodels.catalog.onnx_cost)
UNLIMITED = 1 << 62
QUERY_CANCELED = "57014"

_flags: list | None = None
_worker: "_Worker | None" = None
# (statement stamp, Interrupted) of the last interrupt a run answered (see raise_interrupt)
cancelled: tuple | None = None


class Interrupted(PgmodelsError):
    """A run ended because the statement was cancelled (or the backend told to end)."""


def flags() -> list:
    """PostgreSQL's interrupt flags (sig_atomic_t, an int), or [] outside a backend."""
    global _flags
    if _flags is None:
        import ctypes

        try:
            main = ctypes.CDLL(None)
            _flags = [ctypes.c_int.in_dll(main, name) for name in ("QueryCancelPending", "ProcDiePending")]
        except (OSError, ValueError):  # not a PostgreSQL backend
            _flags = []
    return _flags


def interrupted() -> bool:
    for flag in flags():
        if flag.value:
            return True
    return False


def raise_interrupt() -> None:
    """Let PostgreSQL act on a pending interrupt: it raises its own error (or ends the
    backend), which PL/Python hands back as an exception; raised here as an Interrupted
    with PostgreSQL's message and SQLSTATE, which the SQL side raises. Should PostgreSQL
    not act (the interrupt was held off), a 57014 of ours.

    PostgreSQL counts the interrupt as answered, so the statement is remembered: the
    serving wrappers call a core a second time when the first returns NULL (after a
    lookup, see sql/040_serving.sql), and that lookup raises the same error again
    (check_statement) instead of running the model anew."""
    import plpy

    from .._plpy import in_parallel_mode, query

    global cancelled
    error = Interrupted("canceling statement due to user request",
                        detail="The model's run was stopped for a cancel or a timeout.", sqlstate=QUERY_CANCELED)
    if in_parallel_mode():
        # no query can run here (PL/Python's subtransaction would fail outside Python's
        # reach): the interrupt stays pending, for PostgreSQL's next check to raise
        raise error
    try:
        query("SELECT pg_catalog.pg_sleep(0)")
    except plpy.SPIError as e:
        sqlstate = getattr(e, "sqlstate", None) or ""
        if sqlstate.startswith("57"):
            error = Interrupted(e.args[0] if e.args else "canceling statement", sqlstate=sqlstate)
    try:
        cancelled = (query("SELECT pgmodels._stamp() AS s")[0]["s"], error)
    except Exception:  # noqa: BLE001 - a statement that cannot query: nothing to remember
        cancelled = None
    raise error


def check_statement(stamp: float) -> None:
    """Raise again the interrupt that stopped a run of this statement (see raise_interrupt)."""
    if cancelled is not None and cancelled[0] == stamp:
        first = cancelled[1]
        raise Interrupted(first.message, detail=first.detail, sqlstate=first.sqlstate)


class _Job:
    __slots__ = ("fn", "args", "done", "result", "error", "seconds")

    def __init__(self, fn, args):
        self.fn, self.args = fn, args
        self.result = self.error = None
        self.seconds = 0.0
        self.done = threading.Lock()
        self.done.acquire()

    def execute(self) -> None:
        start = time.perf_counter()
        try:
            self.result = self.fn(*self.args)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            self.error = e
        self.seconds = time.perf_counter() - start
        self.done.release()


class _Worker:
    def __init__(self):
        import signal

        self.pid = os.getpid()
        self.jobs = queue.SimpleQueue()
        thread = threading.Thread(target=self._serve, name="pgmodels-onnx", daemon=True)
        # the thread inherits the mask it is started with: PostgreSQL's signals are the
        # backend thread's to handle (faults stay deliverable where they happen)
        faults = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP}
        old = signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()) - faults)
        try:
            thread.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _serve(self) -> None:
        while True:
            self.jobs.get().execute()


def _the_worker() -> _Worker:
    global _worker
    if _worker is None or _worker.pid != os.getpid():  # a forked child has no thread of its parent's
        _worker = _Worker()
    return _worker


def call(fn, args: tuple, options=None):
    """(fn(*args), seconds it ran) on the worker, waiting so that an interrupt is answered:
    options, the run's onnxruntime RunOptions, is told to terminate, the run is awaited
    (onnxruntime stops at the next node) and PostgreSQL raises its error."""
    if interrupted():
        raise_interrupt()
    job = _Job(fn, args)
    _the_worker().jobs.put(job)
    stopped = False
    while not job.done.acquire(timeout=POLL):
        if not stopped and interrupted():
            stopped = True
            if options is not None:
                options.terminate = True
    if stopped or (job.error is not None and interrupted()):
        raise_interrupt()
    if job.error is not None:
        raise job.error
    return job.result, job.seconds


def run(run_fn, outputs, feed):
    """One onnxruntime run, run_fn(outputs, feed, run_options), stopped by an interrupt;
    for runs that are not a model's (the edge checks): always guarded, never cut."""
    if not flags():
        return run_fn(outputs, feed, None)
    import onnxruntime as ort

    options = ort.RunOptions()
    return call(run_fn, (outputs, feed, options), options)[0]


def rows_of(feed) -> int:
    try:
        return len(next(iter(feed.values())))
    except (StopIteration, TypeError, AttributeError):
        return 1


class Budget:
    """Which runs of one model run in the backend's thread, and how many rows a guarded
    run takes at a time: from the least time per row seen in its guarded runs, and, for an
    imported model, from its static work estimate (an upper bound that the input's values
    cannot exceed, where a measured time could have come from a cheap branch).

    work_per_row: the static estimate; bounded: False for an imported model without one
    (its work depends on the input's values, or it was imported before estimates): every
    run of such a model is guarded."""

    def __init__(self, work_per_row: float | None = None, bounded: bool = True):
        self.static = work_per_row * SECONDS_PER_OPERATION if work_per_row else None
        self.bounded = bounded
        self.measured: float | None = None
        self.inline_rows = 0
        self.chunk_rows = UNLIMITED
        self._update()

    def _update(self) -> None:
        if not flags():
            self.inline_rows = self.chunk_rows = UNLIMITED
            return
        known = [s for s in (self.measured, self.static) if s is not None]
        per_row = max(known) if known else None
        if not self.bounded or self.measured is None:
            self.inline_rows = 0
        else:
            self.inline_rows = int(INLINE_SECONDS / per_row) if per_row > 0 else UNLIMITED
        self.chunk_rows = max(1, int(RUN_SECONDS / per_row)) if per_row else UNLIMITED

    def could_inline(self, rows: int) -> bool:
        """False when the static estimate (or its absence, for an imported model) rules out
        running rows rows in the backend's thread, whatever a run would measure."""
        if not flags():
            return True
        return self.bounded and (self.static is None or rows * self.static <= INLINE_SECONDS)

    def run(self, run_fn, outputs, feed, rows: int):
        """A guarded run of rows rows, cut into runs of chunk_rows."""
        import onnxruntime as ort

        if rows <= self.chunk_rows:
            options = ort.RunOptions()
            result, seconds = call(run_fn, (outputs, feed, options), options)
            self._measure(seconds, rows)
            return result
        parts, start = [], 0
        while start < rows:
            step = self.chunk_rows  # each run's measure may change it: the next run follows
            part = {k: v[start:start + step] for k, v in feed.items()}
            n = min(step, rows - start)
            start += n
            options = ort.RunOptions()
            result, seconds = call(run_fn, (outputs, part, options), options)
            self._measure(seconds, n)
            if any(_length(r) != n for r in result):
                raise PgmodelsError("the model's answer is not one per row",
                                    detail="Its ONNX graph does not give one answer per row of input.",
                                    sqlstate="22000")
            parts.append(result)
        return [_joined([p[i] for p in parts]) for i in range(len(parts[0]))]

    def _measure(self, seconds: float, rows: int) -> None:
        per_row = seconds / max(rows, 1)
        if self.measured is None or per_row < self.measured:
            self.measured = per_row
            self._update()


def _length(output) -> int | None:
    try:
        return len(output)
    except TypeError:  # a scalar
        return None


def _joined(pieces: list):
    import numpy as np

    if all(isinstance(p, np.ndarray) for p in pieces):
        return np.concatenate(pieces, axis=0)
    joined = []
    for p in pieces:
        joined.extend(p)
    return joined
