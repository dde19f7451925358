"""`pgmodels demo`: the main job, end to end, on a synthetic churn table.

Creates ``public.churn`` (deterministic, no download), trains a logistic regression and
an XGBoost model from SQL, lets automatic deployment keep the better one, scores the
table with predict(), explains one customer's prediction feature by feature, and exports
the served ONNX artifact to run it outside the database, as an edge device would.
"""

from __future__ import annotations

import time

CHURN_TABLE = """
DROP TABLE IF EXISTS public.churn CASCADE;
SELECT setseed(0.42);
CREATE TABLE public.churn AS
SELECT i AS customer_id,
       (random() * 72)::real AS tenure_months,
       (20 + random() * 100)::real AS monthly_charges,
       (random() * 6)::integer AS support_calls,
       (random() < 0.3) AS paperless,
       (ARRAY['month-to-month', 'one-year', 'two-year'])[1 + floor(random() * 3)::int] AS contract,
       false AS churned
FROM generate_series(1, %(rows)s) AS i;
UPDATE public.churn SET churned =
    (contract = 'month-to-month' AND tenure_months < 18 AND monthly_charges > 60)
    OR support_calls >= 5 OR (random() < 0.05);
ALTER TABLE public.churn ADD PRIMARY KEY (customer_id);
"""


class _ProgressWatcher:
    """Polls pgmodels.progress from its own session, as an operator would, and keeps the
    distinct stages it saw of the demo's backend."""

    def __init__(self, conn):
        import threading

        import psycopg

        self.pid, self.seen, self.done = conn.info.backend_pid, [], threading.Event()
        self.other = psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True)
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.wait(0.02):
            for stage, step, steps in self.other.execute(
                    "SELECT stage, step, steps FROM pgmodels.progress WHERE pid = %s", [self.pid]).fetchall():
                label = stage + (f" {step}/{steps}" if step is not None else "")
                if label not in self.seen:
                    self.seen.append(label)

    def stop(self) -> list[str]:
        self.done.set()
        self.thread.join(5)
        self.other.close()
        return self.seen


def _reset(conn) -> None:
    """A second run starts over: the demo's projects (and the monitor, job and stream
    that use them) go, so that each run tells the same story from version 1."""
    from .demo_batch import JOB
    from .demo_rollout import reset as reset_rollout
    from .demo_stream import reset as reset_stream

    projects = ["churn", "churn_baseline"]
    reset_rollout(conn)
    conn.execute("SELECT drop_monitor(id) FROM pgmodels.monitors WHERE project = ANY(%s)", [projects])
    conn.execute("SELECT drop_batch_job(job, drop_output => true) FROM pgmodels.batch_jobs WHERE job = %s", [JOB])
    reset_stream(conn)
    conn.execute("DELETE FROM pgmodels.projects WHERE name = ANY(%s)", [projects])


def explain_step(conn, say, customer: int) -> None:
    """One customer's churn prediction, feature by feature (the owner may explain; others
    need grant_project(..., 'explain'))."""
    row = f"(SELECT c FROM public.churn c WHERE customer_id = {int(customer)})"
    label, proba = conn.execute(f"SELECT predict_label('churn', {row}), predict_proba('churn', {row})").fetchone()
    rows = conn.execute(f"SELECT * FROM explain_prediction('churn', {row}, top_n => 4)").fetchall()
    say(f"   customer {customer}: churns={label} (probability of churning {proba[-1]:.3f}); "
        f"the contributions add up to {rows[0][1]}:")
    for feature, value, contribution in rows:
        shown = "" if feature == "(base)" else (value if value is not None else "NULL")
        say(f"     {feature:<16} {shown:<16} {contribution:+.3f}")
    say(f"     {'= total':<16} {'':<16} {sum(r[2] for r in rows):+.3f}")


def run_demo(conn, rows: int = 20000) -> None:
    say = print
    _reset(conn)
    say(f"== 1. a synthetic churn table: {rows} customers")
    for statement in CHURN_TABLE.replace("%(rows)s", str(int(rows))).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("CREATE OR REPLACE VIEW public.churn_features AS "
                 "SELECT tenure_months, monthly_charges, support_calls, paperless, contract, churned FROM public.churn")

    say("== 2. train from SQL (the best model is deployed automatically); progress arrives as NOTICEs")
    progress = lambda d: say(f"   | {d.message_primary}")  # noqa: E731 - psycopg's notice handler
    conn.add_notice_handler(progress)
    watcher = _ProgressWatcher(conn)  # another session, reading pgmodels.progress meanwhile
    for sql in ("SELECT * FROM train('churn', 'classification', 'churn_features', 'churned')",
                "SELECT * FROM train('churn', algorithm => 'xgboost', search => 'grid', search_params => "
                "'{\"n_estimators\": [50, 100], \"max_depth\": [3, 4]}', search_args => '{\"cv\": 2}')"):
        t = time.perf_counter()
        r = conn.execute(sql).fetchone()
        say(f"   {r[2]:<8} version {r[5]}  runtime {r[6]}  f1 {r[7]['f1']:.3f}  deployed {r[3]}"
            f"  ({time.perf_counter() - t:.1f} s)")
    conn.remove_notice_handler(progress)
    say("   meanwhile another session saw in pgmodels.progress: " + ", ".join(watcher.stop()))

    say("== 3. serve: SELECT predict('churn', row) FROM churn")
    t = time.perf_counter()
    n, churners = conn.execute("SELECT count(*), count(*) FILTER (WHERE predict('churn', f) = 1) "
                               "FROM public.churn_features f").fetchone()
    elapsed = time.perf_counter() - t
    say(f"   scored {n} rows in {elapsed:.2f} s ({n / elapsed:,.0f} rows/s); {churners} predicted to churn")
    one = conn.execute("""SELECT predict_label('churn', '{"tenure_months": 3, "monthly_charges": 95,
                          "support_calls": 1, "paperless": false, "contract": "month-to-month"}'::jsonb),
                          predict_proba('churn', '{"tenure_months": 3, "monthly_charges": 95,
                          "support_calls": 1, "paperless": false, "contract": "month-to-month"}'::jsonb)""").fetchone()
    say(f"   a new month-to-month customer, 3 months in: churns={one[0]}  probabilities={one[1]}")

    say("== 3a. why: explain_prediction() says which features made customer 42's prediction")
    explain_step(conn, say, 42)

    say("== 3b. batch: a scheduled job scores the table into churn_scores, which apps read by key")
    from .demo_batch import batch_step, cron_step
    scheduled = batch_step(conn, say)

    say("== 3c. streaming: inserted events become predictions of two models, scored by two workers as they arrive")
    from psycopg.conninfo import make_conninfo

    from .demo_stream import stream_step
    stream_step(conn, make_conninfo(conn.info.dsn, password=conn.info.password) if conn.info.password
                else conn.info.dsn, say)

    say("== 3d. monitoring: drift since training, a monitor's report, a retrain deployed only if better")
    from .demo_drift import drift_step
    drift_step(conn, say)

    say("== 3e. safe rollouts: a new version beside the deployed one, in shadow, then a canary; decided on outcomes")
    from .demo_rollout import rollout_step
    rollout_step(conn, say)

    say("== 4. what is there: pgmodels.overview")
    for r in conn.execute("SELECT project, version, algorithm, runtime, round(key_metric::numeric, 3), deployed, "
                          "artifact_bytes FROM pgmodels.overview WHERE project = 'churn' ORDER BY version"):
        say(f"   {r[0]} v{r[1]} {r[2]:<8} {r[3]}  f1={r[4]}  deployed={r[5]}  {r[6]} bytes")

    say("== 5. edge: export_onnx('churn') runs without the database")
    import numpy as np
    import onnxruntime as ort

    artifact = conn.execute("SELECT export_onnx('churn')").fetchone()[0]
    session = ort.InferenceSession(bytes(artifact), providers=["CPUExecutionProvider"])
    feed = {"tenure_months": np.array([[3.0]], np.float32), "monthly_charges": np.array([[95.0]], np.float32),
            "support_calls": np.array([[1.0]], np.float32), "paperless": np.array([[0.0]], np.float32),
            "contract": np.array([["month-to-month"]], dtype=object)}
    label = session.run(["label"], feed)[0][0]
    say(f"   onnxruntime alone, {len(artifact)} bytes: class index {label} (the database said {one[0]})")

    say("== 6. request-response: pgmodels serve (the Open Inference Protocol over HTTP), one request with a token")
    from .serve import demo_request

    demo_request(conn, say)
    if scheduled:
        cron_step(conn, say)
    say("== 6b. moving over from PostgresML: its SQL, unchanged, with the pgmodels_pgml extension")
    from .demo_pgml import pgml_step
    pgml_step(conn, say)
    from .demo_edge import edge_step
    edge_step(conn, say)  # the last word: a prediction on the "device", no database
