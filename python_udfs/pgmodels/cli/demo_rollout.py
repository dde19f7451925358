"""The demo's rollout step. A fortnight after the drift, the support team calls back every
customer at their fifth support call, and most of them stay: the deployed version (trained
before, on last month's customers) still predicts that they leave. A version trained on the
fortnight's customers whose outcome is known is tried beside it, first in shadow (it scores
every new customer, the deployed version answers), then as a canary answering 20 % of them;
their true outcomes arrive later, in a table of their own, and evaluate_rollout() decides
by the rule: promote the candidate, or abort and keep the deployed version. Whatever it
decides is reported as it is, with its numbers and the pgmodels_rollout notification an
application would LISTEN for."""

from __future__ import annotations

import json
import time

# A period after the callbacks began: churn follows the price (charges over 110) as since
# the drift, but a customer with five or more support calls now churns only one time in
# ten. churn_fortnight: the fortnight's customers, outcome known (the project trains on
# them from now on); churn_new: the customers arriving now, scored by the rollout, whose
# outcome (kept in the table for the demo) only becomes known later, in churn_outcomes.
PERIOD = """
DROP TABLE IF EXISTS public.{name} CASCADE;
SELECT setseed({seed});
CREATE TABLE public.{name} AS
SELECT i AS customer_id,
       (random() * 72)::real AS tenure_months,
       (50 + random() * 100)::real AS monthly_charges,
       (random() * 6)::integer AS support_calls,
       (random() < 0.3) AS paperless,
       (ARRAY['month-to-month', 'one-year', 'two-year'])[1 + floor(random() * 3)::int] AS contract,
       false AS churned
FROM generate_series(1, {rows}) AS i;
UPDATE public.{name} SET churned = monthly_charges > 110 OR (support_calls >= 5 AND random() < 0.1)
                                   OR random() < 0.05
"""

# The new customers are scored in two halves, by key
ROW = "(SELECT f FROM (SELECT c.tenure_months, c.monthly_charges, c.support_calls, c.paperless, c.contract) f)"
SCORE = (f"SELECT count(s.p) FROM (SELECT predict('churn', {ROW}, key => c.customer_id) AS p "
         "FROM public.churn_new c WHERE c.customer_id BETWEEN %s AND %s) s")
# The rule: decide once 100 outcomes are in on each side, on any gain (margin 0); in
# pg_cron's database pg_cron evaluates hourly, and the demo evaluates by hand meanwhile.
RULE = {"min_outcomes": 100, "margin": 0}
FORTNIGHT = 3000  # customers with a known outcome since the callbacks began
HYPERPARAMS = {"n_estimators": 50, "max_depth": 3}  # those of the deployed version (step 2's grid search)


def reset(conn) -> None:
    conn.execute("SELECT abort_rollout(id) FROM pgmodels.rollouts WHERE project = 'churn' AND status = 'active'")
    conn.execute("DROP TABLE IF EXISTS public.churn_outcomes")


def _period(conn, name: str, seed: float, rows: int) -> None:
    for statement in PERIOD.format(name=name, seed=seed, rows=rows).split(";"):
        if statement.strip():
            conn.execute(statement)


def rollout_step(conn, say) -> None:
    reset(conn)
    t0 = time.perf_counter()
    _period(conn, "churn_fortnight", 0.3, FORTNIGHT)
    _period(conn, "churn_new", 0.4, 5000)
    conn.execute("CREATE OR REPLACE VIEW public.churn_features AS SELECT tenure_months, monthly_charges, "
                 "support_calls, paperless, contract, churned FROM public.churn_fortnight")
    champion = conn.execute("SELECT version, algorithm FROM pgmodels.overview WHERE project = 'churn' AND deployed"
                            ).fetchone()
    say(f"   a fortnight on, the support team calls back every customer at their fifth support call and most of "
        f"them stay; v{champion[0]} still predicts they leave")
    # the deployed version's algorithm and settings, on the fortnight's customers
    r = conn.execute("SELECT model_id, algorithm, version, metrics FROM train('churn', 'classification', "
                     "'churn_features', 'churned', algorithm => 'xgboost', hyperparams => %s, "
                     "automatic_deploy => false)", [json.dumps(HYPERPARAMS)]).fetchone()
    candidate, version = r[0], r[2]
    say(f"   churn_features now reads churn_fortnight, the {FORTNIGHT} customers whose outcome is known; "
        f"train('churn', ..., algorithm => 'xgboost', hyperparams => '{json.dumps(HYPERPARAMS)}', "
        f"automatic_deploy => false): version {version}, f1 {r[3]['f1']:.3f} on its test split, not deployed "
        f"(v{champion[0]} {champion[1]} answers)")
    cron_db = conn.execute("SELECT current_setting('cron.database_name', true) = current_database()").fetchone()[0]
    rule = {**RULE, "schedule": "0 * * * *"} if cron_db else RULE
    rollout = conn.execute("SELECT start_rollout('churn', %s, 'shadow', rule => %s)",
                           [candidate, json.dumps(rule)]).fetchone()[0]
    say(f"   start_rollout('churn', {candidate}, 'shadow', rule => '{json.dumps(rule)}') -> rollout {rollout}"
        + ("" if cron_db else " -- evaluated by hand here: this database is not pg_cron's"))

    n = conn.execute(SCORE, [1, 2500]).fetchone()[0]
    conn.execute("SELECT pgmodels._rollout_flush()")  # the session's last block of shadow answers
    agreement, answers = conn.execute("SELECT agreement, predictions FROM rollout_report(%s) WHERE role = 'shadow'",
                                      [rollout]).fetchone()
    say(f"   shadow: predict('churn', row, key => customer_id) for {n} new customers (churn_new); v{champion[0]} "
        f"answered every one, v{version} scored {answers} beside it and agrees on {agreement:.1%}")

    conn.execute("SELECT alter_rollout(%s, fraction => 0.2)", [rollout])
    groups = dict(conn.execute("SELECT (rollout_version('churn', c.customer_id)).role, count(*) "
                               "FROM public.churn_new c WHERE c.customer_id BETWEEN 2501 AND 5000 GROUP BY 1"
                               ).fetchall())
    n = conn.execute(SCORE, [2501, 5000]).fetchone()[0]
    conn.execute("SELECT pgmodels._rollout_flush()")
    say(f"   alter_rollout({rollout}, fraction => 0.2): a canary; of the next {n} customers v{version} answered "
        f"{groups.get('canary', 0)}, v{champion[0]} the rest ({groups.get('control', 0)} of them the control group "
        "it is compared with); rollout_version('churn', key) tells an application which")

    conn.execute("CREATE TABLE public.churn_outcomes (customer_id integer PRIMARY KEY, churned boolean NOT NULL, "
                 "known_at timestamptz NOT NULL DEFAULT now())")
    conn.execute("SELECT register_outcomes('churn', 'public.churn_outcomes', 'customer_id', 'churned', 'known_at')")
    conn.execute("INSERT INTO public.churn_outcomes (customer_id, churned) "
                 "SELECT customer_id, churned FROM public.churn_new")
    say("   later, the outcomes arrive: register_outcomes('churn', 'churn_outcomes', 'customer_id', 'churned', "
        "'known_at') and the scored customers' true labels inserted")

    conn.execute("LISTEN pgmodels_rollout")
    action, automatic, reason, numbers = conn.execute("SELECT * FROM evaluate_rollout(%s)", [rollout]).fetchone()
    for v in numbers["versions"]:
        interval = (f" [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v["ci_low"] is not None else "")
        value = f"{v['value']:.3f}" if v["value"] is not None else "-"
        say(f"   {v['role']:<9} v{v['version']}: {v['outcomes']:>4} outcomes  f1 {value}{interval}  "
            f"errors {v['errors']}")
    say(f"   evaluate_rollout({rollout}): {action}{' (automatic)' if automatic else ''}: {reason}")
    note = next((n for n in conn.notifies(timeout=1.0) if n.channel == "pgmodels_rollout"), None)
    conn.execute("UNLISTEN pgmodels_rollout")
    if note is not None:
        body = json.loads(note.payload)
        say(f"   NOTIFY {note.channel}: rollout {body['rollout_id']} {body['action']}, model {body['model_id']} "
            "answers every customer now")
    deployed, event = conn.execute(
        "SELECT h.version, h.detail FROM pgmodels.history h WHERE h.project = 'churn' AND h.event = 'deployed' "
        "ORDER BY h.at DESC LIMIT 1").fetchone()
    say(f"   deployed now: v{deployed} ({event}, in pgmodels.history); the console shows the rollout at "
        f"/console/rollouts/{rollout} ({time.perf_counter() - t0:.1f} s)")
