"""Materialized snapshots: train(..., materialize_snapshot => true) copies the rows it
trains on into a table of pgmodels' own, and trains on that copy.

A later train() of the project that leaves relation_name out reads the snapshot (it is
recorded as the project's relation), so a retrain, or an audit, sees the same rows in the
same order, and so the same split, even when the source has changed since. The model's
training record keeps {"relation", "source", "rows"} under "snapshot".

Who does what: the caller copies the rows, with the caller's rights (row-level security
and column grants apply as to any read), into a temporary table of its own session;
pgmodels._snapshot_create (definer: schema pgmodels_snapshots is the extension's, owned by
its owner) makes the snapshot table from that copy, fills it and gives the caller SELECT,
in one step, so no caller ever holds INSERT on a snapshot and nobody but the extension's
owner can change one. Column types are built-in (domains by their base type, types
someone created as text), so no type's owner can drop a snapshot's column; the caller
converts them while it copies (its casts run as itself), and the definer refuses a copy
with any other type, or with anything that runs code when read (row-level security,
rules, triggers), and converts nothing. Before
training reads a relation of pgmodels_snapshots, :func:`check` makes sure it is one of
these tables (pgmodels._snapshot_check).
"""

from __future__ import annotations

from .._plpy import qualified, query, require_execute, udf


def materialize(rel):
    """(the snapshot as a udf.Relation, the record kept in the model's training jsonb)."""
    import uuid

    from .udf import resolve_relation

    copy = "pg_temp." + _quote("pgmodels_snapshot_copy_" + uuid.uuid4().hex)
    # each column converted here, as the caller, to the built-in type the snapshot gives
    # it: the definer that fills the snapshot takes only built-in types and converts none
    types = {r["name"]: r["type"] for r in query(
        """SELECT a.attname::text AS name, pgmodels._snapshot_type(a.atttypid, a.atttypmod) AS type
             FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped""",
        [rel.oid], ["oid"])}
    columns = ", ".join(f"{_quote(c)}::{types[c]} AS {_quote(c)}" for c, _ in rel.columns)
    query(f"CREATE TEMPORARY TABLE {copy} AS SELECT {columns} FROM {rel.quoted}")
    try:
        rows = query(f"SELECT pg_catalog.count(*) AS n FROM {copy}")[0]["n"]
        name = query(f"SELECT pgmodels._snapshot_create($1, pg_catalog.to_regclass($2)::oid, pgmodels._credential()) AS s",
                     [rel.oid, copy], ["oid", "text"])[0]["s"]
    finally:
        query(f"DROP TABLE IF EXISTS {copy}")
    snap = resolve_relation(name)
    return snap, {"relation": snap.display, "source": rel.display, "rows": int(rows)}


def check(oid) -> None:
    """Refuse (42501) to read a relation of schema pgmodels_snapshots that pgmodels did not
    make there (a view, a table of someone else's), or a schema of that name not its own."""
    query("SELECT pgmodels._snapshot_check($1)", [oid], ["oid"])


def _quote(identifier: str) -> str:
    from .._plpy import quote_ident

    return quote_ident(identifier)


@udf(empty=[])
def snapshot_udf(relation_name):
    """snapshot(relation_name): a materialized snapshot of a relation, without training."""
    from .udf import TRAIN_SIGNATURE, resolve_relation

    require_execute(qualified(TRAIN_SIGNATURE), "snapshot")
    if relation_name is None:
        from ..errors import PgmodelsError

        raise PgmodelsError("relation_name must not be NULL", hint="Name the table or view to copy.",
                            sqlstate="22004")
    snap, record = materialize(resolve_relation(relation_name))
    return [(record["relation"], record["source"], record["rows"])]
