"""Helpers of the `pgmodels serve` tests: the real server as a subprocess, on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PGMODELS = Path(sys.executable).with_name("pgmodels")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`pgmodels serve` on free ports; its log goes to a file the tests can read."""

    def __init__(self, dsn: str, log_dir: Path, *extra: str, workers: int = 2):
        self.port, self.grpc_port = free_port(), free_port()
        self.log = log_dir / f"serve-{uuid.uuid4().hex[:6]}.log"
        self.proc = subprocess.Popen(
            [str(PGMODELS), "serve", "--dsn", dsn, "--port", str(self.port), "--grpc-port", str(self.grpc_port),
             "--workers", str(workers), *extra],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_url = f"127.0.0.1:{self.grpc_port}"
        self.wait_live()

    def wait_live(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgmodels serve exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/v2/health/live", timeout=1).status_code == 200:
                    # every worker has its gRPC server up once the HTTP side answers; give the last one a moment
                    time.sleep(0.5)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"pgmodels serve did not start: {self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log.read_text()


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}  # lower case: gRPC metadata keys must be


def matrix(rows, name: str = "input", datatype: str = "FP32") -> dict:
    return {"name": name, "datatype": datatype, "shape": [len(rows), len(rows[0])], "data": rows}


class Env:
    """A served database: a numeric project with a feature source, a project with a text
    feature, a LOGIN-only role allowed to predict (app) and one allowed nothing
    (outsider), each with a token; and the server."""

    def __init__(self, dsn: str, log_dir: Path, *serve_args: str):
        import psycopg

        from lifecycle_data import make_churn, make_numeric

        self.dsn = dsn
        self.tag = uuid.uuid4().hex[:8]
        self.num, self.mix = f"px_num_{self.tag}", f"px_mix_{self.tag}"
        self.app, self.outsider = f"px_app_{self.tag}", f"px_out_{self.tag}"
        self.conn = psycopg.connect(dsn, autocommit=True)
        c = self.conn
        make_numeric(c, self.num)
        make_churn(c, self.mix)
        c.execute(f"SELECT * FROM train('{self.num}', 'classification', '{self.num}', 'y')").fetchall()
        c.execute(f"SELECT * FROM train('{self.mix}', 'classification', '{self.mix}', 'churned')").fetchall()
        self.features = f"px_feat_{self.tag}"
        c.execute(f"CREATE TABLE {self.features} AS SELECT i::bigint AS id, a, b, c, d FROM "
                  f"(SELECT row_number() OVER () AS i, * FROM {self.num}) s")
        c.execute(f"ALTER TABLE {self.features} ADD PRIMARY KEY (id)")
        c.execute("SELECT register_feature_source(%s, %s, 'id')", [self.num, self.features])
        for role in (self.app, self.outsider):
            c.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        for project in (self.num, self.mix):
            c.execute("SELECT grant_project(%s, %s, 'predict')", [project, self.app])
        c.execute(f"GRANT SELECT ON {self.features} TO {self.app}")
        self.token = c.execute("SELECT create_api_token(%s)", [self.app]).fetchone()[0]
        self.outsider_token = c.execute("SELECT create_api_token(%s)", [self.outsider]).fetchone()[0]
        self.server = Server(dsn, log_dir, *serve_args)

    def sql_predict(self, project: str, rows) -> list[tuple]:
        return [self.conn.execute("SELECT predict(%s, %s::real[]), predict_proba(%s, %s::real[])",
                                  [project, list(r), project, list(r)]).fetchone() for r in rows]

    def close(self) -> None:
        self.server.stop()
        c = self.conn
        for role in (self.app, self.outsider):
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
            c.execute(f"DROP OWNED BY {role}")
            c.execute(f"DROP ROLE {role}")
        c.close()
