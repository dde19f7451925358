"""Safe rollouts in SQL: starting, routing by key, recording, deciding on outcomes, bad
input and who may do what (sql/127_rollouts.sql, 128, 129; python_udfs/pgmodels/rollout/)."""

from __future__ import annotations

import pytest

from dbhelpers import sql_error
from rollouthelpers import share, two_versions


def _start(conn, name, candidate, mode="canary", fraction=0.3, rule=None):
    return conn.execute("SELECT start_rollout(%s, %s::bigint, %s, %s::real, %s::jsonb)",
                        [name, candidate, mode, fraction, rule]).fetchone()[0]


def test_the_key_hash_is_the_documented_one_and_a_canary_share_is_within_one_percent(conn):
    for rollout_id in (1, 7, 123456):
        got = conn.execute("SELECT pgmodels._rollout_share(%s, k::text) FROM generate_series(1, 50) k",
                           [rollout_id]).fetchall()
        assert [g[0] for g in got] == [share(rollout_id, k) for k in range(1, 51)]
        for fraction in (0.01, 0.05, 0.3):
            n = conn.execute("SELECT count(*) FILTER (WHERE pgmodels._rollout_share(%s, k::text) < %s) "
                             "FROM generate_series(1, 100000) k", [rollout_id, fraction]).fetchone()[0]
            # within one percentage point; for 0.3 also within 1 % of it (binomial spread: 0.5 %)
            assert abs(n / 100000 - fraction) < (0.003 if fraction == 0.3 else 0.01), (rollout_id, fraction, n)


def test_a_key_is_answered_by_the_version_rollout_version_names(conn, connect, name):
    champion, candidate = two_versions(conn, name)
    rollout = _start(conn, name, candidate, fraction=0.3)
    rows = conn.execute(
        f"SELECT d.id, predict(%s, ARRAY[d.a, d.b], key => d.id), predict(%s::bigint, ARRAY[d.a, d.b]), "
        f"predict(%s::bigint, ARRAY[d.a, d.b]), v.model_id, v.role FROM {name} d, rollout_version(%s, d.id) v "
        f"WHERE d.id <= 600", [name, champion, candidate, name]).fetchall()
    canary = 0
    for key, answer, by_champion, by_candidate, model_id, role in rows:
        expected = candidate if share(rollout, key) < 0.3 else champion
        assert model_id == expected and role == ("canary" if expected == candidate else
                                                 "control" if share(rollout, key) < 0.6 else "champion")
        assert answer == (by_candidate if expected == candidate else by_champion)
        canary += expected == candidate
    assert 120 < canary < 240
    # the same key gets the same version in every statement and session
    again = connect()
    for key, answer, *_ in rows[:50]:
        assert again.execute(f"SELECT predict(%s, ARRAY[a, b], key => id) FROM {name} WHERE id = %s",
                             [name, key]).fetchone()[0] == answer
    conn.execute("SELECT pgmodels._rollout_flush()")
    recorded = conn.execute("SELECT key, model_id, role FROM pgmodels.rollout_predictions WHERE rollout_id = %s",
                            [rollout]).fetchall()
    # candidate answers and the control group, each with the version that gave it
    for key, model_id, role in recorded:
        s = share(rollout, key)
        assert (role, model_id) == (("canary", candidate) if s < 0.3 else ("champion", champion)) and s < 0.6


def test_a_shadow_records_every_input_once_and_only_the_champion_answers(conn, name):
    champion, candidate = two_versions(conn, name)
    rollout = _start(conn, name, candidate, mode="shadow", fraction=None)
    same = conn.execute(f"SELECT bool_and(predict(%s, ARRAY[a, b], key => id) = predict(%s::bigint, ARRAY[a, b])) "
                        f"FROM {name}", [name, champion]).fetchone()[0]
    assert same
    conn.execute("SELECT 1")  # the next statement writes what the last one left
    conn.execute(f"SELECT predict(%s, ARRAY[a, b]) FROM {name} WHERE id = 1", [name])
    counts = conn.execute("SELECT role, count(*), count(DISTINCT key), min(model_id), max(model_id) "
                          "FROM pgmodels.rollout_predictions WHERE rollout_id = %s AND key IS NOT NULL "
                          "GROUP BY role ORDER BY role", [rollout]).fetchall()
    assert counts == [("shadow", 2000, 2000, candidate, candidate)]  # one row per input, both answers on it
    # the candidate's answers are its own, and the champion's ride beside them
    wrong = conn.execute(f"SELECT count(*) FROM pgmodels.rollout_predictions r JOIN {name} d ON d.id::text = r.key "
                         f"WHERE r.rollout_id = %s AND (r.prediction <> predict(%s::bigint, ARRAY[d.a, d.b]) "
                         f"OR r.champion_prediction <> predict(%s::bigint, ARRAY[d.a, d.b]))",
                         [rollout, candidate, champion]).fetchone()[0]
    assert wrong == 0


def test_promote_and_abort_reach_the_next_statement_of_a_warm_session(conn, connect, name):
    champion, candidate = two_versions(conn, name)
    other = connect()
    differ = conn.execute(f"SELECT array_agg(id) FROM {name} WHERE predict(%s::bigint, ARRAY[a, b]) <> "
                          f"predict(%s::bigint, ARRAY[a, b])", [champion, candidate]).fetchone()[0]
    assert differ, "the two versions must disagree somewhere"
    query = f"SELECT array_agg(predict(%s, ARRAY[a, b], key => id) ORDER BY id) FROM {name} WHERE id = ANY (%s)"
    by = {m: conn.execute(f"SELECT array_agg(predict(%s::bigint, ARRAY[a, b]) ORDER BY id) FROM {name} "
                          "WHERE id = ANY (%s)", [m, differ]).fetchone()[0] for m in (champion, candidate)}
    rollout = _start(conn, name, candidate, fraction=0.5)
    for _ in range(3):
        other.execute(query, [name, differ])  # warm: the decision is kept
    conn.execute("SELECT abort_rollout(%s)", [rollout])
    assert other.execute(query, [name, differ]).fetchone()[0] == by[champion]
    rollout = _start(conn, name, candidate, fraction=0.5)
    other.execute(query, [name, differ])
    assert conn.execute("SELECT promote_rollout(%s)", [rollout]).fetchone()[0] == candidate
    assert other.execute(query, [name, differ]).fetchone()[0] == by[candidate]
    assert conn.execute("SELECT d.strategy, d.model_id FROM pgmodels.deployments d JOIN pgmodels.projects p "
                        "ON p.id = d.project_id WHERE p.name = %s ORDER BY d.id DESC LIMIT 1",
                        [name]).fetchone() == ("rollout", candidate)
    assert conn.execute("SELECT status, ended_at IS NOT NULL FROM pgmodels.rollouts WHERE id = %s",
                        [rollout]).fetchone() == ("promoted", True)


def test_a_candidate_that_fails_never_fails_the_champion(conn, name):
    champion, candidate = two_versions(conn, name, impute_champion=True)
    rollout = _start(conn, name, candidate, fraction=0.5)
    answers = conn.execute(f"SELECT predict(%s, ARRAY[NULL, b]::real[], key => id) FROM {name} WHERE id <= 200",
                           [name]).fetchall()
    assert all(a[0] is not None for a in answers)
    conn.execute("SELECT pgmodels._rollout_flush()")
    errors = conn.execute("SELECT count(*) FILTER (WHERE error IS NOT NULL), count(*) FILTER (WHERE role = 'canary') "
                          "FROM pgmodels.rollout_predictions WHERE rollout_id = %s", [rollout]).fetchone()
    assert errors[0] == errors[1] > 50
    conn.execute(f"CREATE TABLE {name}_truth AS SELECT id, y FROM {name}")
    conn.execute("SELECT register_outcomes(%s, %s, 'id', 'y')", [name, f"{name}_truth"])
    action, automatic, reason, _ = conn.execute("SELECT * FROM evaluate_rollout(%s)", [rollout]).fetchone()
    assert (action, automatic) == ("abort", True) and "max_error_rate" in reason
    assert conn.execute("SELECT status FROM pgmodels.rollouts WHERE id = %s", [rollout]).fetchone()[0] == "aborted"


def test_an_automatic_promotion_on_outcomes_that_arrive_after_the_predictions(conn, connect, name):
    champion, candidate = two_versions(conn, name, bad_champion=True)
    rollout = _start(conn, name, candidate, mode="shadow", fraction=None,
                     rule='{"min_outcomes": 300, "margin": 0.05}')
    listener = connect()
    listener.execute("LISTEN pgmodels_rollout")
    conn.execute(f"SELECT predict(%s, ARRAY[a, b], key => id) FROM {name} WHERE id <= 1000", [name])
    conn.execute("SELECT pgmodels._rollout_flush()")
    conn.execute(f"CREATE TABLE {name}_truth (customer bigint, churned int, at timestamptz)")
    conn.execute("SELECT register_outcomes(%s, %s, 'customer', 'churned', 'at')", [name, f"{name}_truth"])
    action, automatic, reason, _ = conn.execute("SELECT * FROM evaluate_rollout(%s)", [rollout]).fetchone()
    assert action == "wait" and "0 outcomes" in reason
    conn.execute(f"INSERT INTO {name}_truth SELECT id, y, now() FROM {name} WHERE id <= 1000")
    report = conn.execute("SELECT role, model_id, predictions, outcomes, metric, value, ci_low, ci_high, difference, "
                          "difference_low, agreement, errors FROM rollout_report(%s)", [rollout]).fetchall()
    assert [r[:5] for r in report] == [("champion", champion, 1000, 1000, "f1"), ("shadow", candidate, 1000, 1000, "f1")]
    assert report[1][5] > report[0][5] and report[1][6] <= report[1][5] <= report[1][7]
    assert report[1][8] > 0.05 and report[1][9] > 0 and 0 <= report[1][10] <= 1 and report[1][11] == 0
    action, automatic, reason, numbers = conn.execute("SELECT * FROM evaluate_rollout(%s)", [rollout]).fetchone()
    assert (action, automatic) == ("promote", True) and "better" in reason
    assert numbers["versions"][1]["outcomes"] == 1000
    assert conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s AND deployed",
                        [name]).fetchone()[0] == candidate
    notes = list(listener.notifies(timeout=5, stop_after=1))
    assert notes and '"action": "promote"' in notes[0].payload and f'"rollout_id": {rollout}' in notes[0].payload
    history = conn.execute("SELECT action, automatic FROM pgmodels.rollout_decisions WHERE rollout_id = %s "
                           "ORDER BY at", [rollout]).fetchall()
    assert history == [("start", False), ("wait", True), ("promote", True)]


BAD_INPUT = [
    ("SELECT start_rollout('nope', 1, 'shadow')", "42704", 'project "nope" does not exist'),
    ("SELECT start_rollout('{p}', 999999, 'shadow')", "42704", "model 999999 does not exist"),
    ("SELECT start_rollout('{p}', {cand}, 'canary', 0)", "22023", "between 0 and 1"),
    ("SELECT start_rollout('{p}', {cand}, 'canary', 1)", "22023", "between 0 and 1"),
    ("SELECT start_rollout('{p}', {cand}, 'canary')", "22023", "between 0 and 1"),
    ("SELECT start_rollout('{p}', {cand}, 'shadow', 0.5)", "22023", "takes no fraction"),
    ("SELECT start_rollout('{p}', {cand}, 'blue')", "22023", 'unknown rollout mode "blue"'),
    ("SELECT start_rollout('{p}', {champ}, 'shadow')", "22023", "is the deployed version"),
    ("SELECT start_rollout('{p}', {cand}, 'shadow', NULL, '{{\"metric\": \"r2\"}}')", "22023", "does not apply"),
    ("SELECT start_rollout('{p}', {cand}, 'shadow', NULL, '{{\"speed\": 1}}')", "22023", "unknown rollout rule"),
    ("SELECT alter_rollout(999999, 0.2)", "42704", "rollout 999999 does not exist"),
    ("SELECT promote_rollout(999999)", "42704", "rollout 999999 does not exist"),
    ("SELECT register_outcomes('{p}', 'nope_table', 'id', 'y')", "42P01", 'relation "nope_table" does not exist'),
    ("SELECT register_outcomes('{p}', '{p}', 'customer', 'y')", "42703", 'column "customer" does not exist'),
    ("SELECT register_outcomes('{p}', '{p}', 'id', 'label')", "42703", 'column "label" does not exist'),
]


def test_bad_input_is_a_clear_error_and_creates_nothing(conn, name):
    champion, candidate = two_versions(conn, name, rows=300)
    for statement, sqlstate, words in BAD_INPUT:
        e = sql_error(conn, statement.format(p=name, cand=candidate, champ=champion))
        assert e.sqlstate == sqlstate and words in str(e), (statement, str(e))
        assert "Traceback" not in str(e)
    assert conn.execute("SELECT count(*) FROM pgmodels.rollout_runs").fetchone()[0] == \
        conn.execute("SELECT count(*) FROM pgmodels.rollout_history WHERE action = 'start'").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM pgmodels.rollouts WHERE project = %s", [name]).fetchone()[0] == 0


def test_a_second_rollout_a_model_of_another_project_and_an_ended_rollout_are_refused(conn, name):
    champion, candidate = two_versions(conn, name, rows=300)
    other_champion, _ = two_versions(conn, name + "_o", rows=300)
    e = sql_error(conn, "SELECT start_rollout(%s, %s::bigint, 'shadow')", [name, other_champion])
    assert e.sqlstate == "22023" and "belongs to another project" in str(e)
    rollout = _start(conn, name, candidate, mode="shadow", fraction=None)
    e = sql_error(conn, "SELECT start_rollout(%s, %s::bigint, 'canary', 0.1)", [name, candidate])
    assert e.sqlstate == "55006" and "already has an active rollout" in str(e) and e.diag.message_hint
    conn.execute("SELECT abort_rollout(%s)", [rollout])
    e = sql_error(conn, "SELECT promote_rollout(%s)", [rollout])
    assert e.sqlstate == "55000" and "is aborted, it cannot be promoted" in str(e)
    e = sql_error(conn, "SELECT alter_rollout(%s, 0.2)", [rollout])
    assert e.sqlstate == "55000"
    assert conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s AND deployed",
                        [name]).fetchone()[0] == champion


def test_only_the_owner_runs_a_rollout_and_predict_roles_never_see_the_candidate(conn, name, make_role):
    champion, candidate = two_versions(conn, name, rows=500)
    user, uc = make_role(name + "_u")
    stranger, sc = make_role(name + "_s")
    conn.execute(f"GRANT SELECT ON {name} TO {user}, {stranger}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, user])
    rollout = _start(conn, name, candidate, fraction=0.5)
    for statement in (f"SELECT start_rollout('{name}', {candidate}, 'shadow')", f"SELECT alter_rollout({rollout}, 0.9)",
                      f"SELECT promote_rollout({rollout})", f"SELECT abort_rollout({rollout})",
                      f"SELECT register_outcomes('{name}', '{name}', 'id', 'y')",
                      f"SELECT * FROM rollout_report({rollout})", f"SELECT * FROM evaluate_rollout({rollout})"):
        e = sql_error(uc, statement)
        assert e.sqlstate == "42501" and "must be owner" in str(e), statement
    # served by the assigned version, without learning its artifact or the records
    got = uc.execute(f"SELECT count(predict('{name}', ARRAY[a, b], key => id)) FROM {name}").fetchone()[0]
    assert got == 500
    assert uc.execute(f"SELECT role FROM rollout_version('{name}', 3)").fetchone()[0] in ("canary", "control", "champion")
    for statement in ("SELECT * FROM pgmodels.rollout_predictions", "SELECT * FROM pgmodels.rollout_runs",
                      f"SELECT export_onnx('{name}', {candidate})", "SELECT pgmodels._load('', 1, 0, NULL, false, NULL, NULL, NULL)",
                      f"SELECT pgmodels._rollout_evidence(pgmodels._credential(), {rollout})"):
        e = sql_error(uc, statement)
        assert e.sqlstate == "42501", (statement, str(e))
    # the view shows the rollout to roles that may use the project, and to no one else
    assert uc.execute("SELECT candidate_id FROM pgmodels.rollouts").fetchall() == [(candidate,)]
    assert sc.execute("SELECT count(*) FROM pgmodels.rollouts").fetchone()[0] == 0
    e = sql_error(sc, f"SELECT * FROM rollout_version('{name}', 3)")
    assert e.sqlstate == "42501"
    e = sql_error(sc, f"SELECT predict('{name}', ARRAY[a, b], key => id) FROM {name}")
    assert e.sqlstate == "42501"
    # the writer takes nothing from its caller
    assert uc.execute("SELECT pgmodels._rollout_flush()").fetchone()[0] >= 0
    forged = conn.execute("SELECT count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s AND key !~ '^[0-9]+$'",
                          [rollout]).fetchone()[0]
    assert forged == 0


def test_a_deployment_that_is_not_the_rollout_s_own_ends_it(conn, name):
    champion, candidate = two_versions(conn, name, rows=300)
    rollout = _start(conn, name, candidate, fraction=0.2)
    conn.execute("SELECT deploy(%s::bigint)", [candidate])  # by hand, not by promote_rollout
    row = conn.execute("SELECT status, last_decision, last_reason FROM pgmodels.rollouts WHERE id = %s",
                       [rollout]).fetchone()
    assert row[:2] == ("aborted", "abort") and f"model {candidate} was deployed (model_id)" in row[2]
    assert conn.execute("SELECT action FROM pgmodels.rollout_decisions WHERE rollout_id = %s ORDER BY at DESC LIMIT 1",
                        [rollout]).fetchone()[0] == "abort"
    # and a new rollout may start
    conn.execute("SELECT start_rollout(%s, %s::bigint, 'shadow')", [name, champion])


def test_outcomes_run_only_their_owner_s_code_and_no_planted_operator(conn, name, make_role):
    """The hostile review's findings: the outcomes are read as the role that registered
    them and only as it, with search_path pg_catalog (an operator a role put in public for
    a pair of types pg_catalog compares by coercion takes no part), a key that does not
    convert to the key column's type breaks nothing, a key too long is refused."""
    champion, candidate = two_versions(conn, name, rows=400)
    bob, bc = make_role(name + "_bob")
    eve, ec = make_role(name + "_eve")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {eve}")
    conn.execute(f"GRANT SELECT ON {name} TO {bob}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, bob])
    ec.execute(f"CREATE FUNCTION public.{eve}_eq(varchar, varchar) RETURNS boolean LANGUAGE plpgsql AS "
               "$$ BEGIN RAISE EXCEPTION 'planted operator ran as %', current_user; END $$")
    ec.execute(f"CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar, FUNCTION = public.{eve}_eq)")
    rollout = _start(conn, name, candidate, mode="shadow", fraction=None)
    conn.execute(f"SELECT count(predict(%s, ARRAY[a, b], key => id::varchar)) FROM {name}", [name])
    bc.execute(f"SELECT count(predict('{name}', ARRAY[a, b], key => 'not-a-number')) FROM {name} WHERE id < 5")
    e = sql_error(bc, f"SELECT predict('{name}', ARRAY[1, 1]::real[], key => repeat('x', 1001))")
    assert e.sqlstate == "22001" and "routing key is too long" in str(e)
    bc.execute("SELECT pgmodels._rollout_flush()")
    conn.execute("SELECT pgmodels._rollout_flush()")
    conn.execute(f"CREATE TABLE {name}_truth AS SELECT id::varchar AS id, y FROM {name}")
    conn.execute("SELECT register_outcomes(%s, %s, 'id', 'y')", [name, f"{name}_truth"])
    report = conn.execute("SELECT role, outcomes FROM rollout_report(%s)", [rollout]).fetchall()
    assert report == [("champion", 400), ("shadow", 400)]
    # another owner's outcomes: a superuser reads them only as that role
    other = name + "_o"
    conn.execute(f"CREATE SCHEMA {other} AUTHORIZATION {bob}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, "
                 f"text, boolean, jsonb, boolean) TO {bob}")
    bc.execute(f"CREATE TABLE {other}.t AS SELECT i AS id, random()::real AS a, random()::real AS b, "
               "(random() > 0.5)::int AS y FROM generate_series(1, 300) i")
    bc.execute(f"CREATE VIEW {other}.v AS SELECT a, b, y FROM {other}.t")
    bc.execute(f"SELECT * FROM train('{other}', 'classification', '{other}.v', 'y', algorithm => 'linear')")
    second = bc.execute(f"SELECT model_id FROM train('{other}', 'classification', '{other}.v', 'y', "
                        "algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 3}', "
                        "automatic_deploy => false)").fetchone()[0]
    theirs = bc.execute(f"SELECT start_rollout('{other}', {second}, 'shadow')").fetchone()[0]
    bc.execute(f"SELECT register_outcomes('{other}', '{other}.t', 'id', 'y')")
    e = sql_error(conn, f"SELECT * FROM rollout_report({theirs})")
    assert e.sqlstate == "42501" and "are read as role" in str(e)
    e = sql_error(conn, f"SELECT register_outcomes('{other}', '{other}.t', 'id', 'y')")
    assert e.sqlstate == "42501" and "owner role itself" in str(e)
    conn.execute(f"SET ROLE {bob}")
    try:
        assert conn.execute(f"SELECT count(*) FROM rollout_report({theirs})").fetchone()[0] == 2
    finally:
        conn.execute("RESET ROLE")
    # the outcome relation gone: a clear error
    bc.execute(f"DROP TABLE {other}.t CASCADE")
    e = sql_error(bc, f"SELECT * FROM evaluate_rollout({theirs})")
    assert e.sqlstate == "42P01" and "no longer exists" in str(e)
    e = sql_error(conn, f"SELECT alter_rollout({rollout}, rule => '{{\"retention_days\": 1e300}}')")
    assert e.sqlstate == "22023"
    conn.execute(f"DROP OPERATOR public.= (varchar, varchar)")
