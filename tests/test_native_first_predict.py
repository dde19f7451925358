"""A version stored with its trees: a backend's first predict() in C (issue #25).

train() translates a tree ensemble for the C library in its child, checks the
translation against onnxruntime on probe rows, and stores it with the version
(pgmodels.models.native_trees). A backend loading that version hands the trees to the
library and starts neither onnxruntime nor numpy until an answer needs them: the first
predict() of a new connection, the one a connection pool or a serverless function pays
for, is answered in C.

Checked here: which versions get trees (trained and imported); the first statement of a new backend answers
every row as onnxruntime does, with neither onnxruntime nor numpy loaded; another answer
(predict_proba) starts onnxruntime and changes no answer; as a LOGIN role, a new
backend without the grant gets nothing and a revoke reaches the next statement; a
damaged stored translation costs speed, never a wrong answer.
"""

from __future__ import annotations

import psycopg
import pytest

from dbhelpers import sql_error
from test_native_predict import onnxruntime_answers

TREES = {"first_xgb": ("classification", "first_bin", "xgboost", '{"n_estimators": 15}'),
         "first_rf": ("regression", "first_reg", "random_forest", '{"n_estimators": 5, "max_depth": 6}')}
LOADED = """DO $$
import sys
loaded = [m for m in ('numpy', 'onnxruntime') if m in sys.modules]
if loaded:
    plpy.error('loaded: ' + ', '.join(loaded))
$$ LANGUAGE plpython3u"""


@pytest.fixture(scope="module")
def stored(test_db):
    """Two tree ensembles and a linear model, trained on a deterministic table of 4 features."""
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS first_rows CASCADE")
        c.execute("SELECT setseed(0.5)")
        c.execute("""CREATE TABLE first_rows AS
                     SELECT i AS id, random()::real AS a, random()::real AS b, random()::real AS c,
                            random()::real AS d FROM generate_series(1, 1500) i""")
        c.execute("CREATE VIEW first_bin AS SELECT a, b, c, d, (a + b * c > 0.6)::int AS y FROM first_rows")
        c.execute("CREATE VIEW first_reg AS SELECT a, b, c, d, (a * 3 + b * c - d)::real AS y FROM first_rows")
        for project, (task, relation, algorithm, hyper) in {
                **TREES, "first_linear": ("regression", "first_reg", "linear", "{}")}.items():
            c.execute("SELECT 1 FROM train(%s, task => %s, relation_name => %s, y_column_name => 'y', "
                      "algorithm => %s, hyperparams => %s::jsonb)", [project, task, relation, algorithm, hyper])
        yield {p: onnxruntime_answers(c, p, "first_rows") for p in TREES}


def test_train_stores_the_trees_of_tree_ensembles_only(conn, stored):
    rows = dict(conn.execute("SELECT p.name, length(m.native_trees) FROM pgmodels.models m "
                             "JOIN pgmodels.projects p ON p.id = m.project_id "
                             "WHERE p.name LIKE 'first%'").fetchall())
    assert rows["first_xgb"] > 0 and rows["first_rf"] > 0 and rows["first_linear"] is None


@pytest.mark.parametrize("project", sorted(TREES))
def test_the_first_statement_of_a_backend_is_answered_in_c_without_onnxruntime_or_numpy(test_db, stored, project):
    statement = "SELECT predict(%s, ARRAY[a, b, c, d]::real[]) FROM first_rows ORDER BY id"
    with psycopg.connect(test_db, autocommit=True) as c:
        assert [r[0] for r in c.execute(statement, [project]).fetchall()] == stored[project]
        c.execute(LOADED)  # raises if either was imported
        if TREES[project][0] == "classification":  # another answer starts onnxruntime, and no answer changes
            assert len(c.execute("SELECT predict_proba(%s, ARRAY[0.5, 0.5, 0.5, 0.5]::real[])",
                                 [project]).fetchone()[0]) == 2
            assert [r[0] for r in c.execute(statement, [project]).fetchall()] == stored[project]
    with psycopg.connect(test_db, autocommit=True) as c:  # a predict_batch first, too
        got = c.execute("SELECT predict_batch(%s, (SELECT array_agg(ARRAY[a, b, c, d] ORDER BY id)::real[] "
                        "FROM first_rows))", [project]).fetchall()  # a set of answers, in row order
        assert [r[0] for r in got] == stored[project]
        c.execute(LOADED)


def test_a_new_backend_of_a_role_without_the_grant_gets_nothing_and_a_revoke_reaches_the_next_statement(
        conn, cluster, stored, make_role, name):
    from dbhelpers import role_connection

    rolname, rc = make_role(name)
    conn.execute(f"GRANT SELECT ON first_rows TO {rolname}")
    statement = "SELECT predict('first_xgb', ARRAY[a, b, c, d]::real[]) FROM first_rows WHERE id = 7"
    assert sql_error(rc, statement).sqlstate == "42501"
    conn.execute("SELECT grant_project('first_xgb', %s, 'predict')", [rolname])
    with role_connection(cluster, conn.info.dbname, rolname) as fresh:
        assert fresh.execute(statement).fetchone()[0] == stored["first_xgb"][6]
        for _ in range(3):  # warm: answered by the kept decision in C
            fresh.execute(statement)
        conn.execute("SELECT revoke_project('first_xgb', %s)", [rolname])
        assert sql_error(fresh, statement).sqlstate == "42501"
    with role_connection(cluster, conn.info.dbname, rolname) as fresh:
        assert sql_error(fresh, statement).sqlstate == "42501"


@pytest.mark.parametrize("damage", ["'\\x0102'::bytea", "substring(native_trees from 1 for 200)",
                                    "overlay(native_trees placing '\\xffffffff'::bytea from 41 for 4)"])
def test_a_damaged_stored_translation_costs_speed_not_answers(conn, test_db, stored, damage):
    where = "project_id = (SELECT id FROM pgmodels.projects WHERE name = 'first_rf')"
    kept = conn.execute(f"SELECT native_trees FROM pgmodels.models WHERE {where}").fetchone()[0]
    conn.execute(f"UPDATE pgmodels.models SET native_trees = {damage} WHERE {where}")
    try:
        with psycopg.connect(test_db, autocommit=True) as c:
            got = c.execute("SELECT predict('first_rf', ARRAY[a, b, c, d]::real[]) FROM first_rows "
                            "ORDER BY id").fetchall()
            assert [r[0] for r in got] == stored["first_rf"]
    finally:
        conn.execute(f"UPDATE pgmodels.models SET native_trees = %s WHERE {where}", [kept])


def test_an_imported_tree_ensemble_is_stored_with_its_trees_too(conn, test_db, name):
    from onnx_models import tree_regressor

    model_id = conn.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')",
                            [name, tree_regressor(1.0)]).fetchone()[0]
    assert conn.execute("SELECT length(native_trees) FROM pgmodels.models WHERE id = %s", [model_id]).fetchone()[0]
    with psycopg.connect(test_db, autocommit=True) as c:
        assert c.execute("SELECT predict(%s, ARRAY[1, 1]::real[]), predict(%s, ARRAY[2, 1]::real[])",
                         [name, name]).fetchone() == (2.0, 5.0)
        c.execute(LOADED)
