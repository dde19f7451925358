"""Batch deployment: scheduled scoring of a table into a prediction table, by key.

- ``jobs.py``       create_batch_job(): checks, the output table, the catalog row, pg_cron
- ``run.py``        run_batch_job(): the run, a chunk at a time, committing after each
- ``plan.py``       the SQL of a chunk: read, score in one model run, upsert

The catalog and its definer functions are in sql/070_batch_catalog.sql,
sql/071_batch_internal.sql and sql/072_batch.sql; the scoring of a chunk is the
vectorized path in pgmodels.serving.vectorized.
"""
