"""The one exception the device runtime raises, shaped like the server's errors.

Input errors carry the message, DETAIL, HINT and SQLSTATE that SQL predict() raises for
the same input (tests/test_edge_parity.py holds the two side by side), so an application
can handle a bad row the same way on the device and on the server.
"""

from __future__ import annotations

INVALID_PARAMETER_VALUE = "22023"
NULL_VALUE_NOT_ALLOWED = "22004"
INVALID_TEXT_REPRESENTATION = "22P02"
NUMERIC_VALUE_OUT_OF_RANGE = "22003"
DATATYPE_MISMATCH = "42804"
FEATURE_NOT_SUPPORTED = "0A000"
DATA_CORRUPTED = "XX001"
INVALID_AUTHORIZATION = "28000"
CONNECTION_EXCEPTION = "08000"


class EdgeError(Exception):
    """An error for the application: message, optional detail and hint, and a SQLSTATE."""

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None,
                 sqlstate: str = INVALID_PARAMETER_VALUE):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.sqlstate = sqlstate

    def __str__(self) -> str:
        parts = [self.message]
        if self.detail:
            parts.append("DETAIL: " + self.detail)
        if self.hint:
            parts.append("HINT: " + self.hint)
        return "\n".join(parts)


class BundleError(EdgeError):
    """A bundle that is unsigned, signed by another key, corrupt or truncated."""

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None):
        super().__init__(message, detail=detail, hint=hint, sqlstate=DATA_CORRUPTED)
