"""A hot standby of an embedded cluster: ``pgmodels db create --standby-of URL``.

pg_basebackup copies the primary's data directory, and with it everything pgmodels keeps
there: the catalog (models, grants, the secret key of caller credentials), the
installed extension, plpython3u, ``pgmodels.conf`` with the ``pgmodels.*`` settings.
What lives outside the data directory has to be on the standby's machine already: the
PostgreSQL 15 packages with plpython3u and pg_cron, the extension's files and the
virtual environment the server imports from (scripts/install.sh puts all of them in
place). The copy's ``pgmodels.conf`` is then rewritten for the standby's own port,
socket directory and virtual environment, and the server starts in recovery
(``standby.signal``), streaming from the primary (``primary_conninfo``, written by
``pg_basebackup -R``) and answering read-only queries: predict, metadata, exports.

Nothing here runs on the primary besides the copy and, with --slot, a physical
replication slot that keeps the WAL this standby has not received yet.
"""

from __future__ import annotations

import os
import re
import shutil
import time

from ..errors import INVALID_PARAMETER_VALUE, OBJECT_NOT_IN_PREREQUISITE_STATE, PgmodelsError
from .cluster import Cluster, _pg_bindir

_SLOT = re.compile(r"^[a-z0-9_]{1,63}$")


def is_standby(cluster: Cluster) -> bool:
    return (cluster.data / "standby.signal").exists()


def _conninfo(url: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url)
    except Exception as e:  # noqa: BLE001 - a bad URL is the caller's error, said once
        raise PgmodelsError("invalid primary connection string", detail=str(e).strip().splitlines()[0],
                            hint="Give a libpq URL such as postgresql://postgres:PASSWORD@HOST:PORT/pgmodels "
                                 '(the primary\'s "pgmodels db url").', sqlstate=INVALID_PARAMETER_VALUE) from None


def _check_primary(url: str) -> None:
    """Fail early and clearly when the primary is not one a standby can copy."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            level, senders = conn.execute(
                "SELECT current_setting('wal_level'), current_setting('max_wal_senders')::int").fetchone()
            has_ext = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgmodels'").fetchone()
    except psycopg.OperationalError as e:
        raise PgmodelsError("cannot connect to the primary", detail=str(e).strip().splitlines()[0],
                            sqlstate="08000") from None
    if level not in ("replica", "logical") or senders < 1:
        raise PgmodelsError("the primary does not allow streaming replication",
                            detail=f"wal_level is {level} and max_wal_senders is {senders}.",
                            hint="Set wal_level = replica (or logical) and max_wal_senders > 0, and restart it.",
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
    if not has_ext:
        raise PgmodelsError("the primary's database has no pgmodels extension",
                            hint="Point --standby-of at the database pgmodels is installed in.",
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


def create_standby(cluster: Cluster, primary_url: str, slot: str | None = None) -> None:
    """Make (once) and start a streaming hot standby of primary_url in cluster.home.

    Idempotent: a home that already holds this standby is just started; one that holds
    any other cluster (a primary, a promoted standby) is refused, never overwritten."""
    info = _conninfo(primary_url)
    if slot is not None and not _SLOT.match(slot):
        raise PgmodelsError(f"invalid replication slot name \"{slot}\"",
                            detail="Slot names are 1 to 63 lower-case letters, digits and underscores.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    host = info.get("host") or ""
    if host in ("127.0.0.1", "localhost", "::1", "") and str(info.get("port") or "5432") == str(cluster.port):
        raise PgmodelsError(f"the standby cannot use port {cluster.port}: the primary listens on it",
                            hint="Give the standby another port with --port or PGMODELS_PORT.",
                            sqlstate=INVALID_PARAMETER_VALUE)
    if cluster.initialized():
        if not is_standby(cluster):
            raise PgmodelsError(f"{cluster.home} already holds a cluster that is not a standby",
                                detail="It is a primary, or a standby that was promoted; it is left as it is.",
                                hint="Choose another --dir for the new standby.",
                                sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
        _settle(cluster)
        cluster.start()
        return
    _check_primary(primary_url)
    cluster.home.mkdir(parents=True, exist_ok=True)
    cluster._check_reachable()
    for d in (cluster.socket_dir, cluster.log.parent):
        d.mkdir(parents=True, exist_ok=True)
        cluster._chown(d)
    cluster.socket_dir.chmod(0o700)
    if info.get("password") and not cluster.password_file.exists():
        # the copy has the primary's roles, so its postgres password is the primary's
        cluster.password_file.write_text(info["password"] + "\n")
        cluster.password_file.chmod(0o600)
    _basebackup(cluster, info, slot)
    _settle(cluster)
    cluster.start()
    wait_until_streaming(cluster)


def _basebackup(cluster: Cluster, info: dict, slot: str | None) -> None:
    from psycopg.conninfo import make_conninfo

    # the password goes by the environment, not the command line other users can read
    password = info.pop("password", None)
    info.pop("dbname", None)
    env = dict(os.environ, PGPASSWORD=password) if password else dict(os.environ)
    argv = [str(_pg_bindir() / "pg_basebackup"), "-D", str(cluster.data), "-d", make_conninfo(**info),
            "-R", "-X", "stream", "-c", "fast", "--no-password"]
    if slot:
        argv += ["-C", "-S", slot]
    cluster.data.mkdir(mode=0o700, exist_ok=True)
    cluster._chown(cluster.data)
    if os.geteuid() == 0:  # runuser keeps the environment (PGPASSWORD) without --login
        argv = ["runuser", "-u", cluster.server_user, "--"] + argv
    import subprocess

    result = subprocess.run(argv, text=True, capture_output=True, env=env)
    if result.returncode != 0:
        shutil.rmtree(cluster.data, ignore_errors=True)  # nothing half-copied is left behind
        raise PgmodelsError("pg_basebackup could not copy the primary", detail=result.stderr.strip()[-1500:],
                            hint="The primary must accept replication connections from this host "
                                 "(pg_hba.conf \"replication\" lines) for the user in the URL.",
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


def _settle(cluster: Cluster) -> None:
    """The copy's pgmodels.conf names the primary's port, socket directory and virtual
    environment; write the standby's own. Its virtual environment: --dir's venv if there
    is one, else PGMODELS_VENV, else the one this tool runs from."""
    if not os.environ.get("PGMODELS_VENV") and not (cluster.home / "venv").is_dir():
        from .install import default_venv

        os.environ["PGMODELS_VENV"] = str(default_venv())
    cluster._write_settings()


def wait_until_streaming(cluster: Cluster, timeout: float = 60.0) -> None:
    """Until the standby accepts read-only connections and its WAL receiver streams."""
    import psycopg

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(cluster.socket_url(), autocommit=True, connect_timeout=5) as conn:
                recovery, status = conn.execute(
                    "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)").fetchone()
                if recovery and status == "streaming":
                    return
                last = f"in recovery: {recovery}; WAL receiver: {status or 'not running'}"
        except psycopg.OperationalError as e:
            last = str(e).strip().splitlines()[0]
        time.sleep(0.3)
    raise PgmodelsError("the standby does not stream from the primary", detail=f"After {timeout:.0f} s: {last}.",
                        hint=f"See its log, {cluster.log}.", sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


def promote(cluster: Cluster) -> None:
    """End recovery: the standby becomes a primary that takes writes (pg_ctl promote)."""
    if not cluster.running():
        raise PgmodelsError("the cluster is not running", hint='Start it with "pgmodels db start".',
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
    if not is_standby(cluster):
        raise PgmodelsError(f"the cluster in {cluster.home} is not a standby",
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)
    result = cluster._as_server([str(_pg_bindir() / "pg_ctl"), "promote", "-D", str(cluster.data), "-w", "-t", "60"])
    if result.returncode != 0:
        raise PgmodelsError("the standby could not be promoted", detail=result.stderr.strip()[-1500:],
                            sqlstate=OBJECT_NOT_IN_PREREQUISITE_STATE)


def standby_status(cluster: Cluster) -> dict[str, str]:
    """Replication facts for ``pgmodels db status`` of a standby."""
    import psycopg

    try:
        with psycopg.connect(cluster.socket_url(), autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT (SELECT status FROM pg_stat_wal_receiver), pg_last_wal_receive_lsn()::text, "
                "pg_last_wal_replay_lsn()::text, pg_is_wal_replay_paused()::text, "
                "coalesce(pg_last_xact_replay_timestamp()::text, '')").fetchone()
    except psycopg.Error:
        return {"role": "standby"}
    return {"role": "standby", "wal_receiver": row[0] or "not running", "received_lsn": row[1] or "",
            "replayed_lsn": row[2] or "", "replay_paused": row[3], "last_replayed_commit": row[4],
            "venv": _configured(cluster, "pgmodels.venv") or ""}


def _configured(cluster: Cluster, name: str) -> str | None:
    """A setting as the standby's pgmodels.conf has it (the server's own, not this shell's)."""
    try:
        lines = (cluster.data / "pgmodels.conf").read_text().splitlines()
    except OSError:
        return None
    found = [x.split("=", 1)[1].strip().strip("'") for x in lines if x.split("=", 1)[0].strip() == name]
    return found[-1] if found else None


def add_arguments(create, dbsub) -> None:
    create.add_argument("--standby-of", metavar="URL",
                        help="make a streaming hot standby of this primary (pg_basebackup) instead of a new cluster")
    create.add_argument("--slot", help="with --standby-of: a physical replication slot the primary keeps WAL in "
                                       "for this standby (drop it on the primary when the standby goes away)")
    create.add_argument("--port", type=int, help="the port to listen on (default: $PGMODELS_PORT, else 54329)")
    dbsub.add_parser("promote", help="promote a standby made by --standby-of: it stops following and takes writes")


def run_action(args, cluster: Cluster) -> int:
    if getattr(args, "port", None):
        cluster.port = args.port
    if args.action == "promote":
        promote(cluster)
        return 0
    if args.standby_of:
        create_standby(cluster, args.standby_of, args.slot)
    elif args.slot:
        raise PgmodelsError("--slot needs --standby-of", sqlstate=INVALID_PARAMETER_VALUE)
    else:
        cluster.create()
    print(cluster.url())
    return 0
