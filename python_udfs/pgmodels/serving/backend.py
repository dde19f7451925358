"""Who is calling and what this backend knows of the catalog, read from PostgreSQL itself.

The serving cores are invoker functions: PL/Python runs them in the backend's own
process, as the role the statement runs as. That role is PostgreSQL's GetUserId(), the
same current_user a caller credential names (inside a SECURITY DEFINER function, that
function's owner: PostgreSQL's own rule), read here in place through ctypes; no SQL a
caller writes can change what it returns. GetOuterUserId() is the session's role (its
SET ROLE, else the login role).

SharedInvalidMessageCounter counts the invalidation messages this backend has taken in:
every committed change to PostgreSQL's catalog (a role granted to or revoked from
another, a role dropped or altered, EXECUTE granted or revoked, any DDL) and every
committed write to pgmodels' serving catalog (pgmodels._catalog_changed, a trigger on
its tables, queues one at commit; a rolled-back transaction queues nothing) moves it,
when this backend next reads the queue: when a transaction starts, when it first locks a
relation, and when :func:`caller` reads it (AcceptInvalidationMessages first: a later
statement of a transaction may lock nothing new). So a decision made when it read N is
still the catalog's while it reads N.

Only what PostgreSQL exports from its executable is read: functions that take no
argument and raise no error, and one counter. Outside a backend (the command line, the
tests' own processes) there is nothing to read and :func:`caller` is None.
"""

from __future__ import annotations

import ctypes

USECS = 1_000_000

_state: list = []  # [the readers] or [None]


def _readers():
    if not _state:
        try:
            main = ctypes.CDLL(None)
            functions = {}
            for name, restype in (("GetUserId", ctypes.c_uint32), ("GetOuterUserId", ctypes.c_uint32),
                                  ("GetTopTransactionIdIfAny", ctypes.c_uint32),
                                  ("GetCurrentTransactionStartTimestamp", ctypes.c_int64),
                                  ("GetCurrentTimestamp", ctypes.c_int64), ("AcceptInvalidationMessages", None)):
                f = getattr(main, name)
                f.restype, f.argtypes = restype, []
                functions[name] = f
            counter = ctypes.c_uint64.in_dll(main, "SharedInvalidMessageCounter")
            # the trigger that reports pgmodels' own catalog writes needs it: without it,
            # nothing here may be relied on
            getattr(main, "CacheInvalidateCatalog")
        except (OSError, AttributeError, ValueError):  # not a PostgreSQL backend
            _state.append(None)
        else:
            _state.append((functions["GetUserId"], functions["GetOuterUserId"],
                           functions["GetTopTransactionIdIfAny"], functions["GetCurrentTransactionStartTimestamp"],
                           functions["GetCurrentTimestamp"], counter, functions["AcceptInvalidationMessages"]))
    return _state[0]


def caller(window: float):
    """(role, session's role, invalidation count, transaction start, seconds left) for the
    code running now, or None when a decision may be neither kept nor served here: outside
    a backend, or in a transaction that has written anything (its own catalog changes are
    not counted until it commits, and gone if it rolls back). The transaction's start is
    PostgreSQL's timestamp (microseconds); seconds left: what remains of the window seconds
    after it, the last time the backend surely read the invalidation queue (a later
    statement of a long transaction may not have)."""
    readers = _readers()
    if readers is None:
        return None
    user, outer, xid, started, now, counter, accept = readers
    if xid():
        return None
    # what committed since the backend last read the queue: a later statement of a
    # transaction need not lock anything new, and a change its snapshot sees must count
    accept()
    count = counter.value
    start = started()
    return user(), outer(), count, start, window - (now() - start) / USECS


def writes_nothing() -> bool:
    """Whether the current transaction has written nothing (no transaction id yet)."""
    readers = _readers()
    return readers is not None and not readers[2]()


def user():
    """The role the code running now runs as (GetUserId()), or None outside a backend."""
    readers = _readers()
    return readers[0]() if readers is not None else None
