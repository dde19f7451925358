"""predict_joint() and decompose(): answers that are a vector per row.

A joint regression model's graph gives [rows, targets] under ``value``, a PCA model's
[rows, components]; both are served only through ONNX (the families refuse a model that
does not convert). The cores follow the serving convention of :mod:`predict` (the model
comes from the per-statement cache that pgmodels._lookup fills, never from the caller).
"""

from __future__ import annotations

import numpy as np

from .._plpy import udf
from ..errors import FEATURE_NOT_SUPPORTED, PgmodelsError
from . import cache
from .predict import _feed
from .runtime import OnnxEngine


def width(model) -> int:
    """How many values a row's answer has (1 for a single-target model)."""
    engine = model.engine
    if not isinstance(engine, OnnxEngine) or engine.value_output is None:
        return 1
    shape = next(o.shape for o in engine.session.get_outputs() if o.name == engine.value_output)
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else 1


@udf(hot=True)
def predict_vector(project: str, model_id: int, features, stamp: float, loaded, kind: str) -> list[float]:
    model = cache.current(project, model_id, stamp, loaded)
    if model is None or features is None:
        return None
    if kind == "decompose" and model.task != "decomposition":
        raise PgmodelsError(f"{model.describe()} is a {model.task} model; decompose() needs a decomposition model",
                            hint="Train one with task 'decomposition'.", sqlstate=FEATURE_NOT_SUPPORTED)
    if kind == "joint" and not (model.task == "regression" and width(model) > 1):
        raise PgmodelsError(f"{model.describe()} is not a joint regression model",
                            hint="Train one with train_joint(), or use predict() for one value.",
                            sqlstate=FEATURE_NOT_SUPPORTED)
    out = model.engine.run([model.engine.value_output], _feed(model, features))[0]
    return np.asarray(out, dtype=np.float32).reshape(-1).tolist()
