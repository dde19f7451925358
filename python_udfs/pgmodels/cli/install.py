"""Installing pgmodels into a database: the extension and the environment setting."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError


def default_venv() -> Path:
    """The virtual environment this tool runs from: the one the server should use too."""
    return Path(sys.prefix).resolve()


def install_extension(conn, venv: Path | None) -> str:
    """Create or update the extension in conn's database; return its version.

    With venv, the server's pgmodels.venv setting is pointed at it first, with ALTER
    SYSTEM (so it needs a superuser): only the administrator chooses the environment the
    server imports from, and the server reads it from its configuration files only.
    """
    from psycopg import sql

    if venv is not None:
        # ALTER SYSTEM knows a custom setting only once the session has it
        conn.execute(sql.SQL("SET pgmodels.venv = {}").format(sql.Literal(str(venv))))
        conn.execute(sql.SQL("ALTER SYSTEM SET pgmodels.venv = {}").format(sql.Literal(str(venv))))
        conn.execute("SELECT pg_reload_conf()")
    available = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'pgmodels'"
    ).fetchone()
    if available is None:
        raise PgmodelsError("the pgmodels extension files are not installed in this server",
                            detail="pg_available_extensions has no pgmodels entry.",
                            hint='Run "make install" in the pgmodels source tree on the database host.',
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
    conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
    if available[1] is None:
        conn.execute("CREATE EXTENSION pgmodels")
    elif available[1] != available[0]:
        conn.execute("ALTER EXTENSION pgmodels UPDATE")
    problem = conn.execute("SELECT pgmodels._activate()").fetchone()[0]
    if problem:
        message, detail, hint, sqlstate = conn.execute("SELECT * FROM pgmodels._pending_error(pgmodels._stamp())").fetchone()
        raise PgmodelsError(message, detail=detail, hint=hint, sqlstate=sqlstate)
    return conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone()[0]
