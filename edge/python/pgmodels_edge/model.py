"""EdgeModel: a verified bundle on onnxruntime, predicting like SQL predict()."""

from __future__ import annotations

import os

import numpy as np

from . import bundle, inputs
from .errors import DATA_CORRUPTED, FEATURE_NOT_SUPPORTED, EdgeError


class EdgeModel:
    """A model version from a verified bundle. ``predict``, ``predict_proba`` and
    ``predict_label`` answer as their SQL namesakes do for one row; the ``*_batch``
    forms take many rows and run them at once."""

    def __init__(self, manifest: dict, model_bytes: bytes, path: str | None = None, etag: str | None = None):
        import onnxruntime as ort

        self.manifest = manifest
        self.path = path
        self.etag = etag  # the sha256 of manifest.json: what pgmodels serve answers as ETag
        self.project = manifest["project"]
        self.version = manifest["version"]
        self.id = manifest["model_id"]
        self.task = manifest["task"]
        self.sha256 = manifest["artifact"]["sha256"]
        self.feature_names = [f["name"] for f in manifest["features"]]
        self.feature_types = [f["type"] for f in manifest["features"]]
        self.nullable = frozenset(manifest.get("nullable") or [])
        self.array_features = manifest.get("array_features") or {}
        self.labels = manifest.get("labels")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's own exception types
            raise EdgeError("the bundle's model does not load in onnxruntime", detail=str(e)[:500],
                            sqlstate=DATA_CORRUPTED) from None
        ins = self.session.get_inputs()
        self.single_input = ins[0].name if len(ins) == 1 and ins[0].type == "tensor(float)" else None
        answers = manifest.get("answers") or {}
        outs = {o.name for o in self.session.get_outputs()}
        self.label_output, self.proba_output, self.value_output = (
            answers.get(k) if answers.get(k) in outs else None for k in ("label", "probabilities", "value"))
        if self.task == "classification" and not (self.label_output or self.proba_output):
            raise EdgeError("the bundle's model has no label or probabilities output", sqlstate=DATA_CORRUPTED)

    # -- loading --------------------------------------------------------------------
    @classmethod
    def load(cls, path: str, public_key=None, project: str | None = None) -> "EdgeModel":
        """The bundle in directory ``path`` (or a bundle archive file), verified against
        the pinned public key (argument, or PGMODELS_EDGE_PUBLIC_KEY); with ``project``, a
        bundle of another project is refused (one server key signs every project's)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            manifest_bytes, signature, model = bundle.read_dir(path)
        else:
            try:
                size = os.path.getsize(path)
                if size > bundle.MAX_BYTES + bundle.MAX_MANIFEST:
                    raise bundle.BundleError(f"{path} is larger than a bundle may be")
                with open(path, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                raise bundle.BundleError(f"{path} does not exist",
                                         hint="Give a bundle directory or a bundle archive.") from None
            except OSError as e:
                raise bundle.BundleError(f"{path} cannot be read", detail=f"{e.strerror or e}.") from None
            return cls.from_bytes(data, public_key, project, path)
        manifest = bundle.verify(manifest_bytes, signature, model, public_key, project)
        return cls(manifest, model, path, bundle.etag(manifest_bytes))

    @classmethod
    def from_bytes(cls, data: bytes, public_key=None, project: str | None = None,
                   path: str | None = None) -> "EdgeModel":
        if public_key is None:
            public_key = bundle.parse_public_key(None)
        manifest_bytes, signature, model = bundle.unpack(data, public_key, project)
        manifest = bundle.verify(manifest_bytes, signature, model, public_key, project)
        return cls(manifest, model, path, bundle.etag(manifest_bytes))

    # -- what serving needs to know ------------------------------------------------
    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def all_float(self) -> bool:
        return "text" not in self.feature_types

    def describe(self) -> str:
        return f'model {self.id} (version {self.version} of project "{self.project}")'

    def __repr__(self) -> str:
        return f"<EdgeModel {self.describe()} sha256 {self.sha256[:12]}>"

    # -- running --------------------------------------------------------------------
    def _feed(self, rows: list[tuple]) -> dict:
        if self.all_float:
            X = np.vstack([r[0] for r in rows]) if rows else np.zeros((0, self.n_features), np.float32)
            if self.single_input is not None:
                return {self.single_input: X}
            return {n: X[:, i:i + 1] for i, n in enumerate(self.feature_names)}
        return {n: np.vstack([r[1][n] for r in rows]) for n in self.feature_names}

    def _rows(self, many) -> dict:
        if isinstance(many, np.ndarray):
            many = many.tolist()
        return self._feed([inputs.one_row(self, r) for r in many])

    def _classifier(self, function: str) -> None:
        if self.task != "classification":
            raise EdgeError(f"{self.describe()} is a regression model; {function} needs a classifier",
                            hint="Use predict() for its values.", sqlstate=FEATURE_NOT_SUPPORTED)

    def _indices(self, feed) -> np.ndarray:
        if self.label_output is not None:
            return np.asarray(self.session.run([self.label_output], feed)[0]).reshape(-1)
        return np.argmax(self._proba(feed), axis=1)

    def _proba(self, feed) -> np.ndarray:
        if self.proba_output is None:
            raise EdgeError("the model has no probability output", detail="Its ONNX graph returns class labels only.",
                            hint="Use predict() for its labels.", sqlstate=FEATURE_NOT_SUPPORTED)
        return np.asarray(self.session.run([self.proba_output], feed)[0], dtype=np.float32)

    def _label_value(self, index: int) -> float:
        labels = self.labels
        if labels is not None and 0 <= index < len(labels) and isinstance(labels[index], (int, float)):
            return float(labels[index])
        return float(index)

    def _label_text(self, index: int) -> str:
        labels = self.labels or []
        if not 0 <= index < len(labels):
            return str(index)
        label = labels[index]
        return ("true" if label else "false") if isinstance(label, bool) else str(label)

    def predict_batch(self, rows) -> list[float]:
        feed = self._rows(rows)
        if self.task == "classification":
            return [self._label_value(int(i)) for i in self._indices(feed)]
        return [float(v) for v in np.asarray(self.session.run([self.value_output], feed)[0]).reshape(-1)]

    def predict_proba_batch(self, rows) -> list[list[float]]:
        self._classifier("predict_proba")
        return self._proba(self._rows(rows)).tolist()

    def predict_label_batch(self, rows) -> list[str]:
        self._classifier("predict_label")
        return [self._label_text(int(i)) for i in self._indices(self._rows(rows))]

    def predict(self, features) -> float:
        """One row, as SQL predict(): a regression value, or a classifier's label when
        numeric (else the class index)."""
        return self.predict_batch([features])[0]

    def predict_proba(self, features) -> list[float]:
        return self.predict_proba_batch([features])[0]

    def predict_label(self, features) -> str:
        return self.predict_label_batch([features])[0]
