"""The edge between PL/Python and the pgmodels package.

Every SQL function's body is one call into a function wrapped by :func:`udf`.

PL/Python prefixes any error it raises with the Python exception's type
("plpy.Error: ...", "spiexceptions.DivisionByZero: ..."), which is not PostgreSQL's
style. So errors are not raised from Python: the wrapper records the error as pending
(in GD, shared by all PL/Python functions of the session) and returns NULL, and the SQL
wrapper around the core raises it with RAISE ... USING, message, detail, hint and
SQLSTATE intact (see pgmodels._raise_pending in sql/020_environment.sql). That costs
nothing on the happy path. Errors PostgreSQL raised inside (plpy.SPIError) keep their
own message and SQLSTATE; anything unexpected becomes one clean internal error.

A pending error belongs to the call that recorded it. A function that is not called once
per row drops any stale one when it starts; the per-row serving cores (``hot``) drop it
when they return NULL without an error of their own, which is the only time the SQL side
looks for one. So an error that was recorded but never raised (a statement that failed
in between, a direct call of a core) never surfaces in a later statement or role.
"""

from __future__ import annotations

import __main__
import functools

import plpy  # provided by PL/Python inside the server

from .errors import INTERNAL_ERROR, PgmodelsError

PENDING = "pgmodels.pending"


def set_pending(message: str, detail: str | None = None, hint: str | None = None,
                sqlstate: str = INTERNAL_ERROR, stamp: float | None = None) -> None:
    """Record an error for the SQL side to raise, tagged with the statement's stamp
    (pgmodels._stamp()): pgmodels._pending_error hands it only to the same statement."""
    __main__.GD[PENDING] = (message, detail, hint, sqlstate, stamp)


def in_parallel_mode() -> bool:
    """Whether the backend is in parallel mode (a parallel worker, or a leader while its
    workers run), where PL/Python can run no query: the subtransaction it opens for one
    fails with an error Python cannot catch."""
    import ctypes

    try:
        function = ctypes.CDLL(None).IsInParallelMode
    except (OSError, AttributeError):
        return False
    function.restype, function.argtypes = ctypes.c_bool, []
    return function()


def _statement_stamp() -> float | None:
    """This statement's stamp, asked of the server (not possible in parallel mode, where
    no other session shares the error anyway: untagged)."""
    if in_parallel_mode():
        return None
    try:
        return query("SELECT pgmodels._stamp() AS s")[0]["s"]
    except Exception:  # noqa: BLE001 - untagged
        return None


def udf(fn=None, *, empty=None, hot=False, stamp_arg=None):
    """Wrap the Python side of a SQL function; ``empty`` is what it returns on error.
    ``hot``: a per-row serving core, whose stamp is its fourth argument; ``stamp_arg``:
    the position of the statement's stamp among the arguments, where there is one."""
    if fn is None:
        return functools.partial(udf, empty=empty, hot=hot, stamp_arg=stamp_arg)
    if hot:
        stamp_arg = 3

    def stamp_of(args):
        if stamp_arg is not None and len(args) > stamp_arg:
            return args[stamp_arg]
        return _statement_stamp()

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            if not hot:
                __main__.GD.pop(PENDING, None)
            result = fn(*args, **kwargs)
            if hot and result is None:
                __main__.GD.pop(PENDING, None)
            return result
        except PgmodelsError as e:
            set_pending(e.message, e.detail, e.hint, e.sqlstate, stamp_of(args))
        except plpy.SPIError as e:
            # spidata: (sqlstate code, detail, hint, query, position, ...)
            spidata = getattr(e, "spidata", None) or (None, None, None)
            set_pending(e.args[0] if e.args else str(e), spidata[1], spidata[2],
                        getattr(e, "sqlstate", None) or INTERNAL_ERROR, stamp_of(args))
        except MemoryError:
            set_pending("out of memory in pgmodels", sqlstate="53200", stamp=stamp_of(args))
        except Exception as e:  # noqa: BLE001 - the edge: nothing unexpected escapes raw
            set_pending(*_unexpected(fn.__name__, e), stamp=stamp_of(args))
        return empty

    return wrapper


def _unexpected(name: str, e: Exception) -> tuple:
    """An exception no pgmodels code raised on purpose, as (message, detail, hint, sqlstate).
    onnxruntime's (its own classes, or a RuntimeError naming it) come from running a model
    on its input: not pgmodels' bugs."""
    text = str(e)
    if type(e).__module__.startswith("onnxruntime") or "onnxruntime" in text or "Non-zero status code" in text:
        if "failed to allocate" in text.lower():
            return ("out of memory in pgmodels", "The model needed more memory than it could get: " + text[:300],
                    None, "53200")
        return ("the model could not be evaluated on these features", text[:500],
                "The model's graph refused the input; check the features' count and types.", "22000")
    # no Python class name or traceback in a user's face: the text is what there is to say
    return (f"internal error in pgmodels.{name}", text[:1000] or None,
            "This is a bug in pgmodels; please report it with the statement that raised it.", INTERNAL_ERROR)


quote_ident = plpy.quote_ident


def current_role() -> int:
    """The oid of current_user: the role this function runs as (not the session's)."""
    return query("SELECT pgmodels._me() AS r")[0]["r"]


def require_execute(function_signature: str, what: str) -> None:
    """Refuse unless current_user may execute a user-facing function: the internal cores
    of train() and import_onnx() are callable by PUBLIC and check this themselves."""
    ok = query("SELECT pg_catalog.has_function_privilege(current_user, $1, 'EXECUTE') AS ok",
               [function_signature], ["text"])[0]["ok"]
    if not ok:
        raise PgmodelsError(f"permission denied for function {what}", sqlstate="42501",
                            hint=f"An administrator grants EXECUTE on {function_signature}.")

_schema: list[str] = []


def qualified(signature: str) -> str:
    """A user-facing function's signature, qualified with the extension's schema."""
    if not _schema:
        _schema.append(query("""SELECT pg_catalog.quote_ident(n.nspname) AS s FROM pg_catalog.pg_extension e
                                JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                                WHERE e.extname = 'pgmodels'""")[0]["s"])
    return f"{_schema[0]}.{signature}"


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
