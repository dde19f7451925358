"""Open Inference Protocol tensors: requests in (REST JSON, the binary extension, gRPC)
and answers out, as plain Python; nothing here talks to the database.

A request's inputs are either one tensor of shape [batch, n_features] (any name but a
feature's or ``key``), or one tensor per feature, named after it, of shape [batch] (or
[batch, 1]); text features come as BYTES. A ``key`` input (or ``"parameters": {"keys":
[...]}``) asks for the features stored under those keys (see core.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from . import nul
from .errors import ProxyError, bad_request

DTYPES = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
          "FP32": np.float32, "FP64": np.float64}
MAX_ELEMENTS = 1_000_000


@dataclass
class Tensor:
    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list  # flat: numbers as an ndarray, BYTES as a list of str


@dataclass
class InferRequest:
    model: str
    version: str | None
    id: str | None = None
    inputs: list[Tensor] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    outputs: list[str] | None = None  # the names asked for, None for all


@dataclass
class InferAnswer:
    model: str
    version: int
    id: str | None
    outputs: list[tuple[str, str, list[int], list]]  # name, datatype, shape, flat data
    parameters: dict = field(default_factory=dict)  # an output's name -> its parameters (contributions);
    # None -> the response's own parameters (model_versions: each row's, when a canary split the request)


def _count(shape) -> int:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise bad_request("tensor shape must be a list of non-negative integers")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise ProxyError(413, f"tensor of {n} elements is larger than the limit of {MAX_ELEMENTS}")
    return n


def _flatten(data) -> list:
    out, stack = [], [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def make_tensor(name: str, datatype: str, shape, values) -> Tensor:
    """A tensor from decoded values: numbers (any nesting) or, for BYTES, strings."""
    if not isinstance(name, str) or not name:
        raise bad_request("every input needs a name")
    n = _count(shape)
    if datatype == "BYTES":
        flat = _flatten(values) if isinstance(values, list) else [values]
        texts = []
        for v in flat:
            if isinstance(v, (bytes, bytearray)):
                try:
                    v = bytes(v).decode()
                except UnicodeDecodeError:
                    raise bad_request(f"input \"{name}\": BYTES elements must be UTF-8 text") from None
            if not isinstance(v, str):
                raise bad_request(f"input \"{name}\": BYTES elements must be strings")
            if "\x00" in v:  # PostgreSQL's text cannot hold it
                raise bad_request(f"input \"{printable(name)}\": a BYTES element contains a NUL character")
            texts.append(v)
        data = texts
    elif datatype in DTYPES:
        if isinstance(values, np.ndarray):
            array = values.reshape(-1)
        else:
            flat = _flatten(values) if isinstance(values, list) else [values]
            if datatype == "BOOL":
                if not all(isinstance(v, bool) for v in flat):
                    raise bad_request(f"input \"{name}\": BOOL elements must be true or false")
            elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat):
                raise bad_request(f"input \"{name}\": {datatype} elements must be numbers")
            try:
                if datatype == "FP32" and flat and max(abs(v) for v in flat) > 3.4028234663852886e38:
                    raise OverflowError
                array = np.asarray(flat, dtype=DTYPES[datatype])
            except (OverflowError, ValueError):
                raise bad_request(f"input \"{name}\": a value does not fit {datatype}") from None
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise bad_request(f"input \"{name}\": NaN and infinite values are not features")
        data = array
    elif datatype == "FP16" or datatype == "BF16":
        raise bad_request(f"input \"{name}\": datatype {datatype} is not supported; use FP32 or FP64")
    else:
        raise bad_request(f"input \"{name}\": unknown datatype \"{datatype}\"")
    if len(data) != n:
        raise bad_request(f"input \"{name}\": shape {shape} needs {n} elements, the data has {len(data)}")
    return Tensor(name, datatype, list(shape), data)


def _raw_tensor(name: str, datatype: str, shape, raw: bytes) -> Tensor:
    """A tensor from raw little-endian bytes (the binary extension, gRPC raw contents)."""
    if datatype == "BYTES":
        items, pos = [], 0
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise bad_request(f"input \"{name}\": truncated BYTES element")
            size = int.from_bytes(raw[pos:pos + 4], "little")
            items.append(raw[pos + 4:pos + 4 + size])
            pos += 4 + size
            if pos > len(raw):
                raise bad_request(f"input \"{name}\": truncated BYTES element")
        return make_tensor(name, datatype, shape, items)
    if datatype not in DTYPES:
        return make_tensor(name, datatype, shape, [])  # raises the datatype's error
    dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise bad_request(f"input \"{name}\": {len(raw)} bytes are not a whole number of {datatype} elements")
    return make_tensor(name, datatype, shape, np.frombuffer(raw, dtype=dtype))


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{where} parameters must be an object")
    return value


def decode_rest(model: str, version: str | None, body: bytes, header_length: int | None) -> InferRequest:
    """A REST infer request: JSON, or JSON followed by binary tensors (Triton's binary
    extension, which tritonclient.http uses by default)."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise bad_request("Inference-Header-Content-Length is larger than the body")
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        doc = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise bad_request(f"malformed JSON: {e}") from None
    except RecursionError:
        raise bad_request("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise bad_request("the request must be a JSON object")
    # a NUL in any string (a name, a datatype, the id, a parameter, a key, BYTES data) can
    # only be spelled \u0000 (or come in UTF-16 or UTF-32, whose bytes hold zeros): only
    # then is the document walked
    if (b"\\u0000" in head or b"\x00" in head) and nul.in_json(doc):
        raise bad_request(nul.message("JSON"))
    req = InferRequest(model, version, _request_id(doc.get("id")), parameters=_parameters(doc.get("parameters"), "request"))
    inputs = doc.get("inputs", [] if "keys" in req.parameters else None)
    if not isinstance(inputs, list) or not (inputs or "keys" in req.parameters):
        raise bad_request("the request needs \"inputs\": a list of tensors")
    pos = 0
    for item in inputs:
        if not isinstance(item, dict):
            raise bad_request("each input must be an object with name, datatype, shape and data")
        name, datatype, shape = item.get("name"), item.get("datatype"), item.get("shape")
        if not isinstance(datatype, str):
            raise bad_request(f"input \"{name}\" needs a datatype")
        size = _parameters(item.get("parameters"), f"input \"{name}\"").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise bad_request(f"input \"{name}\": binary_data_size does not match the binary data")
            req.inputs.append(_raw_tensor(name, datatype, shape, bytes(binary[pos:pos + size])))
            pos += size
        elif "data" not in item:
            raise bad_request(f"input \"{name}\" has no data")
        else:
            req.inputs.append(make_tensor(name, datatype, shape, item["data"]))
    outputs = doc.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    for o in outputs):
            raise bad_request("\"outputs\" must be a list of objects with a name")
        req.outputs = [o["name"] for o in outputs]
    return req


def _request_id(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise bad_request("\"id\" must be a string of at most 256 characters")
    return value


def encode_rest(answer: InferAnswer) -> dict:
    body = {"model_name": answer.model, "model_version": str(answer.version),
            "outputs": [{"name": n, "datatype": t, "shape": s, "data": d,
                         **({"parameters": answer.parameters[n]} if n in answer.parameters else {})}
                        for n, t, s, d in answer.outputs]}
    if answer.id is not None:
        body["id"] = answer.id
    if None in answer.parameters:
        body["parameters"] = answer.parameters[None]
    return body


_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def decode_grpc(msg) -> InferRequest:
    """A gRPC ModelInferRequest: typed contents or raw_input_contents."""
    req = InferRequest(msg.model_name, msg.model_version or None, _request_id(msg.id or None),
                       parameters={k: _grpc_param(v) for k, v in msg.parameters.items()})
    raw = list(msg.raw_input_contents)
    if raw and len(raw) != len(msg.inputs):
        raise bad_request("raw_input_contents must hold one entry per input")
    if not msg.inputs and "keys" not in req.parameters:
        raise bad_request("the request needs inputs")
    for i, t in enumerate(msg.inputs):
        if raw:
            req.inputs.append(_raw_tensor(t.name, t.datatype, list(t.shape), raw[i]))
        else:
            attr = _CONTENTS.get(t.datatype)
            values = list(getattr(t.contents, attr)) if attr else []
            req.inputs.append(make_tensor(t.name, t.datatype, list(t.shape), values))
    if msg.outputs:
        req.outputs = [o.name for o in msg.outputs]
    return req


def _grpc_param(p):
    kind = p.WhichOneof("parameter_choice")
    return getattr(p, kind) if kind else None


def encode_grpc(answer: InferAnswer, pb):
    """A ModelInferResponse with raw_output_contents, which tritonclient reads."""
    resp = pb.ModelInferResponse(model_name=answer.model, model_version=str(answer.version), id=answer.id or "")
    for key, value in answer.parameters.get(None, {}).items():
        resp.parameters[key].string_param = value if isinstance(value, str) else json.dumps(value)
    for name, datatype, shape, data in answer.outputs:
        tensor = resp.outputs.add(name=name, datatype=datatype, shape=shape)
        for key, value in answer.parameters.get(name, {}).items():  # gRPC parameters are scalars: lists as JSON
            tensor.parameters[key].string_param = value if isinstance(value, str) else json.dumps(value)
        if datatype == "BYTES":
            encoded = [str(v).encode() for v in data]
            resp.raw_output_contents.append(b"".join(len(e).to_bytes(4, "little") + e for e in encoded))
        else:
            resp.raw_output_contents.append(np.asarray(data, dtype=DTYPES[datatype]).astype(
                np.dtype(DTYPES[datatype]).newbyteorder("<")).tobytes())
    return resp
