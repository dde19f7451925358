"""Helpers the training unit tests import (conftest.py holds the fixtures)."""

from __future__ import annotations

from pgmodels.training.fit import Column, TrainSpec


def make_spec(task="classification", algorithm="linear", **kw) -> TrainSpec:
    args = dict(hyperparams={}, search=None, search_params={}, search_args={},
                test_size=0.25, test_sampling="random", preprocess={})
    args.update(kw)
    return TrainSpec(task=task, algorithm=algorithm, **args)


def float_columns(X, prefix="f") -> list[Column]:
    return [Column(f"{prefix}{j}", "float", [float(v) for v in X[:, j]]) for j in range(X.shape[1])]


def onnx_run(artifact: bytes, feeds: dict) -> dict:
    import onnxruntime as ort

    session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))
