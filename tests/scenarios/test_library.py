"""The scenario library (the README's first command runs it) passes, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from simamqp.scenarios import collect, load, run_scenario

LIBRARY = Path(__file__).parents[2] / "scenarios"
FILES = collect([LIBRARY])


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(LIBRARY)))
def test_library_scenario_passes(path: Path) -> None:
    result = run_scenario(load(path))
    assert result.passed, "\n".join(result.failures)


def test_library_covers_the_issue_list() -> None:
    names = {p.relative_to(LIBRARY).as_posix() for p in FILES}
    for folder in ("exchanges", "lifecycle", "dlx-ttl", "priority", "restart", "reply-to"):
        assert any(n.startswith(folder + "/") for n in names), folder
    assert len([n for n in names if n.startswith("rpc/")]) >= 8


def test_library_is_deterministic_and_fast() -> None:
    started = time.perf_counter()
    first = [run_scenario(load(p)).digests for p in FILES]
    second = [run_scenario(load(p)).digests for p in FILES]
    assert first == second
    assert time.perf_counter() - started < 5
