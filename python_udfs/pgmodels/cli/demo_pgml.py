"""The demo's PostgresML step: PostgresML's own SQL, unchanged, on pgmodels with the
companion extension pgmodels_pgml."""

from __future__ import annotations


def pgml_step(conn, say) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS pgmodels_pgml CASCADE")
    say("   CREATE EXTENSION pgmodels_pgml;  SELECT pgml.load_dataset('iris');")
    table, rows = conn.execute("SELECT * FROM pgml.load_dataset('iris')").fetchone()
    say(f"   {table}: {rows} rows, offline from scikit-learn's copy")
    project, task, algorithm, deployed = conn.execute(
        "SELECT * FROM pgml.train('Iris Flower Types', 'classification', 'pgml.iris', 'target', "
        "algorithm => 'xgboost', hyperparams => '{\"n_estimators\": 10}')").fetchone()
    say(f"   pgml.train('Iris Flower Types', ...): {project} | {task} | {algorithm} | deployed={deployed}")
    right, n = conn.execute("SELECT count(*) FILTER (WHERE pgml.predict('Iris Flower Types', ARRAY[sepal_length, "
                            "sepal_width, petal_length, petal_width]) = target), count(*) FROM pgml.iris").fetchone()
    say(f"   pgml.predict over pgml.iris: {right} of {n} right")
    for r in conn.execute("SELECT id, name, algorithm, runtime FROM pgml.deployed_models WHERE name = 'Iris Flower Types'"):
        say(f"   pgml.deployed_models: model {r[0]} of {r[1]!r}, {r[2]}, served by {r[3]}")
