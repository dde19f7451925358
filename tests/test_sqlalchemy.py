"""pgmodels.sqlalchemy with the real SQLAlchemy 2 and psycopg 3 against the embedded
cluster: typed results (float, list of floats, str) in the ORM and in Core, every
features form, and the example program."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import REAL, Boolean, Integer, Text, create_engine, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, aliased, mapped_column

from pgmodels.cli.demo import CHURN_TABLE
from pgmodels.sqlalchemy import predict, predict_batch, predict_label, predict_proba

from dbhelpers import ROOT
from lifecycle_data import make_numeric


@pytest.fixture(scope="module")
def churn(test_db):
    """A churn table (the demo's generator) and a project trained on it; (engine, project, table)."""
    import psycopg
    import uuid

    name = "sa_" + uuid.uuid4().hex[:8]
    with psycopg.connect(test_db, autocommit=True) as c:
        for statement in CHURN_TABLE.replace("%(rows)s", "400").replace("public.churn", name).split(";"):
            if statement.strip():
                c.execute(statement)
        c.execute(f"CREATE VIEW {name}_f AS SELECT tenure_months, monthly_charges, support_calls, paperless, "
                  f"contract, churned FROM {name}")
        c.execute("SET pgmodels.progress_level = 'off'")
        c.execute("SELECT * FROM train(%s, 'classification', %s, 'churned')", [name, name + "_f"])
        make_numeric(c, name + "_n", 300)
        c.execute("SELECT * FROM train(%s, 'classification', %s, 'y')", [name + "_n", name + "_n"])
    engine = create_engine(test_db.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine, name
    engine.dispose()


def mapped(table: str):
    class Base(DeclarativeBase):
        pass

    class Customer(Base):
        __tablename__ = table
        customer_id: Mapped[int] = mapped_column(Integer, primary_key=True)
        tenure_months: Mapped[float] = mapped_column(REAL)
        monthly_charges: Mapped[float] = mapped_column(REAL)
        support_calls: Mapped[int] = mapped_column(Integer)
        paperless: Mapped[bool] = mapped_column(Boolean)
        contract: Mapped[str] = mapped_column(Text)
        churned: Mapped[bool] = mapped_column(Boolean)

    return Customer


def raw(engine, sql: str, **params):
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text(sql), params).all()


def test_orm_returns_float_list_and_str(churn):
    engine, name = churn
    Customer = mapped(name)
    with Session(engine) as session:
        got = session.execute(select(Customer.customer_id, predict(name, Customer), predict_proba(name, Customer),
                                     predict_label(name, Customer)).order_by(Customer.customer_id)).all()
    assert len(got) == 400
    for _, p, proba, label in got:
        assert type(p) is float and type(proba) is list and type(label) is str
        assert all(type(x) is float for x in proba) and len(proba) == 2
        assert label == ("true" if p == 1.0 else "false")
    want = raw(engine, f"SELECT customer_id, predict(:p, c), predict_proba(:p, c), predict_label(:p, c) "
                       f"FROM {name} c ORDER BY 1", p=name)
    assert [tuple(r) for r in got] == [tuple(r) for r in want]
    assert 0 < sum(r[1] for r in got) < 400


def test_orm_aliased_and_func_style(churn):
    engine, name = churn
    Customer = mapped(name)
    c = aliased(Customer, name="c")
    stmt = select(func.predict(name, c)).where(c.customer_id == 7)
    sql = str(stmt.compile(dialect=postgresql.psycopg.dialect()))
    assert "predict(%(param_1)s::VARCHAR, c)" in sql and f"FROM {name} AS c" in sql
    with Session(engine) as session:
        value = session.scalar(stmt)
    assert type(value) is float
    assert value == raw(engine, f"SELECT predict(:p, c) FROM {name} c WHERE customer_id = 7", p=name)[0][0]


def test_core_table_dict_columns_numbers_and_model_id(churn):
    engine, name = churn
    customers = mapped(name).__table__
    new = {"tenure_months": 3, "monthly_charges": 95, "support_calls": 1, "paperless": False,
           "contract": "month-to-month"}
    with engine.connect() as conn:
        by_row = conn.execute(select(predict_label(name, customers)).where(customers.c.customer_id == 5)).scalar()
        by_columns = conn.execute(select(predict_label(name, {k: customers.c[k] for k in new}))
                                  .where(customers.c.customer_id == 5)).scalar()
        label, proba = conn.execute(select(predict_label(name, new), predict_proba(name, new))).one()
        mid = raw(engine, "SELECT model_id FROM pgmodels.overview WHERE project = :p AND deployed", p=name)[0][0]
        by_id = conn.execute(select(predict_label(mid, new))).scalar()
        numeric = mapped_numeric(name + "_n")
        by_numbers = conn.execute(select(predict_proba(name + "_n", [16.0, 22.0, 3.0, 1.0]))).scalar()
        by_array = conn.execute(select(predict_proba(name + "_n", [numeric.c.a, numeric.c.b, numeric.c.c,
                                                                    numeric.c.d])).limit(1)).scalar()
        batch = conn.execute(select(predict_batch(name + "_n", [[16, 22, 3, 1], [0, 0, 0, 0], [1, 2, 3, 4]]))).scalars().all()
    assert by_row == by_columns == raw(engine, f"SELECT predict_label(:p, c) FROM {name} c WHERE customer_id = 5",
                                       p=name)[0][0]
    want = raw(engine, "SELECT predict_label(:p, CAST(:f AS jsonb)), predict_proba(:p, CAST(:f AS jsonb))", p=name,
               f='{"tenure_months": 3, "monthly_charges": 95, "support_calls": 1, "paperless": false, '
                 '"contract": "month-to-month"}')[0]
    assert (label, proba) == tuple(want) and by_id == label
    assert by_numbers == raw(engine, "SELECT predict_proba(:p, ARRAY[16, 22, 3, 1]::real[])", p=name + "_n")[0][0]
    assert type(by_array) is list and len(by_array) == 2
    assert batch == [r[0] for r in raw(engine, "SELECT predict_batch(:p, ARRAY[[16, 22, 3, 1], [0, 0, 0, 0], "
                                               "[1, 2, 3, 4]]::real[])", p=name + "_n")]
    assert all(type(x) is float for x in batch) and len(batch) == 3


def mapped_numeric(table: str):
    from sqlalchemy import Column, MetaData, Table

    return Table(table, MetaData(), Column("a", REAL), Column("b", REAL), Column("c", REAL), Column("d", REAL))


def test_errors_come_back_as_postgresql_errors(churn):
    from sqlalchemy.exc import DBAPIError

    engine, name = churn
    with engine.connect() as conn, pytest.raises(DBAPIError) as info:
        conn.execute(select(predict("no_such_project_here", [1.0, 2.0]))).scalar()
    assert info.value.orig.sqlstate == "42704"
    assert info.value.orig.diag.message_primary == 'project "no_such_project_here" does not exist'
    with pytest.raises(TypeError):
        predict(name, object())


def test_the_example_program(churn, test_db):
    engine, name = churn
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "sqlalchemy" / "churn.py"), test_db, name, name],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines[:3]] == ["orm  customer 1", "orm  customer 2", "orm  customer 3"]
    assert all("(float)" in ln and "(list)" in ln and "(str)" in ln for ln in lines[:3])
    n = raw(engine, f"SELECT count(*) FROM {name} c WHERE customer_id <= 100 AND predict(:p, c) = 1", p=name)[0][0]
    assert lines[3] == f"core {n} of the first 100 customers are predicted to churn"
    assert lines[4].startswith("core a new customer: label=")
