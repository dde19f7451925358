"""A project with two versions for the rollout tests: a champion and a candidate on the
same features (a, b), and a table of rows by id to score."""

from __future__ import annotations

import hashlib


def two_versions(conn, name: str, rows: int = 2000, bad_champion: bool = False, impute_champion: bool = False):
    """(champion model id, candidate model id) of project `name` on table `name` (id, a, b, y)."""
    conn.execute(f"CREATE TABLE {name} AS SELECT i AS id, (random() * 2)::real AS a, (random() * 2)::real AS b, "
                 f"0 AS y FROM generate_series(1, {rows}) i")
    conn.execute(f"UPDATE {name} SET y = (a + b > 2)::int")
    labels = "(random() > 0.5)::int" if bad_champion else "y"
    conn.execute(f"CREATE VIEW {name}_champ AS SELECT a, b, {labels} AS y FROM {name}")
    conn.execute(f"CREATE VIEW {name}_cand AS SELECT a, b, y FROM {name}")
    # impute_champion: the champion fills a NULL a with the mean, the candidate refuses it
    pre = ", preprocess => '{\"a\": {\"impute\": \"mean\"}}'" if impute_champion else ""
    refuse = ", preprocess => '{\"a\": {\"impute\": \"error\"}}'" if impute_champion else ""
    champion = conn.execute(f"SELECT (train(%s, 'classification', '{name}_champ', 'y', algorithm => 'linear'{pre})).model_id",
                            [name]).fetchone()[0]
    candidate = conn.execute(f"SELECT (train(%s, 'classification', '{name}_cand', 'y', algorithm => 'random_forest', "
                             f"hyperparams => '{{\"n_estimators\": 5, \"max_depth\": 4}}', automatic_deploy => false{refuse})).model_id",
                             [name]).fetchone()[0]
    return champion, candidate


def share(rollout_id: int, key) -> float:
    """The documented key hash: the first 52 bits of sha256('<rollout id>:<key>') over 2^52."""
    return int(hashlib.sha256(f"{rollout_id}:{key}".encode()).hexdigest()[:13], 16) / float(1 << 52)
