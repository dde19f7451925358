"""`pgmodels serve` (the inference server) and `pgmodels token` (its API tokens)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile

from ..errors import PgmodelsError


def add_parsers(sub) -> None:
    serve = sub.add_parser("serve", help="serve predictions over HTTP and gRPC (the Open Inference Protocol v2)")
    serve.add_argument("--dsn", help="database to serve from (default: $PGMODELS_DSN, else the embedded cluster); its "
                                     "role must be able to SET ROLE to every token's role")
    serve.add_argument("--read-dsn", action="append", default=[], metavar="URL",
                       help="a hot standby to send inference to (repeatable): round robin, skipping one that "
                            "fails; tokens and the request log stay on --dsn, the primary")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    serve.add_argument("--grpc-port", type=int, default=8081, help="gRPC port (default 8081; 0 turns gRPC off)")
    serve.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    serve.add_argument("--anonymous-role", help="run requests without a token as this role (local development "
                                                "only; off by default)")
    serve.add_argument("--pool-size", type=int, default=8, help="database connections per worker (default 8)")
    serve.add_argument("--statement-timeout", type=int, default=10000, help="per request, in ms (default 10000)")
    serve.add_argument("--max-body", type=int, default=8 * 1024 * 1024, help="largest request body in bytes")
    serve.add_argument("--body-timeout", type=float, default=10.0,
                       help="seconds a client may take to send a request body (default 10)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--log-sample", type=float, default=1.0,
                       help="share of inference requests written to pgmodels.request_log with the model version "
                            "that answered (default 1: all; 0 turns it off)")

    token = sub.add_parser("token", help="API tokens of pgmodels serve")
    tsub = token.add_subparsers(dest="action", required=True)
    create = tsub.add_parser("create", help="create a token whose requests run as ROLE, and print it (shown once)")
    create.add_argument("role")
    revoke = tsub.add_parser("revoke", help="revoke a token by its id (see `pgmodels token list`) or itself")
    revoke.add_argument("token")
    tsub.add_parser("list", help="the tokens of the roles you are a member of")
    for p in (create, revoke, tsub.choices["list"]):
        p.add_argument("--dsn", help="database to use (default: $PGMODELS_DSN, else the embedded cluster)")


def run_command(args: argparse.Namespace, connect) -> int:
    if args.command == "token":
        return _token(args, connect)
    return _serve(args)


def _token(args, connect) -> int:
    with connect(args.dsn) as conn:
        if args.action == "create":
            print(conn.execute("SELECT create_api_token(%s)", [args.role]).fetchone()[0])
        elif args.action == "revoke":
            arg = int(args.token) if args.token.isdigit() else args.token
            done = conn.execute("SELECT revoke_api_token(%s)", [arg]).fetchone()[0]
            if not done:
                raise PgmodelsError("no such token", sqlstate="42704")
            print("revoked")
        else:
            for r in conn.execute("SELECT id, role, created_by, created_at FROM pgmodels.api_tokens ORDER BY id"):
                print(f"{r[0]}\t{r[1]}\tcreated by {r[2]} at {r[3]:%Y-%m-%d %H:%M:%S}")
    return 0


def _check(dsn: str, anonymous_role: str | None) -> None:
    """Refuse a superuser as the anonymous role; warn when the database is not reachable
    (the server starts anyway and is not ready until it is)."""
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 'pgmodels._api_token_role(text)'::regprocedure")
            if anonymous_role:
                row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [anonymous_role]).fetchone()
                if row is None:
                    raise PgmodelsError(f"role \"{anonymous_role}\" does not exist", sqlstate="42704")
                if row[0]:
                    raise PgmodelsError(f"the anonymous role \"{anonymous_role}\" must not be a superuser",
                                        hint="Make a role with predict on the projects to try.", sqlstate="42501")
    except psycopg.errors.UndefinedFunction:
        raise PgmodelsError("the database has no pgmodels 0.2.0", hint="Run ALTER EXTENSION pgmodels UPDATE, or "
                                                                     "pgmodels install --dsn ...",
                            sqlstate="42883") from None
    except psycopg.OperationalError as e:
        print(f"pgmodels serve: warning: the database is not reachable yet ({str(e).strip().splitlines()[0]}); "
              "serving anyway, not ready until it is", flush=True)


def _log_config(level: str) -> dict:
    from uvicorn.config import LOGGING_CONFIG

    config = json.loads(json.dumps(LOGGING_CONFIG))
    config["formatters"]["plain"] = {"format": "%(asctime)s %(levelname)s %(name)s[%(process)d] %(message)s"}
    config["handlers"]["plain"] = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    config["loggers"]["pgmodels.serve"] = {"handlers": ["plain"], "level": level.upper(), "propagate": False}
    return config


def _read_dsns(dsns: list[str]) -> list[str]:
    """Checked for form only: a standby that is down when the proxy starts is skipped
    until it answers (proxy/pools.py)."""
    from psycopg.conninfo import conninfo_to_dict

    for dsn in dsns:
        try:
            conninfo_to_dict(dsn)
        except Exception as e:  # noqa: BLE001 - one clean line at the edge
            raise PgmodelsError("invalid --read-dsn", detail=str(e).strip().splitlines()[0], sqlstate="22023") from None
    return list(dsns)


def _serve(args) -> int:
    from .cluster import Cluster

    # from the environment, a password in the DSN stays out of the process list (the image)
    dsn = args.dsn if args.dsn is not None else os.environ.get("PGMODELS_DSN")
    if dsn is None:
        cluster = Cluster.from_env()
        cluster.create()
        dsn = cluster.url()
    if not 0.0 <= args.log_sample <= 1.0:
        raise PgmodelsError(f"--log-sample must be between 0 and 1, not {args.log_sample}", sqlstate="22023")
    _check(dsn, args.anonymous_role)
    settings = {"dsn": dsn, "anonymous_role": args.anonymous_role, "pool_max": max(args.pool_size, 1),
                "statement_timeout_ms": args.statement_timeout, "max_body_bytes": args.max_body, "body_timeout": args.body_timeout,
                "grpc_port": args.grpc_port or None, "host": args.host, "log_sample": args.log_sample,
                "read_dsns": _read_dsns(args.read_dsn)}
    metrics_dir = tempfile.mkdtemp(prefix="pgmodels-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before any worker imports prometheus_client
    os.environ["PGMODELS_SERVE_SETTINGS"] = json.dumps(settings)
    try:
        import uvicorn

        print(f"pgmodels serve: http://{args.host}:{args.port}/v2 (OpenAPI at /openapi.json)"
              + (f", gRPC {args.host}:{args.grpc_port}" if args.grpc_port else "") + f", {args.workers} workers",
              flush=True)
        from ..proxy.protocol import NoDelayProtocol

        uvicorn.run("pgmodels.proxy.app:create_app", factory=True, host=args.host, port=args.port, http=NoDelayProtocol,
                    workers=max(args.workers, 1), log_level=args.log_level, access_log=False,
                    log_config=_log_config(args.log_level), timeout_graceful_shutdown=10,
                    timeout_keep_alive=30)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def demo_request(conn, say) -> None:
    """The demo's last step: `pgmodels serve` as a subprocess, one infer request with a
    token, its answer, and the server stopped."""
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request
    from pathlib import Path

    from psycopg.conninfo import make_conninfo

    conn.execute("DO $$ BEGIN CREATE ROLE churn_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    conn.execute("SELECT grant_project('churn', 'churn_app', 'predict')")
    token = conn.execute("SELECT create_api_token('churn_app')").fetchone()[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = make_conninfo(conn.info.dsn, password=conn.info.password) if conn.info.password else conn.info.dsn
    say(f"   pgmodels serve --port {port} --workers 1 --grpc-port 0   (token for role churn_app: {token[:12]}...)")
    server = subprocess.Popen([str(Path(sys.executable).with_name("pgmodels")), "serve", "--dsn", dsn, "--port",
                               str(port), "--grpc-port", "0", "--workers", "1", "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/v2/health/ready", timeout=2)
                break
            except (OSError, urllib.error.HTTPError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise PgmodelsError("pgmodels serve did not start", sqlstate="08000") from None
                time.sleep(0.3)
        body = {"id": "demo-1", "inputs": [
            {"name": "tenure_months", "datatype": "FP32", "shape": [1], "data": [3]},
            {"name": "monthly_charges", "datatype": "FP32", "shape": [1], "data": [95]},
            {"name": "support_calls", "datatype": "INT32", "shape": [1], "data": [1]},
            {"name": "paperless", "datatype": "BOOL", "shape": [1], "data": [False]},
            {"name": "contract", "datatype": "BYTES", "shape": [1], "data": ["month-to-month"]}]}
        say(f"   curl -H 'Authorization: Bearer <token>' {base}/v2/models/churn/infer -d '{{\"inputs\": [...]}}'")
        request = urllib.request.Request(f"{base}/v2/models/churn/infer", json.dumps(body).encode(),
                                         {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        answer = json.loads(urllib.request.urlopen(request, timeout=30).read())
        outputs = {o["name"]: o["data"] for o in answer["outputs"]}
        say(f"   answered by churn v{answer['model_version']} (id {answer['id']}): label={outputs['label'][0]} "
            f"probabilities={[round(p, 3) for p in outputs['probabilities']]}")
        time.sleep(1.2)  # the request log is written once a second
        logged = conn.execute("SELECT model_id, model_version, status, round(latency_ms::numeric, 1) "
                              "FROM pgmodels.request_log WHERE request_id = 'demo-1' ORDER BY id DESC LIMIT 1").fetchone()
        if logged:
            say(f"   pgmodels.request_log: model {logged[0]} version {logged[1]} answered, status {logged[2]}, "
                f"{logged[3]} ms")
        page = urllib.request.urlopen(urllib.request.Request(f"{base}/console/projects/churn",
                                                             headers={"Authorization": f"Bearer {token}"}), timeout=30)
        html = page.read().decode()
        say(f"   the console: {base}/console/ (log in with the token); /console/projects/churn answered "
            f"{page.status} with {html.count('<svg')} charts, as role churn_app")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        conn.execute("SELECT revoke_api_token(%s::text)", [token])
