"""pgmodels: machine-learning models as PostgreSQL rows.

The package is imported inside the PostgreSQL server by the extension's PL/Python
functions, and outside it by the ``pgmodels`` command-line tool. Importing the package
itself imports nothing heavy: serving must not pay for scikit-learn or xgboost.

Where things live:

- ``training/``  train(): read the relation, fit, convert to ONNX, store a version
- ``serving/``   predict() and friends: the per-backend model cache and onnxruntime
- ``catalog/``   deploy(), import_onnx(), export_onnx(): the catalog writes
- ``cli/``       the ``pgmodels`` command: embedded cluster, install, doctor
"""

from ._version import __version__

__all__ = ["__version__"]
