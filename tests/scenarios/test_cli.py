"""The simamqp command: summary line, exit status, filters, record and schema."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import simamqp
from simamqp.scenarios import load, run_scenario

CLI = Callable[..., tuple[int, str, str]]

PASSING = """\
version: 1
name: passing {n}
tags: [{tag}]
steps:
  - queue_declare: {{queue: q}}
  - publish: {{routing_key: q, body: hello}}
expect:
  queues:
    q: {{bodies: [hello]}}
"""
FAILING = """\
version: 1
name: failing
steps:
  - queue_declare: {queue: q}
  - publish: {routing_key: q, body: hello}
expect:
  queues:
    q: {bodies: [goodbye]}
"""


def _suite(tmp_path: Path, *, failing: bool) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "one.yaml").write_text(PASSING.format(n=1, tag="alpha"))
    (tmp_path / "sub" / "two.yml").write_text(PASSING.format(n=2, tag="beta"))
    (tmp_path / "notes.txt").write_text("not a scenario")
    if failing:
        (tmp_path / "sub" / "three.yaml").write_text(FAILING)
    return tmp_path


def test_all_pass_exit_0_and_summary_is_last_line(tmp_path: Path, cli: CLI) -> None:
    status, out, _ = cli("run", _suite(tmp_path, failing=False))
    assert status == 0
    assert out.splitlines()[-1] == "2 passed, 0 failed"


def test_a_failure_exits_1_and_says_what_differed(tmp_path: Path, cli: CLI) -> None:
    status, out, _ = cli("run", _suite(tmp_path, failing=True))
    assert status == 1
    assert out.splitlines()[-1] == "2 passed, 1 failed"
    assert "queue 'q': bodies expected ['goodbye'], got ['hello']" in out


def test_verbose_and_keyword_filter(tmp_path: Path, cli: CLI) -> None:
    suite = _suite(tmp_path, failing=True)
    status, out, _ = cli("run", "-v", "-k", "beta", suite)
    assert status == 0
    assert "[1/1] PASS passing 2" in out
    assert out.splitlines()[-1] == "1 passed, 0 failed"
    status, out, _ = cli("run", "-k", "not failing", suite)
    assert status == 0 and out.splitlines()[-1] == "2 passed, 0 failed"


def test_seed_option_overrides_the_file(tmp_path: Path, cli: CLI) -> None:
    path = tmp_path / "named.yaml"
    path.write_text("version: 1\nseed: 1\nsteps:\n  - queue_declare: {queue: ''}\n")
    recorded = tmp_path / "rec.yaml"
    assert cli("record", path, "-o", recorded)[0] == 0
    assert cli("run", recorded)[2] == ""
    assert cli("run", recorded)[0] == 0
    # the generated queue name comes from the seed: another seed, another trace
    status, out, _ = cli("run", "--seed", "2", recorded)
    assert status == 1 and "trace differs" in out


def test_record_then_run_reproduces_the_digest(tmp_path: Path, cli: CLI) -> None:
    source = Path(__file__).parents[2] / "scenarios" / "dlx-ttl" / "retry-chain.yaml"
    target = tmp_path / "retry.yaml"
    status, _out, _ = cli("record", source, "-o", target)
    assert status == 0
    recorded = load(target)
    assert recorded.expect["trace_digest"] == run_scenario(load(source)).digests["default"]
    assert cli("run", target)[0] == 0


def test_version_and_schema(cli: CLI) -> None:
    status, out, _ = cli("--version")
    assert status == 0 and out.strip() == f"simamqp {simamqp.__version__}"
    status, out, _ = cli("schema")
    assert status == 0 and json.loads(out)["title"].startswith("simamqp scenario")


def test_the_package_version_is_simamqp_version() -> None:
    # One source: pyproject.toml reads the version from simamqp.__version__ (CHANGELOG.md).
    from importlib.metadata import version

    assert version("simamqp") == simamqp.__version__


def test_console_script_runs_the_library() -> None:
    library = Path(__file__).parents[2] / "scenarios"
    proc = subprocess.run(
        [sys.executable, "-m", "simamqp.cli", "run", str(library)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.endswith(" passed, 0 failed")


HAND_WRITTEN = """\
version: 1
name: hand-written expectations
steps:
  - queue_declare: {queue: q}
  - confirm_select: {client: p}
  - publish: {client: p, routing_key: q, body: ok}
  - expect: {queues: {q: {messages_ready: 1}}}
expect:
  confirms:
    p: [ack]
  errors: []
  time: 99
"""


def test_record_keeps_hand_written_expectations_that_still_hold(tmp_path: Path, cli: CLI) -> None:
    """``confirms`` and ``errors: []`` are not what record observes; it keeps them when the
    run still satisfies them, and says which ones it drops (a wrong ``time``, inline steps)."""
    source = tmp_path / "hand.yaml"
    source.write_text(HAND_WRITTEN)
    target = tmp_path / "rec.yaml"
    status, _out, err = cli("record", source, "-o", target)
    assert status == 0
    expect = load(target).expect
    assert expect["confirms"] == {"p": ["ack"]}
    assert expect["errors"] == []
    assert "time" not in expect
    assert "dropped expect.time" in err
    assert "1 inline expect step" in err
    assert cli("run", target)[0] == 0


def test_serve_help_does_not_promise_a_moving_clock(cli: CLI) -> None:
    """``serve`` runs no scenario steps: nothing it runs moves a virtual clock."""
    proc = subprocess.run(
        [sys.executable, "-m", "simamqp.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "unless a scenario moves it" not in text
    assert "serve runs no scenario steps" in text
