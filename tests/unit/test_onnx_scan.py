"""The wire-format scan that refuses ONNX models with external data, against models the
onnx package itself builds: external initializers, constants in subgraphs and functions."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from pgmodels.serving.onnx_scan import Malformed, external_tensor


def external(name: str = "w") -> TensorProto:
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[2], data_location=TensorProto.EXTERNAL)
    entry = t.external_data.add()
    entry.key, entry.value = "location", "pg_hba.conf"
    return t


def model(nodes, initializers=(), functions=()):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                          functions=list(functions))
    return m.SerializeToString()


def test_a_plain_model_passes():
    w = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    assert external_tensor(model([helper.make_node("Mul", ["X", "w"], ["Y"])], [w])) is False


def test_external_data_anywhere_is_found():
    assert external_tensor(model([helper.make_node("Mul", ["X", "w"], ["Y"])], [external()]))
    constant = helper.make_node("Constant", [], ["c"], value=external("c"))
    assert external_tensor(model([constant, helper.make_node("Mul", ["X", "c"], ["Y"])]))
    then = helper.make_graph([helper.make_node("Constant", [], ["Y"], value=external("k"))], "then", [],
                             [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["X"], ["Y"])], "else", [],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    cond = helper.make_tensor("b", TensorProto.BOOL, [], [True])
    assert external_tensor(model([helper.make_node("If", ["b"], ["Y"], then_branch=then, else_branch=other)], [cond]))
    fn = helper.make_function("local", "f", ["x"], ["y"],
                              [helper.make_node("Constant", [], ["y"], value=external("z"))],
                              [helper.make_opsetid("", 17)])
    assert external_tensor(model([helper.make_node("f", ["X"], ["Y"], domain="local")], functions=[fn]))


def test_garbage_is_malformed():
    with pytest.raises(Malformed):
        external_tensor(b"\x0a\xff\xff\xff location")


def test_the_shortcut_never_hides_a_file_name():
    """Without the word "location" no tensor can name a file; with it, the walk decides."""
    w = helper.make_tensor("location", TensorProto.FLOAT, [2], [1.0, 2.0])  # the word, harmlessly
    assert external_tensor(model([helper.make_node("Mul", ["X", "location"], ["Y"])], [w])) is False
    assert b"location" in model([helper.make_node("Mul", ["X", "w"], ["Y"])], [external()])


def function_default_model() -> bytes:
    """The review's bypass: an external tensor as a function's default attribute value."""
    from onnx import AttributeProto

    ref = helper.make_node("Constant", [], ["y"])
    ref.attribute.append(AttributeProto(name="value", ref_attr_name="v", type=AttributeProto.TENSOR))
    default = AttributeProto(name="v", type=AttributeProto.TENSOR, t=external("v"))
    fn = helper.make_function("local", "Leak", [], ["y"], [ref], [helper.make_opsetid("", 17)],
                              attribute_protos=[default])
    return model([helper.make_node("Leak", [], ["Y"], domain="local")], functions=[fn])


def loop_model() -> bytes:
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])])
    return model([helper.make_node("Loop", ["n", ""], [], body=body)])


def test_a_function_default_attribute_and_a_loop_are_found():
    from pgmodels.serving.onnx_scan import problems

    assert problems(function_default_model()) == (True, None)
    assert problems(loop_model()) == (False, "Loop")


def test_models_load_where_no_file_can_be_found(tmp_path, monkeypatch):
    """Should the scan miss an external tensor, onnxruntime looks for it in an empty
    private directory, not in the backend's working directory (the data directory)."""
    import onnxruntime as ort

    from pgmodels.serving.runtime import _session

    (tmp_path / "pg_hba.conf").write_bytes(b"secret!!")
    monkeypatch.chdir(tmp_path)
    leak = model([helper.make_node("Mul", ["X", "w"], ["Y"])], [external()])
    with pytest.raises(Exception) as info:
        _session(leak, ort.SessionOptions())
    assert "secret" not in str(info.value)


def scan_model() -> bytes:
    body = helper.make_graph([helper.make_node("Identity", ["s", ], ["s_out"])], "body",
                             [helper.make_tensor_value_info("s", TensorProto.FLOAT, [2])],
                             [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [2])])
    return model([helper.make_node("Scan", ["X"], ["Y"], body=body, num_scan_inputs=1)])


def overlong_tag_model() -> bytes:
    """The re-check's bypass: a graph initializer's tag (field 5, wire type 2, 0x2a) written
    as a five-byte varint with bits past 32, which protobuf truncates and reads."""
    plain = model([helper.make_node("Mul", ["X", "w"], ["Y"])], [external()])
    tensor = external().SerializeToString()
    short = bytes([0x2A]) + _varint(len(tensor)) + tensor
    assert short in plain
    return plain.replace(short, bytes([0xAA, 0x80, 0x80, 0x80, 0x10]) + _varint(len(tensor)) + tensor)


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def test_overlong_tags_are_malformed_and_scan_is_refused_for_imports():
    from pgmodels.serving.onnx_scan import problems

    with pytest.raises(Malformed):
        problems(overlong_tag_model())
    assert problems(scan_model(), imported=True) == (False, "Scan")
    assert problems(scan_model()) == (False, None)  # pgmodels' own conversions may use Scan
