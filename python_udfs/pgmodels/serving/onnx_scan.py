"""Does an ONNX model keep any tensor outside itself? Read from the protobuf wire format.

Serving must not import the onnx package (it costs a new backend ~50 ms); onnxruntime
alone cannot be told to refuse external data. So this walks the few ONNX messages that
can hold tensors, straight from the bytes, skipping everything else (raw tensor data
included) without copying it. Field numbers are those of onnx.proto3.
"""

from __future__ import annotations

# message -> {field number: message type of that (length-delimited) field}
_SCHEMA = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA = 13   # repeated StringStringEntryProto external_data
_TENSOR_DATA_LOCATION = 14   # enum DataLocation { DEFAULT = 0; EXTERNAL = 1; }


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


def external_tensor(artifact: bytes) -> bool:
    """True when some tensor of the model (in any graph, subgraph or function) is stored
    as external data. Raises Malformed for bytes that are not a protobuf message.

    External data names its file under the key "location", and protobuf stores strings
    as they are: bytes without that word hold no file name onnxruntime could open, and
    are answered by one substring search instead of a walk (a tree ensemble's attributes
    are hundreds of thousands of unpacked fields, a walk of tens of milliseconds)."""
    if b"location" not in artifact:
        return False  # garbage, if it is, is onnxruntime's to refuse
    stack = [("model", memoryview(artifact))]
    while stack:
        kind, data = stack.pop()
        children = _SCHEMA[kind]
        for number, wire, value in _fields(data):
            if kind == "tensor":
                if (number == _TENSOR_DATA_LOCATION and wire == 0 and value == 1) or number == _TENSOR_EXTERNAL_DATA:
                    return True
            elif wire == 2 and number in children:
                stack.append((children[number], value))
    return False
