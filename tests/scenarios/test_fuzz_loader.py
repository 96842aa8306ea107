"""Fuzzing the scenario loader: generated malformed files never produce a traceback, a hang,
or a run that crashes on something ``validate`` let through.

Budget: ``SIMAMQP_FUZZ_FILES`` files (a few hundred here; ``nox -s fuzz`` runs >= 2,000), each
bounded by ``SIMAMQP_FUZZ_SECONDS`` of real time (default 2) to load and run.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from _fuzz import malformed
from _realtime import Hang, fails_instead_of_hanging

from simamqp.cli import main
from simamqp.scenarios import ScenarioError, load, run_scenario

FILES = int(os.environ.get("SIMAMQP_FUZZ_FILES", "300"))
SECONDS = float(os.environ.get("SIMAMQP_FUZZ_SECONDS", "2"))
SEED = int(os.environ.get("SIMAMQP_FUZZ_SEED", "0"))
ONE_LINE = re.compile(r"^.+:\d+:\d+: \S.*$")


bounded = fails_instead_of_hanging


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}"
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))
    return path


def record(path: Path) -> str | None:
    """``simamqp record`` of a file ``run`` accepts: no error, and its output loads."""
    out = path.with_name(path.name + ".recorded.yaml")
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()) as err:
        status = main(["record", str(path), "-o", str(out)])
    if status not in (0, 1):
        return f"record exited {status}: {err.getvalue()}"
    if status == 0:
        try:
            load(out)
        except ScenarioError as error:
            return f"record wrote a file validate refuses: {error}"
        finally:
            out.unlink()
    return None


def check_one(path: Path) -> str | None:
    """None when the loader and runner behaved; else what went wrong."""
    try:
        with bounded(SECONDS):
            try:
                scenario = load(path)
            except ScenarioError as error:
                message = str(error)
                if "\n" in message or not ONE_LINE.match(message):
                    return f"not one file:line:col line: {message!r}"
                if not message.startswith(f"{path}:"):
                    return f"does not name the file: {message!r}"
                return None
            result = run_scenario(scenario)
    except Hang as hang:
        return str(hang)
    except BaseException:  # anything else is the finding
        return traceback.format_exc(limit=-3)
    crashes = [f for f in result.failures if "crashed:" in f]
    if crashes:
        return "validate let through what run crashed on: " + crashes[0]
    try:
        # recording writes the whole trace (up to MAX_REPEAT copies fanned out): its own bound
        with bounded(5 * SECONDS):
            return record(path)
    except Hang as hang:
        return f"record {hang}"


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_generated_malformed_files_in_process(tmp_path: Path) -> None:
    findings: list[str] = []
    invalid = 0
    for name, text in malformed(FILES, SEED):
        path = write(tmp_path, name, text)
        problem = check_one(path)
        if problem is not None:
            findings.append(f"{name}: {problem}\n--- file ---\n{text[:1500]}")
        else:
            try:
                load(path)
            except ScenarioError:
                invalid += 1
        path.unlink()
    assert not findings, f"{len(findings)} of {FILES} files:\n\n" + "\n\n".join(findings[:5])
    # the generator does reach both sides of the loader
    assert 0 < invalid < FILES


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simamqp.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_generated_files_through_the_cli(tmp_path: Path) -> None:
    valid_dir = tmp_path / "valid"
    valid_dir.mkdir()
    all_dir = tmp_path / "all"
    all_dir.mkdir()
    for name, text in malformed(40, SEED + 1):
        path = write(all_dir, name + ".yaml", text)
        try:
            load(path)
        except ScenarioError:
            continue
        write(valid_dir, name + ".yaml", text)
    checked = _cli("validate", all_dir)
    assert checked.returncode == 2, checked.stderr
    assert "Traceback" not in checked.stderr + checked.stdout
    for line in checked.stderr.splitlines():
        assert line.startswith("error: ") and ONE_LINE.match(line[7:]), line
    ran = _cli("run", valid_dir)
    assert ran.returncode in (0, 1), ran.stderr
    assert "Traceback" not in ran.stderr + ran.stdout
    assert re.fullmatch(r"\d+ passed, \d+ failed", ran.stdout.splitlines()[-1])
