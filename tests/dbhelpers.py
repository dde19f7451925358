"""Helpers the database tests share (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]


def sql_error(conn, statement: str, params=None) -> psycopg.Error:
    """Run a statement that must fail; return the error (its .sqlstate and .diag)."""
    with pytest.raises(psycopg.Error) as info:
        conn.execute(statement, params)
    return info.value


def role_connection(cluster, dbname: str, rolname: str):
    """An autocommit connection as a role the tests made with password 'pw'."""
    return psycopg.connect(f"postgresql://{rolname}:pw@127.0.0.1:{cluster.port}/{dbname}", autocommit=True)
