"""Serving: predict(), predict_proba(), predict_label() and predict_batch().

- ``predict.py``  the functions the SQL bodies call
- ``vectorized.py`` many rows in one model run: predict_batch and batch jobs' chunks
- ``cache.py``    the per-backend model cache and the per-statement deploy check
- ``runtime.py``  loading an artifact (onnxruntime, or a native format that runs no code)
- ``inputs.py``   turning SQL arrays, rows and jsonb into model inputs, with the checks
- ``guard.py``    onnxruntime runs that statement_timeout and pg_cancel_backend stop

The serving path imports numpy and onnxruntime only: never scikit-learn or xgboost,
which a cold backend would pay for on its first predict.
"""
