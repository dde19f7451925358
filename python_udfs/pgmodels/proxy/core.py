"""The database side of the inference server: tokens, metadata and inference, each run
through the connection pool as the requesting role.

Every request runs in one transaction that starts with ``set_config('role', <role>,
true)`` (SET LOCAL ROLE) and ends with COMMIT, sent as one pipeline: the client sends
no SQL, so nothing can RESET the role, and predict() checks the grants of that role.
A batch is scored by one statement; the same statement reads the deployed version, so
the version reported is the one that answered.
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from .errors import ProxyError, bad_request, from_db_error
from .tensors import InferAnswer, InferRequest, Tensor

CACHE_SECONDS = 1.0  # tokens and metadata: a revoked token stops working within this
_KEY_TYPE = re.compile(r"^[a-z0-9_ .\"(),\[\]]+$")


@dataclass
class Settings:
    dsn: str
    anonymous_role: str | None = None
    pool_min: int = 1
    pool_max: int = 8
    pool_timeout: float = 3.0
    statement_timeout_ms: int = 10000
    max_body_bytes: int = 8 * 1024 * 1024
    body_timeout: float = 10.0
    grpc_port: int | None = None
    host: str = "127.0.0.1"

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
        return ["predict", "probabilities", "label"] if self.task == "classification" else ["predict"]


class Backend:
    def __init__(self, settings: Settings):
        self.s = settings
        self.pool = AsyncConnectionPool(
            settings.dsn, min_size=settings.pool_min, max_size=settings.pool_max, open=False,
            kwargs={"autocommit": True, "application_name": "pgmodels serve"}, reconnect_timeout=0)
        self._tokens: dict[str, tuple[str | None, float]] = {}
        self._models: dict[tuple[str, str], tuple[Model, float]] = {}

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close(timeout=5)

    # -- running SQL as a role ------------------------------------------------------
    async def run(self, role: str | None, statement, params=None) -> list[tuple]:
        try:
            async with self.pool.connection(timeout=self.s.pool_timeout) as conn:
                async with conn.pipeline():
                    async with conn.transaction():
                        if role is not None:
                            await conn.execute("SELECT pg_catalog.set_config('role', %s, true), "
                                               "pg_catalog.set_config('statement_timeout', %s, true)",
                                               [role, str(self.s.statement_timeout_ms)])
                        cur = await conn.execute(statement, params)
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
        return self.pool.get_stats()

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
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit is None or hit[1] < now:
            rows = await self.run(None, "SELECT pgmodels._api_token_role(%s)", [token])
            if len(self._tokens) > 10000:
                self._tokens.clear()
            hit = (rows[0][0], now + CACHE_SECONDS)
            self._tokens[token] = hit
        if hit[0] is None:
            raise ProxyError(401, "invalid or revoked token")
        return hit[0]

    # -- the catalog ----------------------------------------------------------------
    async def model(self, role: str, name: str) -> Model:
        now = time.monotonic()
        hit = self._models.get((role, name))
        if hit is not None and hit[1] >= now:
            return hit[0]
        rows = await self.run(role, "SELECT pgmodels._model_metadata(%s, pgmodels._credential()), "
                                    "(SELECT s.key_type FROM pgmodels.project_feature_sources s WHERE s.project = %s)",
                              [name, name])
        meta, key_type = rows[0]
        model = Model(meta["name"], meta["task"], meta["deployed"], meta["versions"], meta["feature_source"], key_type)
        if len(self._models) > 10000:
            self._models.clear()
        self._models[(role, name)] = (model, now + CACHE_SECONDS)
        return model

    async def metadata(self, role: str, name: str, version: str | None) -> dict:
        model = await self.model(role, name)
        v = model.version(version) if version is not None or model.deployed is not None else None
        inputs, runtime = [], None
        if v is not None:
            runtime = v["runtime"]
            inputs = [{"name": f, "datatype": _datatype(t), "shape": [-1]}
                      for f, t in zip(v["feature_names"], v["feature_types"])]
        outputs = [{"name": "predict", "datatype": "FP32", "shape": [-1]}]
        if model.task == "classification":
            n_labels = len(v["labels"]) if v is not None and v["labels"] else -1
            outputs += [{"name": "probabilities", "datatype": "FP32", "shape": [-1, n_labels]},
                        {"name": "label", "datatype": "BYTES", "shape": [-1]}]
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
    async def infer(self, role: str, req: InferRequest) -> InferAnswer:
        model = await self.model(role, req.model)
        v = model.version(req.version)
        wanted = req.outputs or model.outputs()
        unknown = [o for o in wanted if o not in model.outputs()]
        if unknown:
            raise bad_request(f"model \"{model.name}\" has no output \"{unknown[0]}\"; it has "
                              + ", ".join(model.outputs()))
        statement, params, n_rows, keys = _statement(model, v, req, wanted)
        rows = await self.run(role, statement, params)
        if len(rows) != n_rows:
            raise bad_request(f"the key column of the feature source of \"{model.name}\" is not unique")
        if keys is not None:
            missing = [keys[i] for i, r in enumerate(rows) if not r[1]]
            if missing:
                raise ProxyError(404, f"no features stored under key {missing[0]} for model \"{model.name}\"")
        version = rows[0][0] if rows and rows[0][0] is not None else v["version"]
        outputs = []
        for j, name in enumerate(wanted):
            column = [r[2 + j] for r in rows]
            if any(c is None for c in column):
                raise bad_request("a row got no prediction: its features are NULL")
            if name == "predict":
                outputs.append(("predict", "FP32", [n_rows], [float(c) for c in column]))
            elif name == "probabilities":
                width = len(column[0]) if column else 0
                outputs.append(("probabilities", "FP32", [n_rows, width], [float(p) for c in column for p in c]))
            else:
                outputs.append(("label", "BYTES", [n_rows], list(column)))
        return InferAnswer(model.name, int(version), req.id, outputs)


def _datatype(feature_type: str) -> str:
    return "BYTES" if feature_type == "text" else "FP32"


_FUNCTIONS = {"predict": "predict", "probabilities": "predict_proba", "label": "predict_label"}


def _statement(model: Model, v: dict, req: InferRequest, wanted: list[str]):
    """(statement, params, rows expected, keys or None) scoring the whole request at once."""
    names, types = v["feature_names"], v["feature_types"]
    by_name = {t.name: t for t in req.inputs if t.name in names}
    keys = _keys(req, names)
    others = [t for t in req.inputs if t.name not in by_name and not (t.name in ("key", "keys") and keys is not None)]
    params = {"project": model.name, "model_id": v["model_id"], "version": v["version"]}
    source = None
    if others:
        if len(others) > 1 or by_name or keys is not None:
            raise bad_request(f"unknown input \"{others[-1].name}\": send one [batch, {len(names)}] tensor, or one "
                              f"tensor per feature named {', '.join(names)}")
        n_rows = _matrix(others[0], names, types, params)
        mode = "matrix"
        params.update(n=len(names), rows=n_rows)
    else:
        n_rows = len(keys) if keys is not None else _batch(by_name)
        if keys is None:
            missing = [n for n in names if n not in by_name]
            if missing:
                raise bad_request(f"model \"{model.name}\" needs features {', '.join(missing)}: send them, or send "
                                  "keys of its feature source")
        rows = [{} for _ in range(n_rows)]
        for name, t in by_name.items():
            if _batch({name: t}) != n_rows:
                raise bad_request(f"input \"{name}\" has {_batch({name: t})} rows, the request {n_rows}")
            values = t.data if t.datatype == "BYTES" else t.data.tolist()
            for i, value in enumerate(values):
                rows[i][name] = value
        if keys is None:
            mode = "json"
            params["rows_json"] = json.dumps(rows[0] if n_rows == 1 else rows)
        else:
            fs = model.feature_source
            if fs is None:
                raise bad_request(f"model \"{model.name}\" has no feature source to look keys up in")
            if not model.key_type or not _KEY_TYPE.match(model.key_type):
                raise ProxyError(404, f"the feature source of \"{model.name}\" is gone")
            mode = "keys"
            source = (fs["schema"], fs["relation"], fs["key_column"], model.key_type)
            params.update(keys=keys, rows_json=json.dumps(rows))
    statement = _compose(mode, tuple(wanted), req.version is not None, n_rows == 1, source)
    return statement, params, n_rows, keys


@functools.lru_cache(maxsize=256)
def _compose(mode: str, wanted: tuple, versioned: bool, single: bool, source: tuple | None) -> str:
    """The statement for a kind of request (cached: requests of one kind share one text,
    which psycopg then prepares on each connection)."""
    if versioned:
        target, version = sql.SQL("%(model_id)s::bigint"), sql.SQL("%(version)s::integer")
    else:
        target = sql.SQL("%(project)s::text")
        version = sql.SQL("pgmodels._deployed_version(%(project)s, pgmodels._credential())")
    found, tail = sql.SQL("true"), sql.SQL("")
    if mode == "matrix" and single:
        feats = sql.SQL("%(x)s::float8[]")
    elif mode == "matrix":
        feats = sql.SQL("(%(x)s::float8[])[(i - 1) * %(n)s + 1:i * %(n)s]")
        tail = sql.SQL(" FROM generate_series(1, %(rows)s) AS i ORDER BY i")
    elif mode == "json" and single:
        feats = sql.SQL("%(rows_json)s::jsonb")
    elif mode == "json":
        feats = sql.SQL("r.f")
        tail = sql.SQL(" FROM jsonb_array_elements(%(rows_json)s::jsonb) WITH ORDINALITY AS r(f, i) ORDER BY r.i")
    else:
        schema, relation, key_column, key_type = source
        key = sql.Identifier("s", key_column)
        feats = sql.SQL("(pg_catalog.to_jsonb(s) || r.f)")
        found = sql.SQL("{} IS NOT NULL").format(key)
        tail = sql.SQL(" FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS k(key, i) "
                       "JOIN jsonb_array_elements(%(rows_json)s::jsonb) WITH ORDINALITY AS r(f, i) ON r.i = k.i "
                       "LEFT JOIN {} AS s ON {} = k.key::{} ORDER BY k.i").format(
            sql.Identifier(schema, relation), key, sql.SQL(key_type))
    calls = [sql.SQL("CASE WHEN {found} THEN {fn}({target}, {feats}) END").format(
        found=found, fn=sql.Identifier(_FUNCTIONS[w]), target=target, feats=feats) for w in wanted]
    return sql.SQL("SELECT {version}, {found}, {calls}{tail}").format(
        version=version, found=found, calls=sql.SQL(", ").join(calls), tail=tail).as_string(None)


def _keys(req: InferRequest, names: list[str]) -> list[str] | None:
    keys = req.parameters.get("keys")
    if isinstance(keys, str):  # gRPC parameters are scalars: a JSON list in a string
        try:
            keys = json.loads(keys)
        except ValueError:
            raise bad_request("the \"keys\" parameter must be a JSON list") from None
    if keys is not None:
        if not isinstance(keys, list) or not keys or not all(
                isinstance(k, (int, str)) and not isinstance(k, bool) for k in keys):
            raise bad_request("\"keys\" must be a non-empty list of numbers or strings")
        return [str(k) for k in keys]
    for t in req.inputs:
        if t.name in ("key", "keys") and t.name not in names:
            if t.datatype not in ("BYTES", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"):
                raise bad_request(f"input \"{t.name}\" must be of an integer datatype or BYTES")
            values = t.data if t.datatype == "BYTES" else t.data.tolist()
            if not values:
                raise bad_request(f"input \"{t.name}\" holds no keys")
            return [str(k) for k in values]
    return None


def _batch(tensors: dict[str, Tensor]) -> int:
    sizes = set()
    for name, t in tensors.items():
        if len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1):
            sizes.add(t.shape[0])
        else:
            raise bad_request(f"input \"{name}\" must have shape [batch] or [batch, 1], not {t.shape}")
    if len(sizes) != 1:
        raise bad_request("the feature inputs have different batch sizes")
    n = sizes.pop()
    if n == 0:
        raise bad_request("the batch is empty")
    return n


def _matrix(t: Tensor, names: list[str], types: list[str], params: dict) -> int:
    if any(kind == "text" for kind in types):
        raise bad_request(f"this model has text features ({', '.join(n for n, k in zip(names, types) if k == 'text')}): "
                          "send one tensor per feature, named after it, with BYTES for text")
    if t.datatype == "BYTES":
        raise bad_request(f"input \"{t.name}\": a [batch, n_features] tensor must be numeric")
    if len(t.shape) == 1:
        t.shape = [1, t.shape[0]]
    if len(t.shape) != 2:
        raise bad_request(f"input \"{t.name}\" must have shape [batch, {len(names)}], not {t.shape}")
    if t.shape[1] != len(names):
        raise bad_request(f"input \"{t.name}\" has {t.shape[1]} features, the model takes {len(names)} "
                          f"({', '.join(names)})")
    if t.shape[0] == 0:
        raise bad_request("the batch is empty")
    params["x"] = t.data.astype("float64").tolist()
    return t.shape[0]
