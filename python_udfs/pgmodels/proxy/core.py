"""The database side of the inference server: tokens, metadata and inference, each run
through the connection pool as the requesting role.

Every request runs as one query string, ``SELECT set_config('role', <role>, true), ...;
<statement>``, which PostgreSQL runs as one transaction: SET LOCAL ROLE for exactly that
statement, and predict() checks the grants of that role. Nothing may RESET the role: the
client sends no SQL, and no function a role wrote runs in the statement (any such
function, run here, could RESET ROLE and act as the server's login role). The statement's
names are pg_catalog's or qualified, under a pinned search path; the one relation of a
role's it reads, a feature source, is read only when reading it runs no such function
(pgmodels._feature_rows). A batch is scored by one statement, which also says which
model version answered."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from psycopg import AsyncClientCursor
from psycopg_pool import AsyncConnectionPool

from .errors import ProxyError, bad_request, from_db_error
from . import binding, metrics, statements
from .batching import Batcher
from .pools import ReadPools
from .requestlog import RequestLog
from .tensors import InferAnswer, InferRequest
from .ttlcache import TtlCache

# The search path too, for the statement: with the session's, a role's schema ("$user")
# or a schema it may create in could hold a function that matches a call better than
# pg_catalog's (unnest(text[]) beats unnest(anyarray)), and it would run here, where the
# role could RESET ROLE to the server's login role. Every name here is pg_catalog's or
# qualified.
_PINNED = "pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)"
_AS_ROLE = ("SELECT pg_catalog.set_config('role', %(_role)s, true), "
            "pg_catalog.set_config('statement_timeout', %(_timeout)s, true), " + _PINNED + "; ")
_AS_SERVER = "SELECT " + _PINNED + "; "
CACHE_SECONDS = 1.0  # tokens and metadata: a revoked token stops working within this


@dataclass
class Settings:
    dsn: str
    anonymous_role: str | None = None
    pool_min: int = 1
    pool_max: int = 8
    pool_timeout: float = 3.0
    statement_timeout_ms: int = 10000

    @property
    def statement_timeout(self) -> str:
        return f"{int(self.statement_timeout_ms)}ms"
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout: float = 10.0
    grpc_port: int | None = None
    host: str = "127.0.0.1"
    log_sample: float = 1.0  # the share of requests written to pgmodels.request_log
    read_dsns: list[str] = field(default_factory=list)  # hot standbys for inference (proxy/pools.py)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        return cls(**json.loads(text))


@dataclass
class Model:
    """What the catalog says about a project, as the requesting role sees it."""
    name: str
    task: str
    deployed: int | None
    versions: list[dict]
    feature_source: dict | None
    key_type: str | None

    def version(self, wanted: str | None) -> dict:
        if wanted is None:
            if self.deployed is None:
                raise ProxyError(409, f"project \"{self.name}\" has no deployed model", sqlstate="55000")
            wanted = str(self.deployed)
        for v in self.versions:
            if str(v["version"]) == wanted:
                return v
        raise ProxyError(404, f"model \"{self.name}\" has no version \"{wanted}\"")

    def outputs(self) -> list[str]:
        return (["predict", "probabilities", "label"] if self.task == "classification" else ["predict"]) \
            + ["contributions"]

    @staticmethod
    def default_outputs(outputs: list[str]) -> list[str]:
        """What a request that names no output gets: everything but the contributions,
        which need the explain privilege and are asked for by name."""
        return [o for o in outputs if o != "contributions"]


class Backend:
    def __init__(self, settings: Settings):
        self.s = settings
        kwargs = {"autocommit": True, "application_name": "pgmodels serve", "cursor_factory": AsyncClientCursor}
        self.pool = AsyncConnectionPool(settings.dsn, min_size=settings.pool_min, max_size=settings.pool_max,
                                        open=False, kwargs=kwargs, reconnect_timeout=0)
        self.reads = ReadPools.make(settings.read_dsns, settings.pool_min, settings.pool_max, kwargs)
        self._tokens = TtlCache(CACHE_SECONDS)  # token -> its role, or None
        self._models = TtlCache(CACHE_SECONDS)  # (role, project) -> Model
        self.batcher = Batcher()
        self.request_log = RequestLog(self, settings.log_sample)

    async def open(self) -> None:
        await self.pool.open(wait=False)
        await self.reads.open()

    async def close(self) -> None:
        await self.reads.close()
        await self.pool.close(timeout=5)

    # -- running SQL as a role ------------------------------------------------------
    async def run(self, role: str | None, statement: str, params: dict | None = None, read: bool = False
                  ) -> list[tuple]:
        """The rows of a statement run as role, in a transaction of its own.

        The role is set with set_config('role', ..., true), SET LOCAL ROLE, in the same
        query string as the statement: PostgreSQL runs the statements of one simple query
        as one transaction, so the role holds for exactly that statement, comes back by
        itself at its end or on an error, and nothing of the client's runs around it.
        One round trip; the parameters are bound on this side, quoted as literals
        exactly as psycopg's ClientCursor quotes them (binding.py, which writes the
        common ones itself). A read (inference, metadata) goes to the read DSNs when there
        are any (proxy/pools.py); everything else to the primary."""
        if read and self.reads:
            return await self.reads.run(self._run_on, self.pool, role, statement, params)
        return await self._run_on(self.pool, role, statement, params)

    async def _run_on(self, pool, role, statement, params, timeout: float | None = None) -> list[tuple]:
        try:
            async with pool.connection(timeout=timeout or self.s.pool_timeout) as conn:
                cur = conn.cursor()
                if role is None:
                    await cur.execute(binding.bind(conn, _AS_SERVER + statement, params))
                else:
                    await cur.execute(binding.bind(conn, _AS_ROLE + statement, {
                        **(params or {}), "_role": role, "_timeout": self.s.statement_timeout}))
                cur.nextset()
                return await cur.fetchall()
        except ProxyError:
            raise
        except Exception as e:  # noqa: BLE001 - every database failure becomes a status
            import psycopg
            from psycopg_pool import PoolTimeout

            if isinstance(e, (psycopg.Error, PoolTimeout)):
                raise from_db_error(e) from None
            raise

    async def ready(self) -> bool:
        try:
            await self.run(None, "SELECT 1")
            return True
        except ProxyError:
            return False

    def pool_stats(self) -> dict:
        return {**self.pool.get_stats(), **({"read_pools": self.reads.stats()} if self.reads else {})}

    # -- who is asking --------------------------------------------------------------
    async def role_for(self, authorization: str | None) -> str:
        """The role a request runs as: its bearer token's, or the anonymous role."""
        if not authorization:
            if self.s.anonymous_role:
                return self.s.anonymous_role
            raise ProxyError(401, "a bearer token is required (Authorization: Bearer <token>)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 512:
            raise ProxyError(401, "the Authorization header must be \"Bearer <token>\"")
        async def fetch():
            return (await self.run(None, "SELECT pgmodels._api_token_role(%(token)s)", {"token": token}))[0][0]

        role = await self._tokens.get(token, fetch)
        if role is None:
            raise ProxyError(401, "invalid or revoked token")
        return role

    # -- the catalog ----------------------------------------------------------------
    async def model(self, role: str, name: str) -> Model:
        async def fetch():
            rows = await self.run(role, "SELECT pgmodels._model_metadata(%(name)s, pgmodels._credential()), "
                                        "(SELECT s.key_type FROM pgmodels.project_feature_sources s "
                                        "WHERE s.project = %(name)s)", {"name": name}, read=True)
            meta, key_type = rows[0]
            return Model(meta["name"], meta["task"], meta["deployed"], meta["versions"], meta["feature_source"],
                         key_type)

        return await self._models.get((role, name), fetch)

    async def metadata(self, role: str, name: str, version: str | None) -> dict:
        model = await self.model(role, name)
        v = model.version(version) if version is not None or model.deployed is not None else None
        inputs, runtime = [], None
        if v is not None:
            runtime = v["runtime"]
            sql_types = v.get("column_types") or {}
            inputs = [{"name": f, "datatype": datatype(t, sql_types.get(f)), "shape": [-1]}
                      for f, t in zip(v["feature_names"], v["feature_types"])]
        outputs = [{"name": "predict", "datatype": "FP32", "shape": [-1]}]
        if model.task == "classification":
            n_labels = len(v["labels"]) if v is not None and v["labels"] else -1
            outputs += [{"name": "probabilities", "datatype": "FP32", "shape": [-1, n_labels]},
                        {"name": "label", "datatype": "BYTES", "shape": [-1]}]
        # per row, each feature's contribution to the raw output, and the base as a parameter
        # (asked for by name; needs the explain privilege)
        outputs.append({"name": "contributions", "datatype": "FP32", "shape": [-1, len(inputs) if v else -1]})
        meta = {"name": model.name, "versions": [str(x["version"]) for x in model.versions],
                "platform": "onnxruntime_onnx" if runtime == "onnx" else f"pgmodels_{runtime or 'none'}",
                "inputs": inputs, "outputs": outputs,
                "parameters": {"task": model.task, "deployed_version": model.deployed,
                               "version": v["version"] if v else None,
                               "labels": v["labels"] if v else None,
                               "feature_source": model.feature_source}}
        return meta

    async def model_ready(self, role: str, name: str, version: str | None) -> bool:
        (await self.model(role, name)).version(version)
        return True

    # -- inference ------------------------------------------------------------------
    async def infer(self, role: str, req: InferRequest, transport: str = "http") -> InferAnswer:
        """Answer one request, and log it (sampled) with the model version that answered."""
        start = time.perf_counter()
        try:
            answer, model_id = await self._infer(role, req)
        except ProxyError as e:
            self.request_log.record(project=req.model, model_id=None, version=None, role=role, transport=transport,
                                    request_id=req.id, rows=None, status=e.status, error=e.message,
                                    latency_s=time.perf_counter() - start)
            raise
        self.request_log.record(project=req.model, model_id=model_id, version=answer.version, role=role,
                                transport=transport, request_id=req.id, rows=_rows(answer), status=200, error=None,
                                latency_s=time.perf_counter() - start)
        return answer

    async def _infer(self, role: str, req: InferRequest) -> tuple[InferAnswer, int | None]:
        model = await self.model(role, req.model)
        v = model.version(req.version)
        wanted = req.outputs or model.default_outputs(model.outputs())
        unknown = [o for o in wanted if o not in model.outputs()]
        if unknown:
            raise bad_request(f"model \"{model.name}\" has no output \"{unknown[0]}\"; it has "
                              + ", ".join(model.outputs()))
        work = statements.plan(model, v, req)
        versioned, wanted = req.version is not None, tuple(wanted)

        async def execute(plans):
            statement, params = statements.combine(plans, model.name, v, versioned, wanted)
            metrics.BATCHED.observe(len(plans))
            return statements.split(plans, await self.run(role, statement, params, read=True), wanted)

        rows = await self.batcher.submit((role, model.name, v["model_id"], versioned, wanted, work.kind()), work,
                                         execute)
        n_rows = work.n_rows
        if work.keys is not None:
            missing = [work.keys[i] for i, r in enumerate(rows) if not r[1]]
            if missing:
                raise ProxyError(404, f"no features stored under key {missing[0]} for model \"{model.name}\"")
        outputs, parameters = [], {}
        version, split = answered_version([r[0] for r in rows if r[1] and r[0] is not None], v["version"])
        if split is not None:
            parameters[None] = {"model_versions": split}
        for j, name in enumerate(wanted):
            column = [r[2 + j] for r in rows]
            if any(c is None for c in column):
                raise bad_request("a row got no prediction: its features are NULL")
            if name == "predict":
                outputs.append(("predict", "FP32", [n_rows], [float(c) for c in column]))
            elif name == "probabilities":
                width = len(column[0]) if column else 0
                outputs.append(("probabilities", "FP32", [n_rows, width], [float(p) for c in column for p in c]))
            elif name == "contributions":
                data, parameters["contributions"] = contributions_tensor(column, v["feature_names"], top_n(req))
                outputs.append(("contributions", "FP32", [n_rows, len(v["feature_names"])], data))
            else:
                outputs.append(("label", "BYTES", [n_rows], list(column)))
        answered = next((x["model_id"] for x in model.versions if str(x["version"]) == str(version)), v["model_id"])
        return InferAnswer(model.name, int(version), req.id, outputs, parameters), answered


def answered_version(versions: list, deployed) -> tuple[int, list | None]:
    """The version a response names, and the per-row versions when there are two. A
    project's active canary may answer some rows of one request with its candidate and
    the others with the champion (rows with different routing keys, or without one):
    then model_version is the candidate's (the version that is not the deployed one; a
    client watching a rollout wants to know its request reached the candidate), and
    the response's parameters.model_versions give each row's."""
    distinct = set(versions)
    if not distinct:
        return int(deployed), None
    if len(distinct) == 1:
        return int(distinct.pop()), None
    others = sorted(x for x in distinct if str(x) != str(deployed))
    return int(others[-1] if others else max(distinct)), [int(x) for x in versions]


def top_n(req: InferRequest) -> int | None:
    """The request's top_n parameter: keep each row's top_n contributions by size."""
    value = req.parameters.get("top_n")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_request("the \"top_n\" parameter must be a whole number of at least 1")
    return value


def contributions_tensor(column: list[dict], names: list[str], n: int | None) -> tuple[list[float], dict]:
    """The contributions output: per row, each feature's contribution in the model's
    feature order (with top_n, those outside a row's top_n are 0 and their sum is that
    row's "other"), and the base per row (and the feature names) as parameters."""
    data, base, other = [], [], []
    for doc in column:
        row = [float(doc.get(f, 0.0)) for f in names]
        if n is not None and n < len(names):
            keep = set(sorted(range(len(names)), key=lambda j: (-abs(row[j]), j))[:n])
            other.append(sum(row[j] for j in range(len(names)) if j not in keep))
            row = [row[j] if j in keep else 0.0 for j in range(len(names))]
        elif n is not None:
            other.append(0.0)
        data += row
        base.append(float(doc["(base)"]))
    params = {"base": base, "features": list(names)}
    if n is not None:
        params["other"] = other
    return data, params


def _rows(answer: InferAnswer) -> int | None:
    return answer.outputs[0][2][0] if answer.outputs and answer.outputs[0][2] else None


# The Open Inference Protocol datatype a feature is advertised as: its column's own SQL
# type where training recorded it (0.3.0), else FP32 for numbers.
_DATATYPES = {"smallint": "INT16", "integer": "INT32", "bigint": "INT64", "boolean": "BOOL", "real": "FP32",
              "double precision": "FP64", "numeric": "FP64"}


def datatype(feature_type: str, sql_type: str | None) -> str:
    if feature_type == "text":
        return "BYTES"
    return _DATATYPES.get(sql_type or "", "FP32")
