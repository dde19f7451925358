"""Baseline (a) of bench_proxy.py, the seed's service: Flask's development server (as the
tutorial runs it, threaded), the XGBoost model in-process loaded from its native format
(UBJ, not pickle), features sent in the request.

    python benchmarks/_proxy_flask.py MODEL.ubj PORT
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import xgboost
from flask import Flask, jsonify, request

model = xgboost.XGBClassifier()
model.load_model(sys.argv[1])
app = Flask(__name__)


@app.post("/predict")
def predict():
    features = np.asarray([request.get_json()["features"]], dtype=np.float32)
    proba = model.predict_proba(features)[0]
    return jsonify({"predict": int(np.argmax(proba)), "probabilities": proba.tolist()})


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log, like the other servers
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
