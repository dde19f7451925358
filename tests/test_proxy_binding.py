"""proxy/binding.py: a statement's parameters written as literals exactly as psycopg's
ClientCursor writes them, and what PostgreSQL reads back from them."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from pgmodels.proxy import binding

VALUES = [
    None, "", "x", "bench_xgb", "10000ms", "[{}]", '[{"f1": 2.5}]', "it's", "back\\slash", "é ü 中", 0, 7,
    12345678901, -3, True, 1.5,
    [[0.5, 1.25, -0.3, 2.0]], [[1.0, -2.5e-07, 3.4028234663852886e38]], [0.5, None], [None, 0.5],
    [[1.0, None], [None, 2.0]], [[1.0], [None]], [None, None], [float("inf")], [[1.0], 2.0], [1, 2.0],
    ["predict", "probabilities"], ["42"], ["a-b.c_d"], ["null"], ["NULL", "x"], ["a b"], ["a,b"], ['a"b'],
    ["it's"], [""], [None, "a"], ["a", None], ["a", 1], [[" x"]], [1, None], [], [[]],
]


def _outcome(f):
    try:
        return f()
    except Exception as e:  # noqa: BLE001 - the same failure counts as the same outcome
        return type(e), str(e)


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_literal_is_psycopgs(conn, value):
    assert _outcome(lambda: binding.literal(conn, value)) == _outcome(lambda: sql.Literal(value).as_string(conn))


def test_a_nul_is_refused_as_psycopg_refuses_it(conn):
    with pytest.raises(psycopg.DataError, match="NUL"):
        binding.literal(conn, "a\x00b")
    with pytest.raises(psycopg.DataError, match="NUL"):
        binding.literal(conn, ["a\x00b"])


def test_a_bound_statement_reads_back_its_values(conn):
    statement = ("SELECT %(s)s::text, %(n)s::bigint, %(x)s::real[], %(w)s::text[], %(w)s::text[] = %(w)s::text[], "
                 "'100%%', %(q)s::text, %(none)s::text")
    params = {"s": "it's é", "n": 42, "x": [[0.5, None], [2.0, -1e-05]], "w": ["predict", "label"], "q": "a\\b",
              "none": None}
    text = binding.bind(conn, statement, params)
    assert text.count(b"'{predict,label}'") == 3
    row = conn.execute(text).fetchone()
    assert row == ("it's é", 42, [[0.5, None], [2.0, -1e-05]], ["predict", "label"], True, "100%", "a\\b", None)
    assert binding.bind(conn, "SELECT '100%'", None) == b"SELECT '100%'"  # no parameters: the text as it is


def test_a_stray_percent_is_refused():
    with pytest.raises(ValueError):
        binding.template("SELECT %s")
    assert binding.template("SELECT %(a)s, %% %(b)s") == (("SELECT ", ", % ", ""), ("a", "b"))



def test_a_statement_is_sent_in_the_connections_own_encoding(test_db):
    with psycopg.connect(test_db, autocommit=True) as c:
        c.execute("SET client_encoding TO 'LATIN1'")
        sent = binding.bind(c, "SELECT %(x)s, %(n)s::text[]", {"x": "café", "n": ["crème"]})
        assert sent == "SELECT 'café', '{crème}'::text[]".encode("latin-1")
        assert c.execute(sent).fetchone() == ("café", ["crème"])
        with pytest.raises(Exception, match="cannot take"):  # a character LATIN1 lacks: the client's mistake
            binding.bind(c, "SELECT %(x)s", {"x": "中"})
