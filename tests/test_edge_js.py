"""The JavaScript runtime on the same bundles: Node.js with onnxruntime-node, and a page
in headless Chromium running onnxruntime-web from local files (no network), each scoring
the 1,000 rows SQL predict scored."""

from __future__ import annotations

import json
import shutil

import psycopg
import pytest

from edgehelpers import MODELS, StaticServer, assert_same, bundle, eval_rows, make_data, node, sql_answers, train_all


@pytest.fixture(scope="module")
def edge(test_db, tmp_path_factory):
    if shutil.which("node") is None:
        pytest.fail("node is missing: scripts/install.sh installs it")
    with psycopg.connect(test_db, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('edge_data')").fetchone()[0] is None:
            make_data(conn)
            train_all(conn)
        key = conn.execute("SELECT edge_public_key()").fetchone()[0]
        out = {}
        for name in MODELS:
            d = tmp_path_factory.mktemp(name)
            (d / "bundle.zip").write_bytes(bundle(conn, name))
            (d / "rows.json").write_text(json.dumps(eval_rows(conn, name)))
            out[name] = (d, sql_answers(conn, name))
    return key, out


@pytest.mark.parametrize("name", list(MODELS))
def test_node_matches_sql_predict(edge, name):
    key, data = edge
    d, want = data[name]
    bad = [[1, 2], {"x1": 1}, [1, 2, 3, 1e39]]
    got = node("tests/node_parity.mjs", str(d / "bundle.zip"), key, str(d / "rows.json"),
               env={"EDGE_BAD_ROWS": json.dumps(bad)})
    assert "error" not in got, got
    assert_same(got, want)
    # the same errors as SQL predict (and the Python runtime) for the same bad rows
    from pgmodels_edge import EdgeError, EdgeModel

    model = EdgeModel.from_bytes((d / "bundle.zip").read_bytes(), key)
    for row, err in zip(bad, got["errors"]):
        with pytest.raises(EdgeError) as e:
            model.predict(row)
        assert err == {"message": e.value.message, "sqlstate": e.value.sqlstate}


def test_node_refuses_a_wrong_key_and_a_tampered_bundle(edge, tmp_path):
    key, data = edge
    d, _ = data["edge_lin"]
    got = node("tests/node_parity.mjs", str(d / "bundle.zip"), "11" * 32, str(d / "rows.json"))
    assert got == {"error": "the bundle's signature does not verify", "sqlstate": "XX001"}
    raw = bytearray((d / "bundle.zip").read_bytes())
    raw[-300] ^= 0xFF  # inside model.onnx
    (tmp_path / "t.zip").write_bytes(bytes(raw))
    got = node("tests/node_parity.mjs", str(tmp_path / "t.zip"), key, str(d / "rows.json"))
    assert got["sqlstate"] == "XX001" and got["error"] in ("the bundle's model fails its sha256 check",
                                                           "the bundle is not a valid archive")


@pytest.mark.parametrize("name", ["edge_lin", "edge_xgb", "edge_txt"])
def test_chromium_matches_sql_predict(edge, name):
    if shutil.which("chromium") is None:
        pytest.fail("chromium is missing: scripts/install.sh installs it")
    key, data = edge
    d, want = data[name]
    server = StaticServer(d)
    try:
        got = node("tests/browser_parity.mjs", f"{server.url}/tests/page.html?key={key}")
    finally:
        server.close()
    assert "error" not in got, got
    assert_same(got, want)
    assert got["badRow"]["sqlstate"] == "22023" and "features, got 1" in got["badRow"]["message"]
    assert got["tampered"] in ("the bundle's model fails its sha256 check", "the bundle is not a valid archive")
