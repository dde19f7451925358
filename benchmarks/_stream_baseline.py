"""The baseline of the stream benchmark: the consumer the seeds describe, in its own process.

A Python loop that polls the events table with psycopg for the rows after the last id it
has seen (``SELECT id, f1 .. f8 FROM events WHERE id > %s ORDER BY id LIMIT 1000``; when
none came back it sleeps ``--poll-ms``), predicts them in-process with onnxruntime (the
ONNX artifact from ``export_onnx``, one intra-op thread, as a backend runs it), and writes
the predictions back with ``COPY`` into its output table (event id, key, prediction,
probabilities, model id and version, prediction time), one transaction per batch. Its
position lives in memory, as in the seeds (so it would skip an event whose transaction
commits after a later id's: pgmodels' snapshots do not; that costs nothing here, the
backlog is committed before it starts).

The clock starts after the connection is open and the session has run one row (pgmodels'
worker is warm too), and stops when the last id asked for has been written. Prints one
JSON object: rows, seconds, and the time in fetch, predict and write.

    python benchmarks/_stream_baseline.py --dsn URL --events T --out T --onnx FILE --after-id N --until-id M
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time

import numpy as np
import onnxruntime as ort
import psycopg

FEATURES = [f"f{i + 1}" for i in range(8)]


def run(dsn: str, events: str, out: str, onnx: bytes, after_id: int, until_id: int, model: tuple[int, int],
        batch: int = 1000, poll_ms: float = 5.0) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    session.run(None, {input_name: np.zeros((1, len(FEATURES)), dtype=np.float32)})
    select = f"SELECT id, {', '.join(FEATURES)} FROM {events} WHERE id > %s ORDER BY id LIMIT {int(batch)}"
    copy_sql = (f"COPY {out} (event_id, key, prediction, probabilities, model_id, model_version, predicted_at) "
                "FROM STDIN")
    fetch_s = predict_s = write_s = 0.0
    rows = polls = empty = 0
    last = after_id
    with psycopg.connect(dsn, autocommit=False, application_name="pgmodels bench baseline consumer") as conn:
        conn.execute("SELECT 1")
        conn.commit()
        start = time.perf_counter()
        while last < until_id:
            t0 = time.perf_counter()
            got = conn.execute(select, [last]).fetchall()
            polls += 1
            t1 = time.perf_counter()
            fetch_s += t1 - t0
            if not got:
                conn.commit()
                empty += 1
                time.sleep(poll_ms / 1000)
                continue
            data = np.array(got, dtype=np.float64)
            ids = data[:, 0].astype(np.int64)
            X = data[:, 1:].astype(np.float32)
            answers = dict(zip(outputs, session.run(None, {input_name: X})))
            labels = answers["label"].reshape(-1)
            probabilities = answers.get("probabilities")
            t2 = time.perf_counter()
            predict_s += t2 - t1
            now = datetime.datetime.now(datetime.timezone.utc)
            with conn.cursor().copy(copy_sql) as copy:
                for i, label, p in zip(ids.tolist(), labels.tolist(),
                                       probabilities.tolist() if probabilities is not None else [None] * len(ids)):
                    copy.write_row((i, str(i), float(label), p, model[0], model[1], now))
            conn.commit()
            write_s += time.perf_counter() - t2
            rows += len(ids)
            last = int(ids[-1])
        elapsed = time.perf_counter() - start
    return {"rows": rows, "elapsed_s": elapsed, "rows_per_s": rows / elapsed if elapsed else 0.0,
            "fetch_s": fetch_s, "predict_s": predict_s, "write_s": write_s, "polls": polls, "empty_polls": empty}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--onnx", required=True, help="file holding the ONNX artifact")
    p.add_argument("--after-id", type=int, required=True)
    p.add_argument("--until-id", type=int, required=True)
    p.add_argument("--model-id", type=int, required=True)
    p.add_argument("--model-version", type=int, required=True)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--poll-ms", type=float, default=5.0)
    a = p.parse_args(argv)
    with open(a.onnx, "rb") as f:
        onnx = f.read()
    print(json.dumps(run(a.dsn, a.events, a.out, onnx, a.after_id, a.until_id, (a.model_id, a.model_version),
                         a.batch, a.poll_ms)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
