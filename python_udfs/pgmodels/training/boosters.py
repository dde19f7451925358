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
# set after the user's hyperparameters, whatever they say: CatBoost writes no file
FORCED = {"catboost": {"allow_writing_files": False}}

# The hyperparameters a user may set: pure model settings. Everything else the libraries
# take (files and directories to read or write, snapshots, threads, devices, memory,
# logging, categorical/text feature machinery pgmodels never feeds them) is refused
# before any work, since training runs as the database server's OS user.
ALLOWED = {
    "catboost": frozenset((
        "iterations", "n_estimators", "num_trees", "num_boost_round", "learning_rate", "eta", "depth",
        "max_depth", "l2_leaf_reg", "reg_lambda", "model_size_reg", "rsm", "colsample_bylevel", "loss_function",
        "objective", "border_count", "max_bin", "feature_border_type", "od_pval", "od_wait", "od_type",
        "nan_mode", "leaf_estimation_iterations", "leaf_estimation_method", "leaf_estimation_backtracking",
        "random_seed", "random_state", "random_strength", "bagging_temperature", "bootstrap_type", "subsample",
        "sampling_frequency", "mvs_reg", "grow_policy", "min_data_in_leaf", "min_child_samples", "max_leaves",
        "num_leaves", "score_function", "model_shrink_rate", "model_shrink_mode", "langevin",
        "diffusion_temperature", "posterior_sampling", "boost_from_average", "approx_on_full_history",
        "fold_len_multiplier", "fold_permutation_block", "penalties_coefficient", "has_time",
        "eval_metric", "custom_metric", "custom_loss", "class_weights", "auto_class_weights", "scale_pos_weight",
        "boosting_type", "one_hot_max_size", "random_score_type", "allow_const_label", "target_border",
    )),
    "lightgbm": frozenset((
        "boosting_type", "num_leaves", "max_depth", "learning_rate", "n_estimators", "subsample_for_bin",
        "objective", "class_weight", "min_split_gain", "min_child_weight", "min_child_samples", "subsample",
        "subsample_freq", "colsample_bytree", "reg_alpha", "reg_lambda", "random_state", "importance_type",
        "n_jobs",  # refused unless 0 or 1, like scikit-learn's (algorithms.RESERVED)
    )),
}
# the number of trees, under every name the library takes for it (pgmodels.max_trees)
TREE_ALIASES = ("n_estimators", "iterations", "num_trees", "num_boost_round")
# the libraries' own bounds, checked before fitting (beyond them they fail inside the fit)
_BOUNDS = {
    "catboost": {"depth": (1, 16), "max_depth": (1, 16), "max_leaves": (2, 64), "num_leaves": (2, 64),
                 "border_count": (1, 65535), "max_bin": (1, 65535), "one_hot_max_size": (0, 255),
                 "leaf_estimation_iterations": (1, 1000), "min_data_in_leaf": (1, 10_000_000),
                 "min_child_samples": (1, 10_000_000)},
    "lightgbm": {"num_leaves": (2, 131072), "subsample_for_bin": (1, 2**31 - 1), "subsample_freq": (0, 2**31 - 1),
                 "min_child_samples": (0, 2**31 - 1), "max_depth": (-1, 2**31 - 1)},
}
_CHOICES = {
    "catboost": {"boosting_type": ("Ordered", "Plain"), "grow_policy": ("SymmetricTree", "Depthwise", "Lossguide"),
                 "bootstrap_type": ("Bayesian", "Bernoulli", "MVS", "No"), "nan_mode": ("Min", "Max", "Forbidden"),
                 "od_type": ("IncToDec", "Iter")},
    "lightgbm": {"boosting_type": ("gbdt", "dart", "rf"), "importance_type": ("split", "gain")},
}


def library(estimator) -> str | None:
    module = type(estimator).__module__
    return "catboost" if module.startswith("catboost") else "lightgbm" if module.startswith("lightgbm") else None


def param_names(estimator) -> list[str]:
    """The hyperparameters a user may give an estimator: for LightGBM and CatBoost the
    allow-list (CatBoost's get_params lists only those set, and both take settings that
    touch files, threads and devices); for the others get_params."""
    lib = library(estimator)
    if lib:
        return sorted(ALLOWED[lib])
    return sorted(estimator.get_params(deep=False))


def refused(estimator, name: str):
    """The error for a parameter the library has but pgmodels does not let a user set, or
    None when ``name`` is no parameter of the library at all."""
    from ..errors import q, INVALID_PARAMETER_VALUE, PgmodelsError

    lib = library(estimator)
    if lib is None:
        return None
    if lib == "catboost":
        import inspect

        known = set(inspect.signature(type(estimator).__init__).parameters)
    else:
        import lightgbm

        known = set(estimator.get_params(deep=False))
        try:  # LightGBM's own parameters and their aliases (output_model, num_threads, ...)
            for main, aliases in lightgbm.basic._ConfigAliases._get_all_param_aliases().items():
                known.update([main, *aliases])
        except AttributeError:  # another LightGBM version: such names are then "unknown"
            pass
    if name not in known:
        return None
    return PgmodelsError(f"hyperparameter {q(name)} is not allowed for {lib}",
                         detail="pgmodels takes only model settings: files and directories, snapshots, threads, "
                                "devices, memory and logging are its own (training runs as the server's OS user).",
                         hint=f"Leave {name} out.", sqlstate=INVALID_PARAMETER_VALUE)


def check_value(estimator, name: str, value) -> None:
    """LightGBM's and CatBoost's own bounds and choices, before fitting."""
    from ..errors import q, INVALID_PARAMETER_VALUE, PgmodelsError

    lib = library(estimator)
    if lib is None or value is None:
        return
    bounds = _BOUNDS[lib].get(name)
    if bounds is not None and (isinstance(value, bool) or not isinstance(value, int)
                               or not bounds[0] <= value <= bounds[1]):
        raise PgmodelsError(f"invalid value {q(str(value)[:24])} for hyperparameter {q(name)}",
                            detail=f"{lib} takes a whole number from {bounds[0]} to {bounds[1]}.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    choices = _CHOICES[lib].get(name)
    if choices is not None and value not in choices:
        raise PgmodelsError(f"invalid value {q(str(value)[:24])} for hyperparameter {q(name)}",
                            detail=f"{lib} takes one of: {', '.join(choices)}.", sqlstate=INVALID_PARAMETER_VALUE)


def fit_errors() -> tuple:
    """The exceptions LightGBM and CatBoost raise for settings they cannot fit with."""
    errors = []
    try:
        from catboost import CatBoostError
        errors.append(CatBoostError)
    except ImportError:
        pass
    try:
        from lightgbm.basic import LightGBMError
        errors.append(LightGBMError)
    except ImportError:
        pass
    return tuple(errors)


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
