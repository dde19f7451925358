"""Streams keep the key's type (issue #26, item 5): a consumer's output table has its key
in the type of the stream's key column, so it joins back to the stream's table without a
cast and orders as the key does; latest_prediction takes the key in its own type or as
text; an output table made before 0.3.0 (keys as text) is converted by the upgrade, as its
consumer's owner. Everything runs as roles granted only create_stream and add_consumer."""

from __future__ import annotations

import re
from collections import namedtuple

import psycopg
import pytest

from dbhelpers import ROOT, sql_error
from streamhelpers import ADD_CONSUMER, CREATE_STREAM, drain, regression_project

# (the key column's type, an expression for the i-th key, a literal of key 7 as SQL writes it)
KEYS = {
    "bigint": ("bigint", "9007199254740990 + i", "9007199254740997"),  # beyond double precision
    "integer": ("integer", "i", "7"),
    "text": ("text", "'k' || i", "'k7'"),
    "uuid": ("uuid", "md5(i::text)::uuid", f"'{__import__('hashlib').md5(b'7').hexdigest()}'::uuid"),
    "numeric": ("numeric(12,3)", "(i / 8.0)::numeric(12,3)", "0.875"),
    "date": ("date", "date '2024-02-25' + i", "date '2024-03-03'"),
}
N = 20


@pytest.fixture
def analyst(conn, make_role, name):
    """A role that may make streams and consumers (and nothing else), a model it may
    predict with, and a reader role; returns (role, connection, reader role, reader)."""
    regression_project(conn, name + "_m")
    role, alice = make_role(name + "_a")
    reader_role, reader = make_role(name + "_r")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE_STREAM}, {ADD_CONSUMER} TO {role}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name + "_m", role])
    yield role, alice, reader_role, reader
    # the streams go before their tables (their logs hold rows of the tables' types)
    conn.execute("SELECT drop_stream(s.name, true) FROM pgmodels.stream s WHERE s.owner = %s::regrole", [role])


def keyed_stream(alice, name: str, key_type: str, expr: str, n: int = N, model: str | None = None) -> tuple[str, str]:
    """A table keyed by a column of key_type with n events, its stream and a consumer of
    model (name_m), processed; returns (table, output table)."""
    table = name + "_ev"
    alice.execute(f"CREATE TABLE {table} (k {key_type} PRIMARY KEY, a float8, b float8)")
    alice.execute("SELECT create_stream(%s, %s, 'k')", [name, table])
    alice.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", model or name + "_m"])
    alice.execute(f"INSERT INTO {table} SELECT {expr}, i % 13, (i * 5) % 17 FROM generate_series(1, {n}) i")
    assert drain(alice, name + "_c") == n
    return table, name + "_c_predictions"


def column_type(conn, relation: str, column: str) -> str:
    return conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                        "AND attname = %s", [relation, column]).fetchone()[0]


@pytest.mark.parametrize("kind", list(KEYS))
def test_the_output_keeps_the_key_s_type_and_joins_back(conn, analyst, name, kind):
    role, alice, reader_role, reader = analyst
    key_type, expr, seven = KEYS[kind]
    table, out = keyed_stream(alice, name, key_type, expr)
    assert column_type(conn, out, "key") == column_type(conn, table, "k") == key_type
    # a join back to the events without a cast, each prediction the model's for its row
    assert alice.execute(f"SELECT count(*) FILTER (WHERE abs(o.prediction - (3 * e.a - 2 * e.b + 1)) < 0.01), count(*) "
                         f"FROM {out} o JOIN {table} e ON e.k = o.key").fetchone() == (N, N)
    # range reads order as the key does: the keys above the 10th are the 10 last
    tenth = f"(SELECT k FROM {table} ORDER BY k OFFSET 9 LIMIT 1)"
    assert alice.execute(f"SELECT count(*) FROM {out} WHERE key > {tenth}").fetchone() == (10,)
    # readers: latest_prediction with the key in its own type (a literal, a column), or as text
    alice.execute(f"GRANT SELECT ON {out} TO {reader_role}")
    expected = alice.execute(f"SELECT prediction FROM {out} WHERE key = {seven}").fetchone()[0]
    assert reader.execute(f"SELECT latest_prediction(%s, {seven})", [name + "_c"]).fetchone() == (expected,)
    text7 = alice.execute(f"SELECT ({seven})::text").fetchone()[0]
    assert reader.execute("SELECT latest_prediction(%s, %s)", [name + "_c", text7]).fetchone() == (expected,)
    assert reader.execute("SELECT latest_prediction(%s, %s::text)", [name + "_c", text7]).fetchone() == (expected,)
    # read_predictions: every prediction, with its key as text
    read = reader.execute("SELECT key, prediction FROM read_predictions(%s, 0)", [name + "_c"]).fetchall()
    assert len(read) == N and (text7, expected) in read
    keys = {r[0] for r in alice.execute(f"SELECT k::text FROM {table}")}
    assert {k for k, _ in read} == keys


def test_latest_prediction_takes_integers_text_and_uuids_as_postgresql_resolves_them(conn, analyst, name):
    role, alice, reader_role, reader = analyst
    table, out = keyed_stream(alice, name, "bigint", "i")
    c = name + "_c"
    seven = alice.execute(f"SELECT prediction FROM {out} WHERE key = 7").fetchone()[0]
    for literal in ("7", "'7'", "7::smallint", "7::bigint", "7.0", "'7'::varchar"):
        assert alice.execute(f"SELECT latest_prediction('{c}', {literal})").fetchone() == (seven,), literal
    # a number that is no bigint matches none, as in SQL (not rounded to a key)
    assert alice.execute(f"SELECT latest_prediction('{c}', 7.4)").fetchone() == (None,)
    assert alice.execute(f"SELECT latest_prediction('{c}', 999)").fetchone() == (None,)
    err = sql_error(alice, f"SELECT latest_prediction('{c}', 'seven')")
    assert err.sqlstate == "22P02" and "bigint" in err.diag.message_primary
    err = sql_error(alice, f"SELECT latest_prediction('{c}', gen_random_uuid())")
    assert err.sqlstate == "42883" and "uuid" in err.diag.message_primary and "bigint" in err.diag.message_hint
    # a parameter: psycopg sends an int as a number, a str as text
    assert alice.execute("SELECT latest_prediction(%s, %s)", [c, 7]).fetchone() == (seven,)
    assert alice.execute("SELECT latest_prediction(%s, %s)", [c, "7"]).fetchone() == (seven,)


def test_keys_keep_their_value_whatever_the_producer_s_settings(conn, analyst, connect, name):
    """The log's text form is fixed (ISO, UTC, exact floats), so a producer with other
    settings makes the same keys, which convert back exactly in the worker's session."""
    role, alice, reader_role, reader = analyst
    table = name + "_ev"
    alice.execute(f"CREATE TABLE {table} (k timestamptz PRIMARY KEY, d date, f float8, a float8, b float8)")
    alice.execute("SELECT create_stream(%s, %s, 'k')", [name, table])
    alice.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    # a second stream on the same rows, keyed by a float
    alice.execute(f"CREATE TABLE {table}2 (f float8 PRIMARY KEY, a float8, b float8)")
    alice.execute("SELECT create_stream(%s, %s, 'f')", [name + "_f", table + "2"])
    alice.execute("SELECT add_consumer(%s, %s, %s)", [name + "_f", name + "_cf", name + "_m"])
    conn.execute(f"GRANT INSERT ON {table}, {table}2 TO {reader_role}")
    for setting in ("DateStyle = 'SQL, DMY'", "TimeZone = 'Pacific/Chatham'", "extra_float_digits = -3"):
        reader.execute(f"SET {setting}")
    reader.execute(f"INSERT INTO {table} SELECT timestamptz '2024-03-05 10:00:00.123456+00' + i * interval '1 day 7 min', "
                   "date '2024-01-02' + i, i / 3.0, i, i FROM generate_series(1, 12) i")
    reader.execute(f"INSERT INTO {table}2 SELECT 0.1 * i + 0.2, i, i FROM generate_series(1, 12) i")
    alice.execute("SET DateStyle = 'German, MDY'")
    alice.execute("SET TimeZone = 'America/Los_Angeles'")
    assert drain(alice, name + "_c") == 12 and drain(alice, name + "_cf") == 12
    assert alice.execute(f"SELECT count(*) FROM {name}_c_predictions o JOIN {table} e ON e.k = o.key").fetchone() == (12,)
    assert alice.execute(f"SELECT count(*) FROM {name}_cf_predictions o JOIN {table}2 e ON e.f = o.key"
                         ).fetchone() == (12,)
    assert conn.execute("SELECT count(*) FROM pgmodels.stream_dead_letters WHERE consumer IN (%s, %s)",
                        [name + "_c", name + "_cf"]).fetchone() == (0,)  # the database's other tests make some


def test_a_key_that_does_not_convert_is_a_dead_letter(conn, analyst, name):
    """The stream's key column made again as text after the consumer was added: the keys
    that are no bigint go to the dead letters, the others are scored."""
    role, alice, reader_role, reader = analyst
    table, out = keyed_stream(alice, name, "bigint", "i", n=5)
    alice.execute(f"ALTER TABLE {table} DROP COLUMN k")
    alice.execute(f"ALTER TABLE {table} ADD COLUMN k text")
    alice.execute(f"INSERT INTO {table} (k, a, b) VALUES ('41', 1, 1), ('forty-two', 2, 2), ('43', 3, 3)")
    assert drain(alice, name + "_c") == 3
    assert [r[0] for r in alice.execute(f"SELECT key FROM {out} WHERE key > 40 ORDER BY key")] == [41, 43]
    dead = alice.execute("SELECT event_key, error_sqlstate, error FROM pgmodels.stream_dead_letters").fetchall()
    assert len(dead) == 1 and dead[0][:2] == ("forty-two", "22P02") and "bigint" in dead[0][2]


def test_an_output_key_of_a_type_a_role_made_is_refused(conn, analyst, name):
    """The owner gives its output's key a domain of its own (with a check that records who
    runs it): neither the worker nor a reader converts a key into it."""
    role, alice, reader_role, reader = analyst
    table, out = keyed_stream(alice, name, "bigint", "i", n=3)
    alice.execute(f"CREATE TABLE {name}_seen (who name)")
    alice.execute(f"GRANT INSERT ON {name}_seen TO PUBLIC")
    alice.execute(f"""CREATE FUNCTION {name}_spy(bigint) RETURNS boolean LANGUAGE plpgsql AS $f$
                      BEGIN INSERT INTO public.{name}_seen VALUES (current_user); RETURN true; END $f$""")
    alice.execute(f"CREATE DOMAIN {name}_key AS bigint CHECK (public.{name}_spy(VALUE))")
    alice.execute(f"ALTER TABLE {out} ALTER COLUMN key TYPE {name}_key")
    alice.execute(f"TRUNCATE {name}_seen")
    alice.execute(f"GRANT SELECT ON {out} TO {reader_role}")
    for who in (reader, conn):
        for statement in ("SELECT latest_prediction(%s, '2')", "SELECT latest_prediction(%s, 2)",
                          "SELECT * FROM read_predictions(%s, 0)"):
            err = sql_error(who, statement, [name + "_c"])
            assert err.sqlstate == "42804" and "built-in" in err.diag.message_primary, statement
    alice.execute(f"INSERT INTO {table} SELECT i, 1, 1 FROM generate_series(10, 12) i")
    err = sql_error(alice, "SELECT process_stream(%s)", [name + "_c"])
    assert err.sqlstate == "42804" and "built-in" in err.diag.message_primary
    assert alice.execute(f"SELECT count(*) FROM {name}_seen").fetchone() == (0,)


# -- the upgrade from 0.2.0 ----------------------------------------------------------------

Notice = namedtuple("Notice", "severity message_primary message_detail message_hint")  # a diagnostic's fields,
# copied in the handler (the object is valid only there)
UPGRADE_DO = re.search(r"^DO \$keys\$.*?^\$keys\$;", (ROOT / "sql" / "078_stream_keys.sql").read_text(),
                       re.S | re.M).group(0)


def test_the_upgrade_converts_a_text_output_and_leaves_one_with_the_owner_s_code_to_its_owner(conn, analyst, name):
    """A 0.2.0 output (keys as text, as add_consumer made them then) becomes bigint by the
    statement the upgrade runs (sql/078_stream_keys.sql's DO block). One with a check the
    owner wrote keeps text: the rewrite would run the owner's function inside the
    upgrade's (a superuser's) session, where it could RESET ROLE; the warning gives the
    owner the statement, which then runs as the owner. Processing, latest_prediction and
    read_predictions work on the text output before and on the converted one after."""
    role, alice, reader_role, reader = analyst
    table, out = keyed_stream(alice, name, "bigint", "i", n=6)
    conn.execute(f"ALTER TABLE {out} ALTER COLUMN key TYPE text")  # as 0.2.0 made it
    # before: a text output still works
    alice.execute(f"INSERT INTO {table} SELECT i, i % 13, 1 FROM generate_series(7, 9) i")
    assert drain(alice, name + "_c") == 3
    seven = alice.execute(f"SELECT prediction FROM {out} WHERE key = '7'").fetchone()[0]
    assert alice.execute("SELECT latest_prediction(%s, 7), latest_prediction(%s, '7')",
                         [name + "_c", name + "_c"]).fetchone() == (seven, seven)
    # the owner's check on its key: records who evaluates it, and in whose session
    alice.execute(f"CREATE TABLE {name}_seen (who name, session name)")
    alice.execute(f"GRANT INSERT ON {name}_seen TO PUBLIC")
    alice.execute(f"""CREATE FUNCTION {name}_spy(anyelement) RETURNS boolean LANGUAGE plpgsql AS $f$
                      BEGIN INSERT INTO public.{name}_seen VALUES (current_user, session_user); RETURN true; END $f$""")
    alice.execute(f"ALTER TABLE {out} ADD CONSTRAINT spy CHECK (public.{name}_spy(key))")
    alice.execute(f"TRUNCATE {name}_seen")
    notices = []
    conn.add_notice_handler(lambda d: notices.append(Notice(d.severity, d.message_primary, d.message_detail,
                                                            d.message_hint)))
    conn.execute(UPGRADE_DO)
    assert column_type(conn, out, "key") == "text"
    assert conn.execute(f"SELECT count(*) FROM {name}_seen").fetchone() == (0,)
    [kept] = notices
    assert kept.severity == "WARNING" and "keeps its keys as text" in kept.message_primary
    assert "CHECK" in kept.message_detail
    statement = kept.message_hint.split("its owner can convert it: ")[1].rstrip(".")
    alice.execute(statement)
    assert column_type(conn, out, "key") == "bigint"
    assert set(conn.execute(f"SELECT who, session FROM {name}_seen").fetchall()) == {(role, role)}
    assert conn.execute(f"SELECT tableowner FROM pg_tables WHERE tablename = %s", [out]).fetchone() == (role,)
    assert alice.execute(f"SELECT count(*) FROM {out} o JOIN {table} e ON e.k = o.key").fetchone() == (9,)
    alice.execute(f"INSERT INTO {table} SELECT i, 1, 1 FROM generate_series(10, 11) i")
    assert drain(alice, name + "_c") == 2
    assert alice.execute("SELECT latest_prediction(%s, 7)", [name + "_c"]).fetchone() == (seven,)
    assert len(alice.execute("SELECT * FROM read_predictions(%s, 0)", [name + "_c"]).fetchall()) == 11
    # run again: nothing left to do
    notices.clear()
    conn.execute(UPGRADE_DO)
    assert notices == [] and column_type(conn, out, "key") == "bigint"


def test_an_output_whose_keys_do_not_convert_keeps_text_and_says_why(conn, analyst, name):
    role, alice, reader_role, reader = analyst
    table, out = keyed_stream(alice, name, "integer", "i", n=4)
    conn.execute(f"ALTER TABLE {out} ALTER COLUMN key TYPE text")
    conn.execute(f"UPDATE {out} SET key = 'four' WHERE key = '4'")
    # and one whose stream's key column is gone
    table2, out2 = keyed_stream(alice, name + "_2", "date", "current_date + i", n=2, model=name + "_m")
    conn.execute(f"ALTER TABLE {out2} ALTER COLUMN key TYPE text")
    alice.execute(f"ALTER TABLE {table2} DROP COLUMN k")
    notices = []
    conn.add_notice_handler(lambda d: notices.append((d.message_primary, d.message_detail)))
    conn.execute(UPGRADE_DO)
    assert column_type(conn, out, "key") == "text" and column_type(conn, out2, "key") == "text"
    assert len(notices) == 2
    (first, why), (second, gone) = sorted(notices, key=lambda n: n[0].find(out2) >= 0)
    assert out in first and "keeps its keys as text" in first and '"four"' in why and "integer" in why
    assert out2 in second and "gone" in gone
    # the text output still answers
    assert alice.execute("SELECT latest_prediction(%s, 3) IS NOT NULL", [name + "_c"]).fetchone() == (True,)


def test_the_upgrade_from_0_2_0_converts_output_tables(cluster, name):
    """ALTER EXTENSION pgmodels UPDATE on a 0.2.0 database with a stream, a consumer and
    its text output: the output's key becomes the stream's key type."""
    dbname = name + "_up"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}")
    try:
        with psycopg.connect(cluster.url(dbname), autocommit=True) as old:
            old.execute("CREATE EXTENSION pgmodels VERSION '0.2.0' CASCADE")
            old.execute("CREATE TABLE rides (ride_id bigint PRIMARY KEY, a float8, b float8)")
            old.execute("SELECT create_stream('rides', 'rides', 'ride_id')")
            # the consumer and its output table as 0.2.0's add_consumer made them
            old.execute("INSERT INTO pgmodels.projects (name, task, owner) VALUES ('m', 'regression', 'postgres')")
            old.execute("""CREATE TABLE rides_predictions (event_id bigint PRIMARY KEY, key text, prediction real,
                               probabilities real[], label text, model_id bigint NOT NULL, model_version integer NOT NULL,
                               event_time timestamptz NOT NULL, predicted_at timestamptz NOT NULL, delivery bigint NOT NULL)""")
            old.execute("""INSERT INTO rides_predictions SELECT i, i::text, i, NULL, NULL, 1, 1, now(), now(), i
                             FROM generate_series(1, 3) i""")
            old.execute("""INSERT INTO pgmodels.stream_consumer (name, stream_id, owner, project_id, output)
                           SELECT 'c', s.id, 'postgres', p.id, 'rides_predictions'::regclass
                             FROM pgmodels.stream s, pgmodels.projects p""")
            old.execute("ALTER EXTENSION pgmodels UPDATE")
            assert column_type(old, "rides_predictions", "key") == "bigint"
            assert old.execute("SELECT array_agg(key ORDER BY key) FROM rides_predictions").fetchone() == ([1, 2, 3],)
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
