"""Every PL/Python function of the extension, called by anyone with any arguments, answers
in PostgreSQL's words: a SQLSTATE, and no Python exception class, traceback or module name
in the message, detail, hint or context. PL/Python prefixes an error that leaves Python
with its class ("spiexceptions.InsufficientPrivilege: ...", "ModuleNotFoundError: ...")
and adds a traceback as its context, so the bodies never let one leave: they activate the
package first and call a function wrapped by pgmodels._plpy.udf, which records the error
for the SQL side to raise (pgmodels._raise_pending).

The functions are enumerated from pg_proc (language plpython3u, schemas pgmodels and
pgml), so a new one is covered without naming it here. Each is called with NULLs and with
garbage of each parameter's type, in a fresh session (nothing activated yet) and in one
that is, as a role with only LOGIN, as a role with predict on a project, and, for the
functions PUBLIC may not execute, as the superuser (a LOGIN-only role then gets
PostgreSQL's own 42501). After a call that returns, the error it left pending (what a SQL
wrapper would raise) is raised in the same statement and checked the same way; after
every call the backend still answers.
"""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest

from dbhelpers import role_connection
from lifecycle_data import make_numeric
from pgmlhelpers import fresh_database

PYTHON_WORDS = re.compile(r'Traceback|Error:|Exception|spiexceptions|plpy\.|File "|line \d+|ModuleNotFoundError'
                          r'|KeyError|TypeError|ValueError|AttributeError|IndexError|RuntimeError|NoneType')
# PostgreSQL's own context lines of a RAISE in PL/pgSQL (pgmodels._raise_pending raises
# every recorded error), "PL/pgSQL function f(args) line 9 at RAISE": not Python's.
PLPGSQL_LINE = re.compile(r"^PL/pgSQL function .* line \d+ at [A-Za-z ]+$")

# Garbage of each parameter type, by variant; the credential parameters get their own.
# "plausible" names the real project, table, model and statement stamp, to go deeper.
VARIANTS = ["null", "empty", "plausible", "huge", "negative", "odd"]
GARBAGE = {
    "text": ["NULL", "''", "{project}", "repeat('x', 100000)", "'-1'", "E'\\x01 \\u200b \"; DROP TABLE t; --'"],
    "name": ["NULL", "''", "{role}", "repeat('x', 100)", "'-'", "'PUBLIC'"],
    "bigint": ["NULL", "0", "{model_id}", "9223372036854775807", "-1", "'-9223372036854775808'"],
    "integer": ["NULL", "0", "1", "2147483647", "-1", "'-2147483648'"],
    "double precision": ["NULL", "0", "pgmodels._stamp()", "1e308", "'-Infinity'", "'NaN'"],
    "real": ["NULL", "0", "0.25", "'3e38'", "-1", "'NaN'"],
    "boolean": ["NULL", "false", "true", "true", "false", "true"],
    "jsonb": ["NULL", "'{{}}'", "'{{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}}'", "'[1e300, -1e300, 1e308]'", "'[]'",
              "'{{\"a\": [{{\"b\": null}}], \"\": \"\\u0001\"}}'"],
    "bytea": ["NULL", "''", "'\\x0000803f'", "decode(repeat('ff', 100000), 'hex')", "'\\x00'", "'\\xdeadbeef'"],
    "text[]": ["NULL", "'{{}}'", "'{{a,b,c,d}}'", "array_fill('x'::text, ARRAY[10000])", "'{{NULL}}'", "'{{\"\"}}'"],
    "real[]": ["NULL", "'{{}}'", "'{{1,2,3,4}}'", "'{{3e38,3e38,3e38,3e38}}'", "'{{-1}}'", "'{{{{1,2}},{{3,4}}}}'"],
    "double precision[]": ["NULL", "'{{}}'", "'{{1,2,3,4}}'", "'{{1e308,1e308,1e308,1e308}}'", "'{{-1}}'",
                           "'{{NaN,Infinity,1,2}}'"],
    "interval": ["NULL", "'0'", "'1 day'", "'1000000 years'", "'-1 day'", "'-178000000 years'"],
    "timestamp with time zone": ["NULL", "'epoch'", "now()", "'infinity'", "'-infinity'", "'4713-01-01 BC'"],
    "pgmodels.served_model": ["NULL", "{served_nulls}", "{served_nulls}", "{served_nulls}", "{served_nulls}",
                              "{served_nulls}"],
}
CREDENTIAL = ["NULL", "''", "pgmodels._credential()", "pgmodels._credential()", "'x'", "'10:' || repeat('0', 64)"]


def _functions(conn) -> list[dict]:
    return [dict(zip(("oid", "schema", "name", "kind", "public", "names", "types"), row)) for row in conn.execute("""
        SELECT p.oid, n.nspname, p.proname, p.prokind,
               pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE'),
               coalesce(p.proargnames[1:p.pronargs], '{}'),
               ARRAY(SELECT pg_catalog.format_type(t, NULL) FROM unnest(p.proargtypes) WITH ORDINALITY u(t, i)
                     ORDER BY i)
          FROM pg_catalog.pg_proc p
          JOIN pg_catalog.pg_language l ON l.oid = p.prolang
          JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
         WHERE l.lanname = 'plpython3u' AND n.nspname IN ('pgmodels', 'pgml')
         ORDER BY n.nspname, p.proname, p.oid""").fetchall()]


# A serving core answers only for a model _lookup loaded in the same statement: with one
# loaded, the garbage reaches the model's own code.
LOADED = {"project_name": "''", "model_id": "{model_id}", "stamp": "pgmodels._stamp()",
          "loaded": "pgmodels._lookup('', {model_id}, pgmodels._credential())"}


def _calls(fn: dict, values: dict, loaded: bool = False) -> list[tuple[str, str]]:
    """(variant, SQL) for each variant of the function's arguments."""
    out = []
    for i, variant in enumerate(VARIANTS):
        args = []
        for argname, argtype in zip(fn["names"], fn["types"]):
            if loaded and argname in LOADED:
                args.append(f"{LOADED[argname].format(**values)}::{argtype}")
            elif argname == "credential":
                args.append(CREDENTIAL[i])
            else:
                assert argtype in GARBAGE, f"no garbage for parameter type {argtype} of {fn['name']}"
                args.append(f"{GARBAGE[argtype][i].format(**values)}::{argtype}")
        call = f"{fn['schema']}.{fn['name']}({', '.join(args)})"
        out.append((variant, call))
    return out


def _check(error: psycopg.Error, what: str) -> str | None:
    """A problem with an error's words, or None."""
    d = error.diag
    what = what[:300]
    if not error.sqlstate:
        return f"{what}: no SQLSTATE: {error}"
    if error.sqlstate == "XX000":
        return f"{what}: XX000 {d.message_primary!r} {d.message_detail!r}"
    context = "\n".join(line for line in (d.context or "").splitlines() if not PLPGSQL_LINE.match(line.strip()))
    for part, text in (("message", d.message_primary), ("detail", d.message_detail), ("hint", d.message_hint),
                       ("context", context)):
        if text and PYTHON_WORDS.search(text):
            return f"{what}: Python words in the {part}: {text[:500]!r}"
    return None


def _run_all(cluster, dbname: str, conn, functions: list[dict], values: dict, roles: list[str],
             loaded: bool = False) -> tuple[int, list]:
    problems, calls = [], 0
    for fn in functions:
        for role in roles:
            if role == "postgres":
                if fn["public"]:
                    continue  # the unprivileged roles cover it
                session = psycopg.connect(cluster.url(dbname), autocommit=True)
            else:
                session = role_connection(cluster, dbname, role)
            with session:
                session.execute("SET statement_timeout = '60s'")
                for variant, call in _calls(fn, values, loaded):
                    what = f"{role} {call[:160]} [{variant}]"
                    calls += 1
                    if fn["kind"] == "p":
                        statement = f"CALL {call}"
                    else:  # what a SQL wrapper raises after the core returned: its pending error
                        statement = (f"SELECT pgmodels._raise_pending(NULL::integer) "
                                     f"FROM (SELECT count(*) FROM (SELECT {call}) a) b")
                    try:
                        session.execute(statement)
                    except psycopg.Error as e:
                        if not fn["public"] and role != "postgres":
                            if e.sqlstate != "42501" or not e.diag.message_primary.startswith(
                                    "permission denied for function"):
                                problems.append(f"{what[:300]}: not PostgreSQL's 42501: {e.sqlstate} {str(e)[:300]}")
                        elif (p := _check(e, what)) is not None:
                            problems.append(p)
                    try:
                        assert session.execute("SELECT 1").fetchone() == (1,)
                    except psycopg.Error as e:
                        problems.append(f"{what[:300]}: the backend did not survive: {str(e)[:300]}")
                        break
    return calls, problems


@pytest.fixture(scope="module")
def database(cluster):
    """A database of its own with both extensions, a trained project, a LOGIN-only role and
    a role with predict on the project."""
    tag = uuid.uuid4().hex[:8]
    with fresh_database(cluster) as (url, conn, dbname):
        project, table = f"words_{tag}", f"words_data_{tag}"
        make_numeric(conn, table)
        conn.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [project, table]).fetchall()
        model_id = conn.execute("SELECT id FROM pgmodels.models ORDER BY id DESC LIMIT 1").fetchone()[0]
        login, predictor = f"words_login_{tag}", f"words_pred_{tag}"
        for role in (login, predictor):
            conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
            conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        conn.execute("SELECT grant_project(%s, %s, 'predict')", [project, predictor])
        conn.execute(f"GRANT SELECT ON {table} TO {predictor}")
        width = conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'pgmodels.served_model'::regclass "
                             "AND attnum > 0 AND NOT attisdropped").fetchone()[0]
        values = {"project": f"'{project}'", "role": f"'{predictor}'", "model_id": str(model_id),
                  "served_nulls": "'(" + "," * (width - 1) + ")'"}
        yield cluster, dbname, conn, values, login, predictor
        for role in (login, predictor):
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role])
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def test_every_plpython_function_is_enumerated(database):
    _, _, conn, *_ = database
    names = {f"{f['schema']}.{f['name']}" for f in _functions(conn)}
    # a few that must be there: the enumeration itself could be wrong
    assert {"pgmodels._predict_batch", "pgmodels._train", "pgmodels._load", "pgmodels._edge_build",
            "pgml._dataset_rows"} <= names, names
    assert len(names) >= 25


def test_unprivileged_roles_get_postgresql_words(database):
    cluster, dbname, conn, values, login, predictor = database
    calls, problems = _run_all(cluster, dbname, conn, _functions(conn), values, [login, predictor])
    assert calls > 300
    assert not problems, "\n".join(problems)


def test_serving_cores_with_a_model_loaded_get_postgresql_words(database):
    """Garbage features for a model the role may use, loaded in the same statement."""
    cluster, dbname, conn, values, login, predictor = database
    cores = [f for f in _functions(conn) if f["public"] and "loaded" in f["names"]]
    assert len(cores) >= 10
    calls, problems = _run_all(cluster, dbname, conn, cores, values, [predictor], loaded=True)
    assert not problems, "\n".join(problems)


def test_the_superuser_gets_postgresql_words_from_the_private_cores(database):
    cluster, dbname, conn, values, *_ = database
    private = [f for f in _functions(conn) if not f["public"]]
    assert len(private) >= 5
    calls, problems = _run_all(cluster, dbname, conn, private, values, ["postgres"])
    assert not problems, "\n".join(problems)


def test_the_two_reproductions(database):
    """The issue's: a LOGIN-only role in a fresh session, then a role that may predict."""
    cluster, dbname, conn, values, login, predictor = database
    for role in (login, predictor):
        with role_connection(cluster, dbname, role) as c:
            # nothing activated yet in this session: the body must not import pgmodels first
            row = c.execute("SELECT count(*) FROM pgmodels._predict_batch(NULL, 0, NULL, 0, NULL)").fetchone()
            assert row == (0,)
            with pytest.raises(psycopg.Error) as info:
                c.execute("SELECT pgmodels._stage_profile(1, pgmodels._credential()), "
                          "pgmodels._raise_pending(NULL::int)")
            assert info.value.sqlstate in ("42501", "42704"), info.value
            assert _check(info.value, role) is None, _check(info.value, role)
