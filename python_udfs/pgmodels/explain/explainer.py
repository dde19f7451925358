"""A loaded explainer: design-matrix rows in, per-feature contributions out.

``Explainer.load(record)`` rebuilds what the record describes (see :mod:`.build`): the
preprocessing replay and the trees (as TreeSHAP paths), the coefficients, or the
background rows of the sampling estimate. ``explain(X)`` takes rows as the model takes
them (rows x features in the model's feature order: float64, or an object array holding
text), and answers the contributions of each feature to each raw output (rows x features
x K), the base (K), and for a sampling estimate the standard errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import linear, record, sampling, transform, treeshap


@dataclass
class Explanation:
    contributions: np.ndarray      # rows x features x K
    base: np.ndarray               # K
    errors: np.ndarray | None = None   # rows x features x K (sampling only)


class Explainer:
    def __init__(self, meta: dict, arrays: dict):
        self.meta = meta
        self.kind = meta["kind"]
        self.exact = self.kind != "sampling"
        self.feature_names = list(meta["feature_names"])
        self.n_inputs = len(self.feature_names)
        self.output = meta["output"]              # 'margin' | 'probability' | 'value'
        self.columns = list(meta["columns"])      # the class index of each output column ([] regression)
        if self.kind == "sampling":
            self.background = _design(arrays["background_numbers"], arrays["background_texts"], meta["kinds"])
            return
        self.spec = meta["spec"]
        owner = transform.owners(self.spec)
        if len(owner) and (owner.min() < 0 or owner.max() >= self.n_inputs):
            raise record.Damaged("Its preprocessing names columns the model does not have.")
        self.owner = owner
        if self.kind == "tree":
            self.ensemble = treeshap.Ensemble.from_arrays(arrays)
            try:
                self.ensemble.check()
            except ValueError as e:
                raise record.Damaged(f"Its trees are damaged: {e}.") from None
            if len(owner) and self.ensemble.feature.max(initial=-1) >= len(owner):
                raise record.Damaged("Its trees split on columns the preprocessing does not make.")
            self.paths = treeshap.build_paths(self.ensemble, owner, self.n_inputs)
            self.base = self.ensemble.expected_value()
        else:
            self.linear = {k: arrays[k].astype(np.float64) for k in ("coef", "intercept", "mean")}
            self.base = linear.expected_value(self.linear)

    @classmethod
    def load(cls, blob: bytes, sha256: bytes | None = None) -> "Explainer":
        meta, arrays = record.unpack(blob, sha256)
        try:
            return cls(meta, arrays)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise record.Damaged(f"It is incomplete ({type(e).__name__}).") from None

    @property
    def outputs(self) -> int:
        return max(len(self.columns), 1)

    def model_space(self, X: np.ndarray) -> np.ndarray:
        return transform.apply(self.spec, X)

    def explain(self, X: np.ndarray, f=None) -> Explanation:
        if self.kind == "sampling":
            if f is None:
                raise ValueError("a sampling explainer needs the model")
            phi, base, err = sampling.explain(f, X, self.background)
            return Explanation(phi, base, err)
        Xt = self.model_space(X)
        if self.kind == "tree":
            # the lookups compare in the trees' own precision; the per-row polynomial wants
            # the rows rounded to it first
            rows = self.ensemble.prepare(Xt) if self.paths.computed else Xt
            return Explanation(treeshap.shap_values(self.paths, rows), self.base)
        return Explanation(linear.contributions(self.linear, Xt, self.owner, self.n_inputs), self.base)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The raw output the contributions add up to (exact kinds)."""
        Xt = self.model_space(X)
        if self.kind == "tree":
            return self.ensemble.predict_raw(Xt)
        return Xt @ self.linear["coef"].T + self.linear["intercept"]


def _design(numbers: np.ndarray, texts: np.ndarray, kinds: list[str]) -> np.ndarray:
    """Design rows from their stored halves: numbers (NaN where text) and texts."""
    if all(k != "text" for k in kinds):
        return numbers.astype(np.float64)
    out = numbers.astype(np.float64).astype(object)
    for j, k in enumerate(kinds):
        if k == "text":
            out[:, j] = texts[:, j].astype(object)
    return out


def split_design(X: np.ndarray, kinds: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The halves _design reads back: a float array and a unicode array."""
    n = X.shape[0]
    numbers = np.full((n, len(kinds)), np.nan)
    texts = np.full((n, len(kinds)), "", dtype=object)
    for j, k in enumerate(kinds):
        if k == "text":
            texts[:, j] = [str(v) for v in X[:, j]]
        else:
            numbers[:, j] = X[:, j].astype(np.float64)
    return numbers, texts.astype(str)
