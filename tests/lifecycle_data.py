"""Small deterministic tables for the lifecycle tests, made in SQL (no downloads)."""

from __future__ import annotations


def make_churn(conn, table: str, rows: int = 400) -> None:
    """Binary target, four numeric features and one text feature; deterministic."""
    conn.execute(f"""
        CREATE TABLE {table} AS
        SELECT (i % 60)::real AS tenure, (20 + (i * 37) % 100)::real AS monthly, (i % 7)::integer AS calls,
               (i % 3 = 0) AS paperless,
               (ARRAY['month', 'year', 'two'])[1 + i % 3] AS contract,
               ((i % 60) < 15 AND (20 + (i * 37) % 100) > 60) OR (i % 7) >= 5 AS churned
        FROM generate_series(1, {rows}) AS i""")


def make_numeric(conn, table: str, rows: int = 300) -> None:
    """Binary target over four float features only (single ONNX input)."""
    conn.execute(f"""
        CREATE TABLE {table} AS
        SELECT (i % 17)::real AS a, ((i * 7) % 23)::real AS b, ((i * 3) % 11)::real AS c, (i % 5)::real AS d,
               CASE WHEN (i % 17) + ((i * 7) % 23) > 20 THEN 1 ELSE 0 END AS y
        FROM generate_series(1, {rows}) AS i""")


def make_regression(conn, table: str, rows: int = 200) -> None:
    """y = 3a - 2b + 1, exactly."""
    conn.execute(f"""
        CREATE TABLE {table} AS
        SELECT (i % 13)::float8 AS a, ((i * 5) % 17)::float8 AS b, (3 * (i % 13) - 2 * ((i * 5) % 17) + 1)::float8 AS y
        FROM generate_series(1, {rows}) AS i""")
