"""Every code block of README.md, docs/, integrations/ and examples/*/README.md runs, as a
reader runs it, against the demo's database (issue #26, item 2): SQL with psql, shell
with bash, Python as a script, JavaScript with node, YAML and TOML parsed. A block that
stops working fails here with its file, its line and the error; a block that cannot run
in the suite says why in a marker right before it (tests/docblocks.py lists the markers),
and those are few. What runs how is in tests/docblocks.py and tests/docrun.py."""

from __future__ import annotations

import os

import pytest

from dbhelpers import ROOT
from docblocks import EXEMPTIONS, MarkdownError, blocks, doc_files, problems
from docrun import FileRun, demo_database, demo_roles, drop_database

MAX_EXEMPTIONS = 12  # blocks not run as written here; each says why (see the report of test_exemptions)
DEMO_ROWS = 2000  # the demo's churn table, smaller than the reader's 20,000: the same steps, faster


def _all_blocks():
    out = []
    for path in doc_files():
        try:
            out += blocks(path)
        except MarkdownError:
            pass  # test_markdown_reads reports it
    return out


BLOCKS = _all_blocks()


def test_markdown_reads():
    for path in doc_files():
        blocks(path)  # raises MarkdownError naming the line


def test_every_block_has_a_language_and_sound_markers():
    wrong = [p for b in BLOCKS for p in problems(b)]
    assert not wrong, "\n".join(wrong)
    assert {b.path.name for b in BLOCKS} >= {"README.md"} and len(BLOCKS) > 20


def test_exemptions_have_reasons_and_are_few():
    exempt = [b for b in BLOCKS if b.exemption]
    listing = "\n".join(f"{b.where}: {b.exemption}: {b.get(b.exemption)[0]}"
                        + (f" (why: {b.get('why')[0]})" if b.get("why") else "") for b in exempt)
    print(listing)
    for b in exempt:
        assert not problems(b), problems(b)  # a tested-by or in-file path exists (and holds the block)
        if b.exemption in ("skip", "run-instead", "replace"):  # a sentence: why it is not run as written
            reason = b.get("skip") if b.exemption == "skip" else b.get("why")
            assert reason and len(reason[0].split()) >= 4, f"{b.where}: say why it is not run as written"
    assert len(exempt) <= MAX_EXEMPTIONS, f"{len(exempt)} blocks are not run as written:\n{listing}"


@pytest.fixture(scope="module")
def demo_template(cluster):
    """`pgmodels demo` run once into a database of its own; each markdown file gets a copy."""
    name = f"doc_demo_{os.getpid()}"
    seconds = demo_database(cluster, name, DEMO_ROWS)
    print(f"pgmodels demo --rows {DEMO_ROWS}: {seconds:.1f} s")
    yield name
    drop_database(cluster, name)


@pytest.fixture(scope="module")
def runs(cluster, demo_template):
    opened: dict = {}
    roles = demo_roles()

    def get(path):
        if path not in opened:
            opened[path] = FileRun(path, blocks(path), cluster, demo_template, roles, f"{os.getpid()}")
        return opened[path]

    yield get
    for run in opened.values():
        run.close()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_block_runs(block, runs):
    if block.exemption in ("skip", "tested-by", "in-file"):
        pytest.skip(f"{block.where}: {block.exemption}: {block.get(block.exemption)[0]}")
    if block.lang == "text":
        return
    assert not problems(block), problems(block)
    runs(block.path).run_upto(block)


def test_the_files_read_are_the_documentation():
    names = {str(p.relative_to(ROOT)) for p in doc_files()}
    assert "README.md" in names and "integrations/dbt/README.md" in names
    assert "examples/dbt_churn/README.md" in names
