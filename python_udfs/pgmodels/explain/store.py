"""Storing a model version's explainer record: staged here, written by
pgmodels._store_explainer, as catalog.store stores the model itself.

train() (and set_reference(), for a model that has no exact explainer) stages the record
it has just made, with the role it runs as and the model id, under a one-time token in
the backend's Python state, and calls pgmodels._store_explainer(token) (SECURITY
DEFINER), which takes it back through pgmodels._take_staged_explainer (no other role may
call that) and writes it once it has checked that the role owns the model's project. A
direct call has no staged record to name.
"""

from __future__ import annotations

import json
import secrets

from .._plpy import current_role, query, udf

_staged: dict[str, dict] = {}


def store_explainer(model_id: int, blob: bytes, info: dict, source: str) -> None:
    token = secrets.token_hex(32)
    _staged[token] = {"role": current_role(), "model_id": model_id, "kind": info["kind"], "exact": info["exact"],
                      "method": info["method"], "output": info["output"], "record": blob,
                      "importance": json.dumps(info.get("importance") or {}),
                      "importance_rows": int(info.get("importance_rows") or 0), "source": source}
    try:
        query("SELECT pgmodels._store_explainer($1)", [token], ["text"])
    finally:
        _staged.pop(token, None)


@udf
def take_staged(token: str) -> dict | None:
    """pgmodels._take_staged_explainer: the staged record, once."""
    return _staged.pop(token, None) if isinstance(token, str) else None
