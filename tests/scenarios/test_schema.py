"""The JSON Schema ships with the package, is generated from the loader's definitions, and
agrees with the loader on the library and on malformed files."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from test_loader_errors import MALFORMED

from simamqp.scenarios import ScenarioError, collect, json_schema, load_text

LIBRARY = Path(__file__).parents[2] / "scenarios"


def shipped() -> dict[str, object]:
    text = resources.files("simamqp").joinpath("scenario.schema.json").read_text()
    data: dict[str, object] = json.loads(text)
    return data


def test_shipped_schema_is_the_generated_one() -> None:
    assert shipped() == json_schema(), (
        "regenerate: simamqp schema > src/simamqp/scenario.schema.json"
    )


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", collect([LIBRARY]), ids=lambda p: p.name)
def test_library_files_satisfy_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema())


@pytest.mark.parametrize(
    "kind", ["unknown-step", "wrong-type", "missing-field", "unknown-version", "unknown-field"]
)
def test_schema_rejects_what_the_loader_rejects(kind: str) -> None:
    text = MALFORMED[kind][0]
    with pytest.raises(ScenarioError):
        load_text(text)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text), json_schema())
