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


# (model, endpoint, code) -> the children of the metrics above that a request of that kind
# counts in: labels() looks each up under a lock at every call; a worker sees few kinds
_CHILDREN: dict[tuple, tuple] = {}
_CHILDREN_LIMIT = 10000


def _children(model: str, endpoint: str, code: int) -> tuple:
    key = (model, endpoint, code)
    found = _CHILDREN.get(key)
    if found is None:
        if len(_CHILDREN) >= _CHILDREN_LIMIT:
            _CHILDREN.clear()
        found = _CHILDREN[key] = (REQUESTS.labels(model, endpoint, str(code)),
                                  ERRORS.labels(model, endpoint, str(code)) if code >= 400 else None,
                                  LATENCY.labels(model, endpoint))
    return found


def observe(model: str, endpoint: str, code: int, started: float, rows: int = 0) -> None:
    requests, errors, latency = _children(model, endpoint, code)
    requests.inc()
    if errors is not None:
        errors.inc()
    latency.observe(time.perf_counter() - started)
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
