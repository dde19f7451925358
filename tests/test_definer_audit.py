"""The audit of every function that runs with another role's rights (issue #24), and the
attacks it found.

Every SECURITY DEFINER function of pgmodels and pgmodels_pgml, every trigger function
they have, and every definer function pgmodels makes at run time (a stream's capture
trigger) must be in tests/definer_audit_data.py with the reason it cannot run code a role
wrote (a cast, an operator, a domain's check, a policy, a view's functions); each must pin
its search_path, take and return only built-in types or pgmodels' own, and be closed to
PUBLIC unless the list says why it may be open.

The attacks: `pgmodels serve` runs each request in its pooled session under SET LOCAL
ROLE, and a function a role wrote, run there, can RESET ROLE to the server's login role
(a superuser by default). A feature source that ran code when read (a view, a policy, a
cast of a type the role made, a domain's check on the key), or a function in the role's
own schema ("$user") that matched a call of the statement better than pg_catalog's, made
a role that may train (and so own a project and a token) a superuser. Each runs here as
such a role against the real server: its function never runs, or runs as itself.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from dbhelpers import sql_error
from definer_audit_data import DEFINERS
from lifecycle_data import make_numeric
from proxyhelpers import Server, bearer

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
FIRST_NORMAL_OID = 16384  # FirstNormalObjectId: below it, made by initdb
ALLOWED_PSEUDO_RESULTS = {"void", "record", "trigger", "event_trigger"}

# Each function that runs with its owner's rights or as a trigger: of the two extensions, or
# made at run time in their schemas (only the extension's owner may create there).
AUDITED = """
SELECT p.oid, p.oid::regprocedure::text AS signature, p.prosecdef AS definer, p.proconfig,
       pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') AS public, e.extname AS extension
  FROM pg_catalog.pg_proc p
  LEFT JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  LEFT JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
 WHERE (e.extname IN ('pgmodels', 'pgmodels_pgml')
        OR p.pronamespace IN (SELECT n.oid FROM pg_catalog.pg_namespace n
                               WHERE n.nspname IN ('pgmodels', 'pgml', 'pgmodels_snapshots')))
   AND (p.prosecdef OR p.prorettype IN ('pg_catalog.trigger'::regtype, 'pg_catalog.event_trigger'::regtype))
"""

# The types of a function's arguments (all modes) and its result, each with whether it is
# pgmodels' own: a member of either extension, or the row type of a relation that is one.
TYPES = """
SELECT x.what, t.oid, pg_catalog.format_type(t.oid, NULL) AS name, t.typtype,
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                WHERE d.deptype = 'e' AND e.extname IN ('pgmodels', 'pgmodels_pgml')
                  AND ((d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid)
                       OR (d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = t.typrelid AND t.typrelid <> 0)))
       AS own
  FROM pg_catalog.pg_proc p,
       LATERAL (SELECT 'argument' AS what, a FROM pg_catalog.unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) a
                UNION ALL SELECT 'result', p.prorettype) x(what, typ)
  JOIN pg_catalog.pg_type t ON t.oid = x.typ
 WHERE p.oid = %s
"""


def audited(conn) -> dict[str, dict]:
    """The audited functions by their key in DEFINERS (run-time ones with {id})."""
    found = {}
    for row in conn.execute(AUDITED).fetchall():
        oid, signature, definer, config, public, extension = row
        key = signature.replace(", ", ",")
        if extension is None:
            key = re.sub(r"\bstream_\d+_", "stream_{id}_", key)
        found.setdefault(key, {"oid": oid, "definer": definer, "config": config or [], "public": public,
                               "extension": extension, "signature": signature})
    return found


@pytest.fixture
def stream_made(conn, name):
    """A stream, so that a capture trigger made at run time is there to be audited."""
    conn.execute(f"CREATE TABLE {name} (id integer, a double precision)")
    conn.execute("SELECT create_stream(%s, %s, 'id')", [name, name])
    yield name
    conn.execute("SELECT drop_stream(%s, true)", [name])
    conn.execute(f"DROP TABLE {name}")


def test_every_definer_and_trigger_function_says_why_it_runs_no_role_s_code(conn, stream_made):
    found = audited(conn)
    assert "pgmodels.stream_{id}_capture()" in found, "the stream's capture trigger was not found"
    missing = sorted(set(found) - set(DEFINERS))
    gone = sorted(set(DEFINERS) - set(found))
    assert not missing, (
        "these functions run with their owner's rights or as triggers and have no entry in "
        "tests/definer_audit_data.py: add each with the reason it evaluates no cast, operator, domain check, "
        "policy or view a role defined (and why PUBLIC may execute it, or None): " + ", ".join(missing))
    assert not gone, ("these entries of tests/definer_audit_data.py name no definer or trigger function any more: "
                      "remove them, or add the reason of what replaced them: " + ", ".join(gone))
    for key, (reason, _public) in DEFINERS.items():
        assert reason and len(reason) > 20, f"{key}: the reason is missing"


def test_definer_functions_pin_their_search_path(conn, stream_made):
    loose = [f["signature"] for f in audited(conn).values()
             if f["definer"] and "search_path=pg_catalog, pg_temp" not in f["config"]]
    assert loose == [], f"SECURITY DEFINER without SET search_path = pg_catalog, pg_temp: {loose}"


def test_definer_functions_take_and_return_only_built_in_or_pgmodels_types(conn, stream_made):
    """A value of a type a role made, handed to a definer function, would be converted with
    the definer's rights; so would a polymorphic argument (anyelement takes any type)."""
    wrong = []
    for key, f in audited(conn).items():
        if not f["definer"]:
            continue
        for what, oid, type_name, typtype, own in conn.execute(TYPES, [f["oid"]]).fetchall():
            if own:
                continue
            built_in = oid < FIRST_NORMAL_OID
            pseudo_ok = typtype != "p" or (what == "result" and type_name in ALLOWED_PSEUDO_RESULTS)
            if not (built_in and pseudo_ok):
                wrong.append(f"{key}: {what} of type {type_name}")
    assert wrong == [], "definer functions with types neither built in nor pgmodels' own: " + "; ".join(wrong)


def test_public_execution_of_each_is_explained(conn, stream_made):
    found = audited(conn)
    unexplained = sorted(k for k, f in found.items() if k in DEFINERS and f["public"] and DEFINERS[k][1] is None)
    stale = sorted(k for k, f in found.items() if k in DEFINERS and not f["public"] and DEFINERS[k][1] is not None)
    assert unexplained == [], ("executable by PUBLIC, and tests/definer_audit_data.py gives no reason why "
                               f"(give one, or revoke it): {unexplained}")
    assert stale == [], f"tests/definer_audit_data.py says why PUBLIC may execute these, but it may not: {stale}"


# -- the attacks: pgmodels serve -------------------------------------------------------

# A role's trap: it takes the session's login role if it can (RESET ROLE), records whom it
# ran as, and tries to make its role a superuser.
TRAP = """
CREATE TABLE {r}.seen (who name, super boolean, via text);
GRANT USAGE ON SCHEMA {r} TO PUBLIC;
GRANT INSERT ON {r}.seen TO PUBLIC;
CREATE FUNCTION {r}.trap(via text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    BEGIN
        RESET ROLE;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    INSERT INTO {r}.seen SELECT r.rolname, r.rolsuper, via FROM pg_catalog.pg_roles r WHERE r.rolname = current_user;
    BEGIN
        EXECUTE pg_catalog.format('ALTER ROLE %I SUPERUSER', '{r}');
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $f$;
"""


@dataclass
class Tenant:
    role: str
    conn: psycopg.Connection
    project: str
    token: str

    def seen(self, admin) -> list[tuple]:
        return admin.execute(f"SELECT who::text, super, via FROM {self.role}.seen").fetchall()


@pytest.fixture(scope="module")
def server(test_db, tmp_path_factory):
    """`pgmodels serve` logged in as the superuser, as it is by default."""
    s = Server(test_db, tmp_path_factory.mktemp("serve"), workers=1)
    yield s
    s.stop()


@pytest.fixture
def tenant(conn, make_role, name):
    """A role with LOGIN and the administrator's grant of train(), with a schema of its own
    named after it (so "$user" finds it), a project, a plain table as its feature source,
    a trap and a token of its own."""
    rolname, c = make_role(name + "_t")
    conn.execute(f"CREATE SCHEMA {rolname} AUTHORIZATION {rolname}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    make_numeric(c, f"{rolname}.data")
    c.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [rolname, f"{rolname}.data"]).fetchall()
    c.execute(TRAP.format(r=rolname))
    c.execute(f"CREATE TABLE {rolname}.fs AS SELECT i AS id, a, b, c, d "
              f"FROM (SELECT row_number() OVER () AS i, * FROM {rolname}.data) s")
    c.execute(f"ALTER TABLE {rolname}.fs ADD PRIMARY KEY (id)")
    c.execute("SELECT register_feature_source(%s, %s, 'id')", [rolname, f"{rolname}.fs"])
    token = c.execute("SELECT create_api_token(current_user)").fetchone()[0]
    yield Tenant(rolname, c, rolname, token)
    conn.execute("DELETE FROM pgmodels._api_tokens WHERE role = %s::regrole", [rolname])
    conn.execute("DELETE FROM pgmodels.projects WHERE name = %s", [rolname])
    conn.execute(f"DROP SCHEMA {rolname} CASCADE")  # with the casts of its types


def by_key(server, t: Tenant, keys=(1, 2)) -> httpx.Response:
    return httpx.post(f"{server.url}/v2/models/{t.project}/infer", headers=bearer(t.token), timeout=60,
                      json={"inputs": [], "parameters": {"keys": list(keys)}})


def assert_never_above_itself(conn, t: Tenant, before: int | None = None) -> None:
    seen = t.seen(conn)
    assert all(who == t.role and not super_ for who, super_, _ in seen), f"the trap ran as {sorted(set(seen))}"
    assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [t.role]).fetchone() == (False,)
    if before is not None:
        assert len(seen) == before, f"the trap ran during the request: {seen[before:]}"


def test_a_feature_source_that_runs_a_role_s_code_is_not_read(conn, server, tenant):
    t, c = tenant, tenant.conn
    r = by_key(server, t)
    assert r.status_code == 200, r.text
    assert len(r.json()["outputs"][0]["data"]) == 2
    # registering one is refused at once
    c.execute(f"CREATE VIEW {t.role}.fs_view AS SELECT s.*, {t.role}.trap('view') AS t FROM {t.role}.fs s")
    e = sql_error(c, "SELECT register_feature_source(%s, %s, 'id')", [t.project, f"{t.role}.fs_view"])
    assert e.sqlstate == "55000" and "is not a table" in e.diag.message_primary
    attacks = {
        # the registered name becomes a view
        "view": (f"ALTER TABLE {t.role}.fs RENAME TO fs_table; "
                 f"CREATE VIEW {t.role}.fs AS SELECT s.*, {t.role}.trap('view') AS t FROM {t.role}.fs_table s",
                 f"DROP VIEW {t.role}.fs; ALTER TABLE {t.role}.fs_table RENAME TO fs",
                 "is not a table"),
        # a policy, forced on the owner too
        "policy": (f"ALTER TABLE {t.role}.fs ENABLE ROW LEVEL SECURITY; "
                   f"ALTER TABLE {t.role}.fs FORCE ROW LEVEL SECURITY; "
                   f"CREATE POLICY p ON {t.role}.fs USING ({t.role}.trap('policy'))",
                   f"DROP POLICY p ON {t.role}.fs; ALTER TABLE {t.role}.fs NO FORCE ROW LEVEL SECURITY; "
                   f"ALTER TABLE {t.role}.fs DISABLE ROW LEVEL SECURITY",
                   "row-level security"),
        # a column of a type whose casts to json and jsonb are the role's (to_jsonb would call them)
        "cast": (f"CREATE TYPE {t.role}.mood AS ENUM ('calm'); "
                 f"CREATE FUNCTION {t.role}.mood_json(m {t.role}.mood) RETURNS json LANGUAGE sql "
                 f"AS $f$ SELECT pg_catalog.to_json({t.role}.trap('cast json')) $f$; "
                 f"CREATE FUNCTION {t.role}.mood_jsonb(m {t.role}.mood) RETURNS jsonb LANGUAGE sql "
                 f"AS $f$ SELECT pg_catalog.to_jsonb({t.role}.trap('cast jsonb')) $f$; "
                 f"CREATE CAST ({t.role}.mood AS json) WITH FUNCTION {t.role}.mood_json({t.role}.mood); "
                 f"CREATE CAST ({t.role}.mood AS jsonb) WITH FUNCTION {t.role}.mood_jsonb({t.role}.mood); "
                 f"ALTER TABLE {t.role}.fs ADD COLUMN m {t.role}.mood DEFAULT 'calm'",
                 f"ALTER TABLE {t.role}.fs DROP COLUMN m",
                 "which pgmodels serve does not read"),
        # an index whose predicate calls the role's function with constants: the planner folds
        # it (runs it) when it plans any read of the table, the lock statement's included
        "index predicate": (f"CREATE FUNCTION {t.role}.yes(i integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE "
                            f"AS $f$ BEGIN RETURN {t.role}.trap('index predicate'); END $f$; "
                            f"CREATE INDEX fs_trap ON {t.role}.fs (id) WHERE {t.role}.yes(1)",
                            f"DROP INDEX {t.role}.fs_trap; DROP FUNCTION {t.role}.yes(integer)",
                            "uses a function, operator or type a role made"),
        "index expression": (f"CREATE FUNCTION {t.role}.one(i integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE "
                             f"AS $f$ BEGIN PERFORM {t.role}.trap('index expression'); RETURN 1; END $f$; "
                             f"CREATE INDEX fs_trap ON {t.role}.fs ((id + {t.role}.one(1)))",
                             f"DROP INDEX {t.role}.fs_trap; DROP FUNCTION {t.role}.one(integer)",
                             "uses a function, operator or type a role made"),
        # a statistics object's expressions are folded when a read is planned too
        "statistics": (f"CREATE FUNCTION {t.role}.one(i integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE "
                       f"AS $f$ BEGIN PERFORM {t.role}.trap('statistics'); RETURN 1; END $f$; "
                       f"CREATE STATISTICS {t.role}.fs_trap ON (a + {t.role}.one(1)), b FROM {t.role}.fs",
                       f"DROP STATISTICS {t.role}.fs_trap; DROP FUNCTION {t.role}.one(integer)",
                       "uses a function, operator or type a role made"),
        "check constraint": (f"CREATE FUNCTION {t.role}.yes(i integer) RETURNS boolean LANGUAGE plpgsql IMMUTABLE "
                             f"AS $f$ BEGIN RETURN {t.role}.trap('check'); END $f$; "
                             f"ALTER TABLE {t.role}.fs ADD CONSTRAINT fs_trap CHECK ({t.role}.yes(1))",
                             f"ALTER TABLE {t.role}.fs DROP CONSTRAINT fs_trap; DROP FUNCTION {t.role}.yes(integer)",
                             "uses a function, operator or type a role made"),
        # a child table (or a partition) would be planned with indexes of its own
        "child table": (f"CREATE TABLE {t.role}.fs_child () INHERITS ({t.role}.fs)",
                        f"DROP TABLE {t.role}.fs_child",
                        "has partitions or child tables"),
        "partitions": (f"ALTER TABLE {t.role}.fs RENAME TO fs_table; "
                       f"CREATE TABLE {t.role}.fs (id bigint, a real, b real, c real, d real) PARTITION BY RANGE (id); "
                       f"CREATE TABLE {t.role}.fs_all PARTITION OF {t.role}.fs FOR VALUES FROM (0) TO (1000000); "
                       f"INSERT INTO {t.role}.fs SELECT * FROM {t.role}.fs_table",
                       f"DROP TABLE {t.role}.fs; ALTER TABLE {t.role}.fs_table RENAME TO fs",
                       "has partitions or child tables"),
        # a key of a domain whose check is the role's (the request's keys are cast to it)
        "domain": (f"CREATE DOMAIN {t.role}.k AS bigint CHECK ({t.role}.trap('domain')); "
                   f"ALTER TABLE {t.role}.fs RENAME TO fs_table; "
                   f"CREATE TABLE {t.role}.fs (id {t.role}.k PRIMARY KEY, a real, b real, c real, d real)",
                   f"DROP TABLE {t.role}.fs; ALTER TABLE {t.role}.fs_table RENAME TO fs",
                   "is not of a built-in type"),
    }
    for what, (attack, undo, message) in attacks.items():
        c.execute(attack)
        before = len(t.seen(conn))
        time.sleep(1.1)  # the server caches a model's metadata for a second
        r = by_key(server, t)
        assert_never_above_itself(conn, t, before)
        assert r.status_code == 409 and message in r.json()["error"], (what, r.status_code, r.text)
        # the read itself, called directly as the role
        e = sql_error(c, "SELECT * FROM pgmodels._feature_rows(%s, 'fs', 'id', ARRAY['1'])", [t.role])
        assert e.sqlstate == "55000" and message in e.diag.message_primary, what
        assert_never_above_itself(conn, t, before)
        c.execute(undo)
    time.sleep(1.1)
    before = len(t.seen(conn))  # an index's or a constraint's setup ran the trap, as the role itself
    assert by_key(server, t).status_code == 200
    assert_never_above_itself(conn, t, before)


def test_functions_in_the_role_s_own_schema_do_not_run_in_the_server_s_session(conn, server, tenant):
    """"$user" names the role's own schema while the server's session is SET ROLE to it:
    functions there that match the statements' calls better than pg_catalog's would run."""
    t, c = tenant, tenant.conn
    c.execute(f"""
        CREATE FUNCTION {t.role}.unnest(a text[]) RETURNS SETOF text LANGUAGE plpgsql AS $f$
        BEGIN PERFORM {t.role}.trap('unnest'); RETURN QUERY SELECT x FROM pg_catalog.unnest(a) x; END $f$;
        CREATE FUNCTION {t.role}.to_jsonb(r record) RETURNS jsonb LANGUAGE plpgsql AS $f$
        BEGIN PERFORM {t.role}.trap('to_jsonb'); RETURN '{{}}'; END $f$;
        CREATE FUNCTION {t.role}.agg_step(s jsonb, r record) RETURNS jsonb LANGUAGE plpgsql AS $f$
        BEGIN PERFORM {t.role}.trap('jsonb_agg'); RETURN '[]'; END $f$;
        CREATE AGGREGATE {t.role}.jsonb_agg(record) (sfunc = {t.role}.agg_step, stype = jsonb);
        CREATE FUNCTION {t.role}.model_lineage(model_id integer) RETURNS TABLE (item text, value text, detail text)
        LANGUAGE plpgsql AS $f$ BEGIN PERFORM {t.role}.trap('model_lineage'); END $f$""")
    # the role itself meets its functions where it calls them unqualified
    assert c.execute("SELECT * FROM unnest(ARRAY['a']::text[])").fetchall() == [("a",)]
    assert [v for _, _, v in t.seen(conn)] == ["unnest"]
    r = by_key(server, t)
    assert_never_above_itself(conn, t, 1)
    assert r.status_code == 200 and len(r.json()["outputs"][0]["data"]) == 2, r.text
    r = httpx.post(f"{server.url}/v2/models/{t.project}/infer", headers=bearer(t.token), timeout=60,
                   json={"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [[1, 2, 3, 4]]}]})
    assert_never_above_itself(conn, t, 1)
    assert r.status_code == 200, r.text
    for page in ("/console/", f"/console/projects/{t.project}", f"/console/projects/{t.project}/versions/1"):
        r = httpx.get(server.url + page, headers=bearer(t.token), timeout=60)
        assert_never_above_itself(conn, t, 1)
        assert r.status_code == 200 and "<title>Error" not in r.text, (page, r.status_code)


# -- the attacks: a schema named cron ----------------------------------------------------

CREATE_BATCH_JOB = "create_batch_job(text, text, text, text, text, text, text, text[], integer, integer, interval, " \
                   "interval)"
ALTER_BATCH_JOB = "alter_batch_job(text, text, integer, integer, interval, interval, boolean)"

# pg_cron, as a role that may create schemas makes it in a database where pg_cron is not
# installed (it lives in the one database cron.database_name names): each piece a trap
FAKE_CRON = """
CREATE SCHEMA cron;
CREATE FUNCTION cron.schedule_in_database(n text, s text, c text, d text, u text, a boolean) RETURNS bigint
LANGUAGE plpgsql AS $f$ BEGIN PERFORM {r}.trap('schedule_in_database'); RETURN 4242; END $f$;
CREATE VIEW cron.job AS SELECT 4242::bigint AS jobid WHERE {r}.trap('cron.job');
CREATE FUNCTION cron.unschedule(j bigint) RETURNS boolean
LANGUAGE plpgsql AS $f$ BEGIN PERFORM {r}.trap('unschedule'); RETURN true; END $f$;
CREATE TABLE cron.job_run_details (jobid bigint, end_time timestamptz);
INSERT INTO cron.job_run_details VALUES (4242, now() - interval '1 year');
CREATE FUNCTION cron.deleted() RETURNS trigger
LANGUAGE plpgsql AS $f$ BEGIN PERFORM {r}.trap('job_run_details'); RETURN OLD; END $f$;
CREATE TRIGGER deleted BEFORE DELETE ON cron.job_run_details FOR EACH ROW EXECUTE FUNCTION cron.deleted();
"""


@pytest.fixture
def cron_squatter(conn, make_role, name):
    """A role with LOGIN, CREATE on the database (as the owner of an application's database
    has), EXECUTE on create_batch_job() and alter_batch_job(), predict on a project, a
    schema and a trap of its own, and a schema cron it made."""
    rolname, c = make_role(name + "_c")
    db = conn.info.dbname
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'cron'").fetchone() == (0,)
    conn.execute(f"GRANT CREATE ON DATABASE {db} TO {rolname}")
    conn.execute(f"CREATE SCHEMA {rolname} AUTHORIZATION {rolname}")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {CREATE_BATCH_JOB}, {ALTER_BATCH_JOB} TO {rolname}")
    make_numeric(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name, name]).fetchall()
    conn.execute("SELECT grant_project(%s, %s, 'predict')", [name, rolname])
    c.execute(TRAP.format(r=rolname))
    c.execute(f"CREATE TABLE {rolname}.src AS SELECT i AS id, (i % 17)::real AS a, ((i * 7) % 23)::real AS b, "
              f"((i * 3) % 11)::real AS c, (i % 5)::real AS d FROM generate_series(1, 50) AS i")
    c.execute(f"ALTER TABLE {rolname}.src ADD PRIMARY KEY (id)")
    c.execute(FAKE_CRON.format(r=rolname))
    yield Tenant(rolname, c, name, "")
    conn.execute("DELETE FROM pgmodels.batch_job WHERE owner = %s::regrole", [rolname])
    conn.execute("DROP SCHEMA IF EXISTS cron CASCADE")
    conn.execute(f"DROP SCHEMA {rolname} CASCADE")
    conn.execute("DELETE FROM pgmodels.projects WHERE name = %s", [name])


def test_a_schema_named_cron_that_is_not_pg_cron_s_is_never_called(conn, cron_squatter):
    t, c = cron_squatter, cron_squatter.conn
    job = t.role + "_job"
    # scheduling: pg_cron is not here, whatever schema cron holds
    e = sql_error(c, "SELECT create_batch_job(%s, %s, %s, 'id', %s, schedule => '*/5 * * * *')",
                  [job, t.project, f"{t.role}.src", f"{t.role}.out"])
    assert e.sqlstate == "55000" and "pg_cron" in e.diag.message_primary, e.diag.message_primary
    assert_never_above_itself(conn, t, 0)
    c.execute("SELECT create_batch_job(%s, %s, %s, 'id', %s)", [job, t.project, f"{t.role}.src", f"{t.role}.out"])
    e = sql_error(c, "SELECT alter_batch_job(%s, schedule => '*/5 * * * *')", [job])
    assert e.sqlstate == "55000" and "pg_cron" in e.diag.message_primary
    assert_never_above_itself(conn, t, 0)
    # a job that has a pg_cron entry from elsewhere (restored from a dump of the database
    # pg_cron runs in): its run prunes pg_cron's history, its drop unschedules it
    conn.execute("UPDATE pgmodels.batch_job SET schedule = '*/5 * * * *', cron_job_id = 4242 WHERE name = %s", [job])
    c.execute("CALL run_batch_job(%s)", [job])
    assert c.execute(f"SELECT count(*) FROM {t.role}.out").fetchone() == (50,)
    c.execute("SELECT drop_batch_job(%s)", [job])
    assert_never_above_itself(conn, t, 0)
    assert conn.execute("SELECT count(*) FROM cron.job_run_details").fetchone() == (1,)
