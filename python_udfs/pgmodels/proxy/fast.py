"""The infer route without the framework: a thin ASGI layer in front of the Starlette app.

``POST /v2/models/{name}/infer`` and ``POST /v2/models/{name}/versions/{version}/infer``
are nearly every request the server gets, and Starlette's middleware, routing, Request
and Response objects cost a worker about as much Python as the rest of such a request's
own work. Here those two routes are matched on the path and answered straight from the
ASGI scope, by the same function as Starlette's route (rest.infer), with the same status,
body and headers. Everything else goes to the Starlette app, and so does an infer request
whose path, query string or headers hold a NUL, for proxy/nul.py's middleware to refuse
there as it refuses every request.
"""

from __future__ import annotations

import logging

from . import nul, rest
from .core import Backend

log = logging.getLogger("pgmodels.serve")
_PREFIX = "/v2/models/"
_ERROR = rest.render({"error": "internal error in pgmodels serve; see its log"})
_HEADERS = (b"content-length", b"content-type", b"authorization", b"inference-header-content-length")


class _Headers(dict):
    """The request headers the infer route reads: the first of each, decoded as Starlette does."""

    def __init__(self, raw):
        super().__init__()
        for name, value in raw:
            if name in _HEADERS:
                self.setdefault(name.decode("latin-1"), value.decode("latin-1"))


def route(path: str) -> tuple[str, str | None] | None:
    """(name, version) when path is one of the two infer routes (Starlette's ``{name}``
    is one non-empty path segment), else None."""
    if not path.startswith(_PREFIX) or not path.endswith("/infer"):
        return None
    parts = path[len(_PREFIX):-len("/infer")].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[0] and parts[1] == "versions" and parts[2]:
        return parts[0], parts[2]
    return None


class InferFastPath:
    """ASGI: the infer routes here, every other request (and the lifespan) to app."""

    def __init__(self, app, backend: Backend):
        self.app, self.backend = app, backend

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            found = route(scope["path"])
            if found is not None and nul.in_http(scope) is None:
                return await self._infer(scope, receive, send, *found)
        return await self.app(scope, receive, send)

    async def _infer(self, scope, receive, send, name: str, version: str | None) -> None:
        where = f"POST {scope['path']}"
        try:
            status, body, extra = await rest.infer(self.backend, name, version, _Headers(scope["headers"]), receive,
                                                   where)
            data = rest.render(body)
        except Exception as e:  # noqa: BLE001 - as the Starlette app's handler answers it (app.py)
            log.error("unexpected error on %s: %r", where, e)
            status, data, extra = 500, _ERROR, None
        headers = [(b"content-length", b"%d" % len(data)), (b"content-type", b"application/json")]
        if extra:
            headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
