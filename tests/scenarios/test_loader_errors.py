"""Malformed scenario files: one line naming file:line:column and what was expected; exit 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from simamqp.scenarios import ScenarioError, load_text

GOOD = "version: 1\nsteps:\n  - queue_declare: {queue: q}\n"

MALFORMED = {
    "bad-yaml": ("version: 1\nsteps:\n  - publish: {body: 'x'\n", 4, "invalid YAML"),
    "unknown-step": (
        "version: 1\nsteps:\n  - queue_declare: {queue: q}\n  - publsh: {body: x}\n",
        4,
        "unknown step 'publsh' (did you mean 'publish'?)",
    ),
    "wrong-type": (
        "version: 1\nsteps:\n  - publish:\n      body: x\n      mandatory: yes please\n",
        5,
        "field 'mandatory' must be true or false, got string 'yes please'",
    ),
    "missing-field": (
        "version: 1\nsteps:\n  - consume: {no_ack: true}\n",
        3,
        "missing required field 'queue'",
    ),
    "unknown-version": ("version: 2\nsteps: []\n", 1, "unknown version 2"),
    "no-version": ("steps: []\n", 1, "missing required field 'version'"),
    "unknown-field": (
        "version: 1\nsteps:\n  - get: {queue: q, no_akc: true}\n",
        3,
        "unknown field 'no_akc' in step 'get' (did you mean 'no_ack'?)",
    ),
    "duplicate-key": ("version: 1\nsteps: []\nsteps: []\n", 3, "duplicate key 'steps'"),
    "bad-fault": (
        "version: 1\nfaults:\n  - {point: nowhere, action: drop}\nsteps: []\n",
        3,
        "unknown fault point",
    ),
    "bad-expect": (
        "version: 1\nsteps: []\nexpect:\n  queues:\n    q: 3\n",
        5,
        "expect.queues.q must be 'absent' or a mapping",
    ),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_loader_names_file_line_column(kind: str) -> None:
    text, line, message = MALFORMED[kind]
    with pytest.raises(ScenarioError) as info:
        load_text(text, f"{kind}.yaml")
    error = str(info.value)
    assert "\n" not in error
    assert error.startswith(f"{kind}.yaml:{line}:"), error
    assert message in error


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_cli_reports_one_line_and_exits_2_without_running_anything(
    kind: str, tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    text, line, message = MALFORMED[kind]
    (tmp_path / "a-good.yaml").write_text(GOOD)
    bad = tmp_path / f"{kind}.yaml"
    bad.write_text(text)
    status, out, err = cli("run", tmp_path)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {bad}:{line}:")
    assert message in lines[0]
    assert out == ""  # nothing ran, not even the good file
    assert cli("validate", bad)[0] == 2


def test_every_malformed_file_is_reported(
    tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    for kind, (text, _, _) in MALFORMED.items():
        (tmp_path / f"{kind}.yaml").write_text(text)
    status, _out, err = cli("validate", tmp_path)
    assert status == 2
    assert len(err.strip().splitlines()) == len(MALFORMED)


def test_unreadable_and_missing_paths(
    tmp_path: Path, cli: Callable[..., tuple[int, str, str]]
) -> None:
    status, _, err = cli("run", tmp_path / "nope.yaml")
    assert status == 2 and "nope.yaml:1:1: cannot read" in err
    status, _, err = cli("run", tmp_path)
    assert status == 2 and "no scenario files" in err


def test_scalar_forms_and_anchors_load() -> None:
    scenario = load_text(
        "version: 1\n"
        "steps:\n"
        "  - queue_declare: &q {queue: q}\n"
        "  - queue_declare: *q\n"
        "  - advance: 2.5\n"
        "  - run_until_idle\n"
        "  - restart: null\n"
    )
    assert [s.name for s in scenario.steps] == [
        "queue_declare",
        "queue_declare",
        "advance",
        "run_until_idle",
        "restart",
    ]
    assert scenario.steps[2].args == {"seconds": 2.5}
    assert scenario.steps[2].mark.line == 5
