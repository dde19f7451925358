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
from pgmodels import __version__

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
        assert conn.execute("SELECT pgml.version()").fetchone()[0].startswith(f"pgmodels {__version__}")


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


def test_predict_batch_flattens_joint_and_pca_outputs(cluster):
    """Review finding 8: PostgresML's predict_batch returns the bindings' flattened output
    (rows x outputs) for joint regression and PCA models (api.rs predict_batch ->
    model.rs predict_batch -> sklearn.py predictor: .flatten())."""
    with fresh_database(cluster) as (_, conn, _):
        conn.execute("SELECT pgml.load_dataset('linnerud')")
        conn.execute("SELECT * FROM pgml.train_joint('j', 'regression', 'pgml.linnerud', ARRAY['weight', 'waist', 'pulse'])")
        conn.execute("CREATE VIEW lx AS SELECT chins, situps, jumps FROM pgml.linnerud")
        conn.execute("SELECT * FROM pgml.train('p', 'decomposition', 'lx', hyperparams => '{\"n_components\": 2}')")
        rows = "ARRAY[5, 162, 60, 2, 110, 60]::real[]"
        for project, fn, width in (("j", "predict_joint", 3), ("p", "decompose", 2)):
            batch = conn.execute(f"SELECT array_agg(v) FROM pgml.predict_batch(%s, {rows}) v", [project]).fetchone()[0]
            one = conn.execute(f"SELECT pgml.{fn}(%s, ARRAY[5, 162, 60]::real[]) || pgml.{fn}(%s, ARRAY[2, 110, 60]::real[])",
                               [project, project]).fetchone()[0]
            assert len(batch) == 2 * width and batch == pytest.approx(one, rel=1e-5)
            by_id = conn.execute(f"SELECT array_agg(v) FROM pgml.predict_batch((SELECT id FROM pgml.deployed_models "
                                 f"WHERE name = %s), {rows}) v", [project]).fetchone()[0]
            assert by_id == batch
        err = sql_error(conn, "SELECT * FROM pgml.predict_batch('p', ARRAY[1, 2, 3, 4]::real[])")
        assert err.sqlstate == "22023" and "whole number of rows" in err.diag.message_primary


def test_deploy_new_score_runtime_and_messages(cluster, make_role, name):
    """Review findings 9, 10, 12: new_score deploys the newest model only if it beats the
    deployed one; an unknown algorithm is 22023; the runtime is checked whatever
    automatic_deploy says, and NULL does not deploy; clear messages for bad input."""
    with fresh_database(cluster) as (url, conn, dbname):
        conn.execute("SELECT pgml.load_dataset('diabetes')")
        conn.execute("SELECT * FROM pgml.train('d', 'regression', 'pgml.diabetes', 'target')")               # v1 linear
        conn.execute("SELECT * FROM pgml.train('d', algorithm => 'ridge', hyperparams => '{\"alpha\": 1000}', "
                     "automatic_deploy => false)")                                                            # v2 worse
        conn.execute("SELECT * FROM pgml.train('d', algorithm => 'lasso', hyperparams => '{\"alpha\": 0.01}', "
                     "automatic_deploy => false)")                                                            # v3
        metrics = dict(conn.execute("SELECT algorithm, key_metric FROM pgmodels.overview WHERE project = 'd'").fetchall())
        deployed = "SELECT algorithm FROM pgmodels.overview WHERE project = 'd' AND deployed"
        # the newest (lasso) against the deployed (linear): deployed only if it is better
        expect = "lasso" if metrics["lasso"] > metrics["linear"] else "linear"
        assert conn.execute("SELECT * FROM pgml.deploy('d', 'new_score')").fetchall() == [("d", "new_score", expect)]
        assert conn.execute(deployed).fetchone() == (expect,)
        # the newest ridge model scores worse: no change, and no old model is picked instead
        assert conn.execute("SELECT * FROM pgml.deploy('d', 'new_score', 'ridge')").fetchall() == [("d", "new_score", expect)]
        assert conn.execute(deployed).fetchone() == (expect,)
        assert conn.execute("SELECT strategy FROM pgml.deployments ORDER BY id DESC LIMIT 1").fetchone() != ("specific",)
        # an algorithm without a model: the error the other strategies give (not a silent no-op)
        other = sql_error(conn, "SELECT * FROM pgml.deploy('d', 'best_score', 'nope')")
        err = sql_error(conn, "SELECT * FROM pgml.deploy('d', 'new_score', 'nope')")
        assert (err.sqlstate, err.diag.message_primary) == (other.sqlstate, other.diag.message_primary)
        assert "nope" in err.diag.message_primary
        # runtime is checked even without automatic deployment; NULL automatic_deploy does not deploy
        err = sql_error(conn, "SELECT * FROM pgml.train('d', algorithm => 'ridge', runtime => 'java', automatic_deploy => false)")
        assert err.sqlstate == "22023" and "runtime" in err.diag.message_primary
        conn.execute("SELECT * FROM pgml.train('d2', 'regression', 'pgml.diabetes', 'target', automatic_deploy => NULL)")
        assert conn.execute("SELECT count(*) FROM pgml.deployed_models WHERE name = 'd2'").fetchone() == (0,)
        # messages
        conn.execute("CREATE VIEW dx AS SELECT age, sex, bmi FROM pgml.diabetes")
        conn.execute("SELECT * FROM pgml.train('pca', 'decomposition', 'dx')")
        for statement, sqlstate, words in (
                ("SELECT * FROM pgml.snapshot(NULL, NULL)", "22004", "must not be NULL"),
                ("SELECT pgml.predict('d', 'null'::jsonb)", "22023", "JSON null"),
                ("SELECT pgml.predict('d', now())", "22023", "timestamp"),
                ("SELECT pgml.predict_proba('pca', ARRAY[1, 2, 3]::real[])", "0A000", "decomposition model"),
                ("SELECT * FROM pgml.train('c', 'clustering', 'dx', algorithm => 'agglomerative')", "0A000", "cannot predict")):
            err = sql_error(conn, statement)
            text = " ".join(filter(None, (err.diag.message_primary, err.diag.message_detail, err.diag.message_hint)))
            assert (err.sqlstate, words in text) == (sqlstate, True), (statement, text)


def test_pgml_functions_ignore_a_hostile_search_path(cluster, make_role, name):
    """Review finding 13: a superuser whose search_path puts a planted schema first runs
    none of its functions through the pgml layer (built-ins are qualified, the helpers pin
    search_path)."""
    with fresh_database(cluster) as (url, conn, dbname):
        conn.execute("SELECT pgml.load_dataset('iris')")
        conn.execute("CREATE SCHEMA planted")
        for fn, args in (("format", "text, VARIADIC \"any\""), ("coalesce", "text, text"), ("cardinality", "anyarray"),
                         ("quote_ident", "text"), ("replace", "text, text, text"), ("split_part", "text, text, integer"),
                         ("unnest", "anyarray"), ("has_schema_privilege", "text, text"), ("to_regclass", "text")):
            if fn == "format":
                conn.execute("CREATE FUNCTION planted.format(text, VARIADIC text[]) RETURNS text LANGUAGE plpgsql "
                             "AS $$ BEGIN RAISE EXCEPTION 'planted ran'; END $$")
                continue
            ret = "SETOF integer" if fn == "unnest" else "integer" if fn == "cardinality" else "text"
            conn.execute(f"CREATE FUNCTION planted.{fn}({args}) RETURNS {ret} LANGUAGE plpgsql "
                         "AS $$ BEGIN RAISE EXCEPTION 'planted ran'; END $$")
        conn.execute("SET search_path = planted, pg_catalog, public")
        conn.execute("SELECT * FROM pgml.load_dataset('iris')")
        conn.execute("SELECT * FROM pgml.train('i', 'classification', 'pgml.iris', 'target', runtime => 'python')")
        conn.execute("SELECT * FROM pgml.deploy('i', 'new_score')")
        assert conn.execute("SELECT count(*) FROM pgml.predict_batch('i', ARRAY[5.1, 3.5, 1.4, 0.2]::real[])").fetchone() == (1,)
        conn.execute("SELECT * FROM pgml.snapshot('pgml.iris', 'target')")


def test_drop_extension_and_snapshots(cluster):
    """Review finding 11: schema pgmodels_snapshots belongs to the extension: DROP EXTENSION
    refuses while snapshots exist, CASCADE drops them with the schema, and a new CREATE
    EXTENSION makes the schema again."""
    with fresh_database(cluster, setup="CREATE EXTENSION pgmodels CASCADE") as (_, conn, _):
        conn.execute("CREATE TABLE t AS SELECT i::real AS x, (2 * i)::real AS y FROM generate_series(1, 10) i")
        rel = conn.execute("SELECT relation FROM snapshot('t')").fetchone()[0]
        assert sql_error(conn, "DROP EXTENSION pgmodels").sqlstate == "2BP01"
        assert conn.execute(f"SELECT count(*) FROM {rel}").fetchone() == (10,)
        conn.execute("DROP EXTENSION pgmodels CASCADE")
        assert conn.execute("SELECT to_regnamespace('pgmodels_snapshots')").fetchone() == (None,)
        conn.execute("CREATE EXTENSION pgmodels CASCADE")
        assert conn.execute("SELECT relation FROM snapshot('t')").fetchone()[0].startswith("pgmodels_snapshots.")
