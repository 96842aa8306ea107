"""Running scenarios: several brokers, mid-run expectations, and how failures read."""

from __future__ import annotations

import pytest

from simamqp.scenarios import ScenarioError, load_text, run_scenario


def test_several_brokers_are_independent_and_seeded_separately() -> None:
    scenario = load_text(
        """
version: 1
brokers:
  east: {seed: 1}
  west: {seed: 2, vhosts: [billing]}
steps:
  - queue_declare: {client: e, broker: east, queue: ''}
  - open: {client: w, broker: west, vhost: billing}
  - queue_declare: {client: w, queue: jobs}
  - publish: {client: w, routing_key: jobs, body: hi}
  - advance: {seconds: 3, broker: west}
  - expect:
      broker: west
      queues: {jobs: {bodies: [hi], vhost: billing}}
      time: 3
expect:
  broker: east
  time: 0
  events: {queue-declare: 1, publish: 0}
"""
    )
    result = run_scenario(scenario)
    assert result.passed, result.failures
    assert result.digests["east"] != result.digests["west"]


def test_failures_name_the_step_and_its_line() -> None:
    scenario = load_text(
        "version: 1\n"
        "steps:\n"
        "  - queue_declare: {queue: q}\n"
        "  - get: {queue: q, expect: something}\n"
        "  - publish: {routing_key: q, body: never-runs}\n",
        "s.yaml",
    )
    result = run_scenario(scenario)
    assert result.failures == [
        "step 2 (get) at s.yaml:4:5: get returned None, expected 'something'"
    ]


def test_an_unexpected_error_fails_with_its_code_and_text() -> None:
    scenario = load_text("version: 1\nsteps:\n  - publish: {exchange: nope, body: x}\n", "e.yaml")
    (failure,) = run_scenario(scenario).failures
    assert failure.startswith("step 1 (publish) at e.yaml:3:5: unexpected error 404 NOT_FOUND")


def test_an_expected_error_that_does_not_happen_fails() -> None:
    scenario = load_text("version: 1\nsteps:\n  - queue_declare: {queue: q, error: 406}\n")
    (failure,) = run_scenario(scenario).failures
    assert "expected error 406, it succeeded" in failure


def test_advance_needs_a_virtual_clock() -> None:
    with pytest.raises(ScenarioError, match="needs clock: virtual"):
        load_text("version: 1\nclock: wall\nsteps:\n  - advance: 1\n")


def test_wall_clock_scenarios_run() -> None:
    scenario = load_text(
        "version: 1\nclock: wall\nsteps:\n  - queue_declare: {queue: q}\n"
        "expect:\n  queues: {q: {messages: 0}}\n"
    )
    assert run_scenario(scenario).passed


def test_seed_override_changes_generated_names() -> None:
    text = "version: 1\nsteps:\n  - queue_declare: {queue: ''}\n"
    a = run_scenario(load_text(text), seed=1).digests["default"]
    b = run_scenario(load_text(text), seed=2).digests["default"]
    assert a != b
    assert a == run_scenario(load_text(text), seed=1).digests["default"]
