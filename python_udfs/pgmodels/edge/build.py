"""The bundle export_bundle() returns: a zip archive of manifest.json, model.onnx and
manifest.sig (see pgmodels_edge.bundle for the reader every device uses).

Built inside the server by pgmodels._edge_build, which only the definer function
pgmodels._export_bundle calls, after checking the caller's export privilege and the
artifact's sha256: the signing key never leaves the database server, and nobody can have
it sign anything but a manifest built here from the catalog. The manifest is
deterministic (no timestamps but the model's own), so the same model gives the same
bundle bytes, and Ed25519 signatures are deterministic too.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile

from .. import __version__
from .._plpy import udf
from ..errors import DATA_CORRUPTED, INVALID_PARAMETER_VALUE, PgmodelsError
from ..serving.runtime import OnnxEngine, check_self_contained
from . import graph, optimize
from .signer import ed25519 as _ed25519

ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed, so that equal bundles are equal bytes


def manifest_for(served: dict, metrics: dict, trained_at: str, artifact: bytes, served_sha: str,
                 zipmap_dropped: bool, max_diff: float, public_key: bytes) -> dict:
    engine = OnnxEngine(artifact, served["feature_names"], served["task"])
    shape = graph.describe(artifact)
    labels = json.loads(served["labels"]) if served.get("labels") else None
    return {
        "format": "pgmodels-edge-bundle/1",
        "project": served["project"], "version": served["version"], "model_id": served["id"],
        "task": served["task"], "trained_at": trained_at,
        "artifact": {"file": "model.onnx", "sha256": hashlib.sha256(artifact).hexdigest(), "bytes": len(artifact),
                     "format": "onnx"},
        "served_sha256": served_sha,
        "features": [{"name": n, "type": t} for n, t in zip(served["feature_names"], served["feature_types"])],
        "nullable": sorted(served.get("nullable") or []),
        "array_features": json.loads(served["array_features"]) if served.get("array_features") else {},
        "inputs": shape["inputs"], "outputs": shape["outputs"],
        "answers": {"label": engine.label_output, "probabilities": engine.proba_output,
                    "value": engine.value_output},
        "labels": labels,
        "metrics": {k: v for k, v in (metrics or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and not k.endswith("_time")},
        "opset": shape["opset"], "ir_version": shape["ir_version"], "min_onnxruntime": shape["min_onnxruntime"],
        "transforms": {"zipmap_dropped": zipmap_dropped, "max_abs_diff": max_diff},
        "signed_by": {"algorithm": "ed25519", "key_id": hashlib.sha256(public_key).hexdigest()[:16]},
        "pgmodels": __version__,
    }


def pack(manifest_bytes: bytes, signature: bytes, artifact: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for name, data in (("manifest.json", manifest_bytes), ("manifest.sig", signature), ("model.onnx", artifact)):
            z.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
    return out.getvalue()


def _plain(served: dict) -> tuple[bytes, bool, float]:
    """The served artifact, checked, with ZipMap outputs turned into tensors."""
    served_artifact = bytes(served["artifact"])
    if hashlib.sha256(served_artifact).digest() != bytes(served["artifact_sha256"]):
        raise PgmodelsError(f"the artifact of model {served['id']} fails its sha256 check", sqlstate=DATA_CORRUPTED)
    check_self_contained(served_artifact, bool(served.get("imported")))
    artifact, dropped = graph.drop_zipmap(served_artifact)
    max_diff = graph.check_same(served_artifact, artifact, served["feature_names"], served["task"]) if dropped else 0.0
    return artifact, dropped, max_diff


def _answers(artifact: bytes, served: dict) -> dict:
    engine = OnnxEngine(artifact, served["feature_names"], served["task"])
    return {"label": engine.label_output, "probabilities": engine.proba_output, "value": engine.value_output}


def build(served: dict, metrics: dict, trained_at: str, seed: bytes, option: str | None = None,
          check_rows: list | None = None, deployment: int | None = None) -> bytes:
    ed25519 = _ed25519()
    artifact, dropped, max_diff = _plain(served)
    public = ed25519.public_key(seed)
    manifest = manifest_for(served, metrics, trained_at, artifact, bytes(served["artifact_sha256"]).hex(),
                            dropped, max_diff, public)
    if deployment is not None:
        # the deployment that made this model current: devices refuse a lower one
        manifest["deployment"] = int(deployment)
    if option is not None:
        smaller = optimize.apply(artifact, option)
        check = optimize.compare(artifact, smaller, check_rows or [], served["feature_names"],
                                 served["feature_types"], manifest["answers"])
        if check["classes_changed"]:
            raise PgmodelsError(f"the {option} option changes predictions of model {served['id']}",
                                detail=f"It changes the class of {check['classes_changed']} of {check['rows']} "
                                       f"check rows (largest probability difference {check['max_abs_diff']:.3g}).",
                                hint="Export without it, or with another option.", sqlstate=INVALID_PARAMETER_VALUE)
        if option != "ort":
            manifest.update({k: v for k, v in graph.describe(smaller).items() if k in ("opset", "ir_version")})
        manifest["artifact"] = {"file": "model.onnx", "sha256": hashlib.sha256(smaller).hexdigest(),
                                "bytes": len(smaller), "format": "ort" if option == "ort" else "onnx"}
        manifest["transforms"]["option"] = {"name": option, **check}
        artifact = smaller
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return pack(manifest_bytes, ed25519.sign(seed, manifest_bytes), artifact)


def _arguments(served: dict | None, check_rows: str | None, metrics: str | None = None) -> tuple[list, dict]:
    """What _export_bundle hands the two cores, checked: they are private, but a superuser
    calling one by hand gets an error in PostgreSQL's words, not an internal one."""
    if not served or any(served.get(k) is None for k in ("id", "artifact", "artifact_sha256", "feature_names",
                                                             "feature_types", "task")):
        raise PgmodelsError("no model to bundle",
                            detail="The edge cores take a model that pgmodels._export_bundle resolved.",
                            hint="Call export_bundle().")
    rows = (json.loads(check_rows) if check_rows else None) or []
    parsed = (json.loads(metrics) if metrics else None) or {}
    if not isinstance(rows, list) or not isinstance(parsed, dict):
        raise PgmodelsError("check rows must be a jsonb array and metrics a jsonb object")
    return rows, parsed


@udf
def edge_build(served: dict, metrics: str | None, trained_at: str, seed: bytes, option: str | None,
               check_rows: str | None, deployment: int | None = None) -> bytes:
    """pgmodels._edge_build: the signed bundle of a model _export_bundle resolved."""
    rows, parsed = _arguments(served, check_rows, metrics)
    if seed is None or len(seed) != 32:
        raise PgmodelsError("the signing key's seed must be 32 bytes")
    return build(served, parsed, trained_at, bytes(seed), option, rows or None, deployment)


@udf
def edge_options(served: dict, check_rows: str | None) -> str:
    """pgmodels._edge_options_report: each size option's size and difference on the check rows."""
    rows, _ = _arguments(served, check_rows)
    artifact, _, _ = _plain(served)
    return json.dumps(optimize.report(artifact, rows, served["feature_names"], served["feature_types"],
                                      _answers(artifact, served)))


@udf
def new_key() -> list:
    """pgmodels._edge_new_key: a fresh Ed25519 key from the operating system's randomness."""
    import os

    seed = os.urandom(32)
    return [(seed, _ed25519().public_key(seed))]
