"""The database side of the families in :mod:`families`: train_joint(), and train() for
clustering and decomposition projects (udf.train hands those over).

Arguments are resolved as train() resolves them (left NULL: the project's previous
training), the relation is read with the caller's rights, the fit runs in the training
child, and the model is stored through the same catalog path, so the owner checks,
automatic deployment and lineage are train()'s. Features must be numeric (numbers or
fixed-length numeric arrays, as the digits images are) and not NULL: these families take
no preprocessing.
"""

from __future__ import annotations

import json

import numpy as np

from .._json import read_json
from .._plpy import qualified, query, require_execute, udf
from ..catalog.store import store_model
from ..errors import (q, DATA_EXCEPTION, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, UNDEFINED_COLUMN,
                      PgmodelsError)
from .. import progress
from . import families, limits, runner, snapshots, udf as base

JOINT_SIGNATURE = "train_joint(text, text, text, text[], text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
DEFAULT_ALGORITHM = {"regression": "linear", "clustering": "kmeans", "decomposition": "pca"}


def is_family_task(task, project_task) -> bool:
    return (task if task is not None else project_task) in families.UNSUPERVISED


@udf(empty=[])
def train_joint(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params,
                search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot):
    require_execute(qualified(base.TRAIN_SIGNATURE), "train")
    require_execute(qualified(JOINT_SIGNATURE), "train_joint")
    if task is not None and task != "regression":
        raise PgmodelsError(f"train_joint() does not do {q(task)}",
                            detail="Joint training fits several targets at once, which is regression.",
                            hint="Use task 'regression', or train() for one target.", sqlstate=INVALID_PARAMETER_VALUE)
    if y_column_name is not None and (len(y_column_name) < 2 or any(not c for c in y_column_name)
                                      or len(set(y_column_name)) != len(y_column_name)):
        raise PgmodelsError("train_joint() needs two or more distinct target columns",
                            detail=f"Got {len(y_column_name)}." if len(y_column_name) < 2 else
                            "The target columns must be distinct and not NULL.",
                            hint="Use train() for one target.", sqlstate=INVALID_PARAMETER_VALUE)
    return _train("joint", project_name, task, relation_name, y_column_name, algorithm, hyperparams, search,
                  search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess,
                  materialize_snapshot)


def train_unsupervised(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search,
                       search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess,
                       materialize_snapshot):
    """train() for a clustering or decomposition project (train() has checked EXECUTE)."""
    if y_column_name is not None:
        raise PgmodelsError(f"a {task or 'clustering or decomposition'} project has no target column",
                            hint="Leave y_column_name out: every column of the relation is a feature.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return _train("unsupervised", project_name, task, relation_name, None, algorithm, hyperparams, search,
                  search_params, search_args, test_size, test_sampling, automatic_deploy, preprocess,
                  materialize_snapshot)


def _train(kind, project_name, task, relation_name, targets, algorithm, hyperparams, search, search_params,
           search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot):
    base.check_project_name(project_name)
    progress.start("train", project_name)
    info = query("SELECT task, last_train FROM pgmodels._project_info($1, pgmodels._credential())",
                 [project_name], ["text"])
    project_task = info[0]["task"] if info else None
    previous = json.loads(info[0]["last_train"]) if info and info[0]["last_train"] else {}
    if project_task and task is not None and task != project_task:
        raise PgmodelsError(f'project "{project_name}" is a {project_task} project, not {task}',
                            hint="Use another project name for another task.", sqlstate=INVALID_PARAMETER_VALUE)
    if kind == "joint" and project_task and previous.get("y_columns") is None:
        raise PgmodelsError(f'project "{project_name}" has one target', hint="Use train() for it, or another project "
                            "name for joint training.", sqlstate=INVALID_PARAMETER_VALUE)
    task = task or project_task or ("regression" if kind == "joint" else None)
    if task is None:
        raise PgmodelsError(f'project "{project_name}" has not been trained yet, so task is required',
                            sqlstate=INVALID_PARAMETER_VALUE)
    for name, value in (("search", search), ("search_params", search_params), ("search_args", search_args)):
        if value not in (None, "{}", {}):
            raise PgmodelsError(f"{name} is not supported for {'joint regression' if kind == 'joint' else task}",
                                hint="Train each candidate with its hyperparams instead.",
                                sqlstate=FEATURE_NOT_SUPPORTED)
    if preprocess is not None and read_json(preprocess, "preprocess"):
        raise PgmodelsError(f"preprocess is not supported for {'joint regression' if kind == 'joint' else task}",
                            hint="Train on a view that prepares the columns.", sqlstate=FEATURE_NOT_SUPPORTED)
    reuse_model = algorithm is None
    args = {"relation_name": relation_name or previous.get("relation_name"),
            "y_columns": targets or previous.get("y_columns"),
            "algorithm": algorithm or (previous.get("algorithm") if reuse_model else None) or DEFAULT_ALGORITHM[task],
            "hyperparams": read_json(hyperparams, "hyperparams") if hyperparams is not None
            else (previous.get("hyperparams") if reuse_model else None) or {},
            "test_size": test_size if test_size is not None else previous.get("test_size", 0.25),
            "test_sampling": test_sampling or previous.get("test_sampling", "random")}
    if not args["relation_name"]:
        raise PgmodelsError(f'project "{project_name}" has not been trained yet, so relation_name is required',
                            sqlstate=INVALID_PARAMETER_VALUE)
    if kind == "joint" and not args["y_columns"]:
        raise PgmodelsError(f'project "{project_name}" has not been trained yet, so y_column_name is required',
                            sqlstate=INVALID_PARAMETER_VALUE)
    if not isinstance(args["hyperparams"], dict):
        raise PgmodelsError("hyperparams must be a jsonb object", sqlstate=INVALID_PARAMETER_VALUE)
    spec = families.FamilySpec(task=task, algorithm=args["algorithm"], hyperparams=args["hyperparams"],
                               test_size=float(args["test_size"]), test_sampling=args["test_sampling"])
    families.make_estimator(task, spec.algorithm, spec.hyperparams)  # names and values, before any reading
    caps = limits.admin_limits()
    limits.check_spec(spec, caps)
    rel = base.resolve_relation(args["relation_name"])
    snapshot = None
    if materialize_snapshot:
        rel, snapshot = snapshots.materialize(rel)
    progress.report("reading")
    names, X, Y, arrays = read_numeric(rel, args["y_columns"] or [], caps["max_training_rows"])
    progress.report("reading", f"read {len(X)} rows of {rel.display} ({len(names)} features)")
    trained = runner.run(families.fit_family, families.FamilyModel, spec, X, Y)
    training = {"relation": rel.display, "test_size": args["test_size"], "test_sampling": args["test_sampling"],
                "preprocess": {}, "rows": len(X), "conversion": trained.conversion, "nullable": [],
                "notes": trained.notes, "array_features": arrays}
    if args["y_columns"]:
        training["y_columns"] = args["y_columns"]
    if snapshot:
        training.update(snapshot=snapshot, relation=snapshot["source"])
    last = {"task": task, "relation_name": rel.quoted if not rel.temporary else None, "y_columns": args["y_columns"],
            "algorithm": spec.algorithm, "hyperparams": spec.hyperparams, "test_size": args["test_size"],
            "test_sampling": args["test_sampling"], "preprocess": {}}
    progress.report("storing", f"storing the model ({trained.runtime}, {len(trained.artifact)} bytes)")
    stored = store_model(
        project_name=project_name, task=task, algorithm=spec.algorithm, runtime=trained.runtime,
        artifact=trained.artifact, hyperparams=trained.hyperparams, metrics=trained.metrics, search_results=None,
        feature_names=names, feature_types=["float"] * len(names), labels=None, training=training,
        library_versions=trained.library_versions, last_train=last,
        deploy_mode="if_better" if automatic_deploy else "never")
    progress.finish(f'trained version {stored["version"]}', ", deployed" if stored["deployed"] else ", not deployed")
    return [(project_name, task, spec.algorithm, stored["deployed"], stored["model_id"], stored["version"],
             trained.runtime, json.dumps(trained.metrics))]


def read_numeric(rel, targets: list[str], max_rows: int):
    """(feature names, X, Y or None, array columns) of a relation whose columns are all
    numeric (arrays flattened to name[1], name[2], ...); the targets are the given columns."""
    types = dict(rel.columns)
    missing = [t for t in targets if t not in types]
    if missing:
        raise PgmodelsError(f'column "{missing[0]}" does not exist in relation "{rel.display}"',
                            hint="Columns: %s." % ", ".join(types), sqlstate=UNDEFINED_COLUMN)
    features = [(n, t) for n, t in rel.columns if n not in targets]
    for name, sqltype in features + [(t, types[t]) for t in targets]:
        if sqltype not in base.NUMERIC_TYPES and (sqltype not in base.ARRAY_TYPES or name in targets):
            raise PgmodelsError(f'column "{name}" has type {sqltype}, which this task cannot use',
                                hint="Joint regression, clustering and decomposition take numbers and numeric arrays; "
                                     "train on a view that casts or leaves out the others.",
                                sqlstate=FEATURE_NOT_SUPPORTED)
    if not features:
        raise PgmodelsError(f'relation "{rel.display}" has no feature columns', sqlstate=INVALID_PARAMETER_VALUE)
    base._check_privileges(rel, [n for n, _ in features] + targets)
    from .._plpy import quote_ident

    def agg(n, t):
        if t in base.ARRAY_TYPES:
            return f"pg_catalog.array_agg(pg_catalog.array_to_json({quote_ident(n)}::float8[])::text)"
        return f"pg_catalog.array_agg({quote_ident(n)}{'::integer' if t == 'boolean' else ''}::float8)"
    cols = [agg(n, t) + f" AS c{i}" for i, (n, t) in enumerate(features)]
    cols += [agg(t, types[t]) + f" AS y{i}" for i, t in enumerate(targets)]
    row = query(f"SELECT count(*) AS n, {', '.join(cols)} FROM (SELECT * FROM {rel.quoted} LIMIT $1) s",
                [max_rows + 1], ["bigint"])[0]
    if row["n"] == 0:
        raise PgmodelsError(f'relation "{rel.display}" has no rows', detail="There is nothing to train on.",
                            sqlstate=DATA_EXCEPTION)
    limits.check_rows(row["n"], max_rows, rel.display)
    names, columns, arrays = [], [], {}
    for i, (n, t) in enumerate(features):
        if t in base.ARRAY_TYPES:
            flat = base.flatten_array_column(n, row[f"c{i}"])
            arrays[n] = len(flat)
            names += [f"{n}[{j + 1}]" for j in range(len(flat))]
            columns += flat
        else:
            names.append(n)
            columns.append(row[f"c{i}"])
    X = _matrix(columns, names)
    Y = _matrix([row[f"y{i}"] for i in range(len(targets))], targets) if targets else None
    return names, X, Y, arrays


def _matrix(columns: list[list], names: list[str]) -> np.ndarray:
    for name, values in zip(names, columns):
        nulls = sum(v is None for v in values)
        if nulls:
            raise PgmodelsError(f"column {q(name)} contains NULL values",
                                detail=f"{nulls} of {len(values)} rows are NULL.",
                                hint="Filter them out, or train on a view that fills them in.", sqlstate="22004")
    X = np.array(columns, dtype=np.float64).T
    if not np.isfinite(X).all():
        raise PgmodelsError("the relation holds NaN or Infinity", hint="Filter those rows out.", sqlstate="22023")
    return X
