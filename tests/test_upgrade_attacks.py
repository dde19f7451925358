"""The update from 0.2.0 runs as a superuser, in a session a role's code must never reach
(issue #24's class, found again by the hostile review of 0.3.0): operators a role put
in the extension's schema for pairs of types pg_catalog compares only by coercion, and
the owner's code on an output table whose key the update converts (inside a superuser's
session, SET ROLE is no wall: the code can RESET ROLE)."""

from __future__ import annotations

from collections import namedtuple

import psycopg
import pytest

from dbhelpers import role_connection

# types the update's statements compare, and their neighbours
Notice = namedtuple("Notice", "severity message_primary message_detail message_hint")
TYPES = ["oid", "regclass", "regproc", "regprocedure", "regrole", "regtype", "regnamespace", "integer", "bigint",
         "smallint", "text", "name", '"char"', "boolean", "real", "double precision", "numeric", "jsonb", "json",
         "timestamp with time zone", "date", "interval", "bytea", "aclitem", "xid", "text[]", "name[]", "oid[]",
         '"char"[]', "aclitem[]", "jsonb[]"]
OPERATORS = ["=", "<>", "<", ">", "<=", ">="]

PLANT = """
DO $plant$
DECLARE
    l text; r text; op text; n integer := 0;
BEGIN
    FOREACH l IN ARRAY %(types)s LOOP
        FOREACH r IN ARRAY %(types)s LOOP
            FOREACH op IN ARRAY %(ops)s LOOP
                CONTINUE WHEN EXISTS (SELECT 1 FROM pg_operator o WHERE o.oprname OPERATOR(pg_catalog.=) op::name
                                        AND o.oprleft OPERATOR(pg_catalog.=) l::regtype::oid
                                        AND o.oprright OPERATOR(pg_catalog.=) r::regtype::oid);
                n := n OPERATOR(pg_catalog.+) 1;
                EXECUTE format('CREATE FUNCTION public.planted_%%s(%%s, %%s) RETURNS boolean LANGUAGE plpgsql AS '
                               '$f$BEGIN RAISE EXCEPTION ''planted operator %%s(%%s, %%s) ran as %%%%, session %%%%'', '
                               'current_user, session_user; END$f$', n, l, r, op, l, r);
                EXECUTE format('CREATE OPERATOR public.%%s (LEFTARG = %%s, RIGHTARG = %%s, FUNCTION = public.planted_%%s)',
                               op, l, r, n);
            END LOOP;
        END LOOP;
    END LOOP;
    RAISE NOTICE 'planted %%', n;
END
$plant$
"""


@pytest.fixture
def old_database(cluster, name):
    """A 0.2.0 database with a stream, a consumer whose output keeps text keys (as 0.2.0
    made them) and an administrator's grant changes, and a role with CREATE on public."""
    dbname = name + "_old"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}")
        admin.execute(f"CREATE ROLE {name}_atk LOGIN PASSWORD 'pw'")
    try:
        with psycopg.connect(cluster.url(dbname), autocommit=True) as old:
            old.execute("CREATE EXTENSION pgmodels VERSION '0.2.0' CASCADE")
            old.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {name}_atk")
            old.execute(f"GRANT EXECUTE ON FUNCTION create_stream(text, text, text) TO {name}_atk")
            old.execute("REVOKE EXECUTE ON FUNCTION predict(text, real[]) FROM PUBLIC")
            old.execute(f"GRANT EXECUTE ON FUNCTION predict(text, real[]) TO {name}_atk")
            old.execute("INSERT INTO pgmodels.projects (name, task, owner) VALUES ('m', 'regression', 'postgres')")
            yield old, dbname, f"{name}_atk"
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {name}_atk")


def _stream_with_old_output(atk, old, role: str, checked: bool) -> None:
    atk.execute("CREATE TABLE rides (ride_id bigint PRIMARY KEY, a float8, b float8)")
    atk.execute("SELECT create_stream('rides', 'rides', 'ride_id')")
    atk.execute("""CREATE TABLE rides_predictions (event_id bigint PRIMARY KEY, key text, prediction real,
                   probabilities real[], label text, model_id bigint NOT NULL, model_version integer NOT NULL,
                   event_time timestamptz NOT NULL, predicted_at timestamptz NOT NULL, delivery bigint NOT NULL)""")
    atk.execute("INSERT INTO rides_predictions SELECT i, i::text, i, NULL, NULL, 1, 1, now(), now(), i "
                "FROM generate_series(1, 3) i")
    if checked:
        atk.execute("""CREATE FUNCTION public.evil(anyelement) RETURNS boolean LANGUAGE plpgsql AS $f$
                       BEGIN IF session_user <> current_user THEN RESET ROLE;
                       EXECUTE format('ALTER ROLE %I SUPERUSER', session_user); END IF; RETURN true; END $f$""")
        atk.execute("ALTER TABLE rides_predictions ADD CONSTRAINT k CHECK (public.evil(key))")
    old.execute("INSERT INTO pgmodels.stream_consumer (name, stream_id, owner, project_id, output) "
                "SELECT 'c', s.id, %s::regrole, p.id, 'rides_predictions'::regclass "
                "FROM pgmodels.stream s, pgmodels.projects p", [role])


def _superuser(old, role: str) -> bool:
    return old.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s::name", [role]).fetchone()[0]


def test_operators_a_role_planted_in_the_extension_schema_never_run_in_the_update(cluster, old_database):
    old, dbname, role = old_database
    with role_connection(cluster, dbname, role) as atk:
        _stream_with_old_output(atk, old, role, checked=False)
        notices = []
        atk.add_notice_handler(lambda d: notices.append(d.message_primary))
        atk.execute(PLANT % {"types": "ARRAY[" + ", ".join(f"'{t}'" for t in TYPES) + "]",
                             "ops": "ARRAY[" + ", ".join(f"'{o}'" for o in OPERATORS) + "]"})
        planted = int(notices[-1].split()[-1])
        assert planted > 500  # (oid, integer), (oid, regclass), (bigint, numeric), ...
    old.execute("ALTER EXTENSION pgmodels UPDATE")  # a planted operator that ran would raise here
    assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == ("0.3.0",)
    assert not _superuser(old, role)
    # what the update does with rows did happen: the output's key converted, the grants kept
    assert old.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                       "'rides_predictions'::regclass::oid AND attname = 'key'::name").fetchone() == ("bigint",)
    assert old.execute("SELECT has_function_privilege('public', 'predict(text, real[])', 'EXECUTE'), "
                       "has_function_privilege(%s, 'predict(text, real[])', 'EXECUTE')", [role]).fetchone() == \
        (False, True)


def test_an_output_table_with_the_owner_s_code_keeps_text_and_the_code_never_runs_in_the_update(cluster,
                                                                                                 old_database):
    """The reviewer's reproduction: a CHECK on the 0.2.0 output whose function RESETs ROLE
    when it runs in another's session. The update leaves that table as it is and says
    what its owner runs; the owner's own ALTER then converts it, as the owner."""
    old, dbname, role = old_database
    with role_connection(cluster, dbname, role) as atk:
        _stream_with_old_output(atk, old, role, checked=True)
        notices = []  # the fields, copied in the handler (a diagnostic is valid only there)
        old.add_notice_handler(lambda d: notices.append(Notice(d.severity, d.message_primary, d.message_detail,
                                                               d.message_hint)))
        old.execute("ALTER EXTENSION pgmodels UPDATE")
        assert not _superuser(old, role)
        assert old.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
                           "'rides_predictions'::regclass::oid AND attname = 'key'::name").fetchone() == ("text",)
        kept = [n for n in notices if "keeps its keys as text" in (n.message_primary or "")]
        assert len(kept) == 1 and kept[0].severity == "WARNING" and "CHECK" in kept[0].message_detail
        statement = kept[0].message_hint.split("its owner can convert it: ")[1].rstrip(".")
        assert statement == "ALTER TABLE public.rides_predictions ALTER COLUMN key TYPE bigint USING key::bigint"
        atk.execute(statement)  # the owner's own session: the check runs as the owner, session and all
        assert not _superuser(old, role)
        assert atk.execute("SELECT count(*) FROM rides_predictions WHERE key = 2").fetchone() == (1,)


def test_a_fresh_install_binds_nothing_to_operators_a_role_planted(cluster, name):
    """CREATE EXTENSION pgmodels and pgmodels_pgml in a database whose public schema holds
    a role's operators: nothing runs them, and no view, default, check or index of the
    extensions refers to one (each would run it later, as whoever reads)."""
    dbname = name + "_fresh"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}")
        admin.execute(f"CREATE ROLE {name}_atk LOGIN PASSWORD 'pw'")
    try:
        with psycopg.connect(cluster.url(dbname), autocommit=True) as db:
            db.execute(f"GRANT USAGE, CREATE ON SCHEMA public TO {name}_atk")
            with role_connection(cluster, dbname, f"{name}_atk") as atk:
                atk.execute(PLANT % {"types": "ARRAY[" + ", ".join(f"'{t}'" for t in TYPES) + "]",
                                     "ops": "ARRAY[" + ", ".join(f"'{o}'" for o in OPERATORS) + "]"})
            db.execute("CREATE EXTENSION pgmodels CASCADE")  # a planted operator that ran would raise here
            db.execute("CREATE EXTENSION pgmodels_pgml")
            bound = db.execute("""SELECT pg_catalog.count(*) FROM pg_catalog.pg_depend d
                                    JOIN pg_catalog.pg_operator o ON o.oid OPERATOR(pg_catalog.=) d.refobjid
                                   WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_operator'::regclass::oid
                                     AND o.oprnamespace OPERATOR(pg_catalog.=) 'public'::regnamespace::oid""").fetchone()
            assert bound == (0,)
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            admin.execute(f"DROP ROLE IF EXISTS {name}_atk")


INJECTIONS = ["$body$;ALTER ROLE {role} SUPERUSER;SELECT $body$", "$f$;ALTER ROLE {role} SUPERUSER;SELECT $f$",
              "';ALTER ROLE {role} SUPERUSER;SELECT '", '");ALTER ROLE {role} SUPERUSER;SELECT ("']


def test_a_stream_on_a_table_or_key_named_to_break_out_of_the_trigger_body_runs_nothing(cluster, conn, make_role, name):
    """Found by the second review: the capture trigger's body was dollar-quoted text with
    the table's and the key column's names in it, so a name holding the closing tag added
    statements that ran as the extension's owner (check_function_bodies off, which any
    role may set and every extension script has). As a role granted create_stream only."""
    role, _ = make_role("r" + name[-6:] + "_inj")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION create_stream(text, text, text) TO {role}")
    def q(identifier: str) -> str:
        return '"' + identifier.replace('"', '""') + '"'

    with role_connection(cluster, conn.info.dbname, role) as r:
        r.execute("SET check_function_bodies = off")
        try:
            for i, template in enumerate(INJECTIONS):
                evil = template.format(role=role)
                table, keyed = f"i{i}{evil}", f"{name}_k{i}"  # within 63 bytes: both tags in the name
                assert len(table.encode()) <= 63
                r.execute(f"CREATE TABLE public.{q(table)} (id int, a real)")
                r.execute("SELECT create_stream(%s, %s)", [f"{name}_t{i}", f"public.{q(table)}"])
                r.execute(f"CREATE TABLE public.{q(keyed)} ({q(evil)} int, a real)")
                r.execute("SELECT create_stream(%s, %s, %s)", [f"{name}_k{i}", f"public.{q(keyed)}", evil])
                # the streams capture, keys and all
                r.execute(f"INSERT INTO public.{q(table)} VALUES (1, 1)")
                r.execute(f"INSERT INTO public.{q(keyed)} VALUES (7, 1)")
            assert not _superuser(conn, role)
            ids = [i for (i,) in conn.execute("SELECT stream_id FROM pgmodels.streams WHERE owner = %s::text",
                                              [role]).fetchall()]
            assert len(ids) == 2 * len(INJECTIONS)
            for i in ids:  # each captured its row
                assert conn.execute(f"SELECT pg_catalog.count(*) FROM pgmodels.stream_{i}_log").fetchone() == (1,)
        finally:
            r.execute("SELECT drop_stream(name) FROM pgmodels.streams")


def test_the_update_remakes_capture_triggers_of_tables_renamed_to_break_out(cluster, old_database):
    old, dbname, role = old_database
    with role_connection(cluster, dbname, role) as atk:
        atk.execute("CREATE TABLE t (id int, a real)")
        atk.execute("SELECT create_stream('s1', 't', 'id')")
        atk.execute(f'ALTER TABLE t RENAME TO "{INJECTIONS[0].format(role=role)}"')
    old.execute("ALTER EXTENSION pgmodels UPDATE")  # the update turns check_function_bodies off
    assert not _superuser(old, role)
    with role_connection(cluster, dbname, role) as atk:
        atk.execute(f'INSERT INTO "{INJECTIONS[0].format(role=role)}" VALUES (1, 1)')
    stream_id = old.execute("SELECT id FROM pgmodels.stream WHERE name = 's1'").fetchone()[0]
    assert old.execute(f"SELECT pg_catalog.count(*) FROM pgmodels.stream_{stream_id}_log").fetchone() == (1,)
