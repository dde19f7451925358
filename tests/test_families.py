"""Joint regression, clustering, decomposition, LightGBM, CatBoost and snapshots, through
pgmodels' own SQL (train, train_joint, predict, predict_proba, predict_joint, decompose).

Parity: each family is served through an ONNX graph; the tests fit the same estimator on
the same training rows (test_sampling 'last': the first rows train) in this process and
compare its answers with what SQL serves.
"""

from __future__ import annotations

import numpy as np
import pytest

from dbhelpers import sql_error

TRAIN = "train(text, text, text, text, text, jsonb, text, jsonb, jsonb, real, text, boolean, jsonb, boolean)"


def make_table(conn, table: str, columns: dict, data: np.ndarray, types: dict | None = None):
    types = types or {}
    cols = ", ".join(f"{c} {types.get(c, 'real')}" for c in columns)
    conn.execute(f"CREATE TABLE {table} (id serial, {cols})")
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in data:
            copy.write_row([int(v) if types.get(c) == "integer" else float(v) for c, v in zip(columns, row)])
    # id is not a feature: train on a view without it, in id order
    conn.execute(f"CREATE VIEW {table}_v AS SELECT {', '.join(columns)} FROM {table} ORDER BY id")


def shuffled(X, y=None, seed=1):
    order = np.random.default_rng(seed).permutation(len(X))
    return (X[order], None if y is None else y[order])


def test_joint_regression_matches_the_native_model(conn, name):
    from sklearn.datasets import load_linnerud
    from sklearn.linear_model import LinearRegression

    d = load_linnerud()
    X, Y = d.data.astype(np.float32), d.target.astype(np.float32)
    make_table(conn, name, ["chins", "situps", "jumps", "weight", "waist", "pulse"], np.hstack([X, Y]))
    row = conn.execute("SELECT task, algorithm, deployed, runtime FROM train_joint(%s, 'regression', %s, "
                       "ARRAY['weight', 'waist', 'pulse'], test_sampling => 'last')", [name, name + "_v"]).fetchone()
    assert row == ("regression", "linear", True, "onnx")
    native = LinearRegression().fit(X[:15].astype(np.float64), Y[:15])
    got = np.array([r[0] for r in conn.execute(
        f"SELECT predict_joint(%s, ARRAY[chins, situps, jumps]) FROM {name} ORDER BY id", [name])])
    assert got.shape == (20, 3)
    assert np.max(np.abs(got - native.predict(X.astype(np.float64)))) < 1e-2
    # predict gives the first target, as PostgresML's does; a jsonb object works too
    first = conn.execute("SELECT predict(%s, ARRAY[5, 162, 60]::real[]), "
                         "predict_joint(%s, '{\"chins\": 5, \"situps\": 162, \"jumps\": 60}'::jsonb)", [name, name]).fetchone()
    assert abs(first[0] - first[1][0]) < 1e-4
    training = conn.execute("SELECT training FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id "
                            "WHERE p.name = %s", [name]).fetchone()[0]
    assert training["y_columns"] == ["weight", "waist", "pulse"] and training["conversion"]["converted"]
    # a retrain reuses the targets; a forest fits several targets itself
    assert conn.execute("SELECT algorithm FROM train_joint(%s, algorithm => 'random_forest', "
                        "hyperparams => '{\"n_estimators\": 5}')", [name]).fetchone() == ("random_forest",)


def test_clustering_matches_the_native_model(conn, name):
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_iris

    X, _ = shuffled(load_iris().data.astype(np.float32))
    make_table(conn, name, ["a", "b", "c", "d"], X)
    row = conn.execute("SELECT task, algorithm, deployed, metrics ->> 'silhouette' IS NOT NULL FROM train(%s, "
                       "'clustering', %s, hyperparams => '{\"n_clusters\": 3}', test_sampling => 'last')",
                       [name, name + "_v"]).fetchone()
    assert row == ("clustering", "kmeans", True, True)
    native = KMeans(n_clusters=3, random_state=0, n_init=10).fit(X[:112].astype(np.float64))
    got = [int(r[0]) for r in conn.execute(f"SELECT predict(%s, ARRAY[a, b, c, d]) FROM {name} ORDER BY id", [name])]
    assert got == native.predict(X.astype(np.float64)).tolist()
    for algorithm, params in [("mini_batch_kmeans", '{"n_clusters": 3}'), ("birch", '{"n_clusters": 3}'),
                              ("affinity_propagation", "{}"), ("mean_shift", "{}")]:
        assert conn.execute("SELECT algorithm, runtime FROM train(%s, algorithm => %s, hyperparams => %s)",
                            [name, algorithm, params]).fetchone() == (algorithm, "onnx")
    err = sql_error(conn, "SELECT predict_proba(%s, ARRAY[1, 2, 3, 4]::real[])", [name])
    assert err.sqlstate == "0A000"


def test_decomposition_matches_the_native_model(conn, name):
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA

    X, _ = shuffled(load_digits().data[:400].astype(np.float32))
    conn.execute(f"CREATE TABLE {name} (id serial, image smallint[])")
    with conn.cursor().copy(f"COPY {name} (image) FROM STDIN") as copy:
        for row in X:
            copy.write_row([[int(v) for v in row]])
    conn.execute(f"CREATE VIEW {name}_v AS SELECT image FROM {name} ORDER BY id")
    row = conn.execute("SELECT task, algorithm, (metrics ->> 'cumulative_explained_variance')::float FROM train(%s, "
                       "'decomposition', %s, hyperparams => '{\"n_components\": 5}', test_sampling => 'last')",
                       [name, name + "_v"]).fetchone()
    assert row[:2] == ("decomposition", "pca") and 0.3 < row[2] < 1
    native = PCA(n_components=5, random_state=0).fit(X[:300].astype(np.float64))
    got = np.array([r[0] for r in conn.execute(f"SELECT decompose(%s, image) FROM {name} ORDER BY id", [name])])
    assert got.shape == (400, 5)
    assert np.max(np.abs(got - native.transform(X.astype(np.float64)))) < 1e-3


@pytest.mark.parametrize("algorithm", ["lightgbm", "catboost"])
def test_boosters_convert_and_match_the_native_model(conn, name, algorithm):
    from sklearn.datasets import load_iris

    X, y = shuffled(load_iris().data.astype(np.float32), load_iris().target)
    make_table(conn, name, ["a", "b", "c", "d", "target"], np.hstack([X, y[:, None]]), {"target": "integer"})
    row = conn.execute("SELECT algorithm, runtime FROM train(%s, 'classification', %s, 'target', algorithm => %s, "
                       "hyperparams => '{\"n_estimators\": 10}', test_sampling => 'last')",
                       [name, name + "_v", algorithm]).fetchone()
    assert row == (algorithm, "onnx")
    if algorithm == "lightgbm":
        from lightgbm import LGBMClassifier
        native = LGBMClassifier(n_estimators=10, random_state=0, verbose=-1)
    else:
        from catboost import CatBoostClassifier
        native = CatBoostClassifier(n_estimators=10, random_state=0, verbose=False, allow_writing_files=False)
    native.fit(X[:112], y[:112])
    got = np.array([r[0] for r in conn.execute(f"SELECT predict_proba(%s, ARRAY[a, b, c, d]) FROM {name} ORDER BY id",
                                               [name])])
    assert np.max(np.abs(got - native.predict_proba(X))) < 1e-3
    # regression too, and its conversion check is recorded
    conn.execute(f"CREATE VIEW {name}_r AS SELECT a, b, c, d FROM {name}")
    assert conn.execute("SELECT runtime FROM train(%s, 'regression', %s, 'd', algorithm => %s, "
                        "hyperparams => '{\"n_estimators\": 10}')", [name + "_reg", name + "_r", algorithm]).fetchone() == ("onnx",)
    diff = conn.execute("SELECT (training #>> '{conversion,max_abs_diff}')::float FROM pgmodels.models m "
                        "JOIN pgmodels.projects p ON p.id = m.project_id WHERE p.name = %s", [name + "_reg"]).fetchone()[0]
    assert diff < 1e-3


def test_bad_input(conn, name):
    from sklearn.datasets import load_linnerud

    d = load_linnerud()
    make_table(conn, name, ["chins", "situps", "jumps", "weight", "waist", "pulse"], np.hstack([d.data, d.target]))
    rel = name + "_v"
    cases = [
        # one target is not joint regression
        ("SELECT * FROM train_joint(%s, 'regression', %s, ARRAY['weight'])", [name, rel], "22023", "two or more"),
        ("SELECT * FROM train_joint(%s, 'regression', %s, ARRAY['weight', 'weight'])", [name, rel], "22023", "distinct"),
        ("SELECT * FROM train_joint(%s, 'classification', %s, ARRAY['weight', 'waist'])", [name, rel], "22023", "does not do"),
        ("SELECT * FROM train_joint(%s, 'regression', %s, ARRAY['weight', 'nope'])", [name, rel], "42703", "nope"),
        # clustering algorithms that cannot place a new row, and unknown names
        ("SELECT * FROM train(%s, 'clustering', %s, algorithm => 'dbscan')", [name + "_c", rel], "0A000", "cannot predict"),
        ("SELECT * FROM train(%s, 'clustering', %s, algorithm => 'spectral')", [name + "_c", rel], "0A000", "cannot predict"),
        ("SELECT * FROM train(%s, 'clustering', %s, algorithm => 'kmeanz')", [name + "_c", rel], "22023", "unknown algorithm"),
        ("SELECT * FROM train(%s, 'decomposition', %s, algorithm => 'tsne')", [name + "_d", rel], "22023", "unknown algorithm"),
        ("SELECT * FROM train_joint(%s, 'regression', %s, ARRAY['weight', 'waist'], algorithm => 'nope')",
         [name, rel], "22023", "unknown algorithm"),
        ("SELECT * FROM train(%s, 'clustering', %s, 'pulse')", [name + "_c", rel], "22023", "no target"),
        ("SELECT * FROM train(%s, 'clustering', %s, search => 'grid', search_params => '{\"n_clusters\": [2, 3]}')",
         [name + "_c", rel], "0A000", "search"),
        ("SELECT * FROM train(%s, 'clustering', %s, hyperparams => '{\"n_clusterz\": 3}')", [name + "_c", rel],
         "22023", "unknown hyperparameter"),
    ]
    for statement, params, sqlstate, words in cases:
        err = sql_error(conn, statement, params)
        assert (err.sqlstate, words in err.diag.message_primary) == (sqlstate, True), (statement, err.diag.message_primary)
    # nothing half-written: none of these made a project
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name LIKE %s", [name + "%"]).fetchone()[0] == 0
    conn.execute("SELECT * FROM train(%s, 'clustering', %s, hyperparams => '{\"n_clusters\": 2}')", [name + "_c", rel])
    conn.execute("SELECT * FROM train(%s, 'regression', %s, 'pulse')", [name + "_r", rel])
    for statement, params in [("SELECT decompose(%s, ARRAY[1, 2, 3, 4, 5]::real[])", [name + "_c"]),
                              ("SELECT predict_joint(%s, ARRAY[1, 2, 3, 4, 5]::real[])", [name + "_r"])]:
        assert sql_error(conn, statement, params).sqlstate == "0A000"
    # a wrong number of features is the usual error
    err = sql_error(conn, "SELECT predict(%s, ARRAY[1, 2]::real[])", [name + "_c"])
    assert err.sqlstate == "22023"


def test_train_joint_needs_the_train_privilege(conn, name, make_role):
    rolname, alice = make_role(name + "_alice")
    conn.execute(f"CREATE TABLE {name} (a real, b real, c real)")
    conn.execute(f"INSERT INTO {name} SELECT i, i * 2, i * 3 FROM generate_series(1, 20) i")
    conn.execute(f"GRANT SELECT ON {name} TO {rolname}")
    err = sql_error(alice, "SELECT * FROM train_joint(%s, 'regression', %s, ARRAY['b', 'c'])", [name, name])
    assert err.sqlstate == "42501" and "train" in err.diag.message_primary
    # the core itself refuses too, and so do the snapshot cores
    assert alice.execute("SELECT * FROM pgmodels._train_joint(%s, 'regression', %s, ARRAY['b', 'c'], NULL, NULL, "
                         "NULL, NULL, NULL, NULL, NULL, true, NULL, false)", [name, name]).fetchall() == []
    alice.execute(f"CREATE TEMPORARY TABLE {name}_copy AS SELECT 1 AS a")
    err = sql_error(alice, "SELECT pgmodels._snapshot_create(%s::regclass, %s::regclass, pgmodels._credential())",
                    [name, f"{name}_copy"])
    assert err.sqlstate == "42501"
    assert sql_error(alice, "SELECT * FROM snapshot(%s)", [name]).sqlstate == "42501"
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    assert alice.execute("SELECT deployed FROM train_joint(%s, 'regression', %s, ARRAY['b', 'c'])",
                         [name, name]).fetchone() == (True,)


def test_materialized_snapshot_reproduces_training(conn, name, make_role):
    rolname, alice = make_role(name + "_alice")
    _, bob = make_role(name + "_bob")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {rolname}")
    alice.execute(f"CREATE TABLE {name} (x real, y real)")
    alice.execute(f"INSERT INTO {name} SELECT i, 3 * i + (i % 7) FROM generate_series(1, 200) i")
    first = alice.execute("SELECT metrics FROM train(%s, 'regression', %s, 'y', materialize_snapshot => true)",
                          [name, name]).fetchone()[0]
    snap = conn.execute("SELECT training -> 'snapshot', training ->> 'relation' FROM pgmodels.models m "
                        "JOIN pgmodels.projects p ON p.id = m.project_id WHERE p.name = %s", [name]).fetchone()
    record, relation = snap
    assert record["rows"] == 200 and record["source"] == f"public.{name}" and relation == f"public.{name}"
    assert record["relation"].startswith("pgmodels_snapshots.snapshot_")
    # the source changes; a retrain of the project reads the snapshot: same rows, same split, same model
    alice.execute(f"DELETE FROM {name} WHERE x > 50")
    again = alice.execute("SELECT metrics FROM train(%s)", [name]).fetchone()[0]
    assert {k: v for k, v in again.items() if "time" not in k} == {k: v for k, v in first.items() if "time" not in k}
    training = conn.execute("SELECT training FROM pgmodels.models m JOIN pgmodels.projects p ON p.id = m.project_id "
                            "WHERE p.name = %s ORDER BY m.id DESC LIMIT 1", [name]).fetchone()[0]
    assert training["rows"] == 200 and training["relation"] == record["relation"]
    # the trainer may read its snapshot and change nothing in it; others may not read it
    assert alice.execute(f"SELECT count(*) FROM {record['relation']}").fetchone() == (200,)
    for statement in (f"INSERT INTO {record['relation']} VALUES (1, 1)", f"DELETE FROM {record['relation']}",
                      f"UPDATE {record['relation']} SET y = 0", f"DROP TABLE {record['relation']}"):
        assert sql_error(alice, statement).sqlstate == "42501", statement
    assert sql_error(bob, f"SELECT count(*) FROM {record['relation']}").sqlstate == "42501"
    # snapshot() alone
    rel, source, rows = alice.execute("SELECT * FROM snapshot(%s)", [name]).fetchone()
    assert (source, rows) == (f"public.{name}", 50) and rel.startswith("pgmodels_snapshots.")


def test_a_snapshot_runs_nothing_of_the_relation_with_definer_rights(conn, name, make_role):
    """The snapshot table is made by a definer function, from the catalog's columns: a
    function in the caller's view runs only in the caller's own copy of the rows, as the
    caller (it raises otherwise)."""
    rolname, mallory = make_role(name + "_mallory")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {rolname}")
    mallory.execute(f"CREATE FUNCTION {name}_who(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS "
                    f"$$ BEGIN IF current_user <> '{rolname}' THEN RAISE EXCEPTION 'ran as %', current_user; "
                    "END IF; RETURN i; END $$")
    mallory.execute(f"CREATE VIEW {name} AS SELECT {name}_who(1)::real AS x, g::real AS y FROM generate_series(1, 50) g")
    rel, source, rows = mallory.execute("SELECT * FROM snapshot(%s)", [name]).fetchone()
    assert rows == 50
    assert conn.execute("SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", [rel]).fetchall() == [
        ("x", "real"), ("y", "real")]


def test_booster_hyperparameters_cannot_touch_server_files(conn, name, make_role, tmp_path):
    """Review finding 1, 5, 6: CatBoost and LightGBM take only model settings. A role that
    may train cannot write, read or probe files as the server's OS user, start threads,
    or pass pgmodels.max_trees by another name of the tree count; bad values are 22023
    before any fitting."""
    import os

    rolname, mallory = make_role(name + "_mallory")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"CREATE TABLE {name} (a real, b real, y integer)")
    conn.execute(f"INSERT INTO {name} SELECT i, i % 7, (i % 3 = 0)::int FROM generate_series(1, 60) i")
    conn.execute(f"GRANT SELECT ON {name} TO {rolname}")
    victim = "/tmp/pgmodels_victim_" + name
    with open(victim, "w") as f:
        f.write("keep me\n")
    os.chmod(victim, 0o666)
    target = f"/tmp/pgmodels_snap_{name}"
    datadir = conn.execute("SHOW data_directory").fetchone()[0]
    info = os.path.join(datadir, "catboost_info")

    def written():  # what CatBoost would have written in the data directory, with its time
        return [(e.name, e.stat().st_mtime_ns) for e in os.scandir(info)] if os.path.exists(info) else None
    before = written()
    refused = [
        ("catboost", {"iterations": 10, "output_borders": victim}, "output_borders"),
        ("catboost", {"allow_writing_files": True, "save_snapshot": True, "snapshot_file": target}, "save_snapshot"),
        ("catboost", {"save_snapshot": True}, "save_snapshot"),
        ("catboost", {"train_dir": "reldir_" + name}, "train_dir"),
        ("catboost", {"input_borders": "/etc/passwd"}, "input_borders"),
        ("catboost", {"thread_count": 64}, "thread_count"),
        ("catboost", {"task_type": "GPU"}, "task_type"),
        ("catboost", {"logging_level": "Debug"}, "logging_level"),
        ("lightgbm", {"output_model": victim}, "output_model"),
        ("lightgbm", {"input_model": victim}, "input_model"),
        ("lightgbm", {"save_binary": True}, "save_binary"),
        ("lightgbm", {"device_type": "gpu"}, "device_type"),
        ("lightgbm", {"num_threads": 64}, "num_threads"),
        ("lightgbm", {"n_jobs": 64}, "n_jobs"),
        ("lightgbm", {"num_leaves": 100000000}, "num_leaves"),
        ("catboost", {"depth": 40}, "depth"),
    ]
    for algorithm, params, word in refused:
        err = sql_error(mallory, "SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => %s, hyperparams => %s)",
                        [name, name, algorithm, psycopg_json(params)])
        assert (err.sqlstate, word in err.diag.message_primary) == ("22023", True), (params, err.diag.message_primary)
    # search_params are held to the same list
    err = sql_error(mallory, "SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => 'catboost', "
                    "search => 'grid', search_params => '{\"allow_writing_files\": [true]}')", [name, name])
    assert err.sqlstate == "22023" and "allow_writing_files" in err.diag.message_primary
    # every name of the tree count is capped by pgmodels.max_trees (5000 by default)
    for algorithm, alias in (("catboost", "iterations"), ("catboost", "num_trees"), ("catboost", "num_boost_round"),
                             ("lightgbm", "num_iterations"), ("lightgbm", "num_round"), ("lightgbm", "n_iter")):
        err = sql_error(mallory, "SELECT * FROM train(%s, 'classification', %s, 'y', algorithm => %s, hyperparams => %s)",
                        [name, name, algorithm, psycopg_json({alias: 1_000_000})])
        assert err.sqlstate in ("54000", "22023") and alias in err.diag.message_primary, (alias, err.diag.message_primary)
    assert open(victim).read() == "keep me\n"
    assert not os.path.exists(target)
    assert not os.path.exists(os.path.join(datadir, "reldir_" + name))
    assert written() == before
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name]).fetchone() == (0,)
    # model settings train, and CatBoost wrote nothing
    assert mallory.execute("SELECT runtime FROM train(%s, 'classification', %s, 'y', algorithm => 'catboost', "
                           "hyperparams => '{\"iterations\": 10, \"depth\": 3, \"l2_leaf_reg\": 2}')",
                           [name, name]).fetchone() == ("onnx",)
    assert written() == before
    os.unlink(victim)


def psycopg_json(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def test_snapshots_cannot_be_hijacked_or_changed(conn, name, make_role):
    """Review findings 2, 3, 7: schema pgmodels_snapshots is the extension's own; training
    reads from it only plain tables of the extension's owner; a snapshot is sealed when it
    is made (no caller ever holds INSERT on one); its columns have built-in types, so the
    owner of a domain or enum in the source cannot drop a snapshot's column."""
    rolname, mallory = make_role(name + "_mallory")
    conn.execute(f"GRANT EXECUTE ON FUNCTION {TRAIN} TO {rolname}")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {rolname}")
    conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {rolname}")
    # the schema exists with the extension, a member of it, owned by the extension's owner
    assert conn.execute("SELECT n.nspowner = e.extowner, EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = n.oid "
                        "AND d.refobjid = e.oid AND d.deptype = 'e') FROM pg_namespace n, pg_extension e "
                        "WHERE n.nspname = 'pgmodels_snapshots' AND e.extname = 'pgmodels'").fetchone() == (True, True)
    assert sql_error(mallory, "CREATE SCHEMA pgmodels_snapshots").sqlstate == "42P06"
    # domain and enum columns become their base type and text
    mallory.execute(f"CREATE DOMAIN {name}_pos AS real CHECK (VALUE >= 0)")
    mallory.execute(f"CREATE TYPE {name}_kind AS ENUM ('a', 'b')")
    mallory.execute(f"CREATE TABLE {name} (x {name}_pos, k {name}_kind, v {name}_pos[], y real)")
    mallory.execute(f"INSERT INTO {name} SELECT i, CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END::{name}_kind, "
                    f"ARRAY[i, i]::{name}_pos[], 2 * i FROM generate_series(1, 40) i")
    rel, _, rows = mallory.execute("SELECT * FROM snapshot(%s)", [name]).fetchone()
    assert rows == 40
    types = "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute " \
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    assert conn.execute(types, [rel]).fetchall() == [("x", "real"), ("k", "text"), ("v", "real[]"), ("y", "real")]
    # sealed at once: the caller reads it, and may not change it, even through the core
    assert sql_error(mallory, f"INSERT INTO {rel} (y) VALUES (1)").sqlstate == "42501"
    mallory.execute(f"CREATE TEMPORARY TABLE {name}_copy AS SELECT 1::real AS x")
    other = mallory.execute("SELECT pgmodels._snapshot_create(%s::regclass, %s::regclass, pgmodels._credential())",
                            [name, f"{name}_copy"]).fetchone()[0]
    assert sql_error(mallory, f"INSERT INTO {other} VALUES (2)").sqlstate == "42501"
    # the core takes rows only from a temporary table of the caller's own session
    err = sql_error(mallory, "SELECT pgmodels._snapshot_create(%s::regclass, %s::regclass, pgmodels._credential())",
                    [name, name])
    assert err.sqlstate == "42501"
    mallory.execute(f"DROP DOMAIN {name}_pos CASCADE")
    mallory.execute(f"DROP TYPE {name}_kind CASCADE")
    assert conn.execute(types, [rel]).fetchall() == [("x", "real"), ("k", "text"), ("v", "real[]"), ("y", "real")]
    assert conn.execute(f"SELECT count(*) FROM {rel}").fetchone() == (40,)
    # training refuses anything in the schema that pgmodels did not make: a view, a table of another owner
    conn.execute(f"CREATE VIEW pgmodels_snapshots.{name}_v AS SELECT 1::real AS x, 2::real AS y")
    conn.execute(f"CREATE TABLE pgmodels_snapshots.{name}_t (x real, y real)")
    conn.execute(f"ALTER TABLE pgmodels_snapshots.{name}_t OWNER TO {rolname}")
    conn.execute(f"GRANT USAGE ON SCHEMA pgmodels_snapshots TO {rolname}")
    conn.execute(f"GRANT SELECT ON pgmodels_snapshots.{name}_v TO {rolname}")
    for fake in (f"pgmodels_snapshots.{name}_v", f"pgmodels_snapshots.{name}_t"):
        err = sql_error(mallory, "SELECT * FROM train(%s, 'regression', %s, 'y')", [name + "_p", fake])
        assert (err.sqlstate, "not a pgmodels snapshot" in err.diag.message_primary) == ("42501", True), fake
    # a schema of that name that is not the extension owner's: nothing is created or read in it
    conn.execute(f"ALTER SCHEMA pgmodels_snapshots OWNER TO {rolname}")
    try:
        for statement, params in (("SELECT * FROM snapshot(%s)", [name]),
                                  ("SELECT * FROM train(%s, 'regression', %s, 'y')", [name + "_p", rel])):
            err = sql_error(mallory, statement, params)
            assert (err.sqlstate, "pgmodels_snapshots" in err.diag.message_primary) == ("42501", True), statement
    finally:
        conn.execute("ALTER SCHEMA pgmodels_snapshots OWNER TO CURRENT_USER")
    assert conn.execute("SELECT count(*) FROM pgmodels.projects WHERE name = %s", [name + "_p"]).fetchone() == (0,)
