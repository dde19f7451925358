"""LightGBM and CatBoost, by PostgresML's names, converted to ONNX like the others.

LightGBM goes through onnxmltools' converter. CatBoost exports ONNX itself (a
TreeEnsemble node, and a ZipMap for classifiers); the converter registered here splices
that export into the graph skl2onnx builds for the whole pipeline, feeding it the
preprocessed features and dropping the ZipMap, so a CatBoost model keeps the graph
interface of every other model (``label`` and ``probabilities``, or ``value``). Either
is then checked against the native model by :func:`convert.verify`.
"""

from __future__ import annotations

import os
import tempfile

# defaults pgmodels sets (after the seed): quiet, and no files written into the server's
# data directory (CatBoost writes a catboost_info directory unless told not to)
DEFAULTS = {
    "catboost": {"allow_writing_files": False, "verbose": False},
    "lightgbm": {"verbose": -1},
}


def library(estimator) -> str | None:
    module = type(estimator).__module__
    return "catboost" if module.startswith("catboost") else "lightgbm" if module.startswith("lightgbm") else None


def param_names(estimator) -> list[str]:
    """The hyperparameters an estimator takes. CatBoost's get_params lists only those set,
    so its constructor's signature is read instead."""
    if library(estimator) == "catboost":
        import inspect

        return sorted(p for p in inspect.signature(type(estimator).__init__).parameters if p not in ("self", "kwargs"))
    return sorted(estimator.get_params(deep=False))


def register(update_registered_converter, classifier_shapes, regressor_shapes, classifier_options) -> None:
    """Teach skl2onnx LightGBM's and CatBoost's estimators (those installed)."""
    try:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    except ImportError:
        pass
    else:
        update_registered_converter(lightgbm.LGBMClassifier, "LightGbmLGBMClassifier", classifier_shapes,
                                    convert_lightgbm, options=classifier_options)
        update_registered_converter(lightgbm.LGBMRegressor, "LightGbmLGBMRegressor", regressor_shapes,
                                    convert_lightgbm)
    try:
        import catboost
    except ImportError:
        return
    from skl2onnx._parse import _parse_sklearn_classifier, sklearn_classifier_list

    # CatBoost is not a ClassifierMixin: skl2onnx learns from this list that it has a
    # label and a probabilities output
    if catboost.CatBoostClassifier not in sklearn_classifier_list:
        sklearn_classifier_list.append(catboost.CatBoostClassifier)
    update_registered_converter(catboost.CatBoostClassifier, "PgmodelsCatBoostClassifier", classifier_shapes,
                                _convert_catboost, options=classifier_options, parser=_parse_sklearn_classifier)
    update_registered_converter(catboost.CatBoostRegressor, "PgmodelsCatBoostRegressor", regressor_shapes,
                                _convert_catboost)


def _catboost_onnx(model):
    import onnx

    fd, path = tempfile.mkstemp(suffix=".onnx", prefix="pgmodels-catboost-")
    os.close(fd)
    try:
        model.save_model(path, format="onnx")
        return onnx.load(path)
    finally:
        os.unlink(path)


def _convert_catboost(scope, operator, container) -> None:
    from onnx import helper

    graph = _catboost_onnx(operator.raw_operator).graph
    rename = {graph.input[0].name: operator.inputs[0].full_name}
    nodes = [n for n in graph.node if n.op_type != "ZipMap"]
    ensemble = next(n for n in nodes if n.op_type.startswith("TreeEnsemble"))
    outputs = [o.full_name for o in operator.outputs]
    if ensemble.op_type == "TreeEnsembleClassifier":
        rename[ensemble.output[0]] = outputs[0]
        if len(outputs) > 1:
            rename[ensemble.output[1]] = outputs[1]
    else:
        rename[ensemble.output[0]] = outputs[0]
    prefix = scope.get_unique_variable_name("catboost")

    def name(n: str) -> str:
        return rename.get(n) or (f"{prefix}_{n}" if n else n)
    for node in nodes:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        outs = [name(o) for o in node.output]
        if node is ensemble and ensemble.op_type == "TreeEnsembleClassifier" and len(outs) > 1 and len(outputs) == 1:
            outs[1] = f"{prefix}_unused_probabilities"
        container.add_node(node.op_type, [name(i) for i in node.input], outs,
                           op_domain=node.domain or "", op_version=1 if node.domain == "ai.onnx.ml" else None,
                           name=scope.get_unique_operator_name(f"CatBoost{node.op_type}"), **attrs)


def not_converted(estimator, reason: str):
    """The error for a LightGBM or CatBoost model that did not convert: they are served
    only through ONNX (no native format of theirs loads without running their code)."""
    from ..errors import FEATURE_NOT_SUPPORTED, PgmodelsError

    return PgmodelsError(f"the {library(estimator)} model could not be converted to ONNX",
                         detail=reason[:300] + ("" if reason.endswith(".") else "."),
                         hint="LightGBM and CatBoost models are served only through ONNX; try other hyperparameters "
                              "or another algorithm.", sqlstate=FEATURE_NOT_SUPPORTED)
