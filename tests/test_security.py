"""Who may train, deploy and predict; training reads only what the caller may read."""

from __future__ import annotations

import psycopg
import pytest

from dbhelpers import sql_error
from lifecycle_data import make_numeric

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb)"


@pytest.fixture
def role(conn, cluster, name):
    """A login role with no privileges; yields a connection as that role."""
    conn.execute(f"CREATE ROLE {name} LOGIN PASSWORD 'pw'")
    conn.execute(f"GRANT USAGE ON SCHEMA public TO {name}")
    db = conn.info.dbname
    c = psycopg.connect(f"postgresql://{name}:pw@127.0.0.1:{cluster.port}/{db}", autocommit=True)
    yield name, c
    c.close()
    conn.execute(f"DROP OWNED BY {name}")
    conn.execute(f"DROP ROLE {name}")


def test_training_needs_a_grant_and_read_access(conn, role, name):
    rolname, alice = role
    table = name + "_data"
    make_numeric(conn, table)
    err = sql_error(alice, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, table])
    assert err.sqlstate == "42501" and "train" in err.diag.message_primary
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    err = sql_error(alice, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, table])
    assert err.sqlstate == "42501" and table in err.diag.message_primary
    conn.execute(f"GRANT SELECT (a, b, y) ON {table} TO {rolname}")  # not c, d
    err = sql_error(alice, "SELECT * FROM train(%s, 'classification', %s, 'y')", [name, table])
    assert err.sqlstate == "42501" and "c, d" in err.diag.message_detail
    conn.execute(f"GRANT SELECT ON {table} TO {rolname}")
    row = alice.execute("SELECT deployed FROM train(%s, 'classification', %s, 'y')", [name, table]).fetchone()
    assert row == (True,)
    assert conn.execute("SELECT trained_by FROM pgmodels.overview WHERE project = %s", [name]).fetchone()[0] == rolname
    # predicting is for everyone; the catalog is not writable, nor readable beyond the overview
    assert alice.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4])", [name]).fetchone()[0] in (0.0, 1.0)
    for statement in ("DELETE FROM pgmodels.models", "UPDATE pgmodels.deployments SET model_id = 1",
                      "SELECT artifact FROM pgmodels.models"):
        assert sql_error(alice, statement).sqlstate == "42501"
    # deploying needs its own grant
    assert sql_error(alice, "SELECT * FROM deploy(%s, 'most_recent')", [name]).sqlstate == "42501"
    conn.execute(f"GRANT EXECUTE ON FUNCTION deploy(text, text, text) TO {rolname}")
    assert alice.execute("SELECT strategy FROM deploy(%s, 'most_recent')", [name]).fetchone() == ("most_recent",)


def test_predicting_and_exporting_share_one_gate(conn, role, name):
    rolname, bob = role
    make_numeric(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    assert len(bytes(bob.execute("SELECT export_onnx(%s)", [name]).fetchone()[0])) > 0
    conn.execute("REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) FROM PUBLIC")
    try:
        fresh = psycopg.connect(bob.info.dsn + " password=pw", autocommit=True)
        assert sql_error(fresh, "SELECT predict(%s, ARRAY[1, 2, 3, 4])", [name]).sqlstate == "42501"
        assert sql_error(fresh, "SELECT export_onnx(%s)", [name]).sqlstate == "42501"
        conn.execute(f"GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) TO {rolname}")
        assert fresh.execute("SELECT predict(%s, ARRAY[1, 2, 3, 4])", [name]).fetchone()[0] in (0.0, 1.0)
        fresh.close()
    finally:
        conn.execute("GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) TO PUBLIC")


def test_training_sees_only_the_rows_row_level_security_allows(conn, role, name):
    rolname, alice = role
    make_numeric(conn, name)
    conn.execute(f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY")
    conn.execute(f"CREATE POLICY half ON {name} FOR SELECT TO {rolname} USING (a < 8)")
    conn.execute(f"GRANT SELECT ON {name} TO {rolname}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    alice.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name])
    visible = conn.execute(f"SELECT count(*) FROM {name} WHERE a < 8").fetchone()[0]
    rows = conn.execute("SELECT (training ->> 'rows')::int FROM pgmodels.models m JOIN pgmodels.projects p "
                        "ON p.id = m.project_id WHERE p.name = %s", [name]).fetchone()[0]
    assert rows == visible < 300


def test_the_store_function_checks_the_caller_itself(conn, role, name):
    rolname, mallory = role
    err = sql_error(mallory, """SELECT * FROM pgmodels._store_model(%s, 'regression', 'x', 'onnx', '\\x00', '{}', '{}',
                                NULL, ARRAY['a'], ARRAY['float'], NULL, '{}', '{}', NULL, 'always')""", [name])
    assert err.sqlstate == "42501"
    assert sql_error(mallory, "SELECT pgmodels._deploy_model(1)").sqlstate == "42501"
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone()[0] == 0


def test_definer_functions_pin_their_search_path(conn):
    loose = conn.execute("""SELECT p.oid::regprocedure::text FROM pg_proc p
                            JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
                            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmodels'
                            WHERE p.prosecdef AND NOT coalesce(p.proconfig @> ARRAY['search_path=pg_catalog, pg_temp'], false)
                         """).fetchall()
    assert loose == []
