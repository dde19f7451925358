"""Errors of the inference server, and the one table that maps SQLSTATEs to statuses.

Every failure a client can cause or meet becomes a ``ProxyError``: an HTTP status, the
gRPC status code that goes with it, and a message. The REST side answers with the Open
Inference Protocol's error body ``{"error": "..."}``, the gRPC side aborts the call with
the code; neither ever shows a traceback. README.md ("Statuses") repeats this table.
"""

from __future__ import annotations

import psycopg

# (SQLSTATE or its two-character class, HTTP status, gRPC code name, what it means here).
# The first match wins, so exact codes come before their classes.
SQLSTATE_STATUS: list[tuple[str, int, str, str]] = [
    ("42501", 403, "PERMISSION_DENIED", "the token's role may not use the model, or read its feature source"),
    ("42704", 404, "NOT_FOUND", "no such project (model), model version or role"),
    ("42P01", 404, "NOT_FOUND", "the feature source's relation is gone"),
    ("55000", 409, "FAILED_PRECONDITION",
     "the project has no deployed model, or a feature source the server does not read"),
    ("57014", 504, "DEADLINE_EXCEEDED", "the statement timed out or was cancelled"),
    ("53", 503, "UNAVAILABLE", "the server is out of memory, connections or disk"),
    ("57P", 503, "UNAVAILABLE", "the database is shutting down or restarting"),
    ("08", 503, "UNAVAILABLE", "no connection to the database"),
    ("40", 503, "UNAVAILABLE", "serialization failure or deadlock: retry"),
    ("22", 400, "INVALID_ARGUMENT", "bad features: wrong count, NaN, out of range, bad text"),
    ("23", 400, "INVALID_ARGUMENT", "a constraint was violated"),
    ("42", 400, "INVALID_ARGUMENT", "the request names something that does not fit (a column, a type)"),
    ("28", 403, "PERMISSION_DENIED", "the proxy's login role may not connect"),
    ("3D", 503, "UNAVAILABLE", "the proxy's database does not exist"),
]
# Anything else (XX000, P0001, ...) is 500 INTERNAL, with PostgreSQL's message and no traceback.

GRPC_BY_HTTP = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                405: "UNIMPLEMENTED", 408: "DEADLINE_EXCEEDED", 409: "FAILED_PRECONDITION",
                413: "RESOURCE_EXHAUSTED", 415: "INVALID_ARGUMENT", 500: "INTERNAL", 503: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED"}


class ProxyError(Exception):
    """A failure with the status it answers with."""

    def __init__(self, status: int, message: str, grpc_code: str | None = None, sqlstate: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.grpc_code = grpc_code or GRPC_BY_HTTP.get(status, "INTERNAL")
        self.sqlstate = sqlstate

    def body(self) -> dict:
        return {"error": self.message}


def bad_request(message: str) -> ProxyError:
    return ProxyError(400, message)


def status_for(sqlstate: str | None) -> tuple[int, str]:
    """The HTTP status and gRPC code of a SQLSTATE (the table above)."""
    if sqlstate:
        for prefix, http, grpc_code, _ in SQLSTATE_STATUS:
            if sqlstate.startswith(prefix):
                return http, grpc_code
    return 500, "INTERNAL"


def from_db_error(e: BaseException) -> ProxyError:
    """A psycopg error (or a pool timeout) as the status the table gives it."""
    from psycopg_pool import PoolTimeout

    if isinstance(e, PoolTimeout):
        return ProxyError(503, "database unavailable: no connection within the pool timeout", "UNAVAILABLE", "08000")
    sqlstate = getattr(e, "sqlstate", None)
    diag = getattr(e, "diag", None)
    if isinstance(e, psycopg.DataError) and not sqlstate and "NUL" in str(e):
        # psycopg refused to send a text value holding NUL: the request's (proxy/nul.py
        # refuses most of them earlier); PostgreSQL says 22021 for the same byte
        return ProxyError(400, "a value of the request contains a NUL character, which PostgreSQL's text cannot "
                               "hold", "INVALID_ARGUMENT", "22021")
    if isinstance(e, psycopg.OperationalError) and not sqlstate:
        sqlstate = "08006"  # a connection that broke: the server went away
    http, grpc_code = status_for(sqlstate)
    primary = diag.message_primary if diag is not None and diag.message_primary else None
    if primary is None:
        lines = str(e).strip().splitlines()
        primary = lines[0] if lines else type(e).__name__
    if http == 503 and sqlstate and sqlstate.startswith(("08", "57P")):
        primary = f"database unavailable: {primary}"
    extras = [x for x in ((diag.message_detail, diag.message_hint) if diag is not None else ()) if x]
    message = ". ".join([primary] + [x.rstrip(".") for x in extras]) + ("." if extras else "")
    return ProxyError(http, message, grpc_code, sqlstate)
