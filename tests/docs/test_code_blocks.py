"""Every fenced code block in README.md and docs/*.md runs as written (issue 11, brief rule 5).

The convention (docs/design.md, "Documentation blocks are tests"):

- ```` ```python ````: executed in a fresh interpreter from the repository root. A block that
  defines ``test_*`` functions is a pytest module: it runs through ``pytester`` in a
  subprocess (the plugin's fixtures such as ``sim_broker`` available) and must pass.
- ```` ```sh ````/```` ```console ````: each command (a ``$ ``-prefixed line in ``console``) runs
  with ``bash`` from the repository root and must exit 0.
- ```` ```yaml ````: must parse; a document with ``version:`` and ``steps:`` is a scenario and
  must pass under ``simamqp run``.
- ```` ```text ```` and blocks without a language are output or diagrams: not run.
- ``<!-- skip: reason -->`` on the line(s) just before a fence skips that block, with the
  reason shown in the test report (for commands that install packages or run whole suites).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[^\n]*$")
SKIP = re.compile(r"^\s*<!--\s*skip:\s*(?P<reason>.+?)\s*-->\s*$")
RUN = {"python", "sh", "bash", "console", "shell", "yaml"}
#: Real-time bound for one shell command (every command in the docs is quick).
COMMAND_TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def collect(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        start, indent = index, len(match["indent"])
        index += 1
        body: list[str] = []
        while index < len(lines) and not re.match(r"^[ \t]*```\s*$", lines[index]):
            body.append(lines[index][indent:])
            index += 1
        index += 1  # the closing fence
        skip = None
        back = start - 1
        while back >= 0 and not lines[back].strip():
            back -= 1
        if back >= 0 and (marker := SKIP.match(lines[back])):
            skip = marker["reason"]
        blocks.append(Block(path, start + 1, match["lang"], "\n".join(body) + "\n", skip))
    return blocks


BLOCKS = [b for path in DOCS for b in collect(path)]


def test_the_collector_finds_blocks_in_every_language_it_runs() -> None:
    """A guard against a collector that silently finds nothing."""
    langs = {b.lang for b in BLOCKS}
    assert {"python", "sh", "yaml"} <= langs
    assert any(b.path.name == "README.md" for b in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang in RUN], ids=lambda b: b.where)
def test_block_runs(
    block: Block,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.where}: {block.skip}")
    if block.lang == "python":
        _run_python(block, request)
    elif block.lang == "yaml":
        _check_yaml(block, tmp_path)
    else:
        _run_commands(block)


def _run_python(block: Block, request: pytest.FixtureRequest) -> None:
    if re.search(r"^def test_\w+\(", block.code, re.MULTILINE):
        pytester: pytest.Pytester = request.getfixturevalue("pytester")
        pytester.makepyfile(**{"test_doc_block": block.code})
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
        assert result.ret == 0, f"{block.where}:\n{result.stdout.str()}"
        outcomes = result.parseoutcomes()
        assert outcomes.get("passed", 0) >= 1 and not outcomes.get("failed")
        return
    # A fresh interpreter per block, as a reader runs it: a block's side effects (a Celery
    # worker configuring logging, the process-default broker's queues) stay in it.
    script = f"__file__ = {block.where!r}\n" + block.code
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    output = textwrap.indent(result.stdout + result.stderr, "  ")
    assert result.returncode == 0, f"{block.where} failed:\n{output}"


def _check_yaml(block: Block, tmp_path: Path) -> None:
    document = yaml.safe_load(block.code)
    if not (isinstance(document, dict) and "version" in document and "steps" in document):
        return  # a fragment: parsing is the check
    path = tmp_path / "doc_block.yaml"
    path.write_text(block.code, encoding="utf-8")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "simamqp"), "run", str(path)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, f"{block.where}:\n{result.stdout}{result.stderr}"


def _commands(block: Block) -> list[str]:
    lines = block.code.splitlines()
    if block.lang == "console":
        return [line[2:] for line in lines if line.startswith("$ ")]
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _run_commands(block: Block) -> None:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for command in _commands(block):
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        output = textwrap.indent(result.stdout + result.stderr, "  ")
        assert result.returncode == 0, f"{block.where}: `{command}` failed:\n{output}"
