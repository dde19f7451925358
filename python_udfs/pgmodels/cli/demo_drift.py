"""The demo's monitoring step: new customers drift from the training data, drift() says
which feature, a monitor writes a report and retrains, and the retrained version is
deployed only because it beats the deployed one on the new customers whose outcome is
known; model_lineage() shows where it came from."""

from __future__ import annotations

# Customers of a later period: monthly charges went up by 30, and churn now follows the
# price (charges over 110) rather than the contract. The last five days' customers are
# the monitored window (their outcome is known by now); the month before them is the
# labelled history the project trains on from now on.
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
       false AS churned,
       timestamptz '{start}' + i * interval '{step}' AS signed_up_at
FROM generate_series(1, {rows}) AS i;
UPDATE public.{name} SET churned = monthly_charges > 110 OR support_calls >= 5 OR (random() < 0.05)
"""


def _period(conn, name: str, seed: float, rows: int, start: str, step: str) -> None:
    for statement in PERIOD.format(name=name, seed=seed, rows=rows, start=start, step=step).split(";"):
        if statement.strip():
            conn.execute(statement)


def drift_step(conn, say) -> None:
    _period(conn, "churn_recent", 0.7, 5000, "now", "-1 minute")  # the last ~3.5 days, newest first
    say("   SELECT * FROM drift('churn', 'churn_recent')   -- the last days' customers vs the training profile")
    for r in conn.execute("SELECT feature, kind, rows, round(psi::numeric, 3), round(ks_statistic::numeric, 3), "
                          "status FROM drift('churn', 'public.churn_recent')"):
        say(f"   {r[0]:<16} {r[1]:<12} rows {r[2]:>5}  psi {str(r[3]):>6}  ks {str(r[4] or '-'):>6}  {r[5]}")
    # the labelled history the project trains on moves on to last month's customers
    _period(conn, "churn_last_month", 0.8, 8000, "now", "-5 minutes")
    conn.execute("DELETE FROM public.churn_last_month WHERE signed_up_at > now() - interval '4 days'")
    conn.execute("CREATE OR REPLACE VIEW public.churn_features AS SELECT tenure_months, monthly_charges, "
                 "support_calls, paperless, contract, churned FROM public.churn_last_month")
    cron_db = conn.execute("SELECT current_setting('cron.database_name', true) = current_database()").fetchone()[0]
    schedule = "0 * * * *" if cron_db else None
    monitor_id = conn.execute("SELECT monitor('churn', 'public.churn_recent', %s, time_column => 'signed_up_at', "
                              "retrain => true)", [schedule]).fetchone()[0]
    say(f"   monitor('churn', 'churn_recent', {schedule!r}, time_column => 'signed_up_at', retrain => true)"
        + (" -- hourly, by pg_cron" if cron_db else " -- by hand here: this database is not pg_cron's"))
    report_id = conn.execute("SELECT run_monitor(%s)", [monitor_id]).fetchone()[0]
    status, drifted, decision = conn.execute("SELECT status, drifted, retrain FROM pgmodels.drift_reports "
                                             "WHERE id = %s", [report_id]).fetchone()
    say(f"   run_monitor({monitor_id}) wrote drift report {report_id}: {status}, drifted {', '.join(drifted)}; "
        "NOTIFY pgmodels_drift")
    if decision:
        say(f"   the automatic retrain: {decision.get('reason')}")
        if decision.get("new_model_id"):
            wanted = ("training relation", "training rows", "fingerprint of the rows", "replaces model",
                      "after drift report")
            rows = dict(conn.execute("SELECT item, value FROM model_lineage(%s)", [decision["new_model_id"]]))
            say("   model_lineage(" + str(decision["new_model_id"]) + "): "
                + "; ".join(f"{k} {rows[k]}" for k in wanted if k in rows))
