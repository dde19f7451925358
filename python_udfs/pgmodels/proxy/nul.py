"""Requests that carry a NUL character are refused where they enter the server.

PostgreSQL's text cannot hold U+0000, so no project, version, token, key, input name or
text feature has one; a request that carries one would fail only when the value reached
the database as a parameter (psycopg: "PostgreSQL text fields cannot contain NUL"), a 500.
It is the client's mistake: 400 with the Open Inference Protocol's error body (the
console's error page under /console), or INVALID_ARGUMENT over gRPC, before any route or
method runs. What is checked here, once per request:

- HTTP (``RefuseNul``, ASGI middleware around every route): the decoded path, the decoded
  query string, every header value, and the cookies as the console decodes them (a
  quoted cookie value may spell NUL as an octal escape).
- gRPC (``GrpcRefuseNul``, a server interceptor around every method): the metadata and
  every string field of the request message, nested messages and maps included.

Bodies are checked where they are decoded: every string of an infer request's JSON
(tensors.decode_rest: names, datatypes, ids, parameters, keys, BYTES data) and every
BYTES element, however it came (tensors.make_tensor). core.Backend.run answers 400 for
any other NUL that would still reach the database (the console's login form).
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import unquote_to_bytes

from . import metrics

log = logging.getLogger("pgmodels.serve")
NUL = "\x00"


def message(where: str) -> str:
    return f"the request's {where} contains a NUL character, which no name, token or value can hold"


def in_json(value) -> bool:
    """Whether a decoded JSON value holds a NUL in any string, key or value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(x for x in item if isinstance(x, (str, list, dict)))
    return False


def in_http(scope) -> str | None:
    """Where an HTTP request's path, query string or headers hold a NUL, or None."""
    if NUL in scope.get("path", ""):
        return "path"
    query = scope.get("query_string") or b""
    if b"\x00" in query or (b"%" in query and b"\x00" in unquote_to_bytes(query)):
        return "query string"
    for name, value in scope.get("headers") or ():
        if b"\x00" in value or b"\x00" in name:
            return f"{name.decode('latin-1', 'replace')} header"
        if name == b"cookie" and b"\\" in value:
            from starlette.requests import cookie_parser

            if any(NUL in k or NUL in v for k, v in cookie_parser(value.decode("latin-1")).items()):
                return "cookie header"
    return None


class RefuseNul:
    """ASGI middleware: 400 for a request with a NUL in its path, query string or headers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        where = in_http(scope) if scope["type"] == "http" else None
        if where is None:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        text = message(where)
        if scope.get("path", "").startswith("/console"):
            from ..console.routes import _page

            response = _page("error.html", status=400, message=text, role=None)
            body, headers = response.body, list(response.raw_headers)
        else:
            body = json.dumps({"error": text}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        metrics.observe("", "refused", 400, started)
        log.info("refused %s: a NUL in the %s", scope.get("method", "request"), where)


def in_message(msg, prefix: str = "") -> str | None:
    """The first string field of a protobuf message (nested messages and maps included)
    that holds a NUL, or None. Bytes fields are the tensors' (make_tensor checks BYTES)."""
    for field, value in msg.ListFields():
        name = prefix + field.name
        if field.type == field.TYPE_STRING:
            if any(NUL in v for v in (value if _repeated(field) else (value,))):
                return name
        elif field.type == field.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = list(value.items())
                if any(isinstance(k, str) and NUL in k for k, _ in items):
                    return name
                for _, v in items:
                    found = in_message(v, name + ".") if hasattr(v, "ListFields") else (
                        name if isinstance(v, str) and NUL in v else None)
                    if found:
                        return found
            else:
                for item in (value if _repeated(field) else (value,)):
                    found = in_message(item, name + ".")
                    if found:
                        return found
    return None


def _repeated(field) -> bool:
    is_repeated = getattr(field, "is_repeated", None)  # protobuf >= 5.28; label is deprecated there
    return bool(is_repeated) if is_repeated is not None else field.label == field.LABEL_REPEATED


def in_metadata(metadata) -> str | None:
    for key, value in metadata or ():
        if NUL in key or (isinstance(value, str) and NUL in value):
            return f"{key.replace(NUL, '?')} metadata"
    return None


def grpc_interceptor():
    """A grpc.aio server interceptor: INVALID_ARGUMENT for a call with a NUL in its
    metadata or in a string field of its request."""
    import grpc

    class GrpcRefuseNul(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation, details):
            handler = await continuation(details)
            if handler is None or handler.unary_unary is None:
                return handler
            inner, metadata = handler.unary_unary, details.invocation_metadata

            async def checked(request, context):
                started = time.perf_counter()
                where = in_metadata(metadata)
                if where is None:
                    field = in_message(request)
                    where = f"{field} field" if field else None
                if where is not None:
                    metrics.observe("", "grpc_refused", 400, started)
                    log.info("refused gRPC %s: a NUL in the %s", details.method, where)
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message(where))
                return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(checked, request_deserializer=handler.request_deserializer,
                                                       response_serializer=handler.response_serializer)

    return GrpcRefuseNul()
