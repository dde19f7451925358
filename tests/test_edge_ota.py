"""Over-the-air updates from a real `pgmodels serve`: ETag and 304, a deploy and a rollback
in SQL reaching a syncing device (Python and Node.js), tampered, truncated and wrongly
signed bundles refused with the last good bundle kept, offline start, and tokens that
may not read a project."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import uuid
import http.server
import zipfile

import httpx
import psycopg
import pytest

from pgmodels_edge import Device

from edgehelpers import make_data, node
from proxyhelpers import Server, bearer, free_port

P = "edge_ota"
TAG = uuid.uuid4().hex[:6]  # roles are the cluster's: unique per run
DEV, PRED, NONE = f"edge_dev_{TAG}", f"edge_pred_{TAG}", f"edge_none_{TAG}"


@pytest.fixture(scope="module")
def ota(test_db, tmp_path_factory):
    conn = psycopg.connect(test_db, autocommit=True)
    if conn.execute("SELECT to_regclass('edge_data')").fetchone()[0] is None:
        make_data(conn)
    conn.execute(f"CREATE VIEW {P}_v AS SELECT x1, x2, x3, x4, value FROM edge_data")
    first = conn.execute(f"SELECT model_id FROM train('{P}', 'regression', '{P}_v', 'value', 'linear')").fetchone()[0]
    conn.execute(f"CREATE VIEW {P}_other AS SELECT x1, x2, x3, x4, label FROM edge_data")
    conn.execute(f"SELECT * FROM train('{P}_secret', 'classification', '{P}_other', 'label', 'linear')").fetchall()
    for role in (DEV, PRED, NONE):
        conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute("SELECT grant_project(%s, %s, 'export')", [P, DEV])
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [P, PRED])
    tokens = {r: conn.execute("SELECT create_api_token(%s)", [r]).fetchone()[0] for r in (DEV, PRED, NONE)}
    server = Server(test_db, tmp_path_factory.mktemp("ota"), workers=1)
    yield {"conn": conn, "server": server, "tokens": tokens, "first": first,
           "key": conn.execute("SELECT edge_public_key()").fetchone()[0],
           "url": f"{server.url}/v2/models/{P}/bundle"}
    server.stop()
    for role in (DEV, PRED, NONE):
        conn.execute(f"DROP OWNED BY {role}")
        conn.execute(f"DROP ROLE {role}")
    conn.close()


def test_etag_and_304(ota):
    h = bearer(ota["tokens"][DEV])
    r = httpx.get(ota["url"], headers=h, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    etag = r.headers["etag"]
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json"))
    raw = zipfile.ZipFile(io.BytesIO(r.content)).read("manifest.json")
    assert etag == f'"{hashlib.sha256(raw).hexdigest()}"'  # the manifest names artifact, model, key
    again = httpx.get(ota["url"], headers={**h, "If-None-Match": etag}, timeout=30)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert httpx.get(ota["url"], headers={**h, "If-None-Match": '"00"'}, timeout=30).status_code == 200
    m = httpx.get(ota["url"] + "/manifest", headers=h, timeout=30)
    assert m.status_code == 200 and m.headers["etag"] == etag
    assert json.loads(m.json()["manifest"]) == manifest and m.json()["etag"] == etag.strip('"')
    assert m.json()["sha256"] == manifest["artifact"]["sha256"]


def test_tokens_read_only_what_their_role_may_export(ota):
    s = ota["server"]
    cases = [
        (ota["url"], None, 401),
        (ota["url"], "not-a-token", 401),
        (ota["url"], ota["tokens"][NONE], 403),     # no privilege
        (ota["url"], ota["tokens"][PRED], 403),     # predict is not export
        (f"{s.url}/v2/models/{P}_secret/bundle", ota["tokens"][DEV], 403),  # another project
        (f"{s.url}/v2/models/nope/bundle", ota["tokens"][DEV], 404),
        (f"{s.url}/v2/models/..%2F..%2Fetc%2Fpasswd/bundle", ota["tokens"][DEV], 404),  # a name, not a path
        (f"{s.url}/v2/models/{P}_secret/bundle/manifest", ota["tokens"][DEV], 403),
    ]
    for url, token, status in cases:
        r = httpx.get(url, headers=bearer(token) if token else {}, timeout=30)
        assert r.status_code == status, (url, r.text)
        assert "error" in r.json() and b"PK" not in r.content[:2]


def test_deploy_and_rollback_reach_the_device(ota, tmp_path):
    conn, key = ota["conn"], ota["key"]
    device = Device(tmp_path / "py", key, ota["url"], ota["tokens"][DEV])
    assert device.sync().status == "updated" and device.model.version == 1
    assert device.sync().status == "unchanged" and device.last.http_status == 304
    js = lambda: node("tests/node_sync.mjs", ota["url"], key, ota["tokens"][DEV], str(tmp_path / "js"))  # noqa: E731
    assert js()["statuses"] == ["updated", "unchanged"]
    second = conn.execute(f"SELECT model_id FROM train('{P}', 'regression', '{P}_v', 'value', 'xgboost')").fetchone()[0]
    conn.execute("SELECT * FROM deploy(%s)", [second])
    r = device.sync()
    assert r.status == "updated" and device.model.version == 2
    row = [0.5, -1.0, 1.2, 2.0]
    assert abs(device.model.predict(row) - conn.execute(f"SELECT predict('{P}', %s::float8[])", [row]).fetchone()[0]) < 1e-4
    assert js()["versions"][0] == 2
    conn.execute(f"SELECT * FROM deploy('{P}', 'rollback')")
    assert device.sync().status == "updated" and device.model.version == 1
    assert js()["versions"][0] == 1
    # the previous bundle stays on disk beside the current one
    assert len(os.listdir(tmp_path / "py" / "bundles")) == 2


class _Evil:
    """A server that answers with a chosen bundle body, as a compromised or broken mirror."""

    def __init__(self, body: bytes, length: int | None = None):
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(outer.length if outer.length is not None else len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *a):
                pass
        self.body, self.length = body, length
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/bundle"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _repack(data: bytes, **changed) -> bytes:
    z = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as w:
        for n in z.namelist():
            w.writestr(n, changed.get(n, z.read(n)))
    return out.getvalue()


def test_bad_bundles_are_refused_and_the_last_good_serves(ota, tmp_path):
    conn, key = ota["conn"], ota["key"]
    device = Device(tmp_path / "dev", key, ota["url"], ota["tokens"][DEV])
    assert device.sync().status == "updated"
    good = device.model
    row = [0.1, 0.2, 0.3, 0.4]
    expected = good.predict(row)
    # another, newer model to offer, so that a bad bundle is not the one already installed
    newer = conn.execute(f"SELECT model_id FROM train('{P}', 'regression', '{P}_v', 'value', 'ridge')").fetchone()[0]
    data = bytes(conn.execute("SELECT export_bundle(%s, %s)", [P, newer]).fetchone()[0])
    model = bytearray(zipfile.ZipFile(io.BytesIO(data)).read("model.onnx"))
    model[len(model) // 2] ^= 1
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))
    manifest["version"] = 99
    other_key = "ab" * 32
    cases = {
        "sha256": (_repack(data, **{"model.onnx": bytes(model)}), None, key),
        "signature": (_repack(data, **{"manifest.json": json.dumps(manifest).encode()}), None, key),
        "truncated": (data, len(data) + 1000, key),
        "pinned key": (data, None, other_key),
    }
    for what, (body, length, pinned) in cases.items():
        evil = _Evil(body, length)
        try:
            d = Device(tmp_path / "dev", pinned if pinned == key else key, evil.url)
            if pinned != key:
                d.public_key = bytes.fromhex(pinned)
            r = d.sync()
        finally:
            evil.close()
        assert r.status in ("refused", "offline") and r.error, what
        assert d.model is not None and d.model.sha256 == good.sha256, what
        assert d.model.predict(row) == expected
    # the JS runtime refuses the same tampered bundle
    evil = _Evil(cases["sha256"][0])
    try:
        got = node("tests/node_sync.mjs", evil.url, key, "", str(tmp_path / "js-evil"), P)
    finally:
        evil.close()
    assert got["statuses"][0] == "refused" and "sha256" in got["errors"][0]


def test_server_down_uses_the_last_good_bundle(ota, tmp_path):
    key = ota["key"]
    device = Device(tmp_path / "d", key, ota["url"], ota["tokens"][DEV])
    assert device.sync().status == "updated"
    version = device.model.version
    dead = f"http://127.0.0.1:{free_port()}/v2/models/{P}/bundle"
    restarted = Device(tmp_path / "d", key, dead)  # a fresh start, offline
    r = restarted.sync()
    assert r.status == "offline" and r.model is not None and r.model.version == version
    assert restarted.model.predict([1.0, 2.0, 3.0, 4.0]) == device.model.predict([1.0, 2.0, 3.0, 4.0])
    got = node("tests/node_sync.mjs", ota["url"], key, ota["tokens"][DEV], str(tmp_path / "js"))
    got = node("tests/node_sync.mjs", dead, key, "", str(tmp_path / "js"))
    assert got["statuses"] == ["offline", "offline"] and got["versions"][0] == version


def test_an_older_signed_bundle_replayed_is_refused(ota, tmp_path):
    """The deployed model's bundle carries the deployment number: a device refuses, as an
    update, a validly signed bundle of an older deployment (or one with none), and keeps
    the model it runs; a rollback on the server is a new, higher deployment and passes."""
    conn, key, h = ota["conn"], ota["key"], bearer(ota["tokens"][DEV])
    old = httpx.get(ota["url"], headers=h, timeout=30).content
    old_deployment = json.loads(zipfile.ZipFile(io.BytesIO(old)).read("manifest.json"))["deployment"]
    newer = conn.execute(f"SELECT model_id FROM train('{P}', 'regression', '{P}_v', 'value', 'lasso')").fetchone()[0]
    conn.execute("SELECT * FROM deploy(%s)", [newer])
    device = Device(tmp_path / "py", key, ota["url"], ota["tokens"][DEV])
    assert device.sync().status == "updated" and device.model.id == newer
    assert device.model.manifest["deployment"] > old_deployment
    js_dir = str(tmp_path / "js")
    assert node("tests/node_sync.mjs", ota["url"], key, ota["tokens"][DEV], js_dir)["statuses"][0] == "updated"
    by_id = bytes(conn.execute("SELECT export_bundle(%s, %s)", [P, ota["first"]]).fetchone()[0])  # no deployment
    for replayed in (old, by_id):
        evil = _Evil(replayed)
        try:
            r = Device(tmp_path / "py", key, evil.url, project=P).sync()
            got = node("tests/node_sync.mjs", evil.url, key, "", js_dir, P)
        finally:
            evil.close()
        assert r.status == "refused" and "older than the one this device runs" in r.error
        assert r.model is not None and r.model.id == newer
        assert got["statuses"][0] == "refused" and "older than the one this device runs" in got["errors"][0]
    # a second device object on the same folder, made before the update (a cron sync beside
    # the app): it checks against what is current on disk, not what it loaded
    stale = Device(tmp_path / "py2", key, project=P)
    Device(tmp_path / "py2", key, ota["url"], ota["tokens"][DEV]).sync()
    evil = _Evil(old)
    try:
        r = stale.sync(evil.url)
    finally:
        evil.close()
    assert r.status == "refused" and "older" in r.error
    assert Device(tmp_path / "py2", key, project=P).model.id == newer
    # a size option's variant, made on rows the caller chooses, carries no deployment number
    conn.execute(f"CREATE VIEW {P}_check AS SELECT x1, x2, x3, x4 FROM edge_data LIMIT 20")
    variant = bytes(conn.execute("SELECT export_bundle(%s, NULL, 'ort', %s::regclass)", [P, P + "_check"]).fetchone()[0])
    assert "deployment" not in json.loads(zipfile.ZipFile(io.BytesIO(variant)).read("manifest.json"))
    # a rollback is a new deployment: it reaches the device
    conn.execute(f"SELECT * FROM deploy('{P}', 'rollback')")
    r = device.sync()
    assert r.status == "updated" and r.model.id != newer
    # install() by hand takes any verified bundle (going back on purpose)
    assert device.install(old).manifest["deployment"] == old_deployment


def test_a_browser_syncs_across_origins(ota, tmp_path):
    """Headless Chromium on a page of one origin syncs from pgmodels serve on another: CORS
    lets it read the bundle and the ETag, and the second poll is a 304."""
    import shutil

    from edgehelpers import StaticServer

    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: scripts/install.sh installs it")
    static = StaticServer(tmp_path)
    try:
        from urllib.parse import urlencode

        query = urlencode({"url": ota["url"], "key": ota["key"], "token": ota["tokens"][DEV],
                           "row": json.dumps([0.5, -1.0, 1.2, 2.0])})
        got = node("tests/browser_parity.mjs", f"{static.url}/tests/sync.html?{query}", ota["server"].url)
    finally:
        static.close()
    assert "error" not in got, got
    assert got["statuses"] == ["updated", "unchanged"] and got["http"] == [200, 304], got
    row = [0.5, -1.0, 1.2, 2.0]
    want = ota["conn"].execute(f"SELECT predict('{P}', %s::float8[])", [row]).fetchone()[0]
    assert abs(got["prediction"] - want) <= 1e-5 * max(1, abs(want))
    pre = httpx.options(ota["url"], headers={"Origin": "http://example.test",
                                             "Access-Control-Request-Method": "GET",
                                             "Access-Control-Request-Headers": "authorization, if-none-match"})
    assert pre.status_code == 204 and "authorization" in pre.headers["access-control-allow-headers"].lower()
    assert httpx.get(ota["url"], timeout=30).headers["access-control-allow-origin"] == "*"  # 401, still readable
