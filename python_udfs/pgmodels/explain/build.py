"""Making a model version's explainer record at training time, from the fitted pipeline.

Tried in order, each checked on training rows before it is kept:

1. **tree**: the estimator is a tree ensemble :mod:`.trees` reads, and its trees
   reproduce the model's raw output: exact path-dependent TreeSHAP;
2. **linear**: the estimator's raw output is linear in its coefficients: exact
   coefficient x (value - training mean);
3. **sampling**: anything else (or a preprocessing step :mod:`.transform` cannot
   replay): a permutation-sampling estimate over BACKGROUND training rows kept in the
   record, marked approximate.

Exact kinds also need the preprocessing replayed (:mod:`.transform`), checked against
the pipeline's own transform. The global importance, the mean absolute contribution of
each feature over up to CHECK_ROWS training rows (and over the output columns), is
computed here and stored with the version. Nothing here may fail a training: a model
that cannot be explained at all gets no record, and the reason is kept.
"""

from __future__ import annotations

import time

import numpy as np

from . import linear, record, sampling, transform, trees
from .explainer import Explainer, split_design

SAMPLE_ROWS = 1000            # training rows the preprocessing check uses
CHECK_ROWS = 200              # ... the trees' check, and the global importance of an exact explainer
IMPORTANCE_ROWS_SAMPLED = 16  # ... the global importance of a sampling estimate
SEED = 0


def build(fitted, task: str, names: list[str], kinds: list[str], X_train: np.ndarray) -> tuple[bytes | None, dict]:
    """(the record, what to keep in the model's training record about it)."""
    start = time.perf_counter()
    try:
        blob, info = _build(fitted, task, names, kinds, X_train)
    except Exception as e:  # noqa: BLE001 - an explainer is never worth a failed training
        return None, {"kind": None, "reason": f"{type(e).__name__}: {str(e)[:200]}"}
    info["seconds"] = round(time.perf_counter() - start, 3)
    info["bytes"] = len(blob)
    return blob, info


def _build(fitted, task, names, kinds, X_train):
    classifier = task == "classification"
    rng = np.random.default_rng(SEED)
    n = len(X_train)
    rows = np.sort(rng.choice(n, size=min(n, SAMPLE_ROWS), replace=False))
    X = X_train[rows]
    steps = getattr(fitted, "steps", None)
    estimator = fitted[-1] if steps else fitted
    preprocessor = fitted[0] if steps and len(steps) > 1 else None
    meta = {"feature_names": list(names), "kinds": list(kinds)}
    reason = None
    try:
        spec = transform.spec_of(preprocessor, len(names))
        Xt = _checked_replay(spec, preprocessor, X)
        meta["spec"] = spec
        ens = None
        try:
            ens = _trees(estimator, classifier, Xt)
            arrays = ens.arrays()
            meta.update(kind="tree", method="path-dependent TreeSHAP",
                        **_outputs(classifier, ens.outputs, _tree_output(estimator, classifier)))
        except trees.Unsupported as e:
            reason = str(e)
            a = linear.read(estimator, classifier, Xt)
            a["mean"] = _mean(preprocessor, X_train)   # over every training row, not the sample
            arrays = a
            meta.update(kind="linear", method="coefficient x (value - training mean)",
                        **_outputs(classifier, a["coef"].shape[0], "margin" if classifier else "value"))
    except (trees.Unsupported, transform.Unknown) as e:
        reason = str(e) if reason is None else f"{reason}; {e}"
        return _sampled(fitted, classifier, meta, X, rng, reason)
    blob = record.pack(meta, arrays)
    explainer = Explainer(*record.unpack(blob))   # what serving will load
    sample = X[:CHECK_ROWS]
    got = explainer.explain(sample)
    total = got.contributions.sum(axis=1) + got.base
    checked = getattr(ens, "checked", None) if meta["kind"] == "tree" else None
    want = checked[1] if checked is not None and len(checked[1]) == len(sample) else explainer.raw(sample)
    error = float(np.abs(total - want).max()) if len(sample) else 0.0
    # against the model's own raw output (XGBoost's is single precision): the 1e-4 TreeSHAP promises
    if error > 1e-4 * max(1.0, float(np.abs(want).max(initial=0.0))):
        return _sampled(fitted, classifier, meta, X, rng, f"contributions off their sum by {error:.3g}")
    return blob, _info(meta, got, names, len(sample), additivity=error)


def _checked_replay(spec, preprocessor, X) -> np.ndarray:
    mine = transform.apply(spec, X)
    theirs = np.asarray(preprocessor.transform(X) if preprocessor is not None else X, dtype=np.float64)
    if mine.shape != theirs.shape or not np.allclose(mine, theirs, rtol=1e-9, atol=1e-9, equal_nan=True):
        raise transform.Unknown("the preprocessing replay differs from the pipeline's")
    return theirs


def _mean(preprocessor, X: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    total = None
    for s in range(0, len(X), chunk):
        part = np.asarray(preprocessor.transform(X[s:s + chunk]) if preprocessor is not None else X[s:s + chunk],
                          dtype=np.float64).sum(axis=0)
        total = part if total is None else total + part
    return total / len(X)


def _trees(estimator, classifier: bool, Xt: np.ndarray):
    ens, raw = trees.read(estimator, classifier)
    try:
        return trees.finish(ens, raw, Xt[:CHECK_ROWS])
    except trees.Unsupported:
        if not type(estimator).__module__.startswith("catboost"):
            raise
        return trees.finish(trees.catboost(estimator, low_bit_first=False), raw, Xt[:CHECK_ROWS])


def _tree_output(estimator, classifier: bool) -> str:
    if not classifier:
        return "value"
    name = type(estimator).__name__
    forest = name.startswith(("RandomForest", "ExtraTree", "DecisionTree"))
    return "probability" if forest else "margin"


def _outputs(classifier: bool, K: int, output: str) -> dict:
    """Which class each output column explains: a binary margin is the second class's."""
    if not classifier:
        return {"output": output, "columns": []}
    return {"output": output, "columns": [1] if K == 1 else list(range(K))}


def _sampled(fitted, classifier: bool, meta: dict, X: np.ndarray, rng, reason: str):
    predict = fitted.predict_proba if classifier else fitted.predict

    def f(rows):
        return np.asarray(predict(rows), dtype=np.float64).reshape(len(rows), -1)
    return sampled(f, meta["feature_names"], meta["kinds"], classifier, X, rng, reason)


def sampled(f, names: list[str], kinds: list[str], classifier: bool, X: np.ndarray, rng, reason: str,
            source: str = "training rows"):
    """A sampling explainer's record over background rows drawn from design rows X, and
    its info (global importance over IMPORTANCE_ROWS_SAMPLED of them); f gives the model's
    output (probabilities or value) for design rows."""
    background = X[np.sort(rng.choice(len(X), size=min(len(X), sampling.BACKGROUND), replace=False))]
    numbers, texts = split_design(background, kinds)
    K = f(X[:1]).shape[1] if classifier else 1
    meta = {"feature_names": list(names), "kinds": list(kinds), "kind": "sampling",
            "output": "probability" if classifier else "value", "columns": list(range(K)) if classifier else [],
            "reason": reason,
            "method": f"permutation sampling: {len(background)} background {source} x "
                      f"{sampling.PERMUTATIONS} feature orders (antithetic), seed {sampling.SEED}"}
    blob = record.pack(meta, {"background_numbers": numbers, "background_texts": texts})
    explainer = Explainer.load(blob)
    got = explainer.explain(X[:IMPORTANCE_ROWS_SAMPLED], f)
    return blob, _info(meta, got, names, min(len(X), IMPORTANCE_ROWS_SAMPLED))


def _info(meta: dict, got, names: list[str], rows: int, additivity: float | None = None) -> dict:
    importance = np.abs(got.contributions).mean(axis=(0, 2)) if rows else np.zeros(len(names))
    info = {"kind": meta["kind"], "exact": meta["kind"] != "sampling", "method": meta["method"],
            "output": meta["output"], "importance": {n: float(v) for n, v in zip(names, importance)},
            "importance_rows": rows, "base": [float(b) for b in np.atleast_1d(got.base)]}
    if meta.get("reason"):
        info["reason"] = meta["reason"]
    if additivity is not None:
        info["additivity_error"] = additivity
    return info
