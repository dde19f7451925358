"""Who may explain, and bad input: each as an unprivileged role against the real server."""

from __future__ import annotations

import pytest

from dbhelpers import sql_error
from onnx_models import linear_classifier
from explainhelpers import churn_table as _table, train as _train

ROW = '{"id": 1, "tenure": 3, "charges": 95.0, "calls": 2, "contract": "month-to-month"}'


@pytest.fixture
def churn(conn, name):
    _table(conn, name, rows=300)
    model_id = _train(conn, name, name, "xgboost", hyperparams='{"n_estimators": 10, "max_depth": 3}',
                      preprocess='{"contract": {"encode": "one_hot"}}')
    return {"project": name, "model_id": model_id}


def _explain(c, project, features=ROW, **kw):
    args = "".join(f", {k} => %s" for k in kw)
    return c.execute(f"SELECT * FROM explain_prediction(%s, %s::jsonb{args})", [project, features, *kw.values()]).fetchall()


def test_explaining_needs_its_own_privilege(conn, make_role, churn):
    p = churn["project"]
    role, c = make_role("explain_predictor")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [p, role])
    assert c.execute("SELECT predict(%s, %s::jsonb)", [p, ROW]).fetchone()[0] in (0.0, 1.0)
    err = sql_error(c, "SELECT * FROM explain_prediction(%s, %s::jsonb)", [p, ROW])
    assert err.sqlstate == "42501" and "explain privilege" in err.diag.message_detail
    assert "grant_project" in err.diag.message_hint and "'explain'" in err.diag.message_hint
    for statement in ("SELECT * FROM explain_batch(%s, ARRAY[%s::jsonb])",
                      "SELECT * FROM explain_prediction(%s::bigint, %s::jsonb)"):
        target = churn["model_id"] if "bigint" in statement else p
        assert sql_error(c, statement, [target, ROW]).sqlstate == "42501"
    # 'all' gives predict and export, not explain (granted by name only)
    conn.execute("SELECT grant_project(%s, %s, 'all')", [p, role])
    assert sql_error(c, "SELECT * FROM explain_prediction(%s, %s::jsonb)", [p, ROW]).sqlstate == "42501"
    assert not c.execute("SELECT has_project_privilege(%s, %s, 'explain')", [role, p]).fetchone()[0]
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [p, role])
    assert c.execute("SELECT has_project_privilege(%s, %s, 'explain')", [role, p]).fetchone()[0]
    rows = _explain(c, p)
    assert rows[0][0] == "(base)" and len(rows) == 6
    assert c.execute("SELECT privilege FROM pgmodels.project_privileges WHERE project = %s AND grantee = %s "
                     "ORDER BY 1", [p, role]).fetchall() == [("explain",), ("export",), ("predict",)]
    # revoking 'all' takes explain back too
    conn.execute("SELECT revoke_project(%s, %s)", [p, role])
    assert sql_error(c, "SELECT * FROM explain_prediction(%s, %s::jsonb)", [p, ROW]).sqlstate == "42501"


def test_explain_alone_is_enough_and_the_owner_has_it(conn, make_role, churn):
    p = churn["project"]
    role, c = make_role("explain_only")
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [p, role])
    assert len(_explain(c, p)) == 6
    assert sql_error(c, "SELECT predict(%s, %s::jsonb)", [p, ROW]).sqlstate == "42501"  # explain is not predict
    assert len(_explain(conn, p)) == 6
    conn.execute("SELECT revoke_project(%s, %s, 'explain')", [p, role])
    assert sql_error(c, "SELECT * FROM explain_prediction(%s, %s::jsonb)", [p, ROW]).sqlstate == "42501"


def test_the_internals_answer_nobody_directly(conn, make_role, churn):
    p = churn["project"]
    role, c = make_role("explain_prober")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [p, role])
    # the cores answer only from what the lookup loaded for this statement: nothing, and
    # (once the session has loaded pgmodels) the error they leave says so
    assert c.execute("SELECT pgmodels._explain(%s, 0, %s::jsonb, NULL, NULL, pgmodels._stamp(), true)",
                     [p, ROW]).fetchone()[0] is None
    c.execute("SELECT predict(%s, %s::jsonb)", [p, ROW])
    err = sql_error(c, "SELECT coalesce(pgmodels._explain(%s, 0, %s::jsonb, NULL, NULL, pgmodels._stamp(), true), "
                       "pgmodels._raise_pending(NULL::pgmodels.explanation))", [p, ROW])
    assert err.sqlstate == "55000" and "no explainer is loaded" in err.diag.message_primary
    assert c.execute("SELECT pgmodels._explain_batch(%s, 0, NULL, %s::jsonb, NULL, NULL, pgmodels._stamp(), true)",
                     [p, f"[{ROW}]"]).fetchone()[0] is None
    # the loader is not PUBLIC's, and the lookup wants a credential made for this statement
    assert sql_error(c, "SELECT pgmodels._explain_load(%s, 0, 0, NULL, NULL, NULL, false)", [p]).sqlstate == "42501"
    assert sql_error(c, "SELECT pgmodels._explain_lookup(%s, 0, %s)", [p, "10:" + "0" * 64]).sqlstate == "42501"
    # a credential is for its statement: one made earlier opens nothing
    old = c.execute("SELECT pgmodels._credential()").fetchone()[0]
    assert sql_error(c, "SELECT pgmodels._explain_lookup(%s, 0, %s)", [p, old]).sqlstate == "42501"
    # with a fresh credential the lookup still checks the explain privilege
    err = sql_error(c, "SELECT pgmodels._explain_lookup(%s, 0, pgmodels._credential())", [p])
    assert err.sqlstate == "42501"


@pytest.mark.parametrize("features,kw,sqlstate,words", [
    (ROW, {"class": "maybe"}, "22023", 'unknown class "maybe"'),
    (ROW, {"top_n": 0}, "22023", "top_n must be at least 1"),
    (ROW, {"top_n": -3}, "22023", "top_n must be at least 1"),
    ('{"id": 1, "tenure": 3}', {}, "22023", "features missing"),
    ('{"id": 1, "tenure": 3, "charges": "NaN", "calls": 2, "contract": "x"}', {}, "22P02", "must be a number"),
    ('{"id": 1, "tenure": 3, "charges": 1e39, "calls": 2, "contract": "x"}', {}, "22003", "single-precision"),
    ('{"id": 1, "tenure": null, "charges": 1, "calls": 2, "contract": "x"}', {}, "22004", "is NULL"),
    ('"just text"', {}, "22023", "jsonb features"),
])
def test_bad_input_is_refused_with_a_sqlstate(conn, make_role, churn, features, kw, sqlstate, words):
    role, c = make_role("explain_bad_input")
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [churn["project"], role])
    args = "".join(f", {k} => %s" for k in kw)
    err = sql_error(c, f"SELECT * FROM explain_prediction(%s, %s::jsonb{args})", [churn["project"], features, *kw.values()])
    assert err.sqlstate == sqlstate and words in err.diag.message_primary + (err.diag.message_detail or "")


def test_projects_and_models_that_cannot_be_explained(conn, make_role, name):
    role, c = make_role("explain_nothing")
    assert sql_error(c, "SELECT * FROM explain_prediction('no_such_project', ARRAY[1, 2])").sqlstate == "42704"
    assert sql_error(c, "SELECT * FROM explain_prediction(987654321::bigint, ARRAY[1, 2])").sqlstate == "42704"
    # an imported model has no explainer until set_reference gives it one
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'classification', '[0, 1]', deploy => true)",
                 [name, linear_classifier()])
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [name, role])
    err = sql_error(c, "SELECT * FROM explain_prediction(%s, ARRAY[1, 2])", [name])
    assert err.sqlstate == "55000" and "has no explainer" in err.diag.message_primary
    assert "imported" in err.diag.message_detail and "set_reference" in err.diag.message_hint


def test_no_deployed_model(conn, make_role, name):
    _table(conn, name, rows=200)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'churned', algorithm => 'linear', "
                 "automatic_deploy => false)", [name, name])
    err = sql_error(conn, "SELECT * FROM explain_prediction(%s, %s::jsonb)", [name, ROW])
    assert err.sqlstate == "55000" and "no deployed model" in err.diag.message_primary


def test_a_row_of_a_type_the_caller_defined_is_read_with_the_callers_rights(conn, make_role, churn):
    """The wrapper turns the row into jsonb as the caller: a cast the caller wrote runs as
    the caller, never as the extension's owner."""
    p = churn["project"]
    role, c = make_role("explain_caster")
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [p, role])
    conn.execute(f"CREATE SCHEMA AUTHORIZATION {role}")   # somewhere of its own to make things
    c.execute(f"SET search_path = {role}, public")
    c.execute("CREATE TABLE seen (who name)")
    c.execute("CREATE TYPE mood AS ENUM ('month-to-month', 'one-year')")
    c.execute("CREATE FUNCTION mood_json(mood) RETURNS json LANGUAGE plpgsql AS "
              "$$BEGIN INSERT INTO seen VALUES (current_user); RETURN to_json($1::text); END$$")
    c.execute("CREATE CAST (mood AS json) WITH FUNCTION mood_json(mood)")
    c.execute("CREATE TABLE evil (id int, tenure int, charges float8, calls int, contract mood)")
    c.execute("INSERT INTO evil VALUES (1, 3, 95, 2, 'month-to-month')")
    rows = c.execute("SELECT e.* FROM evil t, explain_prediction(%s, t) e", [p]).fetchall()
    assert [r[1] for r in rows if r[0] == "contract"] == ["month-to-month"]
    assert c.execute("SELECT DISTINCT who FROM seen").fetchall() == [(role,)]
    c.execute("DROP CAST (mood AS json)")   # casts are not dropped by DROP OWNED


def test_set_reference_gives_an_imported_model_an_approximate_explainer(conn, make_role, name):
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'classification', '[0, 1]', deploy => true)",
                 [name, linear_classifier()])
    conn.execute(f"CREATE TABLE {name}_ref AS SELECT (i % 7) - 3.0 AS a, (i % 5) * 0.5 AS b "
                 "FROM generate_series(1, 200) i")
    conn.execute("SELECT set_reference(%s, %s)", [name, f"{name}_ref"])
    kind, source, method = conn.execute("SELECT kind, source, method FROM pgmodels.explainers WHERE project = %s",
                                        [name]).fetchone()
    assert (kind, source) == ("sampling", "set_reference") and "16 background reference rows" in method
    role, c = make_role("explain_imported")
    conn.execute("SELECT grant_project(%s, %s, 'explain')", [name, role])
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, role])
    rows = c.execute("SELECT * FROM explain_prediction(%s, ARRAY[1.5, -0.5])", [name]).fetchall()
    assert 'probability of "1"' in rows[0][1] and "approximate" in rows[0][1]
    prob = c.execute("SELECT (predict_proba(%s, ARRAY[1.5, -0.5]))[2]", [name]).fetchone()[0]
    assert sum(r[2] for r in rows) == pytest.approx(prob, abs=1e-5)
    # set_reference again: the record is replaced (a new background), still one row
    conn.execute(f"INSERT INTO {name}_ref SELECT 9.0, 9.0 FROM generate_series(1, 400)")
    conn.execute("SELECT set_reference(%s, %s)", [name, f"{name}_ref"])
    assert conn.execute("SELECT count(*) FROM pgmodels.explainers WHERE project = %s", [name]).fetchone()[0] == 1


def test_set_reference_keeps_the_explainer_training_made(conn, name):
    _table(conn, name, rows=200)
    model_id = _train(conn, name, name, "linear")
    conn.execute("SELECT set_reference(%s, %s)", [name, name])
    assert conn.execute("SELECT kind, source FROM pgmodels.explainers WHERE model_id = %s",
                        [model_id]).fetchone() == ("linear", "training")
