"""The one place that resolves the relations a mode reads and writes, and checks them.

Batch jobs and stream consumers read a source relation and write an output table keyed
like it. Everything here runs as the calling role (the job's or consumer's owner), so
catalog lookups and privilege checks answer for that role, and names are always quoted
from the catalog (schema and relation name), never pasted from what the user typed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._plpy import query, quote_ident as qi
from .errors import (DATATYPE_MISMATCH, INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE, UNDEFINED_COLUMN,
                      UNDEFINED_TABLE, PgmodelsError, q)

NUMERIC_CATEGORIES = ("N", "B")  # numbers and booleans feed numeric features
INCREMENTAL_TYPES = ("smallint", "integer", "bigint", "numeric", "date", "timestamp without time zone",
                     "timestamp with time zone")
# the incremental types with values past every number or time (and NaN, for numeric)
HAS_INFINITY = ("numeric", "date", "timestamp without time zone", "timestamp with time zone")


@dataclass
class Column:
    name: str
    type: str  # format_type: what a cast names
    category: str  # pg_type.typcategory of the type (of the element, for arrays)
    is_array: bool
    not_null: bool


@dataclass
class Relation:
    oid: int
    qualified: str  # "schema"."name", quoted
    display: str  # as the user's messages show it
    kind: str
    columns: dict[str, Column]

    def column(self, name: str, what: str) -> Column:
        col = self.columns.get(name)
        if col is None:
            raise PgmodelsError(f'column "{name}" of relation {self.display} does not exist',
                                detail=f"The job's {what} must be a column of {self.display}.",
                                sqlstate=UNDEFINED_COLUMN)
        return col


def resolve(name: str, what: str, must_exist: bool = True) -> Relation | None:
    """A relation by the name the user gave (qualified or on their search_path)."""
    if name is None or not name.strip():
        raise PgmodelsError(f"{what} must be a relation name", sqlstate=INVALID_PARAMETER_VALUE)
    try:
        row = query("SELECT pg_catalog.to_regclass($1)::oid AS oid", [name], ["text"])[0]
    except Exception:  # noqa: BLE001 - a malformed name (unbalanced quotes, too many dots)
        raise PgmodelsError(f"invalid relation name {q(name)}", sqlstate=INVALID_PARAMETER_VALUE) from None
    if row["oid"] is None:
        if not must_exist:
            return None
        raise PgmodelsError(f'relation "{name}" does not exist', detail=f"It was given as the job's {what}.",
                            sqlstate=UNDEFINED_TABLE)
    return by_oid(row["oid"])


def by_oid(oid: int) -> Relation:
    rows = query("""
        SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS qualified, c.oid::regclass::text AS display,
               c.relkind::text AS kind
          FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = $1""", [oid], ["oid"])
    if not rows:
        raise PgmodelsError(f"relation with OID {oid} does not exist",
                            detail="The relation was dropped after the job was created.",
                            hint="Drop the job, or recreate it on the new relation.", sqlstate=UNDEFINED_TABLE)
    cols = query("""
        SELECT a.attname::text AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
               coalesce(e.typcategory, t.typcategory)::text AS category, e.oid IS NOT NULL AS is_array,
               a.attnotnull AS not_null
          FROM pg_catalog.pg_attribute a
          JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
          LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY a.attnum""", [oid], ["oid"])
    r = rows[0]
    return Relation(oid, r["qualified"], r["display"], r["kind"],
                    {c["name"]: Column(c["name"], c["type"], c["category"], c["is_array"], c["not_null"])
                     for c in cols})


def require_select(rel: Relation, columns: list[str], who: str = "The job's role",
                   hint: str = "A batch job reads its source with the rights of the role that creates it.") -> None:
    """The calling role may read these columns (table or column privileges)."""
    denied = [c for c in columns if not query(
        "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT') AS ok", [rel.oid, c], ["oid", "text"])[0]["ok"]]
    if denied:
        raise PgmodelsError(f"permission denied for relation {rel.display}",
                            detail="%s may not read column%s %s." % (
                                who, "s" if len(denied) > 1 else "", ", ".join(q(c) for c in denied)),
                            hint=hint, sqlstate=INSUFFICIENT_PRIVILEGE)


def check_key(rel: Relation, key: str) -> Column:
    """The key column: unique and never NULL. A table's unique index on it (alone, with
    no predicate) and a NOT NULL constraint say so; otherwise the data is asked."""
    col = rel.column(key, "key column")
    ident = query("SELECT pg_catalog.quote_ident($1) AS i", [key], ["text"])[0]["i"]
    unique = _unique(rel.oid, key)
    if not unique:
        dup = query(f"SELECT s.{ident}::text AS k, pg_catalog.count(*) AS n FROM {rel.qualified} s "
                    f"WHERE s.{ident} IS NOT NULL GROUP BY s.{ident} HAVING pg_catalog.count(*) > 1 LIMIT 1")
        if dup:
            raise PgmodelsError(f'key column "{key}" of {rel.display} is not unique',
                                detail=f"Key {dup[0]['k'][:60]} appears {dup[0]['n']} times.",
                                hint="The output holds one prediction per key: use a unique column, "
                                     "or a view with one row per key.",
                                sqlstate="23505")
    if not col.not_null:
        nulls = query(f"SELECT pg_catalog.count(*) AS n FROM {rel.qualified} s WHERE s.{ident} IS NULL")[0]["n"]
        if nulls:
            raise PgmodelsError(f'key column "{key}" of {rel.display} has NULLs',
                                detail=f"{nulls} row{'s' if nulls != 1 else ''} have no key.",
                                hint="Use a column without NULLs, or a view that leaves those rows out.",
                                sqlstate="23502")
    return col


def check_incremental(rel: Relation, name: str) -> Column:
    col = rel.column(name, "incremental column")
    if col.is_array or col.type not in INCREMENTAL_TYPES:
        raise PgmodelsError(f'incremental column "{name}" is of type {col.type}',
                            detail="An incremental job scores the rows past the last run's largest value of "
                                   "the column, so it must be a timestamp, a date or an integer or numeric "
                                   "that grows.",
                            hint="Use an updated_at timestamptz or a bigint sequence column.",
                            sqlstate=DATATYPE_MISMATCH)
    return col


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def output_table(name: str, columns: dict[str, str], key: str, not_null: tuple = (), comment: str = "",
                 source: Relation | None = None, fillfactor: int = 100) -> Relation:
    """The table a mode writes its predictions to: created when missing (columns in order,
    ``key`` the primary key, as the calling role, which then owns it), or, when it exists,
    checked to have those columns with those types, a unique index on the key alone and
    no other NOT NULL column without a default. A mismatch is one error listing all."""
    existing = resolve(name, "output table", must_exist=False)
    if existing is not None:
        _check_shape(existing, columns, key, source)
        return existing
    try:
        parts = query("SELECT pg_catalog.parse_ident($1) AS p", [name], ["text"])[0]["p"]
    except Exception:  # noqa: BLE001 - a malformed name
        raise PgmodelsError(f"invalid table name {q(name)}", sqlstate=INVALID_PARAMETER_VALUE) from None
    if len(parts) > 2:
        raise PgmodelsError(f"invalid table name {q(name)}",
                            detail="Give a table name, optionally with its schema.", sqlstate=INVALID_PARAMETER_VALUE)
    schema = parts[0] if len(parts) == 2 else query("SELECT pg_catalog.current_schema() AS s")[0]["s"]
    if schema is None:
        raise PgmodelsError("no schema has been selected to create the output table in",
                            hint="Qualify the output table's name with a schema.", sqlstate="3F000")
    qualified = f"{qi(schema)}.{qi(parts[-1])}"
    body = ", ".join(f"{qi(c)} {t}" + (" PRIMARY KEY" if c == key else " NOT NULL" if c in not_null else "")
                     for c, t in columns.items())
    options = f" WITH (fillfactor = {int(fillfactor)})" if fillfactor != 100 else ""
    query(f"CREATE TABLE {qualified} ({body}){options}")
    if comment:
        query(f"COMMENT ON TABLE {qualified} IS {_literal(comment)}")
    return resolve(qualified, "output table")


def _check_shape(out: Relation, want: dict[str, str], key: str, source: Relation | None) -> None:
    if out.kind not in ("r", "p"):
        raise PgmodelsError(f"output {out.display} is not a table", sqlstate="42809")
    if source is not None and out.oid == source.oid:
        raise PgmodelsError("the output table cannot be the source", sqlstate=INVALID_PARAMETER_VALUE)
    problems = []
    for name, type_ in want.items():
        col = out.columns.get(name)
        if col is None:
            problems.append(f'column "{name}" {type_} is missing')
        elif col.type != type_:
            problems.append(f'column "{name}" is {col.type}, not {type_}')
    extra = query("""
        SELECT a.attname::text AS name FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attnotnull AND NOT a.atthasdef
           AND a.attidentity = '' AND a.attgenerated = '' AND NOT (a.attname = ANY ($2))""",
                  [out.oid, list(want)], ["oid", "text[]"])
    problems += [f'column "{r["name"]}" is NOT NULL without a default' for r in extra]
    if key in out.columns and not _unique(out.oid, key):
        problems.append(f'column "{key}" has no unique index of its own')
    if problems:
        shape = ", ".join(f"{qi(n)} {t}" for n, t in want.items())
        raise PgmodelsError(f"table {out.display} does not have the shape of the output",
                            detail=_sentence("; ".join(problems)),
                            hint=f"Drop it or name a new table, which is then created with the primary key "
                                 f"{key}: it needs {shape}.",
                            sqlstate=DATATYPE_MISMATCH)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _unique(oid: int, column: str) -> bool:
    """Whether a unique index (no predicate) is on the column alone: an ON CONFLICT target."""
    return query("""
        SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a
                         ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                        WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
                          AND a.attname = $2) AS ok""", [oid, column], ["oid", "text"])[0]["ok"]
