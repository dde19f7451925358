"""Requests that arrive together are scored together.

Concurrent infer requests of one kind (same role, model version, outputs and input form)
that queue while statements for that kind are running go out as one statement when the
next one starts: nothing waits for a batch to fill, so a lone request is sent at once,
and under load the per-statement work (the transaction, the role, the model lookup) is
shared by many requests. If a merged statement fails with a client error, each request
is run again alone, so one request's bad features never fail another's.
"""

from __future__ import annotations

import asyncio

from .errors import ProxyError

MAX_ROWS = 256        # rows per merged statement
PER_KIND = 2          # statements of one kind in flight at once, per worker process


class _Kind:
    __slots__ = ("queue", "running")

    def __init__(self):
        self.queue: list = []
        self.running = 0


class Batcher:
    def __init__(self):
        self._kinds: dict[tuple, _Kind] = {}

    async def submit(self, key: tuple, plan, execute):
        """The result rows of one plan; execute(plans) runs a list of plans as one
        statement and returns one list of rows per plan."""
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind()
        future = asyncio.get_running_loop().create_future()
        kind.queue.append((plan, future))
        if kind.running < PER_KIND:
            kind.running += 1
            asyncio.create_task(self._drain(key, kind, execute))
        return await future

    async def _drain(self, key: tuple, kind: _Kind, execute) -> None:
        try:
            while kind.queue:
                batch, rows = [], 0
                while kind.queue and (not batch or rows + kind.queue[0][0].n_rows <= MAX_ROWS):
                    item = kind.queue.pop(0)
                    batch.append(item)
                    rows += item[0].n_rows
                await self._run(batch, execute)
        finally:
            kind.running -= 1
            if not kind.running and not kind.queue:
                self._kinds.pop(key, None)

    @staticmethod
    async def _run(batch: list, execute) -> None:
        try:
            results = await execute([plan for plan, _ in batch])
            for (_, future), rows in zip(batch, results):
                if not future.done():
                    future.set_result(rows)
            return
        except ProxyError as e:
            if len(batch) == 1 or e.status >= 500:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                return
        except BaseException as e:  # noqa: BLE001 - hand it to the waiting requests, never lose it
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            if isinstance(e, asyncio.CancelledError):
                raise
            return
        for plan, future in batch:  # a client error in a merged statement: find whose it was
            try:
                rows = (await execute([plan]))[0]
                if not future.done():
                    future.set_result(rows)
            except BaseException as e:  # noqa: BLE001
                if not future.done():
                    future.set_exception(e)
