"""pgmodels.doctor(): what the server's Python environment looks like."""

from __future__ import annotations

import importlib.metadata
import os
import sys

from . import __version__
from ._plpy import query, udf

# The distributions the server imports, by their PyPI names.
SERVER_PACKAGES = ("numpy", "onnxruntime", "scikit-learn", "xgboost", "onnx", "skl2onnx", "onnxmltools")


def _distribution_version(name: str) -> str | None:
    for candidate in (name, name + "-cpu"):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@udf(empty=[])
def report() -> list[tuple[str, str, bool]]:
    """Rows of (item, value, ok) for pgmodels.doctor()."""
    venv = query("SELECT pgmodels._admin_setting('pgmodels.venv') AS v")[0]["v"]
    here = "%d.%d" % sys.version_info[:2]
    rows = [
        ("server python", f"{sys.version.split()[0]} ({os.path.join(sys.base_prefix, 'bin', 'python' + here)})", True),
        ("pgmodels.venv", venv, True),
        ("pgmodels package", f"{__version__} ({os.path.dirname(__file__)})", True),
    ]
    for name in SERVER_PACKAGES:
        version = _distribution_version(name)
        rows.append((name, version or "missing", version is not None))
    cron = query("SELECT preloaded, database_name FROM pgmodels._cron_status()")[0]
    preload = cron["preloaded"] or ""
    loaded = "pg_cron" in [p.strip() for p in preload.split(",")]
    rows.append(("pg_cron preloaded", "yes" if loaded else "no (shared_preload_libraries = '%s')" % preload, loaded))
    # pg_cron's jobs live in one database per cluster (cron.database_name); scheduled
    # scoring works from there, so another database without the extension is fine.
    ext = query("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'")
    home = cron["database_name"]
    where = f"{ext[0]['extversion']} in this database" if ext else f"in database \"{home}\" (cron.database_name)"
    rows.append(("pg_cron extension", where if loaded else "unavailable", loaded))
    return rows
