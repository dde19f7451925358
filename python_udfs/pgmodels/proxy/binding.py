"""The text of a statement with its parameters bound as literals, as psycopg's
ClientCursor would bind them, at a fraction of its cost.

Every request runs as one simple query (core.py says why: the role switch and the
statement in one transaction, in one round trip), so its parameters are bound on this
side, as SQL literals. psycopg's client-side binding parses nothing twice but dumps every
value through its adapters, and a [batch, n] matrix went through its array dumper
element by element: most of a worker's time in psycopg. Here the values that make up
nearly every request are written directly, and each comes out exactly as psycopg writes
it (tests/test_proxy_binding.py compares them):

- a list (of lists) of finite floats and NULLs: ``'{{0.5,1.0},{NULL,2.0}}'::float8[]``;
- a list of plain words (letters, digits, ``_ . -``; not NULL): ``'{predict,label}'``;
- a string with no quote, backslash or NUL: ``'text'``; a whole number >= 0: ``17``.

Anything else (a quote to double, a NUL that psycopg refuses, an integer list) goes
through psycopg itself, with the connection, as before. The fast forms assume the
connection's client encoding is UTF-8; for any other, every value goes through psycopg.
"""

from __future__ import annotations

import functools
import math
import re

from psycopg import sql

from .errors import bad_request

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_WORD = re.compile(r"[A-Za-z0-9_.\-]+")
_PLAIN = re.compile(r"[^'\\\x00]*")


@functools.lru_cache(maxsize=512)
def template(statement: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The statement's text between its %(name)s placeholders, and their names in order
    (``%%`` is a percent sign, as psycopg reads it)."""
    texts, names, at, text = [], [], 0, ""
    for m in _PLACEHOLDER.finditer(statement):
        text += statement[at:m.start()]
        at = m.end()
        if m.group(1) is None:
            text += "%"
        else:
            texts.append(text)
            names.append(m.group(1))
            text = ""
    if "%" in statement[at:].replace("%%", ""):
        raise ValueError("a statement's only placeholders are %(name)s")
    texts.append(text + statement[at:].replace("%%", "%"))
    return tuple(texts), tuple(names)


def bind(conn, statement: str, params: dict | None) -> bytes:
    """The statement's text with params bound, as bytes to send as one simple query."""
    if params is None:
        return statement.encode()
    texts, names = template(statement)
    encoding = conn.info.encoding  # Python's name of the connection's client encoding
    out = [texts[0]]
    try:
        for name, text in zip(names, texts[1:]):
            out.append(literal(conn, params[name], encoding == "utf-8"))
            out.append(text)
        return "".join(out).encode(encoding)
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the request's JSON) is no character
        raise bad_request("the request holds text the database cannot take: a lone surrogate, or a character "
                          "outside its encoding") from None


def literal(conn, value, utf8: bool = True) -> str:
    """One value as a SQL literal: psycopg's text for it."""
    if value is None:
        return "NULL"
    if utf8:
        kind = type(value)
        if kind is str:
            if _PLAIN.fullmatch(value):
                return "'" + value + "'"
        elif kind is int:
            if value >= 0:
                return str(value)
        elif kind is list and value:
            first = value[0]
            while type(first) is list and first:
                first = first[0]
            if type(first) is str:
                if all(type(v) is str and _WORD.fullmatch(v) and v.lower() != "null" for v in value):
                    return "'{" + ",".join(value) + "}'"
            else:
                text = _floats(value)
                if text is not None:
                    return "'" + text + "'::float8[]"
    return sql.Literal(value).as_bytes(conn).decode(conn.info.encoding)


def _floats(value: list) -> str | None:
    """An array of floats and NULLs (as nested lists of one depth each), or None if value
    holds anything else or nothing but NULLs (psycopg types those otherwise)."""
    parts, found, nested = [], False, type(value[0]) is list
    for v in value:
        if (type(v) is list) is not nested:  # one depth throughout, as PostgreSQL's arrays
            return None
        kind = type(v)
        if kind is float:
            if not math.isfinite(v):
                return None
            parts.append(repr(v))
            found = True
        elif v is None:
            parts.append("NULL")
        elif kind is list and v:
            inner = _floats(v)
            if inner is None:
                return None
            parts.append(inner)
            found = True
        else:
            return None
    return "{" + ",".join(parts) + "}" if found else None
