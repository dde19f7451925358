"""Approximate explanations by permutation sampling, for models with no exact explainer
(kernels, neighbours, MLPs, imported ONNX models).

For a row x, each sample takes one background row b and one order of the features, and
walks from b to x one feature at a time in that order: the change in the model's output
when feature j is switched from b's value to x's is a sample of j's Shapley value (the
interventional one, over the background rows). The samples are BACKGROUND rows
(the first ones of the stored background) times PERMUTATIONS orders drawn with a fixed
seed, each with its reverse (antithetic pairs, which cancel much of the noise), so the
same row always gets the same answer. Every walk ends at x, so the contributions add up
exactly to f(x) minus the base, the mean output over those background rows; each
contribution's standard error is reported with it. The model's output is what its
serving graph gives: the class probabilities of a classifier, the value of a regressor.
"""

from __future__ import annotations

import numpy as np

BACKGROUND = 16     # background rows per explained row
PERMUTATIONS = 8    # feature orders per background row (4 drawn, and their reverses)
SEED = 0
MAX_EVALUATIONS = 250_000   # model rows per call of f


def orders(m: int, permutations: int = PERMUTATIONS, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    drawn = [rng.permutation(m) for _ in range(max(permutations // 2, 1))]
    return np.asarray([p for d in drawn for p in (d, d[::-1])])[:max(permutations, 2)]


def explain(f, X: np.ndarray, background: np.ndarray, permutations: int = PERMUTATIONS,
            seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(contributions rows x m x K, base K, standard errors rows x m x K) of design rows X
    (input space) for the model f (design rows -> rows x K outputs)."""
    n, m = X.shape
    B = background[:BACKGROUND]
    perms = orders(m, permutations, seed)
    R = len(perms)
    # masks[r, k, j]: after k steps of order r, feature j has x's value
    rank = np.argsort(perms, axis=1)                                       # (R, m): step of each feature
    masks = rank[:, None, :] < np.arange(m + 1)[None, :, None]             # (R, m + 1, m)
    per_row = len(B) * R * (m + 1)
    chunk = max(1, MAX_EVALUATIONS // per_row)
    phi, err, base = [], [], None
    for s in range(0, n, chunk):
        Xs = X[s:s + chunk]
        rows = np.where(masks[None, None, :, :, :], Xs[:, None, None, None, :], B[None, :, None, None, :])
        out = np.asarray(f(rows.reshape(-1, m)), dtype=np.float64)
        out = out.reshape(len(Xs), len(B), R, m + 1, -1)
        steps = out[:, :, :, 1:, :] - out[:, :, :, :-1, :]                 # (n, b, R, m, K) by step
        # step k of order r switched feature perms[r, k]: by feature, rank[r, j] is its step
        by_feature = np.take_along_axis(steps, rank[None, None, :, :, None], axis=3)
        samples = by_feature.reshape(len(Xs), len(B) * R, m, -1)
        phi.append(samples.mean(axis=1))
        err.append(samples.std(axis=1) / np.sqrt(samples.shape[1]))
        base = out[0, :, :, 0, :].mean(axis=(0, 1))
    if base is None:
        return np.zeros((0, m, 1)), np.zeros(1), np.zeros((0, m, 1))
    return np.concatenate(phi), base, np.concatenate(err)
