"""The administrator's limits on training, checked before any work starts.

Each is a setting only the administrator can change: it is read from the server's
configuration files (postgresql.conf, or ALTER SYSTEM, which only a superuser may run)
through pgmodels._admin_setting, never from SET or ALTER ROLE/DATABASE.

- pgmodels.max_training_rows: rows read from the training relation
- pgmodels.max_trees: n_estimators of forests, boosting and bagging, HGB's max_iter
- pgmodels.max_iterations: max_iter of the other iterative estimators
- pgmodels.max_search_candidates: hyperparameter combinations a search tries
- pgmodels.max_search_fits: the fits a search makes, candidates times cross-validation folds
"""

from __future__ import annotations

from .._plpy import query
from ..errors import PgmodelsError
from .algorithms import finite, short

PROGRAM_LIMIT_EXCEEDED = "54000"
DEFAULTS = {"max_training_rows": 10_000_000, "max_trees": 5_000, "max_iterations": 100_000,
            "max_search_candidates": 200, "max_search_fits": 1_000}
TREE_PARAMS = ("n_estimators", "iterations", "num_trees", "num_boost_round")  # and CatBoost's aliases
ITERATION_PARAMS = ("max_iter", "max_iter_predict", "n_restarts_optimizer", "max_trials", "max_subpopulation")
TREE_MAX_ITER = ("hist_gradient_boosting",)  # there max_iter is the number of trees


def admin_limits() -> dict[str, int]:
    caps = {}
    for name, default in DEFAULTS.items():
        raw = query("SELECT pgmodels._admin_setting($1) AS v", ["pgmodels." + name], ["text"])[0]["v"]
        try:
            caps[name] = int(raw) if raw not in (None, "") else default
        except ValueError:
            caps[name] = default
    return caps


def _over(setting: str, what: str, value, cap: int) -> PgmodelsError:
    return PgmodelsError(f"{what} {value} exceeds the limit of {cap}",
                         detail=f"The administrator's setting pgmodels.{setting} is {cap}.",
                         hint=f"Use a smaller value, or ask an administrator to raise pgmodels.{setting} "
                              "(ALTER SYSTEM SET ..., then SELECT pg_reload_conf()).",
                         sqlstate=PROGRAM_LIMIT_EXCEEDED)


def _check_params(algorithm: str, params: dict, caps: dict, label: str) -> None:
    for name, values in params.items():
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if name in TREE_PARAMS or (name in ITERATION_PARAMS and algorithm in TREE_MAX_ITER):
                setting, cap = "max_trees", caps["max_trees"]
            elif name in ITERATION_PARAMS:
                setting, cap = "max_iterations", caps["max_iterations"]
            else:
                continue
            if not finite(value) or value > cap:
                raise _over(setting, f"{label}{name}", short(value), cap)


def _trees(hyperparams: dict, search_params: dict) -> int | None:
    """XGBoost grows n_estimators x num_parallel_tree trees: the largest such product."""
    def values(name, default):
        v = search_params.get(name, hyperparams.get(name, default))
        return [x for x in (v if isinstance(v, list) else [v]) if isinstance(x, (int, float)) and not isinstance(x, bool)]
    if "num_parallel_tree" not in hyperparams and "num_parallel_tree" not in search_params:
        return None
    products = [a * b for a in values("n_estimators", 100) for b in values("num_parallel_tree", 1)]
    return max(products) if products else None


def check_spec(spec, caps: dict) -> None:
    """Refuse, before reading any data, a training that would pass a limit."""
    _check_params(spec.algorithm, spec.hyperparams or {}, caps, "")
    _check_params(spec.algorithm, spec.search_params or {}, caps, "search_params ")
    trees = _trees(spec.hyperparams or {}, spec.search_params or {})
    if trees is not None and (not finite(trees) or trees > caps["max_trees"]):
        raise _over("max_trees", "n_estimators x num_parallel_tree", short(trees), caps["max_trees"])
    if spec.search == "random":
        n_iter = (spec.search_args or {}).get("n_iter", 10)
        if isinstance(n_iter, (int, float)) and not isinstance(n_iter, bool) and (
                not finite(n_iter) or n_iter > caps["max_search_candidates"]):
            raise _over("max_search_candidates", "search_args n_iter", short(n_iter), caps["max_search_candidates"])
    candidates = 0
    if spec.search == "grid":
        size = 1
        for values in (spec.search_params or {}).values():
            size *= len(values) if isinstance(values, list) else 1
        if size > caps["max_search_candidates"]:
            raise _over("max_search_candidates", "a grid of", f"{size} candidates", caps["max_search_candidates"])
        candidates = size
    elif spec.search == "random":
        candidates = n_iter if isinstance(n_iter, int) else 10
    cv = (spec.search_args or {}).get("cv", 3)
    if spec.search and isinstance(cv, (int, float)) and not isinstance(cv, bool) and (
            not finite(cv) or candidates * cv > caps["max_search_fits"]):
        raise _over("max_search_fits", "a search of", f"{candidates} candidates x {short(cv)} folds",
                    caps["max_search_fits"])


# algorithms that grow one set of trees per class when there are more than two
PER_CLASS_TREES = ("gradient_boosting_trees", "hist_gradient_boosting", "xgboost", "xgboost_random_forest")


def check_data(spec, caps: dict, rows: int, classes: int) -> None:
    """Limits that depend on the data: trees per class, samples drawn per estimator."""
    params = {**(spec.hyperparams or {})}
    per_class = classes if spec.task == "classification" and classes > 2 and spec.algorithm in PER_CLASS_TREES else 1
    if per_class > 1:
        trees = _trees(params, spec.search_params or {}) or max(
            [v for v in ([params.get("n_estimators", params.get("max_iter", 100))]
                         + list((spec.search_params or {}).get("n_estimators", [])))
             if isinstance(v, (int, float)) and not isinstance(v, bool)] or [100])
        if trees * per_class > caps["max_trees"]:
            raise _over("max_trees", f"{short(trees)} trees for each of {classes} classes:",
                        short(trees * per_class), caps["max_trees"])
    samples = params.get("max_samples")
    if isinstance(samples, int) and not isinstance(samples, bool) and samples > rows:
        raise PgmodelsError(f"max_samples {samples} exceeds the {rows} rows read",
                            hint="Use a fraction of the rows (a number up to 1.0) or a count up to their number.",
                            sqlstate="22023")


def check_rows(n: int, cap: int, relation: str) -> None:
    if n > cap:
        raise PgmodelsError(f'relation "{relation}" has more than {cap} rows',
                            detail=f"The administrator's setting pgmodels.max_training_rows is {cap}.",
                            hint="Train on a view or a sample of the rows, or ask an administrator to raise "
                                 "pgmodels.max_training_rows.",
                            sqlstate=PROGRAM_LIMIT_EXCEEDED)


