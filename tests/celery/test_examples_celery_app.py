"""examples/celery_app runs as a downstream project would run it (issue 11: on the default
``sim_broker``, virtual clock, with no marker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("celery")
pytestmark = pytest.mark.celery

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "celery_app"


def test_example_project_passes_on_the_default_fixture() -> None:
    source = (EXAMPLE / "tests" / "test_tasks.py").read_text(encoding="utf-8")
    assert "simamqp(clock" not in source  # the point: no wall-clock marker needed
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout
