"""The Open Inference Protocol v2 over gRPC: ``inference.GRPCInferenceService``.

The stubs are compiled from oip_v2.proto (the protocol's own names and field numbers)
by grpcio-tools when the server starts, so they always match the installed protobuf
runtime. Each worker process serves gRPC on the same port (SO_REUSEPORT), next to its
HTTP server, over the same Backend.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import grpc

from .. import __version__
from . import metrics
from .core import Backend
from .errors import ProxyError
from .rest import printable
from .tensors import decode_grpc, encode_grpc

log = logging.getLogger("pgmodels.serve")
_compiled = None


def compiled():
    """(messages module, services module) of oip_v2.proto."""
    global _compiled
    if _compiled is None:
        here = str(Path(__file__).parent)
        sys.path.insert(0, here)
        try:
            _compiled = grpc.protos_and_services("oip_v2.proto")
        finally:
            sys.path.remove(here)
    return _compiled


def make_servicer(backend: Backend):
    pb, services = compiled()

    class Servicer(services.GRPCInferenceServiceServicer):
        async def _call(self, context, endpoint: str, model: str, work, needs_role: bool = True):
            started = time.perf_counter()
            code_http, rows, role = 200, 0, None
            try:
                if needs_role:
                    auth = dict(context.invocation_metadata()).get("authorization")
                    role = await backend.role_for(auth)
                result, rows = await work(role)
                return result
            except ProxyError as e:
                code_http = e.status
                log.info("grpc %s model=%s status=%s role=%s error=%r", endpoint, printable(model), e.grpc_code,
                         role or "-", e.message)
                await context.abort(getattr(grpc.StatusCode, e.grpc_code), e.message)
            except grpc.aio.AbortError:
                raise
            except Exception:  # noqa: BLE001 - the edge: log it, answer without a traceback
                code_http = 500
                log.exception("unexpected error on gRPC %s", endpoint)
                await context.abort(grpc.StatusCode.INTERNAL, "internal error in pgmodels serve; see its log")
            finally:
                metrics.observe(model if code_http not in (401, 404) and code_http < 500 else "",
                                "grpc_" + endpoint, code_http, started, rows)

        async def ServerLive(self, request, context):
            async def work(role):
                return pb.ServerLiveResponse(live=True), 0
            return await self._call(context, "live", "", work, needs_role=False)

        async def ServerReady(self, request, context):
            async def work(role):
                return pb.ServerReadyResponse(ready=await backend.ready()), 0
            return await self._call(context, "ready", "", work, needs_role=False)

        async def ServerMetadata(self, request, context):
            async def work(role):
                return pb.ServerMetadataResponse(name="pgmodels", version=__version__,
                                                 extensions=["features_by_key"]), 0
            return await self._call(context, "server", "", work, needs_role=False)

        async def ModelReady(self, request, context):
            async def work(role):
                try:
                    await backend.model_ready(role, request.name, request.version or None)
                    return pb.ModelReadyResponse(ready=True), 0
                except ProxyError as e:
                    if e.status in (404, 409):
                        return pb.ModelReadyResponse(ready=False), 0
                    raise
            return await self._call(context, "model_ready", request.name, work)

        async def ModelMetadata(self, request, context):
            async def work(role):
                meta = await backend.metadata(role, request.name, request.version or None)
                resp = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"],
                                                platform=meta["platform"])
                for t in meta["inputs"]:
                    resp.inputs.add(**t)
                for t in meta["outputs"]:
                    resp.outputs.add(**t)
                return resp, 0
            return await self._call(context, "metadata", request.name, work)

        async def ModelInfer(self, request, context):
            async def work(role):
                (await backend.model(role, request.model_name)).version(request.model_version or None)
                answer = await backend.infer(role, decode_grpc(request), transport="grpc")
                log.info("grpc infer model=%s version=%s rows=%d role=%s id=%s", answer.model, answer.version,
                         answer.outputs[0][2][0], role, printable(answer.id))
                return encode_grpc(answer, pb), answer.outputs[0][2][0]
            return await self._call(context, "infer", request.model_name, work)

    return Servicer()


async def start(backend: Backend, host: str, port: int, max_message: int):
    _, services = compiled()
    from .nul import grpc_interceptor

    # a NUL in the metadata or a string field is refused before any method runs (proxy/nul.py)
    server = grpc.aio.server(interceptors=[grpc_interceptor()],
                             options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", max_message),
                                      ("grpc.max_send_message_length", max_message)])
    services.add_GRPCInferenceServiceServicer_to_server(make_servicer(backend), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server
