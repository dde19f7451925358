"""The demo's streaming step: customer events become predictions of two models, scored by
two real worker processes (one consumer split into two partitions) as they arrive, read
by a subscriber that LISTENs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

EVENTS = "public.churn_events"


def reset(conn) -> None:
    """What an earlier run left: the consumers, the stream and its table."""
    for consumer in ("churn_live", "churn_live_baseline"):
        conn.execute("SELECT drop_consumer(consumer, drop_output => true) FROM pgmodels.stream_consumers "
                     "WHERE consumer = %s", [consumer])
    conn.execute("SELECT drop_stream(name, cascade => true) FROM pgmodels.streams WHERE name = 'churn_events'")
    conn.execute(f"DROP TABLE IF EXISTS {EVENTS}")
    # outputs a catalog dropped some other way (DROP EXTENSION ... CASCADE) left behind
    conn.execute("DROP TABLE IF EXISTS churn_live_predictions, churn_live_baseline_predictions")


def stream_step(conn, dsn: str, say) -> None:
    reset(conn)
    conn.execute(f"""CREATE TABLE {EVENTS} (event_id bigserial PRIMARY KEY, customer_id integer, tenure_months real,
                     monthly_charges real, support_calls integer, paperless boolean, contract text,
                     at timestamptz DEFAULT now())""")
    t = time.perf_counter()
    conn.execute("SELECT * FROM train('churn_baseline', 'classification', 'churn_features', 'churned', 'linear')")
    say(f"   a second model for the stream: churn_baseline (linear, {time.perf_counter() - t:.1f} s)")
    conn.execute("SELECT create_stream('churn_events', 'public.churn_events', 'customer_id')")
    conn.execute("SELECT add_consumer('churn_events', 'churn_live', 'churn', partitions => 2)")
    conn.execute("SELECT add_consumer('churn_events', 'churn_live_baseline', 'churn_baseline')")
    say("   create_stream('churn_events', ...); add_consumer(... 'churn_live', 'churn', partitions => 2); "
        "add_consumer(... 'churn_live_baseline', 'churn_baseline')")
    channel = conn.execute("SELECT channel FROM pgmodels.stream_consumers WHERE consumer = 'churn_live'").fetchone()[0]
    conn.execute(f'LISTEN "{channel}"')
    # two workers: churn_live's two partitions are scored at once, the baseline by either
    workers = [subprocess.Popen([str(Path(sys.executable).with_name("pgmodels")), "stream", "work", "churn_live",
                                 "churn_live_baseline", "--dsn", dsn], stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        time.sleep(1.0)  # the worker connects and waits
        started = time.perf_counter()
        for batch in range(10):
            conn.execute(f"""INSERT INTO {EVENTS} (customer_id, tenure_months, monthly_charges, support_calls,
                                                   paperless, contract)
                             SELECT customer_id, tenure_months, monthly_charges, support_calls, paperless, contract
                               FROM public.churn ORDER BY customer_id OFFSET {100 * batch} LIMIT 100""")
        note = next(conn.notifies(timeout=10, stop_after=1), None)
        if note is not None:
            say(f"   a subscriber LISTENing on {channel} got: {json.loads(note.payload)}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = conn.execute("SELECT sum(events_processed), sum(events_pending) FROM pgmodels.stream_consumers "
                                "WHERE stream = 'churn_events'").fetchone()
            if done[0] == 2000 and done[1] == 0:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        say(f"   1000 events inserted in 10 transactions; both consumers done {elapsed:.2f} s after the first insert, "
            "by two workers")
        for r in conn.execute("SELECT consumer, events_processed, events_pending, failures FROM pgmodels.stream_consumers "
                              "WHERE stream = 'churn_events' ORDER BY consumer"):
            say(f"   {r[0]:<20} processed {r[1]}, pending {r[2]}, dead letters {r[3]}")
        agree = conn.execute("SELECT count(*) FILTER (WHERE a.label = b.label), count(*) FROM churn_live_predictions a "
                             "JOIN churn_live_baseline_predictions b USING (event_id)").fetchone()
        say(f"   the two models agree on {agree[0]} of {agree[1]} events; "
            f"latest_prediction('churn_live', '42') = "
            f"{conn.execute('SELECT latest_prediction(%s, %s)', ['churn_live', '42']).fetchone()[0]}")
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(15)
        conn.execute(f'UNLISTEN "{channel}"')
