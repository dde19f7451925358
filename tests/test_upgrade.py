"""Releases: 0.1.0 installed, then updated to 0.2.0 and to this release, equals a fresh
install, keeps the data and the administrator's master switch; the upgrade script into
this release is up to date."""

from __future__ import annotations

import subprocess

import psycopg
import pytest

from dbhelpers import ROOT
from onnx_models import scaled_sum
from pgmodels import __version__

# Everything the extension owns, described in text that is equal when the objects are.
DESCRIBE = """
WITH members AS (
    SELECT d.classid, d.objid FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
    WHERE e.extname = 'pgmodels' AND d.deptype = 'e')
SELECT 'function ' || p.oid::regprocedure::text || E'\n' || pg_get_functiondef(p.oid)
       || E'\nacl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(p.proacl) x), '-') || E'\ncomment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
UNION ALL
SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || E'\nacl ' || coalesce((SELECT string_agg(x::text, ',' ORDER BY x::text) FROM unnest(c.relacl) x), '-')
       || E'\ncomment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
       || coalesce(E'\nview ' || pg_get_viewdef(c.oid), '')
       || coalesce(E'\ncolumns ' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                      || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
                                      || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), ''), ', ' ORDER BY a.attnum)
                                     FROM pg_attribute a LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
                                     WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '')
       || coalesce(E'\nconstraints ' || (SELECT string_agg(co.conname || ' ' || pg_get_constraintdef(co.oid), ', ' ORDER BY co.conname)
                                         FROM pg_constraint co WHERE co.conrelid = c.oid), '')
       || coalesce(E'\nindexes ' || (SELECT string_agg(pg_get_indexdef(i.indexrelid), ', ' ORDER BY 1)
                                     FROM pg_index i WHERE i.indrelid = c.oid), '')
FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
UNION ALL
SELECT 'type ' || t.oid::regtype::text || coalesce(' ' || (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                                 FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0), '')
FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
UNION ALL
SELECT 'schema ' || n.nspname || ' ' || coalesce(n.nspacl::text, '-')
FROM members m JOIN pg_namespace n ON m.classid = 'pg_namespace'::regclass AND n.oid = m.objid
UNION ALL
SELECT 'config ' || (SELECT string_agg(c::regclass::text, ', ' ORDER BY c::regclass::text)
                     FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pgmodels')
"""


@pytest.fixture
def two_databases(cluster, name):
    made = []

    def make(suffix: str):
        dbname = f"{name}_{suffix}"
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {dbname}")
        made.append(dbname)
        return psycopg.connect(cluster.url(dbname), autocommit=True)

    yield make
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as admin:
        for dbname in made:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {name}_analyst")


def describe(c) -> list[str]:
    return sorted(r[0] for r in c.execute(DESCRIBE))


def test_upgrade_from_0_1_0_equals_a_fresh_install_and_keeps_the_data(two_databases, name):
    old = two_databases("old")
    old.execute("CREATE EXTENSION plpython3u")
    old.execute("CREATE EXTENSION pgmodels VERSION '0.1.0'")
    # data and an administrator's choices, as a 0.1.0 database would have them
    old.execute(f"CREATE ROLE {name}_analyst")
    artifact = scaled_sum(2.0)
    old.execute("""INSERT INTO pgmodels.projects (name, task, created_by) VALUES ('kept', 'regression', %s)""",
                [f"{name}_analyst"])
    old.execute("""INSERT INTO pgmodels.models (project_id, version, task, algorithm, runtime, artifact,
                                                artifact_sha256, feature_names, feature_types)
                   SELECT id, 1, 'regression', 'onnx', 'onnx', %s, sha256(%s), ARRAY['a', 'b'],
                          ARRAY['float', 'float'] FROM pgmodels.projects""", [artifact, artifact])
    old.execute("""INSERT INTO pgmodels.deployments (project_id, model_id, strategy)
                   SELECT project_id, id, 'import' FROM pgmodels.models""")
    old.execute("REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) FROM PUBLIC")
    old.execute(f"GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint) TO {name}_analyst")
    old.execute("ALTER EXTENSION pgmodels UPDATE TO '0.2.0'")
    assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == ("0.2.0",)
    old.execute("ALTER EXTENSION pgmodels UPDATE")
    assert old.execute("SELECT extversion FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == (__version__,)

    fresh = two_databases("fresh")
    fresh.execute("CREATE EXTENSION pgmodels CASCADE")
    # the master switch was carried over; with it as the fresh default, the two are equal
    acl = old.execute("SELECT proacl::text FROM pg_proc WHERE oid = 'pgmodels._lookup(text, bigint, text)'::regprocedure"
                      ).fetchone()[0]
    assert f"{name}_analyst=X/" in acl and not acl.startswith("{=X")
    fresh.execute("REVOKE EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) FROM PUBLIC")
    fresh.execute(f"GRANT EXECUTE ON FUNCTION pgmodels._lookup(text, bigint, text) TO {name}_analyst")
    upgraded, installed = describe(old), describe(fresh)
    assert [d for d in upgraded if d not in installed] == [] and [d for d in installed if d not in upgraded] == []
    # the data serves, owned by the role that created the project
    assert old.execute("SELECT owner FROM pgmodels.overview WHERE project = 'kept'").fetchone() == (f"{name}_analyst",)
    assert old.execute("SELECT predict('kept', ARRAY[1, 2])").fetchone() == (6.0,)
    old.close()
    fresh.close()


def test_the_upgrade_script_is_up_to_date():
    script = ROOT / "migrations" / f"pgmodels--0.2.0--{__version__}.sql"
    before = script.read_text()
    subprocess.run(["make", "-s", "-B", "-C", str(ROOT / "extension"), "upgrade-scripts"], check=True,
                   capture_output=True)
    assert script.read_text() == before, "run make -C extension upgrade-scripts and commit the result"
