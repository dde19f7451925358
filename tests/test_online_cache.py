"""The per-backend cache of serving decisions (issue #25): a warm session predicts with no
lookup and no credential, and every change that could alter a decision reaches its very
next statement: a revoke and a grant, a deploy and a rollback, a role's membership, the
master switch, a dropped role; SET ROLE is checked as the new role, a SECURITY DEFINER
function's owner only for its own call, a transaction's own uncommitted writes are seen by
it alone, and a statement of many rows never mixes two versions. Through PgBouncer too.

Everything runs as LOGIN roles with only the scenario's grants: an owner granted only
import_onnx, readers granted only predict (or not). Whether a statement looked the model
up is read from PostgreSQL's own count of pgmodels._lookup calls (track_functions = 'pl'
for the reader roles). Other sessions' DDL on this shared cluster can send a warm backend
back to _lookup at any time, so "warm" means: a statement was served without a lookup.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from dbhelpers import role_connection, sql_error
from onnx_models import scaled_sum
from scalehelpers import Bouncer

IMPORT = "import_onnx(text, bytea, text[], text, jsonb, text[], boolean)"
LOOKUPS = "pg_catalog.pg_stat_get_xact_function_calls('pgmodels._lookup(text,bigint,text)'::pg_catalog.regprocedure)"


@pytest.fixture
def owner(conn, make_role, name):
    """A role granted import_onnx only, owning project `name`: value = 1 * (a + b)."""
    rolname, c = make_role(name + "_own")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {IMPORT} TO {rolname}")
    first = import_model(c, name, 1.0)
    return rolname, c, first


@pytest.fixture
def reader_role(conn, cluster, make_role, name):
    """Make a LOGIN role whose sessions count their function calls; returns (name, connection)."""
    opened = []

    def _make(suffix: str):
        rolname, c = make_role(f"{name}_{suffix}")
        c.close()
        conn.execute(f"ALTER ROLE {rolname} SET track_functions = 'pl'")
        opened.append(role_connection(cluster, conn.info.dbname, rolname))
        return rolname, opened[-1]

    yield _make
    for c in opened:
        c.close()


def import_model(c, project: str, factor: float, deploy: bool = True) -> int:
    return c.execute("SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression', deploy => %s)",
                     [project, scaled_sum(factor), deploy]).fetchone()[0]


def predict(c, project: str, x: float = 1.0) -> tuple[float, int]:
    """(the prediction for (x, 1), _lookup calls so far in this backend's pending counts)."""
    return tuple(c.execute(f"SELECT predict(%s, ARRAY[%s, 1]), {LOOKUPS}", [project, x]).fetchone())


def warm(c, project: str, expected: float | None = None) -> None:
    """Predict until a statement is served from the kept decision (no _lookup call)."""
    calls = None
    for _ in range(60):
        value, now = predict(c, project)
        if expected is not None:
            assert value == expected
        if calls is not None and now == calls:
            return
        calls = now
    raise AssertionError("no statement was served without a lookup")


def test_a_warm_session_predicts_without_a_lookup_and_a_revoke_reaches_its_next_statement(owner, reader_role, name):
    own, oc, _ = owner
    reader, rc = reader_role("r")
    assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    warm(rc, name, 2.0)
    oc.execute("SELECT revoke_project(%s, %s)", [name, reader])
    for _ in range(3):
        assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    assert predict(rc, name)[0] == 2.0


def test_a_deploy_and_a_rollback_reach_the_next_statement(owner, reader_role, name):
    own, oc, first = owner
    reader, rc = reader_role("r")
    second = import_model(oc, name, 10.0, deploy=False)
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    warm(rc, name, 2.0)
    oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
    assert predict(rc, name)[0] == 20.0
    warm(rc, name, 20.0)
    oc.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
    assert predict(rc, name)[0] == 2.0
    # by model id too: the decision for a model id is its own
    warm(rc, name, 2.0)
    assert rc.execute("SELECT predict(%s::bigint, ARRAY[1, 1])", [second]).fetchone()[0] == 20.0
    oc.execute("SELECT revoke_project(%s, %s)", [name, reader])
    assert sql_error(rc, "SELECT predict(%s::bigint, ARRAY[1, 1])", [second]).sqlstate == "42501"


def test_a_transaction_sees_its_own_deploy_and_nothing_stays_after_its_rollback(owner, name):
    own, oc, first = owner
    second = import_model(oc, name, 10.0, deploy=False)
    for _ in range(4):  # warm
        assert oc.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 2.0
    with pytest.raises(psycopg.errors.QueryCanceled):
        with oc.transaction():
            oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
            for _ in range(3):
                assert oc.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 20.0
            raise psycopg.errors.QueryCanceled("roll back")
    for _ in range(4):
        assert oc.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 2.0


def test_a_membership_change_and_a_dropped_role_reach_the_next_statement(conn, owner, reader_role, name):
    own, oc, _ = owner
    reader, rc = reader_role("r")
    group = f"{name}_group"
    conn.execute(f"CREATE ROLE {group} NOLOGIN")
    try:
        oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, group])
        conn.execute(f"GRANT {group} TO {reader}")
        warm(rc, name, 2.0)
        conn.execute(f"REVOKE {group} FROM {reader}")
        assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
        conn.execute(f"GRANT {group} TO {reader}")
        warm(rc, name, 2.0)
        conn.execute(f"DROP ROLE {group}")
        assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
    finally:
        conn.execute(f"DROP ROLE IF EXISTS {group}")


def test_the_master_switch_reaches_the_next_statement(conn, owner, reader_role, name):
    own, oc, _ = owner
    reader, rc = reader_role("r")
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    warm(rc, name, 2.0)
    conn.execute("REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) FROM PUBLIC")
    try:
        err = sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name])
        assert err.sqlstate == "42501" and "_lookup" in err.diag.message_primary
        # nor does the core serve the kept decision when called directly
        assert rc.execute("SELECT pgmodels._predict(%s, 0, ARRAY[1, 1]::float8[], pgmodels._stamp(), NULL)",
                          [name]).fetchone() == (None,)
    finally:
        conn.execute("GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO PUBLIC")
    assert predict(rc, name)[0] == 2.0


def test_set_role_is_checked_as_the_new_role(conn, owner, reader_role, name):
    own, oc, _ = owner
    reader, rc = reader_role("r")
    other = f"{name}_other"
    conn.execute(f"CREATE ROLE {other} NOLOGIN")
    try:
        conn.execute(f"GRANT {other} TO {reader}")
        oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
        warm(rc, name, 2.0)
        rc.execute(f"SET ROLE {other}")
        assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
        assert rc.execute("SELECT pgmodels._predict(%s, 0, ARRAY[1, 1]::float8[], pgmodels._stamp(), NULL)",
                          [name]).fetchone() == (None,)
        rc.execute("RESET ROLE")
        assert predict(rc, name)[0] == 2.0
        # the new role's decision is its own: made, kept, and taken back
        oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, other])
        rc.execute(f"SET ROLE {other}")
        warm(rc, name, 2.0)
        oc.execute("SELECT revoke_project(%s, %s)", [name, other])
        assert sql_error(rc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
        rc.execute("RESET ROLE")
        assert predict(rc, name)[0] == 2.0
    finally:
        rc.execute("RESET ROLE")
        conn.execute(f"DROP OWNED BY {other}")
        conn.execute(f"DROP ROLE {other}")


def test_a_security_definer_callers_decision_serves_only_its_own_calls(conn, owner, reader_role, make_role, name):
    own, oc, _ = owner
    alice, ac = reader_role("alice")
    bob, bc = reader_role("bob")
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, alice])
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {alice}")
    ac.execute(f"""CREATE FUNCTION {name}_score(x real) RETURNS real LANGUAGE sql SECURITY DEFINER
                   SET search_path = public, pg_catalog, pg_temp
                   AS $$ SELECT predict('{name}', ARRAY[x, 1]) $$""")
    ac.execute(f"GRANT EXECUTE ON FUNCTION {name}_score(real) TO {bob}")
    warm(ac, name, 2.0)
    for x in range(4):  # Bob's statements, served for Alice inside her function
        row = bc.execute(f"SELECT {name}_score(%s), "
                         "pgmodels._predict(%s, 0, ARRAY[9, 9]::float8[], pgmodels._stamp(), NULL), "
                         "pgmodels._predict(%s, 0, ARRAY[9, 9]::float8[], pgmodels._stamp(), true)",
                         [x, name, name]).fetchone()
        assert row == (x + 1.0, None, None)
    assert sql_error(bc, "SELECT predict(%s, ARRAY[1, 1])", [name]).sqlstate == "42501"
    oc.execute("SELECT revoke_project(%s, %s)", [name, alice])
    assert sql_error(bc, f"SELECT {name}_score(1)").sqlstate == "42501"
    conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {alice}")


def test_a_transaction_past_its_first_second_looks_up_again(owner, reader_role, name):
    """A kept decision serves a transaction's first second only: the backend reads other
    sessions' invalidations when a transaction starts, not at every statement of it."""
    own, oc, _ = owner
    reader, rc = reader_role("r")
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    warm(rc, name, 2.0)
    with rc.transaction():
        assert predict(rc, name)[0] == 2.0
        oc.execute("SELECT revoke_project(%s, %s)", [name, reader])
        time.sleep(1.1)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rc.execute("SELECT predict(%s, ARRAY[1, 1])", [name])


def test_one_statement_never_mixes_versions_while_another_session_deploys(owner, reader_role, name):
    own, oc, _ = owner
    second = import_model(oc, name, 10.0, deploy=False)
    reader, rc = reader_role("r")
    oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
    warm(rc, name, 2.0)
    result = {}

    def slow_scoring():
        result["values"] = rc.execute(
            "SELECT array_agg(predict(%s, ARRAY[i, 0]) ORDER BY i) FROM generate_series(1, 60) i, "
            "LATERAL (SELECT pg_sleep(0.025)) s", [name]).fetchone()[0]

    t = threading.Thread(target=slow_scoring)
    t.start()
    time.sleep(0.3)
    for _ in range(3):  # deploys and rollbacks commit mid-statement, one past the first second
        oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
        time.sleep(0.4)
        oc.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
        time.sleep(0.1)
    oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
    t.join()
    assert {v / i for i, v in enumerate(result["values"], start=1)} == {1.0}
    assert predict(rc, name, 1.0)[0] == 20.0


@pytest.fixture
def bouncer(cluster, test_db):
    b = Bouncer(cluster, pool_mode="transaction", pool_size=1)
    yield b
    b.close()


def test_through_a_transaction_pool_a_change_reaches_the_next_statement(conn, bouncer, owner, reader_role, name):
    """One server connection for every client: the reader's warm backend is the one the
    owner's deploy and revoke ran in, as the next client's transaction."""
    own, _, first = owner
    reader, _ = reader_role("r")
    dbname = conn.info.dbname

    def client(role):
        return psycopg.connect(bouncer.url(dbname, user=role, password="pw"), autocommit=True,
                               prepare_threshold=None)

    with client(own) as oc, client(reader) as rc:
        second = import_model(oc, name, 10.0, deploy=False)
        oc.execute("SELECT grant_project(%s, %s, 'predict')", [name, reader])
        warm(rc, name, 2.0)
        oc.execute("SELECT * FROM deploy(%s::bigint)", [second])
        assert predict(rc, name)[0] == 20.0
        warm(rc, name, 20.0)
        oc.execute("SELECT * FROM deploy(%s, 'rollback')", [name])
        assert predict(rc, name)[0] == 2.0
        warm(rc, name, 2.0)
        oc.execute("SELECT revoke_project(%s, %s)", [name, reader])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            rc.execute("SELECT predict(%s, ARRAY[1, 1])", [name])
        # the owner's own decisions in the same backend are the owner's
        assert oc.execute("SELECT predict(%s, ARRAY[1, 1])", [name]).fetchone()[0] == 2.0
