"""The catalog's Python side: importing ONNX models trained elsewhere.

Deploying and exporting are plain SQL (sql/030_catalog_writes.sql, sql/050_onnx.sql);
storing a model version is pgmodels._store_model, shared with train().
"""
