"""Errors that reach users, in PostgreSQL's style.

Every error a user can cause is a :class:`PgmodelsError` carrying a lower-case message
without a final period, DETAIL and HINT as full sentences, and a SQLSTATE. Inside the
server, :func:`pgmodels._plpy.udf` records it as pending and the SQL wrapper raises it
with RAISE ... USING; the CLI prints it as one line.
"""

from __future__ import annotations

# The SQLSTATEs pgmodels raises, named as in PostgreSQL's errcodes.txt.
INVALID_PARAMETER_VALUE = "22023"
NULL_VALUE_NOT_ALLOWED = "22004"
INVALID_TEXT_REPRESENTATION = "22P02"
DATA_EXCEPTION = "22000"
UNDEFINED_OBJECT = "42704"
UNDEFINED_TABLE = "42P01"
UNDEFINED_COLUMN = "42703"
DATATYPE_MISMATCH = "42804"
INSUFFICIENT_PRIVILEGE = "42501"
OBJECT_NOT_IN_PREREQUISITE_STATE = "55000"
DATA_CORRUPTED = "XX001"
INTERNAL_ERROR = "XX000"
FEATURE_NOT_SUPPORTED = "0A000"
CONNECTION_EXCEPTION = "08000"


def q(name) -> str:
    """A name or value quoted the way PostgreSQL's messages quote them: in double quotes."""
    return f'"{name}"'


class PgmodelsError(Exception):
    """An error for a user: message, optional detail and hint, and a SQLSTATE."""

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None,
                 sqlstate: str = INVALID_PARAMETER_VALUE):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint
        self.sqlstate = sqlstate

    def one_line(self) -> str:
        """The error as the CLI prints it: message, then detail and hint."""
        parts = ["error: " + self.message]
        if self.detail:
            parts.append(self.detail)
        if self.hint:
            parts.append("Hint: " + self.hint)
        return " ".join(parts)
