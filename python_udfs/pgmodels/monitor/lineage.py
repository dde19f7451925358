"""Where a model version came from: recorded at training, shown by model_lineage().

At training, next to the split and the conversion check, a model version records the
reference profile of its training rows (:mod:`.profile`), a fingerprint of those rows,
the pgmodels version, and, for a retrain by a monitor, which model and which drift
report it answered. The fingerprint is computed in the same statement that reads the
rows: the sum, modulo 2**64, of the first 64 bits of each row's md5, with the row count.
It does not depend on the order the rows come in (a relation has none), and any change
of a value, an added or a removed row changes it.
"""

from __future__ import annotations

import json

from .. import _version
from .._plpy import query, udf
from . import profile

# The fingerprint of the rows a model was trained on: their count and the sum, modulo
# 2^64, of each row's 64-bit hash (PostgreSQL's hash_record_extended, the hash its hash
# joins and partitions use, of every column: train() reads only numbers, text, booleans
# and number arrays, which all have one), in any row order. 0.3.0's method: 0.2.0 summed
# the first 64 bits of the md5 of each row's text ("rows-md5-sum"), which cost a text and
# an md5 per row (0.2 s of a 100,000-row train()). Fingerprints compare within one
# method, and within one PostgreSQL major version (its hash functions are not promised to
# stay the same across them).
METHOD = "rows-hash-sum"
FINGERPRINT_SQL = "pg_catalog.sum(pg_catalog.hash_record_extended(s, 0))"

# set by a monitor's retrain for the train() call it makes in this backend (see retrain.py)
retrain_context: dict | None = None


def fingerprint(rows: int, total) -> str:
    value = int(total or 0) % (1 << 64)
    return f"{METHOD}:{rows}:{value:016x}"


def at_training(task: str, features, target, read_info: dict, predictions: dict | None = None,
                reference: dict | None = None) -> dict:
    """What train() adds to a model's training record. reference: the rows' profile
    (profile.of_training), when the training child made it already."""
    reference = reference or profile.of_training(task, features, target)
    out = {"profile": {**reference, "predictions": predictions},
           "fingerprint": read_info.get("fingerprint"),
           "pgmodels_version": _version.__version__}
    if retrain_context:
        from . import holdout

        out["retrain"] = dict(retrain_context)
        if holdout.for_training is not None:  # the rows of the relation left out, held out to judge it
            out["retrain"]["excluded_rows"] = holdout.for_training.get("excluded")
    return out


LABELS = [
    ("project", "project"), ("version", "version"), ("model_id", "model id"), ("task", "task"),
    ("algorithm", "algorithm"), ("runtime", "runtime"), ("origin", "origin"),
    ("relation", "training relation"), ("rows", "training rows"), ("fingerprint", "fingerprint of the rows"),
    ("y_column", "target column"), ("split", "split"), ("snapshot", "snapshot"),
    ("trained_by", "trained by"), ("trained_at", "trained at"), ("pgmodels_version", "pgmodels version"),
    ("artifact_sha256", "artifact sha256"), ("key_metric", "key metric"),
    ("replaces", "replaces model"), ("drift_report", "after drift report"), ("decision", "retrain decision"),
]


def rows(record: dict) -> list[tuple]:
    """model_lineage()'s rows, (item, value, detail), from pgmodels._model_lineage's record."""
    t = record.get("training") or {}
    retrain = t.get("retrain") or {}
    origin = ("imported with import_onnx" if t.get("imported") else
              "retrained by a monitor" if retrain else "trained with train()")
    split = None
    if t.get("test_size") is not None:
        split = f"test_size {t['test_size']}, {t.get('test_sampling')}"
    snap = t.get("snapshot")
    if isinstance(snap, dict):
        snap = ", ".join(f"{k} {v}" for k, v in snap.items())
    values = {
        "project": record["project"], "version": record["version"], "model_id": record["model_id"],
        "task": record["task"], "algorithm": record["algorithm"], "runtime": record["runtime"], "origin": origin,
        "relation": t.get("relation"), "rows": t.get("rows"), "fingerprint": t.get("fingerprint"),
        "y_column": t.get("y_column"), "split": split, "snapshot": snap,
        "trained_by": record["trained_by"], "trained_at": record["trained_at"],
        "pgmodels_version": t.get("pgmodels_version"), "artifact_sha256": record["artifact_sha256"],
        "key_metric": record.get("key_metric"),
        "replaces": retrain.get("replaces_model_id"), "drift_report": retrain.get("drift_report_id"),
        "decision": record.get("decision"),
    }
    out = [(label, None if values[key] is None else str(values[key]), None)
           for key, label in LABELS if values.get(key) is not None]
    versions = record.get("library_versions") or {}
    if isinstance(versions, str):
        versions = json.loads(versions)
    out += [(f"library {name}", str(v), None) for name, v in sorted(versions.items())]
    prof = (t.get("profile") or {}).get("features") or {}
    if prof:
        out.append(("reference profile", f"{len(prof)} features", ", ".join(list(prof)[:20])))
    for name, value in sorted((t.get("feature_importances") or {}).items(), key=lambda kv: -abs(kv[1])):
        out.append((f"importance {name}", f"{value:.6g}", None))
    return out



@udf(empty=[])
def lineage_udf(model_id):
    """model_lineage(): a model version's lineage as (item, value, detail) rows."""
    got = query("SELECT pgmodels._model_lineage($1, pgmodels._credential()) AS r", [model_id], ["bigint"])
    return rows(json.loads(got[0]["r"]))
