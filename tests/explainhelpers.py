"""Helpers the explanation tests share: a churn table and a training on it."""

from __future__ import annotations

import numpy as np


def churn_table(conn, name: str, rows: int = 600, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 25, rows).round(2)
    calls = rng.poisson(1.5, rows)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows)
    logit = (contract == "month-to-month") * 1.4 - tenure / 25 + (charges - 70) / 30 + calls * 0.4
    churned = (logit + rng.normal(scale=0.6, size=rows)) > 0
    conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, tenure int, charges float8, calls int, "
                 "contract text, churned boolean)")
    with conn.cursor().copy(f"COPY {name} FROM STDIN") as copy:
        for i in range(rows):
            copy.write_row((i + 1, int(tenure[i]), float(charges[i]), int(calls[i]), str(contract[i]),
                            bool(churned[i])))


def train(conn, project: str, relation: str, algorithm: str, **kw) -> int:
    args = ", ".join(f"{k} => %s" for k in kw)
    row = conn.execute(f"SELECT model_id FROM train(%s, 'classification', %s, 'churned', algorithm => %s"
                       f"{', ' + args if args else ''})", [project, relation, algorithm, *kw.values()]).fetchone()
    return row[0]
