"""Storing a model version: staged in this backend, then written by pgmodels._store_model.

train() and import_onnx() run with the caller's rights. When one has a checked model it
stages it here, in the backend's Python state, under a one-time random token, together
with the role it runs as, and calls pgmodels._store_model(token) (SECURITY DEFINER),
which takes the staged model back through pgmodels._take_staged (which no other role
may call) and writes it. A direct SQL call of _store_model has nothing to name: no
token, no model. So the catalog holds only what this server's own training and import
produced and checked, owned by the role that really asked.
"""

from __future__ import annotations

import json
import secrets

from .._plpy import current_role, query, udf

_FIELDS = ("project_name", "task", "algorithm", "runtime", "artifact", "hyperparams", "metrics",
           "search_results", "feature_names", "feature_types", "labels", "training", "library_versions",
           "last_train", "deploy_mode", "native_trees")
_JSONB = ("hyperparams", "metrics", "search_results", "labels", "training", "library_versions", "last_train")

_staged: dict[str, dict] = {}


def store_model(**fields) -> dict:
    """Stage one version (jsonb fields given as Python values) and store it; returns
    model_id, version, deployed."""
    row = dict(fields)
    for name in _JSONB:
        if row.get(name) is not None:
            row[name] = json.dumps(row[name])
    row = {name: row.get(name) for name in _FIELDS}
    row["role"] = current_role()
    token = secrets.token_hex(32)
    _staged[token] = row
    try:
        stored = query("SELECT * FROM pgmodels._store_model($1)", [token], ["text"])[0]
    finally:
        _staged.pop(token, None)
    return {"model_id": stored["model_id"], "version": stored["version"], "deployed": stored["deployed"]}


@udf
def take_staged(token: str) -> dict | None:
    """pgmodels._take_staged: the staged model, once."""
    return _staged.pop(token, None) if isinstance(token, str) else None
