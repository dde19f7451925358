"""Prometheus metrics at /metrics: requests, errors and latency by model and endpoint,
and the connection pool's use.

With several worker processes, ``pgmodels serve`` sets PROMETHEUS_MULTIPROC_DIR before
the workers start, and /metrics adds up every worker's numbers.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, multiprocess)

_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

REQUESTS = Counter("pgmodels_requests_total", "Requests answered, by model, endpoint and status code",
                   ["model", "endpoint", "code"])
ERRORS = Counter("pgmodels_request_errors_total", "Requests answered with an error status, by model and endpoint",
                 ["model", "endpoint", "code"])
LATENCY = Histogram("pgmodels_request_duration_seconds", "Time to answer a request, by model and endpoint",
                    ["model", "endpoint"], buckets=_BUCKETS)
ROWS = Counter("pgmodels_inference_rows_total", "Rows scored, by model", ["model"])
BATCHED = Histogram("pgmodels_requests_per_statement", "Infer requests scored by one statement (concurrent "
                    "requests of one kind share one)", buckets=(1, 2, 4, 8, 16, 32, 64))
POOL = Gauge("pgmodels_pool_connections", "Database connections of the pool: size, idle, in_use and "
             "requests waiting", ["state"], multiprocess_mode="livesum")


def observe(model: str, endpoint: str, code: int, started: float, rows: int = 0) -> None:
    REQUESTS.labels(model, endpoint, str(code)).inc()
    if code >= 400:
        ERRORS.labels(model, endpoint, str(code)).inc()
    LATENCY.labels(model, endpoint).observe(time.perf_counter() - started)
    if rows:
        ROWS.labels(model).inc(rows)


def update_pool(stats: dict) -> None:
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    POOL.labels("size").set(size)
    POOL.labels("idle").set(idle)
    POOL.labels("in_use").set(max(size - idle, 0))
    POOL.labels("waiting").set(stats.get("requests_waiting", 0))


def exposition() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
