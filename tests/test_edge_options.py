"""Bundle size options: ORT format, float16 and int8 weights, each checked on the caller's
rows, refused when a class changes or there is nothing to shrink; the devices load them."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import psycopg
import pytest

from pgmodels_edge import EdgeModel

from edgehelpers import N_EVAL, bundle, eval_rows, make_data, node, sql_answers, train_all


@pytest.fixture(scope="module")
def edge(test_db):
    with psycopg.connect(test_db, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('edge_data')").fetchone()[0] is None:
            make_data(conn)
            train_all(conn)
        # an imported neural network: weights in tensors, which float16 and int8 shrink
        import warnings

        from skl2onnx import to_onnx
        from sklearn.neural_network import MLPClassifier

        X = np.array(conn.execute("SELECT x1, x2, x3, x4 FROM edge_data").fetchall(), dtype=np.float32)
        names = ["leave", "maybe", "stay"]
        y = np.array([names.index(r[0]) for r in conn.execute("SELECT label FROM edge_data")])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlp = MLPClassifier((64, 64), max_iter=200, random_state=0).fit(X, y)
        onx = to_onnx(mlp, X[:1], options={id(mlp): {"zipmap": False}}, target_opset=17)
        conn.execute("SELECT * FROM import_onnx('edge_mlp', %s, ARRAY['x1', 'x2', 'x3', 'x4'], 'classification', %s)",
                     [onx.SerializeToString(), json.dumps(names)])
        conn.execute("CREATE VIEW edge_mlp_e AS SELECT x1, x2, x3, x4 FROM edge_eval")
        key = conn.execute("SELECT edge_public_key()").fetchone()[0]
    return {"key": key}


def _manifest(data: bytes) -> dict:
    return json.loads(zipfile.ZipFile(io.BytesIO(data)).read("manifest.json"))


def test_options_report(conn, edge):
    rows = {r[0]: r for r in conn.execute("SELECT * FROM edge_bundle_options('edge_mlp', 'edge_mlp_e')")}
    assert set(rows) == {"ort", "float16", "int8"}
    for option in ("float16", "int8"):
        _, size, before, diff, changed, n, usable, _ = rows[option]
        assert n == N_EVAL and size < before and 0 < diff < 1 and usable == (changed == 0)
    assert rows["float16"][1] < 0.6 * rows["float16"][2] and rows["float16"][3] < 0.01
    trees = {r[0]: r for r in conn.execute("SELECT * FROM edge_bundle_options('edge_xgb', 'edge_xgb_e')")}
    assert trees["float16"][6] is False and "nothing to shrink" in trees["float16"][7]
    assert trees["ort"][6] is True and trees["ort"][3] <= 1e-5


def test_int8_is_exported_exactly_when_the_report_says_it_may(conn, edge):
    _, size, _, _, changed, n, usable, _ = conn.execute(
        "SELECT * FROM edge_bundle_options('edge_mlp', 'edge_mlp_e') WHERE size_option = 'int8'").fetchone()
    if usable:
        data = bytes(conn.execute("SELECT export_bundle('edge_mlp', NULL, 'int8', 'edge_mlp_e')").fetchone()[0])
        assert _manifest(data)["artifact"]["bytes"] == size
    else:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="the int8 option changes predictions") as e:
            conn.execute("SELECT export_bundle('edge_mlp', NULL, 'int8', 'edge_mlp_e')")
        assert f"changes the class of {changed} of {n} check rows" in e.value.diag.message_detail


@pytest.mark.parametrize("option", ["float16", "ort"])
def test_smaller_bundle_loads_and_agrees(conn, edge, option):
    data = bytes(conn.execute("SELECT export_bundle('edge_mlp', NULL, %s, 'edge_mlp_e')", [option]).fetchone()[0])
    m = _manifest(data)
    assert m["transforms"]["option"]["name"] == option and m["transforms"]["option"]["classes_changed"] == 0
    assert m["artifact"]["format"] == ("ort" if option == "ort" else "onnx")
    model = EdgeModel.from_bytes(data, edge["key"])
    rows = eval_rows_mlp(conn)
    sql = [r[0] for r in conn.execute("SELECT predict_label('edge_mlp', e) FROM edge_mlp_e e ORDER BY e::text")]
    assert model.predict_label_batch(rows) == sql


def eval_rows_mlp(conn):
    return [r[0] for r in conn.execute("SELECT to_jsonb(e) FROM edge_mlp_e e ORDER BY e::text")]


def test_ort_bundle_runs_in_node(conn, edge, tmp_path):
    data = bytes(conn.execute("SELECT export_bundle('edge_xgb', NULL, 'ort', 'edge_xgb_e')").fetchone()[0])
    (tmp_path / "b.zip").write_bytes(data)
    (tmp_path / "rows.json").write_text(json.dumps(eval_rows(conn, "edge_xgb")))
    got = node("tests/node_parity.mjs", str(tmp_path / "b.zip"), edge["key"], str(tmp_path / "rows.json"))
    want = sql_answers(conn, "edge_xgb")["predict"]
    assert max(abs(a - b) for a, b in zip(got["predict"], want)) <= 1e-5 * max(1, max(map(abs, want)))


def test_an_option_that_changes_a_class_is_refused(conn, edge):
    """A graph whose class at x = 1 depends on a weight's last bits: 1 + 2**-12 in single
    precision, 1 in half. float16 would flip it; the export is refused."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.full((1, 20), 1 + 2 ** -12, dtype=np.float32), "W")
    t = numpy_helper.from_array(np.array([1 + 2 ** -13], dtype=np.float32), "T")
    nodes = [helper.make_node("MatMul", ["X", "W"], ["s20"]),
             helper.make_node("ReduceMean", ["s20"], ["s"], axes=[1], keepdims=1),
             helper.make_node("Sub", ["s", "T"], ["d"]), helper.make_node("Neg", ["d"], ["nd"]),
             helper.make_node("Concat", ["d", "nd"], ["logits"], axis=1),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
             helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0)]
    graph = helper.make_graph(nodes, "edge", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])], [w, t])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    conn.execute("SELECT * FROM import_onnx('edge_edgy', %s, ARRAY['x'], 'classification', '[\"up\", \"down\"]')",
                 [model.SerializeToString()])
    conn.execute("CREATE TABLE edge_edgy_check AS SELECT 1.0::real AS x FROM generate_series(1, 10)")
    assert conn.execute("SELECT predict_label('edge_edgy', ARRAY[1.0])").fetchone()[0] == "up"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="the float16 option changes predictions") as e:
        conn.execute("SELECT export_bundle('edge_edgy', NULL, 'float16', 'edge_edgy_check')")
    assert "changes the class of 10 of 10 check rows" in e.value.diag.message_detail
    row = {r[0]: r for r in conn.execute("SELECT * FROM edge_bundle_options('edge_edgy', 'edge_edgy_check')")}
    assert row["float16"][6] is False and row["float16"][4] == 10


def test_bad_option_arguments(conn, edge, make_role):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match='unknown bundle option "zip"'):
        conn.execute("SELECT export_bundle('edge_mlp', NULL, 'zip', 'edge_mlp_e')")
    with pytest.raises(psycopg.errors.NullValueNotAllowed, match="a size option needs check rows"):
        conn.execute("SELECT export_bundle('edge_mlp', NULL, 'int8', NULL)")
    with pytest.raises(psycopg.errors.FeatureNotSupported, match="nothing to shrink"):
        conn.execute("SELECT export_bundle('edge_lin', NULL, 'float16', 'edge_lin_e')")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="features missing from the check relation: x3, x4"):
        conn.execute("SELECT export_bundle('edge_mlp', NULL, 'int8', 'edge_txt_e')")
    # the check rows are read with the caller's rights; the export privilege still decides
    _, c = make_role("edge_opt")
    conn.execute("SELECT grant_project('edge_mlp', 'edge_opt', 'export')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for (view|table) edge_mlp_e"):
        c.execute("SELECT export_bundle('edge_mlp', NULL, 'ort', 'edge_mlp_e')")
    c.rollback()
    conn.execute("GRANT SELECT ON edge_mlp_e, edge_eval TO edge_opt")
    assert c.execute("SELECT length(export_bundle('edge_mlp', NULL, 'ort', 'edge_mlp_e')) > 0").fetchone()[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match='permission denied for project "edge_lin"'):
        c.execute("SELECT * FROM edge_bundle_options('edge_lin', 'edge_mlp_e')")
