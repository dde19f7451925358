"""The server's environment holds together: its packages' requirements agree (pip check),
with the official Open Inference Protocol clients, tritonclient[all], installed beside
pgmodels (they once downgraded protobuf under grpcio-tools)."""

from __future__ import annotations

import subprocess
import sys


def test_pip_check_passes_with_tritonclient_all_installed():
    run = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    listed = subprocess.run([sys.executable, "-m", "pip", "show", "tritonclient"], capture_output=True, text=True,
                            timeout=120).stdout
    # the [all] extra's own requirements are there too (its HTTP client's and its gRPC client's)
    import geventhttpclient  # noqa: F401
    import tritonclient.grpc  # noqa: F401
    import tritonclient.http  # noqa: F401
    from google.protobuf import __version__ as protobuf
    from grpc_tools import protoc  # noqa: F401

    assert "Name: tritonclient" in listed and int(protobuf.split(".")[0]) >= 5
