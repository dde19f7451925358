"""ONNX graphs for the families in :mod:`families`, each checked against the native model.

Clustering models that can place a new row do it by the nearest centre (Euclidean), so
one small graph serves them all: squared distances to the centres, the nearest one's
index, and that centre's cluster (birch maps its subclusters to clusters). PCA is
``(X - mean) @ components.T`` (divided by the square roots of the explained variances
when whitened). Joint regression goes through skl2onnx. A model whose graph does not
reproduce the native model on the check rows is refused (0A000): these families are
served only through ONNX.
"""

from __future__ import annotations

import numpy as np

from ..errors import DATA_EXCEPTION, FEATURE_NOT_SUPPORTED, PgmodelsError
from . import convert

MARGIN = 1e-4  # relative distance margin under which two centres are a tie


def cluster_centres(estimator) -> tuple[np.ndarray, np.ndarray]:
    """(centres, cluster of each centre) of a fitted clustering model."""
    if type(estimator).__name__ == "Birch":
        return np.asarray(estimator.subcluster_centers_), np.asarray(estimator.subcluster_labels_)
    centres = np.asarray(getattr(estimator, "cluster_centers_", np.zeros((0, 0))))
    if centres.size == 0:
        raise PgmodelsError(f"{type(estimator).__name__} found no clusters",
                            detail="The algorithm did not converge, so it has no cluster centres.",
                            hint="Try other hyperparameters (damping, max_iter) or another algorithm.",
                            sqlstate=DATA_EXCEPTION)
    return centres, np.arange(len(centres))


def cluster_labels(estimator) -> np.ndarray:
    return cluster_centres(estimator)[1]


def _graph(nodes, inputs, outputs, initializers) -> bytes:
    from onnx import helper

    graph = helper.make_graph(nodes, "pgmodels", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", convert.OPSET[""])],
                              producer_name="pgmodels")
    return model.SerializeToString()


def clustering_graph(estimator, n: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    centres, clusters = cluster_centres(estimator)
    c = centres.astype(np.float32)
    init = [numpy_helper.from_array(c.T.copy(), "centres_t"),
            numpy_helper.from_array((c.astype(np.float64) ** 2).sum(axis=1).astype(np.float32), "centre_norms"),
            numpy_helper.from_array(np.array(-2.0, dtype=np.float32), "minus_two"),
            numpy_helper.from_array(clusters.astype(np.int64), "clusters")]
    nodes = [helper.make_node("MatMul", ["X", "centres_t"], ["xc"]),
             helper.make_node("Mul", ["xc", "minus_two"], ["xc2"]),
             helper.make_node("ReduceSumSquare", ["X"], ["xn"], axes=[1], keepdims=1),
             helper.make_node("Add", ["xc2", "xn"], ["d0"]),
             helper.make_node("Add", ["d0", "centre_norms"], ["distances"]),
             helper.make_node("ArgMin", ["distances"], ["nearest"], axis=1, keepdims=0),
             helper.make_node("Gather", ["clusters", "nearest"], ["label"], axis=0)]
    return _graph(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n])],
                  [helper.make_tensor_value_info("label", TensorProto.INT64, [None])], init)


def pca_graph(estimator, n: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    components = np.asarray(estimator.components_, dtype=np.float64)
    if getattr(estimator, "whiten", False):
        components = components / np.sqrt(estimator.explained_variance_)[:, None]
    init = [numpy_helper.from_array(np.asarray(estimator.mean_, dtype=np.float32), "mean"),
            numpy_helper.from_array(components.T.astype(np.float32).copy(), "components_t")]
    nodes = [helper.make_node("Sub", ["X", "mean"], ["centred"]),
             helper.make_node("MatMul", ["centred", "components_t"], ["value"])]
    return _graph(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n])],
                  [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, components.shape[0]])], init)


def joint_graph(estimator, n: int, targets: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    convert.register_converters()
    onx = convert_sklearn(estimator, initial_types=[("X", FloatTensorType([None, n]))], target_opset=convert.OPSET)
    current = [o.name for o in onx.graph.output]
    del onx.graph.output[1:]
    convert._rename_all(onx.graph, current[:1], ["value"])
    # skl2onnx declares [None, 1] for some multi-output models; the graph gives [None, targets]
    dims = onx.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2:
        dims[1].Clear()
        dims[1].dim_value = targets
    return onx.SerializeToString()


def convert_and_verify(task: str, estimator, n: int, X: np.ndarray, y_scale: float) -> tuple[bytes, dict]:
    import onnxruntime as ort

    try:
        if task == "regression":
            model = joint_graph(estimator, n, int(np.asarray(estimator.predict(X[:1])).reshape(1, -1).shape[1]))
        else:
            model = (clustering_graph if task == "clustering" else pca_graph)(estimator, n)
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        got = session.run(None, {"X": np.asarray(X, dtype=np.float32)})[0]
    except PgmodelsError:
        raise
    except Exception as e:  # noqa: BLE001 - any converter failure: refused, with its first line
        lines = str(e).strip().splitlines()
        raise PgmodelsError(f"{type(estimator).__name__} could not be converted to ONNX",
                            detail=f"{type(e).__name__}: {lines[0][:300] if lines else ''}",
                            hint="Joint regression, clustering and decomposition models are served only through ONNX; "
                                 "use another algorithm.", sqlstate=FEATURE_NOT_SUPPORTED) from None
    if task == "clustering":
        record = _verify_clusters(estimator, X, got)
    else:
        native = estimator.transform(X) if task == "decomposition" else estimator.predict(X)
        native = np.asarray(native, dtype=np.float64).reshape(len(X), -1)
        got = np.asarray(got, dtype=np.float64).reshape(len(X), -1)
        if got.shape != native.shape:
            _refuse(estimator, f"the graph gives {got.shape[1]} values per row, the model {native.shape[1]}")
        diff = float(np.max(np.abs(got - native))) if got.size else 0.0
        # absolute for values of the target's scale, relative (single precision) beyond it
        top = float(np.max(np.abs(native), initial=1.0))
        tolerance = 1e-3 * max(1.0, y_scale if task == "regression" else top) + 1e-5 * top
        if not diff <= tolerance:
            _refuse(estimator, f"ONNX outputs differ from the native model by {diff:.3g} (tolerance {tolerance:.3g})")
        record = {"converted": True, "max_abs_diff": diff, "reason": None, "opset": dict(convert.OPSET)}
    return model, record


def _verify_clusters(estimator, X, got) -> dict:
    centres, _ = cluster_centres(estimator)
    native = np.asarray(estimator.predict(X))
    d = ((X[:, None, :].astype(np.float64) - centres[None, :, :]) ** 2).sum(axis=2)
    top = np.sort(d, axis=1)
    margin = (top[:, 1] - top[:, 0]) if d.shape[1] > 1 else np.full(len(X), np.inf)
    differ = (np.asarray(got).reshape(-1) != native) & (margin >= MARGIN * np.maximum(1.0, top[:, 0]))
    if differ.any():
        _refuse(estimator, f"ONNX clusters differ from the native model on {int(differ.sum())} of {len(X)} rows")
    return {"converted": True, "max_abs_diff": 0.0, "reason": None, "opset": dict(convert.OPSET),
            "rows_checked": int(len(X))}


def _refuse(estimator, why: str):
    raise PgmodelsError(f"{type(estimator).__name__} could not be converted to ONNX", detail=why[:300] + ".",
                        hint="Joint regression, clustering and decomposition models are served only through ONNX; "
                             "use another algorithm or other hyperparameters.", sqlstate=FEATURE_NOT_SUPPORTED)
