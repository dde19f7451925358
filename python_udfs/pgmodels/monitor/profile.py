"""The reference profile a model version keeps of its training features.

Per numeric feature: quantile bin edges (deciles by default, the PSI bins), the share of
the training rows in each bin, mean, standard deviation, min, max, the null rate, and a
compact quantile function (101 points), and an equal-width histogram (20 bins from min
to max) for pictures; a feature with at most 20 distinct values (a count, a flag) also keeps
the share of each value, and drift compares those instead of a continuous distribution from which the Kolmogorov-Smirnov test compares
current data without keeping the training rows. Per categorical (text) feature: the
category frequencies (the most frequent ones, the rest pooled as "(other)"), and the null
rate. The target (label or value) gets the same treatment. Everything is plain JSON, so
it is kept in the catalog with the model and dumped and restored with it.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

BINS = 10
HISTOGRAM_BINS = 20
DISCRETE_MAX = 20  # at most this many distinct values: a discrete feature (no KS test)
QUANTILE_POINTS = 101
MAX_CATEGORIES = 50
OTHER = "(other)"


def label_text(v) -> str:
    """A class label as predict_label() writes it."""
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def numeric(values) -> dict:
    """The profile of one numeric column (None and NaN are nulls)."""
    x = np.asarray(values, dtype=np.float64)  # None is NaN
    n = len(x)
    # sorted once: the quantiles then select from sorted values, and the distinct values
    # are where the sorted ones change
    kept = x[~np.isnan(x)]
    present = np.sort(kept)
    profile = {"kind": "numeric", "rows": n, "null_rate": (n - len(present)) / n if n else 0.0}
    if len(present) == 0:
        return {**profile, "edges": [], "shares": [], "quantiles": []}
    edges = np.unique(np.quantile(present, np.linspace(0, 1, BINS + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    hist, hist_edges = np.histogram(present, bins=HISTOGRAM_BINS)
    values, value_counts = _distinct(present.astype(np.float32))  # as drift reads them
    if len(values) <= DISCRETE_MAX:  # a count, a flag, a code: compared by its values' shares
        profile["values"] = values.tolist()
        profile["value_shares"] = (value_counts / len(present)).tolist()
    # mean and standard deviation in the rows' order: sums in another order round otherwise
    return {**profile, "mean": float(kept.mean()), "std": float(kept.std()),
            "min": float(present.min()), "max": float(present.max()),
            "edges": edges.tolist(), "shares": (counts / len(present)).tolist(),
            "quantiles": np.quantile(present, np.linspace(0, 1, QUANTILE_POINTS)).tolist(),
            "histogram": {"edges": hist_edges.tolist(), "shares": (hist / len(present)).tolist()}}


def categorical(values, text=str) -> dict:
    """The profile of one text column: its categories' shares among non-null rows, each
    value named by text (str; label_text for class labels)."""
    counts: dict[str, int] = {}
    for v, c in Counter(values).items():  # counted in C, then named: str(1) and "1" are one category
        if v is not None:
            counts[text(v)] = counts.get(text(v), 0) + c
    return categorical_counts(counts, len(values))


def _distinct(ordered: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(ordered, return_counts=True) of values already sorted."""
    if not len(ordered):
        return ordered, np.zeros(0, dtype=np.int64)
    first = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    return ordered[first], np.diff(np.append(first, len(ordered)))


def categorical_counts(counts: dict[str, int], rows: int) -> dict:
    """categorical() of rows values without nulls, given as each category's count."""
    cats = sorted(counts)  # as np.unique orders them
    return _categorical(cats, [counts[c] for c in cats], rows)


def _categorical(cats: list, counts: list, n: int) -> dict:
    present = int(sum(counts))
    order = np.argsort(-np.asarray(counts)) if present else []
    shares = {}
    for i in list(order)[:MAX_CATEGORIES]:
        shares[str(cats[i])] = counts[i] / present
    rest = 1.0 - sum(shares.values())
    if rest > 1e-12:
        shares[OTHER] = rest
    return {"kind": "categorical", "rows": n, "null_rate": (n - present) / n if n else 0.0,
            "shares": {k: float(v) for k, v in shares.items()}}


def of_columns(columns: dict[str, tuple[str, list]]) -> dict:
    """Profiles of many columns: name -> (kind 'numeric' or 'text', values)."""
    return {name: (numeric(values) if kind != "text" else categorical(values))
            for name, (kind, values) in columns.items()}


def of_training(task: str, features, target) -> dict:
    """The reference profile of a training's rows: each feature column's (fit.Column: name,
    kind, values) and the target's (a class label's text for a classifier)."""
    target_profile = (categorical(target.values, label_text) if task == "classification" or target.kind == "text"
                      else numeric(target.values))
    return {"features": of_columns({c.name: (c.kind, c.values) for c in features}), "target": target_profile}
