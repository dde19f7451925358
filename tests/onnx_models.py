"""Tiny hand-built ONNX graphs: models whose answers a test knows in advance."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def scaled_sum(factor: float, n_features: int = 2) -> bytes:
    """A regression model: value = factor * sum(features)."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X", "axes"], ["s"], keepdims=1),
         helper.make_node("Mul", ["s", "k"], ["value"])],
        "scaled_sum",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("k", TensorProto.FLOAT, [], [factor])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
