"""The request log: a sample of the requests this worker answered, with the model id and
version that answered each, written to pgmodels.request_log.

Requests are not slowed by it: each is appended to a list in memory, and a task writes
the list once a second in one INSERT with the server's own connection role (which needs
INSERT on pgmodels.request_log: a superuser has it, another role is granted it). Entries
not yet written when the worker is killed are lost; a graceful stop writes them. If the
role may not write, the worker says so once in its log and stops logging.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import random
import time

log = logging.getLogger("pgmodels.serve")
FLUSH_SECONDS = 1.0
MAX_PENDING = 100_000  # beyond this (the database is away), new entries are dropped

# a statement that returns a row (Backend.run fetches one): the count written
INSERT = """
WITH written AS (
INSERT INTO pgmodels.request_log (at, project_id, project, model_id, model_version, role, transport, request_id,
                                  rows, status, error, latency_ms)
SELECT r.at, p.id, r.project, r.model_id, r.model_version, r.role, r.transport, r.request_id, r.rows, r.status,
       r.error, r.latency_ms
  FROM jsonb_to_recordset(%(entries)s::jsonb) AS r(at timestamptz, project text, model_id bigint,
                                                   model_version integer, role name, transport text,
                                                   request_id text, rows integer, status integer, error text,
                                                   latency_ms double precision)
  LEFT JOIN pgmodels.projects p ON p.name = r.project
RETURNING 1)
SELECT pg_catalog.count(*) FROM written"""


class RequestLog:
    def __init__(self, backend, sample: float):
        self.backend, self.sample = backend, max(0.0, min(1.0, sample))
        self.pending: list[dict] = []
        self.enabled = self.sample > 0

    def record(self, *, project: str, model_id, version, role: str, transport: str, request_id, rows, status: int,
               error: str | None, latency_s: float) -> None:
        if not self.enabled or (self.sample < 1.0 and random.random() >= self.sample):
            return
        if len(self.pending) >= MAX_PENDING:
            return
        self.pending.append({
            "at": time.time(), "project": project[:200],
            "model_id": model_id, "model_version": version, "role": role, "transport": transport,
            "request_id": None if request_id is None else str(request_id)[:200], "rows": rows, "status": status,
            "error": None if error is None else error[:500], "latency_ms": latency_s * 1000.0})

    async def flush(self) -> None:
        if not self.pending:
            return
        entries, self.pending = self.pending, []
        from .errors import ProxyError

        for e in entries:  # the time as text once here, not on each request's path
            if isinstance(e["at"], float):
                e["at"] = datetime.datetime.fromtimestamp(e["at"], datetime.timezone.utc).isoformat()
        try:
            await self.backend.run(None, INSERT, {"entries": json.dumps(entries)})
        except ProxyError as e:
            if e.sqlstate == "42501":
                log.warning("request log off: this server's role may not insert into pgmodels.request_log "
                            "(an administrator can GRANT INSERT ON pgmodels.request_log to it)")
                self.enabled = False
            else:  # the database is away: keep them for the next try
                self.pending = entries[-MAX_PENDING:] + self.pending

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                await self.flush()
        except asyncio.CancelledError:
            await self.flush()
            raise
