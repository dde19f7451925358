"""What an ONNX model may not hold, read from the protobuf wire format: tensors kept
outside the model (external data, which onnxruntime would read from the server's files)
and Loop operators (whose trip count can come from the input, and a running model cannot
be cancelled).

Serving must not import the onnx package (it costs a new backend ~50 ms); onnxruntime
alone cannot be told to refuse external data. So this walks every ONNX message that can
hold a tensor, a node or a graph, straight from the bytes, skipping everything else (raw
tensor data included) without copying it. Field numbers are those of onnx.proto3.
(pgmodels also loads every model from a file in an empty private directory, so a tensor
this walk missed would find no file to read.)
"""

from __future__ import annotations

# message -> {field number: message type of that (length-delimited) field}
_SCHEMA = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},           # TrainingInfoProto: initialization, algorithm
    "function": {7: "node", 11: "attribute"},       # nodes, and default attribute values
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA = 13   # repeated StringStringEntryProto external_data
_TENSOR_DATA_LOCATION = 14   # enum DataLocation { DEFAULT = 0; EXTERNAL = 1; }
_NODE_OP_TYPE = 4
_MODEL_FUNCTIONS = 25
REFUSED_OPS = (b"Loop",)
# for models imported from elsewhere (not converted by pgmodels' own training): operators
# whose work the input decides, and model-local functions, whose inlining can grow
# exponentially when the session is made
REFUSED_IMPORT_OPS = (b"Loop", b"Scan")


class Malformed(ValueError):
    pass


def _varint(data: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise Malformed("truncated varint")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(data: memoryview):
    """(field number, wire type, value): an int for varints, a memoryview for bytes."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        if key >> 32 or key >> 3 == 0:  # protobuf tags are 32-bit: a longer one would be read otherwise
            raise Malformed("invalid field tag")
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        elif wire == 2:
            length, i = _varint(data, i)
            value, i = data[i:i + length], i + length
        else:
            raise Malformed(f"unsupported wire type {wire}")
        if i > len(data):
            raise Malformed("truncated field")
        yield number, wire, value


def problems(artifact: bytes, imported: bool = False) -> tuple[bool, str | None]:
    """(some tensor is external data, the first refused operator or None), in any graph,
    subgraph, function or training graph. Raises Malformed for bytes that are not a
    protobuf message.

    External data names its file under the key "location", and protobuf stores strings
    as they are: bytes without that word (or without a refused operator's name) hold
    nothing this looks for, and are answered by a substring search instead of a walk (a
    tree ensemble's attributes are hundreds of thousands of unpacked fields, a walk of
    tens of milliseconds)."""
    refused_ops = REFUSED_IMPORT_OPS if imported else REFUSED_OPS
    if not imported and b"location" not in artifact and not any(op in artifact for op in refused_ops):
        return False, None  # garbage, if it is, is onnxruntime's to refuse
    external, refused = False, None
    stack = [("model", memoryview(artifact))]
    while stack:
        kind, data = stack.pop()
        children = _SCHEMA[kind]
        for number, wire, value in _fields(data):
            if kind == "tensor":
                if (number == _TENSOR_DATA_LOCATION and wire == 0 and value == 1) or number == _TENSOR_EXTERNAL_DATA:
                    external = True
            elif kind == "node" and number == _NODE_OP_TYPE and wire == 2 and bytes(value) in refused_ops:
                refused = refused or bytes(value).decode()
            elif imported and kind == "model" and number == _MODEL_FUNCTIONS:
                refused = refused or "model-local function"
            elif wire == 2 and number in children:
                stack.append((children[number], value))
    return external, refused


def external_tensor(artifact: bytes) -> bool:
    """True when some tensor of the model is stored as external data."""
    return problems(artifact)[0]
