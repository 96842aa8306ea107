"""Scenario files: YAML descriptions of brokers, client steps, faults and expectations.

``load(path)`` validates a whole file first (errors are one line: ``file:line:column: ...``),
so nothing runs from a malformed file; ``run_scenario(scenario)`` drives the core engine and
returns what failed; ``Recorder(broker)`` turns what a program did into a scenario that replays
the same trace. ``json_schema()`` is the JSON Schema of the format, generated from the same
definitions the loader checks (it also ships as ``simamqp/scenario.schema.json``).
"""

from __future__ import annotations

import decimal
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from ._model import (
    MAX_CLOCK,
    MAX_COPIES,
    MAX_PUBLISHES,
    MAX_REPEAT,
    MAX_WINDOW,
    STEPS,
    Scenario,
    Step,
    json_schema,
    validate,
)
from ._record import Recorder, plain
from ._runner import Result, Run, run_scenario, trace_diff
from ._yaml import (
    DECIMAL_TAG,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    Mark,
    ScenarioError,
    load_marked,
    read_scenario_file,
)

__all__ = [
    "MAX_CLOCK",
    "MAX_COPIES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "MAX_PUBLISHES",
    "MAX_REPEAT",
    "MAX_WINDOW",
    "STEPS",
    "Mark",
    "Recorder",
    "Result",
    "Run",
    "Scenario",
    "ScenarioError",
    "Step",
    "collect",
    "dump",
    "json_schema",
    "load",
    "load_text",
    "run_scenario",
    "trace_diff",
    "write",
]

SUFFIXES = (".yaml", ".yml")


def load_text(text: str, path: str = "<string>") -> Scenario:
    """Parse and validate one scenario document."""
    return validate(load_marked(text, path), path)


def load(path: str | os.PathLike[str]) -> Scenario:
    """Read, parse and validate one scenario file."""
    name = os.fspath(path)
    return load_text(read_scenario_file(name), name)


def collect(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Scenario files named, or found (recursively, sorted) in the folders named."""
    found: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in SUFFIXES
                    and p.is_file()
                    and ".simamqp" not in p.relative_to(path).parts[:-1]
                )
            )
        else:
            found.append(path)
    return found


class _Dumper(yaml.SafeDumper):
    """Block style, with multi-line strings as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _decimal(dumper: yaml.SafeDumper, value: decimal.Decimal) -> yaml.ScalarNode:
    return dumper.represent_scalar(DECIMAL_TAG, str(value))


_Dumper.add_representer(decimal.Decimal, _decimal)


def dump(data: dict[str, Any]) -> str:
    """A scenario (plain data) as YAML that ``load`` reads back."""
    return yaml.dump(plain(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump(data), encoding="utf-8")
    return target
