"""Where ``pgmodels serve`` sends a read: round robin across the read DSNs (hot standbys),
skipping one that failed, and the primary when none is left.

Inference and model metadata only read, so any hot standby answers them (``predict`` never
writes: it runs in hot_standby). Anything that writes (API tokens, the request log) goes to
the primary, and so does a read when every standby is out. A read that fails in a way
worth retrying (the connection broke or could not be made, the server is shutting down
or still starting, the pool had no connection in time, a recovery conflict cancelled it)
is run again on the next pool: a read has no effect to repeat. The pool that failed is
left out for ``OUT_FOR`` seconds, then tried again by the next read that comes its way
(its own connections reconnect in the background meanwhile). An error of the request
itself (a bad feature, a missing grant) is the answer, and is not retried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from .errors import ProxyError

OUT_FOR = 2.0  # seconds a read pool that failed is left out
EMPTY_TIMEOUT = 0.5  # seconds to wait on a read pool with no connection (its server may be down)
log = logging.getLogger("pgmodels.serve")


def retryable(e: ProxyError) -> bool:
    """A failure of the server or the connection, not of the request: worth another server."""
    state = e.sqlstate or ""
    return state.startswith(("08", "57P")) or state in ("40001", "53300") or (e.status == 503 and not state)


@dataclass
class ReadPool:
    dsn_label: str
    pool: AsyncConnectionPool
    out_until: float = 0.0
    served: int = 0
    failed: int = 0

    def healthy(self, now: float) -> bool:
        return self.out_until <= now


@dataclass
class ReadPools:
    """The read DSNs' pools, in round robin."""
    pools: list[ReadPool] = field(default_factory=list)
    _next: int = 0

    @classmethod
    def make(cls, dsns: list[str], min_size: int, max_size: int, kwargs: dict) -> "ReadPools":
        from psycopg.conninfo import conninfo_to_dict

        pools = []
        for dsn in dsns:
            info = conninfo_to_dict(dsn)
            label = f"{info.get('host', '')}:{info.get('port', '5432')}/{info.get('dbname', '')}"
            pools.append(ReadPool(label, AsyncConnectionPool(
                dsn, min_size=min_size, max_size=max_size, open=False, kwargs=kwargs, reconnect_timeout=0)))
        return cls(pools)

    def __bool__(self) -> bool:
        return bool(self.pools)

    async def open(self) -> None:
        for p in self.pools:
            await p.pool.open(wait=False)

    async def close(self) -> None:
        for p in self.pools:
            await p.pool.close(timeout=5)

    def order(self) -> list[ReadPool]:
        """The healthy pools, starting with the next in turn."""
        now = time.monotonic()
        n = len(self.pools)
        start, self._next = self._next, (self._next + 1) % n
        return [p for p in (self.pools[(start + i) % n] for i in range(n)) if p.healthy(now)]

    async def run(self, run_on, primary, role, statement, params):
        """run_on(pool, role, statement, params, timeout) on the next healthy read pool; on a
        retryable failure the next one, and the primary last."""
        for p in self.order():
            # a pool with no connection at all is reconnecting (a server that went away):
            # wait for it briefly, not the whole pool timeout, before the next one is asked
            empty = p.pool.get_stats().get("pool_size", 0) == 0
            try:
                rows = await run_on(p.pool, role, statement, params, EMPTY_TIMEOUT if empty else None)
            except ProxyError as e:
                if not retryable(e):
                    raise
                p.failed += 1
                p.out_until = time.monotonic() + OUT_FOR
                log.warning("read DSN %s failed (%s); left out for %.0f s", p.dsn_label, e.message, OUT_FOR)
                continue
            p.served += 1
            return rows
        return await run_on(primary, role, statement, params)

    def stats(self) -> list[dict]:
        now = time.monotonic()
        return [{"dsn": p.dsn_label, "healthy": p.healthy(now), "served": p.served, "failed": p.failed,
                 **p.pool.get_stats()} for p in self.pools]
