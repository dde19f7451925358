"""pgmodels stream benchmark: events inserted by producers become predictions of two consumers.

The lifecycle benchmark's 100-tree, depth-6 XGBoost classifier (``bench_xgb``, trained on
20,000 rows of 8 float features and deployed) is the model of TWO consumers of one stream on
``pgmodels_bench.stream_events (id bigserial, f1 .. f8 real)``; each consumer has one real
worker process (``pgmodels stream work CONSUMER``). Producers are processes
(``_stream_produce.py``) that insert in transactions of 100 rows. Measured in one run:

1. sustained throughput: producers flat out for ``--seconds``; events/s per consumer and the
   pending lag (``pgmodels.stream_consumers.events_pending``) at the start and end of the
   window. When the lag grew, the producers are paced at 90 % of what the consumers did
   and the window is run again, ``--steps`` times, bisecting between the best rate whose
   lag stayed bounded and the lowest whose lag grew (at first the producers' flat-out
   rate): the best bounded one is the sustainable rate;
2. commit-to-prediction latency at a steady ``--latency-rate`` events/s (one producer, 100-row
   transactions): each transaction's commit time on the client (``time.time()`` after
   ``COMMIT`` returned) against the time a subscriber that LISTENs on the consumer's
   channel receives the notification covering the event (and, as a cross-check, the
   prediction row's ``predicted_at``, the server clock of the same machine);
3. against the baseline the seeds describe (``_stream_baseline.py``: a Python process that
   polls the table with psycopg, predicts with onnxruntime on the ``export_onnx`` artifact,
   and COPYs the predictions back): both drain the same backlog of ``--events`` events,
   alternated, ``--repeat`` times; events/s of one consumer against the baseline's;
4. the cost to producers: insert throughput into the stream's table (trigger, consumers
   running) as a fraction of the same inserts into a table without a stream, alternated,
   ``--repeat`` times.

Usage:

    .pgmodels/venv/bin/python benchmarks/bench_stream.py --dsn URL [--seconds 60 --events 200000 --repeat 3 --out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _data  # noqa: E402 - the helper modules live next to this script
import _db  # noqa: E402
import _stream_produce  # noqa: E402
from _report import redact  # noqa: E402

STREAM = "bench_stream"
CONSUMERS = ("bench_stream_a", "bench_stream_b")
EVENTS, PLAIN = _data.table("stream_events"), _data.table("stream_plain")
OUTPUTS = (_data.table("stream_out_a"), _data.table("stream_out_b"))
BASE_OUT = _data.table("stream_base_out")
COMMAND = ".pgmodels/venv/bin/python benchmarks/bench_stream.py --dsn URL"
PGMODELS = Path(sys.executable).with_name("pgmodels")
if not PGMODELS.exists():
    PGMODELS = HERE.parent / ".pgmodels" / "venv" / "bin" / "pgmodels"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URL of a database with the pgmodels extension")
    p.add_argument("--seconds", type=float, default=60, help="the sustained-throughput window (default 60)")
    p.add_argument("--warmup", type=float, default=5, help="seconds of production before a window starts (default 5)")
    p.add_argument("--events", type=int, default=200_000, help="backlog drained by a consumer and by the baseline")
    p.add_argument("--repeat", type=int, default=3, help="alternated repetitions of the comparisons (default 3)")
    p.add_argument("--producers", type=int, default=4, help="producer processes (default 4)")
    p.add_argument("--steps", type=int, default=4,
                   help="paced windows when the lag grew flat out: 10 %% below, then bisecting (default 4)")
    p.add_argument("--latency-seconds", type=float, default=30, help="latency window (default 30)")
    p.add_argument("--latency-rate", type=float, default=1000, help="events/s during the latency window")
    p.add_argument("--cost-seconds", type=float, default=10, help="each producer-cost run (default 10)")
    p.add_argument("--train-rows", type=int, default=20_000, help="rows the model is trained on (default 20000)")
    p.add_argument("--trees", type=int, default=100, help="XGBoost trees, depth 6 (default 100)")
    p.add_argument("--max-events", type=int, default=1000, help="the workers' --max-events (default 1000)")
    p.add_argument("--workers-per-consumer", type=int, default=1, help="worker processes per consumer (default 1)")
    p.add_argument("--out", help="write every raw number to this JSON file")
    p.add_argument("--keep", action="store_true", help="keep the stream and its tables at the end")
    args = p.parse_args(argv)
    if min(args.seconds, args.events, args.repeat, args.producers, args.latency_seconds, args.latency_rate,
           args.cost_seconds, args.trees, args.max_events, args.workers_per_consumer) <= 0 or args.train_rows < 20:
        p.error("sizes and counts must be positive (and --train-rows at least 20)")
    return args


def _step(message: str) -> None:
    print(f"... {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _spread(values: list[float]) -> list[float]:
    return [round(min(values), 4), round(max(values), 4)] if values else []


# --- setup ------------------------------------------------------------------------------

def cleanup(conn: psycopg.Connection) -> None:
    """Drop what an earlier run left: the stream (trigger, log, consumers) and the tables."""
    conn.execute("SELECT drop_stream(name, cascade => true) FROM pgmodels.streams WHERE name = %s", [STREAM])
    conn.execute("SELECT drop_consumer(consumer) FROM pgmodels.stream_consumers WHERE consumer = ANY (%s)",
                 [list(CONSUMERS)])
    conn.execute(f"DROP TABLE IF EXISTS {EVENTS}, {PLAIN}, {BASE_OUT}, {', '.join(OUTPUTS)}")


def prepare(conn: psycopg.Connection, args) -> tuple[bytes, tuple[int, int]]:
    _data.load(conn, args.train_rows, 10)
    cleanup(conn)
    columns = ", ".join(f"{f} real NOT NULL" for f in _data.FEATURES)
    for t in (EVENTS, PLAIN):
        conn.execute(f"CREATE TABLE {t} (id bigserial PRIMARY KEY, {columns})")
    conn.execute(f"CREATE TABLE {BASE_OUT} (event_id bigint PRIMARY KEY, key bigint, prediction real, "
                 "probabilities real[], model_id bigint NOT NULL, model_version integer NOT NULL, "
                 "predicted_at timestamptz NOT NULL)")
    _step(f"training the {args.trees}-tree model on {args.train_rows} rows")
    trained = _db.train(conn, args.trees)
    conn.execute("SELECT create_stream(%s, %s, 'id')", [STREAM, EVENTS])
    for consumer, out in zip(CONSUMERS, OUTPUTS):
        conn.execute("SELECT add_consumer(%s, %s, %s, %s)", [STREAM, consumer, _db.PROJECT, out])
    model = conn.execute("SELECT model_id, version FROM pgmodels.overview WHERE project = %s AND deployed",
                         [_db.PROJECT]).fetchone()
    assert model[0] == trained["model_id"], (model, trained["model_id"])
    return _db.export_onnx(conn), (model[0], model[1])


# --- the workers -------------------------------------------------------------------------

class Workers:
    """Real ``pgmodels stream work CONSUMER`` processes, one (or more) per consumer."""

    def __init__(self, dsn: str, args, logdir: Path):
        self.dsn, self.args, self.logdir = dsn, args, logdir
        self.procs: dict[str, list[subprocess.Popen]] = {}

    def start(self) -> None:
        for consumer in CONSUMERS:
            for i in range(self.args.workers_per_consumer):
                log = open(self.logdir / f"worker-{consumer}-{i}.log", "w")
                proc = subprocess.Popen([str(PGMODELS), "stream", "work", consumer, "--dsn", self.dsn,
                                         "--max-events", str(self.args.max_events)], stdout=log,
                                        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
                log.close()
                self.procs.setdefault(consumer, []).append(proc)

    def check(self) -> None:
        for consumer, procs in self.procs.items():
            for i, proc in enumerate(procs):
                if proc.poll() is not None:
                    tail = (self.logdir / f"worker-{consumer}-{i}.log").read_text()[-2000:]
                    raise SystemExit(f"the worker of {consumer} exited with {proc.returncode}:\n{tail}")

    def signal(self, sig, consumers=CONSUMERS) -> None:
        for consumer in consumers:
            for proc in self.procs.get(consumer, []):
                if proc.poll() is None:
                    proc.send_signal(sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        for procs in self.procs.values():
            for proc in procs:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


# --- what the database says ------------------------------------------------------------

def processed(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT name, events_processed FROM pgmodels.stream_consumer WHERE name = ANY (%s)",
                             [list(CONSUMERS)]).fetchall())


def pending(conn) -> dict[str, int]:
    return dict(conn.execute("SELECT consumer, events_pending FROM pgmodels.stream_consumers "
                             "WHERE consumer = ANY (%s)", [list(CONSUMERS)]).fetchall())


def last_id(conn, table: str = EVENTS) -> int:
    seq = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table]).fetchone()[0]
    row = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
        sql.Identifier(*seq.split(".")))).fetchone()
    return row[0] if row[1] else 0


def wait_drained(conn, workers: Workers, timeout: float = 600) -> float:
    """Wait until both consumers have processed every committed event; returns the wait."""
    start = time.perf_counter()
    while True:
        workers.check()
        if all(v == 0 for v in pending(conn).values()):
            return time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"the consumers did not catch up within {timeout} s: pending {pending(conn)}")
        time.sleep(0.2)


# --- producers -------------------------------------------------------------------------

def start_producers(args, dsn: str, table: str, seconds: float, total_rate: float = 0.0, start_in: float = 1.0,
                    max_rows_each: int = 0) -> tuple[list[subprocess.Popen], float]:
    start_at = time.time() + start_in
    procs = []
    for i in range(args.producers):
        cmd = [sys.executable, str(HERE / "_stream_produce.py"), "--dsn", dsn, "--table", table, "--seconds",
               str(seconds), "--seed", str(i), "--start-at", repr(start_at)]
        if total_rate > 0:
            cmd += ["--rate", repr(total_rate / args.producers)]
        if max_rows_each:
            cmd += ["--max-rows", str(max_rows_each)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs, start_at


def finish_producers(procs: list[subprocess.Popen], timeout: float = 900) -> list[dict]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise SystemExit(f"a producer failed:\n{err[-2000:]}")
        results.append(json.loads(out))
    return results


def _producers_total(results: list[dict]) -> dict:
    rows = sum(r["rows"] for r in results)
    elapsed = max(r["elapsed_s"] for r in results)
    return {"rows": rows, "elapsed_s": elapsed, "rows_per_s": rows / elapsed,
            "per_producer_rows_per_s": [r["rows_per_s"] for r in results]}


# --- 1. sustained throughput ------------------------------------------------------------

def window(conn, args, workers: Workers, total_rate: float) -> dict:
    """Producers for warmup + seconds; samples of ids, processed and pending over the window."""
    wait_drained(conn, workers)
    procs, start_at = start_producers(args, args.dsn, EVENTS, args.warmup + args.seconds + 0.5, total_rate)
    samples = []
    try:
        marks = [start_at + args.warmup + args.seconds * k / 6 for k in range(7)]
        for mark in marks:
            time.sleep(max(0.0, mark - time.time()))
            t = time.time()
            ids, done = last_id(conn), processed(conn)
            lag_started = time.time()
            lag = pending(conn)
            samples.append({"t": t - start_at - args.warmup, "last_id": ids, "processed": done, "pending": lag,
                            "pending_query_s": time.time() - lag_started})
            workers.check()
    finally:
        produced = _producers_total(finish_producers(procs))
    first, last = samples[0], samples[-1]
    span = last["t"] - first["t"]
    per_consumer = {c: (last["processed"][c] - first["processed"][c]) / span for c in CONSUMERS}
    inserted_per_s = (last["last_id"] - first["last_id"]) / span
    growth = {c: last["pending"][c] - first["pending"][c] for c in CONSUMERS}
    allowance = max(2 * inserted_per_s, 1000)
    return {"asked_rate": total_rate or None, "inserted_per_s": inserted_per_s, "per_consumer_per_s": per_consumer,
            "lag_start": first["pending"], "lag_end": last["pending"], "lag_growth": growth,
            "lag_bounded": all(g <= allowance for g in growth.values()), "lag_allowance": allowance,
            "window_s": span, "samples": samples, "producers": produced}


def sustained(conn, args, workers: Workers) -> dict:
    _step(f"sustained: producers flat out, {args.producers} processes, window {args.seconds:.0f} s")
    runs = [window(conn, args, workers, 0.0)]
    _report_window(runs[-1])
    # start 10 % below the consumers' pace with producers flat out (who then take most of
    # the two cores), then bisect between the best bounded rate and the lowest unbounded
    # one, at first the producers' flat-out rate
    low, high = None, runs[0]["inserted_per_s"]
    rate = 0.9 * min(runs[0]["per_consumer_per_s"].values())
    for _ in range(args.steps if not runs[0]["lag_bounded"] else 0):
        _step(f"sustained: producers paced at {rate:,.0f} events/s")
        runs.append(window(conn, args, workers, rate))
        _report_window(runs[-1])
        if runs[-1]["lag_bounded"]:
            low = rate
        else:
            high = min(high, rate)
        rate = (low + high) / 2 if low is not None else rate * 0.85
    bounded = [r for r in runs if r["lag_bounded"]]
    best = max(bounded, key=lambda r: min(r["per_consumer_per_s"].values())) if bounded else None
    return {"runs": runs, "sustained": best is not None,
            "per_consumer_per_s": best["per_consumer_per_s"] if best else None,
            "min_per_consumer_per_s": min(best["per_consumer_per_s"].values()) if best else None,
            "flat_out_per_consumer_per_s": runs[0]["per_consumer_per_s"]}


def _report_window(w: dict) -> None:
    _step(f"  inserted {w['inserted_per_s']:,.0f}/s; consumers " + ", ".join(
        f"{c} {v:,.0f}/s" for c, v in w["per_consumer_per_s"].items())
        + f"; lag {w['lag_start']} -> {w['lag_end']} ({'bounded' if w['lag_bounded'] else 'GREW'})")


# --- 2. latency ---------------------------------------------------------------------------

class Listener(threading.Thread):
    """A subscriber: LISTENs on the consumers' channels and notes when each notification came."""

    def __init__(self, dsn: str, channels: dict[str, str]):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(dsn, autocommit=True, application_name="pgmodels bench listener")
        self.by_channel = {ch: c for c, ch in channels.items()}
        for ch in channels.values():
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(ch)))
        self.received: dict[str, list[tuple[float, int]]] = {c: [] for c in channels}
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            for n in self.conn.notifies(timeout=0.2):
                self.received[self.by_channel[n.channel]].append((time.time(), json.loads(n.payload)["last_event_id"]))

    def close(self) -> None:
        self.stopping = True
        self.join(5)
        self.conn.close()


def _percentiles(ms: np.ndarray) -> dict:
    if len(ms) == 0:
        return {"n": 0}
    return {"n": int(len(ms)), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max()), "mean_ms": float(ms.mean()),
            "min_ms": float(ms.min())}


def latency(conn, args, workers: Workers) -> dict:
    _step(f"latency: one producer at {args.latency_rate:,.0f} events/s for {args.latency_seconds:.0f} s")
    wait_drained(conn, workers)
    channels = dict(conn.execute("SELECT consumer, channel FROM pgmodels.stream_consumers WHERE consumer = ANY (%s)",
                                 [list(CONSUMERS)]).fetchall())
    listener = Listener(args.dsn, channels)
    listener.start()
    try:
        produced = _stream_produce.produce(args.dsn, EVENTS, args.latency_seconds, args.latency_rate, seed=99,
                                           record=True)
        wait_drained(conn, workers)
        time.sleep(0.5)
    finally:
        listener.close()
    commits = produced.pop("commits")
    first_id, last_key = commits[0][0], commits[-1][1]
    commit_at = np.zeros(last_key - first_id + 1)
    for lo, hi, t in commits:
        commit_at[lo - first_id:hi - first_id + 1] = t
    result = {"producer": produced, "consumers": {}}
    for consumer, out in zip(CONSUMERS, OUTPUTS):
        rows = np.array(conn.execute(f"SELECT key::bigint, event_id, extract(epoch FROM predicted_at)::float8 "
                                     f"FROM {out} WHERE key::bigint BETWEEN %s AND %s ORDER BY key::bigint",
                                     [first_id, last_key]).fetchall(), dtype=np.float64).reshape(-1, 3)
        keys, ev_ids, predicted_at = rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2]
        committed = commit_at[keys - first_id]
        got = np.array(listener.received[consumer], dtype=np.float64).reshape(-1, 2)
        got = got[np.argsort(got[:, 0], kind="stable")]
        reach = np.maximum.accumulate(got[:, 1]) if len(got) else np.zeros(0)
        idx = np.searchsorted(reach, ev_ids, side="left")
        seen = idx < len(got)
        visible = np.where(seen, got[np.minimum(idx, len(got) - 1), 0] if len(got) else 0.0, np.nan)
        listen_ms = (visible[seen] - committed[seen]) * 1000
        result["consumers"][consumer] = {
            "events": int(len(keys)), "expected": int(last_key - first_id + 1),
            "notifications": int(len(got)), "events_without_notification": int((~seen).sum()),
            "listen": _percentiles(listen_ms),
            "predicted_at": _percentiles((predicted_at - committed) * 1000),
        }
    worst = max(result["consumers"].values(), key=lambda c: c["listen"].get("p99_ms", math.inf))
    result["p50_ms"], result["p99_ms"] = worst["listen"]["p50_ms"], worst["listen"]["p99_ms"]
    _step(f"  p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms (the worse consumer, LISTEN); "
          f"producer {produced['rows_per_s']:,.0f} events/s")
    return result


# --- 3. the baseline --------------------------------------------------------------------

def drain_pgmodels(conn, workers: Workers, consumer: str, target: int) -> dict:
    """Wake a stopped consumer's worker(s) and time until it has processed `target` events."""
    start = time.perf_counter()
    workers.signal(signal.SIGCONT, [consumer])
    while True:
        done = conn.execute("SELECT events_processed FROM pgmodels.stream_consumer WHERE name = %s",
                            [consumer]).fetchone()[0]
        if done >= target:
            break
        if time.perf_counter() - start > 900:
            raise SystemExit(f"{consumer} did not drain the backlog")
        workers.check()
        time.sleep(0.005)
    return {"elapsed_s": time.perf_counter() - start}


def drain_baseline(args, onnx_file: Path, model, after: int, until: int) -> dict:
    cmd = [sys.executable, str(HERE / "_stream_baseline.py"), "--dsn", args.dsn, "--events", EVENTS, "--out", BASE_OUT,
           "--onnx", str(onnx_file), "--after-id", str(after), "--until-id", str(until), "--model-id", str(model[0]),
           "--model-version", str(model[1])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"the baseline failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def against_baseline(conn, args, workers: Workers, onnx_file: Path, model) -> dict:
    per_producer = max(1, math.ceil(args.events / args.producers / 100)) * 100
    total = per_producer * args.producers
    runs = []
    for i in range(args.repeat):
        _step(f"baseline comparison {i + 1} of {args.repeat}: a backlog of {total:,} events")
        wait_drained(conn, workers)
        workers.signal(signal.SIGSTOP)
        before_id, before = last_id(conn), processed(conn)
        procs, _ = start_producers(args, args.dsn, EVENTS, 3600, max_rows_each=per_producer, start_in=0.5)
        loaded = _producers_total(finish_producers(procs))
        after_id = last_id(conn)
        if after_id - before_id != total:
            raise SystemExit(f"the backlog holds {after_id - before_id} events, expected {total}")
        run = {"backlog": total, "load": loaded}
        sides = [("pgmodels", lambda: drain_pgmodels(conn, workers, CONSUMERS[0], before[CONSUMERS[0]] + total)),
                 ("baseline", lambda: drain_baseline(args, onnx_file, model, before_id, after_id))]
        for side, go in (sides if i % 2 == 0 else sides[::-1]):
            run[side] = go()
            run[side]["rows_per_s"] = total / run[side]["elapsed_s"]
        run["pgmodels_second_consumer"] = drain_pgmodels(conn, workers, CONSUMERS[1], before[CONSUMERS[1]] + total)
        run["pgmodels_second_consumer"]["rows_per_s"] = total / run["pgmodels_second_consumer"]["elapsed_s"]
        run["ratio"] = run["pgmodels"]["rows_per_s"] / run["baseline"]["rows_per_s"]
        run["order"] = [s for s, _ in (sides if i % 2 == 0 else sides[::-1])]
        _step(f"  pgmodels {run['pgmodels']['rows_per_s']:,.0f}/s (second consumer "
              f"{run['pgmodels_second_consumer']['rows_per_s']:,.0f}/s), baseline "
              f"{run['baseline']['rows_per_s']:,.0f}/s: {run['ratio']:.2f}x")
        runs.append(run)
    ratios = [r["ratio"] for r in runs]
    return {"runs": runs, "ratio": statistics.median(ratios), "ratio_spread": _spread(ratios),
            "pgmodels_rows_per_s": statistics.median(r["pgmodels"]["rows_per_s"] for r in runs),
            "pgmodels_spread": _spread([r["pgmodels"]["rows_per_s"] for r in runs]),
            "second_consumer_rows_per_s": statistics.median(r["pgmodels_second_consumer"]["rows_per_s"] for r in runs),
            "baseline_rows_per_s": statistics.median(r["baseline"]["rows_per_s"] for r in runs),
            "baseline_spread": _spread([r["baseline"]["rows_per_s"] for r in runs]),
            "backlog": total}


# --- 4. the cost to producers ---------------------------------------------------------

def producer_cost(conn, args, workers: Workers) -> dict:
    runs = []
    for i in range(args.repeat):
        _step(f"producer cost {i + 1} of {args.repeat}: {args.cost_seconds:.0f} s into each table")
        # stream_trigger_only: the trigger without the consumers' work (their workers stopped
        # for the run; they catch up before the next side)
        sides = [("stream", EVENTS), ("plain", PLAIN), ("stream_trigger_only", EVENTS)]
        run = {}
        for side, table in (sides if i % 2 == 0 else sides[::-1]):
            wait_drained(conn, workers)
            if side == "stream_trigger_only":
                workers.signal(signal.SIGSTOP)
            try:
                procs, _ = start_producers(args, args.dsn, table, args.cost_seconds)
                run[side] = _producers_total(finish_producers(procs))
            finally:
                workers.signal(signal.SIGCONT)
        run["fraction"] = run["stream"]["rows_per_s"] / run["plain"]["rows_per_s"]
        run["fraction_trigger_only"] = run["stream_trigger_only"]["rows_per_s"] / run["plain"]["rows_per_s"]
        run["order"] = [s for s, _ in (sides if i % 2 == 0 else sides[::-1])]
        _step(f"  with the stream {run['stream']['rows_per_s']:,.0f}/s, without {run['plain']['rows_per_s']:,.0f}/s: "
              f"{run['fraction']:.2f} (trigger only, consumers stopped: {run['fraction_trigger_only']:.2f})")
        runs.append(run)
    fractions = [r["fraction"] for r in runs]
    trigger_only = [r["fraction_trigger_only"] for r in runs]
    return {"runs": runs, "fraction": statistics.median(fractions), "fraction_spread": _spread(fractions),
            "fraction_trigger_only": statistics.median(trigger_only),
            "fraction_trigger_only_spread": _spread(trigger_only),
            "stream_rows_per_s": statistics.median(r["stream"]["rows_per_s"] for r in runs),
            "stream_spread": _spread([r["stream"]["rows_per_s"] for r in runs]),
            "plain_rows_per_s": statistics.median(r["plain"]["rows_per_s"] for r in runs),
            "plain_spread": _spread([r["plain"]["rows_per_s"] for r in runs])}


# --- checks, report ------------------------------------------------------------------

def check_outputs(conn) -> dict:
    """Every event has exactly one prediction per consumer; none went to the dead letters."""
    events = conn.execute(f"SELECT count(*) FROM {EVENTS}").fetchone()[0]
    found = {"events": events}
    for consumer, out in zip(CONSUMERS, OUTPUTS):
        n, distinct, missing = conn.execute(
            f"SELECT count(*), count(DISTINCT o.event_id), (SELECT count(*) FROM {EVENTS} e "
            f"WHERE NOT EXISTS (SELECT 1 FROM {out} x WHERE x.key = e.id)) FROM {out} o").fetchone()
        failures = conn.execute("SELECT failures FROM pgmodels.stream_consumer WHERE name = %s",
                                [consumer]).fetchone()[0]
        found[consumer] = {"predictions": n, "distinct_events": distinct, "events_without_prediction": missing,
                           "dead_letters": failures}
    agree = conn.execute(f"SELECT count(*) FILTER (WHERE a.prediction IS DISTINCT FROM b.prediction), count(*) "
                         f"FROM {OUTPUTS[0]} a JOIN {BASE_OUT} b ON b.key = a.key").fetchone()
    found["baseline_compared"], found["baseline_differ"] = agree[1], agree[0]
    found["exactly_once"] = all(found[c]["predictions"] == events == found[c]["distinct_events"]
                                and found[c]["events_without_prediction"] == 0 for c in CONSUMERS)
    return found


def command(args) -> str:
    return (f"{COMMAND} --seconds {args.seconds:g} --events {args.events} --repeat {args.repeat} "
            f"--producers {args.producers} --latency-seconds {args.latency_seconds:g} --latency-rate "
            f"{args.latency_rate:g} --cost-seconds {args.cost_seconds:g} --trees {args.trees} "
            f"--train-rows {args.train_rows}" + (f" --out {args.out}" if args.out else ""))


def summary(r: dict) -> list[tuple]:
    s, lat, b, c = r["sustained"], r["latency"], r["baseline"], r["producer_cost"]
    flat = s["runs"][0]
    sustained = (f"{s['min_per_consumer_per_s']:,.0f}" if s["sustained"] else "none bounded")
    return [
        ("sustained events/s per consumer", sustained, ">= 10,000",
         bool(s["sustained"] and s["min_per_consumer_per_s"] >= 10_000),
         f"flat out: inserted {flat['inserted_per_s']:,.0f}/s, consumers "
         + "/".join(f"{v:,.0f}" for v in flat["per_consumer_per_s"].values())
         + f", lag {sum(flat['lag_start'].values())} -> {sum(flat['lag_end'].values())}"),
        ("latency p99 at steady rate", f"{lat['p99_ms']:.1f} ms", "<= 100 ms", lat["p99_ms"] <= 100,
         f"p50 {lat['p50_ms']:.1f} ms"),
        ("one consumer vs baseline", f"{b['ratio']:.2f}x", ">= 1.0", b["ratio"] >= 1.0,
         f"{b['pgmodels_rows_per_s']:,.0f} vs {b['baseline_rows_per_s']:,.0f} events/s, range "
         f"{b['ratio_spread'][0]:.2f}-{b['ratio_spread'][1]:.2f}"),
        ("producer cost (with / without)", f"{c['fraction']:.2f}", ">= 0.7", c["fraction"] >= 0.7,
         f"{c['stream_rows_per_s']:,.0f} vs {c['plain_rows_per_s']:,.0f} rows/s, range "
         f"{c['fraction_spread'][0]:.2f}-{c['fraction_spread'][1]:.2f}; trigger only "
         f"{c['fraction_trigger_only']:.2f}"),
    ]


def main(argv=None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    with psycopg.connect(args.dsn, autocommit=True) as conn, tempfile.TemporaryDirectory() as tmp:
        onnx, model = prepare(conn, args)
        onnx_file = Path(tmp) / "model.onnx"
        onnx_file.write_bytes(onnx)
        workers = Workers(args.dsn, args, Path(tmp))
        results = {"meta": {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                            "command": command(args), "dsn": redact(args.dsn), "cpus": os.cpu_count(),
                            "load_average_at_start": load_start,
                            "server_version": conn.execute("SHOW server_version").fetchone()[0],
                            "model": {"project": _db.PROJECT, "model_id": model[0], "version": model[1]},
                            "args": {k: v for k, v in vars(args).items() if k != "dsn"}}}
        try:
            workers.start()
            time.sleep(1.0)
            # warm up: every worker's backend loads the model
            procs, _ = start_producers(args, args.dsn, EVENTS, 30, max_rows_each=1000, start_in=0.2)
            finish_producers(procs)
            wait_drained(conn, workers)
            results["sustained"] = sustained(conn, args, workers)
            results["latency"] = latency(conn, args, workers)
            results["baseline"] = against_baseline(conn, args, workers, onnx_file, model)
            results["producer_cost"] = producer_cost(conn, args, workers)
            wait_drained(conn, workers)
        finally:
            workers.stop()
        results["checks"] = check_outputs(conn)
        results["meta"]["load_average_at_end"] = os.getloadavg()
        results["meta"]["log_children_rows"] = [
            conn.execute(f"SELECT count(*) FROM ONLY pgmodels.stream_{sid}_log_{k}").fetchone()[0]
            for (sid,) in conn.execute("SELECT stream_id FROM pgmodels.streams WHERE name = %s", [STREAM]).fetchall()
            for k in range(3)]
        if not args.keep:
            cleanup(conn)
    results["summary"] = [{"figure": f, "result": v, "target": t, "met": m, "detail": d}
                          for f, v, t, m, d in summary(results)]
    print(f"{'figure':34}{'result':>16}  {'target':<11}{'met':<5}detail")
    for f, v, t, m, d in summary(results):
        print(f"{f:34}{v:>16}  {t:<11}{'yes' if m else 'NO':<5}{d}")
    ch = results["checks"]
    print(f"exactly one prediction per event and consumer: {ch['exactly_once']} ({ch['events']:,} events); "
          f"baseline vs pgmodels predictions that differ: {ch['baseline_differ']} of {ch['baseline_compared']:,}; "
          f"load average at start {load_start[0]:.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
