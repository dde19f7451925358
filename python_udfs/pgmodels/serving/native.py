"""The C hot path of a one-row predict (extension/src/native.c): what it is handed.

A one-row predict statement used to cost a PL/Python call and an onnxruntime run on top
of the row's lookup, 20 to 40 microseconds each in a backend between statements. For
the models most tables are scored with, a tree ensemble (XGBoost, LightGBM, a random
forest's regressor, scikit-learn's gradient boosting), the library pgmodels_native
evaluates the trees itself, answering predict()'s array forms before any Python runs.

What it may answer is decided here, by the decision cache (cache.py): when a kept
decision (role, project or model id) -> model is confirmed, and the model is one tree
ensemble this module can translate, the trees go to the library with the role, the key
and the invalidation count of the decision. The library answers only for that role,
while the backend's count is the same, under the rules cache.py serves its decisions by
(see native.c); anything else goes to the Python cores. A statement's own lookup
is handed over the same way for the rest of that statement (offer_statement), and
predict_batch's Python core scores many rows with the trees too (score). No SQL
function registers anything: only this module, through ctypes, in the backend's own
process.

Exactness: the translation follows onnxruntime's TreeEnsemble kernels (single-precision
comparisons and sums, trees in order, the same label rule), and before a model is handed
over, the library and onnxruntime score the same probe rows (every threshold, the values
next to it, values between): a single difference, and the model stays with onnxruntime.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

from .._lazy import numpy_for

np = numpy_for(__name__)  # imported at its first use (_lazy.py)

MAGIC = 0x706D6E31
MAX_ARTIFACT = 8 << 20  # bytes: larger ensembles stay with onnxruntime (translating costs)
MAX_KEY = 256
PROBES = 256
MODES = {b"LEAF": 0, b"BRANCH_LEQ": 1, b"BRANCH_LT": 2, b"BRANCH_GTE": 3, b"BRANCH_GT": 4, b"BRANCH_EQ": 5,
         b"BRANCH_NEQ": 6}
KIND_VALUE, KIND_BINARY, KIND_ARGMAX = 0, 1, 2
NODE = [("feature", "<i4"), ("value", "<f4"), ("yes", "<i4"), ("no", "<i4"), ("mode", "<i4")]  # a numpy dtype

_lib: list = []  # [the library's functions] once it is loaded in this backend


def _functions():
    """The library's entry points, or None while the backend has not loaded it (a
    predict() statement's wrapper loads it; PostgreSQL loads libraries RTLD_GLOBAL)."""
    if _lib:
        return _lib[0]
    try:
        main = ctypes.CDLL(None)
        register = main.pgmodels_native_register
        forget = main.pgmodels_native_forget
        evaluate = main.pgmodels_native_evaluate
        statement = main.pgmodels_native_register_statement
        score = main.pgmodels_native_score
    except (OSError, AttributeError):
        return None
    try:  # project names are matched as the database's bytes; Python's are UTF-8
        encoding = main.GetDatabaseEncodingName
        encoding.restype, encoding.argtypes = ctypes.c_char_p, []
        utf8 = encoding() == b"UTF8"
    except AttributeError:
        utf8 = False
    register.restype, forget.restype, evaluate.restype = ctypes.c_int, None, ctypes.c_int
    statement.restype, score.restype = ctypes.c_int, ctypes.c_int
    register.argtypes = [ctypes.c_uint32, ctypes.c_int64, ctypes.c_char_p, ctypes.c_int, ctypes.c_int64,
                         ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
    statement.argtypes = [ctypes.c_uint32, ctypes.c_int64, ctypes.c_char_p, ctypes.c_int, ctypes.c_int64,
                          ctypes.c_double, ctypes.c_char_p, ctypes.c_size_t]
    forget.argtypes = [ctypes.c_uint32, ctypes.c_int64, ctypes.c_char_p, ctypes.c_int]
    evaluate.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    score.argtypes = evaluate.argtypes
    _lib.append((register, forget, evaluate, utf8, statement, score))
    return _lib[0]


def available() -> bool:
    """Whether the library is loaded in this backend (so trees handed to it are walked)."""
    return _functions() is not None


def _key(key, utf8: bool) -> tuple[int, bytes] | None:
    """The library's form of a decision's key: a model id, or a project name as the
    database's bytes (in a database that is not UTF-8, names are not registered)."""
    if isinstance(key, int):
        return key, b""
    raw = str(key).encode()
    return (0, raw) if utf8 and len(raw) <= MAX_KEY else None


def offer(role: int, key, count: int, model) -> bool:
    """Hand a confirmed decision's model to the library, if it is a tree ensemble it
    evaluates exactly; True when the library now answers for (role, key)."""
    functions = _functions()
    if functions is None or not role:
        return False
    k = _key(key, functions[3])
    if k is None:
        return False
    blob = _blob(model, functions[2])
    if blob is None:
        functions[1](role, k[0], k[1], len(k[1]))
        return False
    return bool(functions[0](role, k[0], k[1], len(k[1]), model.id, count, blob, len(blob)))


def offer_statement(role: int, key, stamp: float, model) -> bool:
    """Hand the model a lookup chose for this statement (cache.load: for the session's own
    role, with no rollout) to the library for the rest of the statement, when its trees
    are already translated (a lookup translates nothing: the first predict of a connection
    pays nothing for it). True when the library now answers the statement's later rows."""
    blob = getattr(model, "native_blob", None)
    if not role or not blob:
        return False
    functions = _functions()
    if functions is None:
        return False
    k = _key(key, functions[3])
    if k is None:
        return False
    return bool(functions[4](role, k[0], k[1], len(k[1]), model.id, stamp, blob, len(blob)))


def score(model, X: np.ndarray) -> np.ndarray | None:
    """predict()'s answers for the rows of X (finite values) from the model's trees in the
    library, translating them first if need be; None: onnxruntime answers."""
    functions = _functions()
    if functions is None or X.ndim != 2 or not len(X) or X.shape[1] != model.n_features:
        return None
    blob = _blob(model, functions[2])
    if blob is None:
        return None
    rows = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(rows).all():
        return None
    out = np.empty(len(rows), dtype=np.float32)
    if not functions[5](blob, len(blob), rows.ctypes.data, len(rows), out.ctypes.data):
        return None
    return out


def forget(role: int | None = None, key=None) -> None:
    """Drop the library's registration for (role, key), or every one (role None)."""
    functions = _functions()
    if functions is None:
        return
    if role is None:
        functions[1](0, 0, b"", 0)
        return
    k = _key(key, functions[3])
    if k is not None and role:
        functions[1](role, k[0], k[1], len(k[1]))


def load_library() -> bool:
    """Load the library into this backend, which may have called none of its functions (a
    training backend, whose child checks the trees it translates), from the server's own
    library directory, as PostgreSQL loads it (RTLD_GLOBAL)."""
    if _functions() is not None:
        return True
    try:
        directory = (ctypes.c_char * 1024).in_dll(ctypes.CDLL(None), "pkglib_path").value.decode()
        ctypes.CDLL(os.path.join(directory, "pgmodels_native.so"), mode=ctypes.RTLD_GLOBAL)
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return _functions() is not None


def checked_translation(artifact: bytes, runtime: str, task: str, labels: list | None, n_features: int) -> bytes | None:
    """The trees train() and import_onnx() store with a version (models.native_trees):
    the translation serving would make of the artifact, checked as serving checks it,
    against a one-thread onnxruntime session on the probe rows. A backend then loads the version
    with its trees and no onnxruntime (cache.py): its first predict() is answered in C.
    None when the model is no tree ensemble translated here, or anything fails (serving
    then translates, or not, as before)."""
    if runtime != "onnx" or len(artifact) > MAX_ARTIFACT or b"TreeEnsemble" not in artifact:
        return None
    functions = _functions()
    if functions is None:
        return None
    try:
        import onnxruntime as ort
        from types import SimpleNamespace

        from .runtime import _plain_call, class_answers, io_names

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        task = "classification" if task == "clustering" else task
        single, label, _, value = io_names(session, task)
        output = label if task == "classification" else value
        if single is None or output is None:
            return None
        answers = class_answers(labels) if task == "classification" else None
        call = _plain_call(SimpleNamespace(run=session.run, single_input=single), output)  # serving's plain run
        model = SimpleNamespace(task=task, labels=labels, n_features=n_features, row=lambda v: call(v, answers),
                                engine=SimpleNamespace(single_input=single, label_output=label, value_output=value))
        blob = translate(artifact, model)
        return blob if blob is not None and _agrees(blob, model, functions[2]) else None
    except Exception:  # noqa: BLE001 - a graph this module does not follow: serving decides later
        return None


def keep_source(model, artifact: bytes) -> None:
    """Keep the artifact of a model that may be a tree ensemble, to translate it once a
    decision for it is confirmed (not at load: the first predict of a connection pays
    nothing for it)."""
    if len(artifact) <= MAX_ARTIFACT and b"TreeEnsemble" in artifact:
        model.native_source = artifact


def _blob(model, evaluate) -> bytes | None:
    cached = getattr(model, "native_blob", None)
    if cached is not None:
        return cached or None
    blob = None
    source = getattr(model, "native_source", None)
    if source is not None and model.row is not None:
        try:
            blob = translate(source, model)
            if blob is not None and not _agrees(blob, model, evaluate):
                blob = None
        except Exception:  # noqa: BLE001 - a graph this module does not follow stays with onnxruntime
            blob = None
    model.native_blob = blob or b""
    model.native_source = None
    return blob


# ---- the ONNX graph, read with a protobuf reader of its own (importing the onnx package
# would cost a backend a fifth of a second) ----

def _fields(buf: memoryview):
    """(field number, wire type, value) of a protobuf message: an int for varints and
    fixed-width numbers (as raw bytes for fixed32/64), a memoryview for the rest."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        else:
            raise ValueError("unsupported wire type")
        if i > n:
            raise ValueError("truncated message")
        yield field, wire, value


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("bad varint")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _attribute(buf: memoryview):
    name, floats, ints, strings, f, i, s = None, [], [], [], None, None, None
    for field, wire, value in _fields(buf):
        if field == 1:
            name = bytes(value).decode()
        elif field == 2:
            f = struct.unpack("<f", value)[0]
        elif field == 3:
            i = _signed(value)
        elif field == 4:
            s = bytes(value)
        elif field == 7:
            floats.extend(struct.unpack(f"<{len(value) // 4}f", value) if wire == 2 else
                          struct.unpack("<f", value))
        elif field == 8:
            if wire == 2:
                j = 0
                while j < len(value):
                    v, j = _varint(value, j)
                    ints.append(_signed(v))
            else:
                ints.append(_signed(value))
        elif field == 9:
            strings.append(bytes(value))
        elif field in (5, 6, 10, 11):  # a tensor or graph: not a form translated here
            return name, ValueError
    value = floats or ints or strings or (f if f is not None else i if i is not None else s)
    return name, value


def _tree_nodes(artifact: bytes) -> list[tuple[str, str, list, list, dict]]:
    """The graph's nodes: (op_type, domain, inputs, outputs, attributes); read by the onnx
    package where it is loaded already (a training child), a hundred times faster."""
    onnx = sys.modules.get("onnx")
    if onnx is not None:
        return _proto_nodes(onnx.load_model_from_string(artifact))
    graph = None
    for field, _, value in _fields(memoryview(artifact)):
        if field == 7:
            graph = value
    if graph is None:
        raise ValueError("no graph")
    nodes = []
    for field, _, value in _fields(graph):
        if field != 1:
            continue
        op, domain, inputs, outputs, attrs = "", "", [], [], {}
        for f, _, v in _fields(value):
            if f == 1:
                inputs.append(bytes(v).decode())
            elif f == 2:
                outputs.append(bytes(v).decode())
            elif f == 4:
                op = bytes(v).decode()
            elif f == 7:
                domain = bytes(v).decode()
            elif f == 5:
                name, val = _attribute(v)
                attrs[name] = val
        nodes.append((op, domain, inputs, outputs, attrs))
    return nodes


# AttributeProto's types: FLOAT, INT, STRING, FLOATS, INTS, STRINGS (the rest, tensors and
# graphs, are no form translated here)
_PROTO_VALUES = {1: "f", 2: "i", 3: "s", 6: "floats", 7: "ints", 8: "strings"}


def _proto_nodes(proto) -> list[tuple[str, str, list, list, dict]]:
    """_tree_nodes' answer from a parsed ModelProto: the same values (an empty list read
    as nothing, as the reader above reads it)."""
    nodes = []
    for node in proto.graph.node:
        attrs = {}
        for a in node.attribute:
            field = _PROTO_VALUES.get(a.type)
            value = ValueError if field is None else getattr(a, field)
            attrs[a.name] = (list(value) or None) if field in ("floats", "ints", "strings") else value
        nodes.append((node.op_type, node.domain, list(node.input), list(node.output), attrs))
    return nodes


def translate(artifact: bytes, model) -> bytes | None:
    """The library's form of a model whose predict() output comes straight from one
    TreeEnsembleClassifier or TreeEnsembleRegressor on the graph's one input, or None."""
    engine = model.engine
    output = engine.label_output if model.task == "classification" else engine.value_output
    producer = {o: n for n in _tree_nodes(artifact) for o in n[3]}
    node = producer.get(output)
    for _ in range(8):  # an Identity or two between the trees and the output (LightGBM's converter)
        if node is None or node[0] != "Identity" or node[1] not in ("", "ai.onnx") or len(node[2]) != 1:
            break
        output = node[2][0]
        node = producer.get(output)
    if node is None or node[1] != "ai.onnx.ml" or node[2] != [engine.single_input]:
        return None
    op, attrs = node[0], node[4]
    if any(v is ValueError for v in attrs.values()):
        return None
    if op == "TreeEnsembleRegressor" and node[3][0] == output:
        if attrs.get("n_targets", 1) != 1 or attrs.get("post_transform", b"NONE") != b"NONE":
            return None
        aggregate = attrs.get("aggregate_function", b"SUM")
        if aggregate not in (b"SUM", b"AVERAGE"):
            return None
        weights = ("target_treeids", "target_nodeids", "target_ids", "target_weights")
        base = list(attrs.get("base_values", []))
        if len(base) > 1:
            return None
        answers, kind, threshold, n_classes = [0.0, 0.0], KIND_VALUE, 0.0, 1
        base = base or [0.0]
        average = aggregate == b"AVERAGE"
    elif op == "TreeEnsembleClassifier" and node[3][0] == output:
        labels = attrs.get("classlabels_int64s")
        if not labels or "classlabels_strings" in attrs:
            return None
        weights = ("class_treeids", "class_nodeids", "class_ids", "class_weights")
        answers = [_answer_of(model, v) for v in labels]
        ids = set(attrs.get("class_ids", []))
        base_values = list(attrs.get("base_values", []))
        average = False
        if len(labels) == 2 and ids == {0}:
            kind, n_classes = KIND_BINARY, 1
            threshold = 0.5 if all(w >= 0 for w in attrs.get("class_weights", [])) else 0.0
            base = base_values[:1] or [0.0]
        elif len(labels) > 2 and ids == set(range(len(labels))):
            kind, n_classes, threshold = KIND_ARGMAX, len(labels), 0.0
            if len(base_values) not in (0, len(labels)):
                return None
            if not base_values and not _every_class_scored(attrs, len(labels)):
                return None  # onnxruntime leaves a class no leaf of a row scored out of its argmax
            base = base_values or [0.0] * len(labels)
        else:
            return None
    else:
        return None
    return _pack(attrs, weights, kind, n_classes, threshold, average, base, answers, model.n_features)


def _every_class_scored(attrs: dict, n_classes: int) -> bool:
    """Whether every row gets a score for every class: for each class, some tree whose
    every leaf weighs it (XGBoost's and LightGBM's multiclass trees, one class each)."""
    weighs: dict[tuple, set] = {}
    for t, n, c in zip(attrs.get("class_treeids", []), attrs.get("class_nodeids", []), attrs.get("class_ids", [])):
        weighs.setdefault((t, n), set()).add(c)
    per_tree: dict[int, set] = {}
    for t, n, mode in zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], attrs["nodes_modes"]):
        if mode == b"LEAF":
            got = weighs.get((t, n), set())
            per_tree[t] = per_tree[t] & got if t in per_tree else set(got)
    covered = set().union(*per_tree.values()) if per_tree else set()
    return covered >= set(range(n_classes))


def _answer_of(model, raw: int) -> float:
    labels = model.labels
    if labels is not None and 0 <= raw < len(labels):
        v = labels[raw]
        return float(v) if isinstance(v, (int, float)) else float(raw)
    return float(raw)


def _pack(attrs: dict, weights: tuple, kind: int, n_classes: int, threshold: float, average: bool,
          base: list, answers: list, n_features: int) -> bytes | None:
    tree_ids, node_ids = attrs["nodes_treeids"], attrs["nodes_nodeids"]
    features, values, modes = attrs["nodes_featureids"], attrs["nodes_values"], attrs["nodes_modes"]
    yes_ids, no_ids = attrs["nodes_truenodeids"], attrs["nodes_falsenodeids"]
    if not len(tree_ids) == len(node_ids) == len(features) == len(values) == len(modes) == len(yes_ids) \
            == len(no_ids) or not tree_ids:
        return None
    leaf_tree, leaf_node, leaf_class, leaf_weight = (attrs[w] for w in weights)
    if not len(leaf_tree) == len(leaf_node) == len(leaf_class) == len(leaf_weight):
        return None
    leaves: dict[tuple, tuple] = {}
    for t, n, c, w in zip(leaf_tree, leaf_node, leaf_class, leaf_weight):
        if (t, n) in leaves:
            return None  # a leaf with several weights: not a form translated here
        leaves[(t, n)] = (0 if kind != KIND_ARGMAX else c, w)
    index: dict[tuple, int] = {}
    order: list[int] = []  # the trees in order of first appearance (onnxruntime's roots)
    for i, (t, n) in enumerate(zip(tree_ids, node_ids)):
        if (t, n) in index:
            return None
        index[(t, n)] = i
        if not order or tree_ids[order[-1]] != t:
            if order and tree_ids[order[-1]] > t:
                return None  # trees out of order, or a tree's nodes not together
            order.append(i)
    n = len(tree_ids)
    # the nodes' fields, gathered as lists (a numpy row written per node costs ten times more)
    feature, value, branch_yes, branch_no, mode_of = [0] * n, [0.0] * n, [0] * n, [0] * n, [0] * n
    roots: list[int] = []
    placed = 0
    for root in order:
        # depth first from the root: children come after their parent, so no walk loops
        roots.append(placed)
        stack = [(root, None, None)]
        while stack:
            i, parent, side = stack.pop()
            me = placed
            placed += 1
            if placed > n:
                return None  # a node reached twice
            if parent is not None:
                side[parent] = me
            mode = MODES.get(modes[i])
            if mode is None:
                return None
            t = tree_ids[i]
            if mode == 0:
                leaf = leaves.get((t, node_ids[i]))
                if leaf is None:
                    return None
                feature[me], value[me] = leaf
                continue
            if (t, node_ids[i]) in leaves or not 0 <= features[i] < n_features:
                return None
            yes, no = index.get((t, yes_ids[i])), index.get((t, no_ids[i]))
            if yes is None or no is None:
                return None
            feature[me], value[me], mode_of[me] = features[i], values[i], mode
            stack.append((no, me, branch_no))
            stack.append((yes, me, branch_yes))
    if placed != n or len(leaves) != mode_of.count(0):
        return None
    nodes = np.zeros(n, dtype=np.dtype(NODE))
    for name, column in (("feature", feature), ("value", value), ("yes", branch_yes), ("no", branch_no),
                         ("mode", mode_of)):
        nodes[name] = column
    header = struct.pack("<6i i f", MAGIC, n_features, kind, n_classes, len(roots), len(nodes), int(average),
                         threshold)
    answers = (answers + [0.0, 0.0])[:max(n_classes, 2)] if kind != KIND_ARGMAX else answers
    return b"".join([header, np.asarray(base, dtype="<f4").tobytes(), np.asarray(answers, dtype="<f4").tobytes(),
                     np.asarray(roots, dtype="<i4").tobytes(), nodes.tobytes()])


def _agrees(blob: bytes, model, evaluate) -> bool:
    """Whether the library and onnxruntime give the same answer on probe rows."""
    rows = _probes(blob, model.n_features)
    out = np.zeros(len(rows), dtype=np.float32)
    if not evaluate(blob, len(blob), rows.ctypes.data, len(rows), out.ctypes.data):
        return False
    expected = np.array([model.row(r.tolist()) for r in rows], dtype=np.float32)
    return bool(np.array_equal(out.view(np.int32), expected.view(np.int32)))


def _probes(blob: bytes, n_features: int) -> np.ndarray:
    """Rows made of the trees' thresholds, the floats next to them and values between."""
    head = struct.calcsize("<6i i f")
    _, _, kind, n_classes, n_trees, n_nodes, _, _ = struct.unpack_from("<6i i f", blob)
    offset = head + 4 * (n_classes + max(n_classes, 2)) + 4 * n_trees
    nodes = np.frombuffer(blob, dtype=np.dtype(NODE), count=n_nodes, offset=offset)
    branches = nodes[nodes["mode"] != 0]
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((PROBES, n_features)).astype(np.float32)
    for f in range(n_features):
        t = branches["value"][branches["feature"] == f]
        if not len(t):
            continue
        near = np.concatenate([t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))])
        spread = rng.uniform(t.min() - 1, t.max() + 1, PROBES).astype(np.float32)
        pick = rng.integers(0, 2, PROBES).astype(bool)
        rows[:, f] = np.where(pick, rng.choice(near, PROBES), spread)
    return np.ascontiguousarray(rows[np.isfinite(rows).all(axis=1)], dtype=np.float32)
