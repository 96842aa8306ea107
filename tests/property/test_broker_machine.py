"""The core engine under random clients and fault plans keeps BrokerStateMachine's invariants."""

from __future__ import annotations

import pathlib

import pytest
from _property_budget import property_settings

from simamqp.stateful import BrokerStateMachine

TestBrokerStateMachine = BrokerStateMachine.TestCase
TestBrokerStateMachine.settings = property_settings(stateful_step_count=30)


def _run_steps(seed: int, plan: dict[str, object]) -> BrokerStateMachine:
    machine = BrokerStateMachine()
    machine.setup(
        seed=seed,
        args=({"x-max-length": 3}, {"x-message-ttl": 500, "x-dead-letter-exchange": "dlx"}),
        durable=(True, False),
        bindings=("a.#", "*.b"),
        plan=plan,
        consumers=[("q1", False, 2), ("dlq", True, 0)],
    )
    machine.publish(key="a.b", direct=None, persistent=True, mandatory=True, body=b"x", count=6)
    machine.settle(index=1, how="nack")
    machine.advance(1.0)
    machine.get(queue="q0", no_ack=False)
    machine.ledger_agrees_with_engine()
    machine.teardown()
    return machine


def test_replay_data_replays_the_same_trace() -> None:
    plan = {
        "version": 1,
        "rules": [
            {"point": "publish", "action": "duplicate", "probability": 0.5, "name": "r1"},
            {"point": "deliver", "action": "redeliver", "nth": 2, "name": "r2"},
        ],
    }
    first = _run_steps(99, plan)
    data = first.replay_data()
    assert data["seed"] == 99 and data["rules"] == plan["rules"]
    again = _run_steps(int(data["seed"]), {k: v for k, v in data.items() if k != "seed"})
    assert again.broker.trace.digest() == first.broker.trace.digest()
    assert first.broker.trace.of_kind("fault")


def test_a_recorded_run_replays_as_a_scenario_with_the_same_digest(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenarios = pytest.importorskip("simamqp.scenarios")
    out = tmp_path / "machine.yaml"
    monkeypatch.setenv("SIMAMQP_SCENARIO_OUT", str(out))
    plan = {
        "version": 1,
        "rules": [
            {"point": "enqueue", "action": "reorder", "window": 3, "name": "r1"},
            {"point": "ack", "action": "drop", "nth": 1, "name": "r2"},
        ],
    }
    machine = _run_steps(5, plan)
    result = scenarios.run_scenario(scenarios.load(out))
    assert result.passed, result.failures
    assert result.digests == {"default": machine.broker.trace.digest()}
