"""PostgresML's classic-ML example files, run unchanged on pgmodels with pgmodels_pgml.

Each file in tests/pgml_examples/ is PostgresML's own (see the header of each for where
it comes from and its license), run by psql with ON_ERROR_STOP against a fresh database
that has only CREATE EXTENSION pgmodels_pgml CASCADE; then the results are checked for
sense: the models it trained, what is deployed, and the answers of the deployed model.
"""

from __future__ import annotations

import math
import subprocess
import pytest

from dbhelpers import ROOT
from pgmlhelpers import fresh_database

EXAMPLES = ROOT / "tests" / "pgml_examples"


@pytest.fixture
def example_db(cluster):
    """A fresh database with pgmodels_pgml; (its URL, a connection to it)."""
    with fresh_database(cluster) as (url, conn, _):
        yield url, conn


def run_example(url: str, name: str) -> str:
    """psql -f the example as it is; fails the test on the first error."""
    out = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-f", str(EXAMPLES / f"{name}.sql"), url],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"{name}.sql failed:\n{out.stderr[-3000:]}"
    assert "ERROR" not in out.stderr
    return out.stdout


def trained(conn, project: str) -> dict:
    """algorithm -> the metrics of its latest model in the project."""
    rows = conn.execute("SELECT m.algorithm, m.metrics FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id "
                        "WHERE p.name = %s ORDER BY m.id", [project]).fetchall()
    return {a: m for a, m in rows}


def test_binary_classification(example_db):
    url, conn = example_db
    run_example(url, "binary_classification")
    models = trained(conn, "Breast Cancer Detection")
    assert {"linear", "ridge", "svm", "random_forest", "xgboost", "ada_boost"} <= set(models)
    assert max(m["f1"] for m in models.values()) > 0.93
    # the example's last deploy: the best svm
    deployed = conn.execute("SELECT algorithm FROM pgml.deployed_models WHERE name = 'Breast Cancer Detection'").fetchone()
    assert deployed == ("svm",)
    right = conn.execute("""SELECT avg((pgml.predict('Breast Cancer Detection', ARRAY["mean radius", "mean texture",
        "mean perimeter", "mean area", "mean smoothness", "mean compactness", "mean concavity", "mean concave points",
        "mean symmetry", "mean fractal dimension", "radius error", "texture error", "perimeter error", "area error",
        "smoothness error", "compactness error", "concavity error", "concave points error", "symmetry error",
        "fractal dimension error", "worst radius", "worst texture", "worst perimeter", "worst area",
        "worst smoothness", "worst compactness", "worst concavity", "worst concave points", "worst symmetry",
        "worst fractal dimension"]) = malignant::int)::int) FROM pgml.breast_cancer""").fetchone()[0]
    assert right > 0.9
    # every deployment shows in PostgresML's overview, newest first
    assert conn.execute("SELECT count(*) FROM pgml.overview WHERE name = 'Breast Cancer Detection'").fetchone()[0] >= 5


def test_multi_classification(example_db):
    url, conn = example_db
    run_example(url, "multi_classification")
    models = trained(conn, "Iris Flower Types")
    assert {"catboost", "xgboost", "gradient_boosting_trees", "svm"} <= set(models)
    assert models["catboost"]["f1"] > 0.8
    right = conn.execute("SELECT avg((pgml.predict('Iris Flower Types', ARRAY[sepal_length, sepal_width, petal_length, "
                         "petal_width]) = target)::int) FROM pgml.iris").fetchone()[0]
    assert right > 0.9
    proba = conn.execute("SELECT pgml.predict_proba('Iris Flower Types', ARRAY[5.1, 3.5, 1.4, 0.2]::real[])").fetchone()[0]
    assert len(proba) == 3 and abs(sum(proba) - 1) < 1e-3


def test_regression(example_db):
    url, conn = example_db
    run_example(url, "regression")
    models = trained(conn, "Diabetes Progression")
    assert {"catboost", "xgboost", "lasso", "huber", "theil_sen"} <= set(models)
    assert max(m["r2"] for m in models.values()) > 0.35
    # the example ends on its best svm (100 iterations: a poor model); the best one overall
    assert conn.execute("SELECT strategy FROM pgml.deploy('Diabetes Progression', 'best_score')").fetchone() == ("best_score",)
    errors = conn.execute("SELECT avg(abs(pgml.predict('Diabetes Progression', ARRAY[age, sex, bmi, bp, s1, s2, s3, s4, "
                          "s5, s6]) - target)), avg(abs(target - (SELECT avg(target) FROM pgml.diabetes))) "
                          "FROM pgml.diabetes").fetchone()
    assert errors[0] < errors[1]  # better than predicting the mean


def test_joint_regression(example_db):
    url, conn = example_db
    run_example(url, "joint_regression")
    models = trained(conn, "Exercise vs Physiology")
    assert len(models) >= 20 and all("mean_squared_error" in m for m in models.values())
    rows = conn.execute("SELECT weight, waist, pulse, pgml.predict_joint('Exercise vs Physiology', "
                        "ARRAY[chins, situps, jumps]) FROM pgml.linnerud").fetchall()
    for weight, waist, pulse, predicted in rows:
        assert len(predicted) == 3 and all(math.isfinite(v) for v in predicted)
        assert 100 < predicted[0] < 260 and 20 < predicted[1] < 50 and 30 < predicted[2] < 100
    snapshots = conn.execute("SELECT DISTINCT y_column_name FROM pgml.snapshots").fetchall()
    assert snapshots == [(["weight", "waist", "pulse"],)]


def test_clustering(example_db):
    from sklearn.metrics import adjusted_rand_score

    url, conn = example_db
    run_example(url, "clustering")
    models = trained(conn, "Handwritten Digit Clusters")
    assert {"kmeans", "mini_batch_kmeans", "birch", "affinity_propagation"} <= set(models)
    assert models["kmeans"]["silhouette"] > 0.1
    kmeans = conn.execute("SELECT m.id FROM pgml.models m JOIN pgml.projects p ON p.id = m.project_id "
                          "WHERE p.name = 'Handwritten Digit Clusters' AND algorithm = 'kmeans' "
                          "ORDER BY m.id DESC LIMIT 1").fetchone()[0]
    rows = conn.execute("SELECT target, pgml.predict(%s, image) FROM pgml.digits", [kmeans]).fetchall()
    clusters = [int(c) for _, c in rows]
    assert set(clusters) == set(range(10))
    assert adjusted_rand_score([t for t, _ in rows], clusters) > 0.4


def test_decomposition(example_db):
    url, conn = example_db
    run_example(url, "decomposition")
    variance = [m["cumulative_explained_variance"] for m in trained(conn, "Handwritten Digits Reduction").values()]
    assert len(variance) == 1  # both trainings were pca: the latest per algorithm
    rows = conn.execute("SELECT m.hyperparams ->> 'n_components', (m.metrics ->> 'cumulative_explained_variance')::float "
                        "FROM pgml.models m ORDER BY m.id").fetchall()
    assert rows[0][1] > 0.999 and rows[1][0] == "3" and 0.3 < rows[1][1] < 0.5
    full, first = conn.execute("SELECT pgml.decompose('Handwritten Digits Reduction', image), "
                               "pgml.predict('Handwritten Digits Reduction', image) FROM pgml.digits LIMIT 1").fetchone()
    assert len(full) == 64 and abs(full[0] - first) < 1e-4  # predict: the first component, as PostgresML's


def test_image_classification(example_db):
    url, conn = example_db
    run_example(url, "image_classification")
    models = trained(conn, "Handwritten Digits")
    assert {"linear", "svm", "xgboost", "random_forest"} <= set(models)
    assert max(m["f1"] for m in models.values()) > 0.95
    right = conn.execute("SELECT avg((pgml.predict('Handwritten Digits', image) = target)::int) "
                         "FROM pgml.digits").fetchone()[0]
    assert right > 0.9
