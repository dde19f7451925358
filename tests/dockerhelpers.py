"""The container engine for tests/test_docker.py: podman as root with the runc runtime and
docker/containers.conf, every container on the host's network (on free loopback ports),
a base image made by debootstrap (docker/base-image.sh), and the image built from this
tree. Whatever a run makes carries its label and is removed at its end; what is cached
between runs: the base tarball and the wheels under ~/.cache/pgmodels, and the image's
layers (tagged localhost/pgmodels:test and localhost/pgmodels-build:test)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import psycopg

from dbhelpers import ROOT

ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf")}
CACHE = Path(os.environ.get("PGMODELS_CACHE") or Path.home() / ".cache" / "pgmodels")
IMAGE = "localhost/pgmodels:test"
BUILD_IMAGE = "localhost/pgmodels-build:test"  # the build stage, tagged so its layers stay cached
RUN_LABEL = f"pgmodels-test={os.getpid()}-{uuid.uuid4().hex[:6]}"
COMPOSE = Path(sys.executable).with_name("podman-compose")


def podman(*args, check: bool = True, timeout: float = 900, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(["podman", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                            env=env or ENV, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(map(str, args))} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def engine_problem() -> str | None:
    """Why no container engine can run here, or None. Installs podman and debootstrap
    (scripts/container-tools.sh) where they are missing and it can."""
    if os.geteuid() != 0:
        return "needs root: podman runs rootful here (runc, cgroupfs) and debootstrap makes the base image"
    if not (shutil.which("podman") and shutil.which("debootstrap")):
        done = subprocess.run(["bash", str(ROOT / "scripts" / "container-tools.sh")], capture_output=True, text=True)
        if done.returncode != 0:
            return f"no container engine: scripts/container-tools.sh failed: {done.stderr.strip()[-500:]}"
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, env=ENV)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-500:]}"
    return None


def _server_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = tomllib.loads((ROOT / "edge" / "python" / "pyproject.toml").read_text())["project"]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    return sorted({*project["dependencies"], *project["optional-dependencies"]["server"], *edge["dependencies"],
                   *build, "pip", "setuptools"})


def wheelhouse() -> Path:
    """Every wheel the image's `pip install` needs, downloaded once with this machine's pip
    (its index and caches) and mounted into the build: the image installs offline from it."""
    requirements = _server_requirements()
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    wheels = CACHE / "wheels"
    done = wheels / f".complete-{key}"
    if not done.exists():
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(wheels),
                        *requirements], check=True, capture_output=True, text=True)
        done.touch()
    return wheels


def _dangling() -> set[str]:
    return set(podman("images", "-q", "--filter", "dangling=true", "--no-trunc").stdout.split())


def build_image() -> str:
    """The base image, then the Dockerfile's build stage and the image, at low priority
    (the machine is shared); images this build left dangling (an earlier build's) are
    removed. Returns the image's id."""
    base = subprocess.run(["bash", str(ROOT / "docker" / "base-image.sh")], capture_output=True, text=True,
                          env=ENV, check=False)
    assert base.returncode == 0, base.stderr[-3000:]
    before = _dangling()
    common = ["build", "--format", "docker", "--network", "host", "--layers", "--jobs", "2",
              "-v", f"{wheelhouse()}:/wheels:ro", "--build-arg", "PIP_WHEELS=/wheels",
              "--build-arg", f"BASE_IMAGE={base.stdout.strip()}", "-f", "Dockerfile"]
    for target, tag in (("build", BUILD_IMAGE), (None, IMAGE)):
        command = ["nice", "-n", "10", "podman", *common, *(["--target", target] if target else []), "-t", tag, "."]
        done = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=1800)
        assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    for image in _dangling() - before:
        podman("rmi", image, check=False)
    return podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(name: str, *options, command: tuple | list = (), detach: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """podman run of the image on the host's network, labelled for this run's cleanup:
    podman's options, then the container's command."""
    return podman("run", *(["-d"] if detach else ["--rm"]), "--name", name, "--label", RUN_LABEL, "--network", "host",
                  *options, IMAGE, *command, check=detach, timeout=timeout)


def volume(name: str) -> str:
    podman("volume", "create", "--label", RUN_LABEL, name)
    return name


def logs(name: str) -> str:
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


def wait_until(what: str, ready, timeout: float = 180, every: float = 1.0, container: str | None = None):
    """ready() until it returns something true; fails with what (and the container's log)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = ready()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - not ready yet; kept for the failure message
            last = e
        if container and podman("inspect", "--format", "{{.State.Running}}", container, check=False).stdout.strip() \
                == "false":
            raise AssertionError(f"{container} stopped while waiting for {what}:\n{logs(container)[-4000:]}")
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})"
                         + (f"\n{logs(container)[-4000:]}" if container else ""))


def connect(port: int, user: str, password: str, dbname: str, timeout: float = 180, container: str | None = None):
    """An autocommit connection over TCP, once the server takes them (the first start's
    temporary server listens on its socket only)."""
    dsn = f"host=127.0.0.1 port={port} user={user} password={password} dbname={dbname} connect_timeout=3"
    return wait_until(f"the database on port {port}", lambda: psycopg.connect(dsn, autocommit=True),
                      timeout=timeout, container=container)


def processes(name: str) -> list[tuple[str, str]]:
    """(user, command) of every process in a container, as the host sees them."""
    rows = podman("top", name, "user", "args").stdout.splitlines()[1:]
    return [(r.split(None, 1)[0], r.split(None, 1)[1] if len(r.split(None, 1)) > 1 else "") for r in rows]


def wait_exit(name: str, timeout: float = 120) -> int:
    return int(podman("wait", name, timeout=timeout).stdout.strip().splitlines()[-1])


def volume_path(name: str) -> Path:
    return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip())


def cleanup() -> None:
    """Containers, pods and volumes of this run (compose's carry the label too)."""
    ids = podman("ps", "-aq", "--filter", f"label={RUN_LABEL}", check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-v", "-t", "5", *ids, check=False)  # -v: their anonymous volumes too
    vols = podman("volume", "ls", "-q", "--filter", f"label={RUN_LABEL}", check=False).stdout.split()
    if vols:
        podman("volume", "rm", "-f", *vols, check=False)
