"""The ways a Python application calls pgmodels through psycopg 3, as the README shows
them: per row with parameters, and a whole batch in one round trip (predict_batch with a
2-D array, or unnest with keys); features as lists, dicts (jsonb) and numpy arrays;
progress notices while train() runs."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from lifecycle_data import make_numeric

ROWS = [[16.0, 22.0, 3.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [10.0, 15.0, 2.0, 3.0]]


@pytest.fixture(scope="module")
def project(test_db):
    import uuid

    name = "pg_" + uuid.uuid4().hex[:8]
    with psycopg.connect(test_db, autocommit=True) as c:
        make_numeric(c, name, 300)
        c.execute("SET pgmodels.progress_level = 'off'")
        c.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', '{\"n_estimators\": 10}')",
                  [name, name])
    return name


def test_per_row_with_parameters(conn, project):
    got = [conn.execute("SELECT predict(%s, %s::real[])", [project, row]).fetchone()[0] for row in ROWS]
    assert all(type(p) is float for p in got)
    # the model learned y = a + b > 20
    assert got == [1.0, 0.0, 0.0, 1.0]
    # a numpy row, and named features as a dict (jsonb)
    assert conn.execute("SELECT predict(%s, %s::real[])", [project, np.array(ROWS[0], dtype=np.float32).tolist()]
                        ).fetchone()[0] == 1.0
    assert conn.execute("SELECT predict_proba(%s, %s)", [project, Jsonb(dict(zip("abcd", ROWS[3])))]
                        ).fetchone()[0][1] > 0.5


def test_a_batch_in_one_round_trip(conn, project):
    one_by_one = [conn.execute("SELECT predict(%s, %s::real[])", [project, row]).fetchone()[0] for row in ROWS]
    batch = [r[0] for r in conn.execute("SELECT predict_batch(%s, %s::real[])", [project, ROWS])]
    assert batch == one_by_one
    keyed = conn.execute("""SELECT u.k, predict(%s, ARRAY[u.a, u.b, u.c, u.d])
                              FROM unnest(%s::bigint[], %s::real[], %s::real[], %s::real[], %s::real[]) AS u(k, a, b, c, d)
                             ORDER BY u.k""",
                         [project, [101, 102, 103, 104], *[list(col) for col in zip(*ROWS)]]).fetchall()
    assert keyed == list(zip([101, 102, 103, 104], one_by_one))


def test_executemany_pipelines_the_per_row_statement(conn, project):
    with conn.cursor() as cur:
        cur.executemany("SELECT predict(%s, %s::real[])", [(project, row) for row in ROWS], returning=True)
        got = []
        while True:
            got.append(cur.fetchone()[0])
            if not cur.nextset():
                break
    assert got == [1.0, 0.0, 0.0, 1.0]


def test_progress_notices_reach_a_notice_handler(connect, project, name):
    c = connect()
    make_numeric(c, name, 300)
    seen = []
    c.add_notice_handler(lambda d: seen.append(d.message_primary))
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name]).fetchall()
    assert seen[0] == f'train "{name}": read 300 rows of public.{name} (4 features)'
    assert seen[-1].startswith(f'train "{name}": trained version 1 in ')
