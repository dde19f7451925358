"""Issue #24, section 4, first bullet: project names that only look like another's
('vproj ', ' vproj', 'vproj' + U+200B, 'v<TAB>proj', 'VPROJ' beside 'vproj') posed as the
real project in the console, /metrics and bundles. A new project's name passes
pgmodels._check_name('project', ...) (no space at an end or two in a row, no whitespace
but the plain space, no control or invisible characters) and is no existing project's but
for case (42710, with a unique index on lower(name) for two sessions at once). Each is
tried by a LOGIN role granted train() and import_onnx(), through every way a project is
made."""

from __future__ import annotations

import threading
import time
import unicodedata
import uuid

import psycopg
import pytest

from dbhelpers import role_connection, sql_error
from onnx_models import scaled_sum
from pgmlhelpers import fresh_database

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"
IMPORT = "import_onnx(text, bytea, text[], text, jsonb, text[], boolean)"
IMPORT_SQL = "SELECT model_id FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')"
MODEL = scaled_sum(2.0)


@pytest.fixture
def trainer(conn, make_role, name):
    """A LOGIN role granted train() and import_onnx() and SELECT on a training table, and a
    project "<name>_vproj" of the superuser's beside which it tries to make look-alikes."""
    rolname, role = make_role(name + "_t")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN}, {IMPORT} TO {rolname}")
    conn.execute(f"CREATE TABLE {name}_rows AS SELECT i::float8 AS a, (i % 7)::float8 AS b, (i * 2.0)::float8 AS y, "
                 "(i * 3.0)::float8 AS z FROM generate_series(1, 60) i")
    conn.execute(f"GRANT SELECT ON {name}_rows TO {rolname}")
    conn.execute(IMPORT_SQL, [f"{name}_vproj", MODEL])
    return rolname, role


def projects(conn) -> list[str]:
    return sorted(r[0] for r in conn.execute("SELECT name FROM pgmodels.projects"))


def look_alikes(base: str) -> list[tuple[str, str, str]]:
    """(name, SQLSTATE, what the DETAIL or HINT says) for names that pass for base."""
    return [
        (base + " ", "22023", "begin or end with a space"),
        (" " + base, "22023", "begin or end with a space"),
        (base + "\u200b", "22023", "U+200B, an invisible"),
        (base[:1] + "\t" + base[1:], "22023", "U+0009, a control character"),
        (base + "\n", "22023", "U+000A, a control character"),
        ("\u202e" + base, "22023", "U+202E, an invisible"),
        (base + "\u200e", "22023", "U+200E, an invisible"),
        ("\ufeff" + base, "22023", "U+FEFF, an invisible"),
        (base + "\ufe0f", "22023", "U+FE0F, an invisible"),  # a variation selector (default-ignorable, not Cf)
        (base.replace("_", "\u00a0", 1), "22023", "U+00A0, whitespace other than the plain space"),
        (base.replace("_", "  ", 1), "22023", "two spaces in a row"),
        (base.upper(), "42710", f'Use project "{base}"'),
    ]


def test_look_alike_names_are_refused_by_train_and_import_and_leave_nothing(conn, trainer, name):
    rolname, role = trainer
    base = f"{name}_vproj"
    before = projects(conn)
    for bad, sqlstate, says in look_alikes(base):
        for statement, params in ((IMPORT_SQL, [bad, MODEL]),
                                  ("SELECT * FROM train(%s, 'regression', %s, 'y', 'linear')", [bad, f"{name}_rows"])):
            err = sql_error(role, statement, params)
            assert err.sqlstate == sqlstate, (repr(bad), statement, err.sqlstate, err.diag.message_primary)
            told = f"{err.diag.message_detail} {err.diag.message_hint}"
            assert says in told, (repr(bad), told)
            # the message shows the name with every such character spelled out, never raw
            assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in err.diag.message_primary), repr(bad)
    assert projects(conn) == before
    # the superuser is held to the same rules
    for bad, sqlstate, _ in look_alikes(base)[:1] + look_alikes(base)[-1:]:
        assert sql_error(conn, IMPORT_SQL, [bad, MODEL]).sqlstate == sqlstate
    assert projects(conn) == before


def test_every_control_and_format_character_is_refused(conn):
    """The check's character classes against Python's Unicode database: every character
    of category Cc or Cf, at the start, in the middle and at the end."""
    chars = [chr(c) for c in range(1, 0x110000)
             if unicodedata.category(chr(c)) in ("Cc", "Cf") and not 0xD800 <= c <= 0xDFFF]
    assert len(chars) > 190
    accepted = []
    for c in chars:
        for candidate in (c + "p", "p" + c + "q", "p" + c):
            try:
                conn.execute("SELECT pgmodels._check_name('project', %s)", [candidate])
                accepted.append(hex(ord(c)))
            except psycopg.Error as e:
                assert e.sqlstate == "22023"
    assert accepted == []


def test_ordinary_names_with_inner_spaces_and_letters_of_any_script_are_accepted(conn, trainer, name):
    rolname, role = trainer
    good = [f"{name} churn model 2", f"{name}_Kündigung", f"{name}_顧客離反", f"{name}_o'brien",
            f"{name}-a.b(c)", f"{name}_Ελληνικά", f"{name}_café", f"{name}_مشروع"]
    for project in good:
        role.execute(IMPORT_SQL, [project, MODEL])
        assert role.execute("SELECT has_project_privilege(current_user, %s, 'owner')", [project]).fetchone()[0]
    assert all(p in projects(conn) for p in good)
    # training too, on a name with inner spaces
    row = role.execute("SELECT project FROM train(%s, 'regression', %s, 'y', 'linear')",
                       [f"{name} trained here", f"{name}_rows"]).fetchone()
    assert row == (f"{name} trained here",)


def test_case_is_compared_beyond_ascii_where_the_database_lowers_it(conn, trainer, name):
    rolname, role = trainer
    if conn.execute("SELECT lower('ÉΣ') = 'éσ'").fetchone()[0] is not True:
        pytest.skip("this database's collation lowers ASCII letters only")
    role.execute(IMPORT_SQL, [f"{name}_étude_σ", MODEL])
    err = sql_error(role, IMPORT_SQL, [f"{name.upper()}_ÉTUDE_Σ", MODEL])
    assert err.sqlstate == "42710" and f'"{name}_étude_σ"' in err.diag.message_hint
    # and the index holds it when the check is not asked
    err = sql_error(conn, "INSERT INTO pgmodels.projects (name, task, owner) VALUES (%s, 'regression', 'postgres')",
                    [f"{name}_Étude_σ"])
    assert err.sqlstate == "23505"


def test_train_joint_and_pgml_train_refuse_them_too(cluster, conn, trainer, name):
    rolname, role = trainer
    base = f"{name}_vproj"
    for bad, sqlstate, _ in look_alikes(base):
        err = sql_error(role, "SELECT * FROM train_joint(%s, 'regression', %s, ARRAY['y', 'z'], 'linear')",
                        [bad, f"{name}_rows"])
        assert err.sqlstate == sqlstate, (repr(bad), err.sqlstate, err.diag.message_primary)
    assert f"{base}\u200b" not in projects(conn) and base.upper() not in projects(conn)
    with fresh_database(cluster) as (_, pg, dbname):
        pg.execute("CREATE TABLE rows AS SELECT i::float8 AS a, (i * 2.0)::float8 AS y FROM generate_series(1, 60) i")
        pg.execute("SELECT * FROM pgml.train('v_proj', 'regression', 'rows', 'y')")
        pg.execute(f"CREATE ROLE {rolname}_pg LOGIN PASSWORD 'pw'")
        try:
            pg.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}_pg")
            pg.execute(f"GRANT SELECT ON rows TO {rolname}_pg")
            with role_connection(cluster, dbname, f"{rolname}_pg") as them:
                for bad, sqlstate, _ in look_alikes("v_proj"):
                    err = sql_error(them, "SELECT * FROM pgml.train(%s, 'regression', 'rows', 'y')", [bad])
                    assert err.sqlstate == sqlstate, (repr(bad), err.sqlstate, err.diag.message_primary)
            assert [r[0] for r in pg.execute("SELECT name FROM pgmodels.projects")] == ["v_proj"]
        finally:
            pg.execute(f"DROP OWNED BY {rolname}_pg")
            pg.execute(f"DROP ROLE {rolname}_pg")


def test_two_sessions_making_a_and_A_at_once_one_is_refused(conn, connect, trainer, name):
    rolname, role = trainer
    first, second = f"{name}_race", f"{name.upper()}_RACE"
    a = connect(user=rolname, password="pw", host="127.0.0.1")
    b = connect(user=rolname, password="pw", host="127.0.0.1")
    a.autocommit = False
    a.execute(IMPORT_SQL, [first, MODEL])  # made, not committed
    result = {}

    def make_second():
        try:
            b.execute(IMPORT_SQL, [second, MODEL])
            result["ok"] = True
        except psycopg.Error as e:
            result["error"] = e

    thread = threading.Thread(target=make_second)
    thread.start()
    b_pid = b.info.backend_pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the second waits on the first's row
        waiting = conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [b_pid]).fetchone()
        if waiting and waiting[0] == "Lock":
            break
        time.sleep(0.05)
    a.commit()
    thread.join(60)
    assert not thread.is_alive()
    assert "error" in result, result
    assert result["error"].sqlstate == "42710" and f'"{first}"' in result["error"].diag.message_hint
    names = projects(conn)
    assert first in names and second not in names


def test_an_existing_project_with_an_old_style_name_still_takes_versions(conn, trainer, name):
    """Names made before the rules (an upgraded database) stay usable by their owner."""
    rolname, role = trainer
    legacy = f" {name}_legacy"
    conn.execute("INSERT INTO pgmodels.projects (name, task, owner) VALUES (%s, 'regression', %s::regrole)",
                 [legacy, rolname])
    role.execute(IMPORT_SQL, [legacy, MODEL])
    assert conn.execute("SELECT count(*) FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id "
                        "WHERE p.name = %s", [legacy]).fetchone() == (1,)


def test_an_upgrade_stops_on_names_that_differ_only_in_case_and_says_which(cluster):
    dbname = "names_up_" + uuid.uuid4().hex[:8]
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {dbname}")
    try:
        with psycopg.connect(cluster.url(dbname), autocommit=True) as old:
            old.execute("CREATE EXTENSION plpython3u")
            old.execute("CREATE EXTENSION pgmodels VERSION '0.2.0'")
            old.execute("INSERT INTO pgmodels.projects (name, task, owner) VALUES ('churn', 'regression', 'postgres'), "
                        "('Churn', 'regression', 'postgres'), ('other', 'regression', 'postgres'), "
                        "(' spaced', 'regression', 'postgres')")
            err = sql_error(old, "ALTER EXTENSION pgmodels UPDATE")
            assert err.sqlstate == "23505"
            assert "'churn' (id 1), 'Churn' (id 2)" in err.diag.message_primary
            assert "other" not in err.diag.message_primary and "ALTER EXTENSION" in err.diag.message_hint
            assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == ("0.2.0",)
            old.execute("UPDATE pgmodels.projects SET name = 'churn (old)' WHERE name = 'Churn'")
            old.execute("ALTER EXTENSION pgmodels UPDATE")
            assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() != ("0.2.0",)
            # the odd-looking old name stays; a new case twin of any is refused by the index
            assert old.execute("SELECT count(*) FROM pgmodels.projects WHERE name = ' spaced'").fetchone() == (1,)
            err = sql_error(old, "INSERT INTO pgmodels.projects (name, task, owner) "
                                 "VALUES ('OTHER', 'regression', 'postgres')")
            assert err.sqlstate == "23505"
    finally:
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
