"""evaluate_rollout(): a rollout's rule applied to its report.

abort   when the candidate failed on more than max_error_rate of at least MIN_ANSWERS
        answers, or when, after min_outcomes outcomes on each side, it is worse than the
        champion by more than the margin with the whole interval of the difference below 0;
promote when, after min_outcomes outcomes on each side, it is better by more than the
        margin with the whole interval above 0;
wait    otherwise (and always with auto false: the decision it would take is the reason).

Every evaluation is recorded with its numbers (pgmodels.rollout_decisions); promote and
abort end the rollout and notify channel pgmodels_rollout (pgmodels._rollout_decide).
"""

from __future__ import annotations

import json

from .._plpy import query, udf
from ..errors import PgmodelsError
from .report import HIGHER_IS_BETTER, build

MIN_ANSWERS = 20


def decision(rule: dict, champion: dict, candidate: dict) -> tuple[str, str]:
    name = rule["metric"]
    if candidate["predictions"] >= MIN_ANSWERS and (candidate["error_rate"] or 0) > rule["max_error_rate"]:
        return "abort", (f"the candidate failed on {candidate['errors']} of {candidate['predictions']} answers "
                         f"({candidate['error_rate']:.1%}), more than max_error_rate {rule['max_error_rate']:.1%}")
    need = int(rule["min_outcomes"])
    have = min(champion["outcomes"], candidate["outcomes"])
    if have < need:
        return "wait", f"{have} outcomes on the smaller side, {need} needed (min_outcomes)"
    diff, low, high = candidate["difference"], candidate["difference_low"], candidate["difference_high"]
    if diff is None or low is None:
        return "wait", f"{name} is not defined on the outcomes so far"
    sign = 1.0 if HIGHER_IS_BETTER[name] else -1.0
    gain, gain_low, gain_high = sign * diff, min(sign * low, sign * high), max(sign * low, sign * high)
    margin = float(rule["margin"])
    said = (f"{name} {candidate['value']:.4f} against {champion['value']:.4f}: a gain of {gain:+.4f} "
            f"[{gain_low:+.4f}, {gain_high:+.4f}] at {rule['confidence']:.0%}, margin {margin}")
    if gain > margin and gain_low > 0:
        return "promote", f"the candidate is better: {said}"
    if gain < -margin and gain_high < 0:
        return "abort", f"the candidate is worse: {said}"
    return "wait", f"no clear difference yet: {said}"


@udf
def evaluate(rollout_id: int) -> str:
    if rollout_id is None:
        raise PgmodelsError("rollout id must not be NULL", sqlstate="22004")
    built = build(rollout_id)
    ev, versions = built["rollout"], built["versions"]
    if ev["status"] != "active":
        raise PgmodelsError(f"rollout {rollout_id} is {ev['status']}, it cannot be evaluated", sqlstate="55000",
                            hint="Start a new one with start_rollout().")
    rule = ev["rule"]
    action, reason = decision(rule, versions[0], versions[1])
    numbers = {"versions": versions, "decision": action, "mode": ev["mode"], "fraction": ev["fraction"]}
    recorded = action
    if not rule.get("auto", True) and action != "wait":
        reason, recorded = f"would {action} (auto is off): {reason}", "wait"
    query("SELECT pgmodels._rollout_decide(pgmodels._credential(), $1, $2, true, $3, $4::jsonb)",
          [rollout_id, recorded, reason, json.dumps(numbers)], ["bigint", "text", "text", "text"])
    query("SELECT pgmodels._rollout_purge(pgmodels._credential(), $1)", [rollout_id], ["bigint"])
    return json.dumps({"action": recorded, "automatic": True, "reason": reason, "numbers": numbers})
