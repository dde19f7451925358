"""Retraining that deploys only a better model.

When a monitor with retrain finds drift (or at every report: retrain_on), it holds out a
slice of the monitored window's labelled rows (holdout.py: the newest by the monitor's
time column, or drawn at random without one), trains the project again as its deployed
version was trained (the same relation, target, split, algorithm, hyperparameters and
preprocessing, unless the monitor names others: set_monitor_retrain) on that relation
without the held-out rows, scores the new version and the deployed one on the held-out
rows, and deploys the new one only if its key metric (f1 or r2) beats the deployed one's
by the project's margin on at least min_holdout_rows rows. A window with fewer labelled
rows than that trains nothing. Every decision is returned for the report with its
reason, and told to the session (a NOTICE, at pgmodels.progress_level) in the same words.
The training runs in a subtransaction: a failed retrain is recorded and changes nothing,
and the deployed model keeps serving.
"""

from __future__ import annotations

import json

import numpy as np

from .._plpy import qualified, query
from .. import progress
from . import holdout, lineage
from ..errors import PgmodelsError
from .current import Reference, predictions


def key_score(task: str, truth: list, answers) -> tuple[str, float | None]:
    from sklearn import metrics as m

    if task == "classification":
        return "f1", float(m.f1_score(truth, list(answers), average="macro", zero_division=0))
    if len(truth) < 2:
        return "r2", None
    return "r2", float(m.r2_score(np.asarray(truth, dtype=np.float64), np.asarray(answers, dtype=np.float64)))


def _label(v) -> str:
    """A class label as text, the same whichever way it came: '1', '1.0' and 1 are one
    class (the target read as text from the relation, the label the model answers)."""
    text = str(v)
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(int(number)) if number.is_integer() else repr(number)


def deployed_hyperparams(record: dict) -> dict:
    """The deployed version's hyperparameters as one would give them to train(): those it
    was fitted with (a search's best included) that differ from what pgmodels would use
    by default, without the ones pgmodels sets itself."""
    from ..training import algorithms
    from ..training.fit import used_hyperparams

    defaults = used_hyperparams(algorithms.make_estimator(record["algorithm"], record["task"], {}))
    out = {}
    for name, value in (record.get("hyperparams") or {}).items():
        if name in algorithms.RESERVED or name not in defaults or defaults[name] == value:
            continue
        if isinstance(value, str) and " at 0x" in value:  # an object's repr: nothing one could give
            continue
        out[name] = value
    return out


def arguments(record: dict, wanted: dict | None) -> dict:
    """What the retrain passes to train(): the deployed version's, or the monitor's."""
    training = record.get("training") or {}
    wanted = wanted or {}
    algorithm = wanted.get("algorithm") or record["algorithm"]
    if wanted.get("hyperparams") is not None:
        hyperparams = wanted["hyperparams"]
    elif algorithm == record["algorithm"]:
        hyperparams = deployed_hyperparams(record)
    else:  # another algorithm: its own defaults
        hyperparams = {}
    preprocess = wanted["preprocess"] if wanted.get("preprocess") is not None else training.get("preprocess") or {}
    return {"algorithm": algorithm, "hyperparams": hyperparams, "preprocess": preprocess,
            "y_column": training.get("y_column"), "test_size": training.get("test_size"),
            "test_sampling": training.get("test_sampling")}


def _record(model_id: int) -> dict:
    got = query("SELECT pgmodels._model_lineage($1, pgmodels._credential()) AS r", [model_id], ["bigint"])
    return json.loads(got[0]["r"])


def _tell(monitor_id: int, project: str, reason: str) -> None:
    """The decision, to the session that ran the monitor (none for pg_cron's)."""
    import plpy

    level = progress.level()
    app = query("SELECT pg_catalog.current_setting('application_name') AS a")[0]["a"]
    if level != "off" and app != "pg_cron":
        getattr(plpy, level)(f'monitor {monitor_id} of project "{project}": retrain: {reason}')


def run(ref: Reference, cur, report_id: int, drifted: list[str], win) -> dict:
    """win: the monitor's window (schedule.Window): its id, relation, bounds, target and
    retrain settings, and read(reference, holdout) to read its rows for a model."""
    decision = _decide(ref, cur, report_id, drifted, win)
    _tell(win.monitor_id, ref.model.project, decision["reason"])
    return json.loads(json.dumps(decision))


def _decide(ref: Reference, cur, report_id: int, drifted: list[str], win) -> dict:
    import plpy

    old_version = ref.model.version
    decision = {"drifted": drifted, "deployed_model_id": ref.model.id, "deployed_version": old_version,
                "deployed": False}
    need = int(ref.thresholds.get("min_holdout_rows", 30))
    margin = float(ref.thresholds.get("retrain_margin", 0.0))
    labelled = sum(v is not None for v in (cur.y or []))
    if labelled < need:
        decision.update(holdout_rows=labelled,
                        reason=f"kept version {old_version} and trained nothing: the window has {labelled} labelled "
                               f"rows, fewer than min_holdout_rows ({need}) to judge a retrain on")
        return decision
    try:
        with plpy.subtransaction():
            record = _record(ref.model.id)
            args = arguments(record, win.retrain_with)
            source = holdout.training_relation(record)
            count = holdout.size(labelled, float((record.get("training") or {}).get("test_size") or 0), need)
            where, params, types = win.conditions()
            keys, how = holdout.choose(ref.model, win.rel, where, params, types, win.y_column, win.time_column,
                                       count, f"report {report_id}")
            decision.update(algorithm=args["algorithm"], holdout=how)
            holdout.for_training = {"relation": source.oid, "keys": keys,
                                    "match": holdout.matching(holdout.key_sql(ref.model, source), 2)}
            lineage.retrain_context = {"replaces_model_id": ref.model.id, "drift_report_id": report_id,
                                       "drifted": drifted, "holdout": how}
            trained = query(
                f"SELECT t.model_id, t.version FROM {qualified('train')}($1, relation_name => $2, "
                "y_column_name => $3, algorithm => $4, hyperparams => $5::jsonb, preprocess => $6::jsonb, "
                "test_size => $7::real, test_sampling => $8, automatic_deploy => false) t",
                [ref.model.project, source.qualified, args["y_column"], args["algorithm"],
                 json.dumps(args["hyperparams"]), json.dumps(args["preprocess"]), args["test_size"],
                 args["test_sampling"]],
                ["text", "text", "text", "text", "text", "text", "float8", "text"])[0]
            excluded = int(holdout.for_training.get("excluded") or 0)
    except (plpy.SPIError, PgmodelsError) as e:
        decision.update(reason=f"the retrain failed; version {old_version} keeps serving",
                        error=_message(e), sqlstate=getattr(e, "sqlstate", None))
        return decision
    finally:
        lineage.retrain_context = None
        holdout.for_training = None
    new_id, new_version = trained["model_id"], trained["version"]
    decision.update(new_model_id=new_id, new_version=new_version, excluded_rows=excluded)
    try:
        with plpy.subtransaction():
            rows, truth, old, new, problem = _holdout_answers(ref, new_id, win, keys)
    except (plpy.SPIError, PgmodelsError) as e:
        decision.update(reason=f"kept version {old_version}: version {new_version} could not be scored on the "
                               "held-out rows", error=_message(e), sqlstate=getattr(e, "sqlstate", None))
        return decision
    decision.update(holdout_rows=rows, margin=margin)
    if problem:
        decision["reason"] = f"kept version {old_version}: {problem}"
        return decision
    metric, old_score = key_score(ref.model.task, truth[0], old)
    _, new_score = key_score(ref.model.task, truth[1], new)
    decision.update(metric=metric, deployed_score=old_score, new_score=new_score)
    on = f"on {rows} held-out rows " + (f"(the window's newest by {win.time_column})" if win.time_column else
                                        f"(drawn at random from the window, seed: report {report_id})")
    if rows < need:
        decision["reason"] = (f"kept version {old_version}: only {rows} held-out rows could be scored by both, "
                              f"fewer than min_holdout_rows ({need})")
    elif old_score is None or new_score is None:
        decision["reason"] = f"kept version {old_version}: {metric} is undefined {on}"
    elif new_score >= old_score + margin and new_score > old_score:
        query(f"SELECT * FROM {qualified('deploy')}($1::bigint)", [new_id], ["bigint"])
        decision.update(deployed=True, reason=f"deployed version {new_version} in place of version {old_version}: "
                                              f"{metric} {new_score:.4f} beats {old_score:.4f} by at least the "
                                              f"margin {margin} {on}")
    else:
        decision["reason"] = (f"kept version {old_version}: {metric} {new_score:.4f} of version {new_version} "
                              f"does not beat {old_score:.4f} by the margin {margin} {on}")
    return decision


def _message(e) -> str:
    return e.message if isinstance(e, PgmodelsError) else (e.args[0] if e.args else str(e))


def _answers(keep: np.ndarray, answers, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[keep] = list(answers)
    return out


def _norm(task: str, values) -> list:
    return [_label(v) for v in values] if task == "classification" else [float(v) for v in values]


def _holdout_answers(ref: Reference, new_id: int, win, keys: list[str]):
    """Both models' answers on the held-out rows (read again, by their keys), on the rows
    both can score: (rows, (truth for the deployed, truth for the new), deployed's answers,
    new's answers, a problem that stops the comparison or None)."""
    task = ref.model.task
    key = holdout.key_sql(ref.model, win.rel)
    hold = win.read(ref, (key, keys))
    y = np.asarray(hold.y, dtype=object)
    labelled = np.array([v is not None for v in y], dtype=bool)
    keep_old, old = predictions(ref, hold)
    new_ref = Reference.load(ref.model.project, new_id, need_profile=False)
    if (new_ref.model.feature_names, new_ref.model.feature_types) == (ref.model.feature_names, ref.model.feature_types):
        keep_new, new = predictions(ref, hold, model_id=new_id)
        both = labelled & keep_old & keep_new
        truth = _norm(task, y[both])
        return (int(both.sum()), (truth, truth), _norm(task, _answers(keep_old, old, hold.rows)[both]),
                _norm(task, _answers(keep_new, new, hold.rows)[both]), None)
    # the training relation changed its columns since: the new version reads other features,
    # so the rows are read again for it; compared only if both score every held-out row
    again = win.read(new_ref, (key, keys))
    y_new = np.asarray(again.y, dtype=object)
    labelled_new = np.array([v is not None for v in y_new], dtype=bool)
    keep_new, new = predictions(new_ref, again)
    rows = int(labelled.sum())
    if again.rows != hold.rows or not keep_old[labelled].all() or not keep_new[labelled_new].all() \
            or int(labelled_new.sum()) != rows:
        return rows, None, None, None, ("the new version takes other features than the deployed one and the two "
                                        "cannot score the same held-out rows; compare and deploy it by hand")
    return (rows, (_norm(task, y[labelled]), _norm(task, y_new[labelled_new])),
            _norm(task, _answers(keep_old, old, hold.rows)[labelled]),
            _norm(task, _answers(keep_new, new, again.rows)[labelled_new]), None)
