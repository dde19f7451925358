"""Deterministic synthetic data for the benchmarks, COPY'd into schema pgmodels_bench.

Two tables, drawn from the same distribution with different seeds:

- ``train_data`` (f1 .. f8 real, label integer): what train() and the training baseline read;
- ``score`` (id integer, features real[]): the rows predict() and the baselines score.

The float32 values are written as text and parsed back into ``real`` exactly, so the
in-process baselines score the very same numbers as the database.
"""

from __future__ import annotations

import numpy as np
import psycopg
from psycopg import sql

SCHEMA = "pgmodels_bench"
N_FEATURES = 8
FEATURES = [f"f{i + 1}" for i in range(N_FEATURES)]
TRAIN_SEED, SCORE_SEED = 1, 2
WARMUP_ROWS = 200
_WEIGHTS = np.array([1.0, -0.8, 0.6, 0.0, 0.4, -0.3, 0.2, 0.1], dtype=np.float32)


def make_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 [n, 8], y int64 [n]): a binary target with some non-linearity and noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES), dtype=np.float32)
    logit = X @ _WEIGHTS + 0.8 * X[:, 0] * X[:, 1] - 0.5 * X[:, 2] ** 2 + 0.5
    y = (logit + rng.normal(0.0, 0.5, n) > 0).astype(np.int64)
    return X, y


def table(name: str) -> str:
    return f"{SCHEMA}.{name}"


def load(conn: psycopg.Connection, train_rows: int, score_rows: int) -> dict:
    """(Re)create the benchmark tables; return the matrices written to them."""
    X_train, y_train = make_rows(train_rows, TRAIN_SEED)
    X_score, y_score = make_rows(score_rows, SCORE_SEED)
    columns = ", ".join(f"{f} real NOT NULL" for f in FEATURES)
    with conn.transaction():
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        for name in ("train_data", "warmup", "score"):
            conn.execute(f"DROP TABLE IF EXISTS {table(name)}")
        conn.execute(f"CREATE TABLE {table('train_data')} ({columns}, label integer NOT NULL)")
        conn.execute(f"CREATE TABLE {table('score')} (id integer PRIMARY KEY, features real[] NOT NULL)")
        _copy_train(conn, X_train, y_train)
        _copy_score(conn, X_score)
        # A small table for the training warm-up (imports xgboost, skl2onnx in the backend).
        conn.execute(f"CREATE TABLE {table('warmup')} AS SELECT * FROM {table('train_data')} "
                     f"LIMIT {min(WARMUP_ROWS, train_rows)}")
    for name in ("train_data", "warmup", "score"):
        conn.execute(f"VACUUM ANALYZE {table(name)}")
    return {"X_train": X_train, "y_train": y_train, "X_score": X_score, "y_score": y_score}


def _copy_train(conn, X: np.ndarray, y: np.ndarray) -> None:
    target = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(SCHEMA, "train_data"),
        sql.SQL(", ").join(map(sql.Identifier, FEATURES + ["label"])))
    with conn.cursor().copy(target) as copy:
        for row, label in zip(X.tolist(), y.tolist()):
            copy.write_row(row + [label])


def _copy_score(conn, X: np.ndarray) -> None:
    target = sql.SQL("COPY {} (id, features) FROM STDIN").format(sql.Identifier(SCHEMA, "score"))
    with conn.cursor().copy(target) as copy:
        for i, row in enumerate(X.tolist()):
            copy.write_row((i, row))


def fetch_training_matrix(conn: psycopg.Connection) -> tuple[np.ndarray, np.ndarray]:
    """What a user would do outside the database: SELECT the rows and build numpy arrays."""
    rows = conn.execute(f"SELECT * FROM {table('train_data')}").fetchall()
    data = np.array(rows, dtype=np.float64)
    return data[:, :N_FEATURES], data[:, N_FEATURES].astype(np.int64)
