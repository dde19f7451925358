"""`pgmodels serve` under load and faults: a soak at a fixed rate, and a database restart
(on a throwaway cluster, never the shared one)."""

from __future__ import annotations

import asyncio
import os
import time

import httpx
import psycopg
import pytest

from proxyhelpers import Env, Server, bearer, matrix

ONE = {"inputs": [matrix([[3.0, 5.0, 1.0, 2.0]])]}
SOAK_SECONDS = float(os.environ.get("PGMODELS_SOAK_SECONDS", "30"))  # PGMODELS_SOAK_SECONDS for a longer one
SOAK_RATE = 50  # requests per second, sent on schedule whatever the answers' latency (open loop)


async def _fixed_rate(url: str, headers: dict, seconds: float, rate: int, keyed_every: int = 3) -> list:
    """Send requests at a fixed rate; return (status, latency) of each."""
    results: list = []
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(limits=limits, timeout=30, headers=headers) as client:
        async def one(i: int):
            body = {"parameters": {"keys": [1 + i % 50]}} if i % keyed_every == 0 else ONE
            started = time.perf_counter()
            try:
                r = await client.post(url, json=body)
                results.append((r.status_code, time.perf_counter() - started, r.text if r.status_code >= 400 else ""))
            except httpx.HTTPError as e:
                results.append((599, time.perf_counter() - started, repr(e)))

        tasks, start = [], time.perf_counter()
        for i in range(int(seconds * rate)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return results


@pytest.mark.soak
def test_soak_at_a_fixed_rate_has_no_5xx(test_db, tmp_path):
    env = Env(test_db, tmp_path)
    try:
        url = f"{env.server.url}/v2/models/{env.num}/infer"
        results = asyncio.run(_fixed_rate(url, bearer(env.token), SOAK_SECONDS, SOAK_RATE))
        statuses = [r[0] for r in results]
        assert len(results) == int(SOAK_SECONDS * SOAK_RATE)
        assert [r for r in results if r[0] >= 500] == []
        assert set(statuses) == {200}, {r[2] for r in results if r[0] != 200}
        latencies = sorted(r[1] for r in results)
        print(f"soak: {len(results)} requests at {SOAK_RATE}/s, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
              f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms")
        assert "Traceback" not in env.server.log_text()
    finally:
        env.close()


def test_a_database_restart_gives_503_and_the_server_recovers(throwaway_cluster, tmp_path):
    c = throwaway_cluster
    with psycopg.connect(c.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT (i % 17)::real AS a, ((i * 7) % 23)::real AS b, (i % 5)::real AS c, "
                     "(i % 3)::real AS d, ((i % 17) + ((i * 7) % 23) > 20)::int AS y FROM generate_series(1, 200) i")
        conn.execute("SELECT * FROM train('r', 'classification', 't', 'y')").fetchall()
        conn.execute("CREATE ROLE restart_app")
        conn.execute("SELECT grant_project('r', 'restart_app', 'predict')")
        token = conn.execute("SELECT create_api_token('restart_app')").fetchone()[0]
    server = Server(c.url(), tmp_path)
    url = f"{server.url}/v2/models/r/infer"
    try:
        assert httpx.post(url, json=ONE, headers=bearer(token), timeout=30).status_code == 200
        c.stop()
        for _ in range(4):
            r = httpx.post(url, json=ONE, headers=bearer(token), timeout=30)
            assert r.status_code == 503 and "database unavailable" in r.json()["error"], r.text
        r = httpx.get(f"{server.url}/v2/health/ready", timeout=30)
        assert r.status_code == 503 and "error" in r.json()
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200

        import tritonclient.grpc as tg
        from tritonclient.utils import InferenceServerException

        client = tg.InferenceServerClient(server.grpc_url)
        assert client.is_server_ready() is False
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata("r", headers=bearer(token))
        assert info.value.status() == "StatusCode.UNAVAILABLE"

        c.start()
        deadline, statuses = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            r = httpx.post(url, json=ONE, headers=bearer(token), timeout=30)
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert statuses[-1] == 200 and set(statuses) <= {200, 503}, statuses
        for _ in range(10):  # every worker, every pooled connection: no stale one left behind
            assert httpx.post(url, json=ONE, headers=bearer(token), timeout=30).status_code in (200, 503)
        assert httpx.post(url, json=ONE, headers=bearer(token), timeout=30).status_code == 200
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200
    finally:
        server.stop()
    assert "Traceback" not in server.log_text()
