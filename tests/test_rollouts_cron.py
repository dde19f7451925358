"""A rollout decided by the real pg_cron of the embedded cluster (database "pgmodels"): the
evaluation job runs as the role that started the rollout, reads the outcomes with its
rights, promotes on outcomes that arrived after the predictions and notifies."""

from __future__ import annotations

import json
import time

import psycopg

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"


def test_pg_cron_promotes_a_rollout_on_its_outcomes(cron_db, cluster, name):
    c, rolname, role = cron_db
    project = f"{name}.{name}"
    c.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    role.execute(f"CREATE TABLE {name}.rows AS SELECT i AS id, (random() * 2)::real AS a, (random() * 2)::real AS b, "
                 "0 AS y FROM generate_series(1, 1500) i")
    role.execute(f"UPDATE {name}.rows SET y = (a + b > 2)::int")
    # the deployed version learnt noise; the candidate learnt the rule
    role.execute(f"CREATE VIEW {name}.noise AS SELECT a, b, (random() > 0.5)::int AS y FROM {name}.rows")
    role.execute(f"CREATE VIEW {name}.rule AS SELECT a, b, y FROM {name}.rows")
    role.execute(f"SELECT * FROM train(%s, 'classification', '{name}.noise', 'y', algorithm => 'linear')", [project])
    candidate = role.execute(f"SELECT model_id FROM train(%s, 'classification', '{name}.rule', 'y', "
                             "algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 5}', "
                             "automatic_deploy => false)", [project]).fetchone()[0]
    rollout = role.execute("SELECT start_rollout(%s, %s::bigint, 'shadow', NULL, "
                           "'{\"min_outcomes\": 200, \"margin\": 0.05}')", [project, candidate]).fetchone()[0]
    try:
        entry = c.execute("SELECT j.username, j.command, j.schedule FROM cron.job j JOIN pgmodels.rollout_runs r "
                          "ON r.cron_job_id = j.jobid WHERE r.id = %s", [rollout]).fetchone()
        assert entry[0] == rolname and f"evaluate_rollout({rollout}::bigint)" in entry[1] and entry[2] == "* * * * *"
        role.execute(f"SELECT count(predict(%s, ARRAY[a, b], key => id)) FROM {name}.rows WHERE id <= 1000", [project])
        role.execute("SELECT pgmodels._rollout_flush()")
        listener = psycopg.connect(cluster.url("pgmodels"), autocommit=True)
        listener.execute("LISTEN pgmodels_rollout")
        # the outcomes arrive after the predictions, in the role's own table
        role.execute(f"CREATE TABLE {name}.outcomes (customer integer, churned integer, at timestamptz)")
        role.execute("SELECT register_outcomes(%s, %s, 'customer', 'churned', 'at')", [project, f"{name}.outcomes"])
        role.execute(f"INSERT INTO {name}.outcomes SELECT id, y, now() FROM {name}.rows WHERE id <= 1000")
        deadline = time.monotonic() + 130
        status = None
        while time.monotonic() < deadline and status != "promoted":
            status = c.execute("SELECT status FROM pgmodels.rollout_runs WHERE id = %s", [rollout]).fetchone()[0]
            time.sleep(1)
        assert status == "promoted", "pg_cron did not promote the rollout within two minutes"
        decision = c.execute("SELECT action, automatic, by_role, reason FROM pgmodels.rollout_history "
                             "WHERE rollout_id = %s ORDER BY id DESC LIMIT 1", [rollout]).fetchone()
        assert decision[:3] == ("promote", True, rolname) and "better" in decision[3]
        notes = list(listener.notifies(timeout=5, stop_after=1))
        assert notes and json.loads(notes[0].payload)["action"] == "promote"
        listener.close()
        assert c.execute("SELECT d.model_id, d.strategy FROM pgmodels.deployments d JOIN pgmodels.projects p "
                         "ON p.id = d.project_id WHERE p.name = %s ORDER BY d.id DESC LIMIT 1",
                         [project]).fetchone() == (candidate, "rollout")
        # the job went with the rollout
        assert c.execute("SELECT count(*) FROM cron.job WHERE command LIKE %s",
                         [f"%evaluate_rollout({rollout}::%"]).fetchone() == (0,)
    finally:
        c.execute("SELECT pgmodels._cron_unschedule(cron_job_id) FROM pgmodels.rollout_runs WHERE id = %s", [rollout])
