"""Edge deployment: the served model as a signed bundle a device runs without a database.

- ``build``: the bundle export_bundle() returns (manifest, model.onnx without ZipMap,
  Ed25519 signature), built inside the server by pgmodels._edge_build;
- ``keys``: the server's signing key, made on first use;
- the device runtime is the separate ``pgmodels_edge`` package (edge/python/), which this
  package uses to read and verify bundles, so server and device share one reader.
"""
