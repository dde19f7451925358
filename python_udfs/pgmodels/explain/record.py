"""The explainer record: what a model version keeps so that its predictions can be
explained, in a format that loads without running code.

A record is a NumPy ``.npz`` archive (a zip of ``.npy`` arrays of numbers, booleans and
fixed-width text) with its description as JSON in one array of bytes, ``meta``. It is
read with ``allow_pickle=False``, so an array of Python objects, the one ``.npy`` form
that would unpickle, is refused; and it is stored with its sha256, which is checked
before it is read, like the model's artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import numpy as np

FORMAT = 1
KINDS = ("tree", "linear", "sampling")
ALLOWED_DTYPES = "biufU"   # booleans, integers, floats, fixed-width unicode


class Damaged(Exception):
    """The record is not one this module wrote."""


def pack(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    for name, a in arrays.items():
        if np.asarray(a).dtype.kind not in ALLOWED_DTYPES:
            raise ValueError(f"array {name} of dtype {np.asarray(a).dtype} cannot be stored")
    buf = io.BytesIO()
    meta = dict(meta, format=FORMAT)
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                        **{k: np.asarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def unpack(blob: bytes, sha256: bytes | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a record; Damaged if its sha256 differs or it is not a record."""
    blob = bytes(blob)
    if sha256 is not None and hashlib.sha256(blob).digest() != bytes(sha256):
        raise Damaged("The stored bytes differ from the ones the explainer was registered with.")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise Damaged(f"It is not an explainer record ({type(e).__name__}).") from None
    if "meta" not in arrays or any(a.dtype.kind not in ALLOWED_DTYPES for a in arrays.values()):
        raise Damaged("It is not an explainer record.")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, ValueError):
        raise Damaged("Its description is not JSON.") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise Damaged(f"Format {meta.get('format') if isinstance(meta, dict) else None!r} is not one this "
                      "pgmodels reads.")
    return meta, arrays
