"""The current data a drift report compares with a model's reference, read in one statement.

The rows of a relation (or of a time window of it) are read with the caller's rights in
one statement that aggregates the model's numeric features into one rows x features
real[] (NULL read as NaN, so numpy reads the array_send() bytes in place: no Python
object per value) and its text features into a text[]. The model's predictions on those
rows come from the one vectorized scoring path (serving.vectorized), with the model
pgmodels._lookup loaded for this statement: drift reports the prediction distribution
too, and a retrain scores the models it compares the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .._plpy import query, quote_ident as qi
from ..batch.plan import ServedModel, feature_columns, numeric_expr, text_expr
from ..errors import (DATA_EXCEPTION, DATATYPE_MISMATCH, INVALID_PARAMETER_VALUE, OBJECT_NOT_IN_PREREQUISITE_STATE,
                      UNDEFINED_COLUMN, PgmodelsError, q)
from ..relations import Relation, require_select
from ..serving import cache, vectorized
from ..serving.inputs import from_array_send

TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


@dataclass
class Reference:
    """A model's reference as pgmodels._drift_reference returns it."""
    model: ServedModel
    project_id: int
    profile: dict
    y_column: str | None
    thresholds: dict
    nullable: list
    labels: list | None

    @classmethod
    def load(cls, project: str, model_id: int | None, need_profile: bool = True) -> "Reference":
        row = query("SELECT * FROM pgmodels._drift_reference($1, $2, pgmodels._credential())",
                    [project, model_id or 0], ["text", "bigint"])[0]
        if row["project"] != project:
            raise PgmodelsError(f'model {row["model_id"]} is not a version of project "{project}"',
                                detail=f'It is version {row["version"]} of project "{row["project"]}".',
                                sqlstate=INVALID_PARAMETER_VALUE)
        profile = None
        if need_profile:
            # staged (or refused: monitor privilege) whether or not the model has a profile,
            # so that a role without monitor learns nothing of it
            token = query("SELECT pgmodels._stage_profile($1, pgmodels._credential()) AS t",
                          [row["model_id"]], ["bigint"])[0]["t"]
            profile = _staged.pop(token, None)
        if need_profile and not profile:
            raise PgmodelsError(f'model {row["model_id"]} (version {row["version"]} of project "{project}") '
                                "has no reference profile",
                                detail="Models trained before pgmodels 0.2.0 and imported models have none.",
                                hint="Retrain it, or give it one with set_reference(project_name, relation_name).",
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
        return cls(model=ServedModel.from_row(row), project_id=row["project_id"], profile=profile or {},
                   y_column=row["y_column"], thresholds=_json(row["thresholds"]), nullable=list(row["nullable"] or []),
                   labels=_json(row["labels"]))


_staged: dict[str, dict] = {}


def stage(profile) -> str:
    """pgmodels._stage, called only by pgmodels._stage_profile (definer) once it has checked
    the caller: a model's profile kept here under a one-time token for Reference.load to
    take."""
    import secrets

    if len(_staged) > 64:  # tokens nobody took (a caller staging by hand)
        _staged.clear()
    token = secrets.token_hex(16)
    _staged[token] = _json(profile) if profile is not None else None
    return token


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


@dataclass
class Current:
    rows: int
    X: np.ndarray  # rows x numeric features, float32, NaN for NULL
    T: np.ndarray | None  # rows x text features, object, None for NULL
    numeric_names: list[str]
    text_names: list[str]
    window_start: object
    window_end: object
    y: list | None = None  # the target column's values, when asked for (a retrain's holdout)


def check_window(rel: Relation, since, time_column: str | None) -> None:
    if since is not None and time_column is None:
        raise PgmodelsError("since needs time_column", detail="A window is the rows whose time column is at or after since.",
                            hint="Pass time_column => 'the_timestamp_column'.", sqlstate=INVALID_PARAMETER_VALUE)
    if time_column is None:
        return
    col = rel.columns.get(time_column)
    if col is None:
        raise PgmodelsError(f"column {q(time_column)} of relation {rel.display} does not exist",
                            detail="The time column picks the rows of a window.", sqlstate=UNDEFINED_COLUMN)
    if col.is_array or col.type not in TIME_TYPES:
        raise PgmodelsError(f"time column {q(time_column)} must be a timestamp or a date, not {col.type}",
                            hint="Monitor a view that casts it to timestamptz.", sqlstate=DATATYPE_MISMATCH)


def window(time_column: str | None, since=None, until=None) -> tuple[list[str], list, list]:
    """The conditions (on alias s), parameters and their types of since <= time_column < until."""
    where, params, types = [], [], []
    if time_column is not None:
        t = f"s.{qi(time_column)}"
        if since is not None:
            params.append(str(since)); types.append("timestamptz")
            where.append(f"{t} >= ${len(params)}::timestamptz")
        if until is not None:
            params.append(str(until)); types.append("timestamptz")
            where.append(f"{t} < ${len(params)}::timestamptz")
    return where, params, types


def read(ref: Reference, rel: Relation, since=None, time_column: str | None = None, until=None,
         y_column: str | None = None, who: str = "The current role", holdout: tuple[str, list] | None = None) -> Current:
    """The rows of rel (those with since <= time_column < until, when given), checked
    and read as the caller. holdout: (a row's key on alias s, keys): only the rows whose
    key is one of them (a retrain's held-out rows, monitor/holdout.py)."""
    model = ref.model
    check_window(rel, since, time_column)
    columns = feature_columns(model, rel)
    extra = [c for c in (time_column, y_column) if c]
    require_select(rel, columns + extra, who=who, hint="Drift is computed with the rights of the role that asks for it.")
    numeric, texts = numeric_expr(model, rel, nan_nulls=True), text_expr(model)
    where, params, types = window(time_column, since, until)
    if holdout is not None:
        from .holdout import matching

        params.append(list(holdout[1])); types.append("text[]")
        where.append(matching(holdout[0], len(params)))
    if time_column is not None:
        t = f"s.{qi(time_column)}"
        bounds = f"pg_catalog.min({t})::timestamptz AS first, pg_catalog.max({t})::timestamptz AS last"
    else:
        bounds = "NULL::timestamptz AS first, NULL::timestamptz AS last"
    y = f"pg_catalog.array_agg(s.{qi(y_column)}::text) AS y" if y_column else "NULL::text[] AS y"
    sql = (f"SELECT pg_catalog.count(*) AS n, {bounds}, {y}, "
           f"{'pg_catalog.array_send(pg_catalog.array_agg(' + numeric + '))' if numeric else 'NULL::bytea'} AS x, "
           f"{'pg_catalog.array_agg(' + texts + ')' if texts else 'NULL::text[]'} AS t "
           f"FROM {rel.qualified} s" + (f" WHERE {' AND '.join(where)}" if where else ""))
    row = query(sql, params, types)[0]
    n = int(row["n"])
    if n == 0:
        span = f" in the window from {since}" if since is not None else ""
        raise PgmodelsError(f"relation {rel.display} has no rows{span}",
                            detail="There is nothing to compare with the model's reference.",
                            hint="Widen the window, or wait for data." if since is not None else None,
                            sqlstate=DATA_EXCEPTION)
    numeric_names = [model.feature_names[i] for i, t in enumerate(model.feature_types) if t != "text"]
    text_names = [model.feature_names[i] for i, t in enumerate(model.feature_types) if t == "text"]
    if row["x"] is not None:
        values = from_array_send(bytes(row["x"]))
        if not isinstance(values, np.ndarray):  # an array feature with NULL elements
            values = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        X = values.reshape(n, len(numeric_names))
    else:
        X = np.zeros((n, 0), dtype=np.float32)
    T = np.array(row["t"], dtype=object).reshape(n, len(text_names)) if row["t"] is not None else None
    return Current(rows=n, X=X, T=T, numeric_names=numeric_names, text_names=text_names,
                   window_start=since if since is not None else row["first"],
                   window_end=until if until is not None else row["last"], y=row["y"])


def predictions(ref: Reference, cur: Current, model_id: int | None = None, output: str | None = None):
    """The model's answers on the rows it can score (those with no NULL it was not trained
    to impute): (mask of scored rows, answers). model_id: another version of the project
    (a retrain's candidate); the caller's predict privilege is checked by _lookup."""
    project, mid = ref.model.project, model_id or ref.model.id
    got = query("SELECT pgmodels._stamp() AS stamp, pgmodels._lookup($1, $2, pgmodels._credential()) AS loaded",
                [project, mid], ["text", "bigint"])[0]
    if not got["loaded"]:
        query("SELECT pgmodels._raise_pending(NULL::integer)")
    model = cache.current(project, mid, got["stamp"], got["loaded"])
    nullable = set(model.nullable or [])
    numeric = [n for n, t in zip(model.feature_names, model.feature_types) if t != "text"]
    keep = ~np.isinf(cur.X).any(axis=1) if cur.X.size else np.ones(cur.rows, dtype=bool)  # beyond float32
    for j, name in enumerate(numeric):
        if name not in nullable:
            keep &= ~np.isnan(cur.X[:, j])
    T = cur.T
    if T is not None:
        texts = [n for n, t in zip(model.feature_names, model.feature_types) if t == "text"]
        T = T.copy()
        for j, name in enumerate(texts):
            missing = np.array([v is None for v in T[:, j]], dtype=bool)
            if name not in nullable:
                keep &= ~missing
            T[missing, j] = ""
        T = T[keep]
    X = cur.X[keep]
    out = output or ("label" if model.task == "classification" else "prediction")
    if X.shape[0] == 0:
        return keep, []
    fed = vectorized.feed_arrays(model, np.ascontiguousarray(X, dtype=np.float32), T)
    return keep, vectorized.answers(model, fed, int(X.shape[0]), [out])[out]
