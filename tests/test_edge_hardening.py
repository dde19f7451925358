"""Edge bundles against a hostile review: another project's signed bundle, the serve cache
across projects and key rotations, the ETag, the export folder, zip bombs and download
caps, malformed check rows, redirects with a token, the previous bundle as fallback,
concurrent syncs, input parity, a NUL in a name, NULL options, the signer. Attacks run as
LOGIN-only roles."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import uuid
import zipfile

import httpx
import psycopg
import pytest

from pgmodels_edge import BundleError, Device, EdgeError, EdgeModel

from edgehelpers import bundle, make_data, node, train_all
from proxyhelpers import Server, bearer, free_port

TAG = uuid.uuid4().hex[:6]
P = "edge_hard"
PGMODELS = os.path.join(os.path.dirname(sys.executable), "pgmodels")


@pytest.fixture(scope="module")
def hard(test_db, tmp_path_factory):
    conn = psycopg.connect(test_db, autocommit=True)
    if conn.execute("SELECT to_regclass('edge_data')").fetchone()[0] is None:
        make_data(conn)
        train_all(conn)
    conn.execute(f"CREATE VIEW {P}_v AS SELECT x1, x2, x3, x4, value FROM edge_data")
    ids = [conn.execute(f"SELECT model_id FROM train('{P}', 'regression', '{P}_v', 'value', %s)", [a]).fetchone()[0]
           for a in ("linear", "ridge")]
    # two projects serving the same ONNX bytes
    onnx = bytes(conn.execute("SELECT export_onnx('edge_xgb')").fetchone()[0])
    for twin in ("edge_twin_a", "edge_twin_b"):
        conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['x1', 'x2', 'x3', 'x4'], 'regression')", [twin, onnx])
    role = f"edge_hard_{TAG}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    for project in (P, "edge_twin_a", "edge_twin_b"):
        conn.execute("SELECT grant_project(%s, %s, 'export')", [project, role])
    token = conn.execute("SELECT create_api_token(%s)", [role]).fetchone()[0]
    server = Server(test_db, tmp_path_factory.mktemp("hard"), workers=1)
    yield {"conn": conn, "ids": ids, "key": conn.execute("SELECT edge_public_key()").fetchone()[0],
           "server": server, "token": token, "dsn": test_db}
    server.stop()
    conn.execute(f"DROP OWNED BY {role}")
    conn.execute(f"DROP ROLE {role}")
    conn.close()


class Mirror:
    """A plain HTTP server answering each path with a chosen (status, headers, body); it
    records the headers of each request (a compromised mirror or a proxy)."""

    def __init__(self, routes: dict):
        outer = self
        self.routes, self.seen = routes, []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append((self.path, dict(self.headers)))
                status, headers, body = outer.routes.get(self.path, (404, {}, b"{}"))
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _zip(files: dict, compression=zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as w:
        for n, v in files.items():
            w.writestr(n, v)
    return out.getvalue()


# 1. another project's validly signed bundle ------------------------------------------
def test_a_device_refuses_another_projects_bundle(hard, make_role, tmp_path):
    conn, key = hard["conn"], hard["key"]
    # the attacker may export only their own project, and feeds its bundle to P's devices
    name, c = make_role(f"edge_mallory_{TAG}")
    conn.execute("SELECT grant_project('edge_xgb', %s, 'export')", [name])
    theirs = bytes(c.execute("SELECT export_bundle('edge_xgb')").fetchone()[0])
    with pytest.raises(BundleError, match='the bundle is for project "edge_xgb", not "edge_hard"'):
        EdgeModel.from_bytes(theirs, key, project=P)
    mirror = Mirror({f"/v2/models/{P}/bundle": (200, {}, bundle(conn, P))})
    try:
        device = Device(tmp_path / "d", key, f"{mirror.url}/v2/models/{P}/bundle")
        assert device.project == P and device.sync().status == "updated"
        good = device.model.etag
        mirror.routes[f"/v2/models/{P}/bundle"] = (200, {}, theirs)
        r = device.sync()
        assert r.status == "refused" and 'is for project "edge_xgb"' in r.error and device.model.etag == good
        # a URL naming no project: sync needs one
        with pytest.raises(EdgeError, match="sync needs the project"):
            Device(tmp_path / "e", key, f"{mirror.url}/other").sync()
        # the command line: the URL's project, or --project
        cli = [sys.executable, "-m", "pgmodels_edge", "sync"]
        run = subprocess.run(cli + [f"{mirror.url}/v2/models/{P}/bundle", str(tmp_path / "c"), "--public-key", key],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and json.loads(run.stdout)["status"] == "refused", run.stdout + run.stderr
        mirror.routes["/mirror/b.zip"] = (200, {}, theirs)
        run = subprocess.run(cli + [f"{mirror.url}/mirror/b.zip", str(tmp_path / "c"), "--public-key", key,
                                    "--project", P], capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and 'is for project "edge_xgb"' in json.loads(run.stdout)["error"]
        # JS: the same
        got = node("tests/node_sync.mjs", f"{mirror.url}/v2/models/{P}/bundle", key, "", str(tmp_path / "js"))
        assert got["statuses"][0] == "refused" and 'is for project "edge_xgb"' in got["errors"][0], got
    finally:
        mirror.close()


# 2. and 3. the serve cache: projects sharing an artifact, key rotation, the ETag --------
def test_serve_keeps_projects_with_the_same_artifact_apart(hard):
    s, h = hard["server"], bearer(hard["token"])
    seen = {}
    for twin in ("edge_twin_a", "edge_twin_b", "edge_twin_a"):
        r = httpx.get(f"{s.url}/v2/models/{twin}/bundle", headers=h, timeout=60)
        assert r.status_code == 200, r.text
        m = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json"))
        assert m["project"] == twin
        seen.setdefault(twin, set()).add((m["model_id"], r.headers["etag"]))
    assert len(seen["edge_twin_a"]) == 1 and seen["edge_twin_a"] != seen["edge_twin_b"]


def test_a_rotated_key_reaches_serve_and_devices(hard, tmp_path):
    conn, s, h = hard["conn"], hard["server"], bearer(hard["token"])
    url = f"{s.url}/v2/models/{P}/bundle"
    old_key = hard["key"]
    device = Device(tmp_path / "d", old_key, url, hard["token"])
    assert device.sync().status == "updated"
    first = httpx.get(url, headers=h, timeout=60)
    old_row = conn.execute("SELECT seed, public_key FROM pgmodels.edge_signing_key").fetchone()
    try:
        conn.execute("DELETE FROM pgmodels.edge_signing_key")  # rotation, by a superuser
        r = httpx.get(url, headers={**h, "If-None-Match": first.headers["etag"]}, timeout=60)
        assert r.status_code == 200  # the same artifact, a new manifest: the ETag changed
        new_key = conn.execute("SELECT edge_public_key()").fetchone()[0]
        assert new_key != old_key
        m = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json"))
        assert m["signed_by"]["key_id"] == hashlib.sha256(bytes.fromhex(new_key)).hexdigest()[:16]
        assert EdgeModel.from_bytes(r.content, new_key, P).version == 2
        again = httpx.get(url, headers=h, timeout=60)  # served from the cache now: still the new key
        assert again.content == r.content and again.headers["etag"] == r.headers["etag"]
        # the device pinning the old key refuses the new bundle and keeps its own
        result = device.sync()
        assert result.status == "refused" and "signature does not verify" in result.error
        assert device.model.etag == hashlib.sha256(
            zipfile.ZipFile(io.BytesIO(first.content)).read("manifest.json")).hexdigest()
    finally:
        conn.execute("DELETE FROM pgmodels.edge_signing_key")
        conn.execute("INSERT INTO pgmodels.edge_signing_key (id, seed, public_key) VALUES (1, %s, %s)", old_row)
    back = httpx.get(url, headers={**h, "If-None-Match": first.headers["etag"]}, timeout=60)
    assert back.status_code == 304


# 4. the export folder ----------------------------------------------------------------
def test_export_out_never_replaces_a_folder_that_is_not_exactly_a_bundle(hard, tmp_path):
    app = tmp_path / "webapp"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my app"}')
    (app / "index.html").write_text("<html></html>")
    run = subprocess.run([PGMODELS, "edge", "export", P, "--out", str(app), "--dsn", hard["dsn"]],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "is not empty and holds no bundle" in run.stderr and "Traceback" not in run.stderr
    assert sorted(os.listdir(app)) == ["index.html", "manifest.json"]
    # a previous export is replaced
    out = tmp_path / "b"
    for _ in range(2):
        run = subprocess.run([PGMODELS, "edge", "export", P, "--out", str(out), "--dsn", hard["dsn"]],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr


# 5. zip bombs and the download cap ---------------------------------------------------
def test_compressed_entries_and_oversized_downloads_are_refused(hard, tmp_path):
    key = hard["key"]
    z = zipfile.ZipFile(io.BytesIO(bundle(hard["conn"], P)))
    files = {n: z.read(n) for n in z.namelist()}
    bomb = _zip({**files, "model.onnx": b"\0" * (20 << 20)}, zipfile.ZIP_DEFLATED)  # 20 MB in ~20 KB
    assert len(bomb) < 100_000
    with pytest.raises(BundleError, match="compressed"):
        EdgeModel.from_bytes(bomb, key, P)
    # the model's size is checked against the signed manifest before it is read
    with pytest.raises(BundleError, match="the bundle's model has the wrong size"):
        EdgeModel.from_bytes(_zip({**files, "model.onnx": files["model.onnx"] + b"\0" * 1000}), key, P)
    mirror = Mirror({f"/v2/models/{P}/bundle": (200, {}, b"x" * 5000)})
    try:
        r = Device(tmp_path / "d", key, f"{mirror.url}/v2/models/{P}/bundle", max_bytes=1000).sync()
        assert r.status == "refused" and "larger than 1000 bytes" in r.error
    finally:
        mirror.close()


# 6. malformed check rows -------------------------------------------------------------
def test_malformed_check_rows_are_sql_errors(hard, make_role):
    conn = hard["conn"]
    name, c = make_role(f"edge_rows_{TAG}")
    conn.execute("SELECT grant_project(%s, %s, 'export')", [P, name])
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {name}")
    cases = {
        "text": ("SELECT 'abc'::text AS x1, 1.0 AS x2, 1.0 AS x3, 1.0 AS x4", psycopg.errors.InvalidTextRepresentation,
                 'feature "x1" must be a number'),
        "big": ("SELECT 1e39::float8 AS x1, 1.0 AS x2, 1.0 AS x3, 1.0 AS x4", psycopg.errors.NumericValueOutOfRange,
                "outside the single-precision range"),
        "huge": ("SELECT 1e400::numeric AS x1, 1.0 AS x2, 1.0 AS x3, 1.0 AS x4",
                 psycopg.errors.NumericValueOutOfRange, "outside the single-precision range"),
        "array": ("SELECT ARRAY[1, 2] AS x1, 1.0 AS x2, 1.0 AS x3, 1.0 AS x4", psycopg.errors.InvalidParameterValue,
                  "must be a number, not an array"),
    }
    for what, (query, error, message) in cases.items():
        c.execute(f"CREATE TABLE rows_{what} AS {query}")
        c.commit()
        for call in (f"SELECT export_bundle('{P}', NULL, 'ort', 'rows_{what}')",
                     f"SELECT * FROM edge_bundle_options('{P}', 'rows_{what}')"):
            with pytest.raises(error, match=message):
                c.execute(call)
            c.rollback()
    for rows in ('[1, 2]', '{"a": 1}', '[{"x1": 1}, "x"]'):
        for call in ("SELECT pgmodels._export_bundle(%s, NULL, 'ort', %s::jsonb, pgmodels._credential())",
                     "SELECT pgmodels._edge_options(%s, NULL, %s::jsonb, pgmodels._credential())"):
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="check rows must be a jsonb? array"):
                c.execute(call, [P, rows])
            c.rollback()


# 7. the token and redirects ------------------------------------------------------------
def test_the_token_does_not_follow_a_redirect_to_another_origin(hard, tmp_path):
    other = Mirror({f"/v2/models/{P}/bundle": (200, {}, bundle(hard["conn"], P))})
    first = Mirror({f"/v2/models/{P}/bundle": (302, {"Location": f"{other.url}/v2/models/{P}/bundle"}, b"")})
    try:
        r = Device(tmp_path / "d", hard["key"], f"{first.url}/v2/models/{P}/bundle", "s3cret").sync()
        assert r.status == "updated"
        assert first.seen[0][1].get("Authorization") == "Bearer s3cret"
        assert other.seen and "Authorization" not in other.seen[0][1]
        # JS: fetch drops it on a cross-origin redirect too
        got = node("tests/node_sync.mjs", f"{first.url}/v2/models/{P}/bundle", hard["key"], "s3cret",
                   str(tmp_path / "js"))
        assert got["statuses"][0] == "updated", got
        assert first.seen[-1][1].get("Authorization") == "Bearer s3cret"
        assert len(other.seen) >= 2 and all("Authorization" not in h for _, h in other.seen)
    finally:
        first.close()
        other.close()


# 8. and 9. the previous bundle as fallback; concurrent syncs ----------------------------
def test_previous_bundle_serves_when_current_is_damaged(hard, tmp_path):
    conn, key = hard["conn"], hard["key"]
    path = f"/v2/models/{P}/bundle"
    mirror = Mirror({path: (200, {}, bundle(conn, P, hard["ids"][0]))})
    try:
        device = Device(tmp_path / "d", key, mirror.url + path)
        assert device.sync().model.id == hard["ids"][0]
        mirror.routes[path] = (200, {}, bundle(conn, P, hard["ids"][1]))
        assert device.sync().model.id == hard["ids"][1]
    finally:
        mirror.close()
    current = tmp_path / "d" / "current" / "model.onnx"
    current.write_bytes(current.read_bytes()[:100])  # truncated on disk
    dead = f"http://127.0.0.1:{free_port()}{path}"
    restarted = Device(tmp_path / "d", key, dead)
    assert restarted.model is not None and restarted.model.id == hard["ids"][0]
    assert restarted.sync().status == "offline" and restarted.model.id == hard["ids"][0]


def test_concurrent_syncs_into_one_folder(hard, tmp_path):
    path = f"/v2/models/{P}/bundle"
    mirror = Mirror({path: (200, {}, bundle(hard["conn"], P))})
    results, errors = [], []

    def run():
        try:
            results.append(Device(tmp_path / "d", hard["key"], mirror.url + path).sync())
        except Exception as e:  # noqa: BLE001 - the test reports any
            errors.append(repr(e))
    try:
        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        mirror.close()
    assert errors == [] and [r.status for r in results] == ["updated"] * 6, (errors, results)
    assert Device(tmp_path / "d", hard["key"]).model.project == P


# 10. inputs: scalars, huge integers, typed arrays and BigInt --------------------------
def test_inputs_match_sql_and_js(hard, tmp_path):
    conn, key = hard["conn"], hard["key"]
    data = bundle(conn, P)
    model = EdgeModel.from_bytes(data, key, P)
    with pytest.raises(psycopg.Error) as sql_err:
        conn.execute(f"SELECT predict('{P}', '5'::jsonb)")
    with pytest.raises(EdgeError) as dev_err:
        model.predict(5)
    assert (dev_err.value.message, dev_err.value.sqlstate, dev_err.value.detail) == (
        sql_err.value.diag.message_primary, sql_err.value.diag.sqlstate, sql_err.value.diag.message_detail)
    with pytest.raises(EdgeError, match='feature "x1" is 1.00e\\+400, outside the single-precision range') as big:
        model.predict([10 ** 400, 1, 2, 3])
    assert big.value.sqlstate == "22003"
    (tmp_path / "b.zip").write_bytes(data)
    row = [0.5, -1.25, 1.5, 2.0]
    got = node("tests/node_inputs.mjs", str(tmp_path / "b.zip"), key, json.dumps(row))
    assert got["float32"] == got["plain"] and abs(got["plain"] - model.predict(row)) <= 1e-5 * max(1, abs(got["plain"]))
    assert got["bigint"] == got["rounded"]
    assert got["scalar"] == {"message": dev_err.value.message, "sqlstate": "22023"}
    assert got["huge"] == {"message": big.value.message, "sqlstate": "22003"}


# 11. and 12. a NUL in a name; NULL options; the device CLI on a missing path ----------
def test_nul_in_a_bundle_name_is_a_400(hard):
    for suffix in ("", "/manifest"):  # refused before the route (tests/test_proxy_nul.py)
        r = httpx.get(f"{hard['server'].url}/v2/models/{P}%00/bundle{suffix}", headers=bearer(hard["token"]),
                      timeout=30)
        assert r.status_code == 400 and "NUL" in r.json()["error"]


def test_null_option_is_the_two_argument_form(hard, tmp_path):
    conn = hard["conn"]
    assert bytes(conn.execute("SELECT export_bundle(%s, NULL, NULL, NULL)", [P]).fetchone()[0]) == bundle(conn, P)
    run = subprocess.run([sys.executable, "-m", "pgmodels_edge", "predict", str(tmp_path / "nope"),
                          "--public-key", hard["key"], "[1, 2, 3, 4]"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"pgmodels_edge: error: {tmp_path / 'nope'} does not exist"]


# 13. the server's signer -------------------------------------------------------------
def test_the_server_signs_with_cryptography():
    from pgmodels.edge.signer import ed25519 as _ed25519
    from pgmodels_edge import ed25519

    signer = _ed25519()
    assert getattr(signer, "name", None) == "cryptography"
    seed = bytes(range(32))
    # RFC 8032's first test vector (seed 9d61...7f60): the server signs as the RFC does
    rfc = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert signer.public_key(rfc).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    assert signer.sign(rfc, b"").hex().startswith("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb88215")
    assert ed25519.verify(signer.public_key(seed), b"manifest", signer.sign(seed, b"manifest"))
    assert not ed25519.verify(signer.public_key(seed), b"manifest!", signer.sign(seed, b"manifest"))
    assert not ed25519.verify(signer.public_key(seed), b"manifest", bytes(64))
