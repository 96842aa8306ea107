"""Scenario and replay files say which digest they hold (issue 23): ``trace_digest: "v2:<hex>"``
is what recording writes now; a bare 64-hex value is a v1 digest from before, and still
verifies (v1 is computed only for such a file); anything else is refused at load time with
file:line:column."""

from __future__ import annotations

from pathlib import Path

import pytest

from simamqp.scenarios import ScenarioError, load, load_text, run_scenario

STEPS = """version: 1
seed: 3
steps:
  - queue_declare: {queue: q}
  - publish: {routing_key: q, body: hello}
  - get: {queue: q}
"""


def write(tmp_path: Path, digest: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(STEPS + f"expect:\n  trace_digest: {digest}\n")
    return path


def digests() -> tuple[str, str]:
    """The run's digests, v2 and v1 (a file without expectations records them)."""
    result = run_scenario(load_text(STEPS, "<steps>"))
    broker = result.run.brokers["default"]
    return broker.trace.digest(), broker.trace.digest(version=1)


def test_a_v2_digest_verifies(tmp_path: Path) -> None:
    v2, _ = digests()
    assert v2.startswith("v2:")
    assert run_scenario(load(write(tmp_path, v2))).passed
    assert run_scenario(load(write(tmp_path, f'"{v2}"'))).passed  # quoted or not


def test_a_v1_digest_from_an_older_file_still_verifies(tmp_path: Path) -> None:
    _, v1 = digests()
    assert len(v1) == 64 and ":" not in v1
    assert run_scenario(load(write(tmp_path, v1))).passed


@pytest.mark.parametrize("version", [1, 2])
def test_a_wrong_digest_of_either_version_fails_and_says_both(tmp_path: Path, version: int) -> None:
    v2, v1 = digests()
    wrong = (v1 if version == 1 else v2)[:-4] + "0000"
    result = run_scenario(load(write(tmp_path, wrong)))
    assert not result.passed
    (failure,) = [f for f in result.failures if "trace digest" in str(f)]
    assert f"expected {wrong}, got " in str(failure)
    assert (" got " + (v1 if version == 1 else v2)) in str(failure)


@pytest.mark.parametrize(
    "bad",
    ["v3:" + "0" * 64, "V2:" + "0" * 64, "v2:" + "0" * 63, "0" * 65, "sha256:" + "0" * 64, "12"],
)
def test_a_malformed_digest_is_refused_with_its_line(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, f'"{bad}"')
    with pytest.raises(ScenarioError) as info:
        load(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:8:")
    assert "'v2:' and 64 lowercase hex digits" in message
