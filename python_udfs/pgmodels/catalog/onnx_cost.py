"""How much work an imported ONNX model does per row, read from its graph's shapes.

import_onnx() refuses a model whose work it cannot bound before running anything: the
work of a graph with no Loop or Scan is fixed by the shapes of its tensors, and ONNX's
shape inference, given a batch of a known number of rows (1, then 1024, to see how the
work grows), gives those shapes. Each node costs an estimate of the elementary
operations it does:

- MatMul, Gemm and their integer forms: one multiply-add per output value and inner
  dimension; Conv and ConvTranspose: per output (input) value, the weights of one filter;
  Einsum: the product of every index's extent; RNN, GRU and LSTM: each step's weights for
  each row and step; attention: the query's values times the keys';
- the tree, linear and SVM operators of ai.onnx.ml: their nodes, coefficients or support
  vectors' values for each row;
- anything else: the values it reads and writes (a text value as 50: string work is
  slower than arithmetic), or only those it writes where it only picks or rearranges;
- and every node 1,000 more, what onnxruntime spends running one.

A model is refused when it has more nodes than the administrator's limit
(pgmodels.max_import_cost) allows at 100,000 each (what loading one costs, which cannot
be interrupted: with the default limit, 10,000 nodes), when its work per row passes that
limit, when it grows faster than the number of rows, when an
operator whose work grows faster than its tensors (a MatMul, say) gets a tensor whose
shape depends on the input's values, or when an operator's work cannot be estimated at
all (operators outside the standard and ai.onnx.ml domains, SequenceMap). A model whose
other tensors depend on the input's values is accepted, without an estimate: it is
always run the way a cancel can stop (see pgmodels.serving.guard).

This module imports the onnx package: import_onnx uses it, and serving only for a model
imported without an estimate (before 0.3.0).
"""

from __future__ import annotations

from ..errors import FEATURE_NOT_SUPPORTED, PgmodelsError

PROGRAM_LIMIT_EXCEEDED = "54000"
SETTING = "pgmodels.max_import_cost"
DEFAULT_LIMIT = 1_000_000_000
ROWS = (1, 1024)  # batches the graph is shaped for: per row, and how work grows with rows
TEXT_WEIGHT = 50
DISPATCH = 1_000  # what running any node costs onnxruntime besides its own work (about 1 us)
# Loading a model costs onnxruntime about 0.1 ms per node (its graph optimizations), in
# every backend that serves it, and cannot be interrupted: a node counts as this much
# against the same limit, before anything else is looked at.
LOAD_PER_NODE = 100_000

DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
# operators whose work grows faster than their tensors (their shapes must be known): the
# position of the input whose last extent is the inner dimension, or of the weights
MATMUL = {"MatMul": 0, "MatMulInteger": 0, "QLinearMatMul": 0}   # op -> position of A
CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "DeformConv": 1}  # op -> position of W
RECURRENT = ("RNN", "GRU", "LSTM")
# operators that only pick, copy or rearrange values: their work is what they write
WRITES_ONLY = {"Gather", "GatherElements", "GatherND", "Slice", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
               "Identity", "Shape", "Size", "Expand", "Tile", "ConstantOfShape", "Range", "Constant", "Pad",
               "Transpose", "Concat", "Split", "Cast", "CastLike", "Compress", "ArrayFeatureExtractor",
               "EyeLike", "Trilu", "DepthToSpace", "SpaceToDepth", "ReverseSequence", "OneHot"}
# loops (import_onnx refuses Loop and Scan before this; SequenceMap is a function of a Loop
# over a sequence as long as the input makes it)
REFUSED = ("Loop", "Scan", "SequenceMap")
ML_NODES = ("TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble")


class Unbounded(Exception):
    """The work of a node cannot be bounded from the shapes."""


class TooLarge(Exception):
    """More nodes than the limit allows to load."""


def _dims(value_type) -> list[int] | None:
    """A tensor type's shape as numbers, or None when some extent is not known."""
    if not value_type.HasField("tensor_type"):
        return None
    tensor = value_type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims = []
    for d in tensor.shape.dim:
        if not d.HasField("dim_value") or d.dim_value < 0:
            return None
        dims.append(d.dim_value)
    return dims


def _size(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


class _Shapes:
    """The inferred shape and element type of every value of a graph and its enclosing ones."""

    def __init__(self, graph, outer: "_Shapes | None" = None):
        self.outer = outer
        self.types = {}
        for v in list(graph.input) + list(graph.output) + list(graph.value_info):  # inferred last: most precise
            self.types[v.name] = v.type
        self.constants = {t.name: (list(t.dims), t.data_type) for t in graph.initializer}

    def dims(self, name: str) -> list[int] | None:
        if not name:
            return []
        if name in self.constants:
            return self.constants[name][0]
        if name in self.types:
            return _dims(self.types[name])
        return self.outer.dims(name) if self.outer else None

    def is_text(self, name: str) -> bool:
        from onnx import TensorProto

        if name in self.constants:
            return self.constants[name][1] == TensorProto.STRING
        if name in self.types:
            t = self.types[name]
            return t.HasField("tensor_type") and t.tensor_type.elem_type == TensorProto.STRING
        return self.outer.is_text(name) if self.outer else False

    def known(self, name: str) -> bool:
        """Whether a value is a tensor of known shape (a sequence or map counts as known:
        its size follows from the tensors it is made of)."""
        if not name or name in self.constants:
            return True
        t = self.types.get(name)
        if t is None:
            return self.outer.known(name) if self.outer else False
        return not t.HasField("tensor_type") or _dims(t) is not None


def _attr(node, name: str):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def _touch(shapes: _Shapes, names) -> float:
    total = 0.0
    for n in names:
        d = shapes.dims(n) if n else None
        if d is not None:
            total += _size(d) * (TEXT_WEIGHT if shapes.is_text(n) else 1)
    return total


def _need(shapes: _Shapes, node, position: int) -> list[int]:
    if position >= len(node.input) or shapes.dims(node.input[position]) is None:
        raise Unbounded(f'its {node.op_type} node "{node.name or node.output[0]}" takes a tensor '
                        "whose shape depends on the input's values")
    return shapes.dims(node.input[position])


def _einsum(node, shapes: _Shapes) -> float:
    """The product of every index's extent (broadcast dimensions, under "...", counted as
    the largest of their products)."""
    equation = _attr(node, "equation") or ""
    equation = equation.decode() if isinstance(equation, bytes) else equation
    extent, broadcast = {}, 1
    for i, term in enumerate(equation.replace(" ", "").split("->")[0].split(",")):
        dims = _need(shapes, node, i)
        letters = [c for c in term if c.isalpha()]
        if "..." in term:
            before = sum(c.isalpha() for c in term[:term.index("...")])
            spread = len(dims) - len(letters)
            broadcast = max(broadcast, _size(dims[before:before + spread]))
            dims = dims[:before] + dims[before + spread:]
        for c, d in zip(letters, dims):
            extent[c] = max(extent.get(c, 1), d)
    return float(broadcast * _size(list(extent.values())))


def _node_work(node, shapes: _Shapes, subgraph_work) -> float:
    op = node.op_type
    if node.domain not in DOMAINS:
        raise Unbounded(f'its operator {node.domain}.{op} is not one whose work pgmodels can estimate')
    if op in REFUSED:
        raise Unbounded(f"its {op} node repeats a subgraph as often as its input says")
    written = _touch(shapes, node.output)
    if op in MATMUL:
        a = _need(shapes, node, MATMUL[op])
        _need(shapes, node, MATMUL[op] + (1 if op != "QLinearMatMul" else 3))
        out = [shapes.dims(o) for o in node.output[:1]]
        if out[0] is None:
            raise Unbounded(f'its {op} node "{node.name or node.output[0]}" has an output of unknown shape')
        return _size(out[0]) * (a[-1] if a else 1) + written
    if op == "Gemm":
        a = _need(shapes, node, 0)
        _need(shapes, node, 1)
        k = a[0] if _attr(node, "transA") else a[-1]
        out = shapes.dims(node.output[0])
        if out is None:
            raise Unbounded(f'its Gemm node "{node.name or node.output[0]}" has an output of unknown shape')
        return _size(out) * k + written + _touch(shapes, node.input[2:3])
    if op in CONV:
        w = _need(shapes, node, CONV[op])
        _need(shapes, node, 0)
        out = shapes.dims(node.output[0])
        if out is None:
            raise Unbounded(f'its {op} node "{node.name or node.output[0]}" has an output of unknown shape')
        return _size(out) * _size(w[1:]) * (2 if op == "DeformConv" else 1) + written
    if op == "ConvTranspose":
        x, w = _need(shapes, node, 0), _need(shapes, node, 1)
        if shapes.dims(node.output[0]) is None:
            raise Unbounded(f'its ConvTranspose node "{node.name or node.output[0]}" has an output of unknown shape')
        return _size(x) * _size(w[1:]) + written
    if op == "Einsum":
        return _einsum(node, shapes) + written
    if op in RECURRENT:
        x, w, r = _need(shapes, node, 0), _need(shapes, node, 1), _need(shapes, node, 2)
        steps = _size(x) // max(x[-1], 1) if x else 1
        return steps * (_size(w) + _size(r)) + written
    if op == "Attention":
        q, k = _need(shapes, node, 0), _need(shapes, node, 1)
        return 2.0 * _size(q) * (k[-2] if len(k) >= 2 else 1) + written
    rows = None
    if node.domain == "ai.onnx.ml" and op in ML_NODES + ("LinearClassifier", "LinearRegressor",
                                                        "SVMClassifier", "SVMRegressor"):
        x = shapes.dims(node.input[0])
        rows = (x[0] if len(x) > 1 else 1) if x is not None else None
        if rows is None:
            raise Unbounded(f'its {op} node "{node.name or node.output[0]}" takes a tensor whose shape '
                            "depends on the input's values")
        if op in ML_NODES:
            per_row = max((len(a.ints) + len(a.floats) for a in node.attribute if a.name.startswith("nodes_")),
                          default=0)
        elif op.startswith("Linear"):
            per_row = len(_attr(node, "coefficients") or [])
        else:
            per_row = len(_attr(node, "support_vectors") or []) + len(_attr(node, "coefficients") or [])
        return rows * per_row + _touch(shapes, node.input) + written
    work = written if op in WRITES_ONLY else written + _touch(shapes, node.input)
    for branch in subgraph_work(node):
        work += branch
    return work


def _graph_work(graph, outer: _Shapes | None) -> tuple[float, bool]:
    """(the graph's work, whether every tensor's shape was known)."""
    shapes = _Shapes(graph, outer)
    total, complete = 0.0, True

    def subgraph_work(node):
        nonlocal complete
        from onnx import AttributeProto

        for a in node.attribute:
            graphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs) \
                if a.type == AttributeProto.GRAPHS else []
            for g in graphs:
                work, known = _graph_work(g, shapes)
                complete = complete and known
                yield work

    for node in graph.node:
        total += DISPATCH + _node_work(node, shapes, subgraph_work)
        if not all(shapes.known(o) for o in node.output):
            complete = False
    return total, complete


def _ml_shapes(node, shapes: _Shapes) -> list[list[int]] | None:
    """The output shapes of an ai.onnx.ml operator ONNX's shape inference leaves unknown
    (their specification gives them), or None."""
    x = shapes.dims(node.input[0]) if node.input else None
    if x is None:
        return None
    op = node.op_type
    rows = x[0] if len(x) > 1 else 1
    classes = len(_attr(node, "classlabels_ints") or _attr(node, "classlabels_strings") or []) or 1
    if op in ("Scaler", "Normalizer", "Binarizer", "Imputer", "LabelEncoder", "CategoryMapper"):
        return [x]
    if op == "ArrayFeatureExtractor":
        indices = shapes.dims(node.input[1]) if len(node.input) > 1 else None
        return None if indices is None else [(x[:-1] if len(x) > 1 else [1]) + [_size(indices)]]
    if op == "OneHotEncoder":
        return [x + [len(_attr(node, "cats_int64s") or _attr(node, "cats_strings") or [])]]
    if op in ("LinearClassifier", "SVMClassifier", "TreeEnsembleClassifier"):
        return [[rows], [rows, classes]]
    if op == "LinearRegressor":
        return [[rows, _attr(node, "targets") or 1]]
    if op == "SVMRegressor":
        return [[rows, 1]]
    if op in ("TreeEnsembleRegressor", "TreeEnsemble"):
        return [[rows, _attr(node, "n_targets") or 1]]
    if op == "FeatureVectorizer":
        return [[rows, sum(_attr(node, "inputdimensions") or [])]]
    return None


def _lend_constants(graph, outer: dict) -> None:
    """Give each subgraph (an If's branches) its own copy of the small integer initializers
    of the graphs around it that it uses: ONNX's shape inference reads a shape's values
    from the subgraph's own constants only. The copies get new names (ONNX names are
    unique across a graph and its subgraphs)."""
    from onnx import AttributeProto, TensorProto

    here = dict(outer)
    for t in graph.initializer:
        if t.data_type in (TensorProto.INT64, TensorProto.INT32) and _size(list(t.dims)) <= 64:
            here[t.name] = t
    for node in graph.node:
        for a in node.attribute:
            subgraphs = [a.g] if a.type == AttributeProto.GRAPH else list(a.graphs) \
                if a.type == AttributeProto.GRAPHS else []
            for g in subgraphs:
                own = {t.name for t in g.initializer}
                lent = {}
                for inner in g.node:
                    for i, name in enumerate(inner.input):
                        if name in here and name not in own:
                            if name not in lent:
                                copy = g.initializer.add()
                                copy.CopyFrom(here[name])
                                copy.name = lent[name] = f"{name}__pgmodels_{id(g)}"
                            inner.input[i] = lent[name]
                _lend_constants(g, here)


def _shaped(model, rows: int):
    """The model with its inputs' first extent (and any other unknown one, as 1) fixed, and
    every value's shape inferred: by ONNX's shape inference, and for the ai.onnx.ml
    operators it has no shapes for, by their specification, one round each."""
    import onnx
    from onnx import helper, shape_inference

    shaped = onnx.ModelProto()
    shaped.CopyFrom(model)
    for value in shaped.graph.input:
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        for i, d in enumerate(value.type.tensor_type.shape.dim):
            if not d.HasField("dim_value"):
                d.ClearField("dim_param")
                d.dim_value = rows if i == 0 else 1
            elif i == 0:
                d.dim_value = rows
    del shaped.graph.value_info[:]
    _lend_constants(shaped.graph, {})
    ml = [n for n in shaped.graph.node if n.domain == "ai.onnx.ml"]
    for _ in range(len(ml) + 1):
        shaped = shape_inference.infer_shapes(shaped, check_type=False, strict_mode=False, data_prop=True)
        shapes = _Shapes(shaped.graph)
        added = {}
        for node in ml:
            if all(shapes.known(o) for o in node.output):
                continue
            outputs = _ml_shapes(node, shapes)
            for name, dims in zip(node.output, outputs or []):
                t = shapes.types.get(name)
                if name and not shapes.known(name) and (t is None or t.HasField("tensor_type")):
                    elem = t.tensor_type.elem_type if t is not None and t.tensor_type.elem_type else \
                        onnx.TensorProto.FLOAT
                    added[name] = helper.make_tensor_value_info(name, elem, dims)
        if not added:
            break
        kept = [v for v in shaped.graph.value_info if v.name not in added]
        del shaped.graph.value_info[:]
        shaped.graph.value_info.extend(kept + list(added.values()))
    return shaped


def nodes(graph) -> int:
    """The nodes of a graph and of all its subgraphs."""
    from onnx import AttributeProto

    count = 0
    for node in graph.node:
        count += 1
        for a in node.attribute:
            for g in ([a.g] if a.type == AttributeProto.GRAPH else list(a.graphs)
                      if a.type == AttributeProto.GRAPHS else []):
                count += nodes(g)
    return count


def work_per_row(artifact, limit: int | None = None) -> tuple[float | None, float]:
    """(the work for one row, or None when it depends on the input's values; the work for
    one row as far as it is known), of a model's bytes or its ModelProto. Raises Unbounded,
    and, given a limit, TooLarge for a model with more nodes than it allows, before
    inferring any shape."""
    import onnx

    model = onnx.load_from_string(artifact) if isinstance(artifact, (bytes, bytearray)) else artifact
    if limit is not None:
        count = nodes(model.graph)
        if count * LOAD_PER_NODE > limit:
            raise TooLarge(count)
    works = []
    complete = True
    for rows in ROWS:
        try:
            shaped = _shaped(model, rows)
        except Exception as e:  # noqa: BLE001 - onnx's own errors: the graph's shapes cannot be followed
            raise Unbounded(f"ONNX shape inference fails on it: {str(e).strip().splitlines()[0][:200]}") from None
        work, known = _graph_work(shaped.graph, None)
        works.append(work)
        complete = complete and known
    one, many = works
    if many > ROWS[1] * one * (1 + 1e-9) + 1:
        raise Unbounded(f"its work grows faster than the number of rows ({_short(one)} operations for one row, "
                        f"{_short(many)} for {ROWS[1]})")
    return (one if complete else None), one


def _short(x: float) -> str:
    return f"{x:.3g}"


def check(artifact: bytes, limit: int) -> float | None:
    """The model's work per row, refused over the limit or when it cannot be bounded; None
    when it depends on the input's values (the model is then accepted, always run so that
    a cancel stops it)."""
    try:
        per_row, known = work_per_row(artifact, limit)
    except TooLarge as e:
        count = e.args[0]
        raise PgmodelsError(f"the ONNX model has {count} nodes, more than the limit of "
                            f"{limit // LOAD_PER_NODE} allows",
                            detail=f"Loading a model costs onnxruntime about 0.1 ms per node, in every backend that "
                                   f"serves it, and cannot be interrupted: each node counts as {LOAD_PER_NODE} "
                                   f"operations against the administrator's setting {SETTING}, which is {limit}.",
                            hint=f"Import a smaller model, or ask an administrator to raise {SETTING} "
                                 "(ALTER SYSTEM SET ..., then SELECT pg_reload_conf()).",
                            sqlstate=PROGRAM_LIMIT_EXCEEDED) from None
    except Unbounded as e:
        raise PgmodelsError("the work of the ONNX model cannot be bounded",
                            detail=f"pgmodels estimates a model's work per row from its graph's shapes before "
                                   f"running it, and refuses one it cannot bound: {e}.",
                            hint="Export the model with fixed shapes (static axes but the first), "
                                 "standard operators and no sequence loops.",
                            sqlstate=FEATURE_NOT_SUPPORTED) from None
    if known > limit:
        raise PgmodelsError(f"the ONNX model's work per row, about {_short(known)} operations, exceeds the "
                            f"limit of {limit}",
                            detail=f"pgmodels estimates a model's work per row from its graph's shapes; the "
                                   f"administrator's setting {SETTING} is {limit}.",
                            hint=f"Import a smaller model, or ask an administrator to raise {SETTING} "
                                 "(ALTER SYSTEM SET ..., then SELECT pg_reload_conf()).",
                            sqlstate=PROGRAM_LIMIT_EXCEEDED)
    return per_row
