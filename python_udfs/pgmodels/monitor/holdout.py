"""The rows a monitor's retrain is judged on, and kept out of the retrain's training.

A retrain is compared with the deployed model on labelled rows it did not train on: a
slice of the monitored window's labelled rows, held out.

- With a time column, the newest: the window's labelled rows ordered by that column,
  newest first.
- Without one, rows drawn at random, reproducibly: ordered by the md5 of the report's id
  and the row's features, so that the same report would draw the same rows.

The slice is the deployed version's test share (its ``test_size``, 0.25 by default) of
the window's labelled rows, and at least the project's ``min_holdout_rows``. A row is
known by the md5 of its features as the deployed model reads them (numbers as real, text
as text, NULL as NaN): the same text in the monitored relation and in the training
relation, whatever their column types. The retrain then reads its training relation
without every row whose features match a held-out row's, so a training relation that is
also the monitored one (or holds its rows) gives the retrain none of them. Matching on
the features alone leaves out a row that differs from a held-out one only in its label
too: the candidate never saw those features.

The deployed model may have trained on some held-out rows (when the training relation
holds the monitored rows): that favours the deployed model, never the candidate, so a
retrain still deploys only what is better.
"""

from __future__ import annotations

import math

from .._plpy import query, quote_ident as qi
from ..batch.plan import ServedModel, feature_columns, numeric_expr, text_expr
from ..errors import INVALID_PARAMETER_VALUE, UNDEFINED_TABLE, PgmodelsError
from ..relations import Relation, by_oid

DEFAULT_SHARE = 0.25

# set by a retrain for the train() call it makes in this backend, read by training's
# read_relation: {"relation": oid, "match": SQL on alias s with $2, "keys": [...]};
# "excluded" is filled in by the read
for_training: dict | None = None


def key_sql(model: ServedModel, rel: Relation) -> str:
    """A row's key on alias ``s``: the md5 of the model's features as it reads them."""
    feature_columns(model, rel)  # the relation has them, with usable types
    numeric = numeric_expr(model, rel, nan_nulls=True) or "NULL::real[]"
    texts = text_expr(model) or "NULL::text[]"
    return f"pg_catalog.md5(ROW({numeric}, {texts})::text)"


def matching(key: str, param: int) -> str:
    """A condition on alias ``s``: its key is one of the text[] parameter $param."""
    return f"EXISTS (SELECT 1 FROM pg_catalog.unnest(${param}::text[]) AS h(k) WHERE h.k = {key})"


def size(labelled: int, share: float, need: int) -> int:
    """How many of the window's labelled rows to hold out."""
    share = share if 0 < share < 1 else DEFAULT_SHARE
    return min(labelled, max(need, math.ceil(share * labelled)))


def choose(model: ServedModel, rel: Relation, where: list[str], params: list, types: list, y_column: str,
           time_column: str | None, count: int, seed: str) -> tuple[list[str], str]:
    """The keys of the held-out rows (rows of rel matching ``where``, labelled) and how
    they were chosen, in words."""
    key = key_sql(model, rel)
    conditions = where + [f"s.{qi(y_column)} IS NOT NULL"]
    if time_column:
        order = f"s.{qi(time_column)} DESC"
        how = f"the newest {count} labelled rows of the window by {time_column}"
    else:
        params = params + [seed]
        types = types + ["text"]
        order = f"pg_catalog.md5(${len(params)} || {key})"
        how = f"{count} labelled rows of the window drawn at random (seed: {seed})"
    params = params + [count]
    types = types + ["bigint"]
    rows = query(f"SELECT x.k FROM (SELECT {key} AS k FROM {rel.qualified} s WHERE {' AND '.join(conditions)} "
                 f"ORDER BY {order}, 1 LIMIT ${len(params)}) x", params, types)
    return sorted({r["k"] for r in rows}), how


def training_relation(record: dict) -> Relation:
    """The relation the deployed version was trained on (its training record names it as
    schema.name), as it is now."""
    training = record.get("training") or {}
    name = training.get("relation")
    if not name:
        raise PgmodelsError(f'version {record.get("version")} of project "{record.get("project")}" has no '
                            "training relation to retrain from",
                            detail="It was imported, not trained with train().",
                            hint="Train a version with train() and deploy it, or create the monitor with "
                                 "retrain => false.", sqlstate=INVALID_PARAMETER_VALUE)
    rows = query("SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE pg_catalog.concat(n.nspname, '.', c.relname) = $1 "
                 "AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", [name], ["text"])
    if len(rows) != 1:
        raise PgmodelsError(f'relation "{name}" does not exist' if not rows else f'relation name "{name}" is ambiguous',
                            detail=f'Version {record.get("version")}, the deployed one, was trained on it.',
                            hint="Train the project again on a relation that exists, and deploy that version.",
                            sqlstate=UNDEFINED_TABLE if not rows else INVALID_PARAMETER_VALUE)
    return by_oid(rows[0]["oid"])


def training_filter(oid: int) -> tuple[str, list] | None:
    """For train()'s read of its relation: the condition that matches the held-out rows
    (on alias s, the keys as $2), or None outside a retrain."""
    if for_training is None:
        return None
    if for_training["relation"] != oid:
        raise PgmodelsError("a retrain must read the relation the deployed version was trained on",
                            detail="Its held-out rows are matched in that relation.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return for_training["match"], for_training["keys"]
