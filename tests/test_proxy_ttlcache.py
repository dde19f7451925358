"""pgmodels serve's one-second cache of tokens and metadata (proxy/ttlcache.py): one fetch
for all the requests waiting on a key, a refresh ahead of the expiry, and never a value
older than its ttl from the start of its fetch."""

from __future__ import annotations

import asyncio

import pytest

from pgmodels.proxy.ttlcache import TtlCache


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_one_fetch():
    calls = []

    async def main():
        cache = TtlCache(1.0)

        async def fetch():
            calls.append(1)
            await asyncio.sleep(0.05)
            return "role_a"

        return await asyncio.gather(*(cache.get("token", fetch) for _ in range(16)))

    assert run(main()) == ["role_a"] * 16
    assert len(calls) == 1


def test_a_value_near_its_end_is_refreshed_in_the_background_and_an_expired_one_is_not_served():
    values = iter(["first", "second", "third"])

    async def main():
        cache = TtlCache(0.2)

        async def fetch():
            await asyncio.sleep(0.01)
            return next(values)

        seen = [await cache.get("k", fetch)]
        await asyncio.sleep(0.17)  # in the last fifth: served, refreshed behind
        seen.append(await cache.get("k", fetch))
        await asyncio.sleep(0.03)
        seen.append(await cache.get("k", fetch))  # the refreshed value
        await asyncio.sleep(0.25)  # expired: fetched again before answering
        seen.append(await cache.get("k", fetch))
        return seen

    assert run(main()) == ["first", "first", "second", "third"]


def test_a_failed_fetch_reaches_its_waiters_and_is_not_kept():
    attempts = []

    async def main():
        cache = TtlCache(1.0)

        async def failing():
            attempts.append(1)
            await asyncio.sleep(0.01)
            raise LookupError("database down")

        results = await asyncio.gather(*(cache.get("k", failing) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, LookupError) for r in results)

        async def working():
            return "back"

        return await cache.get("k", working)

    assert run(main()) == "back"
    assert len(attempts) == 1


def test_a_cancelled_waiter_does_not_cancel_the_fetch_of_the_others():
    async def main():
        cache = TtlCache(1.0)

        async def fetch():
            await asyncio.sleep(0.05)
            return 42

        first = asyncio.ensure_future(cache.get("k", fetch))
        second = asyncio.ensure_future(cache.get("k", fetch))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert run(main()) == 42
