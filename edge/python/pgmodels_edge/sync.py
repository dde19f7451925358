"""Over-the-air updates: poll the server, verify, swap atomically, keep the last good.

On disk, a device directory holds::

    bundles/<sha256>/   one directory per verified bundle (manifest.json, model.onnx, manifest.sig)
    current             a symbolic link to the bundle in use, replaced atomically
    previous            the link to the one before (kept for a manual rollback)

``sync()`` sends ``If-None-Match`` with the current bundle's sha256; the server answers
304 when the deployed model is the same. A 200's body is verified (signature against the
pinned key, sha256 of the model, that onnxruntime loads it) in a temporary directory
before anything moves; only then does ``current`` switch, with one rename. An
unreachable server or a bundle that fails any check leaves the current bundle serving.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

from . import bundle
from .errors import BundleError, EdgeError
from .model import EdgeModel

KEEP = 2  # bundles kept on disk: current and previous


@dataclass
class SyncResult:
    status: str  # 'updated', 'unchanged', 'offline' (server unreachable) or 'refused' (bad bundle)
    model: EdgeModel | None
    error: str | None = None
    http_status: int | None = None

    def __repr__(self) -> str:
        version = self.model.version if self.model else None
        return f"<SyncResult {self.status} version={version}{' error=' + repr(self.error) if self.error else ''}>"


class Device:
    """A device's model directory, synced from one bundle URL."""

    def __init__(self, directory: str, public_key=None, url: str | None = None, token: str | None = None,
                 timeout: float = 10.0):
        self.directory = os.path.abspath(directory)
        self.public_key = bundle.parse_public_key(public_key)
        self.url, self.token, self.timeout = url, token, timeout
        os.makedirs(os.path.join(self.directory, "bundles"), exist_ok=True)
        self.model: EdgeModel | None = None
        self.last: SyncResult | None = None
        try:
            self.model = self.load_current()
        except EdgeError:
            self.model = None

    # -- the bundle on disk ---------------------------------------------------------
    def _link(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def load_current(self) -> EdgeModel | None:
        """The bundle ``current`` points at, verified again (a file may have changed)."""
        if not os.path.lexists(self._link("current")):
            return None
        return EdgeModel.load(os.path.realpath(self._link("current")), self.public_key)

    def _swap(self, sha: str) -> None:
        target = os.path.join("bundles", sha)
        old = os.readlink(self._link("current")) if os.path.islink(self._link("current")) else None
        for name, to in (("previous", old), ("current", target)):
            if to is None or (name == "previous" and to == target):
                continue
            tmp = self._link(f".{name}.tmp")
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(to, tmp)
            os.replace(tmp, self._link(name))  # atomic on POSIX
        keep = {os.path.basename(os.readlink(self._link(n))) for n in ("current", "previous")
                if os.path.islink(self._link(n))}
        for entry in os.listdir(os.path.join(self.directory, "bundles")):
            if entry not in keep:
                shutil.rmtree(os.path.join(self.directory, "bundles", entry), ignore_errors=True)

    def install(self, data: bytes) -> EdgeModel:
        """A bundle archive, verified and made current; BundleError leaves all as it was."""
        manifest_bytes, signature, model_bytes = bundle.unpack(data)
        manifest = bundle.verify(manifest_bytes, signature, model_bytes, self.public_key)
        model = EdgeModel(manifest, model_bytes)  # onnxruntime must load it too
        sha = manifest["artifact"]["sha256"]
        final = os.path.join(self.directory, "bundles", sha)
        if not os.path.isdir(final):
            tmp = tempfile.mkdtemp(prefix=".incoming-", dir=os.path.join(self.directory, "bundles"))
            try:
                bundle.write_dir(tmp, manifest_bytes, signature, model_bytes)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        model.path = final
        self._swap(sha)
        self.model = model
        return model

    # -- over the air ---------------------------------------------------------------
    def sync(self, url: str | None = None) -> SyncResult:
        url = url or self.url
        if url is None:
            raise EdgeError("no bundle URL to sync from", hint="Pass url to sync() or to Device().")
        headers = {"Accept": "application/zip"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.model is not None:
            headers["If-None-Match"] = f'"{self.model.sha256}"'
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
                length = response.headers.get("Content-Length")
                data = response.read()
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return self._result("unchanged", http_status=304)
            body = e.read()[:300].decode("utf-8", "replace")
            return self._result("refused" if e.code < 500 else "offline", f"HTTP {e.code}: {body}", e.code)
        except http.client.IncompleteRead as e:
            return self._result("refused", f"truncated download: {len(e.partial)} bytes, {e.expected} more expected")
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            return self._result("offline", f"{type(e).__name__}: {e}")
        if length is not None and length.isdigit() and int(length) != len(data):
            return self._result("refused", f"truncated download: {len(data)} of {length} bytes", status)
        try:
            self.install(data)
        except EdgeError as e:
            return self._result("refused", e.message + (f" ({e.detail})" if e.detail else ""), status)
        return self._result("updated", http_status=status)

    def _result(self, status: str, error: str | None = None, http_status: int | None = None) -> SyncResult:
        self.last = SyncResult(status, self.model, error, http_status)
        return self.last


def sync(url: str, directory: str, public_key=None, token: str | None = None, timeout: float = 10.0) -> SyncResult:
    """One poll of ``url`` into ``directory``: the model in use afterwards is result.model
    (the last good one when the server is unreachable or its bundle is refused)."""
    return Device(directory, public_key, url, token, timeout).sync()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
