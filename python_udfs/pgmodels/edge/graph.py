"""ONNX graph surgery for devices: classifier outputs as plain tensors.

onnxruntime-node and onnxruntime-web cannot read ONNX's seq(map) outputs (onnxruntime
issues #8007 and #15918), which skl2onnx's ZipMap produces for classifiers unless told
otherwise. Models pgmodels trains are converted with zipmap=False already; an imported
model may carry ZipMap. Its input is the probability matrix in class order, so the
surgery is exact: the ZipMap node goes, and its input becomes the ``probabilities``
output. The result is checked against the served graph on probe rows.
"""

from __future__ import annotations

import numpy as np

from ..errors import DATA_CORRUPTED, FEATURE_NOT_SUPPORTED, PgmodelsError
from ..serving import guard

DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 8: "string", 9: "bool",
          10: "float16", 11: "float64"}
# the oldest onnxruntime that runs each default-domain opset / IR version
ORT_FOR_OPSET = {12: "1.6", 13: "1.7", 14: "1.10", 15: "1.11", 16: "1.11", 17: "1.14", 18: "1.16",
                 19: "1.17", 20: "1.20", 21: "1.20"}
ORT_FOR_IR = {7: "1.6", 8: "1.10", 9: "1.15", 10: "1.17"}


def drop_zipmap(artifact: bytes) -> tuple[bytes, bool]:
    """(artifact without ZipMap outputs, whether one was dropped)."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(artifact)
    graph = model.graph
    zipmaps = [n for n in graph.node if n.op_type == "ZipMap"]
    if not zipmaps:
        return artifact, False
    outputs = {o.name for o in graph.output}
    used = {i for n in graph.node for i in n.input}
    for node in zipmaps:
        if node.output[0] not in outputs or node.output[0] in used:
            raise PgmodelsError("the model's ZipMap output feeds other nodes and cannot be dropped",
                                sqlstate=FEATURE_NOT_SUPPORTED)
        source = node.input[0]
        width = len(helper.get_attribute_value(next(a for a in node.attribute if a.name in
                                                    ("classlabels_int64s", "classlabels_strings"))))
        keep = [o for o in graph.output if o.name != node.output[0]]
        del graph.output[:]
        graph.output.extend(keep)
        graph.node.remove(node)
        name = "probabilities" if "probabilities" not in {o.name for o in graph.output} | used - {source} else source
        if name != source:
            for n in graph.node:
                n.output[:] = [name if o == source else o for o in n.output]
                n.input[:] = [name if i == source else i for i in n.input]
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width]))
    onnx.checker.check_model(model)
    return model.SerializeToString(), True


def describe(artifact: bytes) -> dict:
    """Inputs, outputs, opsets and the oldest onnxruntime that runs the graph."""
    import onnx

    model = onnx.load_from_string(artifact)

    def values(vs):
        out = []
        for v in vs:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            out.append({"name": v.name, "dtype": DTYPES.get(t.elem_type, str(t.elem_type)), "shape": dims})
        return out
    opsets = {(o.domain or "ai.onnx"): o.version for o in model.opset_import}
    default = opsets.get("ai.onnx", 0)
    need = [ORT_FOR_OPSET.get(default, "1.20" if default > 21 else "1.6"), ORT_FOR_IR.get(model.ir_version, "1.17")]
    return {"inputs": values(model.graph.input), "outputs": values(model.graph.output), "opset": opsets,
            "ir_version": model.ir_version,
            "min_onnxruntime": max(need, key=lambda v: tuple(map(int, v.split("."))))}


def probe_feed(session, feature_names: list[str], rows: int = 64) -> dict:
    """Deterministic probe rows for a graph's inputs: numbers around zero, a few texts."""
    rng = np.random.default_rng(42)
    feed = {}
    for i in session.get_inputs():
        width = i.shape[1] if len(i.shape) == 2 and isinstance(i.shape[1], int) else 1
        if i.type == "tensor(string)":
            feed[i.name] = np.array([[["a", "b", "", "x"][r % 4]] * width for r in range(rows)], dtype=object)
        else:
            feed[i.name] = rng.normal(0, 3, size=(rows, width)).astype(np.float32)
    return feed


def check_same(served: bytes, bundled: bytes, feature_names: list[str], task: str) -> float:
    """The largest difference between the served graph's answers and the bundle's on
    probe rows; an error if a class differs."""
    import onnxruntime as ort

    a = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(bundled, providers=["CPUExecutionProvider"])
    feed = probe_feed(a, feature_names)
    out_a = dict(zip([o.name for o in a.get_outputs()], guard.run(a.run, None, feed)))
    out_b = dict(zip([o.name for o in b.get_outputs()], guard.run(b.run, None, feed)))
    if task == "classification":
        label = next(iter(out_a))
        if not np.array_equal(np.asarray(out_a[label]).reshape(-1), np.asarray(out_b[label]).reshape(-1)):
            raise PgmodelsError("the bundle's model predicts other classes than the served one",
                                sqlstate=DATA_CORRUPTED)
        probs_a = [v for v in out_a.values() if isinstance(v, list)]
        probs_b = out_b.get("probabilities")
        if probs_a and probs_b is not None:
            keys = list(probs_a[0][0].keys())
            matrix = np.array([[row[k] for k in keys] for row in probs_a[0]], dtype=np.float64)
            return float(np.max(np.abs(matrix - probs_b))) if matrix.size else 0.0
        return 0.0
    return float(np.max(np.abs(np.asarray(out_a[next(iter(out_a))], np.float64) -
                               np.asarray(out_b[next(iter(out_b))], np.float64))))
