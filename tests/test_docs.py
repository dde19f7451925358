"""Every user-facing function is documented twice: COMMENT ON in SQL, a row in the README."""

from __future__ import annotations

import re

from dbhelpers import ROOT


def test_every_user_function_has_a_readme_row(conn):
    names = {r[0] for r in conn.execute(
        """SELECT CASE WHEN n.nspname = 'pgmodels' THEN 'pgmodels.' ELSE '' END || p.proname
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
           JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmodels'
           WHERE p.proname NOT LIKE '\\_%'""")}
    readme = (ROOT / "README.md").read_text()
    reference = readme[readme.index("## Reference"):]
    rows = set(re.findall(r"^\| `([a-z_.]+)\(", reference, re.M))
    assert names == rows
    for line in reference.splitlines():
        if line.startswith("| `"):
            assert re.search(r"\| 0\.[123]\.0 \|$", line.rstrip()), line


def test_every_catalog_object_is_commented(conn, name):
    # a stream's log and its parts are made at create_stream: have one while looking
    conn.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, x real)")
    conn.execute("SELECT create_stream(%s, %s, 'id')", [name, name])
    missing = conn.execute("""SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                              WHERE n.nspname = 'pgmodels' AND c.relkind IN ('r', 'v')
                                AND obj_description(c.oid, 'pg_class') IS NULL""").fetchall()
    conn.execute("SELECT drop_stream(%s, true)", [name])
    assert missing == []
