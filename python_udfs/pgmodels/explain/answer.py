"""From an explainer's numbers to the answer a user reads: which class's output, the
features' values as text, the top_n features by |contribution|, and what the base means.

Shared by explain_prediction(), explain_batch() and the ``contributions`` output of batch
jobs, stream consumers and pgmodels serve, so all of them give the same numbers.

Which output is explained: a regression model's value; for a classifier the output of the
``class`` asked for, or by default the second class of a binary classifier (the log-odds
of a boosted or linear model, whose first class is its negation) and the predicted class
of a multi-class one (the class whose output is largest for that row).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import INVALID_PARAMETER_VALUE, PgmodelsError
from ..monitor.profile import label_text
from ..serving import vectorized
from ..serving.runtime import Model
from .explainer import Explainer, Explanation

BASE, OTHER = "(base)", "(other)"


@dataclass
class Answer:
    """Per row: the contributions of the model's features (rows x features), the base,
    and the class (text) each row's numbers are for (None for regression)."""
    contributions: np.ndarray
    base: np.ndarray
    classes: list
    errors: np.ndarray | None = None


def check_top_n(top_n) -> None:
    if top_n is not None and top_n < 1:
        raise PgmodelsError(f"top_n must be at least 1, got {top_n}",
                            hint="Pass NULL (the default) for every feature.", sqlstate=INVALID_PARAMETER_VALUE)


def explain(model: Model, explainer: Explainer, X: np.ndarray, cls: str | None = None) -> Answer:
    """The explanation of design rows X (rows x features in the model's order)."""
    got = explainer.explain(X, _model_function(model) if not explainer.exact else None)
    return select(model, explainer, got, cls)


def _model_function(model: Model):
    """The model's own output for design rows, as the sampling estimate asks for it: the
    class probabilities (classifiers) or the value, from the serving engine."""
    numeric = vectorized.numeric_features(model)
    text = vectorized.text_features(model)

    def f(rows: np.ndarray) -> np.ndarray:
        Xn = rows[:, numeric].astype(np.float32) if numeric else np.zeros((len(rows), 0), np.float32)
        T = rows[:, text].astype(object) if text else None
        fed = vectorized.feed_arrays(model, Xn, T)
        if model.task == "classification":
            return np.asarray(model.engine.probabilities(fed), dtype=np.float64)
        return np.asarray(model.engine.values(fed), dtype=np.float64).reshape(-1, 1)
    return f


def select(model: Model, explainer: Explainer, got: Explanation, cls: str | None) -> Answer:
    phi, base, err = got.contributions, np.asarray(got.base, dtype=np.float64).reshape(-1), got.errors
    n = phi.shape[0]
    if model.task != "classification":
        if cls is not None:
            raise PgmodelsError(f"{model.describe()} is a {model.task} model, which has no classes",
                                detail=f'A class "{cls}" was asked for.', hint="Leave class out (NULL).",
                                sqlstate=INVALID_PARAMETER_VALUE)
        return Answer(phi[:, :, 0], np.repeat(base[0], n), [None] * n, None if err is None else err[:, :, 0])
    texts = [label_text(v) for v in (model.labels or [])]
    columns = explainer.columns
    if cls is not None:
        if cls not in texts:
            raise PgmodelsError(f'unknown class "{cls}"',
                                detail=f"The classes of {model.describe()} are: " + ", ".join(texts[:20]) + ".",
                                hint="Name a class as predict_label() writes it.", sqlstate=INVALID_PARAMETER_VALUE)
        wanted = np.repeat(texts.index(cls), n)
    elif len(texts) == 2:
        wanted = np.ones(n, dtype=np.int64)
    else:  # the predicted class: the largest output (a margin or a probability) of each row
        wanted = np.asarray(columns)[np.argmax(phi.sum(axis=1) + base, axis=1)]
    rows = np.arange(n)
    if len(columns) == 1:   # a binary margin: the second class's log-odds, the first's is its negation
        sign = np.where(wanted == columns[0], 1.0, -1.0)
        contributions, b = phi[:, :, 0] * sign[:, None], base[0] * sign
        errors = None if err is None else err[:, :, 0]
    else:
        col = np.asarray([columns.index(int(w)) for w in wanted])
        contributions, b = phi[rows, :, col], base[col]
        errors = None if err is None else err[rows, :, col]
    return Answer(contributions, b, [texts[int(w)] for w in wanted], errors)


def describe(model: Model, explainer: Explainer, cls: str | None, errors: np.ndarray | None = None) -> str:
    """What the base row's contributions add up to, and how they were computed."""
    if model.task != "classification":
        what = "the predicted value"
    elif explainer.output == "margin":
        what = f'the log-odds of "{cls}"' if len(model.labels or []) == 2 else f'the margin of "{cls}"'
    else:
        what = f'the probability of "{cls}"'
    how = f"exact: {explainer.meta['method']}" if explainer.exact else \
        f"approximate: {explainer.meta['method']}"
    if errors is not None and errors.size:
        how += f", standard error up to {float(np.max(errors)):.2g}"
    return f"{what} ({how})"


def value_text(v) -> str | None:
    """A feature's value as the answer shows it; NULL for a missing one."""
    if v is None or (isinstance(v, str) and v == ""):
        return None
    if isinstance(v, str):
        return v
    v = float(v)
    if math.isnan(v):
        return None
    return f"{v:.7g}"


def rows_of(model: Model, explainer: Explainer, answer: Answer, X: np.ndarray, row: int, top_n: int | None,
            cls_given: str | None) -> list[tuple[str, str | None, float]]:
    """(feature, value, contribution) rows of one explained row: the base first, then the
    features by |contribution| (the top_n of them, the rest summed as "(other)")."""
    phi = answer.contributions[row]
    errors = None if answer.errors is None else answer.errors[row]
    out = [(BASE, describe(model, explainer, answer.classes[row], errors), float(answer.base[row]))]
    order = sorted(range(len(phi)), key=lambda j: (-abs(phi[j]), j))
    keep = order if top_n is None else order[:top_n]
    out += [(explainer.feature_names[j], value_text(X[row, j]), float(phi[j])) for j in keep]
    rest = order[len(keep):]
    if rest:
        out.append((OTHER, f"{len(rest)} feature{'s' if len(rest) != 1 else ''}", float(sum(phi[j] for j in rest))))
    return out


def as_json(explainer: Explainer, answer: Answer, top_n: int | None) -> list[dict]:
    """Per row, {feature: contribution} (the top_n by |contribution|, the rest as
    "(other)") with the base as "(base)": the contributions output of batch jobs and
    stream consumers."""
    out = []
    names = explainer.feature_names
    for r in range(answer.contributions.shape[0]):
        phi = answer.contributions[r]
        doc = {BASE: float(answer.base[r])}
        if top_n is None:
            doc.update({names[j]: float(phi[j]) for j in range(len(phi))})
        else:
            order = sorted(range(len(phi)), key=lambda j: (-abs(phi[j]), j))
            doc.update({names[j]: float(phi[j]) for j in order[:top_n]})
            if len(order) > top_n:
                doc[OTHER] = float(sum(phi[j] for j in order[top_n:]))
        out.append(doc)
    return out
