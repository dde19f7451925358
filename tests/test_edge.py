"""Edge bundles: export_bundle(), the signing key, the Python device runtime's parity with
SQL predict on 1,000 rows, the same errors for the same bad input, the CLI, and attacks
as LOGIN-only roles."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile

import psycopg
import pytest

from pgmodels_edge import BundleError, EdgeError, EdgeModel

from edgehelpers import MODELS, N_EVAL, assert_same, bundle, eval_rows, make_data, sql_answers, train_all

PGMODELS = os.path.join(os.path.dirname(sys.executable), "pgmodels")


@pytest.fixture(scope="module")
def edge(test_db):
    with psycopg.connect(test_db, autocommit=True) as conn:
        make_data(conn)
        ids = train_all(conn)
        key = conn.execute("SELECT edge_public_key()").fetchone()[0]
    return {"ids": ids, "key": key, "dsn": test_db}


def test_public_key_is_stable_and_hex(conn, edge):
    key = conn.execute("SELECT edge_public_key()").fetchone()[0]
    assert key == edge["key"] and len(key) == 64 and int(key, 16) >= 0


def test_pg_dump_and_restore_keep_the_signing_key(conn, cluster, edge):
    """A restored database signs with the same key: devices that pinned it keep working."""
    restored = conn.info.dbname + "_edge_restored"
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {restored}")
        admin.execute(f"CREATE DATABASE {restored}")
    try:
        bindir = "/usr/lib/postgresql/15/bin"
        dump = subprocess.run([f"{bindir}/pg_dump", "-Fc", cluster.url(conn.info.dbname)], capture_output=True,
                              check=True)
        subprocess.run([f"{bindir}/pg_restore", "--no-owner", "-d", cluster.url(restored)], input=dump.stdout,
                       capture_output=True, check=True)
        with psycopg.connect(cluster.url(restored), autocommit=True) as c:
            assert c.execute("SELECT edge_public_key()").fetchone()[0] == edge["key"]
            data = bytes(c.execute("SELECT export_bundle('edge_lin')").fetchone()[0])
            assert EdgeModel.from_bytes(data, edge["key"]).version == 1
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {restored} WITH (FORCE)")


@pytest.mark.parametrize("name", list(MODELS))
def test_python_runtime_matches_sql_predict(conn, edge, name):
    model = EdgeModel.from_bytes(bundle(conn, name), edge["key"])
    rows = eval_rows(conn, name)
    assert len(rows) == N_EVAL
    got = {"predict": model.predict_batch(rows)}
    if model.task == "classification":
        got["label"] = model.predict_label_batch(rows)
        got["proba"] = model.predict_proba_batch(rows)
    assert_same(got, sql_answers(conn, name))
    # one row at a time, as a device calls it, agrees with the batch
    assert model.predict(rows[0]) == got["predict"][0]


def test_manifest_describes_the_served_model(conn, edge):
    data = bundle(conn, "edge_txt")
    z = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(z.namelist()) == ["manifest.json", "manifest.sig", "model.onnx"]
    m = json.loads(z.read("manifest.json"))
    served = bytes(conn.execute("SELECT export_onnx('edge_txt')").fetchone()[0])
    assert z.read("model.onnx") == served  # byte for byte what the database serves
    assert m["project"] == "edge_txt" and m["model_id"] == edge["ids"]["edge_txt"] and m["version"] == 1
    assert [f["name"] for f in m["features"]] == ["x1", "x2", "kind"]
    assert [f["type"] for f in m["features"]] == ["float", "float", "text"]
    assert m["labels"] == ["leave", "maybe", "stay"]
    assert {o["name"] for o in m["outputs"]} == {"label", "probabilities"}
    assert "accuracy" in m["metrics"] and m["min_onnxruntime"] and m["opset"]["ai.onnx"] >= 13
    assert m["signed_by"]["key_id"] and m["artifact"]["sha256"] == m["served_sha256"]
    assert bundle(conn, "edge_txt") == data  # deterministic: same model, same bytes


def test_zipmap_is_dropped_from_an_imported_model(conn, edge):
    """An imported classifier with ZipMap: the bundle's outputs are plain tensors that give
    the served model's classes and probabilities."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    onx = to_onnx(LogisticRegression().fit(X, y), X[:1], target_opset=15)  # with ZipMap
    assert any(n.op_type == "ZipMap" for n in onx.graph.node)
    conn.execute("SELECT * FROM import_onnx('edge_zipmap', %s, ARRAY['a', 'b', 'c'], 'classification', '[0, 1]')",
                 [onx.SerializeToString()])
    model = EdgeModel.from_bytes(bundle(conn, "edge_zipmap"), edge["key"])
    assert model.manifest["transforms"]["zipmap_dropped"] is True
    assert model.manifest["transforms"]["max_abs_diff"] <= 1e-6
    assert all(o["dtype"] != "map" for o in model.manifest["outputs"])
    rows = X[:50].tolist()
    # serving reads no ZipMap, so SQL gives classes only; the probabilities are the ZipMap's
    import onnxruntime as ort

    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    zipmap = session.run(None, {session.get_inputs()[0].name: X[:50]})[1]
    for i, row in enumerate(rows):
        assert model.predict(row) == conn.execute("SELECT predict('edge_zipmap', %s::real[])", [row]).fetchone()[0]
        assert max(abs(a - zipmap[i][k]) for k, a in enumerate(model.predict_proba(row))) <= 1e-6


BAD_INPUTS = [
    ("ARRAY[1, 2]::float8[]", [1, 2]),                                          # wrong count
    ("ARRAY[1, 2, 3, 'NaN']::float8[]", [1, 2, 3, float("nan")]),               # NaN
    ("ARRAY[1, 2, 3, 'Infinity']::float8[]", [1, 2, 3, float("inf")]),          # Infinity
    ("ARRAY[1, 2, 3, 1e39]::float8[]", [1, 2, 3, 1e39]),                        # beyond float32
    ("'{\"x1\": 1, \"x2\": 2, \"x3\": 3}'::jsonb", {"x1": 1, "x2": 2, "x3": 3}),  # a feature missing
    ("'{\"x1\": 1, \"x2\": 2, \"x3\": 3, \"x9\": 4}'::jsonb", {"x1": 1, "x2": 2, "x3": 3, "x9": 4}),  # unknown name
    ("'{\"x1\": 1, \"x2\": 2, \"x3\": 3, \"x4\": \"high\"}'::jsonb", {"x1": 1, "x2": 2, "x3": 3, "x4": "high"}),
    ("ARRAY[1, 2, NULL, 4]::float8[]", [1, 2, None, 4]),                        # NULL, impute error
]


@pytest.mark.parametrize("sql_value, device_value", BAD_INPUTS)
def test_bad_input_same_error_as_sql(conn, edge, sql_value, device_value):
    model = EdgeModel.from_bytes(bundle(conn, "edge_xgb"), edge["key"])
    with pytest.raises(psycopg.Error) as sql_err:
        conn.execute(f"SELECT predict('edge_xgb', {sql_value})")
    with pytest.raises(EdgeError) as dev_err:
        model.predict(device_value)
    diag = sql_err.value.diag
    assert dev_err.value.message == diag.message_primary
    assert dev_err.value.sqlstate == diag.sqlstate
    assert dev_err.value.detail == diag.message_detail


def test_text_model_errors_match(conn, edge):
    model = EdgeModel.from_bytes(bundle(conn, "edge_txt"), edge["key"])
    for sql_value, value in (("ARRAY[1, 2, 3]::float8[]", [1, 2, 3]),
                             ("'{\"x1\": \"one\", \"x2\": 2, \"kind\": \"a\"}'::jsonb", {"x1": "one", "x2": 2, "kind": "a"})):
        with pytest.raises(psycopg.Error) as sql_err:
            conn.execute(f"SELECT predict('edge_txt', {sql_value})")
        with pytest.raises(EdgeError) as dev_err:
            model.predict(value)
        assert (dev_err.value.message, dev_err.value.sqlstate) == (sql_err.value.diag.message_primary,
                                                                   sql_err.value.diag.sqlstate)
    with pytest.raises(EdgeError, match="is a regression model; predict_proba needs a classifier"):
        EdgeModel.from_bytes(bundle(conn, "edge_xgb"), edge["key"]).predict_proba([1, 2, 3, 4])


def test_tampered_or_unsigned_bundles_are_refused(conn, edge, tmp_path):
    data = bundle(conn, "edge_lin")
    z = zipfile.ZipFile(io.BytesIO(data))
    files = {n: z.read(n) for n in z.namelist()}

    def repack(**changed):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as w:
            for n, v in {**files, **changed}.items():
                if v is not None:
                    w.writestr(n, v)
        return out.getvalue()

    model = bytearray(files["model.onnx"])
    model[len(model) // 2] ^= 1
    manifest = json.loads(files["manifest.json"])
    manifest["labels"] = ["stay", "maybe", "leave"]
    cases = {
        "the bundle's model fails its sha256 check": repack(**{"model.onnx": bytes(model)}),
        "the bundle's signature does not verify": repack(**{"manifest.json": json.dumps(manifest).encode()}),
        "the bundle is not signed": repack(**{"manifest.sig": b""}),
        "the bundle is incomplete": repack(**{"manifest.sig": None}),
        "the bundle is not a valid archive": data[: len(data) // 2],  # truncated
    }
    for message, bad in cases.items():
        with pytest.raises(BundleError, match=message) as e:
            EdgeModel.from_bytes(bad, edge["key"])
        assert e.value.sqlstate == "XX001"
    with pytest.raises(BundleError, match="signature does not verify"):
        EdgeModel.from_bytes(data, "00" * 32)  # another server's key
    with pytest.raises(EdgeError, match="no public key is pinned"):
        os.environ.pop("PGMODELS_EDGE_PUBLIC_KEY", None)
        EdgeModel.from_bytes(data)


def test_native_model_cannot_be_bundled(conn, edge):
    conn.execute("CREATE TABLE edge_native AS SELECT x1, x2, value FROM edge_data LIMIT 200")
    row = conn.execute("SELECT runtime FROM train('edge_native', 'regression', 'edge_native', 'value', "
                       "'kernel_ridge', '{\"kernel\": \"laplacian\"}')").fetchone()
    if row[0] == "onnx":
        pytest.skip("this converter converts the algorithm; no native model to try")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="has no ONNX artifact"):
        conn.execute("SELECT export_bundle('edge_native')")


def test_unknown_project_and_version(conn, edge):
    with pytest.raises(psycopg.errors.UndefinedObject, match='project "nope" does not exist'):
        conn.execute("SELECT export_bundle('nope')")
    with pytest.raises(psycopg.errors.UndefinedObject, match="model 999999 does not exist"):
        conn.execute("SELECT export_bundle('edge_lin', 999999)")
    other = edge["ids"]["edge_xgb"]
    with pytest.raises(psycopg.errors.UndefinedObject, match=f'project "edge_lin" has no model {other}'):
        conn.execute("SELECT export_bundle('edge_lin', %s)", [other])
    assert conn.execute("SELECT export_bundle(NULL)").fetchone()[0] is None


def test_signing_key_is_not_readable_by_other_roles(conn, edge, make_role):
    _, c = make_role("edge_nobody")
    for statement in ("SELECT seed FROM pgmodels.edge_signing_key", "SELECT pgmodels._edge_key()",
                      "SELECT pgmodels._edge_new_key()",
                      "SELECT pgmodels._edge_build(NULL::pgmodels.served_model, NULL, NULL, NULL, NULL, NULL, NULL)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute(statement)
        c.rollback()
    assert c.execute("SELECT edge_public_key()").fetchone()[0] == edge["key"]  # the public half is public
    # pg_dump keeps it (the dump is as secret as the key)
    assert conn.execute("SELECT 'pgmodels.edge_signing_key'::regclass = ANY(extconfig) FROM pg_extension "
                        "WHERE extname = 'pgmodels'").fetchone()[0]


def test_export_bundle_needs_the_export_privilege(conn, edge, make_role):
    _, c = make_role("edge_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match='permission denied for project "edge_lin"'):
        c.execute("SELECT export_bundle('edge_lin')")
    c.rollback()
    conn.execute("SELECT grant_project('edge_lin', 'edge_app', 'predict')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="has no export privilege"):
        c.execute("SELECT export_bundle('edge_lin')")  # predict is not export
    c.rollback()
    postgres_oid = conn.execute("SELECT oid FROM pg_roles WHERE rolname = 'postgres'").fetchone()[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="invalid caller credential"):
        c.execute("SELECT pgmodels._export_bundle('edge_lin', NULL, NULL, NULL, %s)", [f"{postgres_oid}:" + "0" * 64])
    c.rollback()
    conn.execute("SELECT grant_project('edge_lin', 'edge_app', 'export')")
    assert EdgeModel.from_bytes(bytes(c.execute("SELECT export_bundle('edge_lin')").fetchone()[0]), edge["key"])


def _cli(*args, **kw):
    return subprocess.run([PGMODELS, *args], capture_output=True, text=True, timeout=120, **kw)


def test_cli_export_verify_and_device_predict(conn, edge, tmp_path):
    out = tmp_path / "device" / "bundle"
    run = _cli("edge", "export", "edge_txt", "--out", str(out), "--dsn", edge["dsn"])
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == ["manifest.json", "manifest.sig", "model.onnx"]
    key = _cli("edge", "public-key", "--dsn", edge["dsn"]).stdout.strip()
    assert key == edge["key"]
    assert _cli("edge", "verify", str(out), "--public-key", key).returncode == 0
    assert _cli("edge", "verify", str(out), "--public-key", key, "--project", "edge_txt").returncode == 0
    other = _cli("edge", "verify", str(out), "--public-key", key, "--project", "another")
    assert other.returncode == 1 and 'the bundle is for project "edge_txt", not "another"' in other.stderr
    # --version: an older version by number; a version that does not exist
    assert _cli("edge", "export", "edge_txt", "--version", "1", "--out", str(out), "--dsn", edge["dsn"]).returncode == 0
    bad = _cli("edge", "export", "edge_txt", "--version", "7", "--out", str(out), "--dsn", edge["dsn"])
    assert bad.returncode == 1 and 'project "edge_txt" has no version 7' in bad.stderr
    # the device: a Python that cannot import the database driver, scikit-learn or XGBoost
    row = eval_rows(conn, "edge_txt")[0]
    blocker = ("import sys\nclass B:\n def find_spec(self, n, *a):\n"
               "  if n.split('.')[0] in ('psycopg', 'sklearn', 'xgboost', 'pgmodels', 'skl2onnx'): "
               "raise ImportError('no ' + n + ' on the device')\nsys.meta_path.insert(0, B())\n"
               "from pgmodels_edge.__main__ import main\nsys.exit(main())")
    dev = subprocess.run([sys.executable, "-c", blocker, "predict", str(out), "--public-key", key, json.dumps(row)],
                         capture_output=True, text=True, timeout=120, env={"PATH": os.environ["PATH"]})
    assert dev.returncode == 0, dev.stderr
    answer = json.loads(dev.stdout)
    assert answer["label"] == sql_answers_one(conn, row)


def sql_answers_one(conn, row) -> str:
    return conn.execute("SELECT predict_label('edge_txt', %s::jsonb)", [json.dumps(row)]).fetchone()[0]


def test_cli_out_is_never_clobbered_and_archive_names_are_ignored(conn, edge, tmp_path):
    victim = tmp_path / "notes"
    victim.mkdir()
    (victim / "keep.txt").write_text("mine")
    run = _cli("edge", "export", "edge_lin", "--out", str(victim), "--dsn", edge["dsn"])
    assert run.returncode == 1 and "is not empty and holds no bundle" in run.stderr
    assert os.listdir(victim) == ["keep.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert "is not a directory" in _cli("edge", "export", "edge_lin", "--out", str(afile), "--dsn", edge["dsn"]).stderr
    # a project name is a SQL value, never a path
    run = _cli("edge", "export", "../../etc/passwd", "--out", str(tmp_path / "x"), "--dsn", edge["dsn"])
    assert run.returncode == 1 and "does not exist" in run.stderr and not (tmp_path / "x").exists()
    # an archive with a traversing entry name: the writer uses its own names only
    from pgmodels.edge.cli import write_bundle

    data = bundle(conn, "edge_lin")
    evil = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as z, zipfile.ZipFile(evil, "w") as w:
        for n in z.namelist():
            w.writestr(n, z.read(n))
        w.writestr("../../escaped.txt", "gotcha")
    write_bundle(evil.getvalue(), str(tmp_path / "safe"), edge["key"])
    assert sorted(os.listdir(tmp_path / "safe")) == ["manifest.json", "manifest.sig", "model.onnx"]
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
