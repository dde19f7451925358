"""The fallback formats for models that ONNX cannot represent, and their loader.

- ``xgboost-ubj``: a bare XGBoost model (no preprocessing) as the booster's Universal
  Binary JSON, XGBoost's own stable format.
- ``skops``: any other pipeline, saved with skops.io. Loading refuses every type outside
  scikit-learn, NumPy, SciPy, XGBoost and pgmodels, so a crafted artifact cannot make
  the server import and run arbitrary code. Never pickle.

Both loaded objects take the design matrix the training pipeline took (rows by
features in feature order: float64 when every feature is numeric, else an object array
with NaN for a NULL number and '' for a NULL text) and predict class indices
(classification) or values (regression).

Module imports are lazy: serving imports this only for a model that fell back.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import q, DATA_CORRUPTED, FEATURE_NOT_SUPPORTED, PgmodelsError

RUNTIMES = ("xgboost-ubj", "skops")
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "xgboost.", "pgmodels.")


def dump_xgboost(model) -> bytes:
    return bytes(model.get_booster().save_raw(raw_format="ubj"))


def dump_skops(pipeline) -> bytes:
    try:
        import skops.io as sio
    except ImportError:
        raise PgmodelsError("cannot store a model that ONNX cannot represent",
                            detail="The fallback format needs the Python package skops, "
                                   "which is not installed.",
                            hint="Install skops in the pgmodels environment, or choose "
                                 "another algorithm or preprocessing.",
                            sqlstate=FEATURE_NOT_SUPPORTED) from None
    return sio.dumps(pipeline)


def load_native(runtime: str, artifact: bytes):
    """An object with predict (and predict_proba for classifiers) from a native artifact."""
    if runtime == "xgboost-ubj":
        return XGBoostModel(artifact)
    if runtime == "skops":
        return _load_skops(bytes(artifact))
    raise PgmodelsError(f"unsupported model runtime {q(runtime)}",
                        detail="Known runtimes are: onnx, " + ", ".join(RUNTIMES) + ".",
                        sqlstate=FEATURE_NOT_SUPPORTED)


def _load_skops(data: bytes):
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as e:  # noqa: BLE001 - any parse failure means a damaged artifact
        raise _corrupted(f"{type(e).__name__}: {e}") from None
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise _corrupted("The artifact contains types outside scikit-learn, NumPy, SciPy, "
                         "XGBoost and pgmodels: " + ", ".join(refused) + ".")
    return sio.loads(data, trusted=untrusted)


def _corrupted(detail: str) -> PgmodelsError:
    return PgmodelsError("refusing to load model artifact", detail=detail,
                         sqlstate=DATA_CORRUPTED)


class XGBoostModel:
    """predict / predict_proba over a raw XGBoost booster, as the sklearn wrapper would."""

    def __init__(self, artifact: bytes):
        import xgboost

        self.booster = xgboost.Booster()
        try:
            self.booster.load_model(bytearray(artifact))
        except xgboost.core.XGBoostError as e:
            raise _corrupted(str(e).splitlines()[0]) from None
        # one thread: a backend is one process among many (and see training/runner.py)
        self.booster.set_param({"nthread": 1})
        config = json.loads(self.booster.save_config())
        self.objective = config["learner"]["objective"]["name"]
        self.is_classifier = self.objective.startswith(("binary:", "multi:"))

    def _raw(self, X) -> np.ndarray:
        import xgboost

        return self.booster.predict(xgboost.DMatrix(np.asarray(X, dtype=np.float32),
                                                    missing=np.nan))

    def predict_proba(self, X) -> np.ndarray:
        if not self.is_classifier:
            raise AttributeError("a regression model has no predict_proba")
        p = self._raw(X)
        if p.ndim == 1:  # binary:logistic gives P(class 1)
            p = np.column_stack([1.0 - p, p])
        return p

    def predict(self, X) -> np.ndarray:
        if not self.is_classifier:
            return self._raw(X)
        p = self._raw(X)
        if p.ndim == 1:
            return (p > 0.5).astype(np.int64)
        return np.argmax(p, axis=1).astype(np.int64)
