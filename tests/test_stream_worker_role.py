"""A stream worker runs as its consumers' owner, not a superuser: what it calls while it
waits must be open to that role (found when the compose test's worker, running as the
application role, restarted each time it went idle)."""

from __future__ import annotations


def test_a_worker_s_in_flight_check_runs_as_a_login_only_role(conn, make_role, name):
    _, role = make_role(name + "_w")
    # no error for a role that may execute nothing internal but what workers call
    assert role.execute("SELECT pgmodels._stream_inflight(ARRAY[1, 2]::bigint[])").fetchone() == (False,)
