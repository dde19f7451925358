"""A fresh database of its own, for the pgmodels_pgml tests (the extension adds schema pgml)."""

from __future__ import annotations

import contextlib
import uuid

import psycopg


@contextlib.contextmanager
def fresh_database(cluster, setup: str | None = "CREATE EXTENSION pgmodels_pgml CASCADE"):
    """(URL, superuser connection, name) of a new database, dropped at the end."""
    name = "pgml_test_" + uuid.uuid4().hex[:8]
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        with psycopg.connect(cluster.url(name), autocommit=True) as conn:
            if setup:
                conn.execute(setup)
            yield cluster.url(name), conn, name
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
