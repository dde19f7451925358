"""The Open Inference Protocol v2 over REST: small view functions over core.Backend.

Every answer that is not a success is ``{"error": "..."}`` with the status of
errors.py's table; every request is counted in metrics.py and logged, infer requests with
the model version that answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import __version__
from . import metrics
from .core import Backend
from .errors import ProxyError, bad_request
from .openapi import openapi
from .tensors import decode_rest, encode_rest

log = logging.getLogger("pgmodels.serve")
EXTENSIONS = ["binary_tensor_data", "features_by_key"]


def printable(text: str | None) -> str:
    """A name from a request, safe in a log line."""
    return "".join(c if c.isprintable() else "?" for c in text) if text else "-"


def render(body) -> bytes:
    """A JSON body as every answer here writes it."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


class _JSON(JSONResponse):
    def render(self, content) -> bytes:
        return render(content)


async def read_body(receive, length: str | None, limit: int, timeout: float) -> bytes:
    """A request's body from the ASGI receive channel: 413 beyond limit bytes (by its
    Content-Length, or as it arrives), 408 when it takes longer than timeout seconds."""
    if length is not None:
        if not length.isdigit():
            raise bad_request("bad Content-Length")
        if int(length) > limit:
            raise ProxyError(413, f"request body of {length} bytes is larger than the limit of {limit}")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect: the client went away
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise ProxyError(413, f"request body is larger than the limit of {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise ProxyError(408, f"the request body did not arrive within {timeout:g} seconds") from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def answer(backend: Backend, endpoint: str, model: str, work, authorization: str | None, where: str
                 ) -> tuple[int, object, dict | None]:
    """Run work(role) for a request (the role from its Authorization header, except for
    the health and server endpoints) and count and log it: its status, JSON body and extra
    headers. where names the request in a log line ("POST /v2/...")."""
    started = time.perf_counter()
    rows, version, role = 0, None, None
    try:
        if endpoint not in ("live", "ready", "server"):
            role = await backend.role_for(authorization)
        status, body, rows, version = 200, *(await work(role))
    except ProxyError as e:
        status, body = e.status, e.body()
    except Exception:  # noqa: BLE001 - the edge: log it, answer without a traceback
        log.exception("unexpected error on %s", where)
        status, body = 500, {"error": "internal error in pgmodels serve; see its log"}
    # a model label only for a model that exists (each request looks it up before
    # anything else can fail), so that made-up names cannot grow the metrics
    label = model if status not in (401, 404) and status < 500 else ""
    metrics.observe(label, endpoint, status, started, rows)
    if (endpoint == "infer" or status >= 400) and log.isEnabledFor(logging.INFO):
        log.info("%s model=%s version=%s rows=%d status=%d role=%s ms=%.2f id=%s%s", endpoint, printable(model),
                 version or "-", rows, status, role or "-", (time.perf_counter() - started) * 1000,
                 printable(body.get("id") if isinstance(body, dict) else None),
                 f" error={body['error']!r}" if status >= 400 and isinstance(body, dict) else "")
    # the rest of a body that was too slow or too large is still on its way: the
    # connection cannot carry another request, so it is closed after the answer
    return status, body, ({"connection": "close"} if status in (408, 413) else None)


async def infer(backend: Backend, name: str, version: str | None, headers, receive, where: str
                ) -> tuple[int, object, dict | None]:
    """POST /v2/models/{name}[/versions/{version}]/infer; headers.get(name) reads a
    request header (lower case). Starlette's route and fast.py's both answer with it."""
    s = backend.s

    async def work(role):
        (await backend.model(role, name)).version(version)  # 401/403/404 before the body is read
        body = await read_body(receive, headers.get("content-length"), s.max_body_bytes, s.body_timeout)
        header = headers.get("inference-header-content-length")
        if header is not None and not header.isdigit():
            raise bad_request("bad Inference-Header-Content-Length")
        req = decode_rest(name, version, body, int(header) if header is not None else None)
        result = await backend.infer(role, req)
        return encode_rest(result), result.outputs[0][2][0] if result.outputs else 0, result.version
    return await answer(backend, "infer", name, work, headers.get("authorization"), where)


def make_routes(backend: Backend) -> list[Route]:

    async def respond(request: Request, endpoint: str, model: str, work) -> Response:
        status, body, headers = await answer(backend, endpoint, model, work, request.headers.get("authorization"),
                                             f"{request.method} {request.url.path}")
        return _JSON(body, status_code=status, headers=headers)

    async def live(request: Request) -> Response:
        async def work(role):
            return {"live": True}, 0, None
        return await respond(request, "live", "", work)

    async def ready(request: Request) -> Response:
        async def work(role):
            if not await backend.ready():
                raise ProxyError(503, "database unavailable")
            return {"ready": True}, 0, None
        return await respond(request, "ready", "", work)

    async def server(request: Request) -> Response:
        async def work(role):
            return {"name": "pgmodels", "version": __version__, "extensions": EXTENSIONS}, 0, None
        return await respond(request, "server", "", work)

    async def model_metadata(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")

        async def work(role):
            return await backend.metadata(role, name, version), 0, version
        return await respond(request, "metadata", name, work)

    async def model_ready(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")

        async def work(role):
            await backend.model_ready(role, name, version)
            return {"name": name, "ready": True}, 0, version
        return await respond(request, "model_ready", name, work)

    async def infer_view(request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        status, body, headers = await infer(backend, name, version, request.headers, request.receive,
                                            f"{request.method} {request.url.path}")
        return _JSON(body, status_code=status, headers=headers)

    async def metrics_view(request: Request) -> Response:
        metrics.update_pool(backend.pool_stats())
        data, content_type = metrics.exposition()
        return Response(data, media_type=content_type)

    async def openapi_view(request: Request) -> Response:
        return _JSON(openapi())

    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", model_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", infer_view, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer_view, methods=["POST"]),
        Route("/metrics", metrics_view, methods=["GET"]),
        Route("/openapi.json", openapi_view, methods=["GET"]),
    ]
