"""Every algorithm the README lists, on every task it supports, trained by the real
server, deployed, and served in every form; what serves must score on the test split as
the native model scored at training (the stored metrics), and the forms must agree."""

from __future__ import annotations

import re

import pytest
from sklearn.metrics import accuracy_score, r2_score

from dbhelpers import ROOT
from pgmodels.training.algorithms import algorithm_names

TEST_ROWS = 60


def readme_algorithms() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index("Algorithms (PostgresML's names):"):readme.index("`preprocess` per")]
    return re.findall(r"([a-z_]+)[,.]", block.split(":", 1)[1])


def test_the_readme_lists_exactly_the_algorithms_there_are():
    assert sorted(readme_algorithms()) == algorithm_names()


@pytest.fixture(scope="module")
def data(test_db):
    import psycopg

    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("""CREATE TABLE IF NOT EXISTS algo_rows AS
                     SELECT i, (i % 17)::real AS a, ((i * 7) % 23)::real AS b, ((i * 3) % 11)::real AS c,
                            CASE WHEN (i % 17) + ((i * 7) % 23) + (i % 3) > 20 THEN 1 ELSE 0 END AS y,
                            ((i % 17) * 2.5 + ((i * 7) % 23) - 0.3 * ((i * 3) % 11))::float8 AS r
                     FROM generate_series(1, 300) i""")
        c.execute("CREATE OR REPLACE VIEW algo_classification AS SELECT a, b, c, y FROM algo_rows ORDER BY i")
        c.execute("CREATE OR REPLACE VIEW algo_regression AS SELECT a, b, c, r FROM algo_rows ORDER BY i")
    return test_db


CASES = [(a, "classification") for a in algorithm_names("classification")] + \
        [(a, "regression") for a in algorithm_names("regression")]


@pytest.mark.parametrize("algorithm, task", CASES)
def test_every_algorithm_trains_deploys_and_serves(conn, data, algorithm, task):
    y = "y" if task == "classification" else "r"
    project = f"algo_{algorithm}_{task}"
    row = conn.execute(f"SELECT model_id, runtime, metrics FROM train(%s, %s, 'algo_{task}', %s, algorithm => %s, "
                       "test_size => %s, test_sampling => 'last', automatic_deploy => false)",
                       [project, task, y, algorithm, TEST_ROWS]).fetchone()
    model_id, runtime, metrics = row
    assert runtime in ("onnx", "skops", "xgboost-ubj")
    conn.execute("SELECT * FROM deploy(%s::bigint)", [model_id])
    test = f"(SELECT * FROM algo_rows WHERE i > {300 - TEST_ROWS} ORDER BY i) t"
    truth = [r[0] for r in conn.execute(f"SELECT {y} FROM {test}")]
    table = f"algo_rows t WHERE t.i > {300 - TEST_ROWS} ORDER BY t.i"
    forms = {  # (expression, FROM): the features as an array, rows of each kind, jsonb, by model id
        "array": ("predict(%s, ARRAY[a, b, c])", test),
        "subquery row": ("predict(%s, t)", test),
        "table row": ("predict(%s, t)", table),
        "anonymous row": ("predict(%s, ROW(a, b, c))", test),
        "jsonb": ("predict(%s, jsonb_build_object('a', a, 'b', b, 'c', c))", test),
        "model id": (f"predict({model_id}::bigint, ARRAY[a, b, c])", test),
    }
    served = {form: [r[0] for r in conn.execute(f"SELECT {expr} FROM {src}", [project] if "%s" in expr else None)]
              for form, (expr, src) in forms.items()}
    served["batch"] = [r[0] for r in conn.execute(
        f"SELECT predict_batch(%s, (SELECT array_agg(v ORDER BY i, o) FROM {test}, "
        "unnest(ARRAY[a, b, c]) WITH ORDINALITY AS u(v, o)))", [project])]
    first = served["array"]
    for form, values in served.items():
        assert values == pytest.approx(first, rel=1e-6, abs=1e-6), form
    if task == "classification":
        # at most one borderline row may fall the other way in single precision
        assert abs(accuracy_score(truth, first) - metrics["accuracy"]) <= 1 / TEST_ROWS + 1e-9
        labels = [r[0] for r in conn.execute(f"SELECT predict_label(%s, ARRAY[a, b, c]) FROM {test}", [project])]
        assert [float(v) for v in labels] == first
        try:
            proba = [r[0] for r in conn.execute(f"SELECT predict_proba(%s, ARRAY[a, b, c]) FROM {test}", [project])]
        except Exception as e:  # noqa: BLE001 - a classifier without probabilities says so clearly
            assert getattr(e, "sqlstate", None) == "0A000", e
            conn.rollback() if not conn.autocommit else None
        else:
            assert all(abs(sum(p) - 1) < 1e-3 for p in proba)
    else:
        assert r2_score(truth, first) == pytest.approx(metrics["r2"], abs=1e-3)
