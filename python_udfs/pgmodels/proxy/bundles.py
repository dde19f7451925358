"""Edge bundles over HTTP: the over-the-air update endpoints of ``pgmodels serve``.

    GET /v2/models/{name}/bundle            the deployed model's signed bundle (zip)
    GET /v2/models/{name}/bundle/manifest   its manifest, signature, model sha256 and etag (JSON)

Both answer with ``ETag: "<sha256 of the bundle's manifest.json>"`` and ``304 Not
Modified`` when ``If-None-Match`` names it. The manifest names the project, the model id
and version, model.onnx's sha256 and the signing key's id, so a new deploy, a rollback, a
new artifact or a rotated key each change the ETag and reach a polling device. Every
request runs as the token's role: the query (pgmodels._edge_current) and export_bundle()
check that role's export privilege on the project, so a token reads only the projects its
role may export (an unknown project and a forbidden one both stop there). Bundles are
cached per worker by (project, model id, served artifact sha256, signing key id,
deployment number), read from the catalog on every request: a key a superuser deleted is
never served from the cache, and two projects serving the same ONNX bytes never share a
manifest. The bundle is the deployed model's (export_bundle without a model id), so its
manifest carries the deployment number devices use to refuse an older bundle replayed;
it is cached under the key its own manifest gives. Equal keys
give equal bundles (the manifest has no timestamps of its own and Ed25519 signs
deterministically), so the cache only saves the build.

A device may name itself: ``?device_id=<id>``. While the project has an active canary
rollout (sql/127_rollouts.sql), the devices whose share of it, sha256('<rollout id>:<device
id>') as every mode hashes a key (pgmodels._rollout_share, rollout_version()), is below the
fraction get the candidate's signed bundle, numbered with the deployment the rollout runs
on; the others, and every device without an id, get the deployed model's. An abort hands
the canary devices the champion's bundle again (same deployment number, which devices
accept), a promote is a new deployment that reaches every device. The cache key is the
one above (the candidate's model id and sha256 tell its bundle apart).

Browsers fetch bundles from other origins (the web app's): the bundle routes answer CORS
preflights and allow any origin. That gives a page nothing its token would not: requests
carry a bearer token, never a cookie, so a page without the token gets 401.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time
import zipfile

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import metrics
from .core import Backend
from .errors import ProxyError

log = logging.getLogger("pgmodels.serve")
_CURRENT = "SELECT * FROM pgmodels._edge_current(%(name)s, pgmodels._credential())"
_EXPORT = ("SELECT coalesce(pgmodels._export_bundle(%(name)s, NULL, NULL, NULL, pgmodels._credential()), "
           "pgmodels._raise_pending(NULL::bytea))")
# a device that names itself (?device_id=): the canary's candidate for the devices in its share
_DEVICE_CURRENT = "SELECT * FROM pgmodels._edge_current(%(name)s, pgmodels._credential(), %(device)s)"
_DEVICE_EXPORT = ("SELECT coalesce(pgmodels._export_device_bundle(%(name)s, %(device)s, pgmodels._credential()), "
                  "pgmodels._raise_pending(NULL::bytea))")
MAX_DEVICE_ID = 200
CACHE_SIZE = 64
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag",
        "Access-Control-Allow-Headers": "Authorization, If-None-Match", "Access-Control-Allow-Methods": "GET",
        "Access-Control-Max-Age": "600"}


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/").strip('"') == etag for t in tags)


def routes(backend: Backend) -> list[Route]:
    # (project, model id, served sha256, key id, deployment) -> bundle
    cache: dict[tuple, tuple[bytes, str, dict]] = {}

    async def current(role: str, name: str, device: str | None) -> tuple[bytes, str, dict]:
        params = {"name": name} if device is None else {"name": name, "device": device}
        rows = await backend.run(role, _CURRENT if device is None else _DEVICE_CURRENT, params)
        model_id, _version, served_sha, key_id, deployment = rows[0]
        hit = cache.get((name, model_id, served_sha, key_id, deployment))
        if hit is None:
            data = bytes((await backend.run(role, _EXPORT if device is None else _DEVICE_EXPORT, params))[0][0])
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                manifest, signature = z.read("manifest.json"), z.read("manifest.sig")
            etag = hashlib.sha256(manifest).hexdigest()
            m = json.loads(manifest)
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            hit = (data, etag, {"manifest": manifest.decode(), "signature": base64.b64encode(signature).decode(),
                                "sha256": m["artifact"]["sha256"]})
            if key_id is not None:  # the first export made the key: the next request reads its id
                # under what the bundle itself says (a deploy between the two queries
                # gives the newer bundle, which is then the current one)
                cache[(name, m["model_id"], m["served_sha256"], m["signed_by"]["key_id"], m.get("deployment"))] = hit
        return hit

    async def serve(request: Request, endpoint: str, render) -> Response:
        name = request.path_params["name"]
        started, status = time.perf_counter(), 200
        try:
            role = await backend.role_for(request.headers.get("authorization"))
            device = request.query_params.get("device_id")
            if device is not None and not (0 < len(device) <= MAX_DEVICE_ID and device.isprintable()):
                raise ProxyError(400, f"\"device_id\" must be 1 to {MAX_DEVICE_ID} printable characters")
            data, etag, parts = await current(role, name, device)
            headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache", **CORS}
            if _matches(request.headers.get("if-none-match"), etag):
                status = 304
                response = Response(status_code=304, headers=headers)
            else:
                response = render(data, etag, parts, headers)
        except ProxyError as e:
            # a model that cannot be bundled (served natively) is a state, not a server fault
            status = 409 if getattr(e, "sqlstate", None) == "0A000" else e.status
            response = JSONResponse(e.body(), status_code=status, headers=CORS)
        except Exception:  # noqa: BLE001 - the edge: log it, answer without a traceback
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            status = 500
            response = JSONResponse({"error": "internal error in pgmodels serve; see its log"}, status_code=500,
                                    headers=CORS)
        metrics.observe(name if status not in (401, 404) and status < 500 else "", endpoint, status, started)
        if status >= 400:
            log.info("%s model=%s status=%d", endpoint, "".join(c if c.isprintable() else "?" for c in name), status)
        return response

    async def bundle(request: Request) -> Response:
        return await serve(request, "bundle", lambda data, etag, parts, headers: Response(
            data, media_type="application/zip", headers={
                **headers, "Content-Disposition": 'attachment; filename="bundle.zip"'}))

    async def manifest(request: Request) -> Response:
        return await serve(request, "bundle_manifest", lambda data, etag, parts, headers: Response(
            json.dumps({**parts, "etag": etag}), media_type="application/json", headers=headers))

    async def preflight(request: Request) -> Response:
        return Response(status_code=204, headers=CORS)

    return [Route("/v2/models/{name}/bundle", bundle, methods=["GET"]),
            Route("/v2/models/{name}/bundle/manifest", manifest, methods=["GET"]),
            Route("/v2/models/{name}/bundle", preflight, methods=["OPTIONS"]),
            Route("/v2/models/{name}/bundle/manifest", preflight, methods=["OPTIONS"])]
