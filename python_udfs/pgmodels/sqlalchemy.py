"""pgmodels' SQL functions for SQLAlchemy 2, typed: Core and ORM, psycopg 3 as the driver.

    from pgmodels.sqlalchemy import predict, predict_proba, predict_label

    select(Customer.id, predict("churn", Customer))               # a mapped class: its row, matched by name
    select(customers.c.id, predict_proba("churn", customers))     # a Table (or an alias): the same
    select(predict_label("churn", {"tenure_months": 3, "contract": "one-year"}))   # a dict: jsonb
    select(predict("churn", [3.0, 95.0, 1.0]))                    # numbers in feature order: real[]
    select(predict("churn", [customers.c.a, customers.c.b]))      # columns in feature order: real[]
    select(predict(42, Customer))                                 # a model version by id

Each is a ``GenericFunction`` whose type gives the Python value back: ``predict`` a float,
``predict_proba`` a list of floats, ``predict_label`` a str, ``predict_batch`` one float per
row (a set-returning function: use it as a column, or
``.table_valued("prediction").render_derived()``, which names its column ``prediction``).
Importing this module also registers them, so ``sqlalchemy.func.predict(...)`` is typed too.

The functions are called unqualified, so the extension's schema (public by default) must
be on the connection's search_path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, Text, inspect, literal
from sqlalchemy import cast as sa_cast
from sqlalchemy import func as sa_func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, REAL, array
from sqlalchemy.sql import ClauseElement, ColumnElement, FromClause
from sqlalchemy.sql.functions import GenericFunction

__all__ = ["predict", "predict_proba", "predict_label", "predict_batch", "features"]


def project_arg(project: str | int | ColumnElement) -> ColumnElement:
    """A project name (text) or a model id (bigint): the overload is chosen by type."""
    if isinstance(project, ClauseElement):
        return project
    if isinstance(project, bool) or not isinstance(project, (str, int)):
        raise TypeError(f"pgmodels: a project is a name or a model id, not {type(project).__name__}")
    return literal(project, Text() if isinstance(project, str) else BigInteger())


def features(value: Any) -> ColumnElement:
    """The features argument for any form pgmodels takes (see the module's docstring)."""
    if isinstance(value, ColumnElement):
        return value
    if isinstance(value, FromClause):
        return value.table_valued()  # the whole row: `predict('p', customers)`
    if isinstance(value, type) or hasattr(value, "_sa_class_manager") or _is_aliased(value):
        return inspect(value).selectable.table_valued()  # a mapped class or an aliased() one
    if isinstance(value, Mapping):
        if any(isinstance(v, ClauseElement) for v in value.values()):
            pairs = [x for k, v in value.items() for x in (literal(str(k), Text()), v)]
            return sa_func.jsonb_build_object(*pairs)
        return literal(dict(value), JSONB())
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if any(isinstance(v, ClauseElement) for v in value):
            return sa_cast(array(list(value)), ARRAY(REAL()))
        return literal([float(v) for v in value], ARRAY(REAL()))
    raise TypeError(f"pgmodels: cannot pass {type(value).__name__} as features; give a mapped class, a table, "
                    "a dict, a list of numbers or columns, or a SQL expression")


def _is_aliased(value: Any) -> bool:
    try:
        from sqlalchemy.orm.util import AliasedClass
    except ImportError:  # pragma: no cover - Core-only installs still have sqlalchemy.orm
        return False
    return isinstance(value, AliasedClass)


class predict(GenericFunction[float]):
    """``predict(project, features)``: the prediction, a class or a value (real)."""
    type = REAL()
    inherit_cache = True

    def __init__(self, project, features_, **kw):
        super().__init__(project_arg(project), features(features_), **kw)


class predict_proba(GenericFunction[list]):
    """``predict_proba(project, features)``: the class probabilities, in the model's label order (real[])."""
    type = ARRAY(REAL())
    inherit_cache = True

    def __init__(self, project, features_, **kw):
        super().__init__(project_arg(project), features(features_), **kw)


class predict_label(GenericFunction[str]):
    """``predict_label(project, features)``: the predicted class as text."""
    type = Text()
    inherit_cache = True

    def __init__(self, project, features_, **kw):
        super().__init__(project_arg(project), features(features_), **kw)


class predict_batch(GenericFunction[float]):
    """``predict_batch(project, rows)``: one prediction per row of a 2-D array (or a flat
    one of whole rows), in one call; a set-returning function."""
    type = REAL()
    inherit_cache = True

    def __init__(self, project, rows, **kw):
        if not isinstance(rows, ClauseElement):
            rows = literal([[float(v) for v in row] for row in rows], ARRAY(REAL(), dimensions=2))
        super().__init__(project_arg(project), rows, **kw)
