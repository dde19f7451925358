"""Linear models: exact contributions coefficient x (value - training mean).

For a model whose raw output is ``X @ coef.T + intercept`` in its own feature space (the
preprocessed columns), feature c contributes ``coef[k, c] * (x[c] - mean[c])`` to output
k, and the base is the output at the training mean: ``intercept[k] + coef[k] @ mean``.
These add up to the raw output exactly: the value of a regressor, the decision function
of a classifier (the log-odds of the second class for a binary logistic regression, one
column per class for a multi-class one). The training mean is taken over the training
split's rows in the model's space, so a one-hot column's mean is its category's share.
"""

from __future__ import annotations

import numpy as np

from .trees import Unsupported

LINEAR = {"LinearRegression", "Ridge", "RidgeClassifier", "Lasso", "ElasticNet", "Lars", "LassoLars",
          "OrthogonalMatchingPursuit", "BayesianRidge", "ARDRegression", "SGDRegressor", "SGDClassifier",
          "Perceptron", "PassiveAggressiveRegressor", "PassiveAggressiveClassifier", "RANSACRegressor",
          "TheilSenRegressor", "HuberRegressor", "QuantileRegressor", "LinearSVR", "LinearSVC",
          "LogisticRegression"}


def read(model, classifier: bool, Xt: np.ndarray) -> dict:
    """{coef (K, columns), intercept (K), mean (columns)} of a fitted linear model, checked
    against its own raw output on the model-space rows Xt; Unsupported otherwise."""
    name = type(model).__name__
    if name not in LINEAR or not type(model).__module__.startswith("sklearn."):
        raise Unsupported(f"{name} is not a linear model")
    inner = getattr(model, "estimator_", model) if name == "RANSACRegressor" else model
    coef = np.atleast_2d(np.asarray(inner.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(inner.intercept_, dtype=np.float64)).reshape(-1)
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])
    if coef.shape[1] != Xt.shape[1] or intercept.shape[0] != coef.shape[0]:
        raise Unsupported("coefficients that do not match the model's columns")
    raw = model.decision_function(Xt) if classifier else model.predict(Xt)
    raw = np.asarray(raw, dtype=np.float64).reshape(len(Xt), -1)
    mine = Xt @ coef.T + intercept
    if raw.shape != mine.shape or np.abs(raw - mine).max() > 1e-6 * max(1.0, float(np.abs(raw).max())):
        raise Unsupported("the model's output is not linear in its coefficients")
    return {"coef": coef, "intercept": intercept, "mean": Xt.mean(axis=0)}


def expected_value(a: dict) -> np.ndarray:
    return a["intercept"] + a["coef"] @ a["mean"]


def contributions(a: dict, Xt: np.ndarray, owner: np.ndarray, n_inputs: int) -> np.ndarray:
    """rows x inputs x K: each model column's share, summed onto the input it came from."""
    per_column = (Xt - a["mean"])[:, :, None] * a["coef"].T[None, :, :]      # (n, columns, K)
    onto = np.zeros((len(owner), n_inputs))
    onto[np.arange(len(owner)), owner] = 1.0
    return np.einsum("nck,ci->nik", per_column, onto)
