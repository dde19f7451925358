"""The pgmodels_pgml companion extension: PostgresML's pgml schema over pgmodels.

Each test uses a database of its own (tests/pgmlhelpers.py). Attacks run as LOGIN-only
roles: the pgml views show only projects the role may use, load_dataset needs CREATE on
schema pgml, training and deploying stay the owner's.
"""

from __future__ import annotations

import re

import pytest

from dbhelpers import ROOT, role_connection, sql_error
from pgmlhelpers import fresh_database

VIEWS = ("projects", "models", "deployments", "snapshots", "overview", "trained_models", "deployed_models")
IRIS = "ARRAY[sepal_length, sepal_width, petal_length, petal_width]"

# PostgresML's tables (pgml-extension/src/orm/dataset.rs): columns and types, and row counts
DATASETS = {
    "breast_cancer": (569, [(c, "real") for c in (
        "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness", "mean compactness",
        "mean concavity", "mean concave points", "mean symmetry", "mean fractal dimension", "radius error",
        "texture error", "perimeter error", "area error", "smoothness error", "compactness error", "concavity error",
        "concave points error", "symmetry error", "fractal dimension error", "worst radius", "worst texture",
        "worst perimeter", "worst area", "worst smoothness", "worst compactness", "worst concavity",
        "worst concave points", "worst symmetry", "worst fractal dimension")] + [("malignant", "boolean")]),
    "diabetes": (442, [(c, "real") for c in ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target")]),
    "digits": (1797, [("image", "smallint[]"), ("target", "smallint")]),
    "iris": (150, [("sepal_length", "real"), ("sepal_width", "real"), ("petal_length", "real"),
                   ("petal_width", "real"), ("target", "integer")]),
    "linnerud": (20, [(c, "real") for c in ("chins", "situps", "jumps", "weight", "waist", "pulse")]),
    "wine": (178, [(c, "real") for c in (
        "alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
        "nonflavanoid_phenols", "proanthocyanins", "hue", "color_intensity", "od280/od315_of_diluted_wines",
        "proline")] + [("target", "integer")]),
}


def test_load_dataset_makes_postgresml_tables(cluster):
    with fresh_database(cluster) as (_, conn, _):
        for name, (rows, columns) in DATASETS.items():
            assert conn.execute("SELECT * FROM pgml.load_dataset(%s)", [name]).fetchone() == (f"pgml.{name}", rows)
            got = conn.execute("SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute "
                               "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", [f"pgml.{name}"]).fetchall()
            assert got == columns, name
            assert conn.execute(f"SELECT count(*) FROM pgml.{name}").fetchone() == (rows,)
        # PostgresML's values: diabetes unscaled, malignant is sklearn's class 0, images 8x8
        assert conn.execute("SELECT age, sex, bmi FROM pgml.diabetes LIMIT 1").fetchone() == (59, 2, 32.1)
        assert conn.execute("SELECT count(*) FILTER (WHERE malignant) FROM pgml.breast_cancer").fetchone() == (212,)
        assert conn.execute("SELECT array_dims(image) FROM pgml.digits LIMIT 1").fetchone() == ("[1:8][1:8]",)
        # loading again replaces the table; limit takes the first rows
        assert conn.execute("SELECT rows FROM pgml.load_dataset('iris', \"limit\" => 10)").fetchone() == (10,)
        assert conn.execute("SELECT count(*) FROM pgml.iris").fetchone() == (10,)
        err = sql_error(conn, "SELECT pgml.load_dataset('imdb')")
        assert err.sqlstate == "22023" and err.diag.message_primary == 'unknown data set "imdb"'
        assert "breast_cancer, diabetes, digits, iris, linnerud, wine" in err.diag.message_detail
        assert sql_error(conn, "SELECT pgml.load_dataset('iris', \"limit\" => -1)").sqlstate == "22023"


def test_load_dataset_needs_create_on_schema_pgml(cluster, make_role, name):
    rolname, _ = make_role(name + "_bob")
    with fresh_database(cluster) as (_, conn, db):
        bob = role_connection(cluster, db, rolname)
        err = sql_error(bob, "SELECT pgml.load_dataset('iris')")
        assert err.sqlstate == "42501" and "schema pgml" in err.diag.message_primary
        assert conn.execute("SELECT to_regclass('pgml.iris')").fetchone() == (None,)
        conn.execute(f"GRANT CREATE ON SCHEMA pgml TO {rolname}")
        assert bob.execute("SELECT rows FROM pgml.load_dataset('iris')").fetchone() == (150,)
        assert conn.execute("SELECT tableowner::text FROM pg_tables WHERE schemaname = 'pgml' AND tablename = 'iris'"
                            ).fetchone() == (rolname,)
        # a table another role loaded is not bob's to replace
        conn.execute("SELECT pgml.load_dataset('wine')")
        assert sql_error(bob, "SELECT pgml.load_dataset('wine')").sqlstate == "42501"
        bob.close()


def test_views_show_only_projects_the_role_may_use(cluster, make_role, name):
    rolname, _ = make_role(name + "_bob")
    with fresh_database(cluster) as (_, conn, db):
        conn.execute("SELECT pgml.load_dataset('iris')")
        conn.execute("GRANT SELECT ON pgml.iris TO PUBLIC")
        conn.execute("SELECT * FROM pgml.train('Iris', 'classification', 'pgml.iris', 'target')")
        conn.execute("SELECT * FROM pgml.train('Iris', algorithm => 'svm')")
        conn.execute("SELECT * FROM pgml.train('Secret', 'classification', 'pgml.iris', 'target')")
        for view in VIEWS:
            assert conn.execute(f"SELECT count(*) FROM pgml.{view}").fetchone()[0] > 0, view
        bob = role_connection(cluster, db, rolname)
        for view in VIEWS:  # a LOGIN-only role sees nothing, not even that the projects exist
            assert bob.execute(f"SELECT count(*) FROM pgml.{view}").fetchone() == (0,), view
        assert sql_error(bob, f"SELECT pgml.predict('Iris', {IRIS}) FROM pgml.iris").sqlstate == "42501"
        conn.execute("SELECT grant_project('Iris', %s, 'predict')", [rolname])
        assert bob.execute("SELECT name FROM pgml.projects").fetchall() == [("Iris",)]
        assert bob.execute("SELECT count(*) FROM pgml.models").fetchone() == (2,)
        assert bob.execute("SELECT count(*) FROM pgml.trained_models").fetchone() == (2,)
        assert bob.execute("SELECT name FROM pgml.deployed_models").fetchall() == [("Iris",)]
        assert bob.execute("SELECT DISTINCT name FROM pgml.overview").fetchall() == [("Iris",)]
        assert bob.execute("SELECT DISTINCT y_column_name FROM pgml.snapshots").fetchall() == [(["target"],)]
        assert bob.execute("SELECT count(*) FROM pgml.deployments d JOIN pgml.projects p ON p.id = d.project_id "
                           "WHERE p.name = 'Secret'").fetchone() == (0,)
        # a condition of bob's cannot see a row before the views' filter has (security_barrier)
        bob.execute("CREATE FUNCTION pg_temp.peek(text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS "
                    "$$ BEGIN RAISE NOTICE 'saw %', $1; RETURN true; END $$")
        seen = []
        bob.add_notice_handler(lambda d: seen.append(d.message_primary))
        bob.execute("SELECT * FROM pgml.projects WHERE pg_temp.peek(name)").fetchall()
        assert seen == ["saw Iris"]
        right = bob.execute(f"SELECT avg((pgml.predict('Iris', {IRIS}) = target)::int) FROM pgml.iris").fetchone()[0]
        assert right > 0.9
        # predicting is not owning: no training, no deploying
        assert sql_error(bob, "SELECT * FROM pgml.deploy('Iris', 'most_recent')").sqlstate == "42501"
        assert sql_error(bob, "SELECT * FROM pgml.deploy('Iris', 'new_score')").sqlstate == "42501"
        assert sql_error(bob, "SELECT * FROM pgml.train('Iris', algorithm => 'ridge')").sqlstate == "42501"
        assert sql_error(bob, "SELECT * FROM pgml.train_joint('Iris2', 'regression', 'pgml.iris', "
                              "ARRAY['sepal_length', 'sepal_width'])").sqlstate == "42501"
        bob.close()


def test_train_and_deploy_follow_postgresml(cluster):
    with fresh_database(cluster) as (_, conn, _):
        conn.execute("SELECT pgml.load_dataset('iris')")
        assert conn.execute("SELECT * FROM pgml.train('Iris', 'classification', 'pgml.iris', 'target')").fetchall() == [
            ("Iris", "classification", "linear", True)]
        # PostgresML's defaults: omitted algorithm is linear, not the previous one
        conn.execute("SELECT * FROM pgml.train('Iris', algorithm => 'svm', automatic_deploy => false)")
        assert conn.execute("SELECT * FROM pgml.train('Iris')").fetchone()[2] == "linear"
        assert conn.execute("SELECT * FROM pgml.train('Iris', algorithm => 'ridge', runtime => 'rust')").fetchone()[2] == "ridge"
        err = sql_error(conn, "SELECT * FROM pgml.train('Iris', algorithm => 'ridge', runtime => 'java')")
        assert err.sqlstate == "22023" and "runtime" in err.diag.message_primary
        assert conn.execute("SELECT * FROM pgml.deploy('Iris', 'most_recent')").fetchall() == [("Iris", "most_recent", "ridge")]
        # new_score: the newest model if it scores better than the deployed one, else no change
        assert conn.execute("SELECT strategy FROM pgml.deploy('Iris', 'new_score')").fetchone() == ("new_score",)
        best = conn.execute("SELECT algorithm FROM pgml.deploy('Iris', 'best_score')").fetchone()
        assert conn.execute("SELECT * FROM pgml.deploy('Iris', 'new_score')").fetchall() == [("Iris", "new_score", best[0])]
        model = conn.execute("SELECT id FROM pgml.models ORDER BY id LIMIT 1").fetchone()[0]
        assert conn.execute("SELECT * FROM pgml.deploy(%s)", [model]).fetchall() == [("Iris", "specific", "linear")]
        assert sql_error(conn, "SELECT * FROM pgml.deploy('Iris', 'specific')").sqlstate == "22023"
        assert conn.execute("SELECT strategy FROM pgml.deployments ORDER BY id DESC LIMIT 1").fetchone() == ("specific",)
        # predict_batch: one prediction per row of a flattened array
        batch = conn.execute("SELECT array_agg(p) FROM pgml.predict_batch('Iris', "
                             "ARRAY[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]::real[]) p").fetchone()[0]
        assert batch == [0, 2]
        # snapshots: materialized through the pgml name too
        conn.execute("SELECT * FROM pgml.train('Iris S', 'classification', 'pgml.iris', 'target', "
                     "materialize_snapshot => true)")
        assert conn.execute("SELECT materialized, rows FROM pgml.snapshots ORDER BY id DESC LIMIT 1").fetchone() == (True, 150)
        assert conn.execute("SELECT relation FROM pgml.snapshot('pgml.iris', 'target')").fetchone()[0].startswith(
            "pgmodels_snapshots.")
        assert conn.execute("SELECT pgml.version()").fetchone()[0].startswith("pgmodels 0.2.0")


def test_create_drop_extension_round_trip(cluster):
    with fresh_database(cluster, setup=None) as (_, conn, _):
        for _ in range(2):
            conn.execute("CREATE EXTENSION pgmodels_pgml CASCADE")
            n = conn.execute("SELECT count(*) FROM pg_proc WHERE pronamespace = 'pgml'::regnamespace").fetchone()[0]
            assert n > 50
            # pgmodels cannot go while the pgml schema uses it
            assert sql_error(conn, "DROP EXTENSION pgmodels").sqlstate == "2BP01"
            conn.execute("DROP EXTENSION pgmodels_pgml")
            assert conn.execute("SELECT to_regnamespace('pgml')").fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgmodels'").fetchone() == (1,)


def test_after_update_from_0_1_0(cluster):
    with fresh_database(cluster, setup="CREATE EXTENSION pgmodels VERSION '0.1.0' CASCADE") as (_, conn, _):
        conn.execute("ALTER EXTENSION pgmodels UPDATE")
        conn.execute("CREATE EXTENSION pgmodels_pgml")
        conn.execute("SELECT pgml.load_dataset('iris')")
        assert conn.execute("SELECT deployed FROM pgml.train('Iris', 'classification', 'pgml.iris', 'target')").fetchone() == (True,)
        right = conn.execute(f"SELECT avg((pgml.predict('Iris', {IRIS}) = target)::int) FROM pgml.iris").fetchone()[0]
        assert right > 0.9
        assert conn.execute("SELECT name FROM pgml.deployed_models").fetchall() == [("Iris",)]


def test_every_pgml_function_is_documented(cluster):
    with fresh_database(cluster) as (_, conn, _):
        names = {r[0] for r in conn.execute(
            """SELECT 'pgml.' || p.proname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e'
               JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pgmodels_pgml'
               WHERE p.proname NOT LIKE '\\_%'""")}
        views = {"pgml." + v for v in VIEWS}
        uncommented = conn.execute(
            """SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'pgml'::regnamespace
                 AND obj_description(p.oid, 'pg_proc') IS NULL
               UNION ALL SELECT c.oid::regclass::text FROM pg_class c WHERE c.relnamespace = 'pgml'::regnamespace
                 AND obj_description(c.oid, 'pg_class') IS NULL""").fetchall()
        assert uncommented == []
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Migration from PostgresML"):readme.index("## Reference")]
    rows = {n for line in section.splitlines() if line.startswith("| `pgml.")
            for n in re.findall(r"`(pgml\.[a-z_]+)", line.split("|")[1])}
    assert rows == names | views
    for line in section.splitlines():
        if line.startswith("| `pgml."):
            assert line.rstrip().endswith("| 0.2.0 |"), line


@pytest.mark.parametrize("algorithm", ["linear", "xgboost"])
def test_target_encoded_classifier_predicts(cluster, algorithm):
    """Review finding 4: a classifier with a target-encoded text feature is served by its
    own library (skops or XGBoost's format); its mixed features reach it as the one object
    matrix it was fitted on (this failed with XX000 since 0.1.0's native serving)."""
    with fresh_database(cluster) as (_, conn, _):
        conn.execute("SELECT pgml.load_dataset('iris')")
        conn.execute("CREATE VIEW x AS SELECT petal_length, sepal_width::text AS sw, target FROM pgml.iris")
        conn.execute("SELECT * FROM pgml.train('x', 'classification', 'x', 'target', algorithm => %s, "
                     "preprocess => '{\"sw\": {\"encode\": \"target\"}}')", [algorithm])
        row = conn.execute("SELECT predict('x', '{\"petal_length\": 1.4, \"sw\": \"3.5\"}'::jsonb), "
                           "pgml.predict_proba('x', '{\"petal_length\": 1.4, \"sw\": \"3.5\"}'::jsonb)").fetchone()
        assert row[0] == 0 and len(row[1]) == 3 and max(row[1]) == row[1][0]
        right = conn.execute("SELECT avg((pgml.predict('x', x.*) = target)::int) FROM x").fetchone()[0]
        assert right > 0.8
