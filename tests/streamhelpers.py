"""Shared pieces of the stream tests: projects, a ride stream, real worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lifecycle_data import make_regression

PGMODELS = str(Path(sys.executable).with_name("pgmodels"))
CREATE_STREAM = "create_stream(text, text, text)"
ADD_CONSUMER = "add_consumer(text, text, text, text, text, text, boolean, integer)"


def regression_project(conn, name: str) -> None:
    """A regression model on features a and b (y = 3a - 2b + 1)."""
    make_regression(conn, name + "_train")
    conn.execute("SELECT * FROM train(%s, 'regression', %s, 'y')", [name, name + "_train"])


def ride_stream(conn, name: str) -> str:
    """A rides table (key ride_id; features a, b), a stream on it; returns the table."""
    table = name + "_rides"
    conn.execute(f"CREATE TABLE {table} (ride_id bigserial PRIMARY KEY, a float8, b float8, "
                 "started timestamptz DEFAULT now())")
    conn.execute("SELECT create_stream(%s, %s, 'ride_id')", [name, table])
    return table


def insert_rides(conn, table: str, n: int, start: int = 0) -> None:
    conn.execute(f"INSERT INTO {table} (a, b) SELECT (i %% 13), (i * 5) %% 17 FROM generate_series(%s::int, %s::int) i",
                 [start + 1, start + n])


def drain(conn, consumer: str, max_events: int = 1000) -> int:
    """process_stream() until it finds nothing (in any partition)."""
    total = 0
    while True:
        n = conn.execute("SELECT process_stream(%s, %s)", [consumer, max_events]).fetchone()[0]
        total += n
        if n == 0:
            return total


def start_worker(dsn: str, *consumers: str, extra: tuple = ()) -> subprocess.Popen:
    return subprocess.Popen([PGMODELS, "stream", "work", *consumers, "--dsn", dsn, "--idle-timeout", "0.5", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop_worker(worker: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15) -> int:
    worker.send_signal(sig)
    return worker.wait(timeout)


def wait_until(check, timeout: float = 60, every: float = 0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {check}")


def pending(conn, consumer: str) -> int:
    return conn.execute("SELECT events_pending FROM pgmodels.stream_consumers WHERE consumer = %s",
                        [consumer]).fetchone()[0]
