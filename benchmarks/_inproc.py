"""The baselines: what a user would run in their own Python process instead.

Every baseline runs the same artifact (export_onnx) or the same training recipe as the
database side, on the same rows.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

from _data import FEATURES, fetch_training_matrix


def _session(artifact: bytes, single_thread: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if single_thread:
        options.intra_op_num_threads = 1
    return ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])


def rowwise(artifact: bytes, X: np.ndarray, repeat: int) -> dict:
    """One session.run per row, [1, 8] float32, one intra-op thread, in a plain loop."""
    session = _session(artifact, single_thread=True)
    X = np.ascontiguousarray(X, dtype=np.float32)
    session.run(["label"], {"X": X[:1]})
    times, total = [], 0
    for _ in range(repeat):
        total = 0
        start = time.perf_counter()
        for i in range(len(X)):
            total += int(session.run(["label"], {"X": X[i:i + 1]})[0][0])
        times.append(time.perf_counter() - start)
    wall = statistics.median(times)
    return {"wall_s": wall, "wall_all_s": times, "per_row_us": wall / len(X) * 1e6, "value": float(total)}


def batch(artifact: bytes, X: np.ndarray, repeat: int) -> dict:
    """One session.run over the whole matrix, onnxruntime's default session options.

    Also with one intra-op thread, the setting every pgmodels backend uses, to tell the
    thread count apart from the cost of getting rows in and out of SQL.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    default = _batch_run(_session(artifact, single_thread=False), X, repeat)
    default["single_thread"] = _batch_run(_session(artifact, single_thread=True), X, repeat)
    return default


def _batch_run(session, X: np.ndarray, repeat: int) -> dict:
    session.run(["label"], {"X": X[:1000]})
    times, labels = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        labels = session.run(["label"], {"X": X})[0]
        times.append(time.perf_counter() - start)
    wall = statistics.median(times)
    return {"wall_s": wall, "wall_all_s": times, "rows_per_s": len(X) / wall, "value": float(labels.sum())}


_COLD_SCRIPT = """
import sys, time
start = time.perf_counter()
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
with open(sys.argv[1], "rb") as f:
    session = ort.InferenceSession(f.read(), options, providers=["CPUExecutionProvider"])
session.run(["label"], {"X": np.array([[float(v) for v in sys.argv[2:]]], dtype=np.float32)})
print(time.perf_counter() - start)
"""


def cold_start(artifact: bytes, probe: list[float], runs: int) -> dict:
    """A fresh `python -c`: interpreter start, imports, session creation, one run."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with open(path, "wb") as f:
            f.write(artifact)
        command = [sys.executable, "-c", _COLD_SCRIPT, path, *map(repr, probe)]
        walls, inside = [], []
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - start)
            inside.append(float(done.stdout.strip()))
    return {"runs": runs, "process_wall_s": statistics.median(walls),
            "import_session_run_s": statistics.median(inside), "process_wall_all_s": walls}


def training(conn, trees: int) -> dict:
    """SELECT the rows into numpy, split as train() does, fit XGBClassifier, convert to ONNX.

    train() fits on the training split only (75 %, stratified) and converts the fitted
    pipeline with the same code, verified on the test split; the baseline does the same
    work with pgmodels' own converter, so the "fit + to_onnx" figure is like for like.
    """
    start = time.perf_counter()
    X, y = fetch_training_matrix(conn)
    fetched = time.perf_counter()
    X_train, X_test, y_train, y_test = _split(X, y)
    pipeline = _pipeline(trees)
    split_done = time.perf_counter()
    pipeline.fit(X_train, y_train)
    fitted = time.perf_counter()
    artifact = _serialize(pipeline, X_test)
    converted = time.perf_counter()
    fetch_s, fit_s, convert_s = fetched - start, fitted - split_done, converted - fitted
    return {"fetch_s": fetch_s, "split_s": split_done - fetched, "fit_s": fit_s, "convert_s": convert_s,
            "fetch_fit_s": fitted - start, "fetch_fit_convert_s": converted - start,
            "train_rows": len(y_train), "artifact_bytes": len(artifact)}


def _split(X, y):
    from sklearn.model_selection import train_test_split

    n_test = int(np.ceil(0.25 * len(y)))
    # pgmodels.training.split: stratified, seed 42, ceil(test_size * rows) test rows.
    return train_test_split(X, y, test_size=n_test, random_state=42, stratify=y)


def _pipeline(trees: int):
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier

    # train() names the step "model" and seeds every estimator with random_state=0.
    return Pipeline([("model", XGBClassifier(n_estimators=trees, max_depth=6, random_state=0))])


def _serialize(pipeline, X_test) -> bytes:
    from pgmodels.training import convert

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        artifact, runtime, record = convert.serialize(pipeline, "classification", FEATURES,
                                                      ["float"] * len(FEATURES), X_test, 1.0)
    if runtime != "onnx":
        raise RuntimeError(f"the baseline model did not convert to ONNX: {record.get('reason')}")
    return artifact


def warm_up_training() -> None:
    """Import and exercise the stack once, as the database side's warm-up training does."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, len(FEATURES)))
    y = (X[:, 0] > 0).astype(np.int64)
    pipeline = _pipeline(2)
    pipeline.fit(X[:150], y[:150])
    _serialize(pipeline, X[150:])
