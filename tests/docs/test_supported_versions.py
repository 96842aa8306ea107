"""The supported versions are said once in pyproject.toml; the README and docs/matrix.md repeat
them, and the version matrix (noxfile.py) installs exactly those lower bounds: keep them equal."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _lower_bounds() -> dict[str, str]:
    project = _project()
    specs = [*project["dependencies"], *project["optional-dependencies"]["test"]]  # type: ignore[index]
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)>=([0-9.]+)", "\n".join(specs), re.M))


def test_readme_and_matrix_page_state_pyprojects_lower_bounds() -> None:
    bounds = _lower_bounds()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    line = next(line for line in readme.split("\n\n") if "**Supported versions:**" in line)
    for name, label in [("kombu", "kombu"), ("amqp", "py-amqp"), ("celery", "Celery")]:
        assert f"{label} ≥ {bounds[name]}" in line, (label, line)
    page = (ROOT / "docs" / "matrix.md").read_text(encoding="utf-8")
    for name in ("kombu", "amqp", "celery", "pika", "aio-pika"):
        assert f"| >= {bounds[name]} |" in page, name


def test_python_versions_are_the_matrix_pythons() -> None:
    noxfile = (ROOT / "noxfile.py").read_text(encoding="utf-8")
    found = re.search(r"^PYTHON = (\[.*\])$", noxfile, re.M)
    assert found is not None
    pythons = ast.literal_eval(found[1])
    classifiers = [c.rsplit(" :: ", 1)[1] for c in _project()["classifiers"]  # type: ignore[union-attr]
                   if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    assert classifiers == pythons
    assert _project()["requires-python"] == f">={pythons[0]}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"Python {pythons[0]}\u2013{pythons[-1]}" in readme  # an en dash
