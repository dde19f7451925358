"""The edge between PL/Python and the pgmodels package.

Every SQL function's body is one line calling a function wrapped by :func:`udf`. The
wrapper turns a :class:`~pgmodels.errors.PgmodelsError` into ``plpy.error`` with its
SQLSTATE, lets errors PostgreSQL raised (``plpy.SPIError``) pass unchanged, and turns
anything unexpected into one clean internal error instead of a Python traceback as the
message.
"""

from __future__ import annotations

import functools

import plpy  # provided by PL/Python inside the server

from .errors import INTERNAL_ERROR, PgmodelsError


def udf(fn):
    """Wrap the Python side of a SQL function."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PgmodelsError as e:
            plpy.error(e.message, detail=e.detail, hint=e.hint, sqlstate=e.sqlstate)
        except (plpy.SPIError, plpy.Error):
            raise
        except MemoryError:
            plpy.error("out of memory in pgmodels", sqlstate="53200")
        except Exception as e:  # noqa: BLE001 - the edge: nothing unexpected escapes raw
            plpy.error(f"internal error in pgmodels.{fn.__name__}",
                       detail=f"{type(e).__name__}: {e}",
                       hint="This is a bug in pgmodels; please report it with the statement that raised it.",
                       sqlstate=INTERNAL_ERROR)

    return wrapper


quote_ident = plpy.quote_ident

_plans: dict[tuple, object] = {}


def query(sql: str, args: list | None = None, types: list[str] | None = None):
    """Run one statement through SPI; parameterised plans are prepared once per session."""
    if args is None:
        return plpy.execute(sql)
    key = (sql, tuple(types or ()))
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = plpy.prepare(sql, list(types or ()))
    return plpy.execute(plan, args)
