"""Beyond the database: a stream's predictions are an ordinary table, so logical
replication carries them out, prediction by prediction, to a second cluster (the same
change stream Debezium's PostgreSQL connector reads for Kafka Connect)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from pgmodels.cli.cluster import _pg_bindir
from streamhelpers import drain, insert_rides, regression_project, ride_stream, wait_until

PORT = 54341

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes a second cluster as the postgres user")


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True, cwd="/")


@pytest.fixture
def subscriber():
    home = tempfile.mkdtemp(prefix="pgmodels-subscriber-")
    shutil.chown(home, "postgres", "postgres")
    data = os.path.join(home, "data")
    _as_postgres(str(_pg_bindir() / "initdb"), "-D", data, "-U", "postgres", "--auth=trust")
    _as_postgres(str(_pg_bindir() / "pg_ctl"), "start", "-D", data, "-l", os.path.join(home, "log"), "-w",
                 "-o", f"-p {PORT} -k {home} -c listen_addresses=''")
    try:
        yield f"postgresql://postgres@/postgres?host={home}&port={PORT}"
    finally:
        _as_postgres(str(_pg_bindir() / "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w")
        shutil.rmtree(home, ignore_errors=True)


def test_predictions_reach_a_second_cluster_by_logical_replication(conn, cluster, name, subscriber):
    assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
    regression_project(conn, name + "_m")
    table = ride_stream(conn, name)
    conn.execute("SELECT add_consumer(%s, %s, %s)", [name, name + "_c", name + "_m"])
    out = name + "_c_predictions"
    conn.execute(f"CREATE PUBLICATION {name}_pub FOR TABLE {out}")
    try:
        insert_rides(conn, table, 100)
        drain(conn, name + "_c")  # these arrive with the initial copy
        columns = conn.execute("SELECT string_agg(format('%%I %%s', attname, format_type(atttypid, atttypmod)), ', ' "
                               "ORDER BY attnum) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                               "AND NOT attisdropped", [out]).fetchone()[0]
        with psycopg.connect(subscriber, autocommit=True) as sub:
            sub.execute(f"CREATE TABLE {out} ({columns}, PRIMARY KEY (event_id))")
            source = f"host={cluster.socket_dir} port={cluster.port} user=postgres dbname={conn.info.dbname}"
            sub.execute(f"CREATE SUBSCRIPTION {name}_sub CONNECTION '{source}' PUBLICATION {name}_pub")
            try:
                wait_until(lambda: sub.execute(f"SELECT count(*) FROM {out}").fetchone()[0] == 100, 60, 0.2)
                for i in range(3):  # then each batch, as it is committed
                    insert_rides(conn, table, 10, start=100 + 10 * i)
                    drain(conn, name + "_c")
                    wait_until(lambda n=110 + 10 * i: sub.execute(f"SELECT count(*) FROM {out}").fetchone()[0] == n,
                               30, 0.1)
                here = conn.execute(f"SELECT event_id, prediction, model_version FROM {out} ORDER BY 1").fetchall()
                there = sub.execute(f"SELECT event_id, prediction, model_version FROM {out} ORDER BY 1").fetchall()
                assert here == there and len(there) == 130
            finally:
                sub.execute(f"DROP SUBSCRIPTION {name}_sub")
    finally:
        conn.execute(f"DROP PUBLICATION {name}_pub")
