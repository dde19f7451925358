"""What the server keeps for a second (a token's role, a model's metadata), fetched once.

Each value is good for ``ttl`` seconds from the moment its fetch began, never longer: a
revoked token or a changed deployment reaches every request within that. Two things keep
the refreshes off the requests' path:

- single flight: when a value is missing or expired, the requests that want it wait on
  one fetch (before, each of them sent its own query: about five at each expiry under 16
  clients, some waiting 10-60 ms);
- refresh ahead: a value in the last fifth of its life is fetched again in the
  background, while it still answers, so that a steady stream of requests never finds
  it expired.

A fetch that fails reaches the requests that waited on it (as its own error); a failed
background refresh is dropped, and the next request after the expiry fetches again.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Hashable

AHEAD = 0.2  # the share of a value's life, at its end, in which it is refreshed in the background


class TtlCache:
    def __init__(self, ttl: float, limit: int = 10000):
        self.ttl = ttl
        self.limit = limit
        self._values: dict[Hashable, tuple[object, float]] = {}
        self._pending: dict[Hashable, asyncio.Future] = {}

    async def get(self, key: Hashable, fetch: Callable[[], Awaitable[object]]):
        now = time.monotonic()
        hit = self._values.get(key)
        if hit is not None and hit[1] >= now:
            if hit[1] - now < self.ttl * AHEAD and key not in self._pending:
                self._start(key, fetch).add_done_callback(_quiet)
            return hit[0]
        task = self._pending.get(key) or self._start(key, fetch)
        # one waiter cancelled (its client went away) does not cancel the others' fetch
        return await asyncio.shield(task)

    def _start(self, key: Hashable, fetch) -> asyncio.Future:
        task = asyncio.ensure_future(self._fetch(key, fetch))
        self._pending[key] = task
        return task

    async def _fetch(self, key: Hashable, fetch):
        started = time.monotonic()
        try:
            value = await fetch()
            if len(self._values) >= self.limit:
                self._values.clear()
            self._values[key] = (value, started + self.ttl)
            return value
        finally:
            self._pending.pop(key, None)


def _quiet(task: asyncio.Future) -> None:
    """A background refresh's error is not any request's: read it so that asyncio does not
    report it as never retrieved."""
    if not task.cancelled():
        task.exception()
