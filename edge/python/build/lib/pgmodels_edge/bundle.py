"""Reading and verifying a bundle: manifest.json, model.onnx and manifest.sig.

A bundle travels as a zip archive of those three files (export_bundle(), the server's
GET .../bundle) and rests on a device as a directory of them. manifest.sig is the raw
64-byte Ed25519 signature of manifest.json's exact bytes; the manifest holds the sha256
of model.onnx. So one signature check and one hash prove the pair came from the server
that holds the private key whose public key the device pinned.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile

from . import ed25519
from .errors import BundleError, EdgeError

FORMAT = "pgmodels-edge-bundle/1"
MANIFEST, MODEL, SIGNATURE = "manifest.json", "model.onnx", "manifest.sig"
MAX_BYTES = 1 << 30


def parse_public_key(key) -> bytes:
    """A pinned public key: 32 raw bytes, or their 64 hex digits (optionally 'ed25519:...')."""
    if key is None:
        key = os.environ.get("PGMODELS_EDGE_PUBLIC_KEY")
    if key is None:
        raise EdgeError("no public key is pinned", detail="A bundle is used only once its signature is verified.",
                        hint="Pass public_key (SELECT edge_public_key(), or pgmodels edge public-key), "
                             "or set PGMODELS_EDGE_PUBLIC_KEY.", sqlstate="28000")
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        return bytes(key)
    text = key.decode() if isinstance(key, (bytes, bytearray)) else str(key)
    text = text.strip()
    if text.startswith("ed25519:"):
        text = text[len("ed25519:"):]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise EdgeError("the public key must be 64 hexadecimal digits", sqlstate="22023")
    return raw


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def verify(manifest_bytes: bytes, signature: bytes, model: bytes, public_key) -> dict:
    """The manifest, once its signature and the model's sha256 check out; else BundleError."""
    public = parse_public_key(public_key)
    if len(signature) != 64:
        raise BundleError("the bundle is not signed", detail=f"{SIGNATURE} holds {len(signature)} bytes, not 64.")
    if not ed25519.verify(public, manifest_bytes, signature):
        raise BundleError("the bundle's signature does not verify",
                          detail=f"It was not signed by the key {key_id(public)} this device pins, or its "
                                 "manifest was changed after signing.",
                          hint="Export it again from the server whose public key is pinned.")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise BundleError("the bundle's manifest is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError("the bundle's manifest is not a pgmodels edge manifest",
                          detail=f"Its format is {manifest.get('format') if isinstance(manifest, dict) else None!r}, "
                                 f"not {FORMAT!r}.")
    want = manifest.get("artifact", {}).get("sha256")
    got = hashlib.sha256(model).hexdigest()
    if got != want:
        raise BundleError("the bundle's model fails its sha256 check",
                          detail=f"{MODEL} hashes to {got[:16]}..., the signed manifest says {str(want)[:16]}....",
                          hint="The download was truncated or the file was changed; fetch the bundle again.")
    return manifest


def unpack(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(manifest, signature, model) from a bundle archive; BundleError if it is not one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = set(z.namelist())
            missing = [n for n in (MANIFEST, MODEL, SIGNATURE) if n not in names]
            if missing:
                raise BundleError("the bundle is incomplete", detail="Missing: %s." % ", ".join(missing))
            if sum(i.file_size for i in z.infolist()) > MAX_BYTES:
                raise BundleError("the bundle is larger than 1 GB")
            return z.read(MANIFEST), z.read(SIGNATURE), z.read(MODEL)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise BundleError("the bundle is not a valid archive", detail=f"{e}.",
                          hint="The download may have been truncated; fetch it again.") from None


def read_dir(path: str) -> tuple[bytes, bytes, bytes]:
    files = []
    for name in (MANIFEST, SIGNATURE, MODEL):
        try:
            with open(os.path.join(path, name), "rb") as f:
                files.append(f.read())
        except FileNotFoundError:
            raise BundleError(f"{path} is not a bundle", detail=f"It has no {name}.") from None
    return files[0], files[1], files[2]


def write_dir(path: str, manifest: bytes, signature: bytes, model: bytes) -> None:
    """The three files into path (created), each written and flushed to disk."""
    os.makedirs(path, exist_ok=True)
    for name, data in ((MANIFEST, manifest), (SIGNATURE, signature), (MODEL, model)):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
