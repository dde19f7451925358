"""Hyperparameter search: 'grid' (GridSearchCV) and 'random' (RandomizedSearchCV).

Users name estimator hyperparameters ("max_depth"); the search runs over the whole
Pipeline, so the names are prefixed with the model step ("model__max_depth") here and
stripped again in the results.
"""

from __future__ import annotations

from .. import progress
from ..errors import q, INVALID_PARAMETER_VALUE, PgmodelsError
from .metrics import clean

SEARCHES = ("grid", "random")
SEARCH_ARGS = ("n_iter", "cv")
STEP = "model"
SEED = 42


def check_search(search, search_params, search_args, estimator) -> None:
    """Validate the search settings before any fitting starts."""
    if search is None:
        return
    if search not in SEARCHES:
        raise PgmodelsError(f"invalid search {q(search)}",
                            hint="Valid values are: grid, random, or NULL for no search.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not isinstance(search_params, dict) or not search_params:
        raise PgmodelsError(f"{search} search needs search_params",
                            hint='Pass search_params => \'{"max_depth": [2, 4, 6]}\'.',
                            sqlstate=INVALID_PARAMETER_VALUE)
    from . import boosters

    valid = boosters.param_names(estimator)  # LightGBM's and CatBoost's allow-lists
    for name, values in search_params.items():
        if name not in valid and boosters.refused(estimator, name) is not None:
            raise boosters.refused(estimator, name)
        if name not in valid:
            raise PgmodelsError(f"unknown hyperparameter {q(name)} in search_params",
                                detail=f"{type(estimator).__name__} accepts: "
                                       + ", ".join(valid) + ".",
                                sqlstate=INVALID_PARAMETER_VALUE)
        if not isinstance(values, list) or not values:
            raise PgmodelsError(f"search_params value for {q(name)} must be a non-empty array",
                                sqlstate=INVALID_PARAMETER_VALUE)
        from .algorithms import check_value

        task = "classification" if hasattr(estimator, "predict_proba") or "Classifier" in type(estimator).__name__ \
            else "regression"
        for value in values:
            check_value(task, estimator, name, value)
    for name, value in (search_args or {}).items():
        if name not in SEARCH_ARGS:
            raise PgmodelsError(f"unknown search_args key {q(name)}",
                                hint="Valid keys are: " + ", ".join(SEARCH_ARGS) + ".",
                                sqlstate=INVALID_PARAMETER_VALUE)
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "cv" else 1):
            raise PgmodelsError(f"invalid search_args {name} {q(value)}",
                                detail="cv must be an integer of at least 2 and n_iter a positive integer.",
                                sqlstate=INVALID_PARAMETER_VALUE)


def make_search(search, search_params, search_args, pipeline, task):
    """An unfitted GridSearchCV / RandomizedSearchCV over ``pipeline``."""
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    args = search_args or {}
    grid = {f"{STEP}__{k}": v for k, v in search_params.items()}
    scoring = "f1_macro" if task == "classification" else "r2"
    scorer = progress.CandidateScorer(scoring, grid, args.get("n_iter", 10) if search == "random" else None,
                                      args.get("cv", 3))  # the scoring, counting candidates as they finish
    common = dict(scoring=scorer, cv=args.get("cv", 3), refit=True, n_jobs=1,
                  error_score="raise")
    if search == "grid":
        return GridSearchCV(pipeline, grid, **common)
    return RandomizedSearchCV(pipeline, grid, n_iter=args.get("n_iter", 10),
                              random_state=SEED, **common)


def search_results(fitted) -> dict:
    """The JSON-serialisable summary of a fitted search."""
    cv = fitted.cv_results_
    return {
        "best_params": _unprefix(fitted.best_params_),
        "best_score": clean(float(fitted.best_score_)),
        "params": [_unprefix(p) for p in cv["params"]],
        "mean_test_score": [clean(float(s)) for s in cv["mean_test_score"]],
        "rank_test_score": [int(r) for r in cv["rank_test_score"]],
    }


def _unprefix(params: dict) -> dict:
    return {k.split("__", 1)[1]: jsonable(v) for k, v in params.items()}


def jsonable(value):
    """A JSON-safe version of a hyperparameter value; objects become their repr."""
    value = clean(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return repr(value)
