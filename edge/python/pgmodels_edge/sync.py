"""Over-the-air updates: poll the server, verify, swap atomically, keep the last good.

On disk, a device directory holds::

    bundles/<sha256>/   one directory per verified bundle (manifest.json, model.onnx, manifest.sig)
    current             a symbolic link to the bundle in use, replaced atomically
    previous            the link to the one before (used when current fails verification)
    .lock               held (fcntl) while a bundle is installed, so syncs in parallel agree

``sync()`` sends ``If-None-Match`` with the current bundle's ETag (the sha256 of its
manifest.json); the server answers 304 when the deployed model, its artifact and the
signing key are the same. A 200's body (at most ``max_bytes``) is verified (signature
against the pinned key, the project the device expects, size and sha256 of the model,
that onnxruntime loads it) before anything moves; only then does ``current`` switch, with
one rename. An unreachable server or a bundle that fails any check leaves the current
bundle serving.

A signature alone does not prove that a bundle is the newest, so the deployed model's
bundle carries the server's deployment number (in the signed manifest), which every
deploy and every rollback raises. ``sync()`` refuses a bundle whose number is lower than
the one the device runs, or that has none when the device's has one: an older signed
bundle replayed by someone on the network cannot take a device back. (A database rebuilt
from scratch numbers deployments from 1 again: install its first bundle by hand, with
``install()``, which takes any verified bundle.)
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from . import bundle
from .errors import EdgeError
from .model import EdgeModel

KEEP = 2  # bundles kept on disk: current and previous
_BUNDLE_PATH = re.compile(r"/v2/models/([^/]+)/bundle/?$")


def project_from_url(url: str | None) -> str | None:
    """The project a pgmodels serve bundle URL names (/v2/models/{name}/bundle), or None."""
    if not url:
        return None
    m = _BUNDLE_PATH.search(urllib.parse.urlsplit(url).path)
    return urllib.parse.unquote(m.group(1)) if m else None


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, sending the bearer token again only to the same origin."""

    def __init__(self, token: str | None):
        self.token = token

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.token and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", f"Bearer {self.token}")
        return new


def _origin(url: str) -> tuple:
    u = urllib.parse.urlsplit(url)
    return u.scheme.lower(), (u.hostname or "").lower(), u.port or {"http": 80, "https": 443}.get(u.scheme.lower())


@dataclass
class SyncResult:
    status: str  # 'updated', 'unchanged', 'offline' (server unreachable), 'refused' (bad bundle), 'error' (disk)
    model: EdgeModel | None
    error: str | None = None
    http_status: int | None = None

    def __repr__(self) -> str:
        version = self.model.version if self.model else None
        return f"<SyncResult {self.status} version={version}{' error=' + repr(self.error) if self.error else ''}>"


class Device:
    """A device's model directory, synced from one bundle URL."""

    def __init__(self, directory: str, public_key=None, url: str | None = None, token: str | None = None,
                 timeout: float = 10.0, project: str | None = None, max_bytes: int = bundle.MAX_BYTES,
                 device_id: str | None = None):
        self.directory = os.path.abspath(directory)
        # sent as ?device_id=: while the project runs a canary rollout, pgmodels serve hands
        # the candidate's bundle to the devices in its share (by this id)
        self.device_id = device_id
        self.public_key = bundle.parse_public_key(public_key)
        self.url, self.token, self.timeout, self.max_bytes = url, token, timeout, max_bytes
        # the project this device runs: given, or named by the bundle URL's path
        self.project = project if project is not None else project_from_url(url)
        try:
            os.makedirs(os.path.join(self.directory, "bundles"), exist_ok=True)
        except OSError as e:
            raise EdgeError(f"cannot use {self.directory} as the device's model directory",
                            detail=f"{e.strerror or e}.") from None
        self.model: EdgeModel | None = None
        self.last: SyncResult | None = None
        self.model = self.load_current()

    # -- the bundle on disk ---------------------------------------------------------
    def _link(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def load_current(self) -> EdgeModel | None:
        """The bundle ``current`` points at, verified again (a file may have changed); when
        it fails, the ``previous`` one (verified too); None when neither verifies."""
        for name in ("current", "previous"):
            if not os.path.lexists(self._link(name)):
                continue
            try:
                model = EdgeModel.load(os.path.realpath(self._link(name)), self.public_key, self.project)
            except EdgeError:
                continue
            if self.project is None:
                self.project = model.project
            return model
        return None

    def _current_manifest(self) -> dict | None:
        """The manifest of the bundle ``current`` points at (verified when installed), or None."""
        try:
            with open(os.path.join(os.path.realpath(self._link("current")), bundle.MANIFEST), "rb") as f:
                return json.loads(f.read(bundle.MAX_MANIFEST))
        except (OSError, ValueError):
            return None

    def _locked(self):
        """An exclusive lock on the directory (held until the returned file is closed)."""
        f = open(os.path.join(self.directory, ".lock"), "a+b")
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        return f

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

    def install(self, data: bytes, newer_only: bool = False) -> EdgeModel:
        """A bundle archive, verified and made current; BundleError leaves all as it was.
        With newer_only (as sync() does), a bundle of an older deployment than the one in
        use is refused too."""
        if self.project is None:
            raise EdgeError("the device does not know which project it runs",
                            detail="One server key signs every project's bundles, so a device checks the project.",
                            hint="Pass project= to Device() (or sync from a /v2/models/{name}/bundle URL).")
        manifest_bytes, signature, model_bytes = bundle.unpack(data, self.public_key, self.project)
        manifest = bundle.verify(manifest_bytes, signature, model_bytes, self.public_key, self.project)
        etag = bundle.etag(manifest_bytes)
        model = EdgeModel(manifest, model_bytes, etag=etag)  # onnxruntime must load it too
        final = os.path.join(self.directory, "bundles", etag)
        with self._locked():
            if newer_only:  # against what is current on disk now (another sync may have moved it)
                running = self._current_manifest()
                if running is None and self.model is not None:
                    running = self.model.manifest
                if running is not None:
                    bundle.check_not_older(manifest, running)
            if not os.path.isdir(final):
                tmp = tempfile.mkdtemp(prefix=".incoming-", dir=os.path.join(self.directory, "bundles"))
                try:
                    bundle.write_dir(tmp, manifest_bytes, signature, model_bytes)
                    os.replace(tmp, final)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
            model.path = final
            self._swap(etag)
        self.model = model
        return model

    # -- over the air ---------------------------------------------------------------
    def sync(self, url: str | None = None) -> SyncResult:
        url = url or self.url
        if url is None:
            raise EdgeError("no bundle URL to sync from", hint="Pass url to sync() or to Device().")
        if self.project is None:
            self.project = project_from_url(url)
        if self.project is None:
            raise EdgeError("sync needs the project this device runs",
                            detail=f"The URL {url} does not name one (/v2/models/{{name}}/bundle).",
                            hint="Pass project= to Device(), or --project on the command line.")
        if self.device_id is not None:
            url += ("&" if urllib.parse.urlsplit(url).query else "?") + urllib.parse.urlencode(
                {"device_id": self.device_id})
        headers = {"Accept": "application/zip"}
        if self.model is not None and self.model.etag:
            headers["If-None-Match"] = f'"{self.model.etag}"'
        request = urllib.request.Request(url, headers=headers)
        if self.token:  # not copied onto redirects; _Redirects adds it back for the same origin only
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        opener = urllib.request.build_opener(_Redirects(self.token))
        try:
            with opener.open(request, timeout=self.timeout) as response:
                status = response.status
                length = response.headers.get("Content-Length")
                if length is not None and length.isdigit() and int(length) > self.max_bytes:
                    return self._result("refused", f"the bundle is larger than {self.max_bytes} bytes "
                                                   f"(Content-Length {length})", status)
                data = response.read(self.max_bytes + 1)
                if len(data) > self.max_bytes:
                    return self._result("refused", f"the bundle is larger than {self.max_bytes} bytes", status)
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
            self.install(data, newer_only=True)
        except EdgeError as e:
            return self._result("refused", e.message + (f" ({e.detail})" if e.detail else ""), status)
        except OSError as e:  # the directory: full disk, permissions, removed underneath
            return self._result("error", f"cannot install the bundle in {self.directory}: {e.strerror or e}", status)
        return self._result("updated", http_status=status)

    def _result(self, status: str, error: str | None = None, http_status: int | None = None) -> SyncResult:
        self.last = SyncResult(status, self.model, error, http_status)
        return self.last


def sync(url: str, directory: str, public_key=None, token: str | None = None, timeout: float = 10.0,
         project: str | None = None) -> SyncResult:
    """One poll of ``url`` into ``directory``: the model in use afterwards is result.model
    (the last good one when the server is unreachable or its bundle is refused). The
    project is ``project`` or the one the URL names; a bundle of another is refused."""
    return Device(directory, public_key, url, token, timeout, project).sync()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
