"""pgmodels from SQLAlchemy 2 with psycopg 3: Core and ORM, typed results.

Run after `pgmodels demo` (its public.churn table and churn project):

    .pgmodels/venv/bin/python examples/sqlalchemy/churn.py "$(.pgmodels/venv/bin/pgmodels db url)"

The URL's scheme is switched to postgresql+psycopg:// (SQLAlchemy's psycopg 3 dialect).
Arguments after the URL: the project and the table (default churn, churn).
"""

from __future__ import annotations

import sys

from sqlalchemy import REAL, Boolean, Integer, Text, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pgmodels.sqlalchemy import predict, predict_label, predict_proba


def main(url: str, project: str = "churn", table: str = "churn") -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))

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

    # ORM: the mapped class is the row; predict matches its columns to the features by name
    with Session(engine) as session:
        stmt = (select(Customer.customer_id, predict(project, Customer), predict_proba(project, Customer),
                       predict_label(project, Customer))
                .where(Customer.customer_id <= 3).order_by(Customer.customer_id))
        for customer_id, prediction, probabilities, label in session.execute(stmt):
            print(f"orm  customer {customer_id}: predict={prediction!r} ({type(prediction).__name__}) "
                  f"proba={[round(p, 3) for p in probabilities]} ({type(probabilities).__name__}) "
                  f"label={label!r} ({type(label).__name__})")

    # Core: the table, and a dict of features for a customer that is not in it
    customers = Customer.__table__
    with engine.connect() as conn:
        churners = conn.execute(select(customers.c.customer_id)
                                .where(customers.c.customer_id <= 100, predict(project, customers) == 1)).all()
        print(f"core {len(churners)} of the first 100 customers are predicted to churn")
        new = {"tenure_months": 3, "monthly_charges": 95, "support_calls": 1, "paperless": False,
               "contract": "month-to-month"}
        label, proba = conn.execute(select(predict_label(project, new), predict_proba(project, new))).one()
        print(f"core a new customer: label={label!r} proba={[round(p, 3) for p in proba]}")


if __name__ == "__main__":
    main(*sys.argv[1:])
