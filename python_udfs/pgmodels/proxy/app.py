"""The ASGI application of ``pgmodels serve`` (uvicorn runs ``create_app`` in each worker).

The settings come from the environment (PGMODELS_SERVE_SETTINGS, JSON written by
cli/serve.py), since uvicorn starts its workers as fresh processes. The lifespan opens
the connection pool (it connects in the background, so the server starts even while the
database is down; /v2/health/ready says when it is reachable), starts the worker's gRPC
server, and on shutdown lets both finish what they are doing. In front of the Starlette
app, fast.py answers the infer routes itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from . import bundles, fast, metrics, nul, protocol
from .core import Backend, Settings
from .rest import make_routes

log = logging.getLogger("pgmodels.serve")
SETTINGS_ENV = "PGMODELS_SERVE_SETTINGS"


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = {404: "no such endpoint", 405: "method not allowed"}.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code)


async def _any_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s: %r", request.method, request.url.path, exc)
    return JSONResponse({"error": "internal error in pgmodels serve; see its log"}, status_code=500)


def create_app(settings: Settings | None = None) -> fast.InferFastPath:
    if settings is None:
        settings = Settings.from_json(os.environ[SETTINGS_ENV])
    backend = Backend(settings)
    protocol.HEADER_TIMEOUT = settings.body_timeout

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await backend.open()
        grpc_server = None
        if settings.grpc_port:
            from . import grpc_service

            grpc_server = await grpc_service.start(backend, settings.host, settings.grpc_port,
                                                   settings.max_body_bytes)

        async def pool_gauges():
            while True:
                metrics.update_pool(backend.pool_stats())
                await asyncio.sleep(1)

        gauges = asyncio.create_task(pool_gauges())
        request_log = asyncio.create_task(backend.request_log.run())
        # what the worker imported and built stays for its life: out of the collector's
        # reach, a full collection no longer walks it (30-75 ms pauses once a second
        # were most of the latency tail)
        gc.collect()
        gc.freeze()
        log.info("worker %d ready (gRPC port %s)", os.getpid(), settings.grpc_port or "off")
        try:
            yield
        finally:
            gauges.cancel()
            if grpc_server is not None:
                await grpc_server.stop(grace=5)
            request_log.cancel()  # writes what is left
            with contextlib.suppress(asyncio.CancelledError):
                await request_log
            await backend.close()

    from ..console.routes import routes as console_routes

    # a NUL in a path, query string or header is refused before any route runs (proxy/nul.py)
    app = Starlette(routes=make_routes(backend) + bundles.routes(backend) + console_routes(backend), lifespan=lifespan,
                    middleware=[Middleware(nul.RefuseNul)],
                    exception_handlers={HTTPException: _http_error, Exception: _any_error})
    app.state.backend = backend
    # the infer routes answered in front of it, without its middleware and routing (fast.py)
    return fast.InferFastPath(app, backend)
