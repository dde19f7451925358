"""The Python behind the pgmodels_pgml companion extension (PostgresML's ``pgml`` schema)."""
