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


def linear_classifier(n_features: int = 2, n_classes: int = 2) -> bytes:
    """A classifier: probabilities = softmax(X @ W), label = argmax; W spreads the classes."""
    weights = [((i + j) % 3) - 1.0 for i in range(n_features) for j in range(n_classes)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["z"], ["label"], axis=1, keepdims=0)],
        "linear_classifier",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes])],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, [n_features, n_classes], weights)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def scalar_output(n_features: int = 2) -> bytes:
    """A 'regression' whose output is one number for the whole batch."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X"], ["value"], keepdims=0)], "scalar",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def allocates_from_input() -> bytes:
    """A 'regression' whose first feature, cast to an integer, is the length of a tensor it
    allocates: harmless for the zeros an import probe feeds, huge for a large input."""
    graph = helper.make_graph(
        [helper.make_node("Slice", ["X", "zero", "one", "one"], ["first"]),       # X[:, 0:1]
         helper.make_node("ReduceMax", ["first"], ["m"], keepdims=0),
         helper.make_node("Cast", ["m"], ["n"], to=TensorProto.INT64),
         helper.make_node("Reshape", ["n", "shape1"], ["dims"]),
         helper.make_node("ConstantOfShape", ["dims"], ["big"]),
         helper.make_node("ReduceSum", ["big"], ["s"], keepdims=1),
         helper.make_node("Mul", ["first", "zero_f"], ["z"]),
         helper.make_node("Add", ["z", "s"], ["value"])],
        "allocates",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])],
        initializer=[helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
                     helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("shape1", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("zero_f", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def tree_regressor(factor: float) -> bytes:
    """Two regression trees (TreeEnsembleRegressor): a <= 1.5 gives 2 * factor, else 5 *
    factor; plus b <= 0.5 gives factor / 4, else 0. So (1, 1) -> 2 * factor."""
    node = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["variable"], domain="ai.onnx.ml", n_targets=1,
        nodes_treeids=[0, 0, 0, 1, 1, 1], nodes_nodeids=[0, 1, 2, 0, 1, 2],
        nodes_featureids=[0, 0, 0, 1, 0, 0], nodes_values=[1.5, 0.0, 0.0, 0.5, 0.0, 0.0],
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"],
        nodes_truenodeids=[1, 0, 0, 1, 0, 0], nodes_falsenodeids=[2, 0, 0, 2, 0, 0],
        target_treeids=[0, 0, 1, 1], target_nodeids=[1, 2, 1, 2], target_ids=[0, 0, 0, 0],
        target_weights=[2.0 * factor, 5.0 * factor, factor / 4, 0.0], base_values=[0.0])
    graph = helper.make_graph(
        [node], "tree_regressor",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("ai.onnx.ml", 3)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
