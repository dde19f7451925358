"""PostgresML compatibility: the calls PostgresML's users make, run on pgmodels_pgml.

Each scenario in tests/pgml_compat/ (binary and multi-class classification, regression,
joint regression, clustering, decomposition, image classification) is SQL of this
project's own that makes the calls PostgresML's documented examples make: pgml.train and
pgml.train_joint by position and by name with PostgresML's task and algorithm names,
hyperparams, grid and random searches, runtime and automatic_deploy; pgml.deploy with each
strategy and by model id; pgml.predict, predict_proba, predict_joint, predict_batch and
decompose by project and by model id; pgml.load_dataset's tables; and the views
pgml.models, snapshots, trained_models, deployed_models and overview. A scenario checks
what each call returned as it goes (pg_temp.expect in tests/pgml_compat/expect.psql) and
stops at the first error or failed check; psql runs it against a fresh database that has
only CREATE EXTENSION pgmodels_pgml CASCADE. Then the test checks the results for sense:
the models trained, what is deployed, and the answers of the deployed model (accuracy,
r2, clusters against the digits' labels, explained variance).
"""

from __future__ import annotations

import math
import subprocess

import pytest

from dbhelpers import ROOT
from pgmlhelpers import fresh_database

SCENARIOS = ROOT / "tests" / "pgml_compat"
CANCER_FEATURES = ", ".join(f'"{c}"' for c in (
    "mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness", "mean compactness",
    "mean concavity", "mean concave points", "mean symmetry", "mean fractal dimension", "radius error",
    "texture error", "perimeter error", "area error", "smoothness error", "compactness error", "concavity error",
    "concave points error", "symmetry error", "fractal dimension error", "worst radius", "worst texture",
    "worst perimeter", "worst area", "worst smoothness", "worst compactness", "worst concavity",
    "worst concave points", "worst symmetry", "worst fractal dimension"))


@pytest.fixture
def pgml_db(cluster):
    """A fresh database with pgmodels_pgml; (its URL, a connection to it)."""
    with fresh_database(cluster) as (url, conn, _):
        yield url, conn


def run_scenario(url: str, name: str) -> str:
    """psql -f the scenario; fails the test on the first error, and unless every check ran."""
    path = SCENARIOS / f"{name}.sql"
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", str(path), url],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{name}.sql failed:\n{out.stderr[-3000:]}"
    assert "ERROR" not in out.stderr
    checks = path.read_text().count("pg_temp.expect(")
    assert checks >= 5 and out.stdout.count(" ok: ") == checks, out.stdout[-3000:]
    return out.stdout


def trained(conn, project: str) -> dict:
    """algorithm -> the metrics of its latest model in the project."""
    rows = conn.execute("SELECT m.algorithm, m.metrics FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id "
                        "WHERE p.name = %s ORDER BY m.id", [project]).fetchall()
    return {a: m for a, m in rows}


def test_binary_classification(pgml_db):
    url, conn = pgml_db
    run_scenario(url, "binary_classification")
    models = trained(conn, "Tumour Malignancy")
    assert {"linear", "ridge", "stochastic_gradient_descent", "perceptron", "passive_aggressive", "svm", "nu_svm",
            "linear_svm", "ada_boost", "bagging", "extra_trees", "gradient_boosting_trees", "random_forest",
            "xgboost"} == set(models)
    assert max(m["f1"] for m in models.values()) > 0.93
    # the scenario's last deploy: the best svm
    deployed = conn.execute("SELECT algorithm FROM pgml.deployed_models WHERE name = 'Tumour Malignancy'").fetchone()
    assert deployed == ("svm",)
    right = conn.execute(f"SELECT avg((pgml.predict('Tumour Malignancy', ARRAY[{CANCER_FEATURES}]) = malignant::int)::int) "
                         "FROM pgml.breast_cancer").fetchone()[0]
    assert right > 0.9
    # every deployment shows in PostgresML's overview, newest first
    overview = conn.execute("SELECT algorithm, deployed_at FROM pgml.overview WHERE name = 'Tumour Malignancy'").fetchall()
    assert len(overview) >= 8 and overview[0][0] == "svm"
    assert [at for _, at in overview] == sorted((at for _, at in overview), reverse=True)


def test_multi_classification(pgml_db):
    url, conn = pgml_db
    run_scenario(url, "multi_classification")
    models = trained(conn, "Iris Species")
    assert {"catboost", "xgboost", "gradient_boosting_trees", "random_forest", "svm", "ridge"} <= set(models)
    assert models["catboost"]["f1"] > 0.8
    right = conn.execute("SELECT avg((pgml.predict('Iris Species', ARRAY[sepal_length, sepal_width, petal_length, "
                         "petal_width]) = target)::int) FROM pgml.iris").fetchone()[0]
    assert right > 0.9
    proba = conn.execute("SELECT pgml.predict_proba('Iris Species', ARRAY[5.1, 3.5, 1.4, 0.2]::real[])").fetchone()[0]
    assert len(proba) == 3 and abs(sum(proba) - 1) < 1e-3
    assert proba.index(max(proba)) == 0  # a setosa's measurements


def test_regression(pgml_db):
    url, conn = pgml_db
    run_scenario(url, "regression")
    models = trained(conn, "Disease Progression")
    assert {"catboost", "xgboost", "lasso", "huber", "theil_sen", "least_angle", "ransac"} <= set(models)
    assert max(m["r2"] for m in models.values()) > 0.35
    # the scenario ends on its best svm (100 iterations: a poor model); the best one overall
    assert conn.execute("SELECT * FROM pgml.deploy('Disease Progression', 'best_score')").fetchone()[:2] == (
        "Disease Progression", "best_score")
    errors = conn.execute("SELECT avg(abs(pgml.predict('Disease Progression', ARRAY[age, sex, bmi, bp, s1, s2, s3, s4, "
                          "s5, s6]) - target)), avg(abs(target - (SELECT avg(target) FROM pgml.diabetes))) "
                          "FROM pgml.diabetes").fetchone()
    assert errors[0] < errors[1]  # better than predicting the mean


def test_joint_regression(pgml_db):
    url, conn = pgml_db
    run_scenario(url, "joint_regression")
    models = trained(conn, "Exercise and Body")
    assert len(models) >= 20 and all("mean_squared_error" in m for m in models.values())
    rows = conn.execute("SELECT weight, waist, pulse, pgml.predict_joint('Exercise and Body', "
                        "ARRAY[chins, situps, jumps]) FROM pgml.linnerud").fetchall()
    assert len(rows) == 20
    for weight, waist, pulse, predicted in rows:
        assert len(predicted) == 3 and all(math.isfinite(v) for v in predicted)
        assert 100 < predicted[0] < 260 and 20 < predicted[1] < 50 and 30 < predicted[2] < 100
    snapshots = conn.execute("SELECT DISTINCT y_column_name FROM pgml.snapshots").fetchall()
    assert snapshots == [(["weight", "waist", "pulse"],)]


def test_clustering(pgml_db):
    from sklearn.metrics import adjusted_rand_score

    url, conn = pgml_db
    run_scenario(url, "clustering")
    models = trained(conn, "Digit Groups")
    assert {"kmeans", "mini_batch_kmeans", "birch", "affinity_propagation"} == set(models)
    assert models["kmeans"]["silhouette"] > 0.1
    kmeans = conn.execute("SELECT m.id FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id "
                          "WHERE p.name = 'Digit Groups' AND algorithm = 'kmeans' "
                          "ORDER BY m.id DESC LIMIT 1").fetchone()[0]
    rows = conn.execute("SELECT target, pgml.predict(%s, image) FROM pgml.digits", [kmeans]).fetchall()
    clusters = [int(c) for _, c in rows]
    assert set(clusters) == set(range(10))
    assert adjusted_rand_score([t for t, _ in rows], clusters) > 0.4


def test_decomposition(pgml_db):
    url, conn = pgml_db
    run_scenario(url, "decomposition")
    variance = [m["cumulative_explained_variance"] for m in trained(conn, "Digit Components").values()]
    assert len(variance) == 1  # both trainings were pca: the latest per algorithm
    rows = conn.execute("SELECT m.hyperparams ->> 'n_components', (m.metrics ->> 'cumulative_explained_variance')::float "
                        "FROM pgml.models m ORDER BY m.id").fetchall()
    assert len(rows) == 2 and rows[0][1] > 0.999 and rows[1][0] == "3" and 0.3 < rows[1][1] < 0.5
    full, first = conn.execute("SELECT pgml.decompose('Digit Components', image), "
                               "pgml.predict('Digit Components', image) FROM pgml.digits LIMIT 1").fetchone()
    assert len(full) == 64 and abs(full[0] - first) < 1e-4  # predict: the first component, as PostgresML's


def test_image_classification(pgml_db):
    url, conn = pgml_db
    run_scenario(url, "image_classification")
    models = trained(conn, "Digit Recognition")
    assert {"linear", "svm", "xgboost", "random_forest", "bagging", "perceptron"} <= set(models)
    assert max(m["f1"] for m in models.values()) > 0.95
    right = conn.execute("SELECT avg((pgml.predict('Digit Recognition', image) = target)::int) "
                         "FROM pgml.digits").fetchone()[0]
    assert right > 0.9
