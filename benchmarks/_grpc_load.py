"""The gRPC load generator of bench_proxy.py: N concurrent clients on one HTTP/2 channel
each, calling inference.GRPCInferenceService/ModelInfer with the same one-row request back
to back (a closed loop) for a fixed time; prints the same JSON as _proxy_load.py.

The request is built once with tritonclient's protobuf classes and sent as bytes (grpc.aio
with identity serializers), so the client spends no CPU building messages; a response is
checked for its first output only. Run in its own process:

    python benchmarks/_grpc_load.py --target 127.0.0.1:8081 --model m --row 0.1,0.2,... \
        --token pgm_... --clients 16 --seconds 10 --warmup 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import grpc
from tritonclient.grpc import service_pb2

from _proxy_load import summarize  # the HTTP generator's numbers, the same way

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def request_bytes(model: str, row: list[float]) -> bytes:
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, len(row)])
    tensor.contents.fp32_contents.extend(row)
    for name in ("predict", "probabilities"):
        request.outputs.add(name=name)
    return request.SerializeToString()


async def _client(target: str, body: bytes, metadata, until: float, warm_until: float, out: list, errors: list):
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        while True:
            started = time.perf_counter()
            if started >= until:
                return
            try:
                answer = await call(body, metadata=metadata)
                ok = service_pb2.ModelInferResponse.FromString(answer).outputs[0].name == "predict"
            except grpc.aio.AioRpcError as e:
                ok = False
                status = e.code().name
            else:
                status = "OK" if ok else "WRONG"
            done = time.perf_counter()
            if started >= warm_until:
                out.append(done - started)
                if not ok:
                    errors.append(status)


async def run(target: str, model: str, row: list[float], token: str, clients: int, seconds: float,
              warmup: float) -> dict:
    body = request_bytes(model, row)
    metadata = (("authorization", f"Bearer {token}"),)
    start = time.perf_counter()
    warm_until, until = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    errors: list[str] = []
    await asyncio.gather(*(_client(target, body, metadata, until, warm_until, latencies, errors)
                           for _ in range(clients)))
    return summarize(latencies, errors, seconds, clients)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="host:port of the gRPC server")
    p.add_argument("--model", required=True)
    p.add_argument("--row", required=True, help="the features, comma-separated")
    p.add_argument("--token", required=True)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    args = p.parse_args()
    row = [float(v) for v in args.row.split(",")]
    print(json.dumps(asyncio.run(run(args.target, args.model, row, args.token, args.clients, args.seconds,
                                     args.warmup))))


if __name__ == "__main__":
    main()
