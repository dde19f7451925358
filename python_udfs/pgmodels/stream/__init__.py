"""Streaming deployment: rows inserted into a table are events; consumers score them.

- ``consumers.py``  add_consumer(): checks the events can feed the model, the output table
- ``process.py``    process_stream(): a consumer's next events, scored in one model run
- ``worker.py``     ``pgmodels stream work``: LISTEN, process until nothing is pending, wait

The log, the positions and the catalog are SQL: sql/075_stream_catalog.sql,
sql/076_stream_internal.sql and sql/077_stream.sql.
"""
