"""monitor() and run_monitor(): drift reports on a pg_cron schedule.

A monitor belongs to the role that creates it; pg_cron runs it as that role (through
the one pg_cron helper, pgmodels._cron_schedule), so it reads the relation with that
role's rights. Each run compares the rows since the last report's window with the
deployed model's reference, writes a report to pgmodels.drift_report, NOTIFYs channel
``pgmodels_drift`` when a feature drifts (payload: project, report id, status), and,
for a monitor with retrain, retrains (see retrain.py) and records the decision.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .._plpy import qualified, query, require_execute, udf
from ..errors import INVALID_PARAMETER_VALUE, UNDEFINED_COLUMN, PgmodelsError, q
from ..relations import Relation, by_oid, require_select, resolve
from ..batch.plan import feature_columns
from .current import Reference, check_window, read, window
from .report import compare, worst
from . import retrain as retraining


@udf
def create(project_name, relation_name, schedule, time_column, retrain):
    ref = Reference.load(project_name, 0)
    rel = resolve(relation_name, "relation_name")
    check_window(rel, None, time_column)
    columns = feature_columns(ref.model, rel) + ([time_column] if time_column else [])
    if retrain:
        if not ref.y_column or ref.y_column not in rel.columns:
            raise PgmodelsError(f"relation {rel.display} has no target column {q(ref.y_column or '?')}",
                                detail="A monitor that retrains compares the new model with the deployed one on the "
                                       "monitored rows whose target is known.",
                                hint="Monitor a view that joins the outcomes (NULL where not known yet), "
                                     "or create the monitor with retrain => false.",
                                sqlstate=UNDEFINED_COLUMN)
        columns.append(ref.y_column)
        from ..training.udf import TRAIN_SIGNATURE
        require_execute(qualified(TRAIN_SIGNATURE), "train")
    require_select(rel, columns, who="The monitor's role",
                   hint="A monitor reads its relation with the rights of the role that creates it.")
    got = query("SELECT pgmodels._monitor_create(pgmodels._credential(), $1, $2, $3, $4, $5) AS id",
                [project_name, rel.oid, time_column, schedule, bool(retrain)],
                ["text", "oid", "text", "text", "boolean"])
    return got[0]["id"]


@udf
def run(monitor_id):
    """One report of a monitor, as its owner; the report's id (NULL when the window is empty)."""
    import plpy

    m = query("SELECT * FROM pgmodels._monitor_get(pgmodels._credential(), $1)", [monitor_id], ["bigint"])[0]
    ref = Reference.load(m["project"], 0)
    rel = by_oid(m["relation"])
    y = ref.y_column if m["retrain"] and ref.y_column in rel.columns else None
    until = m["now"] if m["time_column"] else None
    if until is not None and rel.columns.get(m["time_column"]) and rel.columns[m["time_column"]].type == "date":
        # a date column: whole days only, so that rows dated today are in tomorrow's window
        until = query("SELECT pg_catalog.date_trunc('day', $1::timestamptz) AS d", [str(until)], ["text"])[0]["d"]

    win = Window(monitor_id, rel, m["last_window_end"], until, m["time_column"], y,
                 json.loads(m["retrain_with"]) if isinstance(m["retrain_with"], str) else m["retrain_with"])
    try:
        cur = win.read(ref)
    except PgmodelsError as e:
        if e.sqlstate != "22000":
            raise
        plpy.notice(f"monitor {monitor_id}: {e.message}; no report written")
        return None
    results = compare(ref, cur)
    status = worst(results)
    drifted = [r["feature"] for r in results if r["status"] == "drift"]
    report_id = query(
        "SELECT pgmodels._drift_report_write(pgmodels._credential(), $1, $2, $3::timestamptz, $4::timestamptz, "
        "$5, $6, $7, $8::jsonb, $9::jsonb) AS id",
        [monitor_id, ref.model.id, _text(cur.window_start), _text(cur.window_end), cur.rows, status, drifted,
         json.dumps(_finite(results)), json.dumps(ref.thresholds)],
        ["bigint", "bigint", "text", "text", "bigint", "text", "text[]", "text", "text"])[0]["id"]
    due = {"drift": ("drift",), "warning": ("warning", "drift"), "always": ("ok", "warning", "drift")}
    if m["retrain"] and y is not None and status in due[ref.thresholds.get("retrain_on", "drift")]:
        decision = retraining.run(ref, cur, report_id, drifted, win)
        query("SELECT pgmodels._drift_report_decide(pgmodels._credential(), $1, $2::jsonb)",
              [report_id, json.dumps(decision)], ["bigint", "text"])
    return report_id


@dataclass
class Window:
    """A run's rows: the monitor's relation from since to until by its time column."""
    monitor_id: int
    rel: Relation
    since: object
    until: object
    time_column: str | None
    y_column: str | None  # the target, for a monitor that retrains
    retrain_with: dict | None  # what the monitor's retrain trains, when not the deployed version's

    def conditions(self):
        return window(self.time_column, self.since, self.until)

    def read(self, reference: Reference, holdout: tuple[str, list] | None = None):
        """The window's rows, as a model reads them (or only the held-out ones)."""
        return read(reference, self.rel, since=self.since, time_column=self.time_column, until=self.until,
                    y_column=self.y_column, who="The monitor's role", holdout=holdout)


def _finite(value):
    """JSON has no NaN or infinity: such a metric is written as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _text(value):
    return None if value is None else str(value)


@udf
def set_retrain(monitor_id, algorithm, hyperparams, preprocess):
    """set_monitor_retrain(): what the monitor's retrain trains instead of the deployed
    version's algorithm, hyperparameters and preprocessing; checked against the project's
    task (and, for hyperparameters alone, the deployed version's algorithm) now."""
    from .._json import read_json
    from ..training import algorithms

    settings = {}
    for name, value in (("hyperparams", hyperparams), ("preprocess", preprocess)):
        if value is not None:
            settings[name] = read_json(value, name)
            if not isinstance(settings[name], dict):
                raise PgmodelsError(f"{name} must be a jsonb object", sqlstate=INVALID_PARAMETER_VALUE)
    if algorithm is not None:
        settings["algorithm"] = algorithm
    got = query("SELECT o.task, o.algorithm FROM pgmodels.monitors m JOIN pgmodels.overview o "
                "ON o.project = m.project AND o.deployed WHERE m.id = $1", [monitor_id], ["bigint"])
    if got and (algorithm is not None or "hyperparams" in settings):
        algorithms.make_estimator(algorithm or got[0]["algorithm"], got[0]["task"], settings.get("hyperparams"))
    return query("SELECT pgmodels._monitor_retrain_with(pgmodels._credential(), $1, $2::jsonb) AS s",
                 [monitor_id, json.dumps(settings) if settings else None], ["bigint", "text"])[0]["s"]
