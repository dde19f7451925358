"""train(): the database side of training.

Resolves the arguments against the project's previous training (its owner's), resolves
and reads the relation with the caller's rights, checks the administrator's limits,
fits in a child process that stops when the statement is cancelled
(:mod:`pgmodels.training.runner`), and stores the result through
:mod:`pgmodels.catalog.store` in the same transaction, so a failed or cancelled training
leaves no half-written model row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .._json import read_json
from .._plpy import qualified as _qualified, query, quote_ident, require_execute, udf
from ..catalog.store import store_model
from ..explain.store import store_explainer
from ..errors import (DATA_EXCEPTION, FEATURE_NOT_SUPPORTED, INSUFFICIENT_PRIVILEGE, INVALID_PARAMETER_VALUE,
                      UNDEFINED_COLUMN, UNDEFINED_TABLE, PgmodelsError)
from .. import progress
from . import limits, runner
from ..monitor import holdout, lineage

TRAIN_SIGNATURE = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"

TASKS = ("classification", "regression")
DATA_ARGS = ("task", "relation_name", "y_column_name", "test_size", "test_sampling", "preprocess")
MODEL_ARGS = ("algorithm", "hyperparams", "search", "search_params", "search_args")
FIRST_DEFAULTS = {"algorithm": "linear", "hyperparams": {}, "search": None, "search_params": {},
                  "search_args": {}, "test_size": 0.25, "test_sampling": "stratified", "preprocess": {}}
JSON_ARGS = ("hyperparams", "search_params", "search_args", "preprocess")

# PostgreSQL types train() reads as numbers; text-like types are categorical features;
# arrays of numbers (any number of dimensions, one length for every row) are flattened
# into one feature per element, name[1], name[2], ... in row-major order.
NUMERIC_TYPES = {"smallint", "integer", "bigint", "real", "double precision", "numeric", "boolean"}
ARRAY_TYPES = {t + "[]" for t in NUMERIC_TYPES - {"boolean"}}
TEXT_TYPES = {"text", "character varying", "character", "name", "citext"}


def resolve_args(given: dict, previous: dict | None) -> dict:
    """Fill the arguments left NULL from the previous training, then the first-time defaults."""
    args = dict(given)
    previous = previous or {}
    reuse = list(DATA_ARGS) + (list(MODEL_ARGS) if args.get("algorithm") is None else [])
    for name in reuse:
        if args.get(name) is None and previous.get(name) is not None:
            args[name] = previous[name]
    for name, default in FIRST_DEFAULTS.items():
        if args.get(name) is None:
            args[name] = default
    for name in JSON_ARGS:
        if not isinstance(args[name], dict):
            raise PgmodelsError(f"{name} must be a jsonb object", detail=f"Got {json.dumps(args[name])[:80]}.",
                                sqlstate=INVALID_PARAMETER_VALUE)
    if args["task"] not in TASKS:
        if args["task"] is None:
            raise PgmodelsError(f'project "{args["project_name"]}" has not been trained yet, so task is required',
                                hint="Pass task => 'classification' or task => 'regression'.",
                                sqlstate=INVALID_PARAMETER_VALUE)
        raise PgmodelsError(f'unknown task "{args["task"]}"', hint="Use classification or regression.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    for name in ("relation_name", "y_column_name"):
        if not args.get(name):
            raise PgmodelsError(f'project "{args["project_name"]}" has not been trained yet, so {name} is required',
                                sqlstate=INVALID_PARAMETER_VALUE)
    return args


@dataclass
class Relation:
    oid: int
    quoted: str          # schema-qualified and quoted: safe to put in a query
    display: str
    columns: list[tuple[str, str]]   # (name, type) in column order
    temporary: bool = False


def resolve_relation(name: str) -> Relation:
    """Find the relation the way PostgreSQL parses a name; never paste the text into SQL."""
    import plpy

    try:
        rows = query("SELECT pg_catalog.to_regclass($1)::oid AS oid", [name], ["text"])
    except plpy.SPIError as e:  # a syntactically invalid name: to_regclass raises for those
        if getattr(e, "sqlstate", None) not in ("42602", "3F000", "3D000", "0A000", "42601"):
            raise  # a cancel, a timeout: not about the name
        raise PgmodelsError(f'invalid relation name "{name}"', detail=e.args[0] if e.args else None,
                            sqlstate=INVALID_PARAMETER_VALUE) from None
    oid = rows[0]["oid"]
    if oid is None:
        raise PgmodelsError(f'relation "{name}" does not exist', sqlstate=UNDEFINED_TABLE,
                            hint="Name a table or view the caller can see, schema-qualified if it is not on the search_path.")
    meta = query("""SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname) AS quoted,
                           n.nspname || '.' || c.relname AS display, c.relpersistence = 't' AS temporary,
                           n.nspname = 'pgmodels_snapshots' AS snapshot
                    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = $1""", [oid], ["oid"])[0]
    if meta["snapshot"]:  # only a table pgmodels made there (training/snapshots.py)
        from .snapshots import check

        check(oid)
    cols = query("""SELECT a.attname::text AS name,
                           pg_catalog.format_type(coalesce(nullif(t.typbasetype, 0), a.atttypid), NULL) AS type
                    FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                    WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""", [oid], ["oid"])
    return Relation(oid=oid, quoted=meta["quoted"], display=meta["display"],
                    columns=[(c["name"], c["type"]) for c in cols], temporary=bool(meta["temporary"]))


def _check_privileges(rel: Relation, names: list[str]) -> None:
    denied = [n for n in names if not query(
        "SELECT pg_catalog.has_column_privilege($1, $2, 'SELECT') AS ok", [rel.oid, n], ["oid", "text"])[0]["ok"]]
    if denied:
        raise PgmodelsError(f'permission denied for relation "{rel.display}"',
                            detail="Training reads columns the current role may not select: %s." % ", ".join(denied),
                            hint="Ask the owner to GRANT SELECT on it, or train on a view of what you may read.",
                            sqlstate=INSUFFICIENT_PRIVILEGE)


def read_relation(rel: Relation, y_column: str, max_rows: int, info: dict | None = None):
    """The relation's columns as fit.Column lists: every column but the target is a
    feature; and the array columns flattened, as {name: length}. ``info``, if given,
    receives the rows' fingerprint (see monitor.lineage.FINGERPRINT_SQL)."""
    from ..monitor.lineage import FINGERPRINT_SQL, fingerprint
    from .fit import Column

    types = dict(rel.columns)
    if y_column not in types:
        raise PgmodelsError(f'column "{y_column}" does not exist in relation "{rel.display}"',
                            hint="Columns: %s." % ", ".join(types), sqlstate=UNDEFINED_COLUMN)
    features = []
    for name, sqltype in rel.columns:
        if name == y_column:
            continue
        if sqltype in NUMERIC_TYPES:
            features.append((name, "float"))
        elif sqltype in ARRAY_TYPES and name != y_column:
            features.append((name, "array"))
        elif sqltype in TEXT_TYPES:
            features.append((name, "text"))
        else:
            raise PgmodelsError(f'column "{name}" has type {sqltype}, which train() cannot use as a feature',
                                hint="Train on a view that casts it to a number or text, or leaves it out.",
                                sqlstate=FEATURE_NOT_SUPPORTED)
    if not features:
        raise PgmodelsError(f'relation "{rel.display}" has no feature columns besides "{y_column}"',
                            sqlstate=INVALID_PARAMETER_VALUE)
    _check_privileges(rel, [n for n, _ in features] + [y_column])
    y_type = types[y_column]
    if y_type not in NUMERIC_TYPES and y_type not in TEXT_TYPES:
        raise PgmodelsError(f'target column "{y_column}" has type {y_type}, which train() cannot predict',
                            hint="Train on a view that casts it to a number or text.", sqlstate=FEATURE_NOT_SUPPORTED)
    cast = {"float": "::float8", "text": "::text", "boolean": "::integer::float8",
            "array": "::float8[]"}
    y_cast = "" if y_type == "boolean" else ("::float8" if y_type in ("real", "double precision", "numeric") else "")
    selects = [f"pg_catalog.array_agg({quote_ident(n)}{cast.get(types[n], cast[k])}) AS c{i}"
               if k != "array" else f"pg_catalog.array_agg(pg_catalog.array_to_json({quote_ident(n)}::float8[])::text) AS c{i}"
               for i, (n, k) in enumerate(features)]
    selects.append(f"pg_catalog.array_agg({quote_ident(y_column)}{y_cast}) AS y")
    held = holdout.training_filter(rel.oid)  # a monitor's retrain: its held-out rows stay out
    if held is None:
        row = query(f"SELECT count(*) AS n, {FINGERPRINT_SQL} AS fp, {', '.join(selects)} "
                    f"FROM (SELECT * FROM {rel.quoted} LIMIT $1) s", [max_rows + 1], ["bigint"])[0]
    else:
        row = query(f"SELECT count(*) AS n, {FINGERPRINT_SQL} AS fp, {', '.join(selects)} "
                    f"FROM (SELECT * FROM {rel.quoted} s WHERE NOT {held[0]} LIMIT $1) s",
                    [max_rows + 1, held[1]], ["bigint", "text[]"])[0]
        holdout.for_training["excluded"] = query(f"SELECT count(*) AS n FROM {rel.quoted} s WHERE {held[0]}",
                                                 [None, held[1]], ["bigint", "text[]"])[0]["n"]
    if info is not None:
        info["fingerprint"] = fingerprint(row["n"], row["fp"])
    if row["n"] == 0:
        raise PgmodelsError(f'relation "{rel.display}" has no rows', detail="There is nothing to train on.",
                            sqlstate=DATA_EXCEPTION)
    limits.check_rows(row["n"], max_rows, rel.display)
    columns, arrays = [], {}
    for i, (n, k) in enumerate(features):
        if k == "array":
            flat = flatten_array_column(n, row[f"c{i}"])
            arrays[n] = len(flat)
            columns.extend(Column(name=f"{n}[{j + 1}]", kind="float", values=v) for j, v in enumerate(flat))
        else:
            columns.append(Column(name=n, kind=k, values=row[f"c{i}"]))
    y_kind = "text" if y_type in TEXT_TYPES else "float"
    return columns, Column(name=y_column, kind=y_kind, values=row["y"]), arrays


def flatten_array_column(name: str, rows: list) -> list[list]:
    """An array column (each row's array as JSON text) as one value list per element."""
    import json

    from ..serving.inputs import flatten

    flat = []
    for r, text in enumerate(rows):
        if text is None:
            raise PgmodelsError(f'array column "{name}" is NULL in row {r + 1}',
                                hint="Filter such rows out, or train on a view that fills them in.",
                                sqlstate="22004")
        flat.append(flatten(json.loads(text)))
    width = len(flat[0])
    bad = next((r for r, values in enumerate(flat) if len(values) != width), None)
    if width == 0 or bad is not None:
        raise PgmodelsError(f'array column "{name}" does not have one length for every row',
                            detail=f"Row 1 has {width} elements" + (f", row {bad + 1} has {len(flat[bad])}." if bad else "."),
                            hint="Array features must have a fixed, non-zero number of elements.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    return [list(col) for col in zip(*flat)]




def _warm(spec) -> None:
    """Import here what the training child will use (and check the algorithm and its
    hyperparameters on the way): the child is forked from this backend, so the next
    training in it starts with everything loaded."""
    import onnxruntime  # noqa: F401
    import skl2onnx  # noqa: F401
    import sklearn.pipeline  # noqa: F401

    from . import algorithms, convert, runner

    algorithms.make_estimator(spec.algorithm, algorithms.check_task(spec.task), spec.hyperparams)
    # the ONNX converters too (onnxmltools, LightGBM, CatBoost): registered here once, not
    # in every training child (0.08 s each)
    convert.register_converters()
    runner.know_threads()  # after those imports: their OpenMP pools are the ones to widen
    from ..serving import native

    native.load_library()  # the child checks the trees it translates with it (fit.py)


def check_project_name(project_name) -> None:
    if project_name is None or not project_name.strip():
        raise PgmodelsError("project_name must not be empty or blank", sqlstate=INVALID_PARAMETER_VALUE)
    if len(project_name) > 200:
        raise PgmodelsError("project_name is too long",
                            detail=f"It has {len(project_name)} characters; the limit is 200.",
                            sqlstate=INVALID_PARAMETER_VALUE)


@udf(empty=[])
def train(project_name, task, relation_name, y_column_name, algorithm, hyperparams, search, search_params,
          search_args, test_size, test_sampling, automatic_deploy, preprocess, materialize_snapshot=False):
    from .fit import TrainedModel, TrainSpec, train_model
    from . import family_udf, snapshots

    require_execute(_qualified(TRAIN_SIGNATURE), "train")
    check_project_name(project_name)
    progress.start("train", project_name)
    info = query("SELECT task, last_train FROM pgmodels._project_info($1, pgmodels._credential())",
                 [project_name], ["text"])
    previous = json.loads(info[0]["last_train"]) if info and info[0]["last_train"] else None
    if family_udf.is_family_task(task, info[0]["task"] if info else None):  # clustering, decomposition
        return family_udf.train_unsupervised(project_name, task, relation_name, y_column_name, algorithm, hyperparams,
                                             search, search_params, search_args, test_size, test_sampling,
                                             automatic_deploy, preprocess, materialize_snapshot)
    if info and info[0]["task"] and task is not None and task != info[0]["task"]:
        raise PgmodelsError(f'project "{project_name}" is a {info[0]["task"]} project, not {task}',
                            hint="Use another project name for another task.", sqlstate=INVALID_PARAMETER_VALUE)
    given = dict(project_name=project_name, task=task, relation_name=relation_name, y_column_name=y_column_name,
                 algorithm=algorithm, search=search, test_size=test_size, test_sampling=test_sampling)
    for name, value in (("hyperparams", hyperparams), ("search_params", search_params),
                        ("search_args", search_args), ("preprocess", preprocess)):
        given[name] = read_json(value, name) if value is not None else None
    args = resolve_args(given, previous)
    spec = TrainSpec(task=args["task"], algorithm=args["algorithm"], hyperparams=args["hyperparams"],
                     search=args["search"], search_params=args["search_params"], search_args=args["search_args"],
                     test_size=float(args["test_size"]), test_sampling=args["test_sampling"],
                     preprocess=args["preprocess"])
    caps = limits.admin_limits()
    limits.check_spec(spec, caps)
    runner.in_background(_warm, spec)
    rel = resolve_relation(args["relation_name"])
    snapshot = None
    if materialize_snapshot:  # train on a copy of the rows, kept (see snapshots.py)
        rel, snapshot = snapshots.materialize(rel)
    progress.report("reading")
    read_info = {}
    features, target, arrays = read_relation(rel, args["y_column_name"], caps["max_training_rows"], read_info)
    progress.report("reading", f"read {len(target.values)} rows of {rel.display} ({len(features)} features)")
    limits.check_data(spec, caps, len(target.values),
                      len({v for v in target.values if v is not None}) if spec.task == "classification" else 0)
    trained = runner.run(train_model, TrainedModel, spec, features, target)
    nullable = [c for c, opts in args["preprocess"].items() if isinstance(opts, dict)
                and opts.get("impute", "error") != "error"]
    training = {"relation": rel.display, "y_column": args["y_column_name"], "test_size": args["test_size"],
                "test_sampling": args["test_sampling"], "preprocess": args["preprocess"],
                "rows": len(target.values), "conversion": trained.conversion, "nullable": nullable,
                "notes": trained.notes, "array_features": arrays,
                # each feature column's SQL type: the inference server advertises it
                "column_types": {n: t for n, t in rel.columns if n != args["y_column_name"]},
                **lineage.at_training(spec.task, features, target, read_info, trained.prediction_profile,
                                      trained.reference_profile),
                "feature_importances": trained.feature_importances, "evaluation": trained.evaluation,
                "explainer": {k: v for k, v in (trained.explainer_info or {}).items() if k != "importance"}}
    if snapshot:
        training.update(snapshot=snapshot, relation=snapshot["source"])
    last = {k: args[k] for k in DATA_ARGS + MODEL_ARGS}
    # the relation as resolved now, schema-qualified: a later train(project) reads this
    # relation, whatever the search_path of whoever calls it (a temporary table of the
    # same name cannot stand in for it)
    last["relation_name"] = rel.quoted if not rel.temporary else None  # pg_temp_N is another session's later
    progress.report("storing", f"storing the model ({trained.runtime}, {len(trained.artifact)} bytes)")
    stored = store_model(
        project_name=project_name, task=args["task"], algorithm=args["algorithm"], runtime=trained.runtime,
        artifact=trained.artifact, hyperparams=trained.hyperparams, metrics=trained.metrics,
        search_results=trained.search_results, feature_names=trained.feature_names,
        feature_types=trained.feature_types, labels=trained.labels, training=training,
        library_versions=trained.library_versions, last_train=last, native_trees=trained.native_trees,
        deploy_mode="if_better" if automatic_deploy else "never")
    if trained.explainer is not None:
        store_explainer(stored["model_id"], trained.explainer, trained.explainer_info, "training")
    progress.finish(f'trained version {stored["version"]}',
                    ", deployed" if stored["deployed"] else
                    ", a retrain's candidate: the monitor decides whether to deploy it" if lineage.retrain_context else
                    ", not deployed")
    return [(project_name, args["task"], args["algorithm"], stored["deployed"], stored["model_id"],
             stored["version"], trained.runtime, json.dumps(trained.metrics))]
