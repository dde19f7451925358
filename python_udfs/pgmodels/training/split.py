"""Train/test split: test_size and test_sampling -> row indices."""

from __future__ import annotations

import math

import numpy as np

from ..errors import q, DATA_EXCEPTION, INVALID_PARAMETER_VALUE, PgmodelsError

SAMPLINGS = ("random", "last", "stratified")
SEED = 42


def count_test_rows(n_rows: int, test_size) -> int:
    """Rows in the test split: a fraction when test_size <= 1, else a row count."""
    if n_rows < 2:
        raise PgmodelsError(f"cannot train on {n_rows} row" + ("" if n_rows == 1 else "s"),
                            detail="A model needs at least one training and one test row.",
                            sqlstate=DATA_EXCEPTION)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)) \
            or not math.isfinite(test_size) or test_size <= 0:
        raise PgmodelsError(f"invalid test_size {q(test_size)}",
                            detail="test_size must be a fraction in (0, 1) or a row count above 1.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if test_size <= 1:
        n_test = math.ceil(test_size * n_rows)
    elif float(test_size).is_integer():
        n_test = int(test_size)
    else:
        raise PgmodelsError(f"invalid test_size {q(test_size)}",
                            detail="A test_size above 1 is a row count and must be a whole number.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if test_size <= 1 and 0 < n_test < 2 <= n_rows - 1:
        raise PgmodelsError(f"test_size {q(test_size)} leaves 1 row to test on",
                            detail=f"The relation has {n_rows} rows; at least 2 test rows are needed to score a model.",
                            hint="Choose a larger test_size, or give a row count.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not 0 < n_test < n_rows:
        raise PgmodelsError(f"test_size {q(test_size)} leaves no rows to "
                            + ("test on" if n_test <= 0 else "train on"),
                            detail=f"The relation has {n_rows} rows; the test split would have {n_test}.",
                            hint="Choose a smaller test_size or train on more rows.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return n_test


def split_rows(n_rows: int, test_size, sampling: str,
               classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(train indices, test indices, note): note says why stratification was skipped.

    ``classes`` is the encoded target for classification, None for regression, where
    'stratified' means 'random'.
    """
    if sampling not in SAMPLINGS:
        raise PgmodelsError(f"invalid test_sampling {q(sampling)}",
                            hint="Valid values are: " + ", ".join(SAMPLINGS) + ".",
                            sqlstate=INVALID_PARAMETER_VALUE)
    n_test = count_test_rows(n_rows, test_size)
    rows = np.arange(n_rows)
    if sampling == "last":
        return rows[:-n_test], rows[-n_test:], None
    note = None
    if sampling == "stratified" and classes is not None:
        train, test, note = _stratified(rows, n_test, classes)
        if train is not None:
            return train, test, None
    shuffled = np.random.default_rng(SEED).permutation(rows)
    return np.sort(shuffled[n_test:]), np.sort(shuffled[:n_test]), note


def _stratified(rows, n_test, classes):
    from sklearn.model_selection import train_test_split

    try:
        train, test = train_test_split(rows, test_size=n_test, random_state=SEED,
                                       stratify=classes)
    except ValueError as e:
        # A class with one member, or fewer test rows than classes: sample at random.
        return None, None, f"stratified sampling was not possible ({e}); sampled at random"
    return np.sort(train), np.sort(test), None
