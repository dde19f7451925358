"""Storing a model version: the one call into pgmodels._store_model."""

from __future__ import annotations

import json

from .._plpy import query

_FIELDS = [  # (argument, SQL type), in the order of pgmodels._store_model's parameters
    ("project_name", "text"), ("task", "text"), ("algorithm", "text"), ("runtime", "text"),
    ("artifact", "bytea"), ("hyperparams", "jsonb"), ("metrics", "jsonb"), ("search_results", "jsonb"),
    ("feature_names", "text[]"), ("feature_types", "text[]"), ("labels", "jsonb"), ("training", "jsonb"),
    ("library_versions", "jsonb"), ("last_train", "jsonb"), ("deploy_mode", "text"),
]
_SQL = "SELECT * FROM pgmodels._store_model(%s)" % ", ".join(f"${i + 1}" for i in range(len(_FIELDS)))


def store_model(**fields) -> dict:
    """Write one version (jsonb fields given as Python values); returns model_id, version, deployed."""
    args = []
    for name, sqltype in _FIELDS:
        value = fields.get(name)
        if sqltype == "jsonb" and value is not None:
            value = json.dumps(value)
        args.append(value)
    row = query(_SQL, args, [t for _, t in _FIELDS])[0]
    return {"model_id": row["model_id"], "version": row["version"], "deployed": row["deployed"]}
