"""Issue #24, section 1: code that runs with another role's rights never evaluates a cast,
a domain's check, a policy or a trigger that a role made.

PostgreSQL runs those with the rights of whoever evaluates them. So the definer code of
pgmodels (the stream capture trigger, the snapshot writer) takes only values of built-in
types and converts nothing a role made; and a step that reads or writes a role's
relations (a batch run, a stream's processing, a monitor's run) runs only as that role,
never as a superuser that happens to be a member of it. Each scenario below runs as a
LOGIN role with only the grants it needs, with an enum whose casts to text, float8 or
numeric (implicit or assignment) and to json call a probe, and a domain whose check calls
it; the probe counts the roles it runs as (tests/callertypes.py). What is asserted: the
probe never ran as anyone but the attacker, the attacker never became a superuser, and a
refused step left nothing behind (no event, no snapshot table)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import psycopg
import pytest

from callertypes import (ADD_CONSUMER, CONTEXTS, CREATE_BATCH_JOB, CREATE_STREAM, MONITOR, TARGETS, TRAIN, Kit)
from dbhelpers import role_connection, sql_error

VARIANTS = [(t, c) for t in TARGETS for c in CONTEXTS]


@pytest.fixture
def attacker(conn, make_role, name):
    """A LOGIN role (USAGE on public aside, nothing else yet) and its kit, in a schema of its own."""
    rolname, role = make_role(name + "_att")
    kit = Kit.install(conn, role, rolname, name)
    yield kit
    kit.teardown()


def grant(conn, kit: Kit, *functions: str) -> None:
    for fn in functions:
        conn.execute(f"GRANT EXECUTE ON FUNCTION {fn} TO {kit.role}")


def snapshots(conn) -> int:
    return conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'pgmodels_snapshots'::regnamespace"
                        ).fetchone()[0]


def events(conn, stream: str) -> int:
    sid = conn.execute("SELECT id FROM pgmodels.stream WHERE name = %s", [stream]).fetchone()[0]
    return conn.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log").fetchone()[0]


# --- the stream capture trigger (definer) ------------------------------------------------

@pytest.mark.parametrize("target,context", VARIANTS)
def test_a_key_column_added_again_with_a_caller_type_is_refused_at_insert(conn, attacker, target, context):
    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_STREAM)
    k.conn.execute(f"CREATE TABLE {s}.tev (id int, a float8)")
    k.conn.execute("SELECT create_stream(%s, %s, 'id')", [s, f"{s}.tev"])
    k.conn.execute(f"INSERT INTO {s}.tev VALUES (1, 1)")
    k.conn.execute(f"ALTER TABLE {s}.tev DROP COLUMN id")
    evil = k.enum("evil", target, context)
    k.conn.execute(f"ALTER TABLE {s}.tev ADD COLUMN id {evil}")
    err = sql_error(k.conn, f"INSERT INTO {s}.tev (a, id) VALUES (1, '1')")
    assert err.sqlstate == "42804" and "key" in err.diag.message_primary and "evil" in err.diag.message_primary
    assert events(conn, s) == 1 and conn.execute(f"SELECT count(*) FROM {s}.tev").fetchone() == (1,)
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("context", CONTEXTS)
def test_a_key_column_renamed_and_replaced_is_refused(conn, attacker, context):
    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_STREAM)
    k.conn.execute(f"CREATE TABLE {s}.tev (id int, a float8)")
    k.conn.execute("SELECT create_stream(%s, %s, 'id')", [s, f"{s}.tev"])
    k.conn.execute(f"ALTER TABLE {s}.tev RENAME COLUMN id TO old_id")
    evil = k.enum("evil", "text", context)
    k.conn.execute(f"ALTER TABLE {s}.tev ADD COLUMN id {evil}")
    err = sql_error(k.conn, f"INSERT INTO {s}.tev (old_id, a, id) VALUES (1, 1, '2')")
    assert err.sqlstate == "42804"
    assert events(conn, s) == 0
    k.assert_never_ran_as_another()


def test_a_key_of_a_domain_is_refused_at_creation_and_at_insert(conn, attacker):
    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_STREAM)
    dom = k.domain("dint", "int")
    k.conn.execute(f"CREATE TABLE {s}.tdom (id {dom}, a float8)")
    assert sql_error(k.conn, "SELECT create_stream(%s, %s, 'id')", [s + "_d", f"{s}.tdom"]).sqlstate == "42804"
    assert conn.execute("SELECT count(*) FROM pgmodels.stream WHERE name = %s", [s + "_d"]).fetchone() == (0,)
    # a key that becomes a domain later (dropped and added again, the domain's check added
    # after: the log's use of the row type forbids ALTER COLUMN ... TYPE, and a column of a
    # domain with a check): the check runs at the insert, as the inserting role; the
    # trigger refuses the key before it writes
    k.conn.execute(f"CREATE TABLE {s}.tev (id int, a float8)")
    k.conn.execute("SELECT create_stream(%s, %s, 'id')", [s, f"{s}.tev"])
    k.conn.execute(f"ALTER TABLE {s}.tev DROP COLUMN id")
    k.conn.execute(f"CREATE DOMAIN {s}.dlater AS int")
    k.conn.execute(f"ALTER TABLE {s}.tev ADD COLUMN id {s}.dlater")
    k.conn.execute(f"ALTER DOMAIN {s}.dlater ADD CONSTRAINT probe CHECK ({s}.probe('check of dlater')) NOT VALID")
    assert sql_error(k.conn, f"INSERT INTO {s}.tev (id, a) VALUES (1, 1)").sqlstate == "42804"
    assert events(conn, s) == 0
    assert k.count("ok") > 0  # the check did run: as the attacker, at its own insert
    k.assert_never_ran_as_another()


def test_a_renamed_table_whose_old_name_became_a_caller_type_is_refused(conn, attacker):
    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_STREAM)
    k.conn.execute(f"CREATE TABLE {s}.tev (id int, a float8)")
    k.conn.execute("SELECT create_stream(%s, %s, 'id')", [s, f"{s}.tev"])
    k.conn.execute(f"ALTER TABLE {s}.tev RENAME TO tev2")
    # the trigger casts each row to the type named tev: make one, with a cast to the
    # table's row type and a domain column whose check calls the probe
    dom = k.domain("dprobe")
    k.conn.execute(f"CREATE TYPE {s}.tev AS (id int, a {dom})")
    k.conn.execute(f"""CREATE FUNCTION {s}.tev_to_tev2({s}.tev) RETURNS {s}.tev2 LANGUAGE plpgsql AS $$
                       BEGIN PERFORM {s}.probe('cast tev to tev2'); RETURN ROW($1.id, $1.a)::{s}.tev2; END $$""")
    k.conn.execute(f"CREATE CAST ({s}.tev AS {s}.tev2) WITH FUNCTION {s}.tev_to_tev2({s}.tev) AS ASSIGNMENT")
    err = sql_error(k.conn, f"INSERT INTO {s}.tev2 VALUES (1, 1)")
    assert err.sqlstate == "55000" and "renamed" in err.diag.message_primary
    assert events(conn, s) == 0
    k.conn.execute(f"ALTER TABLE {s}.tev2 RENAME TO tev_other")  # (the type's name is taken)
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_rows_with_caller_types_are_captured_without_running_their_code(conn, attacker, target, context):
    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_STREAM)
    dom = k.domain("dprobe")
    k.conn.execute(f"CREATE TYPE {s}.plain AS ENUM ('1', '2')")
    k.conn.execute(f"CREATE TABLE {s}.tev (id int, a float8, e {s}.plain, d {dom})")
    k.conn.execute("SELECT create_stream(%s, %s, 'id')", [s, f"{s}.tev"])
    # the column types gain casts after the stream was made; more columns come
    evil = k.enum("evil", target, context)
    k.conn.execute(f"CREATE FUNCTION {s}.plain_to_{target}({s}.plain) RETURNS {target} LANGUAGE plpgsql AS $$ "
                   f"BEGIN PERFORM {s}.probe('cast plain'); RETURN 1::{target}; END $$")
    k.conn.execute(f"CREATE CAST ({s}.plain AS {target}) WITH FUNCTION {s}.plain_to_{target}({s}.plain) AS {context}")
    k.conn.execute(f"ALTER TABLE {s}.tev ADD COLUMN x {evil}, ADD COLUMN xs {evil}[]")
    k.conn.execute(f"INSERT INTO {s}.tev VALUES (1, 1, '1', 1, '2', '{{1,2}}'), (2, 2, '2', 2, '1', NULL)")
    assert events(conn, s) == 2
    assert k.count("ok") == 2  # the domain's check, as the inserting attacker, once per row
    k.assert_never_ran_as_another()


def test_a_stream_made_before_the_upgrade_gets_the_checking_trigger(cluster, name):
    db = name + "_up"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    try:
        with psycopg.connect(cluster.url(db), autocommit=True) as c:
            c.execute("CREATE EXTENSION plpython3u")
            c.execute("CREATE EXTENSION pgmodels VERSION '0.2.0'")
            c.execute(f"CREATE ROLE {name}_att LOGIN PASSWORD 'pw'")
            c.execute(f"GRANT EXECUTE ON FUNCTION {CREATE_STREAM} TO {name}_att")
            with role_connection(cluster, db, f"{name}_att") as r:
                kit = Kit.install(c, r, f"{name}_att", name)
                r.execute(f"CREATE TABLE {name}.tev (id int, a float8)")
                r.execute("SELECT create_stream(%s, %s, 'id')", [name, f"{name}.tev"])
                c.execute("ALTER EXTENSION pgmodels UPDATE")
                # the trigger's function was made again, and is not the extension's
                assert c.execute("SELECT count(*) FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid "
                                 "WHERE p.proname LIKE 'stream\\_%%\\_capture' AND d.deptype = 'e'").fetchone() == (0,)
                r.execute(f"INSERT INTO {name}.tev VALUES (1, 1)")
                r.execute(f"ALTER TABLE {name}.tev DROP COLUMN id")
                evil = kit.enum("evil", "text", "assignment")
                r.execute(f"ALTER TABLE {name}.tev ADD COLUMN id {evil}")
                assert sql_error(r, f"INSERT INTO {name}.tev (a, id) VALUES (1, '1')").sqlstate == "42804"
                assert kit.count("bad") == 0
                assert c.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [f"{name}_att"]).fetchone() == (False,)
                assert c.execute("SELECT count(*) FROM pgmodels.stream_1_log").fetchone() == (1,)
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [f"{name}_att"]).fetchone():
                admin.execute(f"ALTER ROLE {name}_att NOSUPERUSER")
                admin.execute(f"DROP ROLE {name}_att")


# --- snapshots (definer) -----------------------------------------------------------------

@pytest.mark.parametrize("target,context", VARIANTS)
def test_snapshot_converts_caller_types_as_the_caller(conn, attacker, target, context):
    k, s = attacker, attacker.schema
    grant(conn, k, TRAIN)
    evil = k.enum("evil", target, context)
    dom = k.domain("dprobe")
    k.conn.execute(f"CREATE TABLE {s}.t (a float8, e {evil}, d {dom}, es {evil}[])")
    k.conn.execute(f"INSERT INTO {s}.t VALUES (1, '1', 1, '{{1,2}}'), (2, '2', 2, NULL)")
    checks = k.count("ok")
    relation, _, rows = k.conn.execute("SELECT * FROM snapshot(%s)", [f"{s}.t"]).fetchone()
    assert rows == 2
    types = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                         "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", [relation]).fetchall()
    assert types == [("a", "double precision"), ("e", "text"), ("d", "double precision"), ("es", "text[]")]
    got = k.conn.execute(f"SELECT e, es FROM {relation} ORDER BY a").fetchall()
    if target == "text":  # the enum's own cast to text made the copy, as the caller
        assert got == [("1", ["1", "2"]), ("2", None)] and k.count("ok") == checks + 4  # e twice, es's two
    else:
        assert got == [("1", ["1", "2"]), ("2", None)] and k.count("ok") == checks
    k.assert_never_ran_as_another()


BAD_COPIES = {
    "an enum column": ("CREATE TEMP TABLE cp (a float8, e {evil})", "42804"),
    "an array of an enum": ("CREATE TEMP TABLE cp (a float8, e {evil}[])", "42804"),
    "a domain column": ("CREATE TEMP TABLE cp (a {dom})", "42804"),
    "a composite column": ("CREATE TEMP TABLE cp (a float8, r {s}.pair)", "42804"),
    "row-level security": ("CREATE TEMP TABLE cp (a float8); ALTER TABLE cp ENABLE ROW LEVEL SECURITY; "
                           "CREATE POLICY p ON cp USING ({s}.probe('policy'))", "42501"),
    "forced row-level security": ("CREATE TEMP TABLE cp (a float8); ALTER TABLE cp FORCE ROW LEVEL SECURITY", "42501"),
    "a rule": ("CREATE TEMP TABLE cp (a float8); CREATE RULE r AS ON UPDATE TO cp DO ALSO SELECT {s}.probe('rule')",
               "42501"),
    "a trigger": ("CREATE TEMP TABLE cp (a float8); CREATE TRIGGER t AFTER INSERT ON cp "
                  "FOR EACH STATEMENT EXECUTE FUNCTION {s}.on_write()", "42501"),
}


@pytest.mark.parametrize("what", sorted(BAD_COPIES))
def test_snapshot_create_refuses_a_copy_it_would_have_to_convert_or_that_runs_code(conn, attacker, what):
    """pgmodels._snapshot_create called directly with a temporary table of one's own."""
    k, s = attacker, attacker.schema
    grant(conn, k, TRAIN)
    evil = k.enum("evil", "text", "assignment")
    dom = k.domain("dprobe")
    k.conn.execute(f"CREATE TYPE {s}.pair AS (x float8, y float8)")
    k.conn.execute(f"CREATE TABLE {s}.src (a float8)")
    k.trigger(f"{s}.src")  # (makes {s}.on_write)
    setup, sqlstate = BAD_COPIES[what]
    k.conn.execute(setup.format(evil=evil, dom=dom, s=s))
    k.conn.execute("INSERT INTO cp (a) VALUES (1)")
    before = snapshots(conn)
    err = sql_error(k.conn, "SELECT pgmodels._snapshot_create(%s::regclass, 'pg_temp.cp'::regclass, "
                            "pgmodels._credential())", [f"{s}.src"])
    assert err.sqlstate == sqlstate and err.diag.message_detail
    assert snapshots(conn) == before
    k.assert_never_ran_as_another()


def test_snapshot_create_still_takes_a_copy_of_built_in_types(conn, attacker):
    k, s = attacker, attacker.schema
    grant(conn, k, TRAIN)
    k.conn.execute(f"CREATE TABLE {s}.src (a float8)")
    k.conn.execute("CREATE TEMP TABLE cp (a float8[], b numeric(10,2), c varchar(5), d int4range, e text)")
    k.conn.execute("INSERT INTO cp VALUES ('{1,2}', 3.14159, 'ab', '[1,3)', 'x')")
    snap = k.conn.execute("SELECT pgmodels._snapshot_create(%s::regclass, 'pg_temp.cp'::regclass, "
                          "pgmodels._credential())", [f"{s}.src"]).fetchone()[0]
    assert k.conn.execute(f"SELECT a, b::text, c, d::text, e FROM {snap}").fetchone() == ([1, 2], "3.14", "ab", "[1,3)", "x")


def test_pgml_snapshot_converts_caller_types_as_the_caller(cluster, name):
    from pgmlhelpers import fresh_database

    with fresh_database(cluster) as (_, admin, db):
        role = name + "_att"
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        try:
            admin.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {role}")
            with role_connection(cluster, db, role) as r:
                kit = Kit.install(admin, r, role, name)
                evil = kit.enum("evil", "text", "assignment")
                r.execute(f"CREATE TABLE {name}.t (a float8, e {evil})")
                r.execute(f"INSERT INTO {name}.t VALUES (1, '1'), (2, '2')")
                relation, y = r.execute("SELECT * FROM pgml.snapshot(%s, 'a')", [f"{name}.t"]).fetchone()
                assert y == "a" and r.execute(f"SELECT e FROM {relation} ORDER BY a").fetchall() == [("1",), ("2",)]
                assert kit.count("ok") == 2 and kit.count("bad") == 0
                assert admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [role]).fetchone() == (False,)
        finally:
            admin.execute(f"ALTER ROLE {role} NOSUPERUSER")
            admin.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("context", CONTEXTS)
def test_train_materializes_a_snapshot_converting_as_the_caller(conn, attacker, context):
    k, s = attacker, attacker.schema
    grant(conn, k, TRAIN)
    evil = k.enum("evil", "text", context)
    k.conn.execute(f"CREATE TABLE {s}.t AS SELECT i::float8 AS a, (CASE WHEN i % 2 = 0 THEN '1' ELSE '2' END)::{evil} AS e, "
                   f"(2 * i + i % 2)::float8 AS y FROM generate_series(1, 60) i")
    before = snapshots(conn)
    k.conn.execute("SELECT * FROM train(%s, 'regression', %s, 'y', 'linear', materialize_snapshot => true)",
                   [s, f"{s}.t"])
    assert snapshots(conn) == before + 1
    assert k.count("ok") == 60  # one cast per row, as the caller
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_training_reads_a_relation_of_caller_types_as_the_caller(conn, attacker, target, context):
    k, s = attacker, attacker.schema
    grant(conn, k, TRAIN)
    evil = k.enum("evil", target, context)
    dom = k.domain("dprobe")
    k.conn.execute(f"CREATE TABLE {s}.t (a {dom}, e {evil}, y float8)")
    k.conn.execute(f"INSERT INTO {s}.t SELECT i, '1', i FROM generate_series(1, 30) i")
    err = sql_error(k.conn, "SELECT * FROM train(%s, 'regression', %s, 'y', 'linear')", [s, f"{s}.t"])
    assert err.sqlstate == "0A000" and '"e"' in err.diag.message_primary  # an enum is no feature; text is
    k.assert_never_ran_as_another()


# --- scenarios on a project: batch, streams with enrichment, drift, monitors, edge ---------

@dataclass
class Project:
    name: str
    owner: str
    conn: object


@pytest.fixture(scope="module")
def project(test_db, cluster):
    """A regression on a number (a) and a text (e), trained once by a role of its own
    (LOGIN and EXECUTE on train()), which the scenarios grant what they need."""
    tag = "cty_" + uuid.uuid4().hex[:8]
    with psycopg.connect(test_db, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {tag} LOGIN PASSWORD 'pw'")
        admin.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {tag}")
        admin.execute(f"CREATE SCHEMA {tag} AUTHORIZATION {tag}")
        owner = role_connection(cluster, admin.info.dbname, tag)
        owner.execute(f"CREATE TABLE {tag}.train AS SELECT (i % 13)::float8 AS a, "
                      f"(CASE WHEN i % 2 = 0 THEN '1' ELSE '2' END) AS e, (3 * (i % 13) + i % 2)::float8 AS y "
                      f"FROM generate_series(1, 120) i")
        owner.execute("SELECT * FROM train(%s, 'regression', %s, 'y', 'linear')", [tag, f"{tag}.train"])
        yield Project(tag, tag, owner)
        owner.close()
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [tag])
        admin.execute(f"DROP SCHEMA {tag} CASCADE")
        admin.execute("DELETE FROM pgmodels.projects WHERE name = %s", [tag])
        admin.execute(f"DROP OWNED BY {tag}")
        admin.execute(f"DROP ROLE {tag}")


@pytest.fixture
def owner_kit(conn, project, name):
    """The project's owner as the attacker (drift, monitors, feature sources are its)."""
    kit = Kit.install(conn, project.conn, project.owner, name)
    yield kit
    kit.teardown()
    conn.execute(f"REVOKE EXECUTE ON FUNCTION {MONITOR} FROM {project.owner}")


def events_table(kit: Kit, target: str, context: str) -> str:
    """The attacker's rows, the model's features a and e, e of its enum."""
    evil = kit.enum("evil", target, context)
    kit.conn.execute(f"CREATE TABLE {kit.schema}.src (id int PRIMARY KEY, a float8, e {evil}, "
                     "at timestamptz DEFAULT now())")
    kit.conn.execute(f"INSERT INTO {kit.schema}.src (id, a, e) SELECT i, i % 13, "
                     f"(CASE WHEN i % 2 = 0 THEN '1' ELSE '2' END)::{evil} FROM generate_series(1, 40) i")
    return f"{kit.schema}.src"


@pytest.mark.parametrize("target,context", VARIANTS)
def test_a_batch_job_runs_only_as_its_owner(conn, project, attacker, target, context):
    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_BATCH_JOB)
    project.conn.execute("SELECT grant_project(%s, %s, 'predict')", [project.name, k.role])
    src = events_table(k, target, context)
    k.conn.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [s, project.name, src, f"{s}.out"])
    k.trigger(f"{s}.out")
    k.conn.execute("CALL run_batch_job(%s)", [s])
    assert k.conn.execute(f"SELECT count(*) FROM {s}.out").fetchone() == (40,)
    assert k.count("ok") > 0  # its output's trigger (and the enum's cast to text) ran, as the attacker
    ran = k.count("ok")
    err = sql_error(conn, "CALL run_batch_job(%s)", [s])  # a superuser: a member of every role
    assert err.sqlstate == "42501"
    assert k.count("ok") == ran
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_a_consumer_is_processed_only_by_its_owner(conn, project, attacker, target, context):
    """Its events (the attacker's table, whose columns it may retype), its enrichment
    relation and its output table are the attacker's."""
    from pgmodels.stream.worker import Worker

    k, s = attacker, attacker.schema
    grant(conn, k, CREATE_STREAM, ADD_CONSUMER)
    project.conn.execute("SELECT grant_project(%s, %s, 'predict')", [project.name, k.role])
    evil = k.enum("evil", target, context)
    k.conn.execute(f"CREATE TABLE {s}.ev (id bigint PRIMARY KEY, a float8)")
    k.conn.execute(f"CREATE TABLE {s}.enr (id bigint PRIMARY KEY, e {evil})")
    k.conn.execute(f"INSERT INTO {s}.enr SELECT i, (CASE WHEN i % 2 = 0 THEN '1' ELSE '2' END)::{evil} "
                   "FROM generate_series(1, 20) i")
    k.conn.execute("SELECT create_stream(%s, %s, 'id')", [s, f"{s}.ev"])
    k.conn.execute("SELECT add_consumer(%s, %s, %s, %s, enrich_relation => %s, enrich_key => 'id')",
                   [s, s + "_c", project.name, f"{s}.out", f"{s}.enr"])
    k.trigger(f"{s}.out")
    k.conn.execute(f"INSERT INTO {s}.ev SELECT i, i % 13 FROM generate_series(1, 10) i")
    # a superuser's worker does not take the role's consumer, and process_stream refuses it
    assert s + "_c" not in [n for n, _, _ in Worker("", [])._consumers(conn)]
    err = sql_error(conn, "SELECT process_stream(%s)", [s + "_c"])
    assert err.sqlstate == "42501" and "processed as role" in err.diag.message_primary
    assert k.count("ok") == 0 and k.count("bad") == 0
    assert k.conn.execute("SELECT process_stream(%s)", [s + "_c"]).fetchone() == (10,)
    assert k.conn.execute(f"SELECT count(*) FROM {s}.out").fetchone() == (10,)
    assert k.count("ok") > 0
    # the event's own feature retyped: whatever the read makes of it, it is the attacker's
    k.conn.execute(f"ALTER TABLE {s}.ev DROP COLUMN a")
    k.conn.execute(f"ALTER TABLE {s}.ev ADD COLUMN a {evil}")
    k.conn.execute(f"INSERT INTO {s}.ev SELECT i, '1' FROM generate_series(11, 15) i")
    assert sql_error(conn, "SELECT process_stream(%s)", [s + "_c"]).sqlstate == "42501"
    try:
        k.conn.execute("SELECT process_stream(%s)", [s + "_c"])
    except psycopg.Error:
        pass  # (an enum with no cast to float8 is no number)
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_drift_reads_the_relation_as_the_caller(conn, project, owner_kit, target, context):
    k = owner_kit
    src = events_table(k, target, context)
    rows = k.conn.execute("SELECT feature, status FROM drift(%s, %s)", [project.name, src]).fetchall()
    assert {r[0] for r in rows} >= {"a", "e"}
    if target == "text":
        assert k.count("ok") > 0  # the enum's cast to text read it, as the attacker
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_a_monitor_runs_only_as_its_owner(conn, project, owner_kit, target, context):
    k = owner_kit
    conn.execute(f"GRANT EXECUTE ON FUNCTION {MONITOR} TO {k.role}")
    src = events_table(k, target, context)
    monitor_id = k.conn.execute("SELECT monitor(%s, %s, NULL)", [project.name, src]).fetchone()[0]
    err = sql_error(conn, "SELECT run_monitor(%s)", [monitor_id])  # a superuser
    assert err.sqlstate == "42501" and "runs as role" in err.diag.message_primary
    assert k.count("ok") == 0
    assert k.conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0] is not None
    if target == "text":
        assert k.count("ok") > 0
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_edge_check_rows_are_read_as_the_caller(conn, project, attacker, target, context):
    k = attacker
    project.conn.execute("SELECT grant_project(%s, %s, 'export')", [project.name, k.role])
    src = events_table(k, target, context)
    options = k.conn.execute("SELECT size_option, check_rows FROM edge_bundle_options(%s, %s)",
                             [project.name, src]).fetchall()
    assert options and all(rows == 40 for _, rows in options)
    assert k.count("ok") >= 40  # to_jsonb called the enum's cast to json for each row, as the attacker
    k.assert_never_ran_as_another()


@pytest.mark.parametrize("target,context", VARIANTS)
def test_a_feature_source_of_caller_types_is_not_read_in_the_server_s_session(conn, project, owner_kit, target,
                                                                               context):
    """pgmodels serve reads a feature source as the request's role inside its own session
    (SET LOCAL ROLE): a role's function run there could RESET ROLE. Registered with
    built-in types, then retyped: each read checks again."""
    k, s = owner_kit, owner_kit.schema
    k.conn.execute(f"CREATE TABLE {s}.fs (id int PRIMARY KEY, a float8, e text)")
    k.conn.execute(f"INSERT INTO {s}.fs VALUES (1, 1, '1')")
    k.conn.execute("SELECT register_feature_source(%s, %s, 'id')", [project.name, f"{s}.fs"])
    evil = k.enum("evil", target, context)
    k.conn.execute(f"ALTER TABLE {s}.fs ALTER COLUMN e TYPE {evil} USING e::{evil}")
    with psycopg.connect(conn.info.dsn, password=conn.info.password) as server:  # as the server does
        server.execute("SELECT set_config('role', %s, true), set_config('search_path', 'pg_catalog, pg_temp', true)",
                       [k.role])
        err = sql_error(server, "SELECT * FROM pgmodels._feature_rows(%s, 'fs', 'id', ARRAY['1'])", [s])
        assert err.sqlstate == "55000"
    assert sql_error(k.conn, "SELECT register_feature_source(%s, %s, 'id')",
                     [project.name, f"{s}.fs"]).sqlstate == "55000"
    k.assert_never_ran_as_another()
