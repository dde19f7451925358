"""ONNX conversion of a fitted pipeline, checked against the pipeline itself.

The graph's interface is fixed (serving depends on it):

- every feature numeric: one input ``X``, float [None, n_features], feature order;
  otherwise one input per feature, named as the feature, [None, 1], float or string
  (a NULL text is '', a NULL number NaN);
- regression: output ``value`` float [None, 1];
- classification: ``label`` int64 [None], the class index into TrainedModel.labels, and
  ``probabilities`` float [None, K] when the estimator has predict_proba (absent for
  RidgeClassifier, Perceptron, LinearSVC, hinge-loss SGD, PassiveAggressive, ...).

A converted graph is accepted only if onnxruntime reproduces the native pipeline on
the test split. Otherwise the model falls back to a native format (see ``native``).
"""

from __future__ import annotations

from .. import progress
from ..errors import q

import warnings

import numpy as np

from .native import dump_skops, dump_xgboost

OPSET = {"": 17, "ai.onnx.ml": 3}
PROBA_TOLERANCE = 1e-3
MARGIN = 1e-3  # a label may differ where the native top-2 score margin is below this


class ConversionError(Exception):
    """Conversion failed or the graph does not reproduce the native pipeline."""


def serialize(pipeline, task: str, names: list[str], kinds: list[str], X_check,
              y_scale: float, native: dict | None = None) -> tuple[bytes, str, dict]:
    """(artifact, runtime, conversion record) for a fitted pipeline. native: the pipeline's
    answers on X_check already made ({"predict", "proba"}), if any."""
    try:
        with warnings.catch_warnings():
            # skl2onnx reads attributes scikit-learn has deprecated (SVC.probA_).
            warnings.simplefilter("ignore")
            progress.report("converting", "converting to ONNX")
            model = to_onnx(pipeline, task, names, kinds)
            progress.report("verifying", f"verifying the ONNX model against the native one on {len(X_check)} rows")
            record = verify(model, pipeline, task, names, kinds, X_check, y_scale, native)
        return model, "onnx", record
    except ConversionError as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - any converter failure means: use a native format
        lines = str(e).strip().splitlines()
        reason = f"{type(e).__name__}: {lines[0] if lines else ''}"
    # Converter messages can embed whole arrays; the first line says what failed.
    record = {"converted": False, "reason": reason[:300], "max_abs_diff": None}
    from . import boosters
    if boosters.library(pipeline[-1]):  # no native format of theirs is safe to load
        raise boosters.not_converted(pipeline[-1], reason)
    if _is_bare_xgboost(pipeline):
        return dump_xgboost(pipeline[-1]), "xgboost-ubj", record
    return dump_skops(pipeline), "skops", record


def _is_bare_xgboost(pipeline) -> bool:
    return len(pipeline.steps) == 1 and type(pipeline[-1]).__module__.startswith("xgboost.")


def to_onnx(pipeline, task: str, names: list[str], kinds: list[str]) -> bytes:
    """The pipeline as a serialized ONNX model following the module's conventions."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    register_converters()
    if all(k == "float" for k in kinds):
        initial = [("X", FloatTensorType([None, len(names)]))]
    else:
        initial = [(n, FloatTensorType([None, 1]) if k == "float" else StringTensorType([None, 1]))
                   for n, k in zip(names, kinds)]
    options = {id(pipeline[-1]): {"zipmap": False}} if task == "classification" else None
    try:
        onx = convert_sklearn(pipeline, initial_types=initial, target_opset=OPSET, options=options)
    except NameError:
        # LinearSVC's converter refuses the zipmap option (it has no ZipMap to drop), yet
        # inside a Pipeline skl2onnx asks for zipmap unless some option is given.
        options = {id(pipeline[-1]): {"nocl": False}}
        onx = convert_sklearn(pipeline, initial_types=initial, target_opset=OPSET, options=options)
    wanted = ["value"] if task == "regression" else ["label", "probabilities"]
    if task == "classification" and not hasattr(pipeline, "predict_proba"):
        # The converter's second output would hold decision scores, not probabilities.
        wanted = ["label"]
    current = [o.name for o in onx.graph.output]
    if len(current) < len(wanted):
        raise ConversionError(f"converter produced outputs {current}, expected {wanted}")
    del onx.graph.output[len(wanted):]
    _rename_all(onx.graph, current[:len(wanted)], wanted)
    # skl2onnx sanitises input names ("my col" -> "my_col") and renames clashes with
    # its own output names; serving feeds inputs by the exact feature name.
    _rename_all(onx.graph, [i.name for i in onx.graph.input], [i[0] for i in initial])
    return onx.SerializeToString()


def _rename_all(graph, old_names: list[str], new_names: list[str]) -> None:
    """Rename graph inputs/outputs everywhere they are referenced."""
    for old, new in zip(old_names, new_names):
        if old == new:
            continue
        if new in _names(graph):
            raise ConversionError(f"the name {q(new)} is already used inside the graph; "
                                  "rename the feature")
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        for value in list(graph.input) + list(graph.output) + list(graph.value_info):
            if value.name == old:
                value.name = new


def _names(graph) -> set[str]:
    names = {n for node in graph.node for n in list(node.input) + list(node.output)}
    names |= {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    return names | {t.name for t in graph.initializer}


def onnx_feeds(X, names: list[str], kinds: list[str]) -> dict:
    """onnxruntime inputs for a design matrix, following the input convention."""
    if all(k == "float" for k in kinds):
        return {"X": np.asarray(X, dtype=np.float32)}
    feeds = {}
    for j, (name, kind) in enumerate(zip(names, kinds)):
        column = X[:, j].reshape(-1, 1)
        feeds[name] = column.astype(np.float32) if kind == "float" else column.astype(object)
    return feeds


def verify(model: bytes, pipeline, task, names, kinds, X, y_scale: float, native: dict | None = None) -> dict:
    """Run the graph with onnxruntime on X and compare with the native pipeline (whose
    answers on X, native, may be given)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    checked = with_unseen_categories(X, kinds)
    if checked is not X or native is None:
        native = {}  # rows were added: the native answers are made here
    X = checked
    outputs = [o.name for o in session.get_outputs()]
    got = dict(zip(outputs, session.run(None, onnx_feeds(X, names, kinds))))
    if task == "regression":
        diff = _max_diff(got["value"], native["predict"] if "predict" in native else pipeline.predict(X))
        tolerance = 1e-3 * max(1.0, y_scale)
        if not diff <= tolerance:
            raise ConversionError(f"ONNX predictions differ from the native model by {diff:.3g} "
                                  f"(tolerance {tolerance:.3g})")
        return {"converted": True, "max_abs_diff": diff, "reason": None, "opset": dict(OPSET)}
    return _verify_classifier(got, pipeline, X, native)


def with_unseen_categories(X, kinds: list[str], rows: int = 3):
    """X plus a few rows whose text features hold a category never seen in training.

    Serving will meet new categories and NULLs; the graph must treat them as the
    native encoders do, so the check covers them too.
    """
    text = [j for j, k in enumerate(kinds) if k == "text"]
    if not text or len(X) == 0:
        return X
    extra = X[:rows].copy()
    extra[:, text] = "\x01pgmodels-unseen"
    if len(extra) > 1:
        extra[1:2, text] = ""  # a NULL text
    return np.vstack([X, extra])


def _verify_classifier(got: dict, pipeline, X, made: dict) -> dict:
    diff = None
    if hasattr(pipeline, "predict_proba"):
        native = made["proba"] if made.get("proba") is not None else pipeline.predict_proba(X)
        if "probabilities" not in got or got["probabilities"].shape != native.shape:
            raise ConversionError("ONNX probabilities have the wrong shape")
        diff = _max_diff(got["probabilities"], native)
        if not diff <= PROBA_TOLERANCE:
            raise ConversionError(f"ONNX probabilities differ from the native model by {diff:.3g}")
        margins = _top2_margin(native)
    elif hasattr(pipeline, "decision_function"):
        margins = _top2_margin(np.asarray(pipeline.decision_function(X)))
    else:
        margins = np.full(len(X), np.inf)
    labels = np.asarray(got["label"]).reshape(-1)
    predicted = made["predict"] if "predict" in made else pipeline.predict(X)
    differ = (labels != np.asarray(predicted).reshape(-1)) & (margins >= MARGIN)  # CatBoost's is [n, 1]
    if differ.any():
        raise ConversionError(f"ONNX labels differ from the native model on {int(differ.sum())} "
                              f"of {len(labels)} test rows")
    return {"converted": True, "max_abs_diff": diff, "reason": None, "opset": dict(OPSET)}


def _max_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ConversionError(f"ONNX output has {a.size} values, the native model {b.size}")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def _top2_margin(scores: np.ndarray) -> np.ndarray:
    if scores.ndim == 1:  # binary decision_function: distance from the boundary
        return np.abs(scores)
    top = np.sort(scores, axis=1)
    return top[:, -1] - top[:, -2]


_registered = False


def register_converters() -> None:
    """Teach skl2onnx XGBoost (via onnxmltools) and pgmodels' AsFloat, once."""
    global _registered
    if _registered:
        return
    import xgboost
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (calculate_linear_classifier_output_shapes,
                                                  calculate_linear_regressor_output_shapes)

    from .preprocess import AsFloat

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    for cls in (xgboost.XGBClassifier, xgboost.XGBRFClassifier):
        update_registered_converter(cls, f"XGBoost{cls.__name__}",
                                    calculate_linear_classifier_output_shapes, convert_xgboost,
                                    options=classifier_options)
    for cls in (xgboost.XGBRegressor, xgboost.XGBRFRegressor):
        update_registered_converter(cls, f"XGBoost{cls.__name__}",
                                    calculate_linear_regressor_output_shapes, convert_xgboost)
    update_registered_converter(AsFloat, "PgmodelsAsFloat", _as_float_shape, _as_float_convert)
    from . import boosters  # LightGBM and CatBoost, where installed
    boosters.register(update_registered_converter, calculate_linear_classifier_output_shapes,
                      calculate_linear_regressor_output_shapes, classifier_options)
    _registered = True


def _as_float_shape(operator) -> None:
    from skl2onnx.common.data_types import FloatTensorType

    shape = operator.inputs[0].type.shape
    operator.outputs[0].type = FloatTensorType([shape[0], shape[1]])


def _as_float_convert(scope, operator, container) -> None:
    from onnx import TensorProto

    container.add_node("Cast", operator.inputs[0].full_name, operator.outputs[0].full_name,
                       to=TensorProto.FLOAT, name=scope.get_unique_operator_name("AsFloat"))
