"""import_onnx(): register an ONNX model trained anywhere as a new project version."""

from __future__ import annotations

import json

from .._plpy import query, udf
from .store import store_model
from ..errors import DATA_CORRUPTED, INVALID_PARAMETER_VALUE, PgmodelsError
from ..serving.runtime import OnnxEngine

TASKS = ("classification", "regression")


def _check_features(feature_names, feature_types) -> list[str]:
    if not feature_names:
        raise PgmodelsError("feature_names must name at least one feature", sqlstate=INVALID_PARAMETER_VALUE)
    if any(not n for n in feature_names) or len(set(feature_names)) != len(feature_names):
        raise PgmodelsError("feature_names must be distinct, non-empty names", sqlstate=INVALID_PARAMETER_VALUE)
    types = list(feature_types) if feature_types is not None else ["float"] * len(feature_names)
    if len(types) != len(feature_names) or any(t not in ("float", "text") for t in types):
        raise PgmodelsError("feature_types must give 'float' or 'text' for each feature",
                            detail=f"Got {len(types)} types for {len(feature_names)} features.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return types


def _check_graph(artifact: bytes, feature_names: list[str], task: str) -> OnnxEngine:
    engine = OnnxEngine(artifact, feature_names, task)
    if engine.single_input is not None:
        shape = engine.session.get_inputs()[0].shape
        width = shape[-1] if len(shape) == 2 else None
        if isinstance(width, int) and width != len(feature_names):
            raise PgmodelsError("the ONNX graph's input does not match feature_names",
                                detail=f"Its input takes {width} features; feature_names names {len(feature_names)}.",
                                sqlstate=INVALID_PARAMETER_VALUE)
    return engine


@udf(empty=[])
def import_onnx(project_name, model, feature_names, task, labels, feature_types, deploy):
    if not project_name:
        raise PgmodelsError("project_name must not be empty", sqlstate=INVALID_PARAMETER_VALUE)
    if model is None or len(model) == 0:
        raise PgmodelsError("model must hold the bytes of an ONNX model", sqlstate=INVALID_PARAMETER_VALUE)
    info = query("SELECT task FROM pgmodels._project_info($1)", [project_name], ["text"])
    task = task or (info[0]["task"] if info else None)
    if task not in TASKS:
        raise PgmodelsError(f'unknown task "{task}"' if task else "task is required for a new project",
                            hint="Pass task => 'classification' or task => 'regression'.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    feature_names = list(feature_names or [])
    types = _check_features(feature_names, feature_types)
    artifact = bytes(model)
    try:
        _check_graph(artifact, feature_names, task)
    except PgmodelsError as e:
        if e.sqlstate == DATA_CORRUPTED:
            e.sqlstate = INVALID_PARAMETER_VALUE
        raise
    label_list = json.loads(labels) if labels is not None else None
    if label_list is not None and (task != "classification" or not isinstance(label_list, list)):
        raise PgmodelsError("labels must be a jsonb array, for a classification model", sqlstate=INVALID_PARAMETER_VALUE)
    import onnxruntime

    training = {"imported": True, "conversion": {"converted": True, "source": "import_onnx"}, "nullable": []}
    stored = store_model(
        project_name=project_name, task=task, algorithm="onnx", runtime="onnx", artifact=artifact,
        hyperparams={}, metrics={}, feature_names=feature_names, feature_types=types, labels=label_list,
        training=training, library_versions={"onnxruntime": onnxruntime.__version__},
        deploy_mode="always" if deploy else "never")
    return [(project_name, task, stored["model_id"], stored["version"], stored["deployed"])]
