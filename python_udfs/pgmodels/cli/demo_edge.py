"""The demo's last step: the churn model on a "device" with no database.

export_bundle() → a directory (verified against edge_public_key()) → a separate Python
process that cannot import the database driver, scikit-learn or XGBoost predicts with
pgmodels_edge; then `pgmodels serve` answers the device's sync with 304 (unchanged)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import PgmodelsError

CUSTOMER = {"tenure_months": 3, "monthly_charges": 95, "support_calls": 1, "paperless": False,
            "contract": "month-to-month"}
# the device's Python: no database driver, no training libraries, no pgmodels
DEVICE = ("import sys\n"
          "class NoServerSide:\n"
          "    def find_spec(self, name, *a):\n"
          "        if name.split('.')[0] in ('psycopg', 'sklearn', 'xgboost', 'pgmodels', 'skl2onnx'):\n"
          "            raise ImportError(name + ' is not on the device')\n"
          "sys.meta_path.insert(0, NoServerSide())\n"
          "from pgmodels_edge.__main__ import main\n"
          "sys.exit(main())\n")


def _device(*args: str) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # no PG* variables, no database to find
    run = subprocess.run([sys.executable, "-c", DEVICE, *args], capture_output=True, text=True, timeout=120, env=env)
    if run.returncode != 0:
        raise PgmodelsError("the device process failed", detail=run.stderr.strip()[-300:])
    return json.loads(run.stdout.strip().splitlines()[-1])


def edge_step(conn, say) -> None:
    from ..edge.cli import write_bundle

    say("== 7. edge: the model on a device, no database")
    key = conn.execute("SELECT edge_public_key()").fetchone()[0]
    home = Path(tempfile.mkdtemp(prefix="pgmodels-demo-device-"))
    try:
        data = bytes(conn.execute("SELECT export_bundle('churn')").fetchone()[0])
        manifest = write_bundle(data, str(home / "bundle"), key)
        say(f"   pgmodels edge export churn --out {home / 'bundle'}: version {manifest['version']}, "
            f"model.onnx {manifest['artifact']['bytes']} bytes, signed by key {key[:16]}... (pinned on the device)")
        sql = conn.execute("SELECT predict_label('churn', %s::jsonb), predict_proba('churn', %s::jsonb)",
                           [json.dumps(CUSTOMER)] * 2).fetchone()
        answer = _device("predict", str(home / "bundle"), "--public-key", key, json.dumps(CUSTOMER))
        say(f"   device (python -m pgmodels_edge, no psycopg, no scikit-learn): churns={answer['label']} "
            f"probabilities={[round(p, 6) for p in answer['probabilities']]}")
        say(f"   the database said:                                       churns={sql[0]} "
            f"probabilities={[round(p, 6) for p in sql[1]]}")
        _sync_304(conn, say, key, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _sync_304(conn, say, key: str, home: Path) -> None:
    from psycopg.conninfo import make_conninfo

    conn.execute("DO $$ BEGIN CREATE ROLE churn_device; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    conn.execute("SELECT grant_project('churn', 'churn_device', 'export')")
    token = conn.execute("SELECT create_api_token('churn_device')").fetchone()[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = make_conninfo(conn.info.dsn, password=conn.info.password) if conn.info.password else conn.info.dsn
    server = subprocess.Popen([str(Path(sys.executable).with_name("pgmodels")), "serve", "--dsn", dsn, "--port",
                               str(port), "--grpc-port", "0", "--workers", "1", "--log-level", "warning"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v2/models/churn/bundle"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)
                break
            except (OSError, urllib.error.HTTPError):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise PgmodelsError("pgmodels serve did not start", sqlstate="08000") from None
                time.sleep(0.3)
        device = str(home / "device")
        for _ in range(2):
            r = _device("sync", url, device, "--public-key", key, "--token", token)
            say(f"   device sync {url}: {r['status']} (HTTP {r['http_status']}), serving version {r['version']}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
