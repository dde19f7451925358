"""Smaller bundles for devices, each checked on rows the caller trusts (the test split).

- ``ort``: onnxruntime's ORT format (a flatbuffer the mobile and web runtimes load
  without the ONNX parser; after basic graph optimizations). Every runtime pgmodels_edge
  uses detects it from the bytes. For very small models it is larger than the ONNX file.
- ``float16``: every float tensor of weights (an initializer of more than 16 values) stored
  in half precision, with a Cast back to float at the top of the graph: the arithmetic
  stays single precision, the file shrinks by up to half. Neural networks and other
  graphs that keep weights in tensors; linear models and trees converted by skl2onnx keep
  theirs in operator attributes, where this has nothing to shrink (refused, saying so).
- ``int8``: onnxruntime's dynamic quantization of MatMul weights to 8 bits.

An option is applied only when, on the check rows, no class changes (classifiers); the
manifest records the rows' count, the largest difference of probabilities or values, and
the size before and after.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..errors import FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, INVALID_TEXT_REPRESENTATION, PgmodelsError
from ..serving import guard

NUMERIC_VALUE_OUT_OF_RANGE = "22003"

OPTIONS = ("ort", "float16", "int8")
MIN_WEIGHTS = 16


def apply(artifact: bytes, option: str) -> bytes:
    if option == "ort":
        return _to_ort(artifact)
    if option == "float16":
        return _float16_weights(artifact)
    if option == "int8":
        return _int8(artifact)
    raise PgmodelsError(f'unknown bundle option "{option}"', hint="Use ort, float16 or int8.",
                        sqlstate=INVALID_PARAMETER_VALUE)


def _to_ort(artifact: bytes) -> bytes:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="pgmodels-ort-") as home:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = os.path.join(home, "model.ort")
        options.add_session_config_entry("session.save_model_format", "ORT")
        try:
            ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
            raise PgmodelsError("the model cannot be saved in ORT format", detail=str(e)[:300],
                                sqlstate=FEATURE_NOT_SUPPORTED) from None
        with open(options.optimized_model_filepath, "rb") as f:
            return f.read()


def _not_applicable(option: str) -> PgmodelsError:
    return PgmodelsError(f"the {option} option has nothing to shrink in this model",
                         detail="Its graph keeps no weights in float tensors (linear models and trees converted by "
                                "skl2onnx keep them in operator attributes).",
                         hint="It applies to imported neural networks and other graphs with weight tensors.",
                         sqlstate=FEATURE_NOT_SUPPORTED)


def _float16_weights(artifact: bytes) -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(artifact)
    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) <= MIN_WEIGHTS:
            continue
        values = numpy_helper.to_array(init)
        if np.abs(values).max(initial=0) > 65504:  # beyond half precision: keep it
            continue
        half = numpy_helper.from_array(values.astype(np.float16), init.name + "__fp16")
        graph.initializer.remove(init)
        graph.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__to_float"))
    if not casts:
        raise _not_applicable("float16")
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _int8(artifact: bytes) -> bytes:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="pgmodels-int8-") as home:
        src, dst = os.path.join(home, "in.onnx"), os.path.join(home, "out.onnx")
        with open(src, "wb") as f:
            f.write(artifact)
        logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process is not for us
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        except Exception:  # noqa: BLE001 - the quantizer's own errors: a graph it cannot take
            raise _not_applicable("int8") from None
        with open(dst, "rb") as f:
            out = f.read()
    import onnx

    if not any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear", "QGemm")
               for n in onnx.load_from_string(out).graph.node):
        raise _not_applicable("int8")
    return out


FLOAT32_MAX = 3.4028234663852886e38


def _number(value, name: str, index: int) -> float:
    """A check row's numeric feature as a float, or a PostgreSQL-style error."""
    if value is None:
        return np.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (list, dict)):
        raise PgmodelsError(f'check row {index + 1}: feature "{name}" must be a number, not an array or object',
                            detail="The check relation's column for a numeric feature holds a "
                                   f"{'json array' if isinstance(value, list) else 'json object'}.",
                            hint="Pass rows with a numeric column per feature (the model's test split).",
                            sqlstate=INVALID_PARAMETER_VALUE)
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    except (TypeError, ValueError):
        raise PgmodelsError(f'check row {index + 1}: feature "{name}" must be a number, not {str(value)[:40]!r}',
                            hint="Pass rows with a numeric column per feature (the model's test split).",
                            sqlstate=INVALID_TEXT_REPRESENTATION) from None
    if not abs(number) <= FLOAT32_MAX:
        shown = str(value)[:40]
        raise PgmodelsError(f'check row {index + 1}: feature "{name}" is {shown}, outside the single-precision range',
                            detail="Models take single-precision (real) inputs: finite, magnitude at most "
                                   "3.4028235e38.", sqlstate=NUMERIC_VALUE_OUT_OF_RANGE)
    return number


def check_rows(rows) -> list:
    """The check rows as a list of objects (what _check_rows makes); else 22023."""
    if isinstance(rows, list):
        bad = next((r for r in rows if not isinstance(r, dict)), None)
        got = None if bad is None else f"an array holding a {type(bad).__name__}"
    else:
        got = f"a {type(rows).__name__}"
    if got is not None:
        raise PgmodelsError("check rows must be a json array of objects keyed by feature name",
                            detail=f"Got {got}.", hint="Pass a relation as check_relation (the model's test split).",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return rows


def feed(rows: list, names: list[str], kinds: list[str], session) -> dict:
    """The check rows (objects keyed by feature name) as the graph's inputs."""
    rows = check_rows(rows)
    if not rows:
        raise PgmodelsError("the check relation has no rows", sqlstate=INVALID_PARAMETER_VALUE)
    missing = [n for n in names if n not in rows[0]]
    if missing:
        raise PgmodelsError("features missing from the check relation: %s" % ", ".join(missing),
                            hint="Pass the model's test split, or rows with a column per feature.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    inputs = session.get_inputs()
    if len(inputs) == 1 and inputs[0].type == "tensor(float)":
        X = np.array([[_number(r.get(n), n, i) for n in names] for i, r in enumerate(rows)], dtype=np.float32)
        return {inputs[0].name: X}
    out = {}
    for n, k in zip(names, kinds):
        if k == "text":
            out[n] = np.array([["" if r.get(n) is None else str(r[n])] for r in rows], dtype=object)
        else:
            out[n] = np.array([[_number(r.get(n), n, i)] for i, r in enumerate(rows)], dtype=np.float32)
    return out


def compare(served: bytes, candidate: bytes, rows: list, names, kinds, answers: dict) -> dict:
    """How the candidate's answers differ from the served graph's on the check rows."""
    import onnxruntime as ort

    a = ort.InferenceSession(served, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(candidate, providers=["CPUExecutionProvider"])
    f = feed(rows, names, kinds, a)
    changed, diff = 0, 0.0
    if answers.get("label"):
        la = np.asarray(guard.run(a.run, [answers["label"]], f)[0]).reshape(-1)
        lb = np.asarray(guard.run(b.run, [answers["label"]], f)[0]).reshape(-1)
        changed = int((la != lb).sum())
    for key in ("probabilities", "value"):
        if answers.get(key):
            va = np.asarray(guard.run(a.run, [answers[key]], f)[0], dtype=np.float64)
            vb = np.asarray(guard.run(b.run, [answers[key]], f)[0], dtype=np.float64)
            diff = max(diff, float(np.max(np.abs(va - vb))) if va.size else 0.0)
    return {"rows": len(rows), "classes_changed": changed, "max_abs_diff": diff,
            "bytes_before": len(served), "bytes": len(candidate)}


def report(served: bytes, rows: list, names, kinds, answers: dict) -> list[dict]:
    """Every option on the check rows: its size, difference and whether it may be used."""
    rows = check_rows(rows)
    out = []
    for option in OPTIONS:
        try:
            r = compare(served, apply(served, option), rows, names, kinds, answers)
            r.update(option=option, usable=r["classes_changed"] == 0,
                     note=None if r["classes_changed"] == 0 else
                     f"changes the class of {r['classes_changed']} of {r['rows']} rows")
        except PgmodelsError as e:
            if e.sqlstate != FEATURE_NOT_SUPPORTED:
                raise
            r = {"option": option, "bytes": None, "bytes_before": len(served), "max_abs_diff": None,
                 "classes_changed": None, "rows": len(rows), "usable": False, "note": e.message}
        out.append(r)
    return out
