"""The OpenAPI description of the REST endpoints, served at /openapi.json."""

from __future__ import annotations

from .. import __version__

_ERROR = {"description": "the Open Inference Protocol's error body",
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_AUTH = [{"bearer": []}]


def _get(summary: str, schema: str, auth: bool = True) -> dict:
    op = {"summary": summary, "responses": {
        "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}},
        "default": _ERROR}}
    if auth:
        op["security"] = _AUTH
    return {"get": op}


def _infer(summary: str) -> dict:
    return {"post": {
        "summary": summary, "security": _AUTH,
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/InferRequest"}}}},
        "responses": {"200": {"description": "the predictions", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/InferResponse"}}}}, "default": _ERROR}}}


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "the project"}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "the project's model version"}
_TENSOR = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string", "enum": ["BOOL", "INT8", "INT16", "INT32", "INT64",
                                                                       "UINT8", "UINT16", "UINT32", "UINT64",
                                                                       "FP32", "FP64", "BYTES"]},
    "shape": {"type": "array", "items": {"type": "integer"}}, "parameters": {"type": "object"},
    "data": {"type": "array", "items": {}}}}


def openapi() -> dict:
    paths = {
        "/v2/health/live": _get("the server is live", "Live", auth=False),
        "/v2/health/ready": _get("the server and its database are ready", "Ready", auth=False),
        "/v2": _get("server metadata", "ServerMetadata", auth=False),
        "/v2/models/{name}": _get("model metadata: versions, platform, inputs, outputs", "ModelMetadata"),
        "/v2/models/{name}/versions/{version}": _get("metadata of one model version", "ModelMetadata"),
        "/v2/models/{name}/ready": _get("the project has a deployed model the caller may use", "ModelReady"),
        "/v2/models/{name}/versions/{version}/ready": _get("the model version exists for the caller", "ModelReady"),
        "/v2/models/{name}/infer": _infer("predictions of the deployed model"),
        "/v2/models/{name}/versions/{version}/infer": _infer("predictions of one model version"),
    }
    for path, item in paths.items():
        params = ([_NAME] if "{name}" in path else []) + ([_VERSION] if "{version}" in path else [])
        for op in item.values():
            if params:
                op["parameters"] = params
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}}
    schemas = {
        "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
        "ServerMetadata": {"type": "object", "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                                            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "ModelMetadata": {"type": "object", "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"}, "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}},
            "parameters": {"type": "object"}}},
        "Tensor": _TENSOR,
        "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"keys": {
                "type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                "description": "keys of the project's feature source, instead of (or under) features"}}},
            "inputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"},
                       "description": "one [batch, n_features] tensor, or one [batch] tensor per feature named "
                                      "after it (BYTES for text), and/or a 'key' tensor"},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {"name": {
                "type": "string", "enum": ["predict", "probabilities", "label"]}}}}}},
        "InferResponse": {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"$ref": "#/components/schemas/Tensor"}}}},
    }
    return {"openapi": "3.0.3",
            "info": {"title": "pgmodels serve: the Open Inference Protocol v2", "version": __version__},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                          "description": "a token from create_api_token()"}}}}
