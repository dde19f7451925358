"""Shared data and helpers for the pure-Python unit tests (no database)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

# Test the working tree, not a copy of pgmodels installed into the venv.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python_udfs"))

from pgmodels.training.fit import Column  # noqa: E402


@pytest.fixture(scope="session")
def binary_data():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=120, n_features=4, n_informative=3, n_redundant=0,
                               random_state=1)
    return X, y


@pytest.fixture(scope="session")
def linear_data():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 3))
    y = 3.0 * X[:, 0] - 2.0 * X[:, 1] + 0.5 * X[:, 2] + 10 + rng.normal(scale=0.1, size=100)
    return X, y


@pytest.fixture(scope="session")
def mixed_data():
    """A text column that matters, a numeric one that matters, a numeric one with NULLs."""
    rng = np.random.default_rng(7)
    n = 160
    color = rng.choice(["red", "green", "blue"], n)
    size = rng.normal(size=n)
    noise = rng.normal(size=n)
    y = np.where((color == "red") ^ (size > 0), "yes", "no")
    features = [
        Column("color", "text", color.tolist()),
        Column("size", "float", size.tolist()),
        Column("noise", "float", [None if i % 9 == 0 else float(v) for i, v in enumerate(noise)]),
    ]
    return features, Column("answer", "text", y.tolist())
