"""PostgresML algorithm names -> scikit-learn / XGBoost estimators.

Estimator classes are named as ``"module:Class"`` strings and imported only when used,
so asking for a linear model never imports XGBoost.
"""

from __future__ import annotations

import importlib
import math
import warnings

from ..errors import q, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, PgmodelsError
from . import boosters

TASKS = ("classification", "regression")

_LM = "sklearn.linear_model"
_ENS = "sklearn.ensemble"
_SVM = "sklearn.svm"
_GP = "sklearn.gaussian_process"

# name -> (regressor, classifier); None where the algorithm has no such variant.
_CATALOGUE: dict[str, tuple[str | None, str | None]] = {
    "linear": (f"{_LM}:LinearRegression", f"{_LM}:LogisticRegression"),
    "ridge": (f"{_LM}:Ridge", f"{_LM}:RidgeClassifier"),
    "lasso": (f"{_LM}:Lasso", None),
    "elastic_net": (f"{_LM}:ElasticNet", None),
    "least_angle": (f"{_LM}:Lars", None),
    "lasso_least_angle": (f"{_LM}:LassoLars", None),
    "orthogonal_matching_pursuit": (f"{_LM}:OrthogonalMatchingPursuit", None),
    "bayesian_ridge": (f"{_LM}:BayesianRidge", None),
    "automatic_relevance_determination": (f"{_LM}:ARDRegression", None),
    "stochastic_gradient_descent": (f"{_LM}:SGDRegressor", f"{_LM}:SGDClassifier"),
    "perceptron": (None, f"{_LM}:Perceptron"),
    "passive_aggressive": (f"{_LM}:PassiveAggressiveRegressor",
                           f"{_LM}:PassiveAggressiveClassifier"),
    "ransac": (f"{_LM}:RANSACRegressor", None),
    "theil_sen": (f"{_LM}:TheilSenRegressor", None),
    "huber": (f"{_LM}:HuberRegressor", None),
    "quantile": (f"{_LM}:QuantileRegressor", None),
    "kernel_ridge": ("sklearn.kernel_ridge:KernelRidge", None),
    "gaussian_process": (f"{_GP}:GaussianProcessRegressor", f"{_GP}:GaussianProcessClassifier"),
    "svm": (f"{_SVM}:SVR", f"{_SVM}:SVC"),
    "nu_svm": (f"{_SVM}:NuSVR", f"{_SVM}:NuSVC"),
    "linear_svm": (f"{_SVM}:LinearSVR", f"{_SVM}:LinearSVC"),
    "ada_boost": (f"{_ENS}:AdaBoostRegressor", f"{_ENS}:AdaBoostClassifier"),
    "bagging": (f"{_ENS}:BaggingRegressor", f"{_ENS}:BaggingClassifier"),
    "extra_trees": (f"{_ENS}:ExtraTreesRegressor", f"{_ENS}:ExtraTreesClassifier"),
    "gradient_boosting_trees": (f"{_ENS}:GradientBoostingRegressor",
                                f"{_ENS}:GradientBoostingClassifier"),
    "hist_gradient_boosting": (f"{_ENS}:HistGradientBoostingRegressor",
                               f"{_ENS}:HistGradientBoostingClassifier"),
    "random_forest": (f"{_ENS}:RandomForestRegressor", f"{_ENS}:RandomForestClassifier"),
    "xgboost": ("xgboost:XGBRegressor", "xgboost:XGBClassifier"),
    "xgboost_random_forest": ("xgboost:XGBRFRegressor", "xgboost:XGBRFClassifier"),
    "lightgbm": ("lightgbm:LGBMRegressor", "lightgbm:LGBMClassifier"),
    "catboost": ("catboost:CatBoostRegressor", "catboost:CatBoostClassifier"),
}


def algorithm_names(task: str | None = None) -> list[str]:
    """The algorithm names valid for ``task`` (all of them when task is None)."""
    slot = {"regression": 0, "classification": 1}.get(task)
    return sorted(name for name, pair in _CATALOGUE.items()
                  if slot is None or pair[slot] is not None)


def check_task(task) -> str:
    if task not in TASKS:
        raise PgmodelsError(f"invalid task {q(task)}",
                            detail="The task must be 'classification' or 'regression'.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return task


def estimator_class(algorithm: str, task: str):
    """The estimator class for ``algorithm`` on ``task``, or a PgmodelsError."""
    check_task(task)
    if algorithm not in _CATALOGUE:
        raise PgmodelsError(f"unknown algorithm {q(algorithm)}",
                            hint="Valid algorithms for " + task + " are: "
                                 + ", ".join(algorithm_names(task)) + ".",
                            sqlstate=INVALID_PARAMETER_VALUE)
    path = _CATALOGUE[algorithm][0 if task == "regression" else 1]
    if path is None:
        raise PgmodelsError(f"algorithm {q(algorithm)} does not support {task}",
                            hint="Valid algorithms for " + task + " are: "
                                 + ", ".join(algorithm_names(task)) + ".",
                            sqlstate=INVALID_PARAMETER_VALUE)
    module, name = path.split(":")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:  # e.g. PassiveAggressive*, deprecated in scikit-learn 1.8
        raise PgmodelsError(f"algorithm {q(algorithm)} is not available",
                            detail=f"The installed {module.split('.')[0]} has no {name}.",
                            sqlstate=FEATURE_NOT_SUPPORTED)
    return cls


def make_estimator(algorithm: str, task: str, hyperparams: dict | None):
    """An unfitted estimator with pgmodels' defaults and the user's hyperparameters.

    Values are not validated here: scikit-learn checks them at fit time, and
    :func:`pgmodels.training.fit.train_model` turns that failure into a 22023 error.
    """
    cls = estimator_class(algorithm, task)
    hyperparams = dict(hyperparams or {})
    with warnings.catch_warnings():
        # Deprecation notices are for developers, not for the SQL user training a model.
        warnings.simplefilter("ignore", FutureWarning)
        estimator = cls()
    check_hyperparams(algorithm, estimator, hyperparams)
    for name, value in hyperparams.items():
        check_value(task, estimator, name, value)
    valid = boosters.param_names(estimator)
    defaults = dict(boosters.DEFAULTS.get(boosters.library(estimator), {}))
    # Same data, same model: every estimator that draws random numbers gets a fixed seed.
    if "random_state" in valid:
        defaults["random_state"] = 0
    # predict_proba is needed for probabilities, roc_auc and log_loss.
    if "probability" in valid:
        defaults["probability"] = True
    estimator.set_params(**{**defaults, **hyperparams, **boosters.FORCED.get(boosters.library(estimator), {})})
    return estimator


# Hyperparameters whose values are checked before any work, whatever the estimator's own
# checks (XGBoost's are lax: zero trees, a NaN learning rate). name -> (low, high, kind):
# kind "int" (a whole number), "num" (any finite number); low is exclusive for "(" ranges.
_VALUE_RULES = {
    "n_estimators": (1, None, "int"), "iterations": (1, None, "int"), "num_trees": (1, None, "int"),
    "num_boost_round": (1, None, "int"), "max_iter": (1, None, "int"), "max_depth": (0, None, "int"),
    "num_parallel_tree": (1, None, "int"),
    "max_leaf_nodes": (2, None, "int"), "max_bins": (2, 255, "int"),
    "learning_rate": ((0, "("), 1e4, "num"), "eta": ((0, "("), 1e4, "num"),
    "subsample": ((0, "("), 1, "num"), "colsample_bytree": ((0, "("), 1, "num"),
    "colsample_bylevel": ((0, "("), 1, "num"), "colsample_bynode": ((0, "("), 1, "num"),
    "reg_alpha": (0, None, "num"), "reg_lambda": (0, None, "num"), "gamma": (0, None, "num"),
    "min_child_weight": (0, None, "num"), "scale_pos_weight": ((0, "("), None, "num"),
    "max_delta_step": (0, None, "num"), "alpha": (0, None, "num"), "C": ((0, "("), None, "num"),
    "tol": ((0, "("), None, "num"),
}
_OBJECTIVE_PREFIXES = {"classification": ("binary:", "multi:"), "regression": ("reg:", "count:", "survival:")}


def finite(value) -> bool:
    """Whether a JSON number is finite (a huge integer from jsonb is not a float)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def short(value) -> str:
    text = str(value)
    return text if len(text) <= 24 else f"{float(value):.6g}" if finite(value) else text[:20] + "..."


# Set by pgmodels, not by hyperparams: training runs in one child process of the backend,
# which must not start worker processes of its own.
RESERVED = ("n_jobs", "nthread", "device", "verbose", "verbosity")


def check_value(task: str, estimator, name: str, value) -> None:
    """Refuse, before fitting, a hyperparameter value that would give a broken model."""
    if name in RESERVED and value not in (None, 0, 1, False):
        raise PgmodelsError(f"hyperparameter {q(name)} is set by pgmodels",
                            detail="Training runs in one child process of the backend, with the threads the "
                                   "server allows; it starts no workers of its own.",
                            hint=f"Leave {name} out.", sqlstate=INVALID_PARAMETER_VALUE)
    boosters.check_value(estimator, name, value)
    rule = _VALUE_RULES.get(name)
    if name == "gamma" and isinstance(value, str):  # SVMs take 'scale' / 'auto'
        return
    if rule is not None and value is not None:
        low, high, kind = rule
        exclusive = isinstance(low, tuple)
        low = low[0] if exclusive else low
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not finite(value) or (kind == "int" and float(value) != int(value)) \
                or (value <= low if exclusive else value < low) or (high is not None and value > high):
            bounds = f"{'above' if exclusive else 'at least'} {low}" + (f" and at most {high}" if high else "")
            raise PgmodelsError(f"invalid value {q(short(value))} for hyperparameter {q(name)}",
                                detail=f"It must be a {'whole number' if kind == 'int' else 'finite number'} {bounds}.",
                                sqlstate=INVALID_PARAMETER_VALUE)
    if name == "objective" and type(estimator).__module__.startswith("xgboost") and isinstance(value, str) \
            and not value.startswith(_OBJECTIVE_PREFIXES[task]):
        raise PgmodelsError(f"objective {q(value)} does not fit a {task} model",
                            hint=f"Use an objective starting with {' or '.join(_OBJECTIVE_PREFIXES[task])}.",
                            sqlstate=INVALID_PARAMETER_VALUE)


def check_hyperparams(algorithm: str, estimator, hyperparams: dict) -> None:
    if not isinstance(hyperparams, dict):
        raise PgmodelsError("hyperparams must be a JSON object",
                            sqlstate=INVALID_PARAMETER_VALUE)
    valid = boosters.param_names(estimator)
    for name in hyperparams:
        if name not in valid and boosters.refused(estimator, name) is not None:
            raise boosters.refused(estimator, name)
        if name not in valid:
            raise PgmodelsError(f"unknown hyperparameter {q(name)} for algorithm {q(algorithm)}",
                                detail=f"{type(estimator).__name__} accepts: "
                                       + ", ".join(valid) + ".",
                                sqlstate=INVALID_PARAMETER_VALUE)
