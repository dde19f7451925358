"""Running the documentation's blocks (tests/docblocks.py reads them) as a reader would:
one markdown file at a time, in order, each file with a database of its own copied from
the demo's (what `pgmodels demo` leaves: the reader's state after `./dev.sh demo`) and a
working copy of the tree, so nothing a block writes lands in the checkout."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import yaml

from dbhelpers import ROOT
from docblocks import SETUPS, Block, guarded

VENV_BIN = Path(sys.executable).parent
PORTS = (8080, 8081)  # pgmodels serve's defaults, as the README uses them
TIMEOUT = 300  # seconds one block may take


class BlockFailed(AssertionError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def working_copy() -> Path:
    """The tree as it is now (tracked files and new ones git does not ignore), with the
    embedded cluster's home and the JavaScript packages linked, in a temporary directory."""
    out = Path(tempfile.mkdtemp(prefix="pgmodels-doc-"))
    out.chmod(0o755)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out / name)
    (out / ".pgmodels").symlink_to(ROOT / ".pgmodels")
    if (ROOT / "edge/js/node_modules").is_dir():
        (out / "edge/js/node_modules").symlink_to(ROOT / "edge/js/node_modules")
        (out / "node_modules").symlink_to(ROOT / "edge/js/node_modules")  # an app's own `npm install`
    return out


def _shown(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "...\n" + text[-limit:]


class FileRun:
    """One markdown file's blocks, run in order against its own database."""

    def __init__(self, path: Path, blocks: list[Block], cluster, template: str, demo_roles: set[str], tag: str):
        self.path, self.blocks, self.cluster = path, blocks, cluster
        self.dbname = f"doc_{tag}_" + re.sub(r"\W", "_", str(path.relative_to(ROOT)))[:40]
        self.done: dict[int, str | None] = {}  # block line -> None (passed) or the failure
        self.setups_run: set[str] = set()
        self.background: subprocess.Popen | None = None
        self.demo_roles = demo_roles
        self.workdir = working_copy()
        self.cwd = self.workdir / path.parent.relative_to(ROOT)
        self.ports = {p: free_port() for p in PORTS}
        texts = [b.text for b in blocks] + [v for b in blocks for _, v in b.markers]
        made = sorted({m for t in texts for m in re.findall(r"(?i)\bCREATE\s+(?:ROLE|USER)\s+\"?(\w+)", t)})
        self.roles = {r: f"{r}_{tag}" for r in made}  # roles are the cluster's: one name per run
        with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
            for attempt in range(20):  # the demo's last sessions may still be closing
                try:
                    c.execute(f'CREATE DATABASE "{self.dbname}" TEMPLATE "{template}"')
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.5)
            else:
                raise RuntimeError(f"cannot copy {template}: it is in use")
        self.url = cluster.url(self.dbname)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k == "PGMODELS_VENV"}
        env.update(PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}", PGHOST="127.0.0.1",
                   PGPORT=str(cluster.port), PGUSER="postgres", PGPASSWORD=cluster.password(),
                   PGDATABASE=self.dbname, PGMODELS_DSN=self.url, PGMODELS_HOME=str(ROOT / ".pgmodels"),
                   PYTHONDONTWRITEBYTECODE="1")
        self.env = env

    # -- what the harness changes in every block ---------------------------------------
    def subs(self, text: str) -> str:
        for port, free in self.ports.items():
            text = re.sub(rf"\b{port}\b", str(free), text)
        text = re.sub(r"\b54329\b", str(self.cluster.port), text)  # the embedded cluster's port (CI uses another)
        text = re.sub(r"\bPGDATABASE=pgmodels\b", f"PGDATABASE={self.dbname}", text)  # the demo's database: its copy
        for role, renamed in self.roles.items():
            text = re.sub(rf"\b{role}\b", renamed, text)
        return text

    def close(self) -> None:
        self._stop_background()
        with psycopg.connect(self.cluster.url("postgres"), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            for role in self.roles.values():
                try:
                    c.execute(f'DROP ROLE IF EXISTS "{role}"')
                except psycopg.Error:
                    pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- order ----------------------------------------------------------------------------
    def run_upto(self, block: Block) -> None:
        """Run the blocks before this one that have not run (a reader runs them in order),
        then this one; raise BlockFailed with the file, the line and the error."""
        for b in self.blocks:
            if b.line == block.line:
                break
            if b.line not in self.done:
                self._record(b)
        if block.line not in self.done:
            self._record(block)
        failure = self.done[block.line]
        if failure:
            earlier = [f"{self.path.relative_to(ROOT)}:{line}" for line, f in self.done.items()
                       if f and line < block.line]
            raise BlockFailed(failure + (f"\n(earlier blocks of this file failed too: {', '.join(earlier)})"
                                         if earlier else ""))

    def _record(self, block: Block) -> None:
        try:
            self.run(block)
            self.done[block.line] = None
        except BlockFailed as e:
            self.done[block.line] = str(e)

    # -- one block ------------------------------------------------------------------------
    def run(self, block: Block) -> None:
        if block.lang == "text" or block.exemption in ("skip", "tested-by", "in-file"):
            return  # not run here: the test says so (pytest's skip, with the marker's reason)
        fail = lambda why: BlockFailed(f"{block.where} ({block.lang} block, section {block.section!r}): {why}")  # noqa: E731
        for name in block.get("setup"):
            for n in (x.strip() for x in name.split(",")):
                if n not in self.setups_run:
                    self._psql(SETUPS[n], block, fail, what=f"setup {n}")
                    self.setups_run.add(n)
        for code in block.get("sh-setup"):
            self._sh_setup(self.subs(code), fail)
        if block.lang == "sql":
            for role in re.findall(r"(?i)\bCREATE\s+(?:ROLE|USER)\s+\"?(\w+)", block.text):
                if role in self.demo_roles:
                    raise fail(f"CREATE ROLE {role}: the demo already made role {role}, so a reader who ran it "
                               f"gets `role \"{role}\" already exists`; use another name")
        text = block.text
        for change in block.get("replace"):
            old, new = (s.strip() for s in change.split(" ==> ", 1))
            if old not in text:
                raise fail(f"replace: {old!r} is not in the block any more")
            text = text.replace(old, new)
        instead = block.get("run-instead")
        risky = guarded(block, instead[0] if instead else text)
        if risky:
            raise fail("not run: the block " + "; ".join(risky) + ". Give it a marker (tests/docblocks.py): "
                       "run-instead a cheap form, tested-by the test that runs it, or skip with the reason")
        if instead:
            self._sh(self.subs(instead[0]) + "\n", block, fail)
            return
        text = self.subs(text)
        if block.get("dbt-model"):
            self._dbt_model(block, block.get("dbt-model")[0], fail)
        elif block.lang == "sql":
            self._psql(text, block, fail)
        elif block.lang == "sh":
            self._sh(text, block, fail)
        elif block.lang == "python":
            self._python(text, block, fail)
        elif block.lang == "js":
            self._js(text, block, fail)
        elif block.lang == "yaml":
            try:
                list(yaml.safe_load_all(text))
            except yaml.YAMLError as e:
                raise fail(f"not valid YAML: {e}") from None
        elif block.lang == "toml":
            try:
                tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise fail(f"not valid TOML: {e}") from None

    def _exec(self, argv, block, fail, *, input=None, cwd=None, what="") -> subprocess.CompletedProcess:
        try:
            r = subprocess.run(argv, input=input, capture_output=True, text=True, cwd=cwd or self.cwd,
                               env=self.env, timeout=TIMEOUT, start_new_session=True,
                               stdin=subprocess.DEVNULL if input is None else None)
        except subprocess.TimeoutExpired as e:
            raise fail(f"{what or 'it'} took over {TIMEOUT} s\n{_shown(str(e.stdout or '') + str(e.stderr or ''))}")
        return r

    def _psql(self, text, block, fail, what="") -> None:
        r = self._exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"], block, fail, input=text, what=what)
        if r.returncode != 0:
            err = re.sub(r"psql:<stdin>:(\d+):", lambda m: f"line {block.line + int(m.group(1))}:" if not what
                         else f"{what} line {m.group(1)}:", r.stderr)
            raise fail(f"psql failed{' in ' + what if what else ''}:\n{_shown(err)}")

    def _sh(self, text, block, fail) -> None:
        prelude = ("set -e -o pipefail\n"
                   "curl() { command curl --fail-with-body --no-progress-meter \"$@\"; }  # an HTTP error fails\n"
                   "trap 'echo \"doc-test: line $((LINENO - 3 + " + str(block.line) + ")) failed with status $?\" >&2' ERR\n")
        script = prelude + text
        if block.get("background"):
            self._stop_background()
            log = open(self.workdir / f"background-{block.line}.log", "w")
            self.background = subprocess.Popen(["bash", "-c", script], cwd=self.cwd, env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True)
            self._wait_ready(self.subs(block.get("background")[0]), log.name, fail)
            return
        r = self._exec(["bash", "-c", script], block, fail)
        if r.returncode != 0:
            raise fail(f"exit status {r.returncode}\n{_shown(r.stdout + chr(10) + r.stderr)}")

    def _sh_setup(self, code, fail) -> None:
        r = subprocess.run(["bash", "-c", "set -e -o pipefail\n" + code + "\nenv -0"], capture_output=True,
                           cwd=self.cwd, env=self.env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise fail(f"sh-setup `{code}` failed:\n{_shown(r.stderr.decode())}")
        for item in r.stdout.decode().split("\0"):
            name, eq, value = item.partition("=")
            if eq and name not in ("PWD", "OLDPWD", "SHLVL", "_"):
                self.env[name] = value

    def _wait_ready(self, url, log, fail) -> None:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                return
            except (OSError, urllib.error.HTTPError):
                if self.background.poll() is not None or time.monotonic() > deadline:
                    raise fail(f"the background block did not answer at {url}:\n{_shown(Path(log).read_text())}") \
                        from None
                time.sleep(0.3)

    def _stop_background(self) -> None:
        if self.background is not None and self.background.poll() is None:
            os.killpg(self.background.pid, signal.SIGTERM)
            try:
                self.background.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.background.pid, signal.SIGKILL)
                self.background.wait(10)
        self.background = None

    def _python(self, text, block, fail) -> None:
        setup = [self.subs(c) for c in block.get("python-setup")]
        script = self.cwd / f"doc_block_{block.line}.py"
        script.write_text("\n".join(setup + [text]))
        r = self._exec([sys.executable, script.name], block, fail)
        if r.returncode != 0:
            err = re.sub(rf'File "[^"]*{script.name}", line (\d+)',
                         lambda m: f"{block.path.name}, line {block.line + int(m.group(1)) - len(setup)}"
                         if int(m.group(1)) > len(setup) else f"python-setup {m.group(1)}", r.stderr)
            raise fail(f"exit status {r.returncode}\n{_shown(err)}")

    def _js(self, text, block, fail) -> None:
        lines = text.splitlines()
        imports = max((i + 1 for i, line in enumerate(lines) if re.match(r"\s*import\b", line)), default=0)
        setup = [self.subs(c) for c in block.get("js-setup")]
        script = self.cwd / f"doc_block_{block.line}.mjs"
        script.write_text("\n".join(lines[:imports] + setup + lines[imports:]) + "\n")
        r = self._exec(["node", script.name], block, fail)
        if r.returncode != 0:
            raise fail(f"node: exit status {r.returncode} (js-setup lines come after line {imports} of the "
                       f"block)\n{_shown(r.stderr)}")

    def _dbt_model(self, block, project, fail) -> None:
        """The block is a dbt model of `project` (a dbt project in the tree): written into
        its working copy, built with what it refers to, then run once more (an
        incremental model's incremental branch)."""
        root = self.workdir / project
        name = f"doc_block_{block.line}"
        (root / "models" / f"{name}.sql").write_text(self.subs(block.text))
        env_before = dict(self.env)
        self.env.update(DBT_PROFILES_DIR=str(root), DBT_SCHEMA=f"doc_dbt_{block.line}")
        try:
            for argv in (["dbt", "deps"], ["dbt", "build", "--select", f"+{name}", "--indirect-selection", "cautious"], ["dbt", "run", "--select", name]):
                r = self._exec(argv, block, fail, cwd=root, what=" ".join(argv))
                if r.returncode != 0:
                    raise fail(f"as a dbt model of {project}: `{' '.join(argv)}` failed\n{_shown(r.stdout)}")
        finally:
            self.env = env_before


def demo_database(cluster, name: str, rows: int) -> float:
    """The reader's database after `./dev.sh demo`: a new database with the extension, and
    `pgmodels demo` run against it (the tool itself, not a copy of its SQL). Returns the
    seconds the demo took."""
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(cluster.url(name), autocommit=True) as c:
        c.execute("CREATE EXTENSION pgmodels CASCADE")
    started = time.monotonic()
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", PGMODELS_HOME=str(ROOT / ".pgmodels"))
    r = subprocess.run([str(VENV_BIN / "pgmodels"), "demo", "--dsn", cluster.url(name), "--rows", str(rows)],
                       capture_output=True, text=True, env=env, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"pgmodels demo failed (exit {r.returncode}):\n{_shown(r.stdout + r.stderr)}")
    return time.monotonic() - started


def demo_roles() -> set[str]:
    """The roles `pgmodels demo` makes (a reader who ran it has them)."""
    return {m for f in (ROOT / "python_udfs/pgmodels/cli").glob("*.py")
            for m in re.findall(r"CREATE ROLE (\w+)", f.read_text())}


def drop_database(cluster, name: str) -> None:
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

