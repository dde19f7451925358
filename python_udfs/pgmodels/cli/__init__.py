"""The ``pgmodels`` command: a thin layer over the library.

Library errors become one clean line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import PgmodelsError
from .cluster import Cluster


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgmodels", description="Machine-learning models as PostgreSQL rows.")
    p.add_argument("--dir", help="the embedded cluster's home (default: $PGMODELS_HOME, else the .pgmodels of "
                                 "this directory or one above it, else the one this tool was installed into)")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="manage the embedded local cluster")
    dbsub = db.add_subparsers(dest="action", required=True)
    create = dbsub.add_parser("create", help="create (idempotent), start, and install the extension")
    from .standby import add_arguments as add_standby_arguments

    add_standby_arguments(create, dbsub)  # --standby-of, --slot, --port; db promote
    for name, text in [("start", "start the cluster"), ("stop", "stop the cluster"),
                       ("status", "show whether it runs and where its files are"),
                       ("url", "print a libpq connection URL to its pgmodels database")]:
        dbsub.add_parser(name, help=text)
    psql = dbsub.add_parser("psql", help="run psql against it; extra arguments go to psql")
    psql.add_argument("args", nargs=argparse.REMAINDER)

    inst = sub.add_parser("install", help="install the extension into an existing server's database")
    inst.add_argument("--dsn", required=True, help="libpq URL or key=value string of the target database")
    inst.add_argument("--venv", help="virtual environment the server imports from (default: this tool's)")

    doc = sub.add_parser("doctor", help="show the server's Python environment (pgmodels.doctor())")
    doc.add_argument("--dsn", help="database to ask (default: $PGMODELS_DSN, else the embedded cluster)")

    demo = sub.add_parser("demo", help="the main job: train, deploy and serve a churn model")
    demo.add_argument("--dsn", help="database to use (default: $PGMODELS_DSN, else the embedded cluster)")
    demo.add_argument("--rows", type=int, default=20000, help="rows of the synthetic churn table")

    from .serve import add_parsers as add_serve_parsers

    add_serve_parsers(sub)  # serve, token
    from ..stream.worker import add_parser as add_stream_parser

    add_stream_parser(sub)  # stream work
    from ..edge.cli import add_parser as add_edge_parser

    add_edge_parser(sub)  # edge export, public-key, verify
    return p


def _connect(dsn: str | None):
    import psycopg

    if dsn is None:  # $PGMODELS_DSN before the embedded cluster, as for serve and stream work
        dsn = os.environ.get("PGMODELS_DSN") or None
    if dsn is None:
        cluster = Cluster.from_env()
        cluster.create()
        dsn = cluster.url()
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.OperationalError as e:
        raise PgmodelsError("cannot connect to the database", detail=str(e).strip().splitlines()[0],
                            sqlstate="08000") from None


def _print_table(rows, headers) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(str(h).ljust(w) for h, w in zip(headers, widths)))
    for r in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))


def _split_dir(argv: list[str]) -> tuple[str | None, list[str]]:
    """A leading --dir DIR (or --dir=DIR), and the rest."""
    if argv[:1] == ["--dir"] and len(argv) > 1:
        return argv[1], argv[2:]
    if argv and argv[0].startswith("--dir="):
        return argv[0].split("=", 1)[1], argv[1:]
    return None, argv


def run(argv: list[str]) -> int:
    home, rest = _split_dir(argv)
    cluster = Cluster.from_env(home)
    if rest[:2] == ["db", "psql"]:  # everything after goes to psql untouched, options included
        cluster.start()
        os.execvp("psql", ["psql", cluster.url(), *rest[2:]])
    args = _parser().parse_args(argv)
    if args.command == "db":
        if args.action in ("create", "promote"):
            from .standby import run_action

            return run_action(args, cluster)
        if args.action == "start":
            cluster.start()
        elif args.action == "stop":
            cluster.stop()
        elif args.action == "status":
            for k, v in cluster.status().items():
                print(f"{k}: {v}")
            return 0 if cluster.running() else 3
        elif args.action == "url":
            print(cluster.url())
    elif args.command == "install":
        from pathlib import Path

        import psycopg

        from .install import default_venv, install_extension

        venv = Path(args.venv).resolve() if args.venv else default_venv()
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            version = install_extension(conn, venv)
        print(f"pgmodels {version} installed; pgmodels.venv = {venv}")
    elif args.command == "doctor":
        with _connect(args.dsn) as conn:
            rows = conn.execute("SELECT item, value, ok FROM pgmodels.doctor()").fetchall()
        _print_table([(i, v, "ok" if ok else "PROBLEM") for i, v, ok in rows], ("item", "value", "status"))
        return 0 if all(ok for _, _, ok in rows) else 1
    elif args.command == "demo":
        from .demo import run_demo

        with _connect(args.dsn) as conn:
            run_demo(conn, rows=args.rows)
    elif args.command == "stream":
        from ..stream.worker import run_command as run_stream

        # $PGMODELS_DSN before the embedded cluster, as for serve (the image sets it)
        return run_stream(args, lambda: os.environ.get("PGMODELS_DSN") or Cluster.from_env().url())
    elif args.command == "edge":
        from ..edge.cli import run_command as run_edge

        return run_edge(args, _connect)
    elif args.command in ("serve", "token"):
        from .serve import run_command

        return run_command(args, _connect)
    return 0


def main() -> None:
    try:
        sys.exit(run(sys.argv[1:]))
    except PgmodelsError as e:
        print("pgmodels: " + e.one_line(), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the edge: one line, not a traceback
        import psycopg

        if isinstance(e, psycopg.Error):
            diag = getattr(e, "diag", None)
            err = PgmodelsError(
                (diag.message_primary if diag and diag.message_primary else str(e).strip().splitlines()[0]),
                detail=diag.message_detail if diag else None, hint=diag.message_hint if diag else None)
        elif isinstance(e, OSError):
            err = PgmodelsError(f"{e.strerror or e}" + (f": {e.filename}" if e.filename else ""))
        else:
            err = PgmodelsError(f"internal error: {type(e).__name__}: {e}",
                                hint="This is a bug in pgmodels; please report it with the command that raised it.")
        print("pgmodels: " + err.one_line(), file=sys.stderr)
        sys.exit(1)
