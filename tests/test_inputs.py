"""How features reach a model: anonymous rows, array columns, boolean targets, batch
shapes; errors that belong to their statement; deploys seen inside procedures."""

from __future__ import annotations

import psycopg
import pytest

from dbhelpers import sql_error
from onnx_models import scaled_sum


def test_anonymous_rows_are_positional_named_rows_by_name(conn, name):
    # a model whose features are called f2, f1: PostgreSQL's own names for ROW(...) columns
    conn.execute(f"""CREATE TABLE {name} AS SELECT (i % 7)::real AS f2, (i % 5)::real AS f1,
                     (3 * (i % 7) + (i % 5))::float8 AS y FROM generate_series(1, 200) i""")
    conn.execute("SELECT * FROM train(%s, 'regression', %s, 'y')", [name, name])
    by_array = conn.execute("SELECT predict(%s, ARRAY[2, 1])", [name]).fetchone()[0]  # f2 = 2, f1 = 1
    assert by_array == pytest.approx(7.0, abs=0.01)
    assert conn.execute("SELECT predict(%s, ROW(2, 1))", [name]).fetchone()[0] == by_array
    assert conn.execute("SELECT predict(%s, (2, 1))", [name]).fetchone()[0] == by_array
    # a table's row and a subquery's row match by name, whatever the column order
    assert conn.execute(f"SELECT predict(%s, t) FROM {name} t WHERE f2 = 2 AND f1 = 1 LIMIT 1",
                        [name]).fetchone()[0] == by_array
    assert conn.execute("SELECT predict(%s, s) FROM (SELECT 1::real AS f1, 7::real AS x, 2::real AS f2) s",
                        [name]).fetchone()[0] == by_array
    # a record whose columns are f1, f2, ... in order is taken as ROW(...) would be: by position
    assert conn.execute("SELECT predict(%s, s) FROM (SELECT 2::real AS f1, 1::real AS f2) s",
                        [name]).fetchone()[0] == by_array
    err = sql_error(conn, "SELECT predict(%s, ROW(2, 1, 5))", [name])
    assert err.sqlstate == "22023" and "takes 2 features, got 3" in err.diag.message_primary


def test_array_columns_are_features(conn, name):
    """PostgresML's digits: each image an 8x8 smallint[][]; embeddings as real[]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    conn.execute(f"CREATE TABLE {name} (image smallint[][], target integer)")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {name} (image, target) FROM STDIN") as copy:
            for image, target in zip(digits.images[:600], digits.target[:600]):
                rows = ",".join("{" + ",".join(str(int(v)) for v in row) + "}" for row in image)
                copy.write_row(["{" + rows + "}", int(target)])
    row = conn.execute("SELECT model_id, metrics ->> 'accuracy' FROM train(%s, 'classification', %s, 'target', "
                       "algorithm => 'random_forest', hyperparams => '{\"n_estimators\": 20}')", [name, name]).fetchone()
    assert float(row[1]) > 0.8
    names = conn.execute("SELECT feature_names FROM pgmodels.models WHERE id = %s", [row[0]]).fetchone()[0]
    assert len(names) == 64 and names[:2] == ["image[1]", "image[2]"]
    truth, by_row, by_2d, by_flat, by_json = conn.execute(f"""
        SELECT target, predict(%s, d), predict(%s, image::real[]),
               predict(%s, ARRAY(SELECT unnest(image))::real[]),
               predict(%s, jsonb_build_object('image', to_jsonb(image)))
        FROM {name} d ORDER BY target LIMIT 1""", [name] * 4).fetchone()
    assert by_row == by_2d == by_flat == by_json
    err = sql_error(conn, "SELECT predict(%s, jsonb_build_object('image', jsonb_build_array(1, 2, 3)))", [name])
    assert err.sqlstate == "22023" and 'array feature "image" must have 64 elements, got 3 elements' == err.diag.message_primary
    conn.execute(f"INSERT INTO {name} VALUES ('{{1,2,3}}', 1)")
    err = sql_error(conn, "SELECT * FROM train(%s, 'classification', %s, 'target')", [name + "_ragged", name])
    assert err.sqlstate == "22023" and "does not have one length for every row" in err.diag.message_primary


def test_boolean_targets_give_true_and_false(conn, name):
    conn.execute(f"""CREATE TABLE {name} AS SELECT (i % 10)::real AS a, (i % 10) > 4 AS churned
                     FROM generate_series(1, 200) i""")
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'churned')", [name, name])
    assert conn.execute("SELECT predict_label(%s, ARRAY[9]), predict_label(%s, ARRAY[0])",
                        [name, name]).fetchone() == ("true", "false")
    assert conn.execute("SELECT predict(%s, ARRAY[9]), predict(%s, ARRAY[0])", [name, name]).fetchone() == (1.0, 0.0)


def test_predict_batch_shapes(conn, name):
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(1.0)])
    flat = [r[0] for r in conn.execute("SELECT predict_batch(%s, ARRAY[1, 2, 3, 4]::real[])", [name])]
    rows = [r[0] for r in conn.execute("SELECT predict_batch(%s, ARRAY[[1, 2], [3, 4]]::real[])", [name])]
    assert flat == rows == [3.0, 7.0]
    err = sql_error(conn, "SELECT predict_batch(%s, ARRAY[[1, 2, 3], [4, 5, 6]]::real[])", [name])
    assert err.sqlstate == "22023" and "rows of 3 values do not fit" in err.diag.message_primary
    err = sql_error(conn, "SELECT predict_batch(%s, array_fill(1::real, ARRAY[2, 2, 2]))", [name])
    assert err.sqlstate == "22023" and "rows of 4 values do not fit" in err.diag.message_primary
    err = sql_error(conn, "SELECT predict_batch(%s, ARRAY[1, 2, 3]::real[])", [name])
    assert err.sqlstate == "22023" and "not a whole number of rows" in err.diag.message_primary


def test_a_pending_error_never_leaks_into_a_later_statement(conn, make_role, name):
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(1.0)])
    conn.execute("SELECT grant_project(%s, 'public', 'predict')", [name])
    rolname, c = make_role(name + "_r")
    rows = dict((i, ok) for i, _, ok in c.execute("SELECT * FROM pgmodels.doctor()"))
    assert rows["pgmodels.venv"] is True  # doctor works for a non-superuser
    # record an error no statement raises (a core called directly), then predict NULL
    assert c.execute("SELECT pgmodels._predict('nope', 0, ARRAY[1]::float8[], 0, true)").fetchone() == (None,)
    assert c.execute("SELECT predict(%s, NULL::real[])", [name]).fetchone() == (None,)
    c.execute("SELECT pgmodels._predict('nope', 0, ARRAY[1]::float8[], 0, true)")
    assert c.execute("SELECT * FROM pgmodels.doctor()").fetchall()
    assert c.execute("SELECT predict(%s, ARRAY[1, 2])", [name]).fetchone() == (3.0,)


def test_a_deploy_committed_in_a_procedure_is_seen_after_its_commit(conn, name):
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(1.0)])
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name, scaled_sum(2.0)])
    conn.execute(f"CREATE TABLE {name}_seen (step int, value real)")
    conn.execute(f"""CREATE PROCEDURE {name}_job() LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {name}_seen VALUES (1, predict('{name}', ARRAY[1, 2]));
            PERFORM * FROM deploy('{name}', 'rollback');
            COMMIT;
            INSERT INTO {name}_seen VALUES (2, predict('{name}', ARRAY[1, 2]));
            COMMIT;
        END $$""")
    conn.execute(f"CALL {name}_job()")
    assert conn.execute(f"SELECT value FROM {name}_seen ORDER BY step").fetchall() == [(6.0,), (3.0,)]


def test_fuzzed_input_never_ends_in_an_internal_error(conn, name):
    """A seeded generator of malformed inputs through every predict form: each gives a value,
    NULL or a clear error with a proper SQLSTATE; never XX000, a crash or a traceback."""
    import random

    from lifecycle_data import make_churn

    make_churn(conn, name)
    conn.execute("SELECT * FROM train(%s, 'classification', %s, 'churned')", [name, name])
    conn.execute("SELECT * FROM import_onnx(%s, %s, ARRAY['a', 'b'], 'regression')", [name + "_r", scaled_sum(1.0)])
    rng = random.Random(7)
    numbers = ["0", "1", "-1", "1e300", "-1e300", "3.5e38", "1e-320", "'NaN'", "'Infinity'", "'-Infinity'", "NULL",
               "123456789012345678901234567890", "0.5"]
    json_values = ["1", "1e400", "-1e400", "\"x\"", "null", "[]", "{}", "true", "[1, 2]", "1e38", "\"NaN\""]
    keys = ["tenure", "monthly", "calls", "paperless", "contract", "a", "b", "f1", "x"]
    seen = set()
    for _ in range(3000):
        project = rng.choice([name, name + "_r"])
        fn = rng.choice(["predict", "predict_proba", "predict_label"])
        kind = rng.randrange(5)
        if kind == 0:
            values = ", ".join(rng.choice(numbers) for _ in range(rng.randrange(0, 7)))
            expr = f"{fn}('{project}', ARRAY[{values}]::{rng.choice(['float8', 'real', 'numeric', 'int'])}[])"
        elif kind == 1:
            dims = [rng.randrange(1, 4) for _ in range(rng.randrange(1, 4))]
            expr = f"{fn}('{project}', array_fill({rng.choice(numbers)}::float8, ARRAY{dims}))"
        elif kind == 2:
            body = ", ".join(f'"{rng.choice(keys)}": {rng.choice(json_values)}' for _ in range(rng.randrange(0, 7)))
            expr = f"{fn}('{project}', '{{{body}}}'::jsonb)"
        elif kind == 3:
            values = ", ".join(rng.choice(numbers + ["'month'", "true"]) for _ in range(rng.randrange(1, 7)))
            expr = f"{fn}('{project}', ROW({values}))"
        else:
            values = ", ".join(rng.choice(numbers) for _ in range(rng.randrange(0, 9)))
            expr = f"predict_batch('{project}', ARRAY[{values}]::float8[]::real[])"
        try:
            conn.execute(f"SELECT {expr}").fetchall()
            seen.add("ok")
        except psycopg.Error as e:
            assert e.sqlstate and not e.sqlstate.startswith("XX"), (expr, e.sqlstate, str(e))
            assert "Traceback" not in str(e) and e.diag.message_primary == e.diag.message_primary.rstrip(".")
            seen.add(e.sqlstate)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    assert {"ok", "22023"} <= seen


def test_a_pending_error_is_only_for_its_own_statement(conn, make_role, name):
    """A statement that records an error and then fails some other way leaves it behind:
    the next statement, or the next role on a pooled backend, never gets it."""
    rolname, c = make_role(name + "_r")
    c.execute("SELECT pgmodels._predict('secret-project', 0, ARRAY[42]::float8[], 0, true)")  # records, raises nothing
    assert c.execute("SELECT * FROM pgmodels._pending_error(pgmodels._stamp())").fetchall() == []
    assert c.execute("SELECT pgmodels._raise_pending(NULL::integer)").fetchone() == (None,)
