"""The load generator of bench_proxy.py: N concurrent clients, each on its own keep-alive
HTTP/1.1 connection, sending the same single-row POST back to back (a closed loop) for a
fixed time; prints {"requests", "errors", "seconds", "rps", "p50_ms", "p99_ms", ...} as JSON.

Plain asyncio streams rather than an HTTP library, so that the client costs little of the
CPU the servers share with it: a request is one write, a response is read by its
Content-Length. With --key-placeholder, each request's body has that text replaced by the
next number of a counter the clients share (a routing key per request, as bench_rollout.py
sends); without it, every request is the same bytes. Run in its own process, after a
warm-up that is not counted:

    python benchmarks/_proxy_load.py --url http://127.0.0.1:8080/v2/models/m/infer \
        --body '{"inputs": ...}' --header 'authorization: Bearer ...' --clients 16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from urllib.parse import urlsplit


async def _client(host, port, request, until: float, warm_until: float, out: list, errors: list):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            started = time.perf_counter()
            if started >= until:
                return
            writer.write(request())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            done = time.perf_counter()
            if started >= warm_until:
                out.append(done - started)
                if status != 200:
                    errors.append(status)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def run(url: str, body: bytes, headers: list[str], clients: int, seconds: float, warmup: float,
              key_placeholder: bytes | None = None) -> dict:
    parts = urlsplit(url)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            + "".join(h + "\r\n" for h in headers)).encode()
    if key_placeholder:
        counter = itertools.count()

        def request() -> bytes:
            b = body.replace(key_placeholder, str(next(counter)).encode())
            return head + b"Content-Length: %d\r\n\r\n" % len(b) + b
    else:
        fixed = head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body

        def request() -> bytes:
            return fixed
    start = time.perf_counter()
    warm_until, until = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors: list[int] = []
    await asyncio.gather(*(_client(parts.hostname, parts.port, request, until, warm_until, latencies, errors)
                           for _ in range(clients)))
    return summarize(latencies, errors, seconds, clients)


def summarize(latencies: list[float], errors: list, seconds: float, clients: int) -> dict:
    """A closed loop's requests per second and latency percentiles (shared with _grpc_load.py)."""
    latencies.sort()
    n = len(latencies)
    pick = (lambda q: latencies[min(n - 1, int(q * n))] * 1000) if n else (lambda q: float("nan"))
    return {"requests": n, "errors": len(errors), "error_statuses": sorted(set(errors)), "seconds": seconds,
            "rps": n / seconds, "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "max_ms": latencies[-1] * 1000 if n else float("nan"), "clients": clients}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True)
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--key-placeholder", help="text of the body replaced by a new number in every request")
    a = p.parse_args()
    placeholder = a.key_placeholder.encode() if a.key_placeholder else None
    print(json.dumps(asyncio.run(run(a.url, a.body.encode(), a.header, a.clients, a.seconds, a.warmup,
                                     placeholder))))


if __name__ == "__main__":
    main()
