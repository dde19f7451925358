"""The data sets ``pgml.load_dataset`` loads, offline, from scikit-learn's bundled copies.

The tables (names, column names, types) are PostgresML's; they are created in SQL
(extension/pgml/sql/040_load_dataset.sql). This module only hands the rows over, as one
jsonb array of objects keyed by column name, which the SQL side inserts with
jsonb_populate_recordset. PostgresML's own copies are the same data: diabetes unscaled,
digits as 8x8 smallint images, breast_cancer's target as ``malignant`` (sklearn's class 0).
"""

from __future__ import annotations

import json

from .._plpy import udf
from ..errors import PgmodelsError, q

NAMES = ("breast_cancer", "diabetes", "digits", "iris", "linnerud", "wine")


def rows(name: str, limit: int | None) -> list[dict]:
    from sklearn import datasets as sk

    if name == "breast_cancer":
        d = sk.load_breast_cancer()
        out = [{**dict(zip(d.feature_names, map(float, x))), "malignant": bool(t == 0)}
               for x, t in zip(d.data, d.target)]
    elif name == "diabetes":
        d = sk.load_diabetes(scaled=False)
        out = [{**dict(zip(d.feature_names, map(float, x))), "target": float(t)} for x, t in zip(d.data, d.target)]
    elif name == "digits":
        d = sk.load_digits()
        out = [{"image": img.astype(int).tolist(), "target": int(t)} for img, t in zip(d.images, d.target)]
    elif name == "iris":
        d = sk.load_iris()
        cols = ("sepal_length", "sepal_width", "petal_length", "petal_width")
        out = [{**dict(zip(cols, map(float, x))), "target": int(t)} for x, t in zip(d.data, d.target)]
    elif name == "linnerud":
        d = sk.load_linnerud()
        out = [{**dict(zip((n.lower() for n in d.feature_names), map(float, x))),
                **dict(zip((n.lower() for n in d.target_names), map(float, y)))} for x, y in zip(d.data, d.target)]
    elif name == "wine":
        d = sk.load_wine()
        out = [{**dict(zip(d.feature_names, map(float, x))), "target": int(t)} for x, t in zip(d.data, d.target)]
    else:  # the SQL side checks the name first; this is for a direct call of the core
        raise PgmodelsError(f"unknown data set {q(name)}", detail="The data sets are " + ", ".join(NAMES) + ".")
    return out if limit is None else out[:limit]


@udf
def rows_json(name: str, limit: int | None) -> str:
    if limit is not None and limit < 0:
        raise PgmodelsError("limit must not be negative")
    return json.dumps(rows(name, limit))
