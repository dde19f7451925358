"""Retraining that deploys only a better model.

When a monitor with retrain finds drift, it trains the project again with the arguments
of its last training (train(project, automatic_deploy => false): the relation, target,
split, algorithm and hyperparameters train() reuses), then scores the new version and
the deployed one on the same holdout, the monitored window's rows whose target is known,
and deploys the new one only if its key metric (f1 or r2) beats the deployed one's by
the project's margin. Every decision is returned for the report, with its reason. The
training runs in a subtransaction: a failed retrain is recorded and changes nothing, and
the deployed model keeps serving.

For an honest comparison the monitored rows should not be in the training relation
(for example: train on the labelled rows older than a day, monitor the last day's).
"""

from __future__ import annotations

import json

import numpy as np

from .._plpy import qualified, query
from . import lineage
from ..errors import PgmodelsError
from .current import Current, Reference, predictions


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


def _holdout(ref: Reference, cur: Current) -> tuple[list, list]:
    """(truth, answers) on the labelled rows the model (ref's) can score, cur read for it."""
    keep, answers = predictions(ref, cur)
    y = np.asarray(cur.y, dtype=object)[keep]
    labelled = np.array([v is not None for v in y], dtype=bool)
    answers = np.asarray(answers, dtype=object)[labelled]
    truth = y[labelled]
    if ref.model.task == "classification":
        return [_label(v) for v in truth], [_label(v) for v in answers]
    return [float(v) for v in truth], [float(v) for v in answers]


def run(ref: Reference, cur: Current, report_id: int, drifted: list[str], reread) -> dict:
    """reread(reference): the monitored window read again for another model (its own
    features, which a retrain on a changed relation may have changed)."""
    import plpy

    decision = {"drifted": drifted, "deployed_model_id": ref.model.id, "deployed_version": ref.model.version,
                "deployed": False}
    lineage.retrain_context = {"replaces_model_id": ref.model.id, "drift_report_id": report_id, "drifted": drifted}
    try:
        with plpy.subtransaction():
            trained = query(f"SELECT t.model_id, t.version FROM {qualified('train')}($1, automatic_deploy => false) t",
                            [ref.model.project], ["text"])[0]
    except plpy.SPIError as e:
        decision.update(reason="the retrain failed; the deployed model keeps serving",
                        error=e.args[0] if e.args else str(e), sqlstate=getattr(e, "sqlstate", None))
        return decision
    finally:
        lineage.retrain_context = None
    new_id = trained["model_id"]
    decision.update(new_model_id=new_id, new_version=trained["version"])
    try:
        with plpy.subtransaction():
            truth, old = _holdout(ref, cur)
            new_ref = Reference.load(ref.model.project, new_id, need_profile=False)
            truth_new, new = _holdout(new_ref, reread(new_ref))
    except (plpy.SPIError, PgmodelsError) as e:
        message = e.message if isinstance(e, PgmodelsError) else (e.args[0] if e.args else str(e))
        decision.update(reason="kept the deployed model: the new one could not be scored on the monitored rows",
                        error=message, sqlstate=getattr(e, "sqlstate", None))
        return decision
    margin = float(ref.thresholds.get("retrain_margin", 0.0))
    need = int(ref.thresholds.get("min_holdout_rows", 30))
    metric, old_score = key_score(ref.model.task, truth, old)
    _, new_score = key_score(ref.model.task, truth_new, new)
    decision.update(metric=metric, deployed_score=old_score, new_score=new_score, margin=margin,
                    holdout_rows=len(truth))
    if len(truth) < need or len(truth_new) < need:
        decision["reason"] = (f"kept the deployed model: the window has {min(len(truth), len(truth_new))} labelled rows "
                              f"to compare on, fewer than min_holdout_rows ({need})")
    elif old_score is None or new_score is None:
        decision["reason"] = f"kept the deployed model: {metric} is undefined on the holdout"
    elif new_score >= old_score + margin and new_score > old_score:
        query(f"SELECT {qualified('deploy')}($1::bigint)", [new_id], ["bigint"])
        decision.update(deployed=True, reason=f"deployed version {trained['version']}: {metric} {new_score:.4f} "
                                              f"beats {old_score:.4f} by at least the margin {margin}")
    else:
        decision["reason"] = (f"kept the deployed model: {metric} {new_score:.4f} of version {trained['version']} "
                              f"does not beat {old_score:.4f} by the margin {margin}")
    return json.loads(json.dumps(decision))
