"""One-row predict against the same statement without predict, with pgbench, as a role
granted predict (not a superuser): a direct connection with prepared statements, and
through PgBouncer in transaction pooling mode, at 1, 16 and 64 clients (issue #25).

- ``lookup``:  ``SELECT a, b, c, d FROM bench_pgbouncer_features WHERE id = :id``
- ``predict``: ``SELECT predict('bench_pgbouncer', ARRAY[a, b, c, d]) FROM
  bench_pgbouncer_features WHERE id = :id``: the same lookup, and the model on its row

(:id random over the table; the table and the 20-tree xgboost classifier are
bench_pgbouncer.py's). Direct: ``-M prepared`` over TCP to 127.0.0.1. Through PgBouncer
(Debian's 1.18, which keeps no prepared statements): ``-M simple``. The two sides
alternate (which goes first turns with each repetition). Every pgbench run opens new
connections, and a new backend's first predict loads Python, onnxruntime and the model
(about 0.1 to 0.2 s of CPU each, 64 of them at 64 clients: several seconds on 2 cores), so
a trial runs --warmup seconds plus --warmup-per-client seconds for each client more than
it counts (both sides alike): its TPS is the mean of pgbench's per-second progress after
them, the steady state of connections that stay open, as a pool's do. The per-second
series, startup included, is kept in the JSON.
Reported: median TPS with its spread (min, max), the ratio of the medians and the spread
of the per-pair ratios. Target: predict >= 0.8x the lookup at each client count.
pgbench, PgBouncer and the server share this machine's cores.

    .pgmodels/venv/bin/python benchmarks/bench_online.py --dsn "$(.pgmodels/venv/bin/pgmodels db url)"
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python_udfs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pgbouncer import PROJECT, SCRIPTS, TABLE, bouncer_binary, setup  # noqa: E402
from pgmodels.scale.pgbouncer import Bouncer  # noqa: E402

ROLE = f"bench_online_reader_{os.getpid()}"  # made for the run, dropped at its end
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_online.py --dsn \"$(.pgmodels/venv/bin/pgmodels db url)\""
PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps", re.M)


def reader(conn) -> str:
    """The role pgbench runs as: LOGIN, SELECT on the table, predict on the project."""
    password = secrets.token_urlsafe(18)
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(password)))
    conn.execute(f"GRANT SELECT ON {TABLE} TO {ROLE}")
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [PROJECT, ROLE])
    return password


def drop_reader(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT revoke_project(%s, %s)", [PROJECT, ROLE])
        conn.execute(f"DROP OWNED BY {ROLE}")
        conn.execute(f"DROP ROLE {ROLE}")


def pgbench(port: int, password: str, dbname: str, script: Path, clients: int, seconds: float, warmup: float,
            rows: int, protocol: str) -> dict:
    total = int(round(seconds + warmup))
    argv = ["pgbench", "-n", "-M", protocol, "-f", str(script), "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(max(1, total)), "-P", "1", "-D", f"rows={rows}", "-h", "127.0.0.1", "-p", str(port),
            "-U", ROLE, dbname]
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=password),
                          timeout=total + 300)
    if done.returncode != 0:
        raise SystemExit(f"pgbench failed: {done.stderr.strip()[-1500:]}")
    seconds_tps = [(float(t), float(v)) for t, v in PROGRESS.findall(done.stderr)]
    counted = [v for t, v in seconds_tps if t > warmup] or [v for _, v in seconds_tps]
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    return {"tps": statistics.fmean(counted) if counted else 0.0, "per_second": [v for _, v in seconds_tps],
            "failed": int(failed.group(1)) if failed else 0}


def summary(trials: dict) -> dict:
    entry = {}
    for side, ts in trials.items():
        tps = [t["tps"] for t in ts]
        entry[side] = {"trials": ts, "median_tps": statistics.median(tps), "min_tps": min(tps), "max_tps": max(tps),
                       "failed": sum(t["failed"] for t in ts)}
    pairs = [p["tps"] / lk["tps"] for p, lk in zip(trials["predict"], trials["lookup"]) if lk["tps"]]
    entry["ratio"] = entry["predict"]["median_tps"] / entry["lookup"]["median_tps"]
    entry["ratio_per_pair"] = pairs
    entry["ratio_spread"] = [min(pairs), max(pairs)]
    entry["target"] = ">= 0.8"
    entry["met"] = entry["ratio"] >= 0.8
    return entry


def run(args) -> dict:
    params = conninfo_to_dict(args.dsn)
    dbname = params.get("dbname", "pgmodels")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        setup(conn, args.rows, args.trees)
        password = reader(conn)
        server_version = conn.execute("SHOW server_version").fetchone()[0]
    try:
        return measure(args, params, dbname, password, server_version)
    finally:
        drop_reader(args.dsn)


def measure(args, params: dict, dbname: str, password: str, server_version: str) -> dict:
    with psycopg.connect(make_conninfo(args.dsn, user=ROLE, password=password), autocommit=True) as c:
        check = c.execute(f"SELECT predict(%s, ARRAY[a, b, c, d]) FROM {TABLE} WHERE id = 1", [PROJECT]).fetchone()[0]
    port = int(params.get("port", 5432))
    bouncer = Bouncer(port, params["password"], pool_mode="transaction", pool_size=args.pool_size,
                      max_client_conn=max(args.clients) + 20)
    work = Path(tempfile.mkdtemp(prefix="bench-online-"))
    files = {}
    for side, text in SCRIPTS.items():
        files[side] = work / f"{side}.sql"
        files[side].write_text("\\set id random(1, :rows)\n" + text + "\n")
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                     "command": command(args), "server_version": server_version, "role": ROLE,
                     "pgbouncer": subprocess.run([bouncer_binary(), "--version"], capture_output=True,
                                                 text=True).stdout.splitlines()[0],
                     "pgbench": subprocess.run(["pgbench", "--version"], capture_output=True, text=True).stdout.strip(),
                     "cpus": os.cpu_count(), "machine": platform.machine(),
                     "load_average_at_start": os.getloadavg(),
                     "args": {k: v for k, v in vars(args).items() if k not in ("dsn", "out")},
                     "predict_of_row_1": check, "modes": {}}
    modes = {"direct": (port, "prepared"), "pgbouncer": (bouncer.port, "simple")}
    try:
        for mode in args.modes:
            target, protocol = modes[mode]
            results["modes"][mode] = {"protocol": protocol, "clients": {}}
            for clients in args.clients:
                trials: dict[str, list] = {side: [] for side in SCRIPTS}
                for i in range(args.repeat):
                    order = list(SCRIPTS) if i % 2 == 0 else list(reversed(SCRIPTS))
                    for side in order:
                        trials[side].append(pgbench(target, password, dbname, files[side], clients, args.seconds,
                                                    args.warmup + clients * args.warmup_per_client, args.rows,
                                                    protocol))
                entry = summary(trials)
                results["modes"][mode]["clients"][str(clients)] = entry
                print(line(mode, clients, entry), flush=True)
    finally:
        bouncer.close()
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_at_end"] = os.getloadavg()
    return results


def line(mode: str, clients: int, e: dict) -> str:
    p, lk = e["predict"], e["lookup"]
    return (f"{mode:>9} {clients:>3} clients: predict {p['median_tps']:,.0f} TPS [{p['min_tps']:,.0f}-"
            f"{p['max_tps']:,.0f}], lookup {lk['median_tps']:,.0f} TPS [{lk['min_tps']:,.0f}-{lk['max_tps']:,.0f}], "
            f"ratio {e['ratio']:.2f} (pairs {e['ratio_spread'][0]:.2f}-{e['ratio_spread'][1]:.2f}), "
            f"target >= 0.8: {'met' if e['met'] else 'NOT met'}")


def command(args) -> str:
    return (f"{COMMAND} --clients {','.join(map(str, args.clients))} --modes {','.join(args.modes)} "
            f"--seconds {args.seconds:g} --warmup {args.warmup:g} --warmup-per-client {args.warmup_per_client:g} "
            f"--repeat {args.repeat} --rows {args.rows} "
            f"--trees {args.trees} --pool-size {args.pool_size}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="the server's URL, with the postgres user's password")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64])
    p.add_argument("--modes", type=lambda s: s.split(","), default=["direct", "pgbouncer"])
    p.add_argument("--seconds", type=float, default=10.0, help="counted seconds per pgbench trial")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds per trial not counted (new backends)")
    p.add_argument("--warmup-per-client", type=float, default=0.1,
                   help="seconds per trial not counted, for each client (each is a new backend to start)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rows", type=int, default=100000, help="rows of the feature table")
    p.add_argument("--trees", type=int, default=20, help="the classifier's xgboost trees")
    p.add_argument("--pool-size", type=int, default=8, help="PgBouncer's server connections")
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    unknown = set(args.modes) - {"direct", "pgbouncer"}
    if unknown:
        p.error(f"unknown mode {sorted(unknown)[0]!r}: direct or pgbouncer")
    results = run(args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"dsn: {make_conninfo(**{k: v for k, v in conninfo_to_dict(args.dsn).items() if k != 'password'})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
