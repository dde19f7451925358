"""Loading a model artifact into something that predicts.

ONNX artifacts run on onnxruntime. A model that could not be converted was stored in a
native format that runs no code when loaded (XGBoost UBJ, or skops with a type
allow-list); loading one of those imports its library, which the ONNX path never does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .._lazy import numpy_for
from ..errors import DATA_CORRUPTED, FEATURE_NOT_SUPPORTED, PgmodelsError
from .guard import Budget, Interrupted, rows_of

np = numpy_for(__name__)  # imported at its first use (_lazy.py)


@dataclass
class Model:
    """A loaded model version with what serving needs to know about it."""

    id: int
    project: str
    version: int
    task: str
    runtime: str
    feature_names: list[str]
    feature_types: list[str]
    labels: list | None
    nullable: frozenset[str]
    sha256: bytes = b""
    # array columns the model was trained on: name -> length (features name[1], name[2], ...)
    array_features: dict = field(default_factory=dict)
    # predict() on a numeric array, for the common case (see fast_row_predict)
    row: object = field(default=None, repr=False)
    # the same with a routing key, which a model without a rollout ignores
    keyed: object = field(default=None, repr=False)
    # a tree ensemble's artifact until it is translated for the C path, then its
    # translation (b"" when it has none; see native.py)
    native_source: bytes | None = field(default=None, repr=False)
    native_blob: bytes | None = field(default=None, repr=False)
    # what runs the artifact (engine), and what makes it when it is first asked for: a
    # version loaded with its trees (cache.py) starts onnxruntime only if an answer needs it
    _engine: object = field(default=None, repr=False)
    start: object = field(default=None, repr=False)

    @property
    def engine(self):
        if self._engine is None and self.start is not None:
            self._engine = self.start()  # sets engine itself before it makes the row path
            self.start = None
        return self._engine

    @engine.setter
    def engine(self, value) -> None:
        self._engine = value

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def all_float(self) -> bool:
        return "text" not in self.feature_types

    def describe(self) -> str:
        return f'model {self.id} (version {self.version} of project "{self.project}")'


# The largest finite float32: models take single-precision inputs.
FLOAT32_MAX = 3.4028234663852886e38


def check_self_contained(artifact: bytes, imported: bool = False) -> None:
    """Refuse an ONNX model that would make onnxruntime read anything but its own bytes,
    or run a loop the input can make endless.

    A tensor stored as external data (an initializer, a constant, a function's default
    attribute, in any subgraph) names a file that onnxruntime opens relative to the
    server's data directory; that would let whoever stores a model read the server's
    files. A Loop's trip count can come from the input, so its work has no bound that
    import_onnx could check (catalog/onnx_cost.py). No such model is imported or loaded."""
    from .onnx_scan import Malformed, problems

    try:
        external, refused = problems(artifact, imported)
    except Malformed as e:
        raise PgmodelsError("the model artifact is not a valid ONNX model", detail=f"{e}.",
                            sqlstate=DATA_CORRUPTED) from None
    if external:
        raise PgmodelsError("ONNX models with external data are not accepted",
                            detail="A tensor of the model keeps its values in a file outside the model.",
                            hint="Save the model with all tensors inside it "
                                 "(onnx.save_model(..., save_as_external_data=False)).",
                            sqlstate=FEATURE_NOT_SUPPORTED)
    if refused:
        what = refused + "s" if refused.startswith("model-local") else refused + " operators"
        raise PgmodelsError(f"ONNX models with {what} are not accepted" + ("" if not imported else " for import"),
                            detail="Their work can grow with the input (or, for functions, with each call they "
                                   "make) without a bound pgmodels could check before running the model.",
                            hint="Models pgmodels trains are converted without them.",
                            sqlstate=FEATURE_NOT_SUPPORTED)


def _session(artifact: bytes, options):
    """An onnxruntime session on the artifact, loaded from a file in a new, empty, private
    directory: onnxruntime resolves a model's external files relative to the model's
    own directory (and to the backend's, the data directory, for a model given as bytes),
    so there is nothing for one to find, should the check above ever miss one."""
    import os
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="pgmodels-model-") as home:
        path = os.path.join(home, "model.onnx")
        with open(path, "wb") as f:
            f.write(artifact)
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def io_names(session, task: str) -> tuple[str | None, str | None, str | None, str | None]:
    """A session's single float input (None: one input per feature), and its label,
    probability and value outputs (None where it has none)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    single = inputs[0].name if len(inputs) == 1 and inputs[0].type == "tensor(float)" else None
    by_name = {o.name: o for o in outputs}
    if task != "classification":
        return single, None, None, "value" if "value" in by_name else outputs[0].name
    label = "label" if "label" in by_name else next((o.name for o in outputs if o.type.startswith("tensor(int")), None)
    proba = "probabilities" if "probabilities" in by_name else next(
        (o.name for o in outputs if o.type in ("tensor(float)", "tensor(double)") and len(o.shape) == 2), None)
    return single, label, proba, None


class OnnxEngine:
    """An onnxruntime session and the names of what goes in and comes out."""

    def __init__(self, artifact: bytes, feature_names: list[str], task: str, imported: bool = False,
                 work_per_row: float | None = None):
        import onnxruntime as ort

        check_self_contained(artifact, imported)
        options = ort.SessionOptions()
        # A backend is one process among many: PostgreSQL spreads big queries over
        # cores with parallel workers, so each session stays on one quiet thread.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = _session(artifact, options)
        except Exception as e:  # onnxruntime raises its own exception types
            raise PgmodelsError("the model artifact is not a valid ONNX model", detail=str(e)[:500],
                                sqlstate=DATA_CORRUPTED) from None
        # The binding's own run() skips the Python wrapper's re-validation of the feed on
        # every call, a good part of a single row's cost; the public run() stays the
        # fallback should a release drop it.
        binding = getattr(self.session, "_sess", None)
        self.plain_run = binding.run if binding is not None else self.session.run
        # which runs a cancel must be able to stop (see guard.py): an imported model's
        # work is bounded by its static estimate, or unknown
        self.budget = Budget(work_per_row, bounded=not imported or work_per_row is not None)
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.single_input, self.label_output, self.proba_output, self.value_output = io_names(self.session, task)
        missing = [] if self.single_input else [n for n in feature_names if n not in self.input_types]
        if missing:
            raise PgmodelsError("the ONNX graph's inputs do not match the model's features",
                                detail="Features without an input of the same name: %s." % ", ".join(missing),
                                sqlstate=DATA_CORRUPTED)
        if task == "classification" and self.label_output is None and self.proba_output is None:
            raise PgmodelsError("the ONNX graph has no class or probability output",
                                detail="A classification model needs an integer label tensor or a float probability tensor.",
                                sqlstate=DATA_CORRUPTED)

    def run(self, outputs: list, feed: dict) -> list:
        """onnxruntime's run: in the backend's thread when it is expected to be short,
        else one that statement_timeout and pg_cancel_backend stop (guard.py)."""
        rows = rows_of(feed)
        if rows <= self.budget.inline_rows:
            return self.plain_run(outputs, feed, None)
        return self.budget.run(self.plain_run, outputs, feed, rows)

    def feed(self, model: Model, X: np.ndarray | None, columns: dict | None) -> dict:
        if self.single_input is not None:
            return {self.single_input: X}
        if X is not None:  # all-float model whose graph takes one input per feature
            return {name: X[:, i:i + 1] for i, name in enumerate(model.feature_names)}
        return columns

    def labels(self, feed: dict) -> np.ndarray:
        if self.label_output is not None:
            return _per_row(np.asarray(self.run([self.label_output], feed)[0]).reshape(-1), feed)
        return np.argmax(self.probabilities(feed), axis=1)

    def probabilities(self, feed: dict) -> np.ndarray:
        if self.proba_output is None:
            raise PgmodelsError("the model has no probability output",
                                detail="Its ONNX graph returns class labels only.",
                                hint="Use predict() for its labels.", sqlstate=FEATURE_NOT_SUPPORTED)
        out = self.run([self.proba_output], feed)[0]
        try:
            out = np.asarray(out, dtype=np.float32)
        except (TypeError, ValueError):
            out = np.zeros(0)
        if out.ndim != 2:
            raise _bad_output("probabilities", "not a rows x classes tensor")
        return _per_row(out, feed)

    def values(self, feed: dict) -> np.ndarray:
        out = np.asarray(self.run([self.value_output], feed)[0])
        if out.ndim == 2 and out.shape[1] > 1:  # joint regression, PCA: the first value, as PostgresML's predict
            out = out[:, 0]
        return _per_row(out.reshape(-1), feed)


def _bad_output(what: str, how: str) -> PgmodelsError:
    return PgmodelsError(f"the model's {what} output is {how}",
                         detail="Its ONNX graph does not give one answer per row of input.",
                         sqlstate="22000")


def _per_row(out: np.ndarray, feed) -> np.ndarray:
    """The model's output, checked to hold one answer per row fed."""
    first = next(iter(feed.values())) if isinstance(feed, dict) else feed
    rows = len(first) if first is not None else 0
    if len(out) != rows:
        raise _bad_output("answer", f"{len(out)} values for {rows} rows")
    return out


class NativeEngine:
    """A model served by its own library (see pgmodels.training.native.load_native)."""

    def __init__(self, runtime: str, artifact: bytes):
        from ..training.native import load_native

        self.model = load_native(runtime, artifact)

    def feed(self, model: Model, X: np.ndarray | None, columns: dict | None):
        if X is not None:
            return X
        # mixed features: the native pipeline was fitted on one object matrix in feature
        # order (training.preprocess.design_matrix), not on ONNX's one input per feature
        return np.concatenate([np.asarray(columns[n]).astype(np.float64).astype(object)
                               if np.asarray(columns[n]).dtype != object else np.asarray(columns[n])
                               for n in model.feature_names], axis=1)

    def labels(self, feed) -> np.ndarray:
        return np.asarray(self.model.predict(feed)).reshape(-1)

    def probabilities(self, feed) -> np.ndarray:
        if not hasattr(self.model, "predict_proba"):
            raise PgmodelsError("the model has no probability output", hint="Use predict() for its labels.",
                                sqlstate=FEATURE_NOT_SUPPORTED)
        try:
            return np.asarray(self.model.predict_proba(feed), dtype=np.float32)
        except (AttributeError, ValueError, TypeError) as e:  # e.g. a one-vs-one GaussianProcessClassifier
            raise PgmodelsError("the model has no probability output", detail=str(e)[:300],
                                hint="Use predict() for its labels.", sqlstate=FEATURE_NOT_SUPPORTED) from None

    def values(self, feed) -> np.ndarray:
        return np.asarray(self.model.predict(feed)).reshape(-1)


def verify(model_id: int, artifact: bytes, sha256: bytes) -> None:
    """Refuse an artifact whose bytes are not the ones that were stored."""
    if hashlib.sha256(artifact).digest() != bytes(sha256):
        raise PgmodelsError(f"the artifact of model {model_id} fails its sha256 check",
                            detail="The stored bytes differ from the ones the model was registered with.",
                            hint="Restore the model from a backup, or train or import it again.",
                            sqlstate=DATA_CORRUPTED)


def fast_row_predict(model: Model, checked_row):
    """predict() for one numeric array on a one-input ONNX model: the hot path of row-wise
    scoring, in as few Python steps as a row needs. The row is written into one float32
    buffer that onnxruntime reads in place, and the answer into one it writes in place
    (an I/O binding), so a row allocates nothing. Anything unusual (a NULL, NaN or
    Infinity, a wrong length, a nested list) goes to checked_row, which makes the array or
    raises the right error."""
    engine = model.engine
    if not isinstance(engine, OnnxEngine) or engine.single_input is None:
        return None
    output = engine.value_output if model.task != "classification" else engine.label_output
    if output is None:
        return None
    n = model.n_features
    if not engine.budget.could_inline(1):  # a row may take long: every row's run is guarded
        return None
    probe = np.arange(n, dtype=np.float32).reshape(1, n) / max(n, 1)
    try:
        # the first runs of a model are guarded (guard.py) and tell how long a row takes:
        # two, the first being a cold start
        for _ in range(2):
            expected = engine.run([output], {engine.single_input: probe})[0]
    except Interrupted:
        raise
    except Exception:  # noqa: BLE001 - a graph that will not run on the probe: the checked path says why
        return None
    if engine.budget.inline_rows < 1:
        return None
    call = _bound_call(engine, output, n, probe, expected) or _plain_call(engine, output)
    answers = None
    if model.task == "classification":
        answers = class_answers(model.labels)

    def row(values: list) -> float:
        if len(values) == n and None not in values:
            try:
                total = sum(values)
            except TypeError:  # a nested list: a multi-dimensional array
                return call(checked_row(model, values), answers)
            # NaN or Infinity anywhere makes total - total NaN: a cheap test
            if total - total == 0 and -FLOAT32_MAX <= min(values) and max(values) <= FLOAT32_MAX:
                return call(values, answers)
        return call(checked_row(model, values), answers)
    return row


def _answer(raw, answers) -> float:
    if answers is None:
        return float(raw)
    i = int(raw)
    return answers[i] if 0 <= i < len(answers) else float(i)


def class_answers(labels: list | None) -> list[float]:
    """predict()'s answer for each class index: the label itself when numeric, else the index."""
    return [float(v) if isinstance(v, (int, float)) else float(i) for i, v in enumerate(labels or [])]


def _plain_call(engine: OnnxEngine, output: str):
    run, name, outputs = engine.run, engine.single_input, [output]

    def call(values, answers):
        X = values if isinstance(values, np.ndarray) else np.array([values], dtype=np.float32)
        return _answer(run(outputs, {name: X})[0].flat[0], answers)
    return call


def _bound_call(engine: OnnxEngine, output: str, n: int, probe: np.ndarray, expected):
    """The I/O-bound form of one row's run, or None when the graph's output cannot be
    preallocated (an unknown shape or type) or the binding gives another answer than a
    plain run on the probe row (which gave expected)."""
    import onnxruntime as ort

    info = next(o for o in engine.session.get_outputs() if o.name == output)
    dtype = {"tensor(int64)": np.int64, "tensor(float)": np.float32, "tensor(double)": np.float64}.get(info.type)
    if dtype is None or info.shape is None or not 1 <= len(info.shape) <= 2 or \
            any(isinstance(d, int) and d != 1 for d in info.shape[1:]):
        return None
    inbuf = np.zeros((1, n), dtype=np.float32)
    outbuf = np.zeros([1] * len(info.shape), dtype=dtype)
    try:
        io = engine.session.io_binding()
        io.bind_ortvalue_input(engine.single_input, ort.OrtValue.ortvalue_from_numpy(inbuf))
        io.bind_ortvalue_output(output, ort.OrtValue.ortvalue_from_numpy(outbuf))
        binding, sess, options = io._iobinding, engine.session._sess, ort.RunOptions()
        inbuf[0] = probe[0]
        sess.run_with_iobinding(binding, options)
        if not np.array_equal(np.asarray(expected).reshape(-1), outbuf.reshape(-1)):
            return None
    except Exception:  # noqa: BLE001 - a private API or a graph that will not bind: the plain run
        return None
    flat = outbuf.reshape(-1)

    def call(values, answers):
        inbuf[0] = values if not isinstance(values, np.ndarray) else values[0]
        sess.run_with_iobinding(binding, options)
        return _answer(flat[0], answers)
    return call


def engine_for(runtime: str, artifact: bytes, feature_names: list[str], task: str, imported: bool = False,
               work_per_row: float | None = None):
    if runtime == "onnx":
        return OnnxEngine(artifact, feature_names, task, imported, work_per_row)
    return NativeEngine(runtime, artifact)
