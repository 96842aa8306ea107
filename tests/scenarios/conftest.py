from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from simamqp.cli import main


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``simamqp ARGS...`` in-process: (exit status, stdout, stderr)."""

    def run(*args: str | Path) -> tuple[int, str, str]:
        try:
            status = main([str(a) for a in args])
        except SystemExit as exit_:
            status = int(exit_.code or 0)
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
