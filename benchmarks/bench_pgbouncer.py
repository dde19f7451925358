"""predict() through PgBouncer in transaction pooling mode, against a plain feature lookup
through the same PgBouncer, with pgbench at 1, 16 and 64 clients.

- ``lookup``:  ``SELECT a, b, c, d FROM bench_pgbouncer_features WHERE id = :id``
- ``predict``: ``SELECT predict('bench_pgbouncer', ARRAY[a, b, c, d]) FROM
  bench_pgbouncer_features WHERE id = :id``: the same lookup, and the model on its row

(:id random over the table). Same PgBouncer (Debian's, pool_mode = transaction, a pool of
--pool-size server connections), same pgbench (-M simple: PgBouncer 1.18 keeps no
prepared statements), same run; the two sides alternate (which goes first rotates with
each repetition) and each is reported as the median TPS with its spread (min, max) over
the repetitions. The target: predict TPS >= 0.8x the lookup's at each client count.
pgbench, PgBouncer and the server share this machine's cores.

    .pgmodels/venv/bin/python benchmarks/bench_pgbouncer.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_udfs"))

from pgmodels.scale.pgbouncer import Bouncer  # noqa: E402

PROJECT = "bench_pgbouncer"
TABLE = "bench_pgbouncer_features"
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_pgbouncer.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""
SCRIPTS = {
    "lookup": f"SELECT a, b, c, d FROM {TABLE} WHERE id = :id;",
    "predict": f"SELECT predict('{PROJECT}', ARRAY[a, b, c, d]) FROM {TABLE} WHERE id = :id;",
}


def setup(conn, rows: int, trees: int) -> None:
    """A feature table keyed by id and a classifier on its four features (kept between runs)."""
    have = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [TABLE]).fetchone()[0]
    if not have or conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0] != rows:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"""CREATE TABLE {TABLE} AS
                         SELECT i AS id, (i % 17)::real AS a, ((i * 7) % 23)::real AS b, ((i * 3) % 11)::real AS c,
                                (i % 5)::real AS d, ((i % 17) + ((i * 7) % 23) > 20)::int AS y
                           FROM generate_series(1, {rows}) AS i""")
        conn.execute(f"ALTER TABLE {TABLE} ADD PRIMARY KEY (id)")
        conn.execute(f"ANALYZE {TABLE}")
    if not conn.execute("SELECT count(*) FROM pgmodels.overview WHERE project = %s AND deployed",
                        [PROJECT]).fetchone()[0]:
        conn.execute("SET pgmodels.progress_level = 'off'")
        conn.execute(f"CREATE OR REPLACE VIEW {TABLE}_train AS SELECT a, b, c, d, y FROM {TABLE} WHERE id <= 5000")
        conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y', 'xgboost', %s)",
                     [PROJECT, TABLE + "_train", json.dumps({"n_estimators": trees})]).fetchall()


def pgbench(bouncer: Bouncer, dbname: str, script: Path, clients: int, seconds: float, rows: int) -> dict:
    argv = ["pgbench", "-n", "-M", "simple", "-f", str(script), "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(max(1, round(seconds))), "-D", f"rows={rows}", "-h", "127.0.0.1", "-p", str(bouncer.port),
            "-U", "postgres", dbname]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=bouncer.password),
                          timeout=seconds + 120)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed: {done.stderr.strip()[-1500:]}")
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    latency = re.search(r"latency average = ([0-9.]+) ms", done.stdout)
    return {"tps": float(tps.group(1)), "failed": int(failed.group(1)) if failed else 0,
            "latency_ms": float(latency.group(1)) if latency else None}


def run(args) -> dict:
    params = conninfo_to_dict(args.dsn)
    dbname = params.get("dbname", "pgmodels")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        setup(conn, args.rows, args.trees)
        server_version = conn.execute("SHOW server_version").fetchone()[0]
        check = conn.execute(f"SELECT predict(%s, ARRAY[a, b, c, d]) FROM {TABLE} WHERE id = 1",
                             [PROJECT]).fetchone()[0]
    bouncer = Bouncer(int(params.get("port", 5432)), params["password"], pool_mode="transaction",
                      pool_size=args.pool_size, max_client_conn=max(args.clients) + 20)
    work = Path(tempfile.mkdtemp(prefix="bench-pgbouncer-"))
    files = {}
    for side, text in SCRIPTS.items():
        files[side] = work / f"{side}.sql"
        files[side].write_text("\\set id random(1, :rows)\n" + text + "\n")
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": command(args), "server_version": server_version,
                     "pgbouncer": subprocess.run([bouncer_binary(), "--version"], capture_output=True,
                                                 text=True).stdout.splitlines()[0],
                     "pgbench": subprocess.run(["pgbench", "--version"], capture_output=True, text=True).stdout.strip(),
                     "cpus": os.cpu_count(), "machine": platform.machine(),
                     "load_average_at_start": os.getloadavg(),
                     "args": {k: v for k, v in vars(args).items() if k not in ("dsn", "out")},
                     "predict_of_row_1": check, "clients": {}}
    try:
        for side in SCRIPTS:  # warm every pooled backend's model cache and the table's pages
            pgbench(bouncer, dbname, files[side], max(args.clients), min(args.seconds, 3), args.rows)
        for clients in args.clients:
            trials: dict[str, list] = {side: [] for side in SCRIPTS}
            for i in range(args.repeat):
                order = list(SCRIPTS) if i % 2 == 0 else list(reversed(SCRIPTS))
                for side in order:
                    trials[side].append(pgbench(bouncer, dbname, files[side], clients, args.seconds, args.rows))
            entry = {}
            for side, ts in trials.items():
                tps = [t["tps"] for t in ts]
                entry[side] = {"trials": ts, "median_tps": statistics.median(tps), "min_tps": min(tps),
                               "max_tps": max(tps), "failed": sum(t["failed"] for t in ts)}
            pairs = [p["tps"] / lk["tps"] for p, lk in zip(trials["predict"], trials["lookup"])]
            entry["ratio"] = entry["predict"]["median_tps"] / entry["lookup"]["median_tps"]
            entry["ratio_per_pair"] = pairs
            entry["ratio_spread"] = [min(pairs), max(pairs)]
            entry["target"] = ">= 0.8"
            entry["met"] = entry["ratio"] >= 0.8
            results["clients"][str(clients)] = entry
            print(line(clients, entry), flush=True)
    finally:
        bouncer.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


def bouncer_binary() -> str:
    from pgmodels.scale.pgbouncer import PGBOUNCER

    return PGBOUNCER


def line(clients: int, e: dict) -> str:
    p, lk = e["predict"], e["lookup"]
    return (f"{clients:>3} clients: predict {p['median_tps']:,.0f} TPS [{p['min_tps']:,.0f}-{p['max_tps']:,.0f}], "
            f"lookup {lk['median_tps']:,.0f} TPS [{lk['min_tps']:,.0f}-{lk['max_tps']:,.0f}], "
            f"ratio {e['ratio']:.2f} (pairs {e['ratio_spread'][0]:.2f}-{e['ratio_spread'][1]:.2f}), "
            f"target >= 0.8: {'met' if e['met'] else 'NOT met'}")


def command(args) -> str:
    return (f"{COMMAND} --clients {','.join(map(str, args.clients))} --seconds {args.seconds:g} "
            f"--repeat {args.repeat} --rows {args.rows} --trees {args.trees} --pool-size {args.pool_size}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="the server's URL, with the postgres user's password")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    p.add_argument("--seconds", type=float, default=10.0, help="per pgbench trial")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--rows", type=int, default=100000, help="rows of the feature table")
    p.add_argument("--trees", type=int, default=20, help="the classifier's xgboost trees")
    p.add_argument("--pool-size", type=int, default=8, help="PgBouncer's server connections")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    results = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"dsn: {make_conninfo(**{k: v for k, v in conninfo_to_dict(args.dsn).items() if k != 'password'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
