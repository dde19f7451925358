"""Baseline (b) of bench_proxy.py, what a careful engineer would write: FastAPI on uvicorn
with the same number of worker processes as pgmodels serve, the ONNX model in-process
(onnxruntime, one intra-op thread per worker), features fetched by key from PostgreSQL
through a psycopg async pool.

    python benchmarks/_proxy_fastapi.py MODEL.onnx DSN PORT WORKERS

It runs on the same uvicorn protocol as pgmodels serve (TCP_NODELAY in every worker: without
it, uvicorn's worker processes wait 40 ms for delayed ACKs), so the servers differ only in
what they do per request.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

QUERY = "SELECT f1, f2, f3, f4, f5, f6, f7, f8 FROM pgmodels_bench.features WHERE id = %s"


class Request(BaseModel):
    key: int


def create_app() -> FastAPI:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
    pool = AsyncConnectionPool(os.environ["BENCH_DSN"], min_size=1, max_size=8, open=False,
                               kwargs={"autocommit": True})

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/predict")
    async def predict(req: Request):
        async with pool.connection() as conn:
            row = await (await conn.execute(QUERY, [req.key])).fetchone()
        if row is None:
            raise HTTPException(404, "no such key")
        label, proba = session.run(None, {"X": np.asarray([row], dtype=np.float32)})
        return {"predict": int(label[0]), "probabilities": [float(p) for p in proba[0]]}

    return app


if __name__ == "__main__":
    import uvicorn

    from pgmodels.proxy.protocol import NoDelayProtocol

    os.environ["BENCH_ONNX"], os.environ["BENCH_DSN"] = sys.argv[1], sys.argv[2]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    uvicorn.run("_proxy_fastapi:create_app", factory=True, host="127.0.0.1", port=int(sys.argv[3]),
                workers=int(sys.argv[4]), http=NoDelayProtocol, log_level="warning", access_log=False)
