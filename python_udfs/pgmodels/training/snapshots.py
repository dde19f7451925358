"""Materialized snapshots: train(..., materialize_snapshot => true) copies the rows it
trains on into a table of pgmodels' own, and trains on that copy.

A later train() of the project that leaves relation_name out reads the snapshot (it is
recorded as the project's relation), so a retrain, or an audit, sees the same rows in the
same order, and so the same split, even when the source has changed since. The model's
training record keeps {"relation", "source", "rows"} under "snapshot".

Who does what: the table is created by pgmodels._snapshot_create (definer: it lives in
schema pgmodels_snapshots, which only the extension's owner may create in) with the
source's columns and no rows; the rows are copied by the caller, with the caller's rights
(row-level security and column grants apply as to any read); then
pgmodels._snapshot_seal takes the caller's INSERT back, leaving SELECT, so nobody but
the extension's owner can change a snapshot afterwards.
"""

from __future__ import annotations

from .._plpy import qualified, query, require_execute, udf


def materialize(rel):
    """(the snapshot as a udf.Relation, the record kept in the model's training jsonb)."""
    from .udf import resolve_relation

    name = query("SELECT pgmodels._snapshot_create($1, pgmodels._credential()) AS s", [rel.oid], ["oid"])[0]["s"]
    columns = ", ".join(_quote(c) for c, _ in rel.columns)
    rows = query(f"WITH moved AS (INSERT INTO {name} ({columns}) SELECT {columns} FROM {rel.quoted} RETURNING 1) "
                 "SELECT count(*) AS n FROM moved")[0]["n"]
    query("SELECT pgmodels._snapshot_seal($1, pgmodels._credential())", [name], ["text"])
    snap = resolve_relation(name)
    return snap, {"relation": snap.display, "source": rel.display, "rows": int(rows)}


def _quote(identifier: str) -> str:
    from .._plpy import quote_ident

    return quote_ident(identifier)


@udf(empty=[])
def snapshot_udf(relation_name):
    """snapshot(relation_name): a materialized snapshot of a relation, without training."""
    from .udf import TRAIN_SIGNATURE, resolve_relation

    require_execute(qualified(TRAIN_SIGNATURE), "snapshot")
    snap, record = materialize(resolve_relation(relation_name))
    return [(record["relation"], record["source"], record["rows"])]
