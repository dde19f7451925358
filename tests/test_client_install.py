"""An application's install: `pip install 'pgmodels[client]'` in a fresh virtual
environment brings psycopg and SQLAlchemy, and none of the training and serving stack
(scikit-learn, XGBoost, LightGBM, CatBoost, ONNX, onnxruntime); pgmodels.sqlalchemy then
predicts against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

import psycopg
import pytest

from dbhelpers import ROOT
from lifecycle_data import make_numeric

HEAVY = {"scikit-learn", "xgboost", "xgboost-cpu", "lightgbm", "catboost", "onnx", "onnxruntime", "skl2onnx",
         "onnxmltools", "skops", "numpy", "grpcio", "uvicorn", "starlette"}


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory):
    venv = tmp_path_factory.mktemp("client") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{ROOT}[client]"],
                         capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    return venv


def installed(venv) -> set[str]:
    out = subprocess.run([str(venv / "bin" / "pip"), "list", "--format=freeze"], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}


def test_the_client_install_has_no_training_stack(client_venv):
    names = installed(client_venv)
    assert {"pgmodels", "psycopg", "sqlalchemy"} <= names
    assert names & HEAVY == set(), names & HEAVY
    size = int(subprocess.run(["du", "-sm", str(client_venv)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    assert size < 200, f"{size} MB"


def test_the_client_install_predicts_with_sqlalchemy(client_venv, test_db):
    project = "client_" + uuid.uuid4().hex[:8]
    with psycopg.connect(test_db, autocommit=True) as c:
        make_numeric(c, project, 200)
        c.execute("SET pgmodels.progress_level = 'off'")
        c.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [project, project])
        expected = c.execute(f"SELECT predict(%s, ARRAY[a, b, c, d]) FROM {project} ORDER BY a, b, c, d LIMIT 3",
                             [project]).fetchall()
    script = textwrap.dedent(f"""
        import json, sys
        from sqlalchemy import create_engine, select, table, column
        from pgmodels.sqlalchemy import predict
        t = table({project!r}, column("a"), column("b"), column("c"), column("d"))
        engine = create_engine({test_db.replace("postgresql://", "postgresql+psycopg://", 1)!r})
        with engine.connect() as conn:
            rows = conn.execute(select(predict({project!r}, [t.c.a, t.c.b, t.c.c, t.c.d])).order_by(t.c.a, t.c.b, t.c.c, t.c.d).limit(3))
            print(json.dumps([r[0] for r in rows]))
        print("heavy:", sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "xgboost", "onnxruntime", "numpy")))
    """)
    run = subprocess.run([str(client_venv / "bin" / "python"), "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert json.loads(lines[0]) == [row[0] for row in expected]
    assert lines[1] == "heavy: []"
