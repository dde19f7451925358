"""import_onnx(): register an ONNX model trained anywhere as a new project version."""

from __future__ import annotations


import numpy as np

from .._json import read_json
from .._plpy import query, require_execute, udf
from .store import store_model
from ..errors import DATA_CORRUPTED, INVALID_PARAMETER_VALUE, PgmodelsError
from ..serving.runtime import OnnxEngine, check_self_contained
from . import onnx_cost

IMPORT_SIGNATURE = "import_onnx(text, bytea, text[], text, jsonb, text[], boolean)"

TASKS = ("classification", "regression")


def _check_features(feature_names, feature_types) -> list[str]:
    if not feature_names:
        raise PgmodelsError("feature_names must name at least one feature", sqlstate=INVALID_PARAMETER_VALUE)
    if any(not isinstance(n, str) for n in feature_names):
        raise PgmodelsError("feature_names must be a one-dimensional array of names", sqlstate=INVALID_PARAMETER_VALUE)
    if any(not n for n in feature_names) or len(set(feature_names)) != len(feature_names):
        raise PgmodelsError("feature_names must be distinct, non-empty names", sqlstate=INVALID_PARAMETER_VALUE)
    types = list(feature_types) if feature_types is not None else ["float"] * len(feature_names)
    if len(types) != len(feature_names) or any(t not in ("float", "text") for t in types):
        raise PgmodelsError("feature_types must give 'float' or 'text' for each feature",
                            detail=f"Got {len(types)} types for {len(feature_names)} features.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return types


def _refuse(message: str, detail: str | None = None) -> PgmodelsError:
    return PgmodelsError(message, detail=detail, sqlstate=INVALID_PARAMETER_VALUE)


def _cost_limit() -> int:
    raw = query("SELECT pgmodels._admin_setting($1) AS v", [onnx_cost.SETTING], ["text"])[0]["v"]
    try:
        return int(float(raw)) if raw not in (None, "") else onnx_cost.DEFAULT_LIMIT
    except (ValueError, OverflowError):
        return onnx_cost.DEFAULT_LIMIT


def _check_graph(artifact: bytes, feature_names: list[str], types: list[str], task: str,
                 labels: list | None) -> OnnxEngine:
    """Bound the graph's work per row from its shapes (onnx_cost.py), then load it and
    try it on two rows, so a model that cannot serve as described is refused now rather
    than failing at predict time. The runs are stopped by a cancel (serving/guard.py)."""
    check_self_contained(artifact, imported=True)  # no Loop, Scan or local function to estimate
    work_per_row = onnx_cost.check(artifact, _cost_limit())
    engine = OnnxEngine(artifact, feature_names, task, imported=True, work_per_row=work_per_row)
    engine.work_per_row = work_per_row
    if engine.single_input is not None:
        shape = engine.session.get_inputs()[0].shape
        width = shape[-1] if len(shape) == 2 else None
        if isinstance(width, int) and width != len(feature_names):
            raise _refuse("the ONNX graph's input does not match feature_names",
                          f"Its input takes {width} features; feature_names names {len(feature_names)}.")
        if "text" in types:
            raise _refuse("feature_types names text features, but the graph takes one float tensor")
    else:
        for name, kind in zip(feature_names, types):
            graph_type = engine.input_types[name]
            if (kind == "text") != (graph_type == "tensor(string)"):
                raise _refuse(f'feature "{name}" is {kind} in feature_types, but the graph takes {graph_type}')
    outputs = {o.name: o for o in engine.session.get_outputs()}
    if task == "regression" and ("label" in outputs or "probabilities" in outputs):
        raise _refuse("the ONNX graph is a classifier, not a regression model",
                      "It has a label or probabilities output.")
    rows = 2
    if engine.single_input is not None:
        feed = {engine.single_input: np.zeros((rows, len(feature_names)), dtype=np.float32)}
    else:
        feed = {n: (np.full((rows, 1), "", dtype=object) if k == "text" else np.zeros((rows, 1), dtype=np.float32))
                for n, k in zip(feature_names, types)}
    try:
        if task == "regression":
            out = np.asarray(engine.run([engine.value_output], feed)[0])
            if out.dtype.kind not in "fiu" or out.size != rows:
                raise _refuse("the ONNX graph's output is not one number per row",
                              f"Two rows gave a {out.dtype} output of shape {list(out.shape)}.")
            return engine
        got = engine.labels(feed)
        if got.dtype.kind not in "iu" or got.size != rows:
            raise _refuse("the ONNX graph's label output is not one class index per row",
                          f"Two rows gave a {got.dtype} output of shape {list(got.shape)}.")
        if engine.proba_output is not None:
            try:
                proba = np.asarray(engine.run([engine.proba_output], feed)[0], dtype=np.float32)
            except (TypeError, ValueError):
                raise _refuse("the graph's probabilities are not a rows x classes tensor",
                              "A ZipMap (a sequence of maps) cannot serve; convert with zipmap=False.") from None
            if proba.ndim != 2 or proba.shape[0] != rows:
                raise _refuse("the graph's probabilities are not a rows x classes tensor",
                              f"Two rows gave shape {list(proba.shape)}.")
            if labels is not None and proba.shape[1] != len(labels):
                raise _refuse("labels does not match the graph's classes",
                              f"labels has {len(labels)} entries; the probabilities have shape {list(proba.shape)}.")
        if labels is not None and ((got < 0) | (got >= len(labels))).any():
            raise _refuse("the graph's class indexes fall outside labels",
                          f"It gave {got.tolist()} for {len(labels)} labels.")
    except PgmodelsError:
        raise
    except Exception as e:  # onnxruntime's own errors: the graph cannot run as described
        raise _refuse("the ONNX graph cannot run on the features described", str(e)[:500]) from None
    return engine


@udf(empty=[])
def import_onnx(project_name, model, feature_names, task, labels, feature_types, deploy):
    from ..training.udf import _qualified, check_project_name

    require_execute(_qualified(IMPORT_SIGNATURE), "import_onnx")
    check_project_name(project_name)
    if model is None or len(model) == 0:
        raise PgmodelsError("model must hold the bytes of an ONNX model", sqlstate=INVALID_PARAMETER_VALUE)
    info = query("SELECT task FROM pgmodels._project_info($1, pgmodels._credential())", [project_name], ["text"])
    if info and info[0]["task"] and task and task != info[0]["task"]:
        raise PgmodelsError(f'project "{project_name}" is a {info[0]["task"]} project, not {task}',
                            hint="Use another project name for another task.", sqlstate=INVALID_PARAMETER_VALUE)
    task = task or (info[0]["task"] if info else None)
    if task not in TASKS:
        raise PgmodelsError(f'unknown task "{task}"' if task else "task is required for a new project",
                            hint="Pass task => 'classification' or task => 'regression'.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    feature_names = list(feature_names or [])
    types = _check_features(feature_names, feature_types)
    artifact = bytes(model)
    from ..training.algorithms import finite

    label_list = read_json(labels, "labels", plural=True) if labels is not None else None
    if label_list is not None and (task != "classification" or not isinstance(label_list, list) or not label_list
                                   or any(isinstance(v, (list, dict, bool)) or v is None for v in label_list)
                                   or any(isinstance(v, (int, float)) and not finite(v) for v in label_list)):
        raise PgmodelsError("labels must be a non-empty jsonb array of numbers or strings, for a classification model",
                            sqlstate=INVALID_PARAMETER_VALUE)
    try:
        engine = _check_graph(artifact, feature_names, types, task, label_list)
    except PgmodelsError as e:
        if e.sqlstate == DATA_CORRUPTED:
            e.sqlstate = INVALID_PARAMETER_VALUE
        raise
    import onnxruntime

    training = {"imported": True, "conversion": {"converted": True, "source": "import_onnx"}, "nullable": [],
                # operations per row, estimated from the graph's shapes (null: they depend on the input)
                "work_per_row": engine.work_per_row}
    from ..serving import native

    # a tree ensemble's trees for the C library, checked against onnxruntime, as train() stores them
    trees = native.checked_translation(artifact, "onnx", task, label_list, len(feature_names)) \
        if native.load_library() else None
    stored = store_model(
        project_name=project_name, task=task, algorithm="onnx", runtime="onnx", artifact=artifact,
        hyperparams={}, metrics={}, feature_names=feature_names, feature_types=types, labels=label_list,
        training=training, library_versions={"onnxruntime": onnxruntime.__version__},
        deploy_mode="always" if deploy else "never", native_trees=trees)
    return [(project_name, task, stored["model_id"], stored["version"], stored["deployed"])]
