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
MAX_BYTES = 1 << 30          # the largest model.onnx (and download) a device accepts
MAX_MANIFEST = 1 << 20       # manifest.json is a few kilobytes; anything past 1 MB is not one


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


def etag(manifest_bytes: bytes) -> str:
    """What ``pgmodels serve`` answers as the bundle's ETag: the sha256 of manifest.json,
    which names the artifact's sha256, the model id and version, the project and the
    signing key's id, so any change a device must refetch for changes it."""
    return hashlib.sha256(manifest_bytes).hexdigest()


def check_project(manifest: dict, project: str | None) -> None:
    """A bundle of another project is refused: one server key signs every project's bundles."""
    if project is not None and manifest.get("project") != project:
        raise BundleError(f'the bundle is for project "{manifest.get("project")}", not "{project}"',
                          detail="Its signature is valid, but the device expects another project's model.",
                          hint="Sync from the expected project's URL, or pass the right project.")


def check_not_older(manifest: dict, running: dict) -> None:
    """A bundle offered as an update must not be of an older deployment than the running
    one's (deployment numbers rise with every deploy and rollback on the server)."""
    have, offered = running.get("deployment"), manifest.get("deployment")
    if type(have) is int and not (type(offered) is int and offered >= have):
        raise BundleError("the bundle is older than the one this device runs",
                          detail=f"It is of deployment {offered if offered is not None else '(none)'}; the device "
                                 f"runs deployment {have}. An older signed bundle is refused as an update, so that "
                                 "nobody can replay one to take the device back.",
                          hint="Deploy or roll back on the server (a new deployment is numbered higher), or "
                               "install() the bundle by hand to go back on purpose.")


def verify_manifest(manifest_bytes: bytes, signature: bytes, public_key, project: str | None = None) -> dict:
    """The manifest, once its signature, format and project check out (before any model
    byte is looked at); else BundleError."""
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
    artifact = manifest.get("artifact")
    if not isinstance(artifact, dict) or not isinstance(artifact.get("bytes"), int) \
            or not 0 < artifact["bytes"] <= MAX_BYTES or not isinstance(artifact.get("sha256"), str):
        raise BundleError("the bundle's manifest declares no valid artifact size and sha256")
    check_project(manifest, project)
    return manifest


def verify(manifest_bytes: bytes, signature: bytes, model: bytes, public_key, project: str | None = None) -> dict:
    """The manifest, once its signature, project and the model's size and sha256 check out;
    else BundleError."""
    manifest = verify_manifest(manifest_bytes, signature, public_key, project)
    check_model(manifest, model)
    return manifest


def check_model(manifest: dict, model: bytes) -> None:
    if len(model) != manifest["artifact"]["bytes"]:
        raise BundleError("the bundle's model has the wrong size",
                          detail=f"{MODEL} holds {len(model)} bytes, the signed manifest says "
                                 f"{manifest['artifact']['bytes']}.",
                          hint="The download was truncated or the file was changed; fetch the bundle again.")
    want = manifest["artifact"]["sha256"]
    got = hashlib.sha256(model).hexdigest()
    if got != want:
        raise BundleError("the bundle's model fails its sha256 check",
                          detail=f"{MODEL} hashes to {got[:16]}..., the signed manifest says {str(want)[:16]}....",
                          hint="The download was truncated or the file was changed; fetch the bundle again.")


def unpack(data: bytes, public_key=None, project: str | None = None) -> tuple[bytes, bytes, bytes]:
    """(manifest, signature, model) from a bundle archive; BundleError if it is not one.

    Entries must be stored, not compressed (export_bundle() stores them; JS refuses
    compressed ones too), so reading one never inflates anything. With ``public_key``, the
    manifest's signature and project are checked and model.onnx's size compared with the
    size the signed manifest declares before model.onnx is read."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            infos = {i.filename: i for i in z.infolist()}
            missing = [n for n in (MANIFEST, MODEL, SIGNATURE) if n not in infos]
            if missing:
                raise BundleError("the bundle is incomplete", detail="Missing: %s." % ", ".join(missing))
            for name in (MANIFEST, MODEL, SIGNATURE):
                if infos[name].compress_type != zipfile.ZIP_STORED:
                    raise BundleError("the bundle is not a valid archive",
                                      detail=f"Its entry {name} is compressed; bundle entries must be stored.")
            if infos[MANIFEST].file_size > MAX_MANIFEST or infos[SIGNATURE].file_size > 64 \
                    or infos[MODEL].file_size > MAX_BYTES:
                raise BundleError("the bundle is larger than a bundle may be",
                                  detail="manifest.json may hold 1 MB, manifest.sig 64 bytes, model.onnx 1 GB.")
            manifest, signature = z.read(MANIFEST), z.read(SIGNATURE)
            if public_key is not None:
                m = verify_manifest(manifest, signature, public_key, project)
                if infos[MODEL].file_size != m["artifact"]["bytes"]:
                    raise BundleError("the bundle's model has the wrong size",
                                      detail=f"{MODEL} holds {infos[MODEL].file_size} bytes, the signed manifest "
                                             f"says {m['artifact']['bytes']}.",
                                      hint="The download was truncated or the file was changed; fetch it again.")
            return manifest, signature, z.read(MODEL)
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
        raise BundleError("the bundle is not a valid archive", detail=f"{e}.",
                          hint="The download may have been truncated; fetch it again.") from None


def read_dir(path: str) -> tuple[bytes, bytes, bytes]:
    files = []
    for name, limit in ((MANIFEST, MAX_MANIFEST), (SIGNATURE, 64), (MODEL, MAX_BYTES)):
        try:
            with open(os.path.join(path, name), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise BundleError(f"{path} is not a bundle", detail=f"It has no {name}.") from None
        except OSError as e:
            raise BundleError(f"{path} cannot be read", detail=f"{e.strerror or e}.") from None
        if len(data) > limit:
            raise BundleError(f"{path} is not a bundle", detail=f"Its {name} is larger than a bundle's may be.")
        files.append(data)
    return files[0], files[1], files[2]


def write_dir(path: str, manifest: bytes, signature: bytes, model: bytes) -> None:
    """The three files into path (created), each written and flushed to disk."""
    os.makedirs(path, exist_ok=True)
    for name, data in ((MANIFEST, manifest), (SIGNATURE, signature), (MODEL, model)):
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
