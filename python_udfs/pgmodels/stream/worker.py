"""``pgmodels stream work [CONSUMER ...]``: a worker for stream consumers.

The loop, as procrastinate's: call process_stream() for each consumer until none has
anything pending; then say so (inserts into those streams notify only while a worker
waits, since a NOTIFY serializes its sender's commit), LISTEN, look once more, and wait
for a notification, or at most ``idle_timeout`` seconds as a safety net. Every call is
its own transaction. SIGTERM and SIGINT finish the call in progress and stop. A lost
connection (a server restart) is retried with backoff. Maintenance (rotating the logs)
runs every ``maintenance_every`` seconds; a worker that was given no consumer names
looks for its role's consumers again then, so it picks up one added later (a worker
started with the database, as in compose.yaml, before any consumer exists). Any number of workers may run at once: a
consumer's partition is processed by one of them at a time, and the others move on (to
its other partitions, or other consumers).
"""

from __future__ import annotations

import signal
import sys
import time

import psycopg
from psycopg import sql

INFLIGHT_POLL = 0.02  # seconds between looks while a producer's transaction is open
FAILURE_PAUSE = 10.0  # seconds a consumer whose call failed is left alone


def _first_line(e: Exception) -> str:
    diag = getattr(e, "diag", None)
    return (diag.message_primary if diag is not None and diag.message_primary else str(e)).strip().splitlines()[0]


class Worker:
    def __init__(self, dsn: str, consumers: list[str] | None = None, max_events: int = 1000,
                 idle_timeout: float = 1.0, maintenance_every: float = 10.0, log=None):
        self.dsn, self.wanted, self.max_events = dsn, consumers, max_events
        self.idle_timeout, self.maintenance_every = idle_timeout, maintenance_every
        self.stopping = False
        self.log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self.processed = 0
        self.failing: dict[str, float] = {}  # consumer -> when to try it again

    def stop(self, *_):
        self.stopping = True

    def _consumers(self, conn) -> list[tuple[str, str, int]]:
        """(consumer, its notification channel, its stream's id): the ones asked for, or
        all the role owns. Owns itself, not as a member (a superuser is a member of every
        role): a consumer is processed only as its owner (pgmodels._consumer_get)."""
        rows = conn.execute("""SELECT c.consumer, s.stream_id FROM pgmodels.stream_consumers c
                               JOIN pgmodels.streams s ON s.name = c.stream
                               WHERE c.owner::regrole = (SELECT r.oid FROM pg_catalog.pg_roles r
                                                          WHERE r.rolname = current_user)::regrole
                               ORDER BY c.consumer""").fetchall()
        found = {name: stream_id for name, stream_id in rows}
        names = self.wanted or sorted(found)
        missing = [n for n in names if n not in found]
        if missing:
            raise SystemExit(f"pgmodels stream work: no consumer {', '.join(missing)} of this role")
        return [(n, f"pgmodels_stream_{found[n]}", found[n]) for n in names]

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        backoff = 0.5
        while not self.stopping:
            try:
                # no server-side prepared statements: through a transaction pool (PgBouncer)
                # the next call may run on another backend, which never prepared them
                with psycopg.connect(self.dsn, autocommit=True, application_name="pgmodels stream worker",
                                     prepare_threshold=None) as conn:
                    backoff = 0.5
                    self._loop(conn)
            except psycopg.OperationalError as e:
                if self.stopping:
                    break
                self.log(f"pgmodels stream work: connection lost ({_first_line(e)}); "
                         f"retrying in {backoff:.1f} s")
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        return 0

    def _loop(self, conn) -> None:
        consumers = self._consumers(conn)
        names = [c[0] for c in consumers]
        stream_ids = sorted({c[2] for c in consumers})
        for channel in sorted({c[1] for c in consumers}):
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.log(f"pgmodels stream work: consuming {', '.join(names) or '(no consumer of this role yet)'}")
        last_maintenance = 0.0
        while not self.stopping:
            if time.monotonic() - last_maintenance > self.maintenance_every:
                if self.wanted is None and [c[0] for c in self._consumers(conn)] != names:
                    return  # the role's consumers changed (one added or dropped): start again with them
                for (stream_id,) in {(c[2],) for c in consumers}:
                    try:
                        conn.execute("SELECT pgmodels._stream_maintain(pgmodels._credential(), %s)", [stream_id])
                    except psycopg.OperationalError:
                        raise
                    except psycopg.Error as e:
                        self.log(f"pgmodels stream work: maintenance of stream {stream_id}: {_first_line(e)}")
                last_maintenance = time.monotonic()
            if self._round(conn, names):
                continue
            # nothing pending: ask to be woken, look once more, then wait
            conn.execute("SELECT pgmodels._stream_waiting(pgmodels._credential(), %s, true)", [names])
            if not self._round(conn, names):
                # a producer whose transaction is still open may commit without notifying
                # (it looked for waiting workers when it inserted): look again soon then.
                # When none is open, one may have committed since the round above looked:
                # one more round sees it (any later insert finds this worker waiting, and
                # notifies)
                inflight = conn.execute("SELECT pgmodels._stream_inflight(%s)", [stream_ids]).fetchone()[0]
                if inflight:
                    self._wait(conn, INFLIGHT_POLL)
                elif not self._round(conn, names):
                    self._wait(conn, self.idle_timeout)
            conn.execute("SELECT pgmodels._stream_waiting(pgmodels._credential(), %s, false)", [names])

    def _wait(self, conn, seconds: float) -> None:
        """Until a notification, ``seconds``, or a stop signal (checked every quarter second)."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            if any(True for _ in conn.notifies(timeout=min(left, 0.25), stop_after=1)):
                return

    def _round(self, conn, names: list[str]) -> int:
        """One process_stream() per consumer (it takes the next free partition that has
        events). A consumer whose call fails (a model its events cannot feed, a privilege
        lost) is logged and left alone for a while; the others go on."""
        done = 0
        for name in names:
            if self.stopping:
                break
            if self.failing.get(name, 0) > time.monotonic():
                continue
            try:
                n = conn.execute("SELECT process_stream(%s, %s)", [name, self.max_events]).fetchone()[0]
            except psycopg.OperationalError:
                raise
            except psycopg.Error as e:
                self.log(f"pgmodels stream work: {name}: {_first_line(e)} (retrying in {FAILURE_PAUSE:.0f} s)")
                self.failing[name] = time.monotonic() + FAILURE_PAUSE
                continue
            self.failing.pop(name, None)
            done += n
            self.processed += n
        return done


def add_parser(sub) -> None:
    stream = sub.add_parser("stream", help="stream consumers")
    ssub = stream.add_subparsers(dest="action", required=True)
    work = ssub.add_parser("work", help="run a worker: process the consumers' events as they arrive")
    work.add_argument("consumers", nargs="*", help="consumers to process (default: all of the role's)")
    work.add_argument("--dsn", help="database to use (default: $PGMODELS_DSN, else the embedded cluster); the worker "
                                    "runs as its role")
    work.add_argument("--max-events", type=int, default=1000, help="events per process_stream() call")
    work.add_argument("--idle-timeout", type=float, default=1.0,
                      help="seconds to wait for a notification before looking again (the safety net)")


def run_command(args, default_dsn) -> int:
    dsn = args.dsn or default_dsn()
    return Worker(dsn, args.consumers or None, args.max_events, args.idle_timeout).run()
