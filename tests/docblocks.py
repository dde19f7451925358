"""The documentation's code blocks, read and run the way a reader runs them (for
tests/test_doc_blocks.py).

Every fenced block of README.md, docs/, integrations/ and examples/*/README.md is read
with its language and the `<!-- doc-test: KIND: VALUE -->` markers right before it (only
blank lines or other markers between a marker and its fence). Kinds:

  skip: REASON              not run (an exemption; REASON says why and what covers it)
  tested-by: PATH           not run here: PATH (a test file) runs it (an exemption)
  in-file: PATH             not run here: the block is a part of PATH, word for word, which a
                            test runs (an exemption)
  run-instead: COMMAND      run COMMAND instead of the block, a cheap form (an exemption; needs `why`)
  replace: OLD ==> NEW      run the block with OLD replaced by NEW (an exemption; needs `why`)
  why: REASON               the reason for a run-instead or a replace
  setup: NAME               run the named SQL of SETUPS below first (once per file)
  sh-setup: CODE            bash run before the block, in its shell (variables a reader has by then)
  python-setup: CODE        Python run before the block, in its namespace (a fragment's context)
  js-setup: CODE            JavaScript put after the block's imports
  dbt-model: PROJECT        the block is a dbt model: built in a copy of the dbt project PROJECT
                            (with what it refers to), then run once more (incremental models)
  background: URL           the block runs in the background until the file is done (or the
                            next background block starts); the next block waits until URL answers

Languages: sql (psql, ON_ERROR_STOP), sh (bash -e -o pipefail, curl with --fail-with-body),
python (a script), js (node, an ES module), yaml and toml (parsed), text (not run: output,
a psql session, a listing). A block without a language fails: say what it is.

What the harness changes in every block of a file, so runs never meet each other nor the
reader's own state: the ports 8080 and 8081 become free ones, the embedded cluster's port
54329 the one it runs on, `PGDATABASE=pgmodels` (the demo's database) the file's copy of
it, and a role a block creates (CREATE ROLE x) gets a suffix of this run.

A block that would install system packages, run the suite or the demo, change the
server's settings or touch containers or the embedded cluster itself (GUARDED below) is
not run unless a marker says how: it fails instead, asking for one.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from dbhelpers import ROOT

RUNNABLE = {"sql", "sh", "python", "js", "yaml", "toml"}
LANGUAGES = RUNNABLE | {"text"}
EXEMPTIONS = {"skip", "tested-by", "in-file", "run-instead", "replace"}
KINDS = EXEMPTIONS | {"why", "setup", "sh-setup", "python-setup", "js-setup", "background", "dbt-model"}

GUARDED = {
    r"\bdev\.sh\b": "runs ./dev.sh (installs system packages; `test` runs this suite)",
    r"\binstall\.sh\b": "runs scripts/install.sh (system packages, the shared environment)",
    r"\bapt(-get)?\s+install\b": "installs system packages",
    r"\bpgmodels\s+install\b": "installs the extension and sets pgmodels.venv with ALTER SYSTEM",
    r"(?i)\bALTER\s+SYSTEM\b": "changes the shared server's settings",
    r"\b(docker|podman|podman-compose)\b": "needs a container engine",
    r"\bdb\s+(create|start|stop|promote)\b": "changes the embedded cluster everyone's tests use",
    r"\bpgmodels\s+demo\b": "runs the demo in the cluster's own pgmodels database",
}

FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)\s*(.*)$")
MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*([\w-]+)\s*(?::\s*(.*?))?\s*-->\s*$")


def doc_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in ("docs", "integrations"):
        files += sorted((ROOT / folder).rglob("*.md"))
    files += sorted((ROOT / "examples").glob("*/README.md"))
    return [f for f in files if f.is_file()]


@dataclasses.dataclass
class Block:
    path: Path  # the markdown file
    line: int  # the opening fence's line, from 1
    lang: str
    text: str
    markers: list[tuple[str, str]]  # (kind, value) in order
    section: str  # the heading above it

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}-{self.lang or 'none'}"

    def get(self, kind: str) -> list[str]:
        return [v for k, v in self.markers if k == kind]

    @property
    def exemption(self) -> str | None:
        kinds = [k for k, _ in self.markers if k in EXEMPTIONS]
        return kinds[0] if kinds else None


class MarkdownError(Exception):
    pass


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one file, with their markers; a marker that belongs to no
    block, or an unknown kind, raises MarkdownError naming the line."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    pending: list[tuple[int, str, str]] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            kind, value = m.group(1), (m.group(2) or "").strip()
            if kind not in KINDS:
                raise MarkdownError(f"{path.relative_to(ROOT)}:{i + 1}: unknown doc-test marker {kind!r} "
                                    f"(known: {', '.join(sorted(KINDS))})")
            pending.append((i + 1, kind, value))
            i += 1
            continue
        if "doc-test" in line and "<!--" in line:
            raise MarkdownError(f"{path.relative_to(ROOT)}:{i + 1}: a doc-test marker must be one line "
                                "`<!-- doc-test: KIND: VALUE -->`")
        f = FENCE.match(line)
        if f:
            indent, fence, lang = f.group(1), f.group(2), f.group(3).lower()
            body, j = [], i + 1
            while j < len(lines) and not re.match(rf"^\s*{re.escape(fence[0]) * len(fence)}\s*$", lines[j]):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j].lstrip())
                j += 1
            if j == len(lines):
                raise MarkdownError(f"{path.relative_to(ROOT)}:{i + 1}: the block is never closed")
            out.append(Block(path, i + 1, lang, "\n".join(body) + "\n", [(k, v) for _, k, v in pending], section))
            pending = []
            i = j + 1
            continue
        if line.strip() and pending:
            first = pending[0][0]
            raise MarkdownError(f"{path.relative_to(ROOT)}:{first}: a doc-test marker must stand right before "
                                f"a code block (line {i + 1} comes first)")
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        i += 1
    if pending:
        raise MarkdownError(f"{path.relative_to(ROOT)}:{pending[0][0]}: a doc-test marker with no block after it")
    return out


def guarded(block: Block, text: str) -> list[str]:
    """Why the block's text (after its replacements) must not run here, if it must not."""
    if block.lang not in ("sh", "sql", "python"):
        return []
    comment = {"sql": r"--.*$", "sh": r"(^|\s)#.*$", "python": r"(^|\s)#.*$"}[block.lang]
    code = re.sub(comment, "", text, flags=re.M)  # what a comment mentions does not run
    return [why for pattern, why in GUARDED.items() if re.search(pattern, code)]


def problems(block: Block) -> list[str]:
    """What is wrong with a block's language and markers (empty when fine)."""
    out = []
    if block.lang not in LANGUAGES:
        out.append(f"{block.where}: a block with language {block.lang or '(none)'!r}: give it one of "
                   f"{', '.join(sorted(LANGUAGES))} (text for output, a session or a listing)")
    exemptions = [k for k, _ in block.markers if k in EXEMPTIONS]
    if len(exemptions) > 1 and set(exemptions) != {"replace"}:
        out.append(f"{block.where}: more than one exemption ({', '.join(exemptions)})")
    for kind, value in block.markers:
        if kind in ("skip", "tested-by", "in-file", "run-instead", "replace", "why", "setup", "background",
                    "dbt-model") and not value:
            out.append(f"{block.where}: the {kind} marker needs a value")
        if kind == "replace" and " ==> " not in value:
            out.append(f"{block.where}: replace needs `OLD ==> NEW`")
        if kind == "tested-by":
            target, _, test = value.partition("::")
            target = target.split()[0] if target.split() else target
            if not (ROOT / target).is_file():
                out.append(f"{block.where}: tested-by names {target}, which does not exist")
            elif test and f"def {test.split()[0]}(" not in (ROOT / target).read_text():
                out.append(f"{block.where}: tested-by names {value}, which {target} does not define")
        if kind == "in-file":
            target = ROOT / value.split()[0] if value.split() else ROOT
            if not target.is_file():
                out.append(f"{block.where}: in-file names {value}, which does not exist")
            elif _squeezed(block.text) not in _squeezed(target.read_text()):
                out.append(f"{block.where}: the block is no longer a part of {value}, word for word")
        if kind == "setup":
            unknown = [n.strip() for n in value.split(",") if n.strip() not in SETUPS]
            if unknown:
                out.append(f"{block.where}: unknown setup {', '.join(unknown)} (known: {', '.join(SETUPS)})")
        if kind == "dbt-model" and not (ROOT / value / "dbt_project.yml").is_file():
            out.append(f"{block.where}: dbt-model names {value}, which is not a dbt project")
    if ({"run-instead", "replace"} & set(exemptions)) and not block.get("why"):
        out.append(f"{block.where}: a {exemptions[0]} marker needs a `why` marker saying why")
    if block.lang in ("text", "yaml", "toml") and any(k.endswith("setup") or k == "background"
                                                      for k, _ in block.markers):
        out.append(f"{block.where}: a {block.lang} block takes no setup")
    return out


def _squeezed(text: str) -> str:
    return " ".join(text.split())


# Named SQL a block's `setup` marker runs first (once per file), for what a block takes
# as given that the demo does not make. Each is small and says what it stands for.
SETUPS = {
    # "a project whose features are all numbers": four numeric features, from the demo's
    # customers, that any role may predict with (a token of any role can call it)
    "sensors": """
        CREATE VIEW sensor_readings AS
        SELECT tenure_months AS temperature, monthly_charges AS pressure, support_calls::real AS vibration,
               paperless::int::real AS door_open, churned AS failed FROM public.churn;
        SELECT project FROM train('sensors', 'classification', 'sensor_readings', 'failed', 'linear');
        SELECT grant_project('sensors', 'public', 'predict');
    """,
    # the streaming quickstart's rides: a table producers insert into (key ride_id, features
    # a and b), a feature store by key (c), and the four projects it names
    "rides": """
        CREATE TABLE rides (ride_id bigserial PRIMARY KEY, a real, b real);
        CREATE TABLE rider_features (ride_id bigint PRIMARY KEY, c real);
        INSERT INTO rider_features SELECT i, i % 3 FROM generate_series(1, 100) i;
        CREATE VIEW ride_history AS
        SELECT (i % 17)::real AS a, (i % 5)::real AS b, (i % 3)::real AS c,
               (3 * (i % 17) + 2 * (i % 5) + (i % 3))::real AS minutes, (i % 7 = 0) AS risky
          FROM generate_series(1, 300) i;
        CREATE VIEW ride_history_duration AS SELECT a, b, minutes FROM ride_history;
        CREATE VIEW ride_history_cost AS SELECT a, b, c, 2 * minutes + c AS cost FROM ride_history;
        CREATE VIEW ride_history_risk AS SELECT a, b, risky FROM ride_history;
        SELECT project FROM train('duration', 'regression', 'ride_history_duration', 'minutes', 'linear');
        SELECT project FROM train('duration_fast', 'regression', 'ride_history_duration', 'minutes', 'linear');
        SELECT project FROM train('cost', 'regression', 'ride_history_cost', 'cost', 'linear');
        SELECT project FROM train('risk', 'classification', 'ride_history_risk', 'risky', 'linear');
    """,
}
