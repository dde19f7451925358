"""Synthetic data with known shifts for the monitoring tests and benchmark."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

FEATURES = [f"f{i}" for i in range(1, 9)]


def rows(n: int, seed: int, shift: dict | None = None, start: str = "2026-01-01", label_cut: float = 0.0):
    """n rows of 8 standard-normal features (each shifted by shift[name]), a category, a
    label y = f1 + f2 > label_cut and a timestamp one second apart."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, len(FEATURES)))
    for name, by in (shift or {}).items():
        X[:, FEATURES.index(name)] += by
    y = (X[:, 0] + X[:, 1] > label_cut).astype(int)
    cat = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    return X, cat, y


def load(conn, table: str, n: int, seed: int, shift: dict | None = None, with_time: bool = False,
         with_label: bool = True, label_cut: float = 0.0, start: str = "2026-01-01") -> None:
    X, cat, y = rows(n, seed, shift, label_cut=label_cut)
    t0 = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    cols = ", ".join(f"{f} double precision" for f in FEATURES)
    extra = (", color text" + (", y integer" if with_label else "")
             + (", ts timestamptz" if with_time else ""))
    conn.execute(f"CREATE TABLE {table} ({cols}{extra})")
    names = FEATURES + ["color"] + (["y"] if with_label else []) + (["ts"] if with_time else [])
    with conn.cursor().copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
        for i in range(n):
            row = [float(v) for v in X[i]] + [str(cat[i])]
            if with_label:
                row.append(int(y[i]))
            if with_time:
                row.append(t0 + timedelta(seconds=i))
            copy.write_row(row)


def train(conn, project: str, table: str, algorithm: str = "xgboost") -> int:
    return conn.execute("SELECT model_id FROM train(%s, 'classification', %s, 'y', %s, %s)",
                        [project, table, algorithm, '{"n_estimators": 20}' if algorithm == "xgboost" else "{}"]
                        ).fetchone()[0]
