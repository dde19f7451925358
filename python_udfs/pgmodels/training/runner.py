"""Running a training in a child process that stops when the statement is cancelled.

scikit-learn and XGBoost fit in C loops that never look at PostgreSQL's interrupt flags,
so a training in the backend itself would run past statement_timeout, pg_cancel_backend
and pg_terminate_backend. Instead the backend forks: the child (which already has the
data and the libraries, so it starts in a millisecond) fits, converts and scores, writes
the result to a private file and leaves with os._exit, touching nothing of PostgreSQL's;
the parent waits, checking for interrupts every 20 ms, and kills the child the moment
the statement is cancelled or the backend told to end (the child also dies with its
parent, by PR_SET_PDEATHSIG). A crash inside a library ends only the child.

OpenMP is not fork-safe once its thread pool exists, so the backend itself never runs
OpenMP with more than one thread (pgmodels._activate_core sets OMP_NUM_THREADS=1 before
any library loads, and native serving uses one thread); a child widens it for its fit.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import tempfile
import traceback
from dataclasses import asdict

from .. import progress
from .._plpy import query
from ..errors import INTERNAL_ERROR, PgmodelsError

PR_SET_PDEATHSIG = 1


def run(fn, result_type, *args):
    """fn(*args) in a forked child; its result (a dataclass with an ``artifact`` field, and
    perhaps other bytes fields) or its PgmodelsError comes back as if it had run here."""
    fd, path = tempfile.mkstemp(prefix="pgmodels-train-")
    os.unlink(path)  # nothing left behind, however the backend ends: both ends keep the descriptor
    parent = os.getpid()
    relay = progress.Relay()  # the child's progress messages, published while we wait
    pid = os.fork()
    if pid == 0:  # the child: never returns
        relay.in_child()
        _child(fd, parent, fn, args)
    relay.in_parent()
    try:
        _wait(pid, relay.poll)
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read()
    finally:
        os.close(fd)
        relay.close()
    header, _, payload = data.partition(b"\n")
    outcome = json.loads(header) if header else {"internal": "the training process wrote no result"}
    if "error" in outcome:
        raise PgmodelsError(**outcome["error"])
    if "internal" in outcome:
        raise PgmodelsError("internal error in pgmodels training", detail=outcome["internal"][-1000:],
                            hint="This is a bug in pgmodels; please report it with the statement that raised it.",
                            sqlstate=INTERNAL_ERROR)
    # the result's bytes fields follow the header, the artifact last: (name, length) each
    blobs, at = {}, 0
    for name, length in outcome.get("blobs", []):
        blobs[name], at = payload[at:at + length], at + length
    return result_type(artifact=payload[at:], **blobs, **outcome["result"])


def _poll(done) -> None:
    """Wait until done() is true. The sleeping is Python's, which lets other threads run
    (PL/Python keeps the interpreter lock through a query); between sleeps pg_sleep(0)
    checks for interrupts: a cancel, a timeout or a terminate raises there."""
    import time

    delay = 0.001
    while not done():
        time.sleep(delay)
        query("SELECT pg_catalog.pg_sleep(0)")
        delay = min(delay * 2, 0.005)


def in_background(fn, *args) -> None:
    """fn(*args) in a thread of this backend, waiting for it with _poll, so that a cancel
    is answered at once: for slow imports, which cannot be interrupted. fn must not touch
    PostgreSQL. A cancelled wait leaves the thread to finish alone; its error, if any, is
    raised here."""
    import threading

    failure = []

    def target():
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            failure.append(e)

    thread = threading.Thread(target=target, name="pgmodels-prepare", daemon=True)
    thread.start()
    _poll(lambda: not thread.is_alive())
    if failure:
        raise failure[0]


def _wait(pid: int, on_wait=lambda: None) -> None:
    status = []

    def exited() -> bool:
        done, code = os.waitpid(pid, os.WNOHANG)
        on_wait()  # after waitpid: once the child is gone, all it wrote is in the pipe
        if done:
            status.append(code)
        return bool(done)
    try:
        _poll(exited)
    except BaseException:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    status = status[0]
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        raise PgmodelsError("the training process was killed by signal %d (%s)" % (sig, signal.Signals(sig).name),
                            detail="A library crashed or the operating system ended it (out of memory, say); "
                                   "the server itself is unaffected.",
                            hint="Train on fewer rows or with smaller hyperparameters.", sqlstate="53000")


def _child(fd: int, parent: int, fn, args) -> None:
    code = 0
    try:
        try:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGALRM, signal.SIGUSR1,
                        signal.SIGUSR2, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)
            _widen_threads()
            result = fn(*args)
            fields = asdict(result)
            blobs = [(k, bytes(v)) for k, v in fields.items() if k != "artifact" and isinstance(v, (bytes, bytearray))]
            body = {k: v for k, v in fields.items() if k != "artifact" and k not in dict(blobs)}
            out = (json.dumps({"result": body, "blobs": [(k, len(v)) for k, v in blobs]}).encode() + b"\n"
                   + b"".join(v for _, v in blobs) + bytes(result.artifact))
        except PgmodelsError as e:
            out = json.dumps({"error": {"message": e.message, "detail": e.detail, "hint": e.hint,
                                        "sqlstate": e.sqlstate}}).encode() + b"\n"
        except MemoryError:
            out = json.dumps({"error": {"message": "out of memory in pgmodels training",
                                        "sqlstate": "53200"}}).encode() + b"\n"
        except BaseException as e:  # noqa: BLE001 - reported to the parent as one clean error
            last = traceback.extract_tb(e.__traceback__)[-1:]
            where = f" (at {last[0].name})" if last else ""
            out = json.dumps({"internal": f"{type(e).__name__}: {e}{where}"}).encode() + b"\n"
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(out)
    except BaseException:  # noqa: BLE001 - nothing may escape into PostgreSQL's code
        code = 1
    os._exit(code)


_threads: list = []  # [threadpoolctl's controller of the libraries loaded], made before a fork


def know_threads() -> None:
    """Find the thread pools of the libraries loaded so far (a scan of every loaded
    library, 20 ms), here in the backend, so that each training child inherits the
    result instead of scanning again. Once per backend: the imports above load them all."""
    if _threads:
        return
    try:
        from threadpoolctl import ThreadpoolController

        _threads[:] = [ThreadpoolController()]
    except Exception:  # noqa: BLE001 - the child then scans for itself
        _threads.clear()


def _widen_threads() -> None:
    try:
        if _threads:
            _threads[0].limit(limits=os.cpu_count() or 1, user_api="openmp")
        else:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=os.cpu_count() or 1, user_api="openmp")
    except Exception:  # noqa: BLE001 - fewer threads is slower, not wrong
        pass


