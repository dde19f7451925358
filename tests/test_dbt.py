"""The dbt package and the example project, run with the real dbt-core and dbt-postgres
against the embedded cluster: dbt deps (a local package: nothing is downloaded), dbt
build, the incremental predictions model, the train run-operation, the generic test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from dbhelpers import ROOT

DBT = str(Path(sys.executable).with_name("dbt"))
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "paperless", "contract"]


class Project:
    def __init__(self, path: Path, env: dict, schema: str, churn: str, dsn: str):
        self.path, self.env, self.schema, self.churn, self.dsn = path, env, schema, churn, dsn

    def dbt(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        vars_ = json.dumps({"churn_project": self.churn, **self.vars})
        out = subprocess.run([DBT, *args, "--vars", vars_], cwd=self.path, env=self.env, capture_output=True,
                             text=True, timeout=600)
        if ok:
            assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
        return out

    vars: dict = {}

    def results(self) -> dict:
        data = json.loads((self.path / "target" / "run_results.json").read_text())
        return {r["unique_id"]: (r["status"], r["failures"]) for r in data["results"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory, test_db):
    """The repository's package and example, copied with their layout (the example's
    packages.yml names ../../integrations/dbt), in a schema of their own."""
    root = tmp_path_factory.mktemp("dbt")
    shutil.copytree(ROOT / "integrations" / "dbt", root / "integrations" / "dbt")
    shutil.copytree(ROOT / "examples" / "dbt_churn", root / "examples" / "dbt_churn")
    path = root / "examples" / "dbt_churn"
    info = conninfo_to_dict(test_db)
    schema, churn = "dbt_" + uuid.uuid4().hex[:8], "churn_" + uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBT_"))}
    env.update(PGHOST=info["host"], PGPORT=str(info["port"]), PGUSER=info["user"], PGPASSWORD=info.get("password", ""),
               PGDATABASE=info["dbname"], DBT_SCHEMA=schema, DBT_PROFILES_DIR=str(path),
               DBT_SEND_ANONYMOUS_USAGE_STATS="false", DBT_USE_COLORS="false")
    p = Project(path, env, schema, churn, test_db)
    p.dbt("deps")
    assert (path / "dbt_packages" / "pgmodels" / "macros" / "predict.sql").is_file()
    p.dbt("build")
    yield p
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def rows(p: Project, sql: str, params=None):
    with psycopg.connect(p.dsn, autocommit=True) as c:
        c.execute(f"SET search_path = {p.schema}, public")
        cur = c.execute(sql, params)
        return cur.fetchall() if cur.description else cur.rowcount


def test_build_runs_every_node_and_scores_every_customer(project):
    results = project.results()
    assert len(results) == 19, sorted(results)
    assert {s for s, _ in results.values()} == {"success", "pass"}
    assert results["test.dbt_churn.probabilities_sum_to_one"] == ("pass", 0)
    assert [k for k in results if "pgmodels_deployed_model" in k]
    # the predictions are the deployed model's, made by predict() itself
    assert rows(project, "SELECT count(*), count(DISTINCT model_version), min(model_version) FROM churn_predictions") \
        == [(2000, 1, 1)]
    disagree = rows(project, """
        SELECT count(*) FROM churn_predictions p JOIN churn_features f USING (customer_id)
         WHERE p.prediction <> predict(%(m)s, f) OR p.label <> predict_label(%(m)s, f)
            OR p.probabilities <> predict_proba(%(m)s, f)
            OR p.label <> CASE p.prediction WHEN 1 THEN 'true' ELSE 'false' END""", {"m": project.churn})
    assert disagree == [(0,)]
    deployed = rows(project, "SELECT model_id, version FROM pgmodels.overview WHERE project = %s AND deployed",
                    [project.churn])
    assert rows(project, "SELECT DISTINCT model_id, model_version FROM churn_predictions") == deployed
    churners = rows(project, "SELECT count(*) FILTER (WHERE prediction = 1) FROM churn_predictions")[0][0]
    assert 300 < churners < 1500


def test_predictions_have_a_batch_jobs_shape(project):
    """A batch job over the same features writes a table of the same columns and types."""
    rows(project, "SELECT create_batch_job(%s, %s, %s, 'customer_id', %s, "
                  "outputs => ARRAY['prediction', 'probabilities', 'label'])",
         [project.churn + "_job", project.churn, f"{project.schema}.churn_features", f"{project.schema}.batch_out"])
    shape = """SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attnum
                 FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 ORDER BY a.attnum"""
    ours, batch = rows(project, shape, [f"{project.schema}.churn_predictions"]), rows(project, shape,
                                                                                       [f"{project.schema}.batch_out"])
    assert ours == batch
    assert [r[0] for r in ours] == ["customer_id", "prediction", "probabilities", "label", "model_id",
                                    "model_version", "scored_at", "run_id"]
    pk = "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'"
    assert rows(project, pk, [f"{project.schema}.churn_predictions"]) == [("PRIMARY KEY (customer_id)",)]
    rows(project, "SELECT drop_batch_job(%s, drop_output => true)", [project.churn + "_job"])


def test_incremental_runs_score_changed_rows_then_everything_for_a_new_model(project):
    before = dict(rows(project, "SELECT customer_id, run_id FROM churn_predictions"))
    rows(project, """UPDATE raw_customers SET tenure_months = 2, monthly_charges = 110, contract = 'MONTH-TO-MONTH',
                            support_calls = 0, updated_at = now() WHERE customer_id IN (3, 5, 8)""")
    project.dbt("run", "--select", "churn_predictions")
    after = dict(rows(project, "SELECT customer_id, run_id FROM churn_predictions"))
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == [3, 5, 8]
    assert rows(project, "SELECT prediction, label FROM churn_predictions WHERE customer_id = 3") == [(1.0, "true")]
    # a new version from the run-operation, deployed: the next run rescores every customer with it
    out = project.dbt("run-operation", "pgmodels_train", "--args",
                      json.dumps({"project": project.churn, "model": "churn_training", "algorithm": "random_forest",
                                  "hyperparams": {"n_estimators": 20}, "automatic_deploy": False}))
    assert f"pgmodels: trained {project.churn} version 2 (random_forest), f1 0." in out.stdout
    assert "not deployed" in out.stdout
    model_id = rows(project, "SELECT model_id FROM pgmodels.overview WHERE project = %s AND version = 2",
                    [project.churn])[0][0]
    rows(project, "SELECT * FROM deploy(%s)", [model_id])
    project.dbt("run", "--select", "churn_predictions")
    assert rows(project, "SELECT count(*), min(model_version), max(model_version), count(DISTINCT run_id) "
                         "FROM churn_predictions") == [(2000, 2, 2, 1)]
    assert rows(project, "SELECT count(*) FROM churn_predictions p JOIN churn_features f USING (customer_id) "
                         "WHERE p.prediction <> predict(%s, f)", [project.churn]) == [(0,)]


def test_the_generic_test_fails_without_a_good_deployed_model(project):
    target = "test.dbt_churn.pgmodels_deployed_model"
    project.vars = {"churn_min_f1": 0.9999}
    try:
        out = project.dbt("test", "--select", "churn_predictions,test_name:deployed_model", ok=False)
        assert out.returncode == 1
        assert [v for k, v in project.results().items() if k.startswith(target)] == [("fail", 1)]
        project.vars = {"churn_min_f1": 0.5}
        project.dbt("test", "--select", "churn_predictions,test_name:deployed_model")
        assert [v for k, v in project.results().items() if k.startswith(target)] == [("pass", 0)]
        out = project.dbt("run-operation", "pgmodels_train", "--args",
                          json.dumps({"project": project.churn, "model": "churn_training", "algorithm": "linear",
                                      "automatic_deploy": False, "require_deployed": True}), ok=False)
        assert out.returncode != 0 and "was not deployed" in out.stdout
    finally:
        project.vars = {}
    nothing = Project(project.path, project.env, project.schema, "no_such_project", project.dsn)
    out = nothing.dbt("test", "--select", "churn_predictions,test_name:deployed_model", ok=False)
    assert out.returncode == 1
    assert [v for k, v in nothing.results().items() if k.startswith(target)] == [("fail", 1)]


def test_a_predictions_model_without_a_deployed_model_fails_with_pgmodels_error(project):
    """Built before anything is deployed, the predictions model fails with pgmodels' own
    error and hint (not OK [SELECT 0]), and the table it would have replaced is kept."""
    before = rows(project, "SELECT count(*) FROM churn_predictions")[0][0]
    assert before > 0
    undeployed = "undeployed_" + uuid.uuid4().hex[:8]
    with psycopg.connect(project.dsn, autocommit=True) as c:
        c.execute("SET pgmodels.progress_level = 'off'")
        c.execute(f"SELECT * FROM train(%s, 'classification', '{project.schema}.churn_training', 'churned', "
                  "algorithm => 'linear', automatic_deploy => false)", [undeployed])
    for name, message in ((undeployed, f'project "{undeployed}" has no deployed model'),
                          ("no_such_project", 'project "no_such_project" does not exist')):
        other = Project(project.path, project.env, project.schema, name, project.dsn)
        out = other.dbt("run", "--select", "churn_predictions", "--full-refresh", ok=False)
        assert out.returncode == 1, out.stdout[-3000:]
        assert message in out.stdout, out.stdout[-3000:]
        assert "SELECT 0" not in out.stdout
    assert rows(project, "SELECT count(*) FROM churn_predictions")[0][0] == before


def test_the_macros_feature_forms(project):
    """Named columns, a mapping, a row, a model id: the same answer as predict() itself;
    an array compiles to real[] in feature order."""
    def show(expr: str):
        out = project.dbt("show", "--inline", f"select {expr} as v from {{{{ ref('churn_features') }}}} f "
                          "where f.customer_id = 7", "--output", "json")
        text = out.stdout[out.stdout.index("{"):out.stdout.rindex("}") + 1]
        return json.loads(text)["show"][0]["v"]

    want = rows(project, "SELECT predict_label(%s, f) FROM churn_features f WHERE customer_id = 7",
                [project.churn])[0][0]
    m = project.churn
    assert show(f"{{{{ pgmodels.predict_label('{m}', {FEATURES}) }}}}") == want
    assert show(f"{{{{ pgmodels.predict_label('{m}', 'f') }}}}") == want
    mapping = {name: f"f.{name}" for name in FEATURES}
    assert show(f"{{{{ pgmodels.predict_label('{m}', {mapping}) }}}}") == want
    model_id = rows(project, "SELECT model_id FROM pgmodels.overview WHERE project = %s AND deployed", [m])[0][0]
    assert show(f"{{{{ pgmodels.predict_label({model_id}, 'f') }}}}") == want
    out = project.dbt("compile", "--inline", "select {{ pgmodels.predict_proba(\"it's\", array=['a', 'b * 2']) }}")
    assert "predict_proba('it''s'::text, ARRAY[(a), (b * 2)]::real[])" in out.stdout
