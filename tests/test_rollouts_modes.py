"""Rollouts in batch jobs and streams (issue #27): a canary assigns each key the version
rollout_version() names, the same in a batch job's output (by its key column) and a
stream's (by the event key); a shadow stores the champion's answers and records both
versions' once per scored input; an abort puts every key back on the champion. SQL's
predict(..., key => ...) and the rollout catalog are in test_rollouts.py."""

from __future__ import annotations

from batchhelpers import make_project
from streamhelpers import drain, insert_rides, ride_stream
from lifecycle_data import make_regression


def two_versions(conn, name: str, task: str, relation: str, y: str) -> tuple[int, int]:
    """The project's deployed linear model and an undeployed random forest beside it."""
    conn.execute("SELECT * FROM train(%s, %s, %s, %s, algorithm => 'linear')", [name, task, relation, y])
    conn.execute("SELECT * FROM train(%s, %s, %s, %s, algorithm => 'random_forest', "
                 "hyperparams => '{\"n_estimators\": 5}', automatic_deploy => false)", [name, task, relation, y])
    ids = [r[0] for r in conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s ORDER BY model_id",
                                      [name])]
    deployed = conn.execute("SELECT model_id FROM pgmodels.overview WHERE project = %s AND deployed",
                            [name]).fetchone()[0]
    assert len(ids) == 2 and deployed == ids[0]
    return ids[0], ids[1]


def batch_project(conn, name: str, rows: int = 1000) -> tuple[str, int, int]:
    src = make_project(conn, name + "_seed", rows=rows)  # the keyed source (its own project is not used)
    champion, candidate = two_versions(conn, name, "classification", name + "_seed_train", "y")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 300)", [name, name, src, name + "_out"])
    return src, champion, candidate


def mismatches(conn, project: str, output: str, key: str) -> tuple[int, int]:
    """(rows whose model isn't the one rollout_version() names for their key, rows)."""
    return conn.execute(f"""
        SELECT count(*) FILTER (WHERE (o.model_id, o.model_version) IS DISTINCT FROM
                                      (SELECT (v.model_id, v.version) FROM rollout_version(%s, o.{key}) v)),
               count(*)
          FROM {output} o""", [project]).fetchone()


def by_model(conn, output: str) -> dict:
    return dict(conn.execute(f"SELECT model_id, count(*) FROM {output} GROUP BY model_id").fetchall())


def test_a_canary_batch_job_answers_each_key_by_its_assigned_version(conn, name):
    src, champion, candidate = batch_project(conn, name)
    rollout = conn.execute("SELECT start_rollout(%s, %s, 'canary', 0.3)", [name, candidate]).fetchone()[0]
    conn.execute("CALL run_batch_job(%s)", [name])
    assert mismatches(conn, name, name + "_out", "id") == (0, 1000)
    counts = by_model(conn, name + "_out")
    assert set(counts) == {champion, candidate} and 230 < counts[candidate] < 370  # ~ 0.3 of 1000 keys
    # the version numbers come with the ids
    versions = dict(conn.execute("SELECT model_id, version FROM pgmodels.overview WHERE project = %s", [name]))
    assert conn.execute(f"SELECT count(*) FROM {name}_out WHERE model_version <> ALL (%s)",
                        [list(versions.values())]).fetchone()[0] == 0
    assert dict(conn.execute(f"SELECT model_id, min(model_version) FROM {name}_out GROUP BY 1").fetchall()) == versions
    # the canary's answers and the control group's (the champion's, on keys in [0.3, 0.6)) are recorded by key
    recorded = dict(conn.execute("SELECT role, count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s "
                                 "AND source = 'batch' GROUP BY role", [rollout]).fetchall())
    control = conn.execute(f"SELECT count(*) FROM {src} s WHERE (rollout_version(%s, s.id)).role = 'control'",
                           [name]).fetchone()[0]
    assert recorded == {"canary": counts[candidate], "champion": control}
    # a second run answers every key as the first did
    first = conn.execute(f"SELECT id, model_id FROM {name}_out ORDER BY id").fetchall()
    conn.execute("CALL run_batch_job(%s)", [name])
    assert conn.execute(f"SELECT id, model_id FROM {name}_out ORDER BY id").fetchall() == first


def test_a_shadow_batch_job_stores_the_champion_and_records_both(conn, name):
    src, champion, candidate = batch_project(conn, name, rows=700)
    rollout = conn.execute("SELECT start_rollout(%s, %s, 'shadow')", [name, candidate]).fetchone()[0]
    conn.execute("CALL run_batch_job(%s)", [name])
    assert by_model(conn, name + "_out") == {champion: 700}
    # one row per scored row, by key, with the shadow's and the champion's answers
    per_key = conn.execute("""
        SELECT count(DISTINCT key), count(*) FILTER (WHERE role = 'shadow' AND model_id = %s),
               count(*) FILTER (WHERE champion_prediction IS NOT NULL), count(*),
               count(*) FILTER (WHERE source <> 'batch')
          FROM pgmodels.rollout_predictions WHERE rollout_id = %s""", [candidate, rollout]).fetchone()
    assert per_key == (700, 700, 700, 700, 0)  # one row per input, the champion's answer beside the candidate's
    assert conn.execute("""SELECT count(*) FROM (SELECT key FROM pgmodels.rollout_predictions WHERE rollout_id = %s
                                                  GROUP BY key HAVING count(*) <> 1) k""", [rollout]).fetchone()[0] == 0
    assert conn.execute(f"""SELECT count(*) FROM {src} s WHERE NOT EXISTS (SELECT 1 FROM pgmodels.rollout_predictions p
                                        WHERE p.rollout_id = %s AND p.key = s.id::text)""", [rollout]).fetchone()[0] == 0
    # the stored answers are the champion's (predict() here records its own answers, source sql)
    assert conn.execute(f"""SELECT count(*) FILTER (WHERE o.prediction IS DISTINCT FROM
                                                    predict(%s, ARRAY[s.a, s.b, s.c, s.d])), count(*)
                              FROM {src} s JOIN {name}_out o USING (id)""", [name]).fetchone() == (0, 700)


def test_an_aborted_rollout_gives_every_key_back_to_the_champion(conn, name):
    src, champion, candidate = batch_project(conn, name, rows=600)
    rollout = conn.execute("SELECT start_rollout(%s, %s, 'canary', 0.3)", [name, candidate]).fetchone()[0]
    conn.execute("CALL run_batch_job(%s)", [name])
    assert candidate in by_model(conn, name + "_out")
    assert conn.execute("SELECT abort_rollout(%s)", [rollout]).fetchone()[0] == champion
    recorded = conn.execute("SELECT count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s",
                            [rollout]).fetchone()[0]
    conn.execute("CALL run_batch_job(%s)", [name])
    assert by_model(conn, name + "_out") == {champion: 600}
    assert mismatches(conn, name, name + "_out", "id") == (0, 600)
    assert conn.execute("SELECT count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s",
                        [rollout]).fetchone()[0] == recorded


def test_an_incremental_job_scores_everything_again_when_the_routing_changes(conn, name):
    make_project(conn, name, rows=500)  # the source (its own project is not used)
    champion, candidate = two_versions(conn, name + "_p", "classification", name + "_train", "y")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, incremental_column => 'updated_at', "
                 "chunk_rows => 200)", [name, name + "_p", name + "_src", name + "_out"])

    def modes():
        return [r[0] for r in conn.execute("SELECT mode FROM pgmodels.batch_runs WHERE job = %s AND "
                                           "status = 'succeeded' ORDER BY run_id", [name])]
    conn.execute("CALL run_batch_job(%s)", [name])
    conn.execute("CALL run_batch_job(%s)", [name])
    assert modes() == ["full", "incremental"] and by_model(conn, name + "_out") == {champion: 500}
    rollout = conn.execute("SELECT start_rollout(%s, %s, 'canary', 0.3)", [name + "_p", candidate]).fetchone()[0]
    conn.execute("CALL run_batch_job(%s)", [name])
    conn.execute("CALL run_batch_job(%s)", [name])
    assert modes()[2:] == ["full", "incremental"]
    assert mismatches(conn, name + "_p", name + "_out", "id") == (0, 500)
    assert candidate in by_model(conn, name + "_out")
    conn.execute("SELECT abort_rollout(%s)", [rollout])
    conn.execute("CALL run_batch_job(%s)", [name])
    assert modes()[4:] == ["full"] and by_model(conn, name + "_out") == {champion: 500}


def stream_project(conn, name: str) -> tuple[str, int, int]:
    """A regression project (features a, b) with two versions and a consumer of a ride stream."""
    make_regression(conn, name + "_train", 300)
    champion, candidate = two_versions(conn, name, "regression", name + "_train", "y")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name])
    return table, champion, candidate


def test_a_canary_stream_answers_each_event_key_by_its_assigned_version(conn, name):
    table, champion, candidate = stream_project(conn, name)
    rollout = conn.execute("SELECT start_rollout(%s, %s, 'canary', 0.3)", [name, candidate]).fetchone()[0]
    insert_rides(conn, table, 800)
    assert drain(conn, name + "_c", max_events=250) == 800
    out = name + "_c_predictions"
    assert mismatches(conn, name, out, "key") == (0, 800)
    counts = by_model(conn, out)
    assert set(counts) == {champion, candidate} and 180 < counts[candidate] < 300
    # the candidate's rows carry its answers: the forest's, not the linear model's exact ones
    exact = conn.execute(f"""SELECT count(*) FILTER (WHERE abs(o.prediction - (3 * r.a - 2 * r.b + 1)) < 0.01)
                               FROM {out} o JOIN {table} r ON r.ride_id = o.key
                              WHERE o.model_id = %s""", [champion]).fetchone()[0]
    assert exact == counts[champion]
    recorded = dict(conn.execute("SELECT role, count(*) FROM pgmodels.rollout_predictions WHERE rollout_id = %s "
                                 "AND source = 'stream' GROUP BY role", [rollout]).fetchall())
    assert recorded["canary"] == counts[candidate]
    # the same key is answered by the same version in a batch job over the same rides
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'ride_id', %s)", [name + "_job", name, table, name + "_out"])
    conn.execute("CALL run_batch_job(%s)", [name + "_job"])
    assert conn.execute(f"""SELECT count(*) FILTER (WHERE b.model_id <> s.model_id), count(*)
                              FROM {name}_out b JOIN {out} s ON s.key = b.ride_id""").fetchone() == (0, 800)


def test_a_shadow_stream_stores_the_champion_and_records_both(conn, name):
    table, champion, candidate = stream_project(conn, name)
    rollout = conn.execute("SELECT start_rollout(%s, %s, 'shadow')", [name, candidate]).fetchone()[0]
    insert_rides(conn, table, 400)
    assert drain(conn, name + "_c", max_events=150) == 400
    out = name + "_c_predictions"
    assert by_model(conn, out) == {champion: 400}
    per_key = conn.execute("""
        SELECT count(DISTINCT key), count(*) FILTER (WHERE role = 'shadow' AND model_id = %s),
               count(*) FILTER (WHERE champion_prediction IS NOT NULL), count(*),
               count(*) FILTER (WHERE source <> 'stream')
          FROM pgmodels.rollout_predictions WHERE rollout_id = %s""", [candidate, rollout]).fetchone()
    assert per_key == (400, 400, 400, 400, 0)  # one row per input, the champion's answer beside the candidate's
    assert conn.execute(f"""SELECT count(*) FROM {out} o WHERE NOT EXISTS (SELECT 1 FROM pgmodels.rollout_predictions p
                              WHERE p.rollout_id = %s AND p.key = o.key::text AND p.role = 'shadow'
                                AND p.champion_prediction = o.prediction)""", [rollout]).fetchone()[0] == 0
