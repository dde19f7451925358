"""Batch jobs: every bad input is a clear error that leaves nothing behind, and a job
has exactly its owner's rights. The attacker is a LOGIN-only role."""

from __future__ import annotations

import pytest

from batchhelpers import CREATE, make_project, runs
from dbhelpers import sql_error
from lifecycle_data import make_regression


def nothing_left(conn, job: str, output: str) -> bool:
    return conn.execute("SELECT count(*) FROM pgmodels.batch_job WHERE name = %s", [job]).fetchone() == (0,) and \
        conn.execute("SELECT to_regclass(%s)", [output]).fetchone() == (None,)


@pytest.fixture
def setup(conn, name):
    src = make_project(conn, name, rows=40)
    conn.execute(f"CREATE TABLE {name}_dup AS SELECT * FROM {src} UNION ALL SELECT * FROM {src} WHERE id = 3")
    conn.execute(f"CREATE TABLE {name}_nul AS SELECT * FROM {src}")
    conn.execute(f"UPDATE {name}_nul SET id = NULL WHERE id IN (4, 5)")
    conn.execute(f"CREATE TABLE {name}_txt AS SELECT *, 'x'::text AS version_tag FROM {src}")
    conn.execute(f"CREATE TABLE {name}_shape (id integer PRIMARY KEY, prediction text)")
    conn.execute(f"CREATE VIEW {name}_view AS SELECT id FROM {src}")
    make_regression(conn, name + "_reg")
    conn.execute("SELECT * FROM train(%s, 'regression', %s, 'y')", [name + "_r", name + "_reg"])
    return src


BAD = [
    # (what, arguments after the job name, sqlstate, a word of the message)
    ("unknown project", "'nope', '{src}', 'id', '{out}'", "42704", "project"),
    ("unknown relation", "'{p}', 'no_such_table', 'id', '{out}'", "42P01", "no_such_table"),
    ("a key that is not unique", "'{p}', '{p}_dup', 'id', '{out}'", "23505", "not unique"),
    ("a key with NULLs", "'{p}', '{p}_nul', 'id', '{out}'", "23502", "NULLs"),
    ("an unknown key column", "'{p}', '{src}', 'nope', '{out}'", "42703", "nope"),
    ("a missing feature column", "'{p}', '{p}_view', 'id', '{out}'", "42703", '"a"'),
    ("an incremental column of text", "'{p}', '{p}_txt', 'id', '{out}', incremental_column => 'version_tag'",
     "42804", "version_tag"),
    ("an unknown incremental column", "'{p}', '{src}', 'id', '{out}', incremental_column => 'nope'", "42703", "nope"),
    ("an output table of another shape", "'{p}', '{src}', 'id', '{p}_shape'", "42804", "shape"),
    ("an output that is a view", "'{p}', '{src}', 'id', '{p}_view'", "42809", "not a table"),
    ("the source as output", "'{p}', '{src}', 'id', '{src}'", "22023", "source"),
    ("unknown outputs", "'{p}', '{src}', 'id', '{out}', outputs => ARRAY['score']", "22023", "outputs"),
    ("no outputs", "'{p}', '{src}', 'id', '{out}', outputs => '{{}}'", "22023", "outputs"),
    ("probabilities of a regression", "'{p}_r', '{p}_reg', 'a', '{out}', outputs => ARRAY['probabilities']",
     "0A000", "regression"),
    ("no chunk", "'{p}', '{src}', 'id', '{out}', chunk_rows => 0", "22023", "chunk_rows"),
    ("negative retries", "'{p}', '{src}', 'id', '{out}', max_retries => -1", "22023", "max_retries"),
    ("NULL key column", "'{p}', '{src}', NULL, '{out}'", "22004", "key_column"),
    ("a schedule where pg_cron is not", "'{p}', '{src}', 'id', '{out}', schedule => '* * * * *'", "55000", "pg_cron"),
    ("a malformed output name", "'{p}', '{src}', 'id', 'a.b.c.d'", "22023", "relation name"),
]


@pytest.mark.parametrize("what,args,sqlstate,word", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error_and_creates_nothing(conn, setup, name, what, args, sqlstate, word):
    out = name + "_out"
    err = sql_error(conn, f"SELECT create_batch_job('{name}', " + args.format(p=name, src=setup, out=out) + ")")
    assert err.sqlstate == sqlstate, err.diag.message_primary
    message = err.diag.message_primary
    assert word in message and message[0].islower() and not message.endswith(".") and "Traceback" not in message
    assert nothing_left(conn, name, out)


def test_the_other_database_error_says_how_to_schedule(conn, setup, name):
    err = sql_error(conn, "SELECT create_batch_job(%s, %s, %s, 'id', %s, schedule => '*/5 * * * *')",
                    [name, name, setup, name + "_out"])
    assert err.sqlstate == "55000" and "cron.schedule_in_database(" in err.diag.message_hint
    assert "'*/5 * * * *'" in err.diag.message_hint and conn.info.dbname in err.diag.message_hint


def test_names_taken(conn, setup, name):
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, setup, name + "_out"])
    err = sql_error(conn, "SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, setup, name + "_o2"])
    assert err.sqlstate == "42710" and "already exists" in err.diag.message_primary
    assert conn.execute("SELECT to_regclass(%s)", [name + "_o2"]).fetchone() == (None,)
    err = sql_error(conn, "SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name + "2", name, setup, name + "_out"])
    assert err.sqlstate == "42710" and "already the output" in err.diag.message_primary
    err = sql_error(conn, "SELECT create_batch_job('bad name!', %s, %s, 'id', %s)", [name, setup, name + "_o3"])
    assert err.sqlstate == "22023" and "job name" in err.diag.message_primary


def test_creating_a_job_needs_the_grant_the_read_access_and_predict(conn, make_role, name):
    src = make_project(conn, name, rows=30)
    rolname, mallory = make_role(name + "_m")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {rolname}")
    call = "SELECT create_batch_job(%s, %s, %s, 'id', %s)"
    args = [name, name, src, name + "_mout"]
    err = sql_error(mallory, call, args)
    assert err.sqlstate == "42501" and "create_batch_job" in err.diag.message_primary
    # the cores refuse too, whatever they are handed
    assert mallory.execute("SELECT pgmodels._create_batch_job(%s, %s, %s, 'id', %s, NULL, NULL, "
                           "ARRAY['prediction'], 10, 0, '1 s', '1 day')", args).fetchone() == (None,)
    err = sql_error(mallory, "SELECT pgmodels._batch_create(pgmodels._credential(), %s, %s, %s::regclass, 'id', "
                             "%s::regclass, NULL, ARRAY['prediction'], 10, NULL, 0, '1 s', '1 day')",
                    [name, name, src, src])
    assert err.sqlstate == "42501"
    err = sql_error(mallory, "SELECT pgmodels._batch_create('10:' || repeat('0', 64), %s, %s, 1, 'id', 1, NULL, "
                             "ARRAY['prediction'], 10, NULL, 0, '1 s', '1 day')", [name, name])
    assert err.sqlstate == "42501" and "credential" in err.diag.message_primary
    assert nothing_left(conn, name, name + "_mout")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE} TO {rolname}")
    err = sql_error(mallory, call, args)
    assert err.sqlstate == "42501" and "project" in err.diag.message_primary  # no predict grant
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, rolname])
    err = sql_error(mallory, call, args)
    assert err.sqlstate == "42501" and src in err.diag.message_primary  # no SELECT on the source
    conn.execute(f"GRANT SELECT (id, a, b) ON {src} TO {rolname}")
    err = sql_error(mallory, call, args)
    assert err.sqlstate == "42501" and '"c", "d"' in err.diag.message_detail
    # another role's table as output, even of the right shape
    conn.execute(f"CREATE TABLE {name}_theirs (id integer PRIMARY KEY, prediction real, model_id bigint, "
                 "model_version integer, scored_at timestamptz, run_id bigint)")
    conn.execute(f"GRANT SELECT ON {src} TO {rolname}")
    err = sql_error(mallory, call, [name, name, src, name + "_theirs"])
    assert err.sqlstate == "42501" and "owner" in err.diag.message_primary
    assert nothing_left(conn, name, name + "_mout")
    assert mallory.execute(call, args).fetchone()[0] > 0
    assert mallory.execute("SELECT tableowner FROM pg_tables WHERE tablename = %s",
                           [name + "_mout"]).fetchone() == (rolname,)


def test_a_job_runs_with_its_owners_rights_and_others_cannot_touch_it(conn, make_role, name):
    src = make_project(conn, name, rows=30)
    alice_role, alice = make_role(name + "_a")
    mallory_role, mallory = make_role(name + "_m")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {alice_role}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE} TO {alice_role}, {mallory_role}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, alice_role])
    conn.execute(f"GRANT SELECT ON {src} TO {alice_role}")
    alice.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [name, name, src, name + "_out"])
    alice.execute("CALL run_batch_job(%s)", [name])
    assert runs(alice, name)[-1]["status"] == "succeeded"
    # others neither see, run, alter nor drop it, nor write its records
    assert runs(mallory, name) == []
    assert mallory.execute("SELECT count(*) FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone() == (0,)
    for statement in ("CALL run_batch_job(%s)", "SELECT drop_batch_job(%s)"):
        assert sql_error(mallory, statement, [name]).sqlstate == "42501"
    assert sql_error(mallory, "SELECT alter_batch_job(%s, chunk_rows => 1)", [name]).sqlstate == "42501"
    run_id = runs(alice, name)[-1]["run_id"]
    err = sql_error(mallory, "SELECT pgmodels._batch_run_end(pgmodels._credential(), %s, 'failed', 0, 'x', 'x', "
                             "NULL, NULL)", [run_id])
    assert err.sqlstate == "55000"
    # nor claim it, which would make its runs skip (an advisory lock would not either)
    err = sql_error(mallory, "SELECT pgmodels._batch_run_begin(pgmodels._credential(), %s, 'claim', NULL, NULL, "
                             "1, 'x', NULL, NULL, NULL, NULL, NULL, NULL)", [name])
    assert err.sqlstate == "42501"
    job_id = alice.execute("SELECT job_id FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone()[0]
    mallory.execute("SELECT pg_advisory_lock(k, %s::integer) FROM (VALUES (0), (1885824365)) v(k)", [job_id])
    alice.execute("CALL run_batch_job(%s)", [name])
    assert runs(alice, name)[-1]["status"] == "succeeded"
    err = sql_error(mallory, "SELECT pgmodels._batch_run_begin(pgmodels._credential(), %s, 'running', 'full', NULL, "
                             "1, 'x', NULL, NULL, NULL, NULL, NULL, NULL)", [name])
    assert err.sqlstate == "42501"
    for table in ("pgmodels.batch_job", "pgmodels.batch_run"):
        assert sql_error(mallory, f"SELECT * FROM {table}").sqlstate == "42501"
    # alice loses read access: her job fails, at once (no retry mends a privilege)
    conn.execute(f"REVOKE SELECT ON {src} FROM {alice_role}")
    err = sql_error(alice, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "42501"
    last = runs(alice, name)[-1]
    assert (last["status"], last["attempt"], last["error_sqlstate"]) == ("failed", 1, "42501")
    # and loses predict: the same
    conn.execute(f"GRANT SELECT ON {src} TO {alice_role}")
    conn.execute("SELECT revoke_project(%s, %s)", [name, alice_role])
    err = sql_error(alice, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "42501" and "project" in err.diag.message_primary


def test_runs_do_not_depend_on_the_session_settings_nor_on_odd_values(conn, name):
    src = make_project(conn, name, rows=300)
    conn.execute(f"ALTER TABLE {src} ADD COLUMN day date, ADD COLUMN seq numeric, ADD COLUMN fkey double precision")
    conn.execute(f"UPDATE {src} SET day = date '2024-02-01' + id % 20, seq = id, fkey = id / 7.0")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, incremental_column => 'day')",
                 [name, name, src, name + "_out"])
    conn.execute("SET DateStyle = 'SQL, DMY'")
    conn.execute("CALL run_batch_job(%s)", [name])
    assert conn.execute("SHOW DateStyle").fetchone() == ("SQL, DMY",)  # restored
    conn.execute("SET DateStyle = 'ISO, MDY'")
    conn.execute(f"UPDATE {src} SET day = date '2024-02-25' WHERE id <= 5")
    conn.execute("CALL run_batch_job(%s)", [name])
    assert runs(conn, name)[-1]["rows_scored"] == 5
    # a float key, in chunks, under a setting that rounds floats away: each key once
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'fkey', %s, chunk_rows => 7, max_retries => 0)",
                 [name + "f", name, src, name + "_fout"])
    conn.execute("SET extra_float_digits = -14")
    conn.execute("CALL run_batch_job(%s)", [name + "f"])
    assert runs(conn, name + "f")[-1]["rows_scored"] == 300
    # NaN in a numeric incremental column does not stop the watermark
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, incremental_column => 'seq')",
                 [name + "n", name, src, name + "_nout"])
    conn.execute(f"UPDATE {src} SET seq = 'NaN' WHERE id = 1")
    conn.execute("CALL run_batch_job(%s)", [name + "n"])
    conn.execute(f"UPDATE {src} SET seq = 1000 WHERE id = 2")
    conn.execute("CALL run_batch_job(%s)", [name + "n"])
    assert (runs(conn, name + "n")[-1]["mode"], runs(conn, name + "n")[-1]["rows_scored"]) == ("incremental", 1)


def test_a_renamed_feature_or_dropped_output_is_a_clear_error(conn, name):
    src = make_project(conn, name, rows=30)
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, max_retries => 0)", [name, name, src, name + "_out"])
    conn.execute(f"ALTER TABLE {src} RENAME COLUMN a TO a2")
    err = sql_error(conn, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "42703" and '"a"' in err.diag.message_primary
    conn.execute(f"DROP TABLE {name}_out")
    err = sql_error(conn, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "42P01" and "dropped" in err.diag.message_detail
    conn.execute("SELECT drop_batch_job(%s, drop_output => true)", [name])
    assert conn.execute("SELECT count(*) FROM pgmodels.batch_jobs WHERE job = %s", [name]).fetchone() == (0,)


def test_a_feature_error_names_the_key(conn, name):
    src = make_project(conn, name, rows=100)
    conn.execute(f"UPDATE {src} SET c = 'Infinity' WHERE id = 57")
    conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s, chunk_rows => 20)", [name, name, src, name + "_out"])
    err = sql_error(conn, "CALL run_batch_job(%s)", [name])
    assert err.sqlstate == "22023" and "Infinity" in err.diag.message_primary
    assert "id = 57" in err.diag.message_detail
    run = runs(conn, name)[-1]
    assert "id = 57" in run["error_detail"] and run["attempt"] == 1
