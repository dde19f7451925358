"""Shared pieces of the batch job tests: a keyed source, a trained project, a blocker."""

from __future__ import annotations

import threading

import psycopg

from lifecycle_data import make_numeric

CREATE = "create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, interval)"


def make_project(conn, name: str, rows: int = 2000, algorithm: str = "xgboost") -> str:
    """A project trained on four float features, and a source table <name>_src keyed by
    id with those features and an updated_at column; returns the source's name."""
    train = name + "_train"
    make_numeric(conn, train, 300)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', %s, %s)",
                 [name, train, algorithm, '{"n_estimators": 10}' if algorithm == "xgboost" else "{}"])
    src = name + "_src"
    conn.execute(f"""
        CREATE TABLE {src} AS
        SELECT i AS id, (i % 17)::real AS a, ((i * 7) % 23)::real AS b, ((i * 3) % 11)::real AS c,
               (i % 5)::real AS d, timestamptz '2026-01-01' + i * interval '1 second' AS updated_at
          FROM generate_series(1, {rows}) AS i""")
    conn.execute(f"ALTER TABLE {src} ADD PRIMARY KEY (id)")
    return src


def runs(conn, job: str) -> list[dict]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cur.execute("SELECT * FROM pgmodels.batch_runs WHERE job = %s ORDER BY run_id", [job]).fetchall()


def call_in_background(dsn: str, statement: str, params=None, setup: str | None = None):
    """Run a statement in its own session and thread; returns (thread, outcome dict)."""
    outcome: dict = {}

    def work():
        try:
            with psycopg.connect(dsn, autocommit=True) as c:
                outcome["pid"] = c.info.backend_pid
                if setup:
                    c.execute(setup)
                c.execute(statement, params)
                outcome["ok"] = True
        except psycopg.Error as e:
            outcome["error"] = e

    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, outcome


def block_key(connect, output: str, key: int):
    """A session holding an uncommitted row of the output table at ``key``: a run that
    reaches the chunk with that key waits for it (a deterministic mid-run point)."""
    blocker = connect(autocommit=False)
    blocker.execute(f"INSERT INTO {output} (id, prediction, model_id, model_version, scored_at, run_id) "
                    "VALUES (%s, -1, 0, 0, now(), 0)", [key])
    return blocker
