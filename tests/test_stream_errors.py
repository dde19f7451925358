"""Streams: bad input is a clear error that leaves nothing behind, and who may make
streams and consumers, process them and read predictions. The attacker is a LOGIN-only
role."""

from __future__ import annotations

import pytest

from dbhelpers import sql_error
from streamhelpers import ADD_CONSUMER, CREATE_STREAM, drain, insert_rides, regression_project, ride_stream


@pytest.fixture
def stream(conn, name):
    regression_project(conn, name + "_m")
    conn.execute(f"CREATE TABLE {name}_classify AS SELECT 'x'::text AS a, 1.0 AS b, 1 AS y")
    conn.execute(f"CREATE TABLE {name}_enr (k integer PRIMARY KEY, a float8)")
    conn.execute(f"CREATE VIEW {name}_view AS SELECT 1 AS a")
    conn.execute(f"CREATE TABLE {name}_nokey (a float8, c float8)")
    conn.execute(f"CREATE TABLE {name}_textual (ride_id integer, a text, b float8)")
    conn.execute(f"CREATE TABLE {name}_shape (event_id integer PRIMARY KEY)")
    conn.execute(f"CREATE TYPE {name}_kt AS (x integer)")
    conn.execute(f"CREATE TABLE {name}_custom (k {name}_kt, a float8, b float8)")
    conn.execute(f"CREATE TEMP TABLE {name}_temp (a float8, b float8)")
    return ride_stream(conn, name)


BAD = [
    ("unknown relation", "SELECT create_stream('{n}_2', 'nope')", "42P01", "nope"),
    ("a view", "SELECT create_stream('{n}_2', '{n}_view')", "42809", "not a table"),
    ("an unknown key column", "SELECT create_stream('{n}_2', '{n}_nokey', 'ride_id')", "42703", "ride_id"),
    ("a taken stream name", "SELECT create_stream('{n}', '{n}_nokey')", "42710", "already exists"),
    ("a table that is a stream", "SELECT create_stream('{n}_2', '{n}_rides')", "42710", "already the table"),
    ("a bad stream name", "SELECT create_stream('bad name', '{n}_nokey')", "22023", "stream name"),
    ("a key of a type of the user's", "SELECT create_stream('{n}_2', '{n}_custom', 'k')", "42804", "key"),
    ("a temporary table", "SELECT create_stream('{n}_2', '{n}_temp')", "0A000", "temporary"),
    ("unknown stream", "SELECT add_consumer('nope', '{n}_c', '{n}_m')", "42704", "stream"),
    ("unknown project", "SELECT add_consumer('{n}', '{n}_c', 'nope')", "42704", "project"),
    ("features the events cannot supply", "SELECT add_consumer('{n}_nokey_s', '{n}_c', '{n}_m')", "42703", '"b"'),
    ("a feature of the wrong type", "SELECT add_consumer('{n}_text_s', '{n}_c', '{n}_m')", "42804", '"a"'),
    ("enrichment without a key", "SELECT add_consumer('{n}_nokey_s', '{n}_c', '{n}_m', NULL, '{n}_enr', 'k')",
     "55000", "key column"),
    ("an unknown enrich key", "SELECT add_consumer('{n}', '{n}_c', '{n}_m', NULL, '{n}_enr', 'nope')", "42703", "nope"),
    ("an output of another shape", "SELECT add_consumer('{n}', '{n}_c', '{n}_m', '{n}_shape')", "42804", "shape"),
    ("unknown consumer", "SELECT process_stream('nope')", "42704", "consumer"),
    ("no events asked for", "SELECT process_stream('{n}_ok', 0)", "22023", "max_events"),
    ("reading an unknown consumer", "SELECT * FROM read_predictions('nope', 0)", "42704", "consumer"),
    ("a cursor of no prediction", "SELECT * FROM read_predictions('{n}_ok', 123456)", "22023", "123456"),
    ("dropping a stream with consumers", "SELECT drop_stream('{n}')", "2BP01", "consumers"),
]


@pytest.mark.parametrize("what,statement,sqlstate,word", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_clear_error(conn, stream, name, what, statement, sqlstate, word):
    conn.execute("SELECT create_stream(%s, %s)", [name + "_nokey_s", name + "_nokey"])
    conn.execute("SELECT create_stream(%s, %s, 'ride_id')", [name + "_text_s", name + "_textual"])
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_ok", name + "_m"])
    before = conn.execute("SELECT (SELECT count(*) FROM pgmodels.stream), (SELECT count(*) FROM pgmodels.stream_consumer), "
                          "(SELECT count(*) FROM pg_class)").fetchone()
    err = sql_error(conn, statement.format(n=name))
    message = err.diag.message_primary
    assert err.sqlstate == sqlstate, message
    assert word in message and message[0].islower() and "Traceback" not in message
    after = conn.execute("SELECT (SELECT count(*) FROM pgmodels.stream), (SELECT count(*) FROM pgmodels.stream_consumer), "
                         "(SELECT count(*) FROM pg_class)").fetchone()
    assert after == before  # nothing half-made: no stream, consumer, log or output table


def test_who_may_make_streams_consume_them_and_read_predictions(conn, make_role, name):
    regression_project(conn, name + "_m")
    alice_role, alice = make_role(name + "_a")
    mallory_role, mallory = make_role(name + "_x")
    conn.execute(f"CREATE TABLE {name}_rides (ride_id bigserial PRIMARY KEY, a float8, b float8)")
    conn.execute(f"ALTER TABLE {name}_rides OWNER TO {alice_role}")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {alice_role}, {mallory_role}")
    # making a stream needs the grant, and the table's ownership
    assert sql_error(alice, "SELECT create_stream(%s, %s, 'ride_id')", [name, name + "_rides"]).sqlstate == "42501"
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE_STREAM}, {ADD_CONSUMER} TO {alice_role}, {mallory_role}")
    err = sql_error(mallory, "SELECT create_stream(%s, %s, 'ride_id')", [name, name + "_rides"])
    assert err.sqlstate == "42501" and "owner" in err.diag.message_primary
    alice.execute("SELECT create_stream(%s, %s, 'ride_id')", [name, name + "_rides"])
    # consuming needs SELECT on the table (the events are its rows) and predict
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name + "_m", alice_role])
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name + "_m", mallory_role])
    err = sql_error(mallory, "SELECT add_consumer(%s, %s, %s)", [name, name + "_spy", name + "_m"])
    assert err.sqlstate == "42501" and "stream" in err.diag.message_primary
    alice.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    insert_rides(alice, name + "_rides", 30)
    # only the consumer's owner processes it; the log is closed to everyone else
    assert sql_error(mallory, "SELECT process_stream(%s)", [name + "_c"]).sqlstate == "42501"
    sid = conn.execute("SELECT id FROM pgmodels.stream WHERE name = %s", [name]).fetchone()[0]
    for statement in (f"SELECT * FROM pgmodels.stream_{sid}_log", "SELECT * FROM pgmodels.stream_consumer",
                      f"INSERT INTO pgmodels.stream_{sid}_log_0 (ev_id, ev_txid, ev_time) VALUES (1, '1', now())"):
        assert sql_error(mallory, statement).sqlstate == "42501"
    cid = conn.execute("SELECT id FROM pgmodels.stream_consumer WHERE name = %s", [name + "_c"]).fetchone()[0]
    err = sql_error(mallory, "SELECT pgmodels._consumer_advance(pgmodels._credential(), %s, 0, 1000000, true, 0, 0)",
                    [cid])
    assert err.sqlstate == "55000"
    assert mallory.execute("SELECT count(*) FROM pgmodels.stream_consumers").fetchone() == (0,)
    assert drain(alice, name + "_c") == 30
    # predictions are read with the output table's own grants
    assert sql_error(mallory, "SELECT * FROM read_predictions(%s, 0)", [name + "_c"]).sqlstate == "42501"
    alice.execute(f"GRANT SELECT ON {name}_c_predictions TO {mallory_role}")
    assert len(mallory.execute("SELECT * FROM read_predictions(%s, 0)", [name + "_c"]).fetchall()) == 30
    # losing SELECT on the table stops the consumer
    conn.execute(f"ALTER TABLE {name}_rides OWNER TO postgres")
    insert_rides(conn, name + "_rides", 5, start=30)
    err = sql_error(alice, "SELECT process_stream(%s)", [name + "_c"])
    assert err.sqlstate == "42501"
    # its access to the log goes with its SELECT on the table (row-level policy), and so
    # does the log's maintenance; read committed only
    assert alice.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log").fetchone() == (0,)
    err = sql_error(mallory, "SELECT pgmodels._stream_maintain(pgmodels._credential(), %s)", [sid])
    assert err.sqlstate == "42501"
    conn.execute(f"ALTER TABLE {name}_rides OWNER TO {alice_role}")
    alice.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert sql_error(alice, "SELECT * FROM stream_maintenance(%s)", [name]).sqlstate == "25001"
    alice.execute("ROLLBACK")
    conn.execute(f"ALTER TABLE {name}_rides OWNER TO postgres")
    # producers need nothing of pgmodels: the trigger writes the log for them
    conn.execute(f"GRANT INSERT ON {name}_rides TO {mallory_role}")
    conn.execute(f"GRANT USAGE ON SEQUENCE {name}_rides_ride_id_seq TO {mallory_role}")
    mallory.execute(f"INSERT INTO {name}_rides (a, b) VALUES (1, 1)")
    assert conn.execute(f"SELECT count(*) FROM pgmodels.stream_{sid}_log").fetchone() == (36,)


def test_drop_consumer_and_stream(conn, name):
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    sid = conn.execute("SELECT stream_id FROM pgmodels.streams WHERE name = %s", [name]).fetchone()[0]
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_d", name + "_m"])
    insert_rides(conn, table, 5)
    drain(conn, name + "_c")
    conn.execute("SELECT drop_consumer(%s, drop_output => true)", [name + "_d"])
    assert conn.execute("SELECT to_regclass(%s)", [name + "_d_predictions"]).fetchone() == (None,)
    conn.execute("SELECT drop_stream(%s, cascade => true)", [name])
    assert conn.execute("SELECT count(*) FROM pgmodels.stream_consumer WHERE name = %s", [name + "_c"]).fetchone() == (0,)
    assert conn.execute(f"SELECT count(*) FROM {name}_c_predictions").fetchone() == (5,)  # kept
    assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                        [table]).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE %s",
                        [f"stream_{sid}_log%"]).fetchone() == (0,)
    insert_rides(conn, table, 5, start=5)  # the table goes on without its stream
