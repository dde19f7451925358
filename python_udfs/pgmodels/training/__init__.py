"""Training: fit a scikit-learn or XGBoost pipeline on rows read from a table.

Pure Python, no database: the SQL side reads the relation into
:class:`~pgmodels.training.fit.Column` lists and calls
:func:`~pgmodels.training.fit.train_model`, which returns a
:class:`~pgmodels.training.fit.TrainedModel` holding an ONNX graph (or, when conversion
is impossible, a native artifact) plus metrics and the parameters used.

- ``algorithms``  PostgresML algorithm names -> estimators, hyperparameter checks
- ``preprocess``  per-column encode / impute / scale -> a ColumnTransformer
- ``split``       test_size and test_sampling -> train and test row indices
- ``search``      grid and random hyperparameter search
- ``metrics``     test-split scores computed with the fitted native pipeline
- ``convert``     ONNX conversion, verification against the native pipeline, fallback
- ``native``      the fallback formats (XGBoost UBJ, skops) and their safe loader
- ``fit``         train_model(): the orchestration

Importing this package may import scikit-learn; serving never imports it except to
load a model that had to fall back to a native format.
"""
